#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/status/status.h"
#include "node-agent/metrics/system_metrics.h"

namespace pi::agent::metrics {

// CPU percentages between two /proc/stat samples; with previous == nullptr, since boot. A counter
// that went backwards (CPU hot-plug, a kernel accounting quirk) counts as 0, so no result is ever
// negative or NaN. A core missing from previous is computed since boot.
CpuUsage ComputeCpuUsage(const KernelStat* previous, const KernelStat& current);

struct CpuSamplerOptions {
  std::filesystem::path root = "/";
  std::chrono::milliseconds interval{1000};
};

// Samples <root>/proc/stat on a background thread and keeps the usage over the last interval,
// so a metrics call gets CPU percentages at once instead of sleeping between two reads.
// Start() and Stop() are for the owner; SampleOnce(), Usage() and samples_taken() may be called
// from any thread.
class CpuSampler {
 public:
  explicit CpuSampler(CpuSamplerOptions options);
  CpuSampler(const CpuSampler&) = delete;
  CpuSampler& operator=(const CpuSampler&) = delete;
  ~CpuSampler();

  // Takes a first sample at once, then one per interval on a background thread.
  // INVALID_ARGUMENT for a non-positive interval, FAILED_PRECONDITION if already running.
  // A failing first sample is not an error here: it is logged and Usage() stays empty.
  absl::Status Start();
  // Wakes and joins the thread; returns without waiting for the interval. Idempotent.
  void Stop();

  // Reads /proc/stat once and updates Usage(). On failure Usage() becomes empty (stale numbers
  // would look like a healthy idle CPU) and the next success starts again from since-boot.
  absl::Status SampleOnce();

  // Usage over the last two samples, since boot after the first one; empty before any sample.
  std::optional<CpuUsage> Usage() const;
  uint64_t samples_taken() const;

 private:
  void Run();

  const CpuSamplerOptions options_;

  // Serializes whole samples so two callers cannot store them out of order.
  std::mutex sample_mu_;
  mutable std::mutex mu_;
  std::optional<KernelStat> last_;
  std::optional<CpuUsage> usage_;
  uint64_t samples_taken_ = 0;
  bool failing_ = false;

  std::mutex thread_mu_;
  std::condition_variable wake_;
  bool stop_requested_ = false;
  std::thread thread_;
};

}  // namespace pi::agent::metrics
