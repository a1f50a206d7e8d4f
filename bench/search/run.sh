#!/usr/bin/env bash
# Search benchmark (issue 3): a `bevan demo` population (default 20,500 patients, about 1,000,000
# resources), then wrk over typical queries, each with 200 different sampled values, 16
# connections. Prints and writes p50/p99 latency and throughput per query, the machine facts and
# the exact commands. Measured, never asserted.
#   DATA=dir (kept: the population is made once)  PATIENTS=20500  DURATION=10  CONNS=16
#   BEVAN_BIN=build/bevan  OUT=bench/results/YYYY-MM-DD-search-run.md  QUERIES="name ..."
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
NAMES=${QUERIES:-$(cat "$WORK/names")}

"$BIN" serve --listen 127.0.0.1:0 --port-file "$WORK/port" --data "$DATA" --rate-limit 0 --auth off 2>"$WORK/serve.log" &
PID=$!
for _ in $(seq 1 200); do [ -s "$WORK/port" ] && break; sleep 0.1; done
PORT=$(cat "$WORK/port")
URL="http://127.0.0.1:$PORT"

{
  echo "| query | example request | req/s | p50 | p99 | non-2xx |"
  echo "|---|---|---|---|---|---|"
} >"$WORK/table"
for q in $NAMES; do
  f="$WORK/paths/$q.txt"
  ex=$(head -c 160 "$f" | head -1 | tr '\t' ' ')
  # warm-up (page cache, statement cache), then the measured run
  PATHS_FILE="$f" wrk -t2 -c"$CONNS" -d2s -s bench/wrk/paths.lua "$URL" >/dev/null 2>&1 || true
  PATHS_FILE="$f" wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s bench/wrk/paths.lua "$URL" >"$WORK/$q.wrk" 2>&1
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$q.wrk")
  p50=$(awk '$1 == "50%" {print $2}' "$WORK/$q.wrk")
  p99=$(awk '$1 == "99%" {print $2}' "$WORK/$q.wrk")
  bad=$(awk '/Non-2xx/ {print $5}' "$WORK/$q.wrk")
  printf '%-28s %10s req/s  p50 %-9s p99 %-9s non-2xx %s\n' "$q" "$rps" "$p50" "$p99" "${bad:-0}"
  echo "| $q | \`${ex}\` | $rps | $p50 | $p99 | ${bad:-0} |" >>"$WORK/table"
done

{
  echo "# Search benchmark run, $(date -u '+%F %H:%M UTC')"
  echo
  echo "- commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')"
  echo "- machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/ {print $2}') GB RAM; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- population: $TOTAL resources ($BYTYPE), $SIZE on disk, \`$BIN demo --data $DATA --patients $PATIENTS --sync normal\`"
  echo "- server: \`$BIN serve --listen 127.0.0.1:0 --port-file F --data $DATA --rate-limit 0 --auth off\` (threads = CPUs, synchronous=FULL)"
  echo "- load: per query \`PATHS_FILE=<200 sampled requests> wrk -t2 -c$CONNS -d${DURATION}s --latency -s bench/wrk/paths.lua http://127.0.0.1:PORT\` after a 2 s warm-up; wrk runs on the same 2 CPUs"
  echo
  cat "$WORK/table"
} >"$OUT"
echo "== written $OUT"
