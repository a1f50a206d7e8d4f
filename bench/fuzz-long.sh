#!/usr/bin/env bash
# Long fuzzing: every libFuzzer target for SECONDS (default 3600) each, FUZZ_JOBS (default 2) at a
# time, with the FHIR dictionary; new inputs go to build-fuzz/new-<target>/, crashes to
# build-fuzz/crash-<target>-*. A crash: minimise it (-minimize_crash=1), add it to
# fuzz/corpus/<target>/ under a descriptive name, fix, and replay (-runs=0).
# To fold new coverage into the curated corpus (keep it to a few hundred KB per target):
#   build-fuzz/fuzz_X -merge=1 fuzz/corpus/X build-fuzz/new-fuzz_X
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-${FUZZ_SECONDS:-3600}}
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DBEVAN_FUZZ=ON \
  -DBEVAN_SANITIZE=address,undefined >/dev/null
cmake --build build-fuzz -j2
python3 tools/gen_fuzz_dict.py --check
run() {
  local f=$1 name; name=$(basename "$f")
  mkdir -p build-fuzz/new-"$name"
  echo "$(date -u +%T) $name: ${SECONDS_EACH}s"
  "$f" -max_total_time="$SECONDS_EACH" -max_len=65536 -dict=fuzz/fhir.dict -print_final_stats=1 \
    -artifact_prefix=build-fuzz/crash-"$name"- build-fuzz/new-"$name" fuzz/corpus/"${name#fuzz_}" \
    >build-fuzz/"$name".long.log 2>&1 && echo "$name: no crash ($(grep -m1 stat::number_of_executed_units build-fuzz/"$name".long.log))" \
    || { echo "$name: CRASH"; tail -40 build-fuzz/"$name".long.log; return 1; }
}
export -f run
export SECONDS_EACH
ls build-fuzz/fuzz_* | grep -v '\.log$' | xargs -P "${FUZZ_JOBS:-2}" -I{} bash -c 'run {}'
