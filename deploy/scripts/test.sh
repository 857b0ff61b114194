#!/usr/bin/env bash
# Runs every test on a fresh Debian 12 machine: installs packages, builds with warnings as errors,
# runs the whole ctest suite, builds the Debian packages (and, where it may change the machine,
# installs them as a smoke test), builds the unit tests with AddressSanitizer + UBSan and runs them
# again, then cross-builds for arm64 and boots pi-agent on an emulated Raspberry Pi 3.
# Exits non-zero when anything fails.
#   BUILD_DIR (default build), ASAN_BUILD_DIR (default build-asan), ARM64_BUILD_DIR (default
#   build-arm64), JOBS (default 2); PI_INSTALL_TEST=1 (set by CI=true) runs the dpkg -i smoke test,
#   which installs and purges pi-agent and pi-controller system-wide.
set -euo pipefail
cd "$(dirname "$0")/../.."

build_dir=${BUILD_DIR:-build}
asan_dir=${ASAN_BUILD_DIR:-build-asan}
arm64_dir=${ARM64_BUILD_DIR:-build-arm64}
jobs=${JOBS:-2}

deploy/scripts/install-deps.sh

echo "== build ($build_dir)"
# Line tables only (-g1): backtraces keep file and line, and the build is about a fifth faster.
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPI_WERROR=ON \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" -DPI_ARM64_BUILD_DIR="$(realpath -m "$arm64_dir")"
cmake --build "$build_dir" -j "$jobs"

echo "== ctest: unit and integration tests"
status=0
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs" -LE 'bench|pi-emulation|deploy' ||
  status=1

echo "== ctest: deploy (systemd-analyze verify and security of both units, both packages build)"
ctest --test-dir "$build_dir" --output-on-failure --verbose -L deploy || status=1

echo "== ctest: benchmarks (each prints its figures as one JSON line)"
ctest --test-dir "$build_dir" --output-on-failure --verbose -L bench || status=1

echo "== Debian packages (amd64)"
deploy/scripts/package.sh "$build_dir" || status=1
if [[ ${PI_INSTALL_TEST:-} == 1 || ${CI:-} == true ]]; then
  echo "== dpkg -i smoke test of the amd64 packages"
  tests/deploy/deb_smoke_test.sh "$build_dir/packages" || status=1
else
  echo "== dpkg -i smoke test skipped: it installs packages system-wide (PI_INSTALL_TEST=1 runs it)"
fi

echo "== unit tests under AddressSanitizer + UndefinedBehaviorSanitizer ($asan_dir)"
cmake -S . -B "$asan_dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPI_WERROR=ON -DPI_SANITIZE=ON \
  -DPI_BUILD_BENCH=OFF -DCMAKE_CXX_FLAGS_DEBUG="-g1"
cmake --build "$asan_dir" -j "$jobs" --target pi_unit_tests
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir "$asan_dir" -L unit --output-on-failure -j "$jobs" || status=1

echo "== arm64: cross build, packages, pi-agent on an emulated Raspberry Pi 3"
if deploy/scripts/cross-build.sh "$arm64_dir"; then
  ctest --test-dir "$build_dir" -L pi-emulation --no-tests=error --output-on-failure --verbose ||
    status=1
else
  status=1
fi

exit "$status"
