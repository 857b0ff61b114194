#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include "control-plane/queue/queue_engine.h"

namespace pi::controlplane::queue {

// Waits until `route` has exactly `count` long-polling dequeues, so a test acts on a poll the
// server has really registered (or really dropped) instead of sleeping and hoping.
inline bool AwaitWaitingDequeues(QueueEngine& engine, const std::string& route, int64_t count) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    absl::StatusOr<QueueStats> stats = engine.Stats(route);
    if (stats.ok() && stats->waiting == count) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

}  // namespace pi::controlplane::queue
