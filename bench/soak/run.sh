#!/usr/bin/env bash
# Long soak: SECONDS (default 1800) of mixed traffic at RATE (default 200) requests/s; writes
# bench/results/YYYY-MM-DD-soak.md. Fails on any 5xx, or RSS / descriptors growing > 5 % after
# warm-up (the first 30 %).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-${SOAK_SECONDS:-1800}}
RATE=${2:-${SOAK_RATE:-200}}
OUT=bench/results/$(date -u +%F)-soak.md
[ -x "${BEVAN_BIN:-build/bevan}" ] || cmake --build build -j2
{
  echo "# Soak $(date -u +%FT%TZ)"
  echo
  echo "Machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GB", $2/1e6}' /proc/meminfo), load average at start: $(cut -d' ' -f1-3 /proc/loadavg); commit $(git rev-parse --short HEAD)"
  echo "Command: node bench/soak/soak.mjs $SECS $RATE"
  echo
  node bench/soak/soak.mjs "$SECS" "$RATE"
} | tee "$OUT"
