// Reads this machine's real /proc and /sys, checked against independent sources.

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <string>

#include "node-agent/metrics/collector.h"
#include "node-agent/metrics/node_exporter_text.h"

namespace pi::agent::metrics {
namespace {

uint64_t MemTotalKibibytesFromProc() {
  std::ifstream in("/proc/meminfo");
  for (std::string line; std::getline(in, line);) {
    uint64_t kib = 0;
    if (std::sscanf(line.c_str(), "MemTotal: %" SCNu64 " kB", &kib) == 1) return kib;
  }
  return 0;
}

TEST_CASE("MemTotal of the real / equals what /proc/meminfo says", "[real]") {
  const uint64_t expected_kib = MemTotalKibibytesFromProc();
  REQUIRE(expected_kib > 0);
  absl::StatusOr<MemoryInfo> info = ReadMemoryInfo("/");
  REQUIRE(info.ok());
  CHECK(info->total_bytes == expected_kib * 1024);
  CHECK(info->available_bytes <= info->total_bytes);
}

TEST_CASE("the real / has one /proc/stat core per online CPU", "[real]") {
  absl::StatusOr<KernelStat> stat = ReadKernelStat("/");
  REQUIRE(stat.ok());
  CHECK(static_cast<long>(stat->cores.size()) == ::sysconf(_SC_NPROCESSORS_ONLN));
  CHECK(stat->ticks_per_second == ::sysconf(_SC_CLK_TCK));
}

TEST_CASE("collecting the real / gives the parts every Linux machine has", "[real]") {
  CpuSampler sampler({});
  REQUIRE(sampler.SampleOnce().ok());
  SystemMetricsCollector collector({}, sampler);
  const SystemMetrics m = collector.Collect();
  CHECK(m.kernel_stat.has_value());
  CHECK(m.cpu_usage.has_value());
  CHECK(m.memory.has_value());
  CHECK(m.load.has_value());
  CHECK(m.uptime.has_value());
  CHECK(m.network.has_value());
  CHECK(m.disks.has_value());
  CHECK(m.filesystems.has_value());
  CHECK(m.processes.has_value());
  const std::string text = RenderNodeExporterText(m);
  CHECK(text.find("\nnode_memory_MemTotal_bytes ") != std::string::npos);
}

}  // namespace
}  // namespace pi::agent::metrics
