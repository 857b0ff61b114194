#include "node-agent/metrics/collector.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <string>

#include "common/system/clock.h"
#include "tests/node-agent/metrics/test_util.h"

namespace pi::agent::metrics {
namespace {

using testing::Fixture;
using testing::TempTree;

absl::StatusOr<FsUsage> FixedStatvfs(const std::string&) {
  return FsUsage{
      .size_bytes = 1000, .free_bytes = 400, .avail_bytes = 300, .files = 50, .files_free = 20};
}

SystemMetrics CollectFrom(const std::filesystem::path& root, const common::Clock& clock) {
  CpuSampler sampler({.root = root});
  SystemMetricsCollector collector({.root = root}, sampler, FixedStatvfs, clock);
  return collector.Collect();
}

TEST_CASE("collecting a Pi 3B tree fills every part", "[collector]") {
  common::ManualClock clock;
  const SystemMetrics m = CollectFrom(Fixture("pi3b"), clock);
  CHECK(m.collected_at == clock.WallNow());
  REQUIRE(m.kernel_stat.has_value());
  CHECK(m.kernel_stat->cores.size() == 4);
  REQUIRE(m.memory.has_value());
  CHECK(m.memory->total_bytes == 948304ull * 1024);
  REQUIRE(m.load.has_value());
  CHECK(m.load->load1 == 0.52);
  REQUIRE(m.uptime.has_value());
  CHECK(m.uptime->uptime_seconds == 352417.31);
  REQUIRE(m.network.has_value());
  CHECK(m.network->size() == 3);
  REQUIRE(m.disks.has_value());
  CHECK(m.disks->size() == 1);
  REQUIRE(m.filesystems.has_value());
  CHECK(m.filesystems->size() == 3);
  CHECK((*m.filesystems)[0].usage.avail_bytes == 300);
  REQUIRE(m.thermal_zones.has_value());
  CHECK((*m.thermal_zones)[0].type == "cpu-thermal");
  REQUIRE(m.power.has_value());
  CHECK(m.power->raw == 0x50005);
  REQUIRE(m.device_model.has_value());
  CHECK(*m.device_model == "Raspberry Pi 3 Model B Rev 1.2");
  REQUIRE(m.processes.has_value());
  CHECK(m.processes->running == 3);
  CHECK(m.processes->blocked == 1);
  CHECK(m.processes->total == 187);
}

TEST_CASE("without sampler data the collector gives CPU usage since boot", "[collector]") {
  common::ManualClock clock;
  const SystemMetrics m = CollectFrom(Fixture("pi3b"), clock);
  REQUIRE(m.cpu_usage.has_value());
  CHECK(m.cpu_usage->since_boot);
  REQUIRE(m.cpu_usage->cores.size() == 4);
  // cpu0 since boot: busy = user+nice+system+softirq over all ticks.
  const double busy = 356475 + 1609 + 137256 + 7846;
  const double all = busy + 13203017 + 11325;
  CHECK(m.cpu_usage->cores[0].usage == Approx(100 * busy / all));
}

TEST_CASE("the collector takes CPU usage from the sampler's last window", "[collector]") {
  TempTree tree("pi3b");
  CpuSampler sampler({.root = tree.root()});
  REQUIRE(sampler.SampleOnce().ok());
  REQUIRE(sampler.SampleOnce().ok());
  SystemMetricsCollector collector({.root = tree.root()}, sampler, FixedStatvfs);
  const SystemMetrics m = collector.Collect();
  REQUIRE(m.cpu_usage.has_value());
  CHECK_FALSE(m.cpu_usage->since_boot);
  CHECK(m.cpu_usage->total.usage == 0);  // The file did not change between the two samples.
}

TEST_CASE("a missing source makes only its own part absent", "[collector]") {
  TempTree tree("pi3b");
  tree.Remove("proc/net/dev");
  tree.Remove("sys/devices/platform/soc/soc:firmware/get_throttled");
  common::ManualClock clock;
  const SystemMetrics m = CollectFrom(tree.root(), clock);
  CHECK_FALSE(m.network.has_value());
  CHECK_FALSE(m.power.has_value());
  CHECK(m.kernel_stat.has_value());
  CHECK(m.cpu_usage.has_value());
  CHECK(m.memory.has_value());
  CHECK(m.load.has_value());
  CHECK(m.uptime.has_value());
  CHECK(m.disks.has_value());
  CHECK(m.filesystems.has_value());
  CHECK(m.thermal_zones.has_value());
  CHECK(m.device_model.has_value());
  CHECK(m.processes.has_value());
}

TEST_CASE("a broken source makes only its own part absent", "[collector]") {
  TempTree tree("pi3b");
  tree.Write("proc/meminfo", "MemTotal: a lot\n");
  common::ManualClock clock;
  const SystemMetrics m = CollectFrom(tree.root(), clock);
  CHECK_FALSE(m.memory.has_value());
  CHECK(m.load.has_value());
  CHECK(m.network.has_value());
  CHECK(m.kernel_stat.has_value());
}

TEST_CASE("a broken /proc/stat removes CPU figures and process counts", "[collector]") {
  TempTree tree("pi3b");
  tree.Write("proc/stat", "cpu oops\n");
  common::ManualClock clock;
  const SystemMetrics m = CollectFrom(tree.root(), clock);
  CHECK_FALSE(m.kernel_stat.has_value());
  CHECK_FALSE(m.cpu_usage.has_value());
  CHECK_FALSE(m.processes.has_value());
  CHECK(m.load.has_value());
}

TEST_CASE("a source that recovers is reported again on the next call", "[collector]") {
  TempTree tree("pi3b");
  const std::string loadavg = "0.52 0.34 0.28 2/187 12345\n";
  tree.Write("proc/loadavg", "broken\n");
  CpuSampler sampler({.root = tree.root()});
  SystemMetricsCollector collector({.root = tree.root()}, sampler, FixedStatvfs);
  CHECK_FALSE(collector.Collect().load.has_value());
  CHECK_FALSE(collector.Collect().load.has_value());
  tree.Write("proc/loadavg", loadavg);
  CHECK(collector.Collect().load.has_value());
}

TEST_CASE("a machine that is not a Pi has no power state or model", "[collector]") {
  TempTree tree("pi3b");
  tree.Remove("sys/devices");
  tree.Remove("proc/device-tree");
  common::ManualClock clock;
  const SystemMetrics m = CollectFrom(tree.root(), clock);
  CHECK_FALSE(m.power.has_value());
  CHECK_FALSE(m.device_model.has_value());
  CHECK(m.memory.has_value());
}

TEST_CASE("the device model is read once, not on every call", "[collector]") {
  TempTree tree("pi3b");
  CpuSampler sampler({.root = tree.root()});
  SystemMetricsCollector collector({.root = tree.root()}, sampler, FixedStatvfs);
  tree.Remove("proc/device-tree");
  const SystemMetrics m = collector.Collect();
  REQUIRE(m.device_model.has_value());
  CHECK(*m.device_model == "Raspberry Pi 3 Model B Rev 1.2");
}

TEST_CASE("the collection time comes from the injected clock", "[collector]") {
  common::ManualClock clock;
  TempTree tree("pi3b");
  CpuSampler sampler({.root = tree.root()});
  SystemMetricsCollector collector({.root = tree.root()}, sampler, FixedStatvfs, clock);
  const auto first = collector.Collect().collected_at;
  clock.Advance(std::chrono::seconds(15));
  CHECK(collector.Collect().collected_at - first == std::chrono::seconds(15));
}

TEST_CASE("the collector applies its configured filesystem exclusions", "[collector]") {
  TempTree tree("pi3b");
  CpuSampler sampler({.root = tree.root()});
  CollectorOptions options{.root = tree.root()};
  options.excluded_fs_types.insert("vfat");
  SystemMetricsCollector collector(options, sampler, FixedStatvfs);
  const SystemMetrics m = collector.Collect();
  REQUIRE(m.filesystems.has_value());
  REQUIRE(m.filesystems->size() == 1);
  CHECK((*m.filesystems)[0].mount_point == "/");
}

}  // namespace
}  // namespace pi::agent::metrics
