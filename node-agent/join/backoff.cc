#include "node-agent/join/backoff.h"

#include <algorithm>

namespace pi::agent::join {

Backoff::Backoff(std::chrono::nanoseconds initial, std::chrono::nanoseconds max,
                 const common::Clock& clock)
    : initial_(initial), max_(std::max(initial, max)), clock_(clock), next_delay_(initial) {}

std::chrono::nanoseconds Backoff::Failure() {
  const auto delay = next_delay_;
  ++failures_;
  // Doubling stops at the cap, so it cannot overflow however long the controller stays away.
  next_delay_ = next_delay_ >= max_ / 2 ? max_ : next_delay_ * 2;
  next_attempt_ = clock_.Now() + delay;
  return delay;
}

void Backoff::Success() {
  failures_ = 0;
  next_delay_ = initial_;
  next_attempt_ = {};
}

std::chrono::nanoseconds Backoff::Remaining() const {
  return std::max(std::chrono::nanoseconds(0), next_attempt_ - clock_.Now());
}

}  // namespace pi::agent::join
