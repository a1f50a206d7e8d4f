#!/usr/bin/env bash
# Long crash-safety run: ROUNDS (default 50) SIGKILL rounds with WRITERS (default 32) concurrent
# writers on one data folder (tests/crash/driver.mjs; CI runs 5 x 8 through ctest -L crash).
# Prints per-round lines, the restart times and the verdict. BEVAN_BIN selects the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-${1:-50}}
WRITERS=${WRITERS:-${2:-32}}
[ -x "${BEVAN_BIN:-build/bevan}" ] || cmake --build build -j2
echo "command: node tests/crash/driver.mjs $ROUNDS $WRITERS  (BEVAN_BIN=${BEVAN_BIN:-build/bevan})"
exec node tests/crash/driver.mjs "$ROUNDS" "$WRITERS"
