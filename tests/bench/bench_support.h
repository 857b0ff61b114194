#pragma once

#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "common/system/child_process.h"

// What the benchmarks share: reading figures about the daemons they measure (and themselves) from
// /proc, starting and stopping those daemons, and small helpers for options and results.
namespace pi::bench {

// Runs a short command (a pi-controller subcommand) to completion within 60 s; INTERNAL with
// the command and its output when it fails.
absl::Status RunToCompletion(const std::vector<std::string>& argv);

// The whole file, or "" when it cannot be read.
std::string ReadWholeFile(const std::string& path);

// User plus system CPU seconds a process has used, from /proc/<pid>/stat (fields 14 and 15).
double ProcessCpuSeconds(pid_t pid);

// User plus system CPU seconds this process (the bench itself) has used.
double SelfCpuSeconds();

// The number on a "Key:   value kB" (or plain count) line of /proc/<pid>/status, as written
// (kB for the Vm* sizes); 0 when the process or the key is missing.
long StatusField(pid_t pid, const std::string& key);

// A "Key:   value kB" line of /proc/<pid>/status, in MiB.
double StatusMib(pid_t pid, const std::string& key);

// The port named `name` in a --ports-file JSON object ({"grpc":N,...}); 0 while the file is not
// written yet, cannot be parsed or lacks the name.
int PortFromFile(const std::string& ports_file, const std::string& name);

// The value at `fraction` (0.5 for the median) of `values`, 0 when there are none. Reorders
// `values` (a partial sort) rather than copying them: latency lists can be long.
template <typename T>
double Percentile(std::vector<T>& values, double fraction) {
  if (values.empty()) return 0;
  const size_t index = std::min(values.size() - 1, static_cast<size_t>(fraction * values.size()));
  std::nth_element(values.begin(), values.begin() + static_cast<long>(index), values.end());
  return values[index];
}

// An option's default from the environment variable `name`, or `fallback` when it is unset,
// empty or does not read as a T (a string reads up to its first white space).
template <typename T>
T FromEnv(const char* name, T fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  std::istringstream in(text);
  T value{};
  return (in >> value) ? value : fallback;
}

// A daemon started for a bench. Its output is drained on a thread of its own so that a chatty
// log can never block it on a full pipe; the tail is kept for error messages.
class Daemon {
 public:
  // `environment` is the daemon's whole environment (NAME=value); nothing is inherited.
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(std::vector<std::string> argv,
                                                       std::vector<std::string> environment = {});

  ~Daemon() { Stop(std::chrono::milliseconds(0)); }
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  pid_t pid() const { return child_->pid(); }
  bool exited() const { return exited_; }

  // The tail of what the daemon wrote to stdout and stderr.
  std::string output();

  // SIGTERM, `grace` to exit, then SIGKILL. Returns how it ended; nothing when it could not be
  // reaped or was already stopped.
  std::optional<pi::common::ExitStatus> Stop(std::chrono::milliseconds grace);

 private:
  explicit Daemon(std::unique_ptr<pi::common::ChildProcess> child);

  void Drain();

  static constexpr size_t kKeep = 16 * 1024;
  std::unique_ptr<pi::common::ChildProcess> child_;
  std::mutex mu_;
  std::string output_;
  std::atomic<bool> stop_drain_{false};
  std::atomic<bool> exited_{false};
  bool stopped_ = false;
  std::thread drain_;
};

}  // namespace pi::bench
