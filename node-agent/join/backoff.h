#pragma once

#include <chrono>

#include "common/system/clock.h"

namespace pi::agent::join {

// Capped exponential backoff for calls to the controller: after the first failure wait `initial`,
// then twice as long after each further one, never longer than `max`; a success starts over.
// Not thread-safe: one loop owns it.
class Backoff {
 public:
  // `max` below `initial` is raised to it. `clock` must outlive the backoff.
  Backoff(std::chrono::nanoseconds initial, std::chrono::nanoseconds max,
          const common::Clock& clock = common::RealClock());

  // Records a failure now and returns the delay before the next attempt.
  std::chrono::nanoseconds Failure();
  void Success();

  int consecutive_failures() const { return failures_; }
  // Time left before the attempt after the last failure is due; zero after a success or once
  // the delay has passed.
  std::chrono::nanoseconds Remaining() const;

 private:
  const std::chrono::nanoseconds initial_;
  const std::chrono::nanoseconds max_;
  const common::Clock& clock_;
  int failures_ = 0;
  std::chrono::nanoseconds next_delay_;
  std::chrono::steady_clock::time_point next_attempt_{};
};

}  // namespace pi::agent::join
