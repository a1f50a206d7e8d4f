#!/usr/bin/env bash
# Per-thread CPU per write, from /proc counters around a load: the figure that separates real
# changes from this machine's ±10-20 % noise in requests/s (run as interleaved pairs of binaries).
#   bench/thread-cpu.sh create BIN [serve args]   wrk -t2 -c$C (default 8) -d${DUR}s (default 5) bench/wrk/create.lua,
#                                                 and the run's WAL syncs from GET /healthz (bench/health-diff.mjs)
#   bench/thread-cpu.sh ingest BIN [serve args]   node bench/ingest.mjs (3 workers, $ROUNDS rounds, default 3)
# Prints requests/s (or resources/s), p50/p99 for creates, and user/sys µs per create (or per
# resource) for each thread name, then the total. Needs ../shared/data/synthea-r4 for ingest.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mode=${1:?create|ingest}; bin=${2:?BIN}; shift 2
d=$(mktemp -d /tmp/bevan-thread-cpu-XXXXXX)
"$bin" serve --listen 127.0.0.1:0 --port-file "$d/port" --data "$d/data" --auth off --rate-limit 0 "$@" 2>"$d/err" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$d"' EXIT
for _ in $(seq 1 200); do [ -s "$d/port" ] && break; sleep 0.05; done
base=http://127.0.0.1:$(cat "$d/port")/fhir
snap() {
  for t in /proc/$pid/task/*; do echo "$(tr ' ' _ <"$t/comm") $(awk '{print $14, $15}' "$t/stat")"; done |
    awk '{u[$1]+=$2; s[$1]+=$3} END {for (k in u) print k, u[k], s[k]}' | sort
}
if [ "$mode" = create ]; then
  wrk -t2 -c"${C:-8}" -d1s -s "$here/wrk/create.lua" "$base/Patient" >/dev/null
  curl -sS "${base%/fhir}/healthz" >"$d/h0"
  snap >"$d/a"
  out=$(wrk -t2 -c"${C:-8}" -d"${DUR:-5}s" --latency -s "$here/wrk/create.lua" "$base/Patient")
  snap >"$d/b"
  curl -sS "${base%/fhir}/healthz" >"$d/h1"
  rate=$(echo "$out" | awk '/Requests\/sec/ {printf "%d", $2}')
  n=$((rate * ${DUR:-5}))
  echo "$out" | awk -v r="$rate" '/ 50%/ {p50=$2} / 99%/ {p99=$2} END {printf "creates/s %d p50 %s p99 %s\n", r, p50, p99}'
  node "$here/health-diff.mjs" "$d/h0" "$d/h1"
  unit=create
else
  dir=${SYNTHEA:-$here/../../shared/data/synthea-r4}
  snap >"$d/a"
  out=$(node "$here/ingest.mjs" "$base" "$dir" 3 "${ROUNDS:-3}")
  snap >"$d/b"
  echo "$out"
  n=$(echo "$out" | sed -E 's/.*"resources":([0-9]+).*/\1/')
  unit=resource
fi
hz=$(getconf CLK_TCK)
join "$d/a" "$d/b" | awk -v n="$n" -v hz="$hz" -v unit="$unit" '
  {du=($4-$2)*1e6/hz/n; ds=($5-$3)*1e6/hz/n; tu+=du; ts+=ds
   if (du+ds>0.5) printf "  %-16s user %6.1f sys %6.1f us/%s\n", $1, du, ds, unit}
  END {printf "  %-16s user %6.1f sys %6.1f us/%s\n", "TOTAL", tu, ts, unit}'
