#!/usr/bin/env bash
# Side-by-side: the same workload against Bevan (durable, SQLite) and Medplum's FHIR router with
# its in-memory repository (bench/compare/medplum-server.mjs), both on 127.0.0.1, both driven by
# the same wrk scripts and the same ingest driver; plus the hello-world libmicrohttpd ceiling
# (bench/hello.sh) and the durable-write floor (bench/durable-floor.sh: libmicrohttpd acknowledging each
# POST after an fdatasync of as many bytes as a Bevan create writes, nothing else done). Writes
# bench/results/YYYY-MM-DD-compare.md with the machine and the commands.
#   bench/compare/run.sh            (DUR=5 s per wrk run, SEED=1000 patients, INGEST_ROUNDS=1)
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=${DUR:-5}
SEED=${SEED:-1000}
INGEST_ROUNDS=${INGEST_ROUNDS:-1}
SYNTHEA=${SYNTHEA:-../shared/data/synthea-r4}
BEVAN_BIN=${BEVAN_BIN:-build/bevan}
OUT=${OUT:-bench/results/$(date -u +%F)-compare.md}
[ -x "$BEVAN_BIN" ] || cmake --build build -j2
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT

# wrk's latency ("612.00us", "1.2ms", "2s") in ms, for awk
AWK_MS='function ms(v) { sub(/,$/, "", v); if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }'
# wrk output -> "req/s p50_ms p99_ms non2xx"
wrk_run() { # conns script url
  timeout $((DUR + 30)) wrk -t2 -c"$1" -d"${DUR}s" --latency -s "$2" "$3" >"$tmp/wrk.txt" 2>&1 || true
  awk "$AWK_MS"'
    /Requests\/sec:/ { rps = $2 }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
    /Non-2xx or 3xx responses:/ { bad = $5 }
    /Socket errors:/ { sub(/.*timeout /, ""); to = $0 + 0 }
    END { printf "%.0f %.2f %.2f %d %d\n", rps, p50, p99, bad, to }' "$tmp/wrk.txt"
}
rss_mb() { awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

start_bevan() {
  rm -rf "$tmp/bevan-data" "$tmp/port"
  "$BEVAN_BIN" serve --listen 127.0.0.1:0 --port-file "$tmp/port" --data "$tmp/bevan-data" --rate-limit 0 --auth off >"$tmp/bevan.log" 2>&1 &
  pid=$!
}
start_medplum() {
  rm -f "$tmp/port"
  node --experimental-websocket bench/compare/medplum-server.mjs "$tmp/port" >"$tmp/medplum.log" 2>&1 &
  pid=$!
}
wait_port() { for _ in $(seq 1 300); do [ -s "$tmp/port" ] && { cat "$tmp/port"; return; }; sleep 0.1; done; echo "no port" >&2; exit 1; }

declare -A R
measure() { # name
  local name=$1 port base id
  port=$(wait_port); base="http://127.0.0.1:$port/fhir"
  R[$name,rss0]=$(rss_mb "$pid")
  id=$(node bench/compare/seed.mjs "$base" "$SEED")
  R[$name,read]=$(wrk_run 16 bench/compare/read.lua "$base/Patient/$id")
  R[$name,create]=$(wrk_run 8 bench/compare/create.lua "$base/Patient")
  R[$name,update]=$(wrk_run 8 bench/compare/update.lua "$base/Patient/$id")
  # The same writes at 32 connections: at 8 a durable write is bound by its latency (8 in flight,
  # each waiting for a sync: Little's law), at 32 by the server's throughput.
  R[$name,create_32]=$(wrk_run 32 bench/compare/create.lua "$base/Patient")
  R[$name,update_32]=$(wrk_run 32 bench/compare/update.lua "$base/Patient/$id")
  R[$name,search_code]=$(wrk_run 8 bench/compare/read.lua "$base/Observation?subject=Patient/$id&code=http://loinc.org|8867-4")
  R[$name,search_family]=$(wrk_run 8 bench/compare/read.lua "$base/Patient?family=Smith&_count=20")
  R[$name,rss1]=$(rss_mb "$pid")
  R[$name,ingest]=$(node bench/ingest.mjs "$base" "$SYNTHEA" 3 "$INGEST_ROUNDS" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s.trim().split("\n").pop());console.log(Math.round(j.resources_per_s)+" "+j.failures)})')
  R[$name,rss2]=$(rss_mb "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
}

echo "== Bevan"; start_bevan; measure bevan
echo "== Medplum (in-memory)"; start_medplum; measure medplum
echo "== hello-world libmicrohttpd"
hello=$(bench/hello.sh 18931 "$(nproc)" 1 2>&1 | awk '/req\/s/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /req\/s/) { print $i; exit } }')
echo "== durable-write floor"
# "bytes 40960, 8 connections, run 1: 12504 durable writes/s, p50 0.61ms, p99 2.1ms" -> R[floor,8]="12504 0.61 2.10"
while read -r conns rest; do R[floor,$conns]=$rest; done < <(CONNS="8 32" DUR=$DUR bench/durable-floor.sh 40960 2>&1 |
  awk "$AWK_MS"'
       / durable writes\/s/ { c = $3; r = $7; p50 = $11; p99 = $13; printf "%s %d %.2f %.2f\n", c, r, ms(p50), ms(p99) }')

f() { echo "${R[$1,$2]}" | cut -d' ' -f"$3"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "-" }'; }
{
  echo "# Bevan vs Medplum FHIR router (in-memory) — $(date -u +%FT%TZ)"
  echo
  echo "Machine: $(nproc) vCPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(awk '/MemTotal/ {printf "%.1f GB", $2/1e6}' /proc/meminfo) RAM;"
  echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (about 2 is the benchmark itself; more means other work shared"
  echo "the machine and depressed the figures). Single runs vary by about ±20 %: repeat three times near a threshold."
  echo "Commit $(git rev-parse --short HEAD); Bevan: \`$BEVAN_BIN serve --rate-limit 0 --auth off\` (synchronous=FULL, every write synced before"
  echo "the answer); Medplum: \`node --experimental-websocket bench/compare/medplum-server.mjs\` (@medplum/fhir-router 5.2.13, MemoryRepository)."
  echo
  echo "Workload: seed $SEED patients × (1 Patient + 2 Observations) by transaction; then each for ${DUR} s:"
  echo "\`wrk -t2 -c16 -d${DUR}s --latency -s bench/compare/read.lua BASE/Patient/ID\` (read; 8 connections for the others,"
  echo "and 32 connections for the rows create_32 and update_32),"
  echo "\`create.lua BASE/Patient\`, \`update.lua BASE/Patient/ID\` (PUT of one resource), \`BASE/Observation?subject=Patient/ID&code=http://loinc.org|8867-4\`,"
  echo "\`BASE/Patient?family=Smith&_count=20\`; then \`node bench/ingest.mjs BASE $SYNTHEA 3 $INGEST_ROUNDS\` (Synthea transaction bundles)."
  echo "Ceiling: \`bench/hello.sh\` (hello-world libmicrohttpd, same wrk). Durable-write floor: \`CONNS=\"8 32\" DUR=$DUR bench/durable-floor.sh 40960\`"
  echo "(libmicrohttpd answering each POST of create.lua only after its group's fdatasync of 40,960 bytes per request, about"
  echo "what a Bevan create adds to the WAL; no parsing, no index, no database): what this disk allows any server that"
  echo "syncs as many bytes per create, at that moment."
  echo
  echo "| interaction | Bevan req/s | p50 ms | p99 ms | Medplum req/s | p50 ms | p99 ms | Bevan / Medplum | Bevan / ceiling |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for k in read create update create_32 update_32 search_code search_family; do
    b=$(f bevan $k 1); m=$(f medplum $k 1)
    echo "| $k | $b | $(f bevan $k 2) | $(f bevan $k 3) | $m | $(f medplum $k 2) | $(f medplum $k 3) | $(ratio "$b" "$m") | $(ratio "$b" "${hello:-0}") |"
  done
  b=$(f bevan ingest 1); m=$(f medplum ingest 1)
  echo "| transaction ingest (resources/s) | $b | | | $m | | | $(ratio "$b" "$m") | |"
  echo "| hello-world ceiling | ${hello:-?} | | | | | | | |"
  for c in 8 32; do
    k=create; [ "$c" = 32 ] && k=create_32
    fl=$(f floor "$c" 1)
    echo "| durable-write floor, $c connections | ${fl:-?} | $(f floor "$c" 2) | $(f floor "$c" 3) | | | | Medplum $k / floor $(ratio "$(f medplum $k 1)" "${fl:-0}") | Bevan $k / floor $(ratio "$(f bevan $k 1)" "${fl:-0}") |"
  done
  echo
  echo "| RSS (MB) | after start | after the wrk runs | after ingest |"
  echo "|---|---|---|---|"
  echo "| Bevan | ${R[bevan,rss0]} | ${R[bevan,rss1]} | ${R[bevan,rss2]} |"
  echo "| Medplum | ${R[medplum,rss0]} | ${R[medplum,rss1]} | ${R[medplum,rss2]} |"
  echo
  echo "Non-2xx answers (wrk): $(for s in bevan medplum; do for k in read create update create_32 update_32 search_code search_family; do printf '%s/%s=%s ' $s $k "$(f $s $k 4)"; done; done)"
  echo "wrk timeouts (no answer within 2 s): $(for s in bevan medplum; do for k in read create update create_32 update_32 search_code search_family; do printf '%s/%s=%s ' $s $k "$(f $s $k 5)"; done; done)"
  echo "Ingest failures: Bevan $(f bevan ingest 2), Medplum $(f medplum ingest 2)."
  echo
  echo "Differences in semantics (the peer is weaker here): Medplum's MemoryRepository keeps data in memory only (no"
  echo "durability, nothing survives a restart) while every Bevan write is committed and fdatasynced before its answer;"
  echo "its searches scan every resource of the type; its string search (family=Smith) is \"contains\" where FHIR (and Bevan)"
  echo "match \"starts with\"; it runs on one Node.js thread."
} | tee "$OUT"
