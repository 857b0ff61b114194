#include "control-plane/cluster/revision_feed.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

namespace pi::controlplane::cluster {
namespace {

using std::chrono::milliseconds;

// Long enough never to run out on a loaded machine; a passing test never waits for it.
constexpr milliseconds kGenerous{30000};

TEST_CASE("RevisionFeed starts at the given revision") {
  CHECK(RevisionFeed().Current() == 0);
  CHECK(RevisionFeed(42).Current() == 42);
}

TEST_CASE("Publish moves the revision forward") {
  RevisionFeed feed(3);
  feed.Publish(4);
  CHECK(feed.Current() == 4);
  feed.Publish(10);
  CHECK(feed.Current() == 10);
}

TEST_CASE("Publish never moves the revision backwards") {
  RevisionFeed feed(10);
  feed.Publish(7);
  CHECK(feed.Current() == 10);
  feed.Publish(10);
  CHECK(feed.Current() == 10);
}

TEST_CASE("WaitBeyond returns at once when the revision is already beyond") {
  RevisionFeed feed(5);
  CHECK(feed.WaitBeyond(4, kGenerous) == 5);
  CHECK(feed.WaitBeyond(0, kGenerous) == 5);
}

TEST_CASE("WaitBeyond returns the current revision when the timeout passes") {
  RevisionFeed feed(5);
  CHECK(feed.WaitBeyond(5, milliseconds(0)) == 5);
  CHECK(feed.WaitBeyond(9, milliseconds(1)) == 5);
}

TEST_CASE("WaitBeyond wakes when another thread publishes") {
  RevisionFeed feed(5);
  std::thread publisher([&feed] {
    // Publishing what is already known wakes nobody; the waiter returns on 6.
    feed.Publish(5);
    feed.Publish(6);
  });
  const int64_t seen = feed.WaitBeyond(5, kGenerous);
  publisher.join();
  CHECK(seen == 6);
}

TEST_CASE("WaitBeyond keeps waiting while the revision stays at or below the one seen") {
  RevisionFeed feed(5);
  std::thread publisher([&feed] {
    feed.Publish(6);
    feed.Publish(7);
    feed.Publish(8);
  });
  const int64_t seen = feed.WaitBeyond(7, kGenerous);
  publisher.join();
  CHECK(seen == 8);
}

}  // namespace
}  // namespace pi::controlplane::cluster
