#include "node-agent/metrics/cpu_sampler.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <string>
#include <thread>

#include "tests/node-agent/metrics/test_util.h"

namespace pi::agent::metrics {
namespace {

using testing::TempTree;

constexpr char kStatTail[] =
    "ctxt 1\nbtime 1700000000\nprocesses 1\nprocs_running 1\n"
    "procs_blocked 0\n";

// A /proc/stat with two cores; the aggregate line is the sum of the core lines.
std::string Stat(const CpuTimes& core0, const CpuTimes& core1) {
  auto line = [](const std::string& name, const CpuTimes& t) {
    return name + " " + std::to_string(t.user) + " " + std::to_string(t.nice) + " " +
           std::to_string(t.system) + " " + std::to_string(t.idle) + " " +
           std::to_string(t.iowait) + " " + std::to_string(t.irq) + " " +
           std::to_string(t.softirq) + " " + std::to_string(t.steal) + " 0 0\n";
  };
  CpuTimes sum;
  sum.user = core0.user + core1.user;
  sum.nice = core0.nice + core1.nice;
  sum.system = core0.system + core1.system;
  sum.idle = core0.idle + core1.idle;
  sum.iowait = core0.iowait + core1.iowait;
  sum.irq = core0.irq + core1.irq;
  sum.softirq = core0.softirq + core1.softirq;
  sum.steal = core0.steal + core1.steal;
  return line("cpu ", sum) + line("cpu0", core0) + line("cpu1", core1) + kStatTail;
}

CpuTimes Times(uint64_t user, uint64_t system, uint64_t idle, uint64_t iowait) {
  CpuTimes t;
  t.user = user;
  t.system = system;
  t.idle = idle;
  t.iowait = iowait;
  return t;
}

KernelStat StatOf(CpuTimes total, std::vector<CpuTimes> cores = {}) {
  KernelStat stat;
  stat.total = total;
  stat.cores = std::move(cores);
  return stat;
}

bool AllFinite(const CpuPercentages& p) {
  for (double v : {p.usage, p.user, p.system, p.idle, p.iowait, p.steal}) {
    if (!std::isfinite(v) || v < 0) return false;
  }
  return true;
}

TEST_CASE("a single sample gives usage since boot", "[cpu]") {
  CpuTimes total = Times(200, 100, 600, 100);
  total.nice = 0;
  const CpuUsage usage = ComputeCpuUsage(nullptr, StatOf(total));
  CHECK(usage.since_boot);
  CHECK(usage.total.cpu == -1);
  CHECK(usage.total.user == Approx(20));
  CHECK(usage.total.system == Approx(10));
  CHECK(usage.total.idle == Approx(60));
  CHECK(usage.total.iowait == Approx(10));
  CHECK(usage.total.usage == Approx(30));
}

TEST_CASE("usage comes from the deltas between two samples", "[cpu]") {
  const KernelStat before = StatOf(Times(1000, 500, 8000, 500), {Times(1000, 500, 8000, 500)});
  // Over the window: user +30, system +10, idle +50, iowait +10 -> 100 ticks.
  const KernelStat after = StatOf(Times(1030, 510, 8050, 510), {Times(1030, 510, 8050, 510)});
  const CpuUsage usage = ComputeCpuUsage(&before, after);
  CHECK_FALSE(usage.since_boot);
  CHECK(usage.total.user == Approx(30));
  CHECK(usage.total.system == Approx(10));
  CHECK(usage.total.idle == Approx(50));
  CHECK(usage.total.iowait == Approx(10));
  CHECK(usage.total.usage == Approx(40));
  REQUIRE(usage.cores.size() == 1);
  CHECK(usage.cores[0].usage == Approx(40));
}

TEST_CASE("nice counts as user and irq and softirq as system", "[cpu]") {
  CpuTimes t = Times(10, 10, 60, 0);
  t.nice = 10;
  t.irq = 5;
  t.softirq = 5;
  const CpuUsage usage = ComputeCpuUsage(nullptr, StatOf(t));
  CHECK(usage.total.user == Approx(20));
  CHECK(usage.total.system == Approx(20));
  CHECK(usage.total.usage == Approx(40));
}

TEST_CASE("steal is busy time, not idle", "[cpu]") {
  CpuTimes t = Times(0, 0, 75, 0);
  t.steal = 25;
  const CpuUsage usage = ComputeCpuUsage(nullptr, StatOf(t));
  CHECK(usage.total.steal == Approx(25));
  CHECK(usage.total.usage == Approx(25));
}

TEST_CASE("counters going backwards count as zero, never negative or NaN", "[cpu]") {
  const KernelStat before = StatOf(Times(1000, 500, 8000, 500));
  // user went backwards (e.g. a CPU came back online with fresh counters); idle moved by 100.
  const KernelStat after = StatOf(Times(900, 500, 8100, 500));
  const CpuUsage usage = ComputeCpuUsage(&before, after);
  CHECK(AllFinite(usage.total));
  CHECK(usage.total.user == 0);
  CHECK(usage.total.idle == Approx(100));
  CHECK(usage.total.usage == 0);
}

TEST_CASE("every counter going backwards gives all zeros", "[cpu]") {
  const KernelStat before = StatOf(Times(1000, 500, 8000, 500));
  const KernelStat after = StatOf(Times(10, 5, 80, 5));
  const CpuUsage usage = ComputeCpuUsage(&before, after);
  CHECK(AllFinite(usage.total));
  CHECK(usage.total.usage == 0);
  CHECK(usage.total.idle == 0);
}

TEST_CASE("no time between samples gives zeros, not NaN", "[cpu]") {
  const KernelStat stat = StatOf(Times(1000, 500, 8000, 500));
  const CpuUsage usage = ComputeCpuUsage(&stat, stat);
  CHECK(AllFinite(usage.total));
  CHECK(usage.total.usage == 0);
}

TEST_CASE("a core missing from the previous sample is computed since boot", "[cpu]") {
  CpuTimes core0 = Times(10, 0, 90, 0);
  core0.cpu = 0;
  CpuTimes core1 = Times(50, 0, 50, 0);
  core1.cpu = 1;
  const KernelStat before = StatOf(Times(10, 0, 90, 0), {core0});
  CpuTimes core0_later = Times(20, 0, 180, 0);
  core0_later.cpu = 0;
  const KernelStat after = StatOf(Times(70, 0, 230, 0), {core0_later, core1});
  const CpuUsage usage = ComputeCpuUsage(&before, after);
  REQUIRE(usage.cores.size() == 2);
  CHECK(usage.cores[0].cpu == 0);
  CHECK(usage.cores[0].usage == Approx(10));
  CHECK(usage.cores[1].cpu == 1);
  CHECK(usage.cores[1].usage == Approx(50));
}

TEST_CASE("the sampler has no usage before its first sample", "[sampler]") {
  TempTree tree;
  CpuSampler sampler({.root = tree.root()});
  CHECK_FALSE(sampler.Usage().has_value());
  CHECK(sampler.samples_taken() == 0);
}

TEST_CASE("the sampler reports since-boot usage after one sample and deltas after two",
          "[sampler]") {
  TempTree tree;
  tree.Write("proc/stat", Stat(Times(100, 100, 700, 100), Times(400, 0, 600, 0)));
  CpuSampler sampler({.root = tree.root()});
  REQUIRE(sampler.SampleOnce().ok());
  std::optional<CpuUsage> first = sampler.Usage();
  REQUIRE(first.has_value());
  CHECK(first->since_boot);
  CHECK(first->total.usage == Approx(30));  // (200 + 400) busy of 2000 ticks.
  REQUIRE(first->cores.size() == 2);
  CHECK(first->cores[0].usage == Approx(20));
  CHECK(first->cores[1].usage == Approx(40));

  // core0: +90 user, +10 idle; core1: +100 idle.
  tree.Write("proc/stat", Stat(Times(190, 100, 710, 100), Times(400, 0, 700, 0)));
  REQUIRE(sampler.SampleOnce().ok());
  std::optional<CpuUsage> second = sampler.Usage();
  REQUIRE(second.has_value());
  CHECK_FALSE(second->since_boot);
  CHECK(second->total.usage == Approx(45));
  CHECK(second->total.user == Approx(45));
  CHECK(second->total.idle == Approx(55));
  REQUIRE(second->cores.size() == 2);
  CHECK(second->cores[0].usage == Approx(90));
  CHECK(second->cores[0].user == Approx(90));
  CHECK(second->cores[1].usage == Approx(0));
  CHECK(second->cores[1].idle == Approx(100));
  CHECK(sampler.samples_taken() == 2);
}

TEST_CASE("the sampler clamps counters that go backwards between samples", "[sampler]") {
  TempTree tree;
  tree.Write("proc/stat", Stat(Times(500, 100, 1000, 100), Times(500, 100, 1000, 100)));
  CpuSampler sampler({.root = tree.root()});
  REQUIRE(sampler.SampleOnce().ok());
  tree.Write("proc/stat", Stat(Times(400, 100, 1100, 100), Times(500, 100, 1000, 100)));
  REQUIRE(sampler.SampleOnce().ok());
  std::optional<CpuUsage> usage = sampler.Usage();
  REQUIRE(usage.has_value());
  CHECK(AllFinite(usage->total));
  CHECK(usage->total.usage == 0);
  CHECK(AllFinite(usage->cores[0]));
  CHECK(usage->cores[0].idle == Approx(100));
  CHECK(AllFinite(usage->cores[1]));
  CHECK(usage->cores[1].usage == 0);
}

TEST_CASE("a failed sample empties the usage and the next one starts since boot", "[sampler]") {
  TempTree tree;
  tree.Write("proc/stat", Stat(Times(100, 0, 100, 0), Times(100, 0, 100, 0)));
  CpuSampler sampler({.root = tree.root()});
  REQUIRE(sampler.SampleOnce().ok());
  tree.Write("proc/stat", "garbage\n");
  CHECK(absl::IsDataLoss(sampler.SampleOnce()));
  CHECK_FALSE(sampler.Usage().has_value());
  tree.Write("proc/stat", Stat(Times(300, 0, 100, 0), Times(300, 0, 100, 0)));
  REQUIRE(sampler.SampleOnce().ok());
  REQUIRE(sampler.Usage().has_value());
  CHECK(sampler.Usage()->since_boot);
  CHECK(sampler.Usage()->total.usage == Approx(75));
}

TEST_CASE("the sampler without /proc/stat reports NOT_FOUND", "[sampler]") {
  TempTree empty;
  CpuSampler sampler({.root = empty.root()});
  CHECK(absl::IsNotFound(sampler.SampleOnce()));
  CHECK_FALSE(sampler.Usage().has_value());
}

TEST_CASE("Start takes a first sample at once and Stop returns without waiting the interval",
          "[sampler]") {
  TempTree tree;
  tree.Write("proc/stat", Stat(Times(100, 0, 100, 0), Times(100, 0, 100, 0)));
  CpuSampler sampler({.root = tree.root(), .interval = std::chrono::hours(1)});
  REQUIRE(sampler.Start().ok());
  CHECK(sampler.samples_taken() == 1);
  CHECK(sampler.Usage().has_value());
  const auto before = std::chrono::steady_clock::now();
  sampler.Stop();
  CHECK(std::chrono::steady_clock::now() - before < std::chrono::seconds(5));
  CHECK(sampler.samples_taken() == 1);
}

TEST_CASE("the background thread keeps sampling at the interval", "[sampler]") {
  TempTree tree;
  tree.Write("proc/stat", Stat(Times(100, 0, 100, 0), Times(100, 0, 100, 0)));
  CpuSampler sampler({.root = tree.root(), .interval = std::chrono::milliseconds(1)});
  REQUIRE(sampler.Start().ok());
  // Waits for an event, not for a duration: the deadline only bounds a broken sampler.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (sampler.samples_taken() < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  sampler.Stop();
  CHECK(sampler.samples_taken() >= 3);
  CHECK_FALSE(sampler.Usage()->since_boot);
}

TEST_CASE("starting a running sampler is FAILED_PRECONDITION", "[sampler]") {
  TempTree tree;
  tree.Write("proc/stat", Stat(Times(1, 0, 1, 0), Times(1, 0, 1, 0)));
  CpuSampler sampler({.root = tree.root(), .interval = std::chrono::hours(1)});
  REQUIRE(sampler.Start().ok());
  CHECK(absl::IsFailedPrecondition(sampler.Start()));
  sampler.Stop();
  CHECK(sampler.Start().ok());
}

TEST_CASE("a non-positive sampling interval is INVALID_ARGUMENT", "[sampler]") {
  TempTree tree;
  CpuSampler sampler({.root = tree.root(), .interval = std::chrono::milliseconds(0)});
  CHECK(absl::IsInvalidArgument(sampler.Start()));
}

}  // namespace
}  // namespace pi::agent::metrics
