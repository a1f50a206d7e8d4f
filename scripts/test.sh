#!/usr/bin/env bash
# Everything CI runs: generated-code freshness, banned functions, a strict gcc build with every
# test, a strict gcc -O3 build of the server, an ASan+UBSan clang build with every test (unit and
# API), and fuzz-corpus replay.
# The last line is CTest's summary of the sanitizer run.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)

echo "== generated definitions are fresh"
python3 tools/gen_fhir_defs.py --package node_modules/hl7.fhir.r4.examples --out src/fhir/gen --check

echo "== fuzz dictionary is fresh"
python3 tools/gen_fuzz_dict.py --check

echo "== no banned functions in src/"
if git grep -nE '\b(strcpy|sprintf|vsprintf|strcat|atoi|atol|strtok|gets|sscanf)\s*\(' -- src include; then
  echo "banned function used (see docs/craft in shared: use the bv_ helpers)"; exit 1
fi

echo "== gcc strict build + all tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBEVAN_WERROR=ON >/dev/null
cmake --build build -j"$JOBS"
ctest --test-dir build --output-on-failure --no-tests=error -j"$JOBS"

echo "== gcc -O3 build of the server (warnings only the optimiser's analysis finds: -Werror)"
cmake -S . -B build-o3 -DCMAKE_BUILD_TYPE=Release -DBEVAN_WERROR=ON >/dev/null
cmake --build build-o3 -j"$JOBS" --target bevan >/dev/null

echo "== the standalone benchmark programs still compile (bench/hello_mhd.c, bench/durable_floor.c with bench/mhd_bench.h, bench/synclat.c)"
for prog in bench/hello_mhd.c bench/durable_floor.c bench/synclat.c; do
  cc -std=c11 -Wall -Wextra -Werror -fsyntax-only "$prog"
done

echo "== fuzz corpus replay + ${FUZZ_SECONDS:-60}s per target, two at a time (clang, libFuzzer, ASan+UBSan)"
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DBEVAN_FUZZ=ON \
  -DBEVAN_SANITIZE=address,undefined >/dev/null
cmake --build build-fuzz -j"$JOBS"
fuzz_one() {
  local f=$1 name corpus
  name=$(basename "$f"); corpus="fuzz/corpus/${name#fuzz_}"
  [ -d "$corpus" ] || { echo "fuzz $name: no corpus folder $corpus"; return 1; }
  "$f" -runs=0 "$corpus" >/dev/null 2>build-fuzz/"$name".log || { cat build-fuzz/"$name".log; return 1; }
  # New inputs go to a scratch folder, so the in-tree corpus stays the curated, merged one.
  mkdir -p build-fuzz/new-"$name"
  "$f" -max_total_time="${FUZZ_SECONDS:-60}" -max_len=65536 -dict=fuzz/fhir.dict -artifact_prefix=build-fuzz/crash-"$name"- \
    build-fuzz/new-"$name" "$corpus" >/dev/null 2>build-fuzz/"$name".run.log \
    || { tail -50 build-fuzz/"$name".run.log; return 1; }
  echo "fuzz $name: corpus replayed, fuzzed ${FUZZ_SECONDS:-60}s, no crash"
}
export -f fuzz_one
export FUZZ_SECONDS
ls build-fuzz/fuzz_* | grep -v '\.log$' | xargs -P "${FUZZ_JOBS:-2}" -I{} bash -c 'fuzz_one {}'

echo "== clang ASan+UBSan build + all tests (unit and API)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
cmake -S . -B build-asan -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DBEVAN_WERROR=ON \
  -DBEVAN_SANITIZE=address,undefined >/dev/null
cmake --build build-asan -j"$JOBS"
ctest --test-dir build-asan --output-on-failure --no-tests=error -j"$JOBS"
