#!/usr/bin/env bash
# Builds the Debian packages pi-agent and pi-controller from an already built tree (native, or the
# arm64 cross build) without rebuilding anything, and prints what each package holds.
#   deploy/scripts/package.sh [BUILD_DIR (default build)] [OUT_DIR (default BUILD_DIR/packages)]
set -euo pipefail

build_dir=$(realpath "${1:-build}")
out_dir=${2:-$build_dir/packages}
config=$build_dir/CPackConfig.cmake

if [[ ! -f $config ]]; then
  echo "package.sh: $config missing; configure and build $build_dir first" >&2
  exit 2
fi
mkdir -p "$out_dir"
out_dir=$(realpath "$out_dir")

# cpack stages each package under OUT_DIR/_CPack_Packages; keep OUT_DIR holding only the .debs.
staging=$out_dir/_CPack_Packages
trap 'rm -rf "$staging"' EXIT

# A package of an older version left beside the new one would be a second candidate for
# deb_smoke_test.sh and apt; other architectures' packages stay.
arch=$(sed -n 's/^set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE "\(.*\)")$/\1/p' "$config")
rm -f "$out_dir"/pi-agent_*_"$arch".deb "$out_dir"/pi-controller_*_"$arch".deb

log=$(cpack -G DEB --config "$config" -B "$out_dir" 2>&1) || {
  echo "$log" >&2
  exit 1
}
mapfile -t debs < <(sed -n 's/^CPack: - package: \(.*\.deb\) generated\.$/\1/p' <<<"$log")
if ((${#debs[@]} == 0)); then
  echo "$log" >&2
  echo "package.sh: cpack reported no package" >&2
  exit 1
fi

for deb in "${debs[@]}"; do
  echo "== $deb ($(du -h "$deb" | cut -f1))"
  dpkg-deb -f "$deb" Package Architecture Depends
  echo "Files: $(dpkg-deb -c "$deb" | grep -c '^-')"
done
