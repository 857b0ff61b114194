#pragma once

#include <stdlib.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "common/system/cancel_token.h"
#include "node-agent/logs/log_streamer.h"

namespace pi::agent::logs::testing {

inline std::chrono::system_clock::time_point FromUnixMicros(int64_t micros) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::microseconds(micros)));
}

// Sets TZ for the lifetime of the guard, so local-time parsing is deterministic.
class ScopedTimezone {
 public:
  explicit ScopedTimezone(const char* tz) {
    if (const char* old = getenv("TZ")) previous_ = old;
    setenv("TZ", tz, 1);
    tzset();
  }
  ~ScopedTimezone() {
    if (previous_) {
      setenv("TZ", previous_->c_str(), 1);
    } else {
      unsetenv("TZ");
    }
    tzset();
  }

 private:
  std::optional<std::string> previous_;
};

// Collects emitted entries; safe to read from the test thread while a stream thread emits.
class Collector {
 public:
  EmitFn Emit() {
    return [this](const LogEntry& entry) {
      std::lock_guard lock(mu_);
      entries_.push_back(entry);
      cv_.notify_all();
      return max_entries_ == 0 || entries_.size() < max_entries_;
    };
  }

  // Emit() returns false once it has taken this many (0 = never).
  void StopAfter(size_t count) { max_entries_ = count; }

  bool WaitForCount(size_t count, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return entries_.size() >= count; });
  }

  std::vector<LogEntry> Entries() {
    std::lock_guard lock(mu_);
    return entries_;
  }

  std::vector<std::string> Messages() {
    std::lock_guard lock(mu_);
    std::vector<std::string> messages;
    for (const LogEntry& entry : entries_) messages.push_back(entry.message);
    return messages;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<LogEntry> entries_;
  size_t max_entries_ = 0;
};

// Runs a stream on its own thread, as the adapter does.
class BackgroundStream {
 public:
  BackgroundStream(const LogStreamer& streamer, LogFilter filter, Collector& collector)
      : thread_([this, &streamer, filter = std::move(filter), &collector] {
          absl::Status status = streamer.Stream(filter, collector.Emit(), cancel_);
          std::lock_guard lock(mu_);
          status_ = status;
          done_ = true;
          cv_.notify_all();
        }) {}

  ~BackgroundStream() {
    cancel_.Cancel();
    thread_.join();
  }

  common::CancelToken& cancel() { return cancel_; }

  bool WaitDone(std::chrono::milliseconds limit) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return done_; });
  }

  // Only after WaitDone() returned true.
  absl::Status status() {
    std::lock_guard lock(mu_);
    return status_;
  }

 private:
  common::CancelToken cancel_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  absl::Status status_;
  std::thread thread_;
};

// Cancels a running stream and checks that it ends promptly with CANCELLED. The time it took is
// reported, not asserted tightly: the build machines are shared.
inline void CheckCancelEndsStream(BackgroundStream& stream) {
  const auto start = std::chrono::steady_clock::now();
  stream.cancel().Cancel();
  REQUIRE(stream.WaitDone(std::chrono::seconds(10)));
  const auto took = std::chrono::steady_clock::now() - start;
  WARN("cancel took " << std::chrono::duration_cast<std::chrono::microseconds>(took).count()
                      << " us");
  CHECK(took < std::chrono::seconds(2));
  CHECK(stream.status().code() == absl::StatusCode::kCancelled);
}

}  // namespace pi::agent::logs::testing
