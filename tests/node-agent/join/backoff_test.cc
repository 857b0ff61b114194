#include "node-agent/join/backoff.h"

#include <catch2/catch.hpp>

namespace pi::agent::join {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

TEST_CASE("backoff doubles from the initial delay up to the cap", "[backoff]") {
  common::ManualClock clock;
  Backoff backoff(seconds(1), seconds(10), clock);
  CHECK(backoff.Failure() == seconds(1));
  CHECK(backoff.Failure() == seconds(2));
  CHECK(backoff.Failure() == seconds(4));
  CHECK(backoff.Failure() == seconds(8));
  CHECK(backoff.Failure() == seconds(10));
  CHECK(backoff.Failure() == seconds(10));
  CHECK(backoff.consecutive_failures() == 6);
}

TEST_CASE("a success starts the backoff over", "[backoff]") {
  common::ManualClock clock;
  Backoff backoff(milliseconds(100), seconds(10), clock);
  backoff.Failure();
  backoff.Failure();
  backoff.Success();
  CHECK(backoff.consecutive_failures() == 0);
  CHECK(backoff.Remaining() == nanoseconds(0));
  CHECK(backoff.Failure() == milliseconds(100));
}

TEST_CASE("the remaining delay follows the injected clock", "[backoff]") {
  common::ManualClock clock;
  Backoff backoff(seconds(2), seconds(60), clock);
  CHECK(backoff.Remaining() == nanoseconds(0));
  backoff.Failure();
  CHECK(backoff.Remaining() == seconds(2));
  clock.Advance(milliseconds(1500));
  CHECK(backoff.Remaining() == milliseconds(500));
  clock.Advance(seconds(5));
  CHECK(backoff.Remaining() == nanoseconds(0));
}

TEST_CASE("a cap below the initial delay is raised to it", "[backoff]") {
  common::ManualClock clock;
  Backoff backoff(seconds(5), seconds(1), clock);
  CHECK(backoff.Failure() == seconds(5));
  CHECK(backoff.Failure() == seconds(5));
}

TEST_CASE("a long outage never overflows the delay", "[backoff]") {
  common::ManualClock clock;
  Backoff backoff(nanoseconds(1), std::chrono::hours(24 * 365), clock);
  nanoseconds last{0};
  for (int i = 0; i < 200; ++i) last = backoff.Failure();
  CHECK(last == std::chrono::hours(24 * 365));
}

}  // namespace
}  // namespace pi::agent::join
