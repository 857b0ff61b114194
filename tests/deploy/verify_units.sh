#!/usr/bin/env bash
# Checks deploy/systemd/*.service with systemd-analyze: `verify` must print nothing, and the
# offline security analysis must rate each unit OK or better.
# Usage: verify_units.sh BUILD_DIR   (the built pi-agent and pi-controller stand in for /usr/bin)
set -euo pipefail

if (($# != 1)); then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
if ! command -v systemd-analyze >/dev/null; then
  echo "FAIL: systemd-analyze not found (Debian package systemd)" >&2
  exit 1
fi
build_dir=$(realpath "$1")
units_dir=$(realpath "$(dirname "$0")/../../deploy/systemd")

declare -A binaries=(
  [pi-agent]="$build_dir/node-agent/pi-agent"
  [pi-controller]="$build_dir/control-plane/pi-controller"
)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failed=0
for unit in pi-agent pi-controller; do
  binary=${binaries[$unit]}
  if [[ ! -x $binary ]]; then
    echo "FAIL $unit: $binary is not built" >&2
    failed=1
    continue
  fi
  # verify checks that ExecStart's binary exists, so the copy points at the built one. Each copy
  # gets its own directory: verify loads every unit beside the one it is given.
  copy="$work/$unit/$unit.service"
  mkdir "$work/$unit"
  sed "s#^ExecStart=/usr/bin/$unit #ExecStart=$binary #" "$units_dir/$unit.service" >"$copy"
  if ! grep -q "^ExecStart=$binary " "$copy"; then
    echo "FAIL $unit: no 'ExecStart=/usr/bin/$unit ' line to point at the build" >&2
    failed=1
    continue
  fi

  # systemd-analyze verify exits 0 on unknown keys and unparsable values, only warning about
  # them, so any output fails. Users and groups missing on this machine print nothing.
  verify_status=0
  verify_output=$(systemd-analyze verify "$copy" 2>&1) || verify_status=$?
  if ((verify_status != 0)); then
    echo "FAIL $unit: systemd-analyze verify exited $verify_status" >&2
    failed=1
  fi
  if [[ -n $verify_output ]]; then
    echo "FAIL $unit: systemd-analyze verify printed:" >&2
    printf '%s\n' "$verify_output" >&2
    failed=1
  else
    echo "ok   $unit: systemd-analyze verify"
  fi

  security_status=0
  security_output=$(systemd-analyze security --no-pager --offline=true "$copy" 2>&1) ||
    security_status=$?
  if ((security_status != 0)); then
    printf '%s\n' "$security_output" >&2
    echo "FAIL $unit: systemd-analyze security exited $security_status" >&2
    failed=1
    continue
  fi
  # "→ Overall exposure level for pi-agent.service: 1.5 OK 🙂"
  overall=$(grep -o 'Overall exposure level for .*' <<<"$security_output" || true)
  rating=$(sed -nE 's/.*: [0-9]+\.[0-9] ([A-Z]+).*/\1/p' <<<"$overall")
  case $rating in
    PERFECT | SAFE | OK)
      echo "ok   $overall"
      ;;
    *)
      printf '%s\n' "$security_output" >&2
      echo "FAIL $unit: exposure rated '${rating:-unreadable}', worse than OK: $overall" >&2
      failed=1
      ;;
  esac
done

exit "$failed"
