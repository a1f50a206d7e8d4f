#!/usr/bin/env bash
# Search benchmark (issue 3): a `bevan demo` population (default 20,500 patients, about 1,000,000
# resources), then wrk over typical queries, each with 200 different sampled values, 16
# connections. Prints and writes p50/p99 latency and throughput per query, the machine facts and
# the exact commands. Measured, never asserted.
#   DATA=dir (kept: the population is made once)  PATIENTS=20500  DURATION=10  CONNS=16
#   BEVAN_BIN=build/bevan  OUT=bench/results/YYYY-MM-DD-search-run.md  QUERIES="name ..."  WARM=1  READER_CACHE_MB=128 (--reader-cache-mb)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BEVAN_BIN:-build/bevan}
DATA=${DATA:-/tmp/bevan-search-bench}
PATIENTS=${PATIENTS:-20500}
DURATION=${DURATION:-10}
CONNS=${CONNS:-16}
OUT=${OUT:-bench/results/$(date -u +%F)-search-run.md}
WORK=$(mktemp -d /tmp/bevan-search-bench-XXXXXX)
trap 'if [ -n "${PID:-}" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi; rm -rf "$WORK"' EXIT
[ -x "$BIN" ] || { echo "build $BIN first" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }

if [ ! -f "$DATA/bevan.db" ]; then
  echo "== population: $BIN demo --data $DATA --patients $PATIENTS --sync normal"
  /usr/bin/time -v "$BIN" demo --data "$DATA" --patients "$PATIENTS" --sync normal 2>&1 | tee "$WORK/demo.log" | grep -E "bevan demo:|Elapsed|Maximum resident"
fi
DB="$DATA/bevan.db"
TOTAL=$(sqlite3 -readonly "$DB" "SELECT count(*) FROM resources WHERE deleted = 0")
BYTYPE=$(sqlite3 -readonly "$DB" "SELECT type || ' ' || count(*) FROM resources WHERE deleted = 0 GROUP BY type ORDER BY count(*) DESC" | paste -sd, -)
SIZE=$(du -sh "$DATA" | cut -f1)
echo "== $TOTAL resources ($BYTYPE), $SIZE on disk"

node bench/search/make-paths.mjs "$DB" "$WORK/paths" 200 >"$WORK/names"
# WARM=1: read the whole store once so that the page cache holds it (else the first touches of
# each sampled patient's pages are disk reads and dominate the latencies)
if [ "${WARM:-0}" = 1 ]; then cat "$DB" >/dev/null; fi
NAMES=${QUERIES:-$(cat "$WORK/names")}

"$BIN" serve --listen 127.0.0.1:0 --port-file "$WORK/port" --data "$DATA" --rate-limit 0 --auth off \
  --reader-cache-mb "${READER_CACHE_MB:-128}" 2>"$WORK/serve.log" &
PID=$!
for _ in $(seq 1 200); do [ -s "$WORK/port" ] && break; sleep 0.1; done
PORT=$(cat "$WORK/port")
URL="http://127.0.0.1:$PORT"
# requests still running after wrk stops (slow queries) must finish before the next measurement:
# a request queued behind them returns only then
drain() { curl -s -m 300 -o /dev/null "$URL/fhir/metadata" || true; }

{
  echo "| query | example request | req/s ($CONNS conns) | p50 | p99 | non-2xx | p50, 1 conn |"
  echo "|---|---|---|---|---|---|---|"
} >"$WORK/table"
for q in $NAMES; do
  f="$WORK/paths/$q.txt"
  ex=$(head -c 160 "$f" | head -1 | tr '\t' ' ')
  # warm-up (page cache, statement cache), then the measured run
  PATHS_FILE="$f" wrk -t2 -c"$CONNS" -d2s --timeout 30s -s bench/wrk/paths.lua "$URL" >/dev/null 2>&1 || true
  drain
  PATHS_FILE="$f" wrk -t2 -c"$CONNS" -d"${DURATION}s" --timeout 30s --latency -s bench/wrk/paths.lua "$URL" >"$WORK/$q.wrk" 2>&1
  drain
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$q.wrk")
  p50=$(awk '$1 == "50%" {print $2}' "$WORK/$q.wrk")
  p99=$(awk '$1 == "99%" {print $2}' "$WORK/$q.wrk")
  bad=$(awk '/Non-2xx/ {print $5} /Socket errors/ {print "errors:" $0}' "$WORK/$q.wrk" | tr '\n' ' ')
  # one connection: the latency of the query itself, without queueing
  PATHS_FILE="$f" wrk -t1 -c1 -d3s --timeout 30s --latency -s bench/wrk/paths.lua "$URL" >"$WORK/$q.c1.wrk" 2>&1
  drain
  one=$(awk '$1 == "50%" {print $2}' "$WORK/$q.c1.wrk")
  printf '%-28s %10s req/s  p50 %-9s p99 %-9s non-2xx %-4s 1-conn p50 %s\n' "$q" "$rps" "$p50" "$p99" "${bad:-0}" "$one"
  echo "| $q | \`${ex}\` | $rps | $p50 | $p99 | ${bad:-0} | $one |" >>"$WORK/table"
done

{
  echo "# Search benchmark run, $(date -u '+%F %H:%M UTC')"
  echo
  echo "- commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')"
  echo "- machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/ {print $2}') GB RAM; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- population: $TOTAL resources ($BYTYPE), $SIZE on disk, \`$BIN demo --data $DATA --patients $PATIENTS --sync normal\`"
  echo "- server: \`$BIN serve --listen 127.0.0.1:0 --port-file F --data $DATA --rate-limit 0 --auth off --reader-cache-mb ${READER_CACHE_MB:-128}\` (threads = CPUs, synchronous=FULL)"
  echo "- load: per query \`PATHS_FILE=<200 sampled requests> wrk -t2 -c$CONNS -d${DURATION}s --timeout 30s --latency -s bench/wrk/paths.lua http://127.0.0.1:PORT\` after a 2 s warm-up, then \`wrk -t1 -c1 -d3s\` for the one-connection p50; wrk runs on the same 2 CPUs"
  echo
  cat "$WORK/table"
} >"$OUT"
echo "== written $OUT"
