#!/usr/bin/env bash
# Runs every test on a fresh Debian 12 machine: installs packages, builds with warnings as errors,
# runs the whole ctest suite, then builds the unit tests with AddressSanitizer + UBSan and runs them
# again. Exits non-zero when anything fails.
#   BUILD_DIR (default build), ASAN_BUILD_DIR (default build-asan), JOBS (default 2)
set -euo pipefail
cd "$(dirname "$0")/../.."

build_dir=${BUILD_DIR:-build}
asan_dir=${ASAN_BUILD_DIR:-build-asan}
jobs=${JOBS:-2}

deploy/scripts/install-deps.sh

echo "== build ($build_dir)"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPI_WERROR=ON
cmake --build "$build_dir" -j "$jobs"

echo "== ctest: unit and integration tests"
status=0
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs" -LE bench || status=1

echo "== ctest: benchmarks (each prints its figures as one JSON line)"
ctest --test-dir "$build_dir" --output-on-failure --verbose -L bench || status=1

echo "== unit tests under AddressSanitizer + UndefinedBehaviorSanitizer ($asan_dir)"
cmake -S . -B "$asan_dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPI_WERROR=ON -DPI_SANITIZE=ON \
  -DPI_BUILD_BENCH=OFF
cmake --build "$asan_dir" -j "$jobs" --target pi_unit_tests
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir "$asan_dir" -L unit --output-on-failure -j "$jobs" || status=1

exit "$status"
