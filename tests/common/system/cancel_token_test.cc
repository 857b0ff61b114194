#include "common/system/cancel_token.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

namespace pi::common {
namespace {

using namespace std::chrono_literals;

TEST_CASE("WaitFor times out when nobody cancels", "[cancel_token]") {
  CancelToken token;
  CHECK_FALSE(token.WaitFor(10ms));
  CHECK_FALSE(token.cancelled());
}

TEST_CASE("Cancel from another thread wakes a long WaitFor at once", "[cancel_token]") {
  CancelToken token;
  std::thread canceller([&] {
    std::this_thread::sleep_for(20ms);
    token.Cancel();
  });
  auto start = std::chrono::steady_clock::now();
  bool cancelled = token.WaitFor(10min);
  auto waited = std::chrono::steady_clock::now() - start;
  canceller.join();
  CHECK(cancelled);
  CHECK(waited < 5s);
}

TEST_CASE("WaitFor returns at once on a cancelled token", "[cancel_token]") {
  CancelToken token;
  token.Cancel();
  CHECK(token.cancelled());
  CHECK(token.WaitFor(10min));
}

TEST_CASE("registered callbacks run once on Cancel", "[cancel_token]") {
  CancelToken token;
  int calls = 0;
  auto registration = token.OnCancel([&] { ++calls; });
  CHECK(calls == 0);
  token.Cancel();
  token.Cancel();
  CHECK(calls == 1);
}

TEST_CASE("a callback registered after Cancel runs immediately", "[cancel_token]") {
  CancelToken token;
  token.Cancel();
  int calls = 0;
  auto registration = token.OnCancel([&] { ++calls; });
  CHECK(calls == 1);
}

TEST_CASE("a destroyed registration's callback does not run", "[cancel_token]") {
  CancelToken token;
  int calls = 0;
  {
    auto registration = token.OnCancel([&] { ++calls; });
  }
  token.Cancel();
  CHECK(calls == 0);
}

TEST_CASE("a moved registration still unregisters exactly once", "[cancel_token]") {
  CancelToken token;
  std::atomic<int> calls{0};
  {
    auto first = token.OnCancel([&] { ++calls; });
    auto second = std::move(first);
  }
  token.Cancel();
  CHECK(calls == 0);
}

}  // namespace
}  // namespace pi::common
