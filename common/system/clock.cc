#include "common/system/clock.h"

namespace pi::common {
namespace {

class SystemClock : public Clock {
 public:
  std::chrono::steady_clock::time_point Now() const override {
    return std::chrono::steady_clock::now();
  }
  std::chrono::system_clock::time_point WallNow() const override {
    return std::chrono::system_clock::now();
  }
};

}  // namespace

Clock& RealClock() {
  static SystemClock clock;
  return clock;
}

std::chrono::steady_clock::time_point ManualClock::Now() const {
  std::lock_guard lock(mu_);
  return now_;
}

std::chrono::system_clock::time_point ManualClock::WallNow() const {
  std::lock_guard lock(mu_);
  return wall_now_;
}

void ManualClock::Advance(std::chrono::nanoseconds by) {
  std::lock_guard lock(mu_);
  now_ += by;
  wall_now_ += std::chrono::duration_cast<std::chrono::system_clock::duration>(by);
}

}  // namespace pi::common
