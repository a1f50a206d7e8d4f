#!/usr/bin/env bash
# Resident memory of a server on a large store under reads, searches and writes (issue 6: RSS under
# 100 MB at 1,000,000 stored resources). DATA is a store made once by
#   build/bevan demo --data DATA --patients 20500 --sync normal     (about 1,000,000 resources)
# It is written to (creates and a Synthea ingest): use a copy you can throw away.
#   bench/rss-big.sh DATA            (BEVAN_BIN, DUR seconds per wrk run (10), SYNTHEA,
#                                     SERVE_ARGS: more `bevan serve` options, e.g. "--writer-cache-mb 16")
# Prints VmRSS after each phase, VmHWM (the peak) at the end, and the idle RSS after it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
data=${1:?DATA}
bin=${BEVAN_BIN:-$here/../build/bevan}
dur=${DUR:-10}
synthea=${SYNTHEA:-$here/../../shared/data/synthea-r4}
tmp=$(mktemp -d)
"$bin" serve --listen 127.0.0.1:0 --port-file "$tmp/port" --data "$data" --auth off --rate-limit 0 --no-ward ${SERVE_ARGS:-} 2>"$tmp/err" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 600); do [ -s "$tmp/port" ] && break; sleep 0.1; done
origin=http://127.0.0.1:$(cat "$tmp/port"); base=$origin/fhir
rss() { awk '/VmRSS/ { printf "%.1f MB", $2 / 1024 }' "/proc/$pid/status"; }
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);console.log(eval(process.argv[1]))})' "$1"; }
echo "| phase | result | VmRSS after |"
echo "|---|---|---|"
echo "| start | $(curl -sS "$base/Patient?_summary=count" | json j.total) Patients, $(curl -sS "$base/Observation?_summary=count&_total=accurate" | json j.total) Observations | $(rss) |"
id=$(curl -sS "$base/Patient?_count=1&_elements=id" | json 'j.entry[0].resource.id')
for q in "Observation?patient=$id&_count=50" "Patient?family=Smi&_count=20" "Observation?code=http://loinc.org|8867-4&_count=100" \
         "Patient?_has:Condition:subject:code=38341003&_count=20"; do
  curl -sS -o /dev/null -w "%{http_code} " "$base/$q"
done >"$tmp/searches"
echo "| searches (by patient, family, code, _has) | HTTP $(cat "$tmp/searches") | $(rss) |"
r=$(wrk -t2 -c16 -d"${dur}s" -s "$here/wrk/read.lua" "$base/Patient/$id" | awk '/Requests\/sec/ {print $2}')
echo "| read by id, \`wrk -t2 -c16 -d${dur}s\` | $r req/s | $(rss) |"
for c in 8 32; do
  r=$(wrk -t2 -c$c -d"${dur}s" -s "$here/wrk/create.lua" "$base/Patient" | awk '/Requests\/sec/ {print $2}')
  echo "| durable create, \`wrk -t2 -c$c -d${dur}s\` | $r creates/s | $(rss) |"
done
if [ -d "$synthea" ]; then
  r=$(node "$here/ingest.mjs" "$base" "$synthea" 3 5 | tail -1 | json 'j.resources+" resources, "+Math.round(j.resources_per_s)+"/s, "+j.failures+" failures"')
  echo "| Synthea transaction ingest, 3 workers, 5 rounds | $r | $(rss) |"
fi
echo "| peak (VmHWM) | | $(awk '/VmHWM/ { printf "%.1f MB", $2 / 1024 }' "/proc/$pid/status") |"
sleep 3
echo "| idle 3 s later | heap trims: $(curl -sS "$origin/healthz" | json j.memory.heapTrims) | $(rss) |"
