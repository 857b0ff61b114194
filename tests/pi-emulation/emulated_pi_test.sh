#!/usr/bin/env bash
# Boots an emulated Raspberry Pi 3 (qemu-system-aarch64 -M raspi3b) with Debian's arm64 kernel and the
# Pi 3 device tree, and an initramfs holding busybox, the cross-built pi-agent (real libgpiod backend)
# and pi-probe. Inside the guest pi-probe checks the agent over loopback and mTLS and prints
# "PI-EMULATION PASS"; this script fails on a timeout or when that line is missing.
#   emulated_pi_test.sh ARM64_BUILD_DIR WORK_DIR
# The kernel and busybox are Debian arm64 packages, downloaded into WORK_DIR/debs once and extracted
# there (never installed). Needs deploy/scripts/install-cross-deps.sh (QEMU, cpio, the arm64 libraries).
# BOOT_TIMEOUT (seconds, default 300) bounds the emulated run.
set -euo pipefail

die() {
  echo "emulated_pi_test: $*" >&2
  exit 1
}

(($# == 2)) || die "usage: $0 ARM64_BUILD_DIR WORK_DIR"
source_dir=$(cd "$(dirname "$0")/../.." && pwd)
arm64_dir=$(realpath -m "$1")
work=$(realpath -m "$2")
boot_timeout=${BOOT_TIMEOUT:-300}
triplet=aarch64-linux-gnu

for tool in qemu-system-aarch64 "$triplet-readelf" cpio apt-get dpkg-deb openssl; do
  command -v "$tool" >/dev/null ||
    die "$tool is missing: run deploy/scripts/install-cross-deps.sh"
done
agent=$arm64_dir/node-agent/pi-agent
probe=$arm64_dir/tests/pi-emulation/pi-probe
for binary in "$agent" "$probe"; do
  [[ -x $binary ]] || die "$binary is missing: run deploy/scripts/cross-build.sh $arm64_dir"
  "$triplet-readelf" -h "$binary" | grep -q 'Machine:.*AArch64' || die "$binary is not an arm64 program"
done

# --- Debian's arm64 kernel (with the Pi 3 device tree and the watchdog module) and busybox ---------
debs=$work/debs
mkdir -p "$debs"
kernel_package=$(apt-cache depends linux-image-arm64:arm64 |
  awk '/Depends: linux-image-[0-9]/ { sub(":arm64", "", $2); print $2; exit }')
[[ -n $kernel_package ]] || die "apt knows no linux-image-arm64:arm64 (is arm64 added with dpkg --add-architecture?)"

fetch() {
  local package=$1
  local found=("$debs/${package}"_*_arm64.deb)
  if [[ ! -f ${found[0]} ]]; then
    echo "emulated_pi_test: downloading $package:arm64" >&2
    (cd "$debs" && apt-get download -q "$package:arm64" 2>&1 |
      grep -v '^W: Download is performed unsandboxed' >&2) || true
    found=("$debs/${package}"_*_arm64.deb)
    [[ -f ${found[0]} ]] || die "could not download $package:arm64"
  fi
  echo "${found[0]}"
}
kernel_deb=$(fetch "$kernel_package")
busybox_deb=$(fetch busybox-static)

kernel_version=${kernel_package#linux-image-}
extracted=$work/extracted-$kernel_version
if [[ ! -f $extracted/done ]]; then
  rm -rf "$extracted"
  mkdir -p "$extracted"
  dpkg-deb --fsys-tarfile "$kernel_deb" | tar -x -C "$extracted" \
    "./boot/vmlinuz-$kernel_version" \
    "./usr/lib/linux-image-$kernel_version/broadcom/bcm2837-rpi-3-b.dtb" \
    "./lib/modules/$kernel_version/kernel/drivers/watchdog/bcm2835_wdt.ko"
  dpkg-deb --fsys-tarfile "$busybox_deb" | tar -x -C "$extracted" ./bin/busybox
  touch "$extracted/done"
fi
kernel=$extracted/boot/vmlinuz-$kernel_version
dtb=$extracted/usr/lib/linux-image-$kernel_version/broadcom/bcm2837-rpi-3-b.dtb

# --- Certificates: the agent as node:pi-guest, the probe as an admin ------------------------------
pki=$work/pki
rm -rf "$pki"
"$source_dir/deploy/pki.sh" init "$pki" >/dev/null
"$source_dir/deploy/pki.sh" issue "$pki" agent node:pi-guest --dns pi-guest --ip 127.0.0.1 >/dev/null
"$source_dir/deploy/pki.sh" issue "$pki" probe admin:probe >/dev/null

# --- The initramfs -------------------------------------------------------------------------------
root=$work/rootfs
rm -rf "$root"
mkdir -p "$root"/{bin,usr/bin,proc,sys,dev,tmp,run,etc/pi-agent,var/lib/pi-agent,lib/modules}
cp "$extracted/bin/busybox" "$root/bin/busybox"
cp "$agent" "$probe" "$root/usr/bin/"
cp "$extracted/lib/modules/$kernel_version/kernel/drivers/watchdog/bcm2835_wdt.ko" "$root/lib/modules/"
cp "$pki/ca.crt" "$pki/agent.crt" "$pki/agent.key" "$pki/probe.crt" "$pki/probe.key" "$root/etc/pi-agent/"

# Every shared library the programs need, found through their NEEDED entries, at its Debian path.
find_library() {
  local name=$1 dir
  for dir in /lib/$triplet /usr/lib/$triplet /lib /usr/lib; do
    [[ -e $dir/$name ]] && { echo "$dir/$name"; return 0; }
  done
  return 1
}
declare -A copied=()
copy_needed() {
  local binary=$1 name path
  for name in $("$triplet-readelf" -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    [[ -n ${copied[$name]:-} ]] && continue
    path=$(find_library "$name") || die "arm64 library $name (needed by $binary) is not installed"
    copied[$name]=1
    mkdir -p "$root$(dirname "$path")"
    cp -L "$path" "$root$path"
    copy_needed "$path"
  done
}
copy_needed "$agent"
copy_needed "$probe"
interpreter=$("$triplet-readelf" -l "$agent" | sed -n 's/.*interpreter: \(.*\)\]/\1/p')
mkdir -p "$root$(dirname "$interpreter")"
cp -L "$interpreter" "$root$interpreter"

cat >"$root/etc/pi-agent/agent.json" <<'JSON'
{
  "node_name": "pi-guest",
  "listen": "127.0.0.1:9091",
  "http_listen": "",
  "tls": {
    "cert_file": "/etc/pi-agent/agent.crt",
    "key_file": "/etc/pi-agent/agent.key",
    "ca_file": "/etc/pi-agent/ca.crt"
  },
  "control_plane": { "state_dir": "/var/lib/pi-agent" },
  "gpio": { "backend": "libgpiod", "allowed_lines": [{ "line": "GPIO17", "mode": "any" }] },
  "logs": { "journald": false },
  "runner": { "enabled": false }
}
JSON

cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
hostname pi-guest
# The board has no real-time clock: without the host's time every certificate is "not yet valid".
date -s "@$(cat /etc/host-time)" >/dev/null
ip link set lo up
# raspi3b has no PSCI: power-off goes through the watchdog driver.
insmod /lib/modules/bcm2835_wdt.ko 2>/dev/null
echo "guest: model \"$(tr -d '\0' </proc/device-tree/model)\", $(grep -c ^processor /proc/cpuinfo) CPUs, kernel $(uname -r)"
pi-agent --config /etc/pi-agent/agent.json --ports-file /tmp/ports.json >/tmp/agent.log 2>&1 &
agent=$!
i=0
while [ ! -s /tmp/ports.json ] && [ $i -lt 600 ] && kill -0 $agent 2>/dev/null; do
  sleep 0.1
  i=$((i + 1))
done
echo "guest: pi-agent listening after $((i / 10)).$((i % 10)) s"
pi-probe --ca /etc/pi-agent/ca.crt --cert /etc/pi-agent/probe.crt --key /etc/pi-agent/probe.key \
  --server-name pi-guest --address 127.0.0.1:9091
status=$?
echo "guest: pi-agent after the checks: $(grep -E '^VmRSS' /proc/$agent/status | tr -s ' \t' ' ')"
kill -TERM $agent 2>/dev/null
wait $agent
echo "guest: pi-agent exited with $?"
if [ $status -ne 0 ]; then
  echo "guest: pi-agent log:"
  sed 's/^/guest:   /' /tmp/agent.log
fi
echo "PI-EMULATION END"
poweroff -f
INIT
chmod +x "$root/init"

date +%s >"$root/etc/host-time"
initramfs=$work/initramfs.cpio.gz
(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1 >"$initramfs.tmp")
mv "$initramfs.tmp" "$initramfs"
echo "emulated_pi_test: kernel $kernel_version, initramfs $(du -h "$initramfs" | cut -f1)" \
  "with ${#copied[@]} arm64 libraries"

# --- Boot it -------------------------------------------------------------------------------------
console=$work/console.log
: >"$console"
started=$(date +%s%N)
qemu-system-aarch64 -M raspi3b -m 1G -accel tcg,thread=single \
  -kernel "$kernel" -dtb "$dtb" -initrd "$initramfs" \
  -append "console=ttyAMA0 earlycon=pl011,0x3f201000 rdinit=/init loglevel=3" \
  -nographic -no-reboot -monitor none -serial stdio </dev/null >"$console" 2>&1 &
qemu=$!
trap 'kill $qemu 2>/dev/null || true' EXIT

deadline=$((SECONDS + boot_timeout))
while kill -0 "$qemu" 2>/dev/null && ! grep -q 'PI-EMULATION END' "$console"; do
  if ((SECONDS >= deadline)); then
    tail -n 40 "$console" | tr -d '\r'
    die "no end marker after ${boot_timeout}s (log: $console)"
  fi
  sleep 0.5
done
# Give the watchdog power-off a moment, then stop QEMU ourselves.
for _ in 1 2 3 4 5 6 7 8 9 10; do
  kill -0 "$qemu" 2>/dev/null || break
  sleep 0.2
done
kill "$qemu" 2>/dev/null || true
wait "$qemu" 2>/dev/null || true
elapsed_ms=$((($(date +%s%N) - started) / 1000000))

tr -d '\r' <"$console" | grep -E '^(guest:|check |PI-EMULATION)' || true
echo "emulated_pi_test: QEMU ran $((elapsed_ms / 1000)).$((elapsed_ms % 1000 / 100)) s"
if tr -d '\r' <"$console" | grep -qx 'PI-EMULATION PASS'; then
  echo "emulated_pi_test: PASS"
  exit 0
fi
tail -n 60 "$console" | tr -d '\r'
die "the guest did not print PI-EMULATION PASS (log: $console)"
