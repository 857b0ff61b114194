#include "node-agent/metrics/node_exporter_text.h"

#include <array>
#include <chrono>
#include <string>
#include <string_view>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace pi::agent::metrics {
namespace {

using common::PrometheusLabels;
using common::PrometheusTextWriter;

constexpr double kMillisecondsPerSecond = 1000.0;
constexpr absl::string_view kMemoryPrefix = "node_memory_";

// node_exporter's meminfo naming: "Active(anon)" -> "Active_anon", then anything that is not
// valid in a metric name becomes '_'.
std::string MemoryMetricName(const MemoryInfo::Field& field) {
  std::string name(kMemoryPrefix);
  for (char c : field.name) {
    if (c == ')') continue;
    name += (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_') ? c : '_';
  }
  if (field.is_bytes) name += "_bytes";
  return name;
}

void WriteCpu(const KernelStat& stat, PrometheusTextWriter& w) {
  auto seconds = [&](uint64_t ticks) { return static_cast<double>(ticks) / stat.ticks_per_second; };
  if (!stat.cores.empty()) {
    w.Family("node_cpu_seconds_total", "Seconds the CPUs spent in each mode.", "counter");
    for (const CpuTimes& core : stat.cores) {
      const std::string cpu = std::to_string(core.cpu);
      const std::array<std::pair<const char*, uint64_t>, 8> modes = {{
          {"idle", core.idle},
          {"iowait", core.iowait},
          {"irq", core.irq},
          {"nice", core.nice},
          {"softirq", core.softirq},
          {"steal", core.steal},
          {"system", core.system},
          {"user", core.user},
      }};
      for (const auto& [mode, ticks] : modes) {
        w.Sample("node_cpu_seconds_total", {{"cpu", cpu}, {"mode", mode}}, seconds(ticks));
      }
    }
    w.Family("node_cpu_guest_seconds_total",
             "Seconds the CPUs spent in guests (VMs) for each mode.", "counter");
    for (const CpuTimes& core : stat.cores) {
      const std::string cpu = std::to_string(core.cpu);
      w.Sample("node_cpu_guest_seconds_total", {{"cpu", cpu}, {"mode", "nice"}},
               seconds(core.guest_nice));
      w.Sample("node_cpu_guest_seconds_total", {{"cpu", cpu}, {"mode", "user"}},
               seconds(core.guest));
    }
  }
  w.Family("node_context_switches_total", "Total number of context switches.", "counter");
  w.Sample("node_context_switches_total", static_cast<double>(stat.context_switches));
  w.Family("node_forks_total", "Total number of forks.", "counter");
  w.Sample("node_forks_total", static_cast<double>(stat.forks));
  w.Family("node_boot_time_seconds", "Node boot time, in unixtime.", "gauge");
  w.Sample("node_boot_time_seconds", static_cast<double>(stat.boot_time_seconds));
  w.Family("node_procs_running", "Number of processes in runnable state.", "gauge");
  w.Sample("node_procs_running", static_cast<double>(stat.procs_running));
  w.Family("node_procs_blocked", "Number of processes blocked waiting for I/O to complete.",
           "gauge");
  w.Sample("node_procs_blocked", static_cast<double>(stat.procs_blocked));
}

void WriteMemory(const MemoryInfo& memory, PrometheusTextWriter& w) {
  for (const MemoryInfo::Field& field : memory.fields) {
    const std::string name = MemoryMetricName(field);
    w.Family(name,
             absl::StrCat("Memory information field ",
                          absl::string_view(name).substr(kMemoryPrefix.size()), "."),
             "gauge");
    w.Sample(name, static_cast<double>(field.value));
  }
}

void WriteLoad(const LoadAverage& load, PrometheusTextWriter& w) {
  w.Family("node_load1", "1m load average.", "gauge");
  w.Sample("node_load1", load.load1);
  w.Family("node_load5", "5m load average.", "gauge");
  w.Sample("node_load5", load.load5);
  w.Family("node_load15", "15m load average.", "gauge");
  w.Sample("node_load15", load.load15);
}

void WriteNetwork(const std::vector<NetDeviceStats>& devices, PrometheusTextWriter& w) {
  if (devices.empty()) return;
  const std::array<std::pair<const char*, uint64_t NetDeviceStats::*>, 16> stats = {{
      {"receive_bytes", &NetDeviceStats::receive_bytes},
      {"receive_packets", &NetDeviceStats::receive_packets},
      {"receive_errs", &NetDeviceStats::receive_errs},
      {"receive_drop", &NetDeviceStats::receive_drop},
      {"receive_fifo", &NetDeviceStats::receive_fifo},
      {"receive_frame", &NetDeviceStats::receive_frame},
      {"receive_compressed", &NetDeviceStats::receive_compressed},
      {"receive_multicast", &NetDeviceStats::receive_multicast},
      {"transmit_bytes", &NetDeviceStats::transmit_bytes},
      {"transmit_packets", &NetDeviceStats::transmit_packets},
      {"transmit_errs", &NetDeviceStats::transmit_errs},
      {"transmit_drop", &NetDeviceStats::transmit_drop},
      {"transmit_fifo", &NetDeviceStats::transmit_fifo},
      {"transmit_colls", &NetDeviceStats::transmit_colls},
      {"transmit_carrier", &NetDeviceStats::transmit_carrier},
      {"transmit_compressed", &NetDeviceStats::transmit_compressed},
  }};
  for (const auto& [stat, member] : stats) {
    const std::string name = absl::StrCat("node_network_", stat, "_total");
    w.Family(name, absl::StrCat("Network device statistic ", stat, "."), "counter");
    for (const NetDeviceStats& dev : devices) {
      w.Sample(name, {{"device", dev.device}}, static_cast<double>(dev.*member));
    }
  }
}

void WriteDisks(const std::vector<DiskStats>& disks, PrometheusTextWriter& w) {
  if (disks.empty()) return;
  struct Stat {
    std::string_view name;
    std::string_view help;
    std::string_view type;
    uint64_t DiskStats::*member;
    double divisor;
  };
  const std::array<Stat, 11> stats = {{
      {"node_disk_reads_completed_total", "The total number of reads completed successfully.",
       "counter", &DiskStats::reads_completed, 1},
      {"node_disk_reads_merged_total", "The total number of reads merged.", "counter",
       &DiskStats::reads_merged, 1},
      {"node_disk_read_bytes_total", "The total number of bytes read successfully.", "counter",
       &DiskStats::read_bytes, 1},
      {"node_disk_read_time_seconds_total", "The total number of seconds spent by all reads.",
       "counter", &DiskStats::read_time_ms, kMillisecondsPerSecond},
      {"node_disk_writes_completed_total", "The total number of writes completed successfully.",
       "counter", &DiskStats::writes_completed, 1},
      {"node_disk_writes_merged_total", "The number of writes merged.", "counter",
       &DiskStats::writes_merged, 1},
      {"node_disk_written_bytes_total", "The total number of bytes written successfully.",
       "counter", &DiskStats::written_bytes, 1},
      {"node_disk_write_time_seconds_total",
       "This is the total number of seconds spent by all writes.", "counter",
       &DiskStats::write_time_ms, kMillisecondsPerSecond},
      {"node_disk_io_now", "The number of I/Os currently in progress.", "gauge",
       &DiskStats::io_in_progress, 1},
      {"node_disk_io_time_seconds_total", "Total seconds spent doing I/Os.", "counter",
       &DiskStats::io_time_ms, kMillisecondsPerSecond},
      {"node_disk_io_time_weighted_seconds_total", "The weighted # of seconds spent doing I/Os.",
       "counter", &DiskStats::io_time_weighted_ms, kMillisecondsPerSecond},
  }};
  for (const Stat& stat : stats) {
    w.Family(stat.name, stat.help, stat.type);
    for (const DiskStats& disk : disks) {
      w.Sample(stat.name, {{"device", disk.device}},
               static_cast<double>(disk.*stat.member) / stat.divisor);
    }
  }
}

void WriteFilesystems(const std::vector<FilesystemStats>& filesystems, PrometheusTextWriter& w) {
  if (filesystems.empty()) return;
  auto labels = [](const FilesystemStats& fs) -> PrometheusLabels {
    return {{"device", fs.device}, {"fstype", fs.fs_type}, {"mountpoint", fs.mount_point}};
  };
  const std::array<std::tuple<std::string_view, std::string_view, uint64_t FsUsage::*>, 5> stats = {
      {
          {"node_filesystem_size_bytes", "Filesystem size in bytes.", &FsUsage::size_bytes},
          {"node_filesystem_free_bytes", "Filesystem free space in bytes.", &FsUsage::free_bytes},
          {"node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.",
           &FsUsage::avail_bytes},
          {"node_filesystem_files", "Filesystem total file nodes.", &FsUsage::files},
          {"node_filesystem_files_free", "Filesystem total free file nodes.", &FsUsage::files_free},
      }};
  for (const auto& [name, help, member] : stats) {
    w.Family(name, help, "gauge");
    for (const FilesystemStats& fs : filesystems) {
      // Like node_exporter: no size figures for a filesystem that could not be queried.
      if (!fs.error.empty()) continue;
      w.Sample(name, labels(fs), static_cast<double>(fs.usage.*member));
    }
  }
  w.Family("node_filesystem_readonly", "Filesystem read-only status.", "gauge");
  for (const FilesystemStats& fs : filesystems) {
    w.Sample("node_filesystem_readonly", labels(fs), fs.read_only ? 1 : 0);
  }
  w.Family("node_filesystem_device_error",
           "Whether an error occurred while getting statistics for the given device.", "gauge");
  for (const FilesystemStats& fs : filesystems) {
    w.Sample("node_filesystem_device_error", labels(fs), fs.error.empty() ? 0 : 1);
  }
}

void WriteThermal(const std::vector<ThermalZone>& zones, PrometheusTextWriter& w) {
  if (zones.empty()) return;
  w.Family("node_thermal_zone_temp", "Zone temperature in Celsius", "gauge");
  for (const ThermalZone& zone : zones) {
    w.Sample("node_thermal_zone_temp", {{"type", zone.type}, {"zone", std::to_string(zone.zone)}},
             zone.celsius);
  }
}

void WritePower(const PowerState& power, PrometheusTextWriter& w) {
  w.Family("pi_agent_power_throttled_bitmask",
           "Raspberry Pi firmware get_throttled bitmask (bits 0-3 now, 16-19 since boot).",
           "gauge");
  w.Sample("pi_agent_power_throttled_bitmask", power.raw);
  auto conditions = [](const PowerConditions& c) {
    return std::array<std::pair<const char*, bool>, 4>{{
        {"under_voltage", c.under_voltage},
        {"arm_frequency_capped", c.arm_frequency_capped},
        {"throttled", c.throttled},
        {"soft_temperature_limit", c.soft_temperature_limit},
    }};
  };
  w.Family("pi_agent_power_condition_active",
           "1 while the Raspberry Pi firmware reports the power or thermal condition.", "gauge");
  for (const auto& [name, active] : conditions(power.now)) {
    w.Sample("pi_agent_power_condition_active", {{"condition", name}}, active ? 1 : 0);
  }
  w.Family("pi_agent_power_condition_occurred",
           "1 if the Raspberry Pi firmware has reported the condition since boot.", "gauge");
  for (const auto& [name, occurred] : conditions(power.since_boot)) {
    w.Sample("pi_agent_power_condition_occurred", {{"condition", name}}, occurred ? 1 : 0);
  }
}

}  // namespace

void WriteNodeExporterMetrics(const SystemMetrics& m, PrometheusTextWriter& w) {
  w.Family("node_time_seconds", "System time in seconds since epoch (1970).", "gauge");
  w.Sample("node_time_seconds",
           std::chrono::duration<double>(m.collected_at.time_since_epoch()).count());
  if (m.kernel_stat) WriteCpu(*m.kernel_stat, w);
  if (m.memory) WriteMemory(*m.memory, w);
  if (m.load) WriteLoad(*m.load, w);
  if (m.network) WriteNetwork(*m.network, w);
  if (m.disks) WriteDisks(*m.disks, w);
  if (m.filesystems) WriteFilesystems(*m.filesystems, w);
  if (m.thermal_zones) WriteThermal(*m.thermal_zones, w);
  if (m.power) WritePower(*m.power, w);
  if (m.device_model) {
    w.Family("pi_agent_device_model_info", "The device-tree model of this machine.", "gauge");
    w.Sample("pi_agent_device_model_info", {{"model", *m.device_model}}, 1);
  }
}

std::string RenderNodeExporterText(const SystemMetrics& metrics) {
  PrometheusTextWriter writer;
  WriteNodeExporterMetrics(metrics, writer);
  return writer.text();
}

}  // namespace pi::agent::metrics
