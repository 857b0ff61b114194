#pragma once

// Readers of /proc and /sys. Each takes the root of the tree to read ("/" on a real machine, a
// fixture directory in tests) and opens files below it, e.g. <root>/proc/meminfo.
//
// Errors: a missing file is NOT_FOUND (the source does not exist on this machine), an unreadable
// one PERMISSION_DENIED or UNAVAILABLE, and content that cannot be parsed DATA_LOSS with the file
// and line in the message.

#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "node-agent/metrics/system_metrics.h"

namespace pi::agent::metrics {

absl::StatusOr<MemoryInfo> ReadMemoryInfo(const std::filesystem::path& root);
absl::StatusOr<LoadAverage> ReadLoadAverage(const std::filesystem::path& root);
absl::StatusOr<Uptime> ReadUptime(const std::filesystem::path& root);
absl::StatusOr<KernelStat> ReadKernelStat(const std::filesystem::path& root);
absl::StatusOr<std::vector<NetDeviceStats>> ReadNetDevices(const std::filesystem::path& root);

// Whole disks only. A device is a partition when another device in the file is its name minus a
// trailing number ("sda1" of "sda", "mmcblk0p2" of "mmcblk0", "nvme0n1p1" of "nvme0n1"); RAM
// disks, loop devices, zram and floppies (ram*, loop*, zram*, fd*) are skipped as node_exporter
// skips them by default.
absl::StatusOr<std::vector<DiskStats>> ReadDiskStats(const std::filesystem::path& root);

absl::StatusOr<std::vector<MountEntry>> ReadMounts(const std::filesystem::path& root);

// statvfs(3) of one mount point, as a plain FsUsage. Injectable because fixture mount points do
// not exist, and because a test needs to make it fail.
using StatvfsFunction = std::function<absl::StatusOr<FsUsage>(const std::string& mount_point)>;

// The real statvfs(3); the path is used as given (not below any root).
absl::StatusOr<FsUsage> RealStatvfs(const std::string& mount_point);

// Filesystem types that hold no user data and are skipped by default: node_exporter's default
// --collector.filesystem.fs-types-exclude list (autofs, binfmt_misc, bpf, cgroup, cgroup2,
// configfs, debugfs, devpts, devtmpfs, erofs, fusectl, hugetlbfs, iso9660, mqueue, nsfs, overlay,
// proc, procfs, pstore, rpc_pipefs, securityfs, selinuxfs, squashfs, sysfs, tracefs) plus the
// memory-backed tmpfs, ramfs and efivarfs, which node_exporter reports but which on a Pi only
// crowd out the SD card and USB disks an operator watches for space.
const std::set<std::string>& DefaultExcludedFsTypes();

// Mounts of <root>/proc/mounts whose type is not excluded, with statvfs of each. A mount point
// listed twice (mounted over) is reported once, for the mount on top. A failing statvfs does not
// fail the call: that filesystem carries the error and zero usage.
absl::StatusOr<std::vector<FilesystemStats>> ReadFilesystems(
    const std::filesystem::path& root, const StatvfsFunction& statvfs,
    const std::set<std::string>& excluded_fs_types = DefaultExcludedFsTypes());

// Zones of <root>/sys/class/thermal sorted by zone number. A zone whose temperature cannot be read
// right now (some sensors fail reads while their device sleeps) is left out.
absl::StatusOr<std::vector<ThermalZone>> ReadThermalZones(const std::filesystem::path& root);

// <root>/sys/devices/platform/soc/soc:firmware/get_throttled; NOT_FOUND on anything but a Pi.
absl::StatusOr<PowerState> ReadPowerState(const std::filesystem::path& root);
PowerState DecodePowerState(uint32_t raw);

// The device-tree model ("Raspberry Pi 3 Model B Rev 1.2") from <root>/proc/device-tree/model or
// <root>/sys/firmware/devicetree/base/model; NOT_FOUND on machines without a device tree.
absl::StatusOr<std::string> ReadDeviceModel(const std::filesystem::path& root);

}  // namespace pi::agent::metrics
