#include "node-agent/join/health_summary.h"

#include <sys/utsname.h>

#include <algorithm>
#include <cmath>
#include <fstream>

namespace pi::agent::join {
namespace {

// The value of KEY=value in an os-release file, without the optional quotes.
std::string OsReleaseValue(const std::filesystem::path& path, std::string_view key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() <= key.size() || line.compare(0, key.size(), key) != 0 ||
        line[key.size()] != '=') {
      continue;
    }
    std::string value = line.substr(key.size() + 1);
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
        value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    return value;
  }
  return "";
}

}  // namespace

NodeHealthSummary BuildHealthSummary(const metrics::SystemMetrics& metrics, bool healthy,
                                     std::string_view agent_version) {
  NodeHealthSummary summary;
  summary.healthy = healthy;
  summary.agent_version = std::string(agent_version);
  if (metrics.cpu_usage) summary.cpu_usage_percent = metrics.cpu_usage->total.usage;
  if (metrics.memory) {
    summary.memory_total_bytes = metrics.memory->total_bytes;
    summary.memory_available_bytes = metrics.memory->available_bytes;
  }
  if (metrics.load) summary.load1 = metrics.load->load1;
  if (metrics.thermal_zones) {
    for (const auto& zone : *metrics.thermal_zones) {
      summary.max_temperature_celsius =
          std::max(summary.max_temperature_celsius.value_or(zone.celsius), zone.celsius);
    }
  }
  if (metrics.power) {
    summary.under_voltage_now = metrics.power->now.under_voltage;
    summary.throttled_now = metrics.power->now.throttled;
  }
  if (metrics.filesystems) {
    for (const auto& fs : *metrics.filesystems) {
      // A filesystem whose statvfs failed has no usage to report.
      if (fs.mount_point == "/" && fs.error.empty()) {
        summary.root_filesystem_available_bytes = fs.usage.avail_bytes;
      }
    }
  }
  if (metrics.uptime && metrics.uptime->uptime_seconds > 0) {
    summary.uptime =
        std::chrono::seconds(static_cast<int64_t>(std::floor(metrics.uptime->uptime_seconds)));
  }
  return summary;
}

HostInfo ReadHostInfo(const std::filesystem::path& root) {
  HostInfo info;
  info.os = OsReleaseValue(root / "etc/os-release", "PRETTY_NAME");
  if (info.os.empty()) info.os = OsReleaseValue(root / "usr/lib/os-release", "PRETTY_NAME");
  utsname names{};
  if (uname(&names) == 0) {
    info.kernel = names.release;
    info.arch = names.machine;
  }
  return info;
}

std::map<std::string, std::string> BuildFacts(const HostInfo& host,
                                              const metrics::SystemMetrics& metrics,
                                              std::string_view agent_version) {
  std::map<std::string, std::string> facts;
  const auto put = [&facts](const char* name, std::string value) {
    if (!value.empty()) facts[name] = std::move(value);
  };
  put("os", host.os);
  put("kernel", host.kernel);
  put("arch", host.arch);
  if (metrics.device_model) put("model", *metrics.device_model);
  if (metrics.kernel_stat && !metrics.kernel_stat->cores.empty()) {
    put("cpu_count", std::to_string(metrics.kernel_stat->cores.size()));
  }
  if (metrics.memory && metrics.memory->total_bytes > 0) {
    put("memory_bytes", std::to_string(metrics.memory->total_bytes));
  }
  put("agent_version", std::string(agent_version));
  return facts;
}

}  // namespace pi::agent::join
