#!/usr/bin/env bash
# Installs every Debian 12 package the build, the tests and the local run need; with arguments,
# installs those packages instead (install-cross-deps.sh uses it for the arm64 ones).
#   deploy/scripts/install-deps.sh [PACKAGE...]
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libssl-dev openssl libgpiod-dev nlohmann-json3-dev libboost-dev libfmt-dev libspdlog-dev
  libcli11-dev libabsl-dev libre2-dev libsqlite3-dev catch2 beanstalkd
  python3 python3-grpcio python3-protobuf systemd adduser file procps
)
(($# == 0)) || packages=("$@")

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
echo "install-deps: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
  "${missing[@]}"
