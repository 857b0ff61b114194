#include "node-agent/metrics/collector.h"

#include <spdlog/spdlog.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace pi::agent::metrics {

SystemMetricsCollector::SystemMetricsCollector(CollectorOptions options, const CpuSampler& sampler,
                                               StatvfsFunction statvfs, const common::Clock& clock)
    : options_(std::move(options)), sampler_(sampler), statvfs_(std::move(statvfs)), clock_(clock) {
  // The model is fixed for the life of the machine, so it is not re-read per call.
  device_model_ = Keep("device model", ReadDeviceModel(options_.root));
}

void SystemMetricsCollector::Track(std::string_view source, const absl::Status& status) {
  std::lock_guard lock(mu_);
  auto it = unhealthy_.find(source);
  if (status.ok()) {
    if (it == unhealthy_.end()) return;
    if (it->second != absl::StatusCode::kNotFound) {
      spdlog::info("metrics: {} is available again", source);
    }
    unhealthy_.erase(it);
    return;
  }
  if (it != unhealthy_.end() && it->second == status.code()) return;
  if (absl::IsNotFound(status)) {
    spdlog::debug("metrics: no {} on this machine: {}", source, std::string(status.message()));
  } else {
    spdlog::warn("metrics: leaving out {}: {}", source, status.ToString());
  }
  unhealthy_.insert_or_assign(std::string(source), status.code());
}

template <typename T>
std::optional<T> SystemMetricsCollector::Keep(std::string_view source, absl::StatusOr<T> result) {
  Track(source, result.status());
  if (!result.ok()) return std::nullopt;
  return std::move(*result);
}

SystemMetrics SystemMetricsCollector::Collect() {
  const std::filesystem::path& root = options_.root;
  SystemMetrics m;
  m.collected_at = clock_.WallNow();
  m.kernel_stat = Keep("CPU and process counters", ReadKernelStat(root));
  m.memory = Keep("memory", ReadMemoryInfo(root));
  m.load = Keep("load average", ReadLoadAverage(root));
  m.uptime = Keep("uptime", ReadUptime(root));
  m.network = Keep("network interfaces", ReadNetDevices(root));
  m.disks = Keep("disk statistics", ReadDiskStats(root));
  m.filesystems = Keep("filesystems", ReadFilesystems(root, statvfs_, options_.excluded_fs_types));
  m.thermal_zones = Keep("thermal zones", ReadThermalZones(root));
  m.power = Keep("Raspberry Pi power state", ReadPowerState(root));
  m.device_model = device_model_;

  if (m.filesystems.has_value()) {
    for (const FilesystemStats& fs : *m.filesystems) {
      Track(absl::StrCat("filesystem ", fs.mount_point),
            fs.error.empty() ? absl::OkStatus() : absl::UnavailableError(fs.error));
    }
  }

  m.cpu_usage = sampler_.Usage();
  if (!m.cpu_usage.has_value() && m.kernel_stat.has_value()) {
    // The sampler has not run (yet): since-boot figures beat none, and cost no extra read.
    m.cpu_usage = ComputeCpuUsage(nullptr, *m.kernel_stat);
  }

  if (m.kernel_stat.has_value() && m.load.has_value()) {
    m.processes = ProcessCounts{.running = m.kernel_stat->procs_running,
                                .blocked = m.kernel_stat->procs_blocked,
                                .total = m.load->total_tasks};
  }
  return m;
}

}  // namespace pi::agent::metrics
