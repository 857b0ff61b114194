#!/usr/bin/env bash
# Installs what cross-building for arm64 (Raspberry Pi OS / Debian arm64) needs on a Debian 12 amd64
# machine: the aarch64 cross compiler and the :arm64 -dev packages through Debian multiarch, plus
# QEMU and cpio for the emulated-Pi test. Multi-Arch "same" packages keep the amd64 twins at the same
# version, so apt may upgrade a few host packages (libssl-dev, krb5, linux-libc-dev); that is expected.
set -euo pipefail
cd "$(dirname "$0")/../.."

packages=(
  g++-aarch64-linux-gnu binutils-aarch64-linux-gnu
  libgrpc++-dev:arm64 libprotobuf-dev:arm64 libssl-dev:arm64 libgpiod-dev:arm64
  libabsl-dev:arm64 libre2-dev:arm64 libsqlite3-dev:arm64 libfmt-dev:arm64 libspdlog-dev:arm64
  libboost-dev:arm64 nlohmann-json3-dev libcli11-dev
  qemu-system-arm cpio
)

sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "install-cross-deps: adding the arm64 architecture"
  "${sudo[@]}" dpkg --add-architecture arm64
fi

deploy/scripts/install-deps.sh "${packages[@]}"
