#include "node-agent/join/health_summary.h"

#include <sys/utsname.h>

#include <catch2/catch.hpp>

#include "tests/common/test_dir.h"

namespace pi::agent::join {
namespace {

metrics::FilesystemStats Filesystem(const std::string& mount_point, uint64_t avail,
                                    const std::string& error = "") {
  metrics::FilesystemStats fs;
  fs.mount_point = mount_point;
  fs.usage.avail_bytes = avail;
  fs.error = error;
  return fs;
}

metrics::SystemMetrics FullMetrics() {
  metrics::SystemMetrics m;
  m.cpu_usage = metrics::CpuUsage{};
  m.cpu_usage->total.usage = 37.5;
  m.memory = metrics::MemoryInfo{};
  m.memory->total_bytes = 8ULL << 30;
  m.memory->available_bytes = 5ULL << 30;
  m.load = metrics::LoadAverage{0.75, 0.5, 0.25, 1, 100};
  m.uptime = metrics::Uptime{3600.9, 100};
  m.thermal_zones = std::vector<metrics::ThermalZone>{
      {0, "cpu-thermal", 51.2}, {1, "gpu-thermal", 63.4}, {2, "board", 40.0}};
  m.power = metrics::PowerState{};
  m.power->now.under_voltage = true;
  m.power->now.throttled = true;
  m.filesystems =
      std::vector<metrics::FilesystemStats>{Filesystem("/boot", 1000), Filesystem("/", 123456789)};
  m.device_model = "Raspberry Pi 5 Model B Rev 1.0";
  m.kernel_stat = metrics::KernelStat{};
  m.kernel_stat->cores.resize(4);
  return m;
}

TEST_CASE("the health summary carries the agent's metrics", "[summary]") {
  const auto summary = BuildHealthSummary(FullMetrics(), true, "1.2.3");
  CHECK(summary.healthy);
  CHECK(summary.cpu_usage_percent == 37.5);
  CHECK(summary.memory_total_bytes == 8ULL << 30);
  CHECK(summary.memory_available_bytes == 5ULL << 30);
  CHECK(summary.load1 == 0.75);
  CHECK(summary.under_voltage_now);
  CHECK(summary.throttled_now);
  CHECK(summary.root_filesystem_available_bytes == 123456789);
  CHECK(summary.uptime == std::chrono::seconds(3600));
  CHECK(summary.agent_version == "1.2.3");
}

TEST_CASE("the health summary reports the hottest thermal zone", "[summary]") {
  const auto summary = BuildHealthSummary(FullMetrics(), true, "1.2.3");
  REQUIRE(summary.max_temperature_celsius.has_value());
  CHECK(*summary.max_temperature_celsius == Approx(63.4));
}

TEST_CASE("a node without thermal zones reports no temperature", "[summary]") {
  auto metrics = FullMetrics();
  metrics.thermal_zones = std::vector<metrics::ThermalZone>{};
  CHECK_FALSE(BuildHealthSummary(metrics, true, "v").max_temperature_celsius.has_value());
  metrics.thermal_zones.reset();
  CHECK_FALSE(BuildHealthSummary(metrics, true, "v").max_temperature_celsius.has_value());
}

TEST_CASE("a failed subsystem check makes the summary unhealthy", "[summary]") {
  CHECK_FALSE(BuildHealthSummary(FullMetrics(), false, "v").healthy);
}

TEST_CASE("a root filesystem whose statvfs failed reports no free space", "[summary]") {
  auto metrics = FullMetrics();
  metrics.filesystems =
      std::vector<metrics::FilesystemStats>{Filesystem("/", 999, "permission denied")};
  CHECK(BuildHealthSummary(metrics, true, "v").root_filesystem_available_bytes == 0);
}

TEST_CASE("missing metric sources leave zeros in the summary", "[summary]") {
  const auto summary = BuildHealthSummary(metrics::SystemMetrics{}, true, "v");
  CHECK(summary.cpu_usage_percent == 0);
  CHECK(summary.memory_total_bytes == 0);
  CHECK(summary.memory_available_bytes == 0);
  CHECK(summary.load1 == 0);
  CHECK_FALSE(summary.max_temperature_celsius.has_value());
  CHECK_FALSE(summary.under_voltage_now);
  CHECK_FALSE(summary.throttled_now);
  CHECK(summary.root_filesystem_available_bytes == 0);
  CHECK(summary.uptime == std::chrono::seconds(0));
}

TEST_CASE("the facts name the host, hardware and agent version", "[facts]") {
  const auto facts = BuildFacts(HostInfo{"Debian GNU/Linux 12 (bookworm)", "6.6.31", "aarch64"},
                                FullMetrics(), "1.2.3");
  CHECK(facts == std::map<std::string, std::string>{
                     {"os", "Debian GNU/Linux 12 (bookworm)"},
                     {"kernel", "6.6.31"},
                     {"arch", "aarch64"},
                     {"model", "Raspberry Pi 5 Model B Rev 1.0"},
                     {"cpu_count", "4"},
                     {"memory_bytes", std::to_string(8ULL << 30)},
                     {"agent_version", "1.2.3"},
                 });
}

TEST_CASE("unknown facts are left out rather than sent empty", "[facts]") {
  const auto facts = BuildFacts(HostInfo{}, metrics::SystemMetrics{}, "1.2.3");
  CHECK(facts == std::map<std::string, std::string>{{"agent_version", "1.2.3"}});
}

TEST_CASE("host info reads PRETTY_NAME from os-release", "[facts]") {
  pi::testing::TempDir root;
  root.Write("etc/os-release",
             "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME_X=no\nPRETTY_NAME=\"Debian GNU/Linux 12 "
             "(bookworm)\"\nID=debian\n");
  const auto info = ReadHostInfo(root.path());
  CHECK(info.os == "Debian GNU/Linux 12 (bookworm)");
  utsname names{};
  REQUIRE(uname(&names) == 0);
  CHECK(info.kernel == names.release);
  CHECK(info.arch == names.machine);
}

TEST_CASE("host info falls back to /usr/lib/os-release", "[facts]") {
  pi::testing::TempDir root;
  root.Write("usr/lib/os-release", "PRETTY_NAME='Raspbian GNU/Linux 11 (bullseye)'\n");
  CHECK(ReadHostInfo(root.path()).os == "Raspbian GNU/Linux 11 (bullseye)");
}

TEST_CASE("host info without os-release leaves the os unknown", "[facts]") {
  pi::testing::TempDir root;
  CHECK(ReadHostInfo(root.path()).os.empty());
}

}  // namespace
}  // namespace pi::agent::join
