#!/usr/bin/env bash
# Query plans of the benchmark's typical searches: serves DATA with BEVAN_DEBUG=1 (the store logs
# every statement it prepares), sends the first request of each query once, and runs
# EXPLAIN QUERY PLAN on each statement that request prepared (the plan does not depend on the
# bound values: no ANALYZE statistics). A line "SCAN <table>" without an index is flagged NO INDEX
# and the script exits 1.   DATA=dir  BEVAN_BIN=build/bevan  QUERIES="name ..."
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BEVAN_BIN:-build/bevan}
DATA=${DATA:-/tmp/bevan-search-bench}
DB="$DATA/bevan.db"
[ -f "$DB" ] || { echo "no store at $DB: run bench/search/run.sh first (or DATA=...)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/bevan-plans-XXXXXX)
trap 'if [ -n "${PID:-}" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi; rm -rf "$WORK"' EXIT
node bench/search/make-paths.mjs "$DB" "$WORK/paths" 3 >"$WORK/names"
NAMES=${QUERIES:-$(cat "$WORK/names")}
BEVAN_DEBUG=1 "$BIN" serve --listen 127.0.0.1:0 --port-file "$WORK/port" --data "$DATA" --rate-limit 0 --auth off 2>"$WORK/serve.log" &
PID=$!
for _ in $(seq 1 200); do [ -s "$WORK/port" ] && break; sleep 0.1; done
URL="http://127.0.0.1:$(cat "$WORK/port")"
bad=0
for q in $NAMES; do
  line=$(head -1 "$WORK/paths/$q.txt")
  before=$(wc -l <"$WORK/serve.log")
  if [[ "$line" == POST$'\t'* ]]; then
    p=$(cut -f2 <<<"$line"); body=$(cut -f3- <<<"$line")
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/x-www-form-urlencoded' --data-binary "$body" "$URL$p")
  else
    code=$(curl -s -o /dev/null -w '%{http_code}' "$URL$line")
  fi
  sleep 0.2
  echo "== $q (HTTP $code): $(head -c 150 <<<"$line" | tr '\t' ' ')"
  tail -n +"$((before + 1))" "$WORK/serve.log" | sed -n 's/.*store: prepare //p' | grep -E '^SELECT' >"$WORK/sql" || true
  while IFS= read -r sql; do
    plan=$(sqlite3 -readonly "$DB" "EXPLAIN QUERY PLAN $sql" 2>&1 || true)
    echo "  SQL: ${sql:0:200}$([ ${#sql} -gt 200 ] && echo ...)"
    sed 's/^/    /' <<<"$plan"
    # a co-routine (a VALUES list, a subquery) is not a stored table: "SCAN v" of "CO-ROUTINE v" is fine
    co=$(sed -n 's/.*CO-ROUTINE \([a-z_0-9]*\).*/\1/p' <<<"$plan" | paste -sd'|' -)
    stored=$(grep -E 'SCAN [a-z_0-9]+$|SCAN [a-z_0-9]+ *\(|SCAN (resources|ix_[a-z]+|history) [a-z0-9]*$' <<<"$plan" \
      | { if [ -n "$co" ]; then grep -Ev "SCAN ($co)\$"; else cat; fi; } || true)
    if [ -n "$stored" ]; then
      echo "  NO INDEX: a table is scanned without an index"
      bad=1
    fi
  done <"$WORK/sql"
done
exit $bad
