#include "control-plane/queue/sqlite_queue_store.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "common/system/clock.h"
#include "tests/common/test_dir.h"

namespace pi::controlplane::queue {
namespace {

StoredMessage Message(const std::string& id) {
  StoredMessage m;
  m.id = id;
  m.route = "jobs";
  m.received_at = WallTime(std::chrono::seconds(1'700'000'000));
  m.next_run_at = m.received_at;
  m.payload = std::string("\0\xff binary \n", 11);
  m.headers = {{"content-type", "application/json"}, {"x-github-event", "push"}};
  m.trace = {{"traceparent", "00-abc-def-01"}};
  return m;
}

std::map<std::string, StoredMessage> Load(SqliteQueueStore& store) {
  absl::StatusOr<std::vector<StoredMessage>> all = store.LoadAll();
  REQUIRE(all.ok());
  std::map<std::string, StoredMessage> by_id;
  for (StoredMessage& m : *all) by_id[m.id] = std::move(m);
  return by_id;
}

TEST_CASE("The SQLite queue store keeps inserts, state changes and deletes across reopening") {
  pi::testing::TempDir dir;
  const std::string path = (dir.path() / "queue.db").string();
  {
    auto store = SqliteQueueStore::Open(path, pi::common::RealClock());
    REQUIRE(store.ok());
    std::vector<QueueMutation> batch = {Message("a"), Message("b"), Message("c")};
    REQUIRE((*store)->Commit(batch).ok());
    MessageStateChange leased{
        "a", ItemState::kLeased, 1, WallTime(std::chrono::seconds(1'700'000'030)), "lease-1", "",
        {}};
    MessageStateChange dead{"b",
                            ItemState::kDead,
                            3,
                            WallTime(std::chrono::seconds(1)),
                            "",
                            "poison",
                            WallTime(std::chrono::seconds(1'700'000'060))};
    std::vector<QueueMutation> changes = {leased, dead, MessageDelete{"c"}};
    REQUIRE((*store)->Commit(changes).ok());
  }
  struct stat info {};
  REQUIRE(stat(path.c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0600);

  auto store = SqliteQueueStore::Open(path, pi::common::RealClock());
  REQUIRE(store.ok());
  std::map<std::string, StoredMessage> loaded = Load(**store);
  REQUIRE(loaded.size() == 2);
  const StoredMessage& a = loaded.at("a");
  CHECK(a.state == ItemState::kLeased);
  CHECK(a.attempt == 1);
  CHECK(a.lease_id == "lease-1");
  CHECK(a.next_run_at == WallTime(std::chrono::seconds(1'700'000'030)));
  CHECK(a.received_at == Message("a").received_at);
  CHECK(a.payload == Message("a").payload);
  CHECK(a.headers == Message("a").headers);
  CHECK(a.trace == Message("a").trace);
  const StoredMessage& b = loaded.at("b");
  CHECK(b.state == ItemState::kDead);
  CHECK(b.dead_reason == "poison");
  CHECK(b.dead_at == WallTime(std::chrono::seconds(1'700'000'060)));
}

TEST_CASE("A commit that fails half-way applies none of its changes") {
  pi::testing::TempDir dir;
  auto store = SqliteQueueStore::Open((dir.path() / "queue.db").string(), pi::common::RealClock());
  REQUIRE(store.ok());
  std::vector<QueueMutation> first = {Message("a")};
  REQUIRE((*store)->Commit(first).ok());
  // "b" is new, the second "a" violates the unique id.
  std::vector<QueueMutation> clash = {Message("b"), MessageDelete{"a"}, Message("c"), Message("c")};
  absl::Status status = (*store)->Commit(clash);
  CHECK(status.code() == absl::StatusCode::kAlreadyExists);
  std::map<std::string, StoredMessage> loaded = Load(**store);
  REQUIRE(loaded.size() == 1);
  CHECK(loaded.contains("a"));
  // The store is usable after the failure.
  std::vector<QueueMutation> next = {Message("d")};
  CHECK((*store)->Commit(next).ok());
  CHECK(Load(**store).size() == 2);
}

TEST_CASE("The queue store refuses a directory that does not exist") {
  pi::testing::TempDir dir;
  auto store = SqliteQueueStore::Open((dir.path() / "missing" / "queue.db").string(),
                                      pi::common::RealClock());
  CHECK(store.status().code() == absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace pi::controlplane::queue
