#!/bin/sh
# Ceiling for durable writes: bench/durable_floor.c (libmicrohttpd, each POST acknowledged only after
# its group's fdatasync, nothing else done) under the same wrk load as Bevan's create benchmark.
# Usage: bench/durable-floor.sh [BYTES...]   (bytes appended per request; default "4096 40960":
#   one page, and about what a Bevan create adds to the WAL: 36 frames per group of 3.7 creates)
# Env: CONNS (default "8 32"), DUR seconds (default 10), RUNS (default 1), THREADS (default nproc).
# Prints writes/s, p50 and p99 per run. Never a timed assertion: a figure for bench/README.md.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$out"' EXIT INT TERM
cc -O2 -std=c11 -Wall -Wextra "$here/durable_floor.c" -lmicrohttpd -lpthread -o "$out/durable_floor"
dur=${DUR:-10}; runs=${RUNS:-1}; threads=${THREADS:-$(nproc)}
[ $# -gt 0 ] || set -- 4096 40960
for bytes in "$@"; do
  for c in ${CONNS:-8 32}; do
    r=1
    while [ "$r" -le "$runs" ]; do
      port=$((20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 20000))
      "$out/durable_floor" "$port" "$threads" "$bytes" "$out/log" $((dur + 20)) >"$out/server.log" 2>&1 &
      pid=$!
      i=0
      until grep -q listening "$out/server.log" 2>/dev/null; do
        i=$((i + 1)); [ "$i" -lt 100 ] || { cat "$out/server.log"; exit 1; }; sleep 0.1
      done
      wrk -t2 -c"$c" -d1s -s "$here/wrk/create.lua" "http://127.0.0.1:$port/" >/dev/null
      timeout $((dur + 10)) wrk -t2 -c"$c" -d"${dur}s" --latency -s "$here/wrk/create.lua" "http://127.0.0.1:$port/" >"$out/wrk.txt"
      kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; pid=
      awk -v b="$bytes" -v c="$c" -v r="$r" '/^Requests\/sec/ {rps=$2} $1 == "50%" {p50=$2} $1 == "99%" {p99=$2}
        END {printf "bytes %s, %s connections, run %s: %d durable writes/s, p50 %s, p99 %s\n", b, c, r, rps, p50, p99}' "$out/wrk.txt"
      r=$((r + 1))
    done
  done
done
