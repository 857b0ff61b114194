#pragma once

// Plain value types for the node's system metrics. Nothing here knows about gRPC or Prometheus:
// the readers fill these, the NodeAgent adapter and the node_exporter renderer read them.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pi::agent::metrics {

// From /proc/meminfo. The named fields are the ones every kernel since 3.14 reports; `fields`
// keeps every line in file order so node_exporter's full node_memory_* set can be rendered.
struct MemoryInfo {
  struct Field {
    std::string name;  // As in the file, e.g. "Active(anon)".
    uint64_t value = 0;
    bool is_bytes = false;  // The file gave a "kB" unit; value is already converted to bytes.
  };

  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;
  uint64_t available_bytes = 0;
  uint64_t buffers_bytes = 0;
  uint64_t cached_bytes = 0;
  uint64_t swap_total_bytes = 0;
  uint64_t swap_free_bytes = 0;
  std::vector<Field> fields;

  // What free(1) has reported as "used" since procps 4: memory that is not available.
  uint64_t used_bytes() const {
    return total_bytes > available_bytes ? total_bytes - available_bytes : 0;
  }
  uint64_t swap_used_bytes() const {
    return swap_total_bytes > swap_free_bytes ? swap_total_bytes - swap_free_bytes : 0;
  }
};

// From /proc/loadavg.
struct LoadAverage {
  double load1 = 0;
  double load5 = 0;
  double load15 = 0;
  uint64_t runnable_tasks = 0;  // Scheduling entities currently runnable (the "2" of "2/187").
  uint64_t total_tasks = 0;     // Scheduling entities that exist (the "187").
};

// From /proc/uptime.
struct Uptime {
  double uptime_seconds = 0;
  double idle_seconds = 0;  // Summed over all CPUs, so it can exceed uptime_seconds.
};

// One "cpu" line of /proc/stat, in clock ticks (USER_HZ). guest and guest_nice are already
// included in user and nice by the kernel.
struct CpuTimes {
  int cpu = -1;  // -1 for the aggregate "cpu" line, N for "cpuN".
  uint64_t user = 0;
  uint64_t nice = 0;
  uint64_t system = 0;
  uint64_t idle = 0;
  uint64_t iowait = 0;
  uint64_t irq = 0;
  uint64_t softirq = 0;
  uint64_t steal = 0;
  uint64_t guest = 0;
  uint64_t guest_nice = 0;
};

// From /proc/stat.
struct KernelStat {
  double ticks_per_second = 100;  // USER_HZ, sysconf(_SC_CLK_TCK).
  CpuTimes total;
  std::vector<CpuTimes> cores;  // Online CPUs only, in file order.
  uint64_t context_switches = 0;
  uint64_t boot_time_seconds = 0;  // Unix time.
  uint64_t forks = 0;              // The "processes" line: forks since boot.
  uint64_t procs_running = 0;
  uint64_t procs_blocked = 0;
};

// Percentages (0..100) over the window between two /proc/stat samples, or since boot when only one
// sample exists. user includes nice; system includes irq and softirq; usage is everything but idle
// and iowait. The parts add up to 100 unless no time passed, when all are 0.
struct CpuPercentages {
  int cpu = -1;  // -1 for the total over all CPUs.
  double usage = 0;
  double user = 0;
  double system = 0;
  double idle = 0;
  double iowait = 0;
  double steal = 0;
};

struct CpuUsage {
  CpuPercentages total;
  std::vector<CpuPercentages> cores;
  bool since_boot = false;  // True when computed from a single sample.
};

// One interface of /proc/net/dev.
struct NetDeviceStats {
  std::string device;
  uint64_t receive_bytes = 0;
  uint64_t receive_packets = 0;
  uint64_t receive_errs = 0;
  uint64_t receive_drop = 0;
  uint64_t receive_fifo = 0;
  uint64_t receive_frame = 0;
  uint64_t receive_compressed = 0;
  uint64_t receive_multicast = 0;
  uint64_t transmit_bytes = 0;
  uint64_t transmit_packets = 0;
  uint64_t transmit_errs = 0;
  uint64_t transmit_drop = 0;
  uint64_t transmit_fifo = 0;
  uint64_t transmit_colls = 0;
  uint64_t transmit_carrier = 0;
  uint64_t transmit_compressed = 0;
};

// One whole disk of /proc/diskstats; sectors are converted to bytes (the kernel always counts
// 512-byte sectors there, whatever the device's real sector size).
struct DiskStats {
  std::string device;
  uint64_t reads_completed = 0;
  uint64_t reads_merged = 0;
  uint64_t read_bytes = 0;
  uint64_t read_time_ms = 0;
  uint64_t writes_completed = 0;
  uint64_t writes_merged = 0;
  uint64_t written_bytes = 0;
  uint64_t write_time_ms = 0;
  uint64_t io_in_progress = 0;
  uint64_t io_time_ms = 0;
  uint64_t io_time_weighted_ms = 0;
};

// One line of /proc/mounts, with the kernel's octal escapes (\040 for a space...) undone.
struct MountEntry {
  std::string device;
  std::string mount_point;
  std::string fs_type;
  std::string options;
  bool read_only = false;
};

// What statvfs(3) says about a mounted filesystem, in bytes and inodes.
struct FsUsage {
  uint64_t size_bytes = 0;
  uint64_t free_bytes = 0;
  uint64_t avail_bytes = 0;  // Free space usable by non-root users.
  uint64_t files = 0;
  uint64_t files_free = 0;
};

struct FilesystemStats {
  std::string device;
  std::string mount_point;
  std::string fs_type;
  bool read_only = false;
  // Empty when usage is valid; otherwise why statvfs failed (usage is then all zero), the way
  // node_exporter reports node_filesystem_device_error.
  std::string error;
  FsUsage usage;

  uint64_t used_bytes() const {
    return usage.size_bytes > usage.free_bytes ? usage.size_bytes - usage.free_bytes : 0;
  }
};

// /sys/class/thermal/thermal_zoneN.
struct ThermalZone {
  int zone = 0;      // N.
  std::string type;  // e.g. "cpu-thermal".
  double celsius = 0;
};

// Raspberry Pi firmware power/thermal conditions (get_throttled bits 0-3 now, 16-19 since boot).
struct PowerConditions {
  bool under_voltage = false;
  bool arm_frequency_capped = false;
  bool throttled = false;
  bool soft_temperature_limit = false;
};

struct PowerState {
  uint32_t raw = 0;  // The firmware bitmask as read.
  PowerConditions now;
  PowerConditions since_boot;
};

struct ProcessCounts {
  uint64_t running = 0;  // procs_running of /proc/stat.
  uint64_t blocked = 0;  // procs_blocked of /proc/stat: waiting for I/O.
  uint64_t total = 0;    // Scheduling entities (threads included) from /proc/loadavg.
};

// One snapshot of everything the agent reports. Every part is absent when its source is missing
// or unreadable; the rest is still valid.
struct SystemMetrics {
  std::chrono::system_clock::time_point collected_at;
  std::optional<KernelStat> kernel_stat;
  std::optional<CpuUsage> cpu_usage;
  std::optional<MemoryInfo> memory;
  std::optional<LoadAverage> load;
  std::optional<Uptime> uptime;
  std::optional<std::vector<NetDeviceStats>> network;
  std::optional<std::vector<DiskStats>> disks;
  std::optional<std::vector<FilesystemStats>> filesystems;
  std::optional<std::vector<ThermalZone>> thermal_zones;
  std::optional<PowerState> power;
  std::optional<std::string> device_model;
  std::optional<ProcessCounts> processes;
};

}  // namespace pi::agent::metrics
