#!/bin/sh
# Ceiling: a hello-world libmicrohttpd server (bench/hello_mhd.c) under wrk on 127.0.0.1.
# Usage: bench/hello.sh [PORT] [THREADS] [RUNS]   (defaults 18931, nproc, 1)
# Prints req/s and p99 per run. Never a timed assertion: a figure for bench/README.md.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
port=${1:-18931}
threads=${2:-$(nproc)}
runs=${3:-1}
out=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$out"' EXIT INT TERM

cc -O2 -std=c11 -Wall -Wextra "$here/hello_mhd.c" -lmicrohttpd -o "$out/hello_mhd"
# the server exits by itself after 15 s per run plus margin
"$out/hello_mhd" "$port" "$threads" $((runs * 15 + 10)) >"$out/server.log" 2>&1 &
pid=$!
i=0
until grep -q listening "$out/server.log" 2>/dev/null; do
    i=$((i + 1)); [ "$i" -lt 50 ] || { cat "$out/server.log"; exit 1; }; sleep 0.1
done
curl -sv "http://127.0.0.1:$port/" "http://127.0.0.1:$port/" 2>&1 | grep -q "Re-using existing connection" \
    && echo "keep-alive: confirmed (curl reused the connection)" || echo "keep-alive: NOT confirmed"

echo "server threads: $threads; command: wrk -t2 -c16 -d10s --latency http://127.0.0.1:$port/"
r=1
while [ "$r" -le "$runs" ]; do
    timeout 30 wrk -t2 -c16 -d10s --latency "http://127.0.0.1:$port/" >"$out/wrk.txt" &
    wpid=$!
    # per-thread CPU mid-run: one busy MHD-worker and idle others means unbalanced connections (craft.md §4)
    sleep 4
    workers=$(top -H -b -n2 -d1 -p "$pid" 2>/dev/null | awk '/^top -/ {f++} f == 2 && /MHD-worker/ {printf "%s%% ", $9}')
    wait "$wpid"
    rps=$(awk '/^Requests\/sec/ {print $2}' "$out/wrk.txt")
    p99=$(awk '$1 == "99%" {print $2}' "$out/wrk.txt")
    echo "run $r: $rps req/s, p99 $p99, worker CPU ${workers:-n/a}(load $(cut -d' ' -f1 /proc/loadavg))"
    r=$((r + 1))
done
