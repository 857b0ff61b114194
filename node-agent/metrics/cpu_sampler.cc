#include "node-agent/metrics/cpu_sampler.h"

#include <spdlog/spdlog.h>

#include "node-agent/metrics/readers.h"

namespace pi::agent::metrics {
namespace {

uint64_t Delta(uint64_t current, uint64_t previous) {
  return current > previous ? current - previous : 0;
}

CpuPercentages Percentages(const CpuTimes* previous, const CpuTimes& current) {
  const CpuTimes zero;
  const CpuTimes& prev = previous != nullptr ? *previous : zero;
  // guest and guest_nice are already inside user and nice, so they are not added again.
  const double user =
      static_cast<double>(Delta(current.user, prev.user) + Delta(current.nice, prev.nice));
  const double system =
      static_cast<double>(Delta(current.system, prev.system) + Delta(current.irq, prev.irq) +
                          Delta(current.softirq, prev.softirq));
  const double idle = static_cast<double>(Delta(current.idle, prev.idle));
  const double iowait = static_cast<double>(Delta(current.iowait, prev.iowait));
  const double steal = static_cast<double>(Delta(current.steal, prev.steal));
  const double total = user + system + idle + iowait + steal;

  CpuPercentages pct;
  pct.cpu = current.cpu;
  if (total <= 0) return pct;
  const double scale = 100.0 / total;
  pct.user = user * scale;
  pct.system = system * scale;
  pct.idle = idle * scale;
  pct.iowait = iowait * scale;
  pct.steal = steal * scale;
  pct.usage = (user + system + steal) * scale;
  return pct;
}

}  // namespace

CpuUsage ComputeCpuUsage(const KernelStat* previous, const KernelStat& current) {
  CpuUsage usage;
  usage.since_boot = previous == nullptr;
  usage.total = Percentages(previous != nullptr ? &previous->total : nullptr, current.total);
  usage.cores.reserve(current.cores.size());
  for (const CpuTimes& core : current.cores) {
    const CpuTimes* before = nullptr;
    if (previous != nullptr) {
      for (const CpuTimes& candidate : previous->cores) {
        if (candidate.cpu == core.cpu) {
          before = &candidate;
          break;
        }
      }
    }
    usage.cores.push_back(Percentages(before, core));
  }
  return usage;
}

CpuSampler::CpuSampler(CpuSamplerOptions options) : options_(std::move(options)) {}

CpuSampler::~CpuSampler() { Stop(); }

absl::Status CpuSampler::Start() {
  if (options_.interval <= std::chrono::milliseconds::zero()) {
    return absl::InvalidArgumentError("the CPU sampling interval must be positive");
  }
  if (thread_.joinable())
    return absl::FailedPreconditionError("the CPU sampler is already running");
  SampleOnce().IgnoreError();  // Logged inside; Usage() shows the outcome.
  {
    std::lock_guard lock(thread_mu_);
    stop_requested_ = false;
  }
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void CpuSampler::Stop() {
  {
    std::lock_guard lock(thread_mu_);
    stop_requested_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void CpuSampler::Run() {
  std::unique_lock lock(thread_mu_);
  while (!wake_.wait_for(lock, options_.interval, [this] { return stop_requested_; })) {
    lock.unlock();
    SampleOnce().IgnoreError();
    lock.lock();
  }
}

absl::Status CpuSampler::SampleOnce() {
  std::lock_guard sample_lock(sample_mu_);
  absl::StatusOr<KernelStat> stat = ReadKernelStat(options_.root);
  std::lock_guard lock(mu_);
  if (!stat.ok()) {
    if (!failing_) spdlog::warn("CPU usage unavailable: {}", stat.status().ToString());
    failing_ = true;
    last_.reset();
    usage_.reset();
    return stat.status();
  }
  if (failing_) {
    spdlog::info("CPU usage available again: {} is readable",
                 (options_.root / "proc/stat").string());
  }
  failing_ = false;
  usage_ = ComputeCpuUsage(last_ ? &*last_ : nullptr, *stat);
  last_ = std::move(*stat);
  ++samples_taken_;
  return absl::OkStatus();
}

std::optional<CpuUsage> CpuSampler::Usage() const {
  std::lock_guard lock(mu_);
  return usage_;
}

uint64_t CpuSampler::samples_taken() const {
  std::lock_guard lock(mu_);
  return samples_taken_;
}

}  // namespace pi::agent::metrics
