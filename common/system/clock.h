#pragma once

#include <chrono>
#include <mutex>

namespace pi::common {

// Time source injected into every core that has deadlines, so tests move time instead of sleeping.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::steady_clock::time_point Now() const = 0;
  virtual std::chrono::system_clock::time_point WallNow() const = 0;
};

// The process-wide real clock.
Clock& RealClock();

// A clock that only moves when told to. Thread-safe.
class ManualClock : public Clock {
 public:
  std::chrono::steady_clock::time_point Now() const override;
  std::chrono::system_clock::time_point WallNow() const override;
  void Advance(std::chrono::nanoseconds by);

 private:
  mutable std::mutex mu_;
  std::chrono::steady_clock::time_point now_{std::chrono::hours(1)};
  std::chrono::system_clock::time_point wall_now_{std::chrono::hours(24 * 365 * 50)};
};

}  // namespace pi::common
