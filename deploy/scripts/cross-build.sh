#!/usr/bin/env bash
# Cross-compiles pi-agent, pi-controller, pictl and the emulated-Pi probe for arm64 (64-bit Raspberry
# Pi OS, Debian arm64) from this CMake tree, then builds the arm64 Debian packages.
#   deploy/scripts/cross-build.sh [BUILD_DIR]     (default build-arm64; JOBS defaults to 2)
# Packages land in BUILD_DIR/packages.
set -euo pipefail
cd "$(dirname "$0")/../.."

build_dir=${1:-build-arm64}
jobs=${JOBS:-2}

deploy/scripts/install-cross-deps.sh

echo "== arm64 cross build ($build_dir)"
cmake -S . -B "$build_dir" -G Ninja \
  -DCMAKE_TOOLCHAIN_FILE="$PWD/deploy/cross/aarch64-linux-gnu.cmake" \
  -DCMAKE_BUILD_TYPE=Release -DPI_WERROR=ON \
  -DPI_BUILD_TESTS=OFF -DPI_BUILD_BENCH=OFF -DPI_BUILD_EMULATION_PROBE=ON
cmake --build "$build_dir" -j "$jobs" --target pi-agent pi-controller pictl pi-probe
aarch64-linux-gnu-readelf -h "$build_dir/node-agent/pi-agent" | grep -E "Class|Machine"

echo "== arm64 packages"
deploy/scripts/package.sh "$build_dir"
