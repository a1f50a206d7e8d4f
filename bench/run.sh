#!/usr/bin/env bash
# Bevan core benchmarks (issue 2): measured, never asserted.
#   read by id      wrk -t2 -c16 -d10s --latency   GET /fhir/Patient/{id}
#   durable create  wrk -t2 -c8  -d10s --latency   POST /fhir/Patient (small Patient, synchronous=FULL),
#                   then at 16 and 32 connections for reference; GET /healthz's sync figures of the run
#   ingest          node bench/ingest.mjs: the Synthea sample transaction bundles, 3 workers
#   idle RSS        VmRSS of the server after start and after the load
#   ceiling         bench/hello.sh (hello-world libmicrohttpd under the same wrk), when present
# Builds if needed, runs bevan on 127.0.0.1 with a port file and a temporary data folder, prints a
# table and writes it (with the machine and the exact commands) to bench/results/YYYY-MM-DD-core.md.
# Environment: DURATION (default 10s), WORKERS (3), ROUNDS (5), THREADS (bevan --threads, default
# nproc), BEVAN_BIN (default build/bevan), SYNTHEA (default ../shared/data/synthea-r4), NO_HELLO=1,
# SWEEP (connection counts of the reference create runs after the one at 8; default "16 32", "" for none).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
BIN=${BEVAN_BIN:-$root/build/bevan}
DURATION=${DURATION:-10s}
WORKERS=${WORKERS:-3}
ROUNDS=${ROUNDS:-5}
THREADS=${THREADS:-}
SWEEP=${SWEEP-16 32}
SYNTHEA=${SYNTHEA:-$root/../shared/data/synthea-r4}

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
command -v node >/dev/null || { echo "node is missing" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is missing" >&2; exit 1; }

if [ -z "${BEVAN_BIN:-}" ]; then
    echo "== build (incremental)"
    cmake -S "$root" -B "$root/build" -DBEVAN_WERROR=ON >/dev/null
    cmake --build "$root/build" -j"$(nproc)" >/dev/null
fi
[ -x "$BIN" ] || { echo "no binary at $BIN" >&2; exit 1; }

work=$(mktemp -d /tmp/bevan-bench.XXXXXX)
PID=""
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -KILL "$PID" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# start_server NAME: fresh data folder; sets PID PORT BASE
start_server() {
    local name=$1
    rm -f "$work/$name.port"
    local extra=()
    [ -n "$THREADS" ] && extra=(--threads "$THREADS")
    # --auth off: the figures are the store and HTTP path; token checks are measured apart (docs/security.md)
    "$BIN" serve --listen 127.0.0.1:0 --port-file "$work/$name.port" --data "$work/$name.data" --auth off "${extra[@]}" \
        >"$work/$name.out" 2>"$work/$name.err" &
    PID=$!
    local i=0
    until [ -s "$work/$name.port" ]; do
        i=$((i + 1))
        if [ "$i" -gt 200 ] || ! kill -0 "$PID" 2>/dev/null; then
            echo "bevan did not start:" >&2; cat "$work/$name.err" >&2; exit 1
        fi
        sleep 0.05
    done
    PORT=$(cat "$work/$name.port")
    BASE="http://127.0.0.1:$PORT/fhir"
}

stop_server() {
    kill -TERM "$PID"
    local i=0
    while kill -0 "$PID" 2>/dev/null; do
        i=$((i + 1)); [ "$i" -lt 600 ] || { echo "bevan did not stop in 30 s" >&2; kill -KILL "$PID"; break; }
        sleep 0.05
    done
    wait "$PID" && STOP_RC=0 || STOP_RC=$?
    PID=""
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# CPU ticks per thread (name tid ticks), for checking how the load spreads over MHD's pool.
thread_ticks() {
    for t in /proc/"$1"/task/*; do
        [ -r "$t/stat" ] || continue
        # fields after the ")" : state(3) ... utime(14) stime(15)
        awk -v tid="${t##*/}" '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print tid, f[12] + f[13] }' "$t/stat"
    done | sort -n
}
thread_cpu_report() { # before after seconds
    join <(echo "$1") <(echo "$2") | awk -v secs="$3" -v hz="$(getconf CLK_TCK)" \
        '{ d = ($3 - $2) / hz / secs * 100; if (d >= 1) printf "tid %s %.0f%%; ", $1, d }'
}

wrk_field() { # file field
    case $2 in
        rps) awk '/^Requests\/sec/ {print $2}' "$1" ;;
        p50) awk '$1 == "50%" {print $2}' "$1" ;;
        p99) awk '$1 == "99%" {print $2}' "$1" ;;
        non2xx) awk '/Non-2xx/ {print $NF}' "$1" | grep . || echo 0 ;;
        errors) awk '/Socket errors/ {print}' "$1" | grep . || echo none ;;
    esac
}

date_iso=$(date +%F)
machine="$(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.1f GB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr)"
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$root" status --porcelain 2>/dev/null | grep -q . && echo " (uncommitted changes)" || true)
echo "== machine: $machine; commit $commit$dirty"

# ---- ceiling ----
hello_line="not measured (bench/hello.sh absent)"
if [ -x "$here/hello.sh" ] && [ -z "${NO_HELLO:-}" ]; then
    echo "== ceiling: bench/hello.sh"
    if "$here/hello.sh" >"$work/hello.txt" 2>&1; then
        cat "$work/hello.txt"
        hello_line=$(grep -E '^run 1:' "$work/hello.txt" | sed 's/^run 1: //')
    else
        cat "$work/hello.txt"; hello_line="hello.sh failed"
    fi
fi

# ---- read and create on one server ----
echo "== bevan serve (read, create)"
start_server rc
sleep 1
rss_start=$(rss_kb "$PID")
pid_body='{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}],"name":[{"family":"Jones","given":["Ada"]}],"gender":"female","birthDate":"1961-04-12"}'
loc=$(curl -sS -o /dev/null -D - -X POST "$BASE/Patient" -H 'Content-Type: application/fhir+json' -d "$pid_body" \
      | tr -d '\r' | awk 'tolower($1) == "location:" {print $2}')
pid_id=$(echo "$loc" | sed -E 's#.*/Patient/([^/]+)/_history/.*#\1#')
read_url="$BASE/Patient/$pid_id"
curl -sS -f "$read_url" >/dev/null
read_bytes=$(curl -sS "$read_url" | wc -c)
cmd_read="wrk -t2 -c16 -d$DURATION --latency -s bench/wrk/read.lua $read_url"
wrk -t2 -c16 -d2s -s "$here/wrk/read.lua" "$read_url" >/dev/null   # warm-up
before=$(thread_ticks "$PID")
secs=${DURATION%s}
wrk -t2 -c16 -d"$DURATION" --latency -s "$here/wrk/read.lua" "$read_url" >"$work/read.txt"
after=$(thread_ticks "$PID")
read_threads=$(thread_cpu_report "$before" "$after" "$secs")
cat "$work/read.txt"
echo "per-thread CPU during read: $read_threads"

cmd_create="wrk -t2 -c8 -d$DURATION --latency -s bench/wrk/create.lua $BASE/Patient"
before=$(thread_ticks "$PID")
curl -sS "http://127.0.0.1:$PORT/healthz" >"$work/health0.json"
wrk -t2 -c8 -d"$DURATION" --latency -s "$here/wrk/create.lua" "$BASE/Patient" >"$work/create.txt"
curl -sS "http://127.0.0.1:$PORT/healthz" >"$work/health1.json"
after=$(thread_ticks "$PID")
create_threads=$(thread_cpu_report "$before" "$after" "$secs")
cat "$work/create.txt"
echo "per-thread CPU during create: $create_threads"
# the server's own view of the run: group sizes and how long the WAL syncs took (docs/operations.md)
create_durability=$(node "$here/health-diff.mjs" "$work/health0.json" "$work/health1.json")
echo "durable-write path during create: $create_durability"
# Reference: the same creates at more connections. At 8 a create is bound by its latency (8 in
# flight at a time); more connections show what the server does when it is not.
sweep_rows=""
for conns in $SWEEP; do
    wrk -t2 -c"$conns" -d"$DURATION" --latency -s "$here/wrk/create.lua" "$BASE/Patient" >"$work/create-$conns.txt"
    sweep_rows="$sweep_rows| durable create, $conns connections | $(wrk_field "$work/create-$conns.txt" rps) creates/s, p50 $(wrk_field "$work/create-$conns.txt" p50), p99 $(wrk_field "$work/create-$conns.txt" p99) (non-2xx: $(wrk_field "$work/create-$conns.txt" non2xx)) | (reference) | |
"
    echo "create at $conns connections: $(wrk_field "$work/create-$conns.txt" rps)/s"
done
created=$(curl -sS "$BASE/Patient?_summary=count" | sed -E 's/.*"total":([0-9]+).*/\1/')
sleep 2
rss_after=$(rss_kb "$PID")
hwm=$(hwm_kb "$PID")
stop_server
rc_stop=$STOP_RC
db_bytes=$(du -sb "$work/rc.data" | awk '{print $1}')

# ---- ingest on a fresh server ----
ingest_json='{"skipped":"../shared/data/synthea-r4 absent"}'
ingest_rps="n/a"
rss_ingest="n/a"
cmd_ingest="node bench/ingest.mjs http://127.0.0.1:PORT/fhir $SYNTHEA $WORKERS $ROUNDS"
if [ -d "$SYNTHEA" ]; then
    echo "== bevan serve (ingest)"
    start_server ing
    ingest_json=$(node "$here/ingest.mjs" "$BASE" "$SYNTHEA" "$WORKERS" "$ROUNDS")
    echo "$ingest_json"
    ingest_rps=$(echo "$ingest_json" | sed -E 's/.*"resources_per_s":([0-9]+).*/\1/')
    sleep 2
    rss_ingest=$(mb "$(rss_kb "$PID")")
    stop_server
fi

read_rps=$(wrk_field "$work/read.txt" rps); read_p50=$(wrk_field "$work/read.txt" p50); read_p99=$(wrk_field "$work/read.txt" p99)
cr_rps=$(wrk_field "$work/create.txt" rps); cr_p50=$(wrk_field "$work/create.txt" p50); cr_p99=$(wrk_field "$work/create.txt" p99)
read_non2xx=$(wrk_field "$work/read.txt" non2xx); cr_non2xx=$(wrk_field "$work/create.txt" non2xx)

verdict() { # value target [lower-is-better]
    awk -v v="$1" -v t="$2" -v low="${3:-}" 'BEGIN { if (v == "" || v == "n/a") { print "n/a"; exit }
        ok = low ? (v + 0 < t + 0) : (v + 0 >= t + 0); print ok ? "met" : "MISSED" }'
}
p99_ms() { # "1.23ms" / "850.00us" / "1.20s" -> ms
    awk -v x="$1" 'BEGIN { v = x + 0; if (x ~ /us$/) v /= 1000; else if (x ~ /ms$/) v += 0; else if (x ~ /s$/) v *= 1000; print v }'
}

table=$(cat <<EOF
| measure | result | target | |
|---|---|---|---|
| read by id, 16 connections | $read_rps req/s, p50 $read_p50, p99 $read_p99 (non-2xx: $read_non2xx) | ≥ 30,000 req/s, p99 < 3 ms | $(verdict "$read_rps" 30000) / $(verdict "$(p99_ms "$read_p99")" 3 low) |
| durable create, 8 connections | $cr_rps creates/s, p50 $cr_p50, p99 $cr_p99 (non-2xx: $cr_non2xx) | ≥ 8,000/s | $(verdict "$cr_rps" 8000) |
${sweep_rows}| transaction ingest (Synthea, $WORKERS workers, $ROUNDS rounds) | $ingest_rps resources/s | ≥ 10,000/s | $(verdict "$ingest_rps" 10000) |
| idle RSS after start | $(mb "$rss_start") MB | < 30 MB | $(verdict "$(mb "$rss_start")" 30 low) |
| idle RSS after read+create load | $(mb "$rss_after") MB (peak $(mb "$hwm") MB) | (reference: page caches, at most 16 MiB + 8 × 4 MiB, and allocator arenas after the load) | |
| idle RSS after ingest | $rss_ingest MB | (reference, as above) | |
| ceiling: hello-world libmicrohttpd | $hello_line | (reference) | |
EOF
)

echo
echo "$table"
out="$root/bench/results/$date_iso-core.md"
mkdir -p "$root/bench/results"
{
    echo "# Core benchmarks, $date_iso"
    echo
    echo "- machine: $machine"
    echo "- commit: $commit$dirty; binary: ${BIN#$root/}; bevan threads: ${THREADS:-nproc}"
    echo "- wrk and bevan share the machine's CPUs; synchronous=FULL (the default: every 201 is durable)"
    echo "- server stopped with SIGTERM after the load: exit status $rc_stop; data folder after the create run: $((db_bytes / 1024 / 1024)) MB, $created Patients"
    echo
    echo "$table"
    echo
    echo "Per-thread CPU (share of one core) during read: $read_threads"
    echo
    echo "Per-thread CPU during create: $create_threads"
    echo
    echo "Durable-write path during the create run at 8 connections (GET /healthz before and after): $create_durability"
    echo
    echo "Read body size: $read_bytes bytes. Ingest: \`$ingest_json\`"
    echo
    echo "## Commands"
    echo
    echo '```sh'
    echo "bench/run.sh    # DURATION=$DURATION WORKERS=$WORKERS ROUNDS=$ROUNDS"
    echo "build/bevan serve --listen 127.0.0.1:0 --port-file \$TMP/port --data \$TMP/data --auth off${THREADS:+ --threads $THREADS}"
    echo "$cmd_read"
    echo "$cmd_create"
    for conns in $SWEEP; do echo "${cmd_create/-c8/-c$conns}"; done
    echo "$cmd_ingest"
    echo "grep VmRSS /proc/\$PID/status"
    [ -x "$here/hello.sh" ] && echo "bench/hello.sh"
    echo '```'
    echo
    echo "## Raw output"
    echo
    echo '```'
    echo "--- read"; cat "$work/read.txt"
    echo "--- create"; cat "$work/create.txt"
    for conns in $SWEEP; do echo "--- create, $conns connections"; cat "$work/create-$conns.txt"; done
    [ -f "$work/hello.txt" ] && { echo "--- hello.sh"; cat "$work/hello.txt"; }
    echo '```'
} >"$out"
echo
echo "written to ${out#$root/}"
