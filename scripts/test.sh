#!/usr/bin/env bash
# Everything CI runs: generated-code freshness, banned functions, a strict gcc build with every
# test, an ASan+UBSan clang build with every test (unit and API), and fuzz-corpus replay.
# The last line is CTest's summary of the sanitizer run.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)

echo "== generated definitions are fresh"
python3 tools/gen_fhir_defs.py --package node_modules/hl7.fhir.r4.examples --out src/fhir/gen --check

echo "== no banned functions in src/"
if git grep -nE '\b(strcpy|sprintf|vsprintf|strcat|atoi|atol|strtok|gets|sscanf)\s*\(' -- src include; then
  echo "banned function used (see docs/craft in shared: use the bv_ helpers)"; exit 1
fi

echo "== gcc strict build + all tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBEVAN_WERROR=ON >/dev/null
cmake --build build -j"$JOBS"
ctest --test-dir build --output-on-failure --no-tests=error -j"$JOBS"

echo "== fuzz corpus replay (clang, libFuzzer, ASan+UBSan)"
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DBEVAN_FUZZ=ON \
  -DBEVAN_SANITIZE=address,undefined >/dev/null
cmake --build build-fuzz -j"$JOBS"
for f in build-fuzz/fuzz_*; do
  case "$f" in *.log) continue;; esac
  name=$(basename "$f"); corpus="fuzz/corpus/${name#fuzz_}"
  [ -d "$corpus" ] || continue
  "$f" -runs=0 "$corpus" >/dev/null 2>build-fuzz/"$name".log || { cat build-fuzz/"$name".log; exit 1; }
  # New inputs go to a scratch folder, so the in-tree corpus stays the curated, merged one.
  mkdir -p build-fuzz/new-"$name"
  "$f" -max_total_time="${FUZZ_SECONDS:-20}" -max_len=65536 build-fuzz/new-"$name" "$corpus" >/dev/null \
    2>build-fuzz/"$name".run.log \
    || { tail -50 build-fuzz/"$name".run.log; exit 1; }
  echo "fuzz $name: corpus replayed, fuzzed ${FUZZ_SECONDS:-20}s, no crash"
done

echo "== clang ASan+UBSan build + all tests (unit and API)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
cmake -S . -B build-asan -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DBEVAN_WERROR=ON \
  -DBEVAN_SANITIZE=address,undefined >/dev/null
cmake --build build-asan -j"$JOBS"
ctest --test-dir build-asan --output-on-failure --no-tests=error -j"$JOBS"
