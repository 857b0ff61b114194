#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "node-agent/metrics/system_metrics.h"

namespace pi::agent::join {

// What a heartbeat tells the controller (HealthSummary of control_plane.proto) as a plain value.
// A part whose source the collector could not read is zero (temperature: absent).
struct NodeHealthSummary {
  // False when a subsystem check of the agent failed (reported as DEGRADED).
  bool healthy = true;
  double cpu_usage_percent = 0;
  uint64_t memory_total_bytes = 0;
  uint64_t memory_available_bytes = 0;
  double load1 = 0;
  // The hottest thermal zone; absent when the node has none.
  std::optional<double> max_temperature_celsius;
  bool under_voltage_now = false;
  bool throttled_now = false;
  uint64_t root_filesystem_available_bytes = 0;
  std::chrono::seconds uptime{0};
  std::string agent_version;
};

NodeHealthSummary BuildHealthSummary(const metrics::SystemMetrics& metrics, bool healthy,
                                     std::string_view agent_version);

// The parts of the node's facts that do not come from the metrics collector.
struct HostInfo {
  std::string os;      // PRETTY_NAME of os-release, "" when unknown
  std::string kernel;  // uname -r
  std::string arch;    // uname -m
};

// Reads `root`/etc/os-release (falling back to `root`/usr/lib/os-release) and uname(2).
HostInfo ReadHostInfo(const std::filesystem::path& root);

// The facts RegisterNode sends: os, kernel, arch, model, cpu_count, memory_bytes, agent_version.
// A fact whose source is unknown is left out rather than sent empty.
std::map<std::string, std::string> BuildFacts(const HostInfo& host,
                                              const metrics::SystemMetrics& metrics,
                                              std::string_view agent_version);

}  // namespace pi::agent::join
