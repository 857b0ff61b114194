#pragma once

#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "common/system/clock.h"
#include "node-agent/metrics/cpu_sampler.h"
#include "node-agent/metrics/readers.h"
#include "node-agent/metrics/system_metrics.h"

namespace pi::agent::metrics {

struct CollectorOptions {
  // Where /proc and /sys are found; "/" except in tests.
  std::filesystem::path root = "/";
  // Filesystem types left out of SystemMetrics::filesystems.
  std::set<std::string> excluded_fs_types = DefaultExcludedFsTypes();
};

// Gathers one SystemMetrics snapshot per Collect(). A missing or broken source only makes its part
// absent: a missing one (no get_throttled on a PC) silently, a broken one with one warning when it
// breaks and one info line when it recovers, never one per call. Collect() reads a dozen small
// files and sleeps never; CPU percentages come from the sampler, the device model is read once.
// Collect() may be called from several threads at once.
class SystemMetricsCollector {
 public:
  SystemMetricsCollector(CollectorOptions options, const CpuSampler& sampler,
                         StatvfsFunction statvfs = RealStatvfs,
                         const common::Clock& clock = common::RealClock());

  SystemMetrics Collect();

 private:
  template <typename T>
  std::optional<T> Keep(std::string_view source, absl::StatusOr<T> result);
  void Track(std::string_view source, const absl::Status& status);

  const CollectorOptions options_;
  const CpuSampler& sampler_;
  const StatvfsFunction statvfs_;
  const common::Clock& clock_;
  std::optional<std::string> device_model_;

  std::mutex mu_;
  // Sources last seen missing or broken, with the code they failed with.
  std::map<std::string, absl::StatusCode, std::less<>> unhealthy_;
};

}  // namespace pi::agent::metrics
