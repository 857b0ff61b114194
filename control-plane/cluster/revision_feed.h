#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace pi::controlplane::cluster {

// Wakes cluster watchers when the revision moves, so a watch answers a change at once instead of
// polling the store.
class RevisionFeed {
 public:
  explicit RevisionFeed(int64_t revision = 0) : revision_(revision) {}

  // Records that the store reached `revision` (never moves backwards).
  void Publish(int64_t revision);
  int64_t Current() const;
  // Waits until the revision is beyond `seen` or `timeout` passes; returns the revision then.
  int64_t WaitBeyond(int64_t seen, std::chrono::milliseconds timeout) const;

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable moved_;
  int64_t revision_;
};

}  // namespace pi::controlplane::cluster
