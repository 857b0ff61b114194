#include "control-plane/queue/queue_engine.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <set>
#include <thread>

#include "common/system/clock.h"
#include "control-plane/queue/sqlite_queue_store.h"
#include "tests/common/test_dir.h"

namespace pi::controlplane::queue {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::nanoseconds;
using std::chrono::seconds;

using EnqueueResult = absl::StatusOr<std::string>;
using DequeueResult = absl::StatusOr<std::vector<LeasedItem>>;
using SettleResult = absl::StatusOr<std::vector<LeaseResult>>;
using CountResult = absl::StatusOr<int64_t>;

DequeueRequest Request(std::string route, int batch, nanoseconds lease_ttl = {},
                       nanoseconds max_wait = {},
                       std::optional<std::chrono::steady_clock::time_point> deadline = {}) {
  DequeueRequest request;
  request.route = std::move(route);
  request.batch = batch;
  request.lease_ttl = lease_ttl;
  request.max_wait = max_wait;
  request.caller_deadline = deadline;
  return request;
}

NackOptions Delay(nanoseconds delay) {
  NackOptions options;
  options.delay = delay;
  return options;
}

NackOptions DeadWith(std::string reason) {
  NackOptions options;
  options.dead = true;
  options.reason = std::move(reason);
  return options;
}

// A real engine over a real SQLite file, on a clock the test moves.
class EngineFixture {
 public:
  explicit EngineFixture(QueueLimits jobs = {}, const pi::common::Clock* clock = nullptr)
      : clock_(clock != nullptr ? *clock : manual_clock_) {
    routes_["jobs"] = jobs;
    routes_["other"] = QueueLimits{};
    Open();
  }

  void Open() {
    auto store = SqliteQueueStore::Open((dir_.path() / "queue.db").string(), clock_);
    REQUIRE(store.ok());
    store_ = *std::move(store);
    auto engine = QueueEngine::Open(*store_, clock_, routes_);
    REQUIRE(engine.ok());
    engine_ = *std::move(engine);
  }

  void Reopen() {
    engine_.reset();
    store_.reset();
    Open();
  }

  QueueEngine& engine() { return *engine_; }
  pi::common::ManualClock& clock() { return manual_clock_; }

  void Advance(nanoseconds by) {
    manual_clock_.Advance(by);
    engine_->RunTimers();
  }

  EnqueueResult TryEnqueue(const std::string& route, const std::string& payload,
                           Headers headers = {}) {
    return AwaitEngine<EnqueueResult>([&](auto done) {
      engine_->Enqueue(route, NewMessage{payload, std::move(headers), {{"traceparent", "00-1"}}},
                       std::move(done));
    });
  }

  std::string Enqueue(const std::string& route, const std::string& payload) {
    EnqueueResult id = TryEnqueue(route, payload);
    REQUIRE(id.ok());
    return *id;
  }

  // Sends n messages without waiting for each, as concurrent producers would, so the engine
  // commits them in groups; returns once all are committed.
  void EnqueueMany(const std::string& route, int n) {
    std::mutex mu;
    std::condition_variable all_done;
    int remaining = n;
    int failed = 0;
    for (int i = 0; i < n; ++i) {
      engine_->Enqueue(route, NewMessage{std::to_string(i), {}, {}}, [&](EnqueueResult id) {
        std::lock_guard<std::mutex> lock(mu);
        if (!id.ok()) ++failed;
        if (--remaining == 0) all_done.notify_all();
      });
    }
    std::unique_lock<std::mutex> lock(mu);
    all_done.wait(lock, [&] { return remaining == 0; });
    REQUIRE(failed == 0);
  }

  DequeueResult TryDequeue(DequeueRequest request) {
    return AwaitEngine<DequeueResult>(
        [&](auto done) { engine_->Dequeue(std::move(request), std::move(done)); });
  }

  std::vector<LeasedItem> Dequeue(const std::string& route, int batch,
                                  nanoseconds lease_ttl = nanoseconds::zero()) {
    DequeueResult items = TryDequeue(Request(route, batch, lease_ttl));
    REQUIRE(items.ok());
    return *items;
  }

  SettleResult Ack(const std::string& route, const std::vector<std::string>& ids) {
    return AwaitEngine<SettleResult>([&](auto done) { engine_->Ack(route, ids, std::move(done)); });
  }

  SettleResult Nack(const std::string& route, const std::vector<std::string>& ids,
                    NackOptions options = {}) {
    return AwaitEngine<SettleResult>(
        [&](auto done) { engine_->Nack(route, ids, options, std::move(done)); });
  }

  absl::Status Extend(const std::string& route, const std::string& lease_id, nanoseconds by) {
    return AwaitEngine<absl::Status>(
        [&](auto done) { engine_->Extend(route, lease_id, by, std::move(done)); });
  }

  QueueStats Stats(const std::string& route) {
    absl::StatusOr<QueueStats> stats = engine_->Stats(route);
    REQUIRE(stats.ok());
    return *stats;
  }

 private:
  pi::testing::TempDir dir_;
  pi::common::ManualClock manual_clock_;
  const pi::common::Clock& clock_;
  std::map<std::string, QueueLimits> routes_;
  std::unique_ptr<SqliteQueueStore> store_;
  std::unique_ptr<QueueEngine> engine_;
};

std::vector<LeaseOutcome> Outcomes(const SettleResult& results) {
  REQUIRE(results.ok());
  std::vector<LeaseOutcome> outcomes;
  for (const LeaseResult& result : *results) outcomes.push_back(result.outcome);
  return outcomes;
}

TEST_CASE("A leased item carries its message, attempt 1 and a 30 s lease by default") {
  EngineFixture f;
  const std::string id = f.Enqueue("jobs", std::string("pay\0load", 8));
  const auto now = f.clock().WallNow();
  std::vector<LeasedItem> items = f.Dequeue("jobs", 10);
  REQUIRE(items.size() == 1);
  CHECK(items[0].id == id);
  CHECK(items[0].payload == std::string("pay\0load", 8));
  CHECK(items[0].route == "jobs");
  CHECK(items[0].attempt == 1);
  CHECK(items[0].received_at == now);
  CHECK(items[0].next_run_at == now + seconds(30));
  CHECK(items[0].trace.at("traceparent") == "00-1");
  CHECK(items[0].lease_id.size() == 32);
  CHECK(items[0].lease_id != id);
  CHECK(f.Dequeue("jobs", 10).empty());
  CHECK(Outcomes(f.Ack("jobs", {items[0].lease_id})) ==
        std::vector<LeaseOutcome>{LeaseOutcome::kApplied});
  const QueueStats stats = f.Stats("jobs");
  CHECK(stats.queued == 0);
  CHECK(stats.leased == 0);
}

TEST_CASE("Dequeue orders by next_run_at, then received_at") {
  EngineFixture f;
  const std::string first = f.Enqueue("jobs", "1");
  f.clock().Advance(milliseconds(1));
  const std::string second = f.Enqueue("jobs", "2");
  f.clock().Advance(milliseconds(1));
  const std::string third = f.Enqueue("jobs", "3");
  std::vector<LeasedItem> leased = f.Dequeue("jobs", 1);
  REQUIRE(leased.size() == 1);
  CHECK(leased[0].id == first);
  // The nacked first item is due again 1 s from now, after the others.
  REQUIRE(f.Nack("jobs", {leased[0].lease_id}, Delay(seconds(1))).ok());
  f.Advance(seconds(2));
  std::vector<LeasedItem> rest = f.Dequeue("jobs", 3);
  REQUIRE(rest.size() == 3);
  CHECK(rest[0].id == second);
  CHECK(rest[1].id == third);
  CHECK(rest[2].id == first);
  CHECK(rest[2].attempt == 2);
}

TEST_CASE("Dequeue clamps the batch to 1..min(max_batch, 100) and caps the lease") {
  QueueLimits limits;
  limits.max_lease_ttl = minutes(1);
  EngineFixture f(limits);
  f.EnqueueMany("jobs", 150);
  CHECK(f.Dequeue("jobs", 0).size() == 1);
  CHECK(f.Dequeue("jobs", -5).size() == 1);
  CHECK(f.Dequeue("jobs", 1000).size() == 100);
  std::vector<LeasedItem> capped = f.Dequeue("jobs", 1, hours(5));
  REQUIRE(capped.size() == 1);
  CHECK(capped[0].next_run_at == f.clock().WallNow() + minutes(1));

  QueueLimits small;
  small.max_batch = 5;
  EngineFixture g(small);
  for (int i = 0; i < 10; ++i) g.Enqueue("jobs", std::to_string(i));
  CHECK(g.Dequeue("jobs", 100).size() == 5);
}

TEST_CASE("Bad requests and unknown routes change nothing") {
  EngineFixture f;
  f.Enqueue("jobs", "x");
  CHECK(f.TryDequeue(Request("jobs", 1, seconds(-1))).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(f.TryDequeue(Request("jobs", 1, seconds(0), seconds(-1))).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(f.TryDequeue(Request("nope", 1)).status().code() == absl::StatusCode::kNotFound);
  CHECK(f.TryEnqueue("nope", "x").status().code() == absl::StatusCode::kNotFound);
  CHECK(f.Ack("nope", {"a"}).status().code() == absl::StatusCode::kNotFound);
  CHECK(f.Ack("jobs", {}).status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(f.Ack("jobs", {""}).status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(f.Nack("jobs", {"a"}, Delay(seconds(-1))).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(f.Nack("jobs", {"a"}, NackOptions{seconds(-1), true, ""}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(f.Extend("nope", "a", seconds(1)).code() == absl::StatusCode::kNotFound);
  const QueueStats stats = f.Stats("jobs");
  CHECK(stats.queued == 1);
  CHECK(stats.leased == 0);
}

TEST_CASE("A batch ack applies the valid leases and reports the others") {
  EngineFixture f;
  for (int i = 0; i < 3; ++i) f.Enqueue("jobs", std::to_string(i));
  std::vector<LeasedItem> items = f.Dequeue("jobs", 3, seconds(5));
  REQUIRE(items.size() == 3);
  // items[2]'s lease expires; items[0] is acked twice in one request (deduplicated).
  REQUIRE(f.Extend("jobs", items[0].lease_id, seconds(60)).ok());
  REQUIRE(f.Extend("jobs", items[1].lease_id, seconds(60)).ok());
  f.Advance(seconds(6));
  SettleResult results =
      f.Ack("jobs", {items[0].lease_id, "never-issued", items[0].lease_id, items[2].lease_id});
  CHECK(Outcomes(results) == std::vector<LeaseOutcome>{LeaseOutcome::kApplied,
                                                       LeaseOutcome::kUnknown,
                                                       LeaseOutcome::kExpired});
  CHECK(f.Stats("jobs").leased == 1);
  CHECK(f.Stats("jobs").queued == 1);

  std::vector<std::string> too_many;
  for (int i = 0; i < 101; ++i) too_many.push_back("lease-" + std::to_string(i));
  CHECK(f.Ack("jobs", too_many).status().code() == absl::StatusCode::kInvalidArgument);
  too_many.back() = too_many.front();  // 100 distinct: allowed.
  CHECK(f.Ack("jobs", too_many).ok());
  absl::StatusOr<QueueCounters> counters = f.engine().Counters("jobs");
  REQUIRE(counters.ok());
  CHECK(counters->acked == 1);
  CHECK(counters->conflicts == 2 + 100);
  CHECK(counters->lease_expiries == 1);
}

TEST_CASE("A repeated successful ack or nack succeeds again for two minutes") {
  EngineFixture f;
  f.Enqueue("jobs", "a");
  f.Enqueue("jobs", "b");
  std::vector<LeasedItem> items = f.Dequeue("jobs", 2);
  REQUIRE(items.size() == 2);
  const std::string acked = items[0].lease_id;
  const std::string nacked = items[1].lease_id;
  REQUIRE(Outcomes(f.Ack("jobs", {acked}))[0] == LeaseOutcome::kApplied);
  REQUIRE(Outcomes(f.Nack("jobs", {nacked}, Delay(hours(1))))[0] == LeaseOutcome::kApplied);
  f.Advance(minutes(1));
  CHECK(Outcomes(f.Ack("jobs", {acked}))[0] == LeaseOutcome::kApplied);
  CHECK(Outcomes(f.Nack("jobs", {nacked}, Delay(hours(1))))[0] == LeaseOutcome::kApplied);
  // Only the same operation is idempotent: an ack after a nack is a conflict.
  CHECK(Outcomes(f.Ack("jobs", {nacked}))[0] == LeaseOutcome::kUnknown);
  CHECK(Outcomes(f.Nack("jobs", {acked}))[0] == LeaseOutcome::kUnknown);
  CHECK(f.Stats("jobs").queued == 1);
  f.Advance(minutes(2));
  CHECK(Outcomes(f.Ack("jobs", {acked}))[0] == LeaseOutcome::kUnknown);
}

TEST_CASE("Nack requeues after its delay or dead-letters with the reason") {
  EngineFixture f;
  f.Enqueue("jobs", "later");
  f.Enqueue("jobs", "dead");
  std::vector<LeasedItem> items = f.Dequeue("jobs", 2);
  REQUIRE(items.size() == 2);
  REQUIRE(Outcomes(f.Nack("jobs", {items[0].lease_id}, Delay(seconds(30))))[0] ==
          LeaseOutcome::kApplied);
  // The delay is ignored when dead.
  REQUIRE(Outcomes(f.Nack("jobs", {items[1].lease_id}, {seconds(30), true, "bad payload"}))[0] ==
          LeaseOutcome::kApplied);
  QueueStats stats = f.Stats("jobs");
  CHECK(stats.queued == 1);
  CHECK(stats.delayed == 1);
  CHECK(stats.dead == 1);
  CHECK(f.Dequeue("jobs", 10).empty());
  f.Advance(seconds(31));
  std::vector<LeasedItem> again = f.Dequeue("jobs", 10);
  REQUIRE(again.size() == 1);
  CHECK(again[0].id == items[0].id);
  CHECK(again[0].attempt == 2);
  absl::StatusOr<std::vector<StoredMessage>> dead = f.engine().ListDeadLetters("jobs", 10);
  REQUIRE(dead.ok());
  REQUIRE(dead->size() == 1);
  CHECK((*dead)[0].id == items[1].id);
  CHECK((*dead)[0].dead_reason == "bad payload");
  CHECK((*dead)[0].payload == "dead");
}

TEST_CASE("Extend moves a valid lease's expiry, capped at max_lease_ttl from now") {
  QueueLimits limits;
  limits.max_lease_ttl = minutes(2);
  EngineFixture f(limits);
  f.Enqueue("jobs", "x");
  std::vector<LeasedItem> items = f.Dequeue("jobs", 1, seconds(10));
  REQUIRE(items.size() == 1);
  const std::string lease = items[0].lease_id;
  REQUIRE(f.Extend("jobs", lease, seconds(20)).ok());
  f.Advance(seconds(25));  // Past the original 10 s, within 30 s.
  CHECK(f.Stats("jobs").leased == 1);
  REQUIRE(f.Extend("jobs", lease, hours(1)).ok());  // Capped at now + 2 min.
  f.Advance(seconds(119));
  CHECK(f.Stats("jobs").leased == 1);
  f.Advance(seconds(2));
  CHECK(f.Stats("jobs").leased == 0);
  CHECK(f.Extend("jobs", lease, seconds(5)).code() == absl::StatusCode::kFailedPrecondition);
  CHECK(f.Extend("jobs", "never-issued", seconds(5)).code() ==
        absl::StatusCode::kFailedPrecondition);
  // Zero or negative is a no-op success, whatever the lease.
  CHECK(f.Extend("jobs", "never-issued", seconds(0)).ok());
  CHECK(f.Extend("jobs", "never-issued", seconds(-3)).ok());
}

TEST_CASE("A lease of another route is reported like an unknown lease") {
  EngineFixture f;
  f.Enqueue("jobs", "x");
  std::vector<LeasedItem> items = f.Dequeue("jobs", 1);
  REQUIRE(items.size() == 1);
  CHECK(Outcomes(f.Ack("other", {items[0].lease_id}))[0] == LeaseOutcome::kUnknown);
  CHECK(Outcomes(f.Nack("other", {items[0].lease_id}, DeadWith("")))[0] == LeaseOutcome::kUnknown);
  CHECK(f.Extend("other", items[0].lease_id, seconds(5)).code() ==
        absl::StatusCode::kFailedPrecondition);
  CHECK(f.Stats("jobs").leased == 1);
  CHECK(Outcomes(f.Ack("jobs", {items[0].lease_id}))[0] == LeaseOutcome::kApplied);
}

TEST_CASE("An expired lease returns the item to the queue with its attempt kept") {
  EngineFixture f;
  const std::string id = f.Enqueue("jobs", "x");
  std::vector<LeasedItem> first = f.Dequeue("jobs", 1, seconds(5));
  REQUIRE(first.size() == 1);
  f.Advance(seconds(6));
  QueueStats stats = f.Stats("jobs");
  CHECK(stats.queued == 1);
  CHECK(stats.leased == 0);
  std::vector<LeasedItem> second = f.Dequeue("jobs", 1);
  REQUIRE(second.size() == 1);
  CHECK(second[0].id == id);
  CHECK(second[0].attempt == 2);
  CHECK(second[0].lease_id != first[0].lease_id);
  CHECK(Outcomes(f.Ack("jobs", {first[0].lease_id}))[0] == LeaseOutcome::kExpired);
}

TEST_CASE("max_attempts dead-letters an item that used up its attempts") {
  QueueLimits limits;
  limits.max_attempts = 2;
  EngineFixture f(limits);
  f.Enqueue("jobs", "poison");
  REQUIRE(f.Dequeue("jobs", 1, seconds(1)).size() == 1);
  f.Advance(seconds(2));
  std::vector<LeasedItem> second = f.Dequeue("jobs", 1, seconds(1));
  REQUIRE(second.size() == 1);
  CHECK(second[0].attempt == 2);
  // A nack without dead counts as a failed attempt too.
  REQUIRE(Outcomes(f.Nack("jobs", {second[0].lease_id}))[0] == LeaseOutcome::kApplied);
  CHECK(f.Dequeue("jobs", 1).empty());
  absl::StatusOr<std::vector<StoredMessage>> dead = f.engine().ListDeadLetters("jobs", 10);
  REQUIRE(dead.ok());
  REQUIRE(dead->size() == 1);
  CHECK((*dead)[0].dead_reason == "max_attempts");
  CHECK((*dead)[0].attempt == 2);
}

TEST_CASE("Enqueue refuses at max_depth and accepts again once an item is acked") {
  QueueLimits limits;
  limits.max_depth = 2;
  EngineFixture f(limits);
  f.Enqueue("jobs", "1");
  f.Enqueue("jobs", "2");
  CHECK(f.TryEnqueue("jobs", "3").status().code() == absl::StatusCode::kResourceExhausted);
  std::vector<LeasedItem> items = f.Dequeue("jobs", 1);
  REQUIRE(items.size() == 1);
  // Leased items still count.
  CHECK(f.TryEnqueue("jobs", "3").status().code() == absl::StatusCode::kResourceExhausted);
  REQUIRE(f.Ack("jobs", {items[0].lease_id}).ok());
  CHECK(f.TryEnqueue("jobs", "3").ok());
  CHECK(f.Stats("jobs").queued == 2);
}

TEST_CASE("A long-polling dequeue is woken at once by an enqueue") {
  EngineFixture f;
  std::promise<DequeueResult> answered;
  std::future<DequeueResult> result = answered.get_future();
  f.engine().Dequeue(Request("jobs", 10, seconds(0), seconds(30)),
                     [&answered](DequeueResult items) { answered.set_value(std::move(items)); });
  CHECK(result.wait_for(milliseconds(50)) == std::future_status::timeout);
  const std::string id = f.Enqueue("jobs", "wake");
  REQUIRE(result.wait_for(seconds(5)) == std::future_status::ready);
  DequeueResult items = result.get();
  REQUIRE(items.ok());
  REQUIRE(items->size() == 1);
  CHECK((*items)[0].id == id);
  CHECK(f.Stats("jobs").leased == 1);
}

TEST_CASE("A long-polling dequeue is woken by a nack and by an expiry") {
  EngineFixture f;
  f.Enqueue("jobs", "x");
  std::vector<LeasedItem> held = f.Dequeue("jobs", 1, seconds(5));
  REQUIRE(held.size() == 1);
  for (const bool by_nack : {true, false}) {
    std::promise<DequeueResult> answered;
    std::future<DequeueResult> result = answered.get_future();
    f.engine().Dequeue(Request("jobs", 1, seconds(5), seconds(60)),
                       [&answered](DequeueResult items) { answered.set_value(std::move(items)); });
    CHECK(result.wait_for(milliseconds(20)) == std::future_status::timeout);
    if (by_nack) {
      REQUIRE(f.Nack("jobs", {held[0].lease_id}).ok());
    } else {
      f.Advance(seconds(6));
    }
    REQUIRE(result.wait_for(seconds(5)) == std::future_status::ready);
    DequeueResult items = result.get();
    REQUIRE(items.ok());
    REQUIRE(items->size() == 1);
    held = *items;
  }
  CHECK(held[0].attempt == 3);
}

TEST_CASE("A long poll ends empty after max_wait and leases nothing once the caller is gone") {
  EngineFixture f;
  std::promise<DequeueResult> timed_out;
  f.engine().Dequeue(Request("jobs", 1, seconds(0), seconds(10)),
                     [&timed_out](DequeueResult items) { timed_out.set_value(std::move(items)); });
  std::promise<DequeueResult> deadline;
  f.engine().Dequeue(Request("jobs", 1, seconds(0), seconds(60), f.clock().Now() + seconds(15)),
                     [&deadline](DequeueResult items) { deadline.set_value(std::move(items)); });
  std::promise<DequeueResult> cancelled;
  const uint64_t ticket = f.engine().Dequeue(
      Request("jobs", 1, seconds(0), seconds(60)),
      [&cancelled](DequeueResult items) { cancelled.set_value(std::move(items)); });
  REQUIRE(ticket != 0);
  f.Advance(seconds(11));
  DequeueResult empty = timed_out.get_future().get();
  REQUIRE(empty.ok());
  CHECK(empty->empty());
  f.Advance(seconds(5));
  CHECK(deadline.get_future().get().status().code() == absl::StatusCode::kDeadlineExceeded);
  f.engine().CancelDequeue(ticket);
  CHECK(cancelled.get_future().get().status().code() == absl::StatusCode::kCancelled);
  f.engine().CancelDequeue(ticket);  // Twice is harmless.
  f.Enqueue("jobs", "x");
  CHECK(f.Stats("jobs").queued == 1);
  CHECK(f.Stats("jobs").leased == 0);
  // A caller whose deadline already passed gets nothing, even with an item waiting.
  CHECK(f.TryDequeue(Request("jobs", 1, seconds(0), seconds(0), f.clock().Now())).status().code() ==
        absl::StatusCode::kDeadlineExceeded);
  CHECK(f.Stats("jobs").queued == 1);
}

TEST_CASE("Everything acknowledged survives a restart of the engine") {
  EngineFixture f;
  const std::string queued = f.Enqueue("jobs", "queued");
  const std::string leased_id = f.Enqueue("jobs", "leased");
  const std::string acked_id = f.Enqueue("jobs", "acked");
  const std::string dead_id = f.Enqueue("jobs", "dead");
  std::vector<LeasedItem> items = f.Dequeue("jobs", 4);
  REQUIRE(items.size() == 4);
  std::map<std::string, std::string> lease_of;
  for (const LeasedItem& item : items) lease_of[item.id] = item.lease_id;
  REQUIRE(f.Nack("jobs", {lease_of[queued]}).ok());
  REQUIRE(f.Ack("jobs", {lease_of[acked_id]}).ok());
  REQUIRE(f.Nack("jobs", {lease_of[dead_id]}, DeadWith("why")).ok());

  f.Reopen();
  const QueueStats stats = f.Stats("jobs");
  CHECK(stats.queued == 1);
  CHECK(stats.leased == 1);
  CHECK(stats.dead == 1);
  // The lease issued before the restart is still good.
  CHECK(Outcomes(f.Ack("jobs", {lease_of[leased_id]}))[0] == LeaseOutcome::kApplied);
  std::vector<LeasedItem> again = f.Dequeue("jobs", 10);
  REQUIRE(again.size() == 1);
  CHECK(again[0].id == queued);
  CHECK(again[0].attempt == 2);
  CHECK(again[0].payload == "queued");
  CHECK(again[0].trace.at("traceparent") == "00-1");
  absl::StatusOr<std::vector<StoredMessage>> dead = f.engine().ListDeadLetters("jobs", 10);
  REQUIRE(dead.ok());
  REQUIRE(dead->size() == 1);
  CHECK((*dead)[0].dead_reason == "why");
}

TEST_CASE("Dead letters can be listed, requeued with a fresh attempt count, and deleted") {
  EngineFixture f;
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(f.Enqueue("jobs", std::to_string(i)));
  std::vector<LeasedItem> items = f.Dequeue("jobs", 3);
  REQUIRE(items.size() == 3);
  for (const LeasedItem& item : items) {
    REQUIRE(f.Nack("jobs", {item.lease_id}, DeadWith("r")).ok());
  }
  absl::StatusOr<std::vector<StoredMessage>> listed = f.engine().ListDeadLetters("jobs", 2);
  REQUIRE(listed.ok());
  CHECK(listed->size() == 2);
  CountResult requeued = AwaitEngine<CountResult>([&](auto done) {
    f.engine().RequeueDeadLetters("jobs", {ids[0], ids[0], "unknown"}, std::move(done));
  });
  REQUIRE(requeued.ok());
  CHECK(*requeued == 1);
  // Dead letters of one route are not another's.
  CountResult foreign = AwaitEngine<CountResult>(
      [&](auto done) { f.engine().DeleteDeadLetters("other", {ids[1]}, std::move(done)); });
  REQUIRE(foreign.ok());
  CHECK(*foreign == 0);
  CountResult deleted = AwaitEngine<CountResult>([&](auto done) {
    f.engine().DeleteDeadLetters("jobs", {ids[1], ids[0]}, std::move(done));
  });
  REQUIRE(deleted.ok());
  CHECK(*deleted == 1);  // ids[0] is queued again, not dead.
  std::vector<LeasedItem> again = f.Dequeue("jobs", 10);
  REQUIRE(again.size() == 1);
  CHECK(again[0].id == ids[0]);
  CHECK(again[0].attempt == 1);
  f.Reopen();
  CHECK(f.Stats("jobs").dead == 1);
}

TEST_CASE("Retention drops old queued items and dead letters, never a leased one") {
  QueueLimits limits;
  limits.retention = hours(1);
  limits.max_lease_ttl = hours(2);
  EngineFixture f(limits);
  f.Enqueue("jobs", "old-queued");
  f.Enqueue("jobs", "old-leased");
  f.Enqueue("jobs", "old-dead");
  std::vector<LeasedItem> items = f.Dequeue("jobs", 3, minutes(90));
  REQUIRE(items.size() == 3);
  REQUIRE(f.Nack("jobs", {items[0].lease_id}).ok());
  REQUIRE(f.Nack("jobs", {items[2].lease_id}, DeadWith("x")).ok());
  f.Advance(minutes(59));
  f.Enqueue("jobs", "young");
  CHECK(f.Stats("jobs").queued == 2);
  f.Advance(minutes(2));
  QueueStats stats = f.Stats("jobs");
  CHECK(stats.queued == 1);
  CHECK(stats.dead == 0);
  CHECK(stats.leased == 1);
  f.Reopen();
  stats = f.Stats("jobs");
  CHECK(stats.queued == 1);
  CHECK(stats.dead == 0);
  CHECK(stats.leased == 1);
}

TEST_CASE("Stats report depth by state and the oldest queued item's age") {
  EngineFixture f;
  CHECK_FALSE(f.Stats("jobs").oldest_queued_age.has_value());
  f.Enqueue("jobs", "a");
  f.clock().Advance(seconds(5));
  f.Enqueue("jobs", "b");
  f.clock().Advance(seconds(5));
  QueueStats stats = f.Stats("jobs");
  CHECK(stats.queued == 2);
  REQUIRE(stats.oldest_queued_age.has_value());
  CHECK(*stats.oldest_queued_age == seconds(10));
  CHECK(f.engine().Stats("nope").status().code() == absl::StatusCode::kNotFound);
}

TEST_CASE("Concurrent workers never receive the same lease or the same item twice") {
  EngineFixture f({}, &pi::common::RealClock());
  constexpr int kItems = 2000;
  f.EnqueueMany("jobs", kItems);
  std::mutex mu;
  std::multiset<std::string> delivered;
  std::set<std::string> leases;
  std::vector<std::thread> workers;
  for (int w = 0; w < 6; ++w) {
    workers.emplace_back([&, w] {
      while (true) {
        DequeueResult items = f.TryDequeue(Request("jobs", 7 + w));
        if (!items.ok() || items->empty()) return;
        std::vector<std::string> lease_ids;
        {
          std::lock_guard<std::mutex> lock(mu);
          for (const LeasedItem& item : *items) {
            delivered.insert(item.id);
            leases.insert(item.lease_id);
            lease_ids.push_back(item.lease_id);
          }
        }
        if (!f.Ack("jobs", lease_ids).ok()) return;
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  CHECK(delivered.size() == kItems);
  CHECK(std::set<std::string>(delivered.begin(), delivered.end()).size() == kItems);
  CHECK(leases.size() == kItems);
  CHECK(f.Stats("jobs").queued == 0);
  CHECK(f.Stats("jobs").leased == 0);
}

// A store whose disk has failed, which no build machine can be made to do on demand.
class FailingStore : public QueueStore {
 public:
  absl::StatusOr<std::vector<StoredMessage>> LoadAll() override {
    return std::vector<StoredMessage>{};
  }
  absl::Status Commit(std::span<const QueueMutation>) override {
    return absl::DataLossError("disk I/O error");
  }
};

TEST_CASE("After a failed commit the engine refuses every call until restarted") {
  FailingStore store;
  pi::common::ManualClock clock;
  auto engine = QueueEngine::Open(store, clock, {{"jobs", QueueLimits{}}});
  REQUIRE(engine.ok());
  EnqueueResult first = AwaitEngine<EnqueueResult>([&](auto done) {
    (*engine)->Enqueue("jobs", NewMessage{"x", {}, {}}, std::move(done));
  });
  CHECK(first.status().code() == absl::StatusCode::kUnavailable);
  CHECK(std::string(first.status().message()).find("disk I/O error") != std::string::npos);
  DequeueResult next = AwaitEngine<DequeueResult>(
      [&](auto done) { (*engine)->Dequeue(Request("jobs", 1), std::move(done)); });
  CHECK(next.status().code() == absl::StatusCode::kUnavailable);
  CHECK((*engine)->Stats("jobs").status().code() == absl::StatusCode::kUnavailable);
}

TEST_CASE("A failed commit also answers dequeues that were waiting on other routes") {
  FailingStore store;
  pi::common::ManualClock clock;
  auto engine =
      QueueEngine::Open(store, clock, {{"jobs", QueueLimits{}}, {"other", QueueLimits{}}});
  REQUIRE(engine.ok());
  std::promise<DequeueResult> waiting;
  (*engine)->Dequeue(Request("other", 1, seconds(0), seconds(60)),
                     [&waiting](DequeueResult items) { waiting.set_value(std::move(items)); });
  EnqueueResult failed = AwaitEngine<EnqueueResult>([&](auto done) {
    (*engine)->Enqueue("jobs", NewMessage{"x", {}, {}}, std::move(done));
  });
  CHECK(failed.status().code() == absl::StatusCode::kUnavailable);
  std::future<DequeueResult> answer = waiting.get_future();
  REQUIRE(answer.wait_for(seconds(5)) == std::future_status::ready);
  CHECK(answer.get().status().code() == absl::StatusCode::kUnavailable);
}

TEST_CASE("Huge delays and extensions saturate instead of wrapping around") {
  EngineFixture f;
  f.Enqueue("jobs", "a");
  f.Enqueue("jobs", "b");
  std::vector<LeasedItem> items = f.Dequeue("jobs", 2);
  REQUIRE(items.size() == 2);
  REQUIRE(f.Nack("jobs", {items[0].lease_id}, Delay(nanoseconds::max())).ok());
  REQUIRE(f.Extend("jobs", items[1].lease_id, nanoseconds::max()).ok());
  f.Advance(hours(24 * 365));
  // The nacked item is not due for centuries; the extended lease was capped at max_lease_ttl.
  const QueueStats stats = f.Stats("jobs");
  CHECK(stats.delayed == 1);
  CHECK(stats.queued == 2);
  CHECK(stats.leased == 0);
  CHECK(f.Dequeue("jobs", 10).size() == 1);
}

TEST_CASE("A long poll waits at most kMaxLongPoll and is counted while it waits") {
  EngineFixture f;
  std::promise<DequeueResult> answered;
  f.engine().Dequeue(Request("jobs", 1, seconds(0), hours(10)),
                     [&answered](DequeueResult items) { answered.set_value(std::move(items)); });
  CHECK(f.Stats("jobs").waiting == 1);
  f.Advance(kMaxLongPoll - seconds(1));
  std::future<DequeueResult> answer = answered.get_future();
  CHECK(answer.wait_for(milliseconds(20)) == std::future_status::timeout);
  f.Advance(seconds(2));
  REQUIRE(answer.wait_for(seconds(5)) == std::future_status::ready);
  DequeueResult items = answer.get();
  REQUIRE(items.ok());
  CHECK(items->empty());
  CHECK(f.Stats("jobs").waiting == 0);
}

// The real SQLite store, counting what reaches it.
class CountingStore : public QueueStore {
 public:
  explicit CountingStore(QueueStore& store) : store_(store) {}
  absl::StatusOr<std::vector<StoredMessage>> LoadAll() override { return store_.LoadAll(); }
  absl::Status Commit(std::span<const QueueMutation> mutations) override {
    mutations_ += static_cast<int>(mutations.size());
    return store_.Commit(mutations);
  }
  int mutations() const { return mutations_; }

 private:
  QueueStore& store_;
  std::atomic<int> mutations_{0};
};

TEST_CASE("An idempotent retry of an ack writes nothing") {
  pi::testing::TempDir dir;
  pi::common::ManualClock clock;
  auto sqlite = SqliteQueueStore::Open((dir.path() / "queue.db").string(), clock);
  REQUIRE(sqlite.ok());
  CountingStore store(**sqlite);
  auto engine = QueueEngine::Open(store, clock, {{"jobs", QueueLimits{}}});
  REQUIRE(engine.ok());
  REQUIRE(AwaitEngine<EnqueueResult>([&](auto done) {
            (*engine)->Enqueue("jobs", NewMessage{"x", {}, {}}, std::move(done));
          }).ok());
  DequeueResult items = AwaitEngine<DequeueResult>(
      [&](auto done) { (*engine)->Dequeue(Request("jobs", 1), std::move(done)); });
  REQUIRE(items.ok());
  REQUIRE(items->size() == 1);
  const std::vector<std::string> lease = {(*items)[0].lease_id};
  REQUIRE(AwaitEngine<SettleResult>([&](auto done) {
            (*engine)->Ack("jobs", lease, std::move(done));
          }).ok());
  const int written = store.mutations();
  CHECK(written == 3);  // Insert, lease, delete.
  SettleResult retry =
      AwaitEngine<SettleResult>([&](auto done) { (*engine)->Ack("jobs", lease, std::move(done)); });
  CHECK(Outcomes(retry)[0] == LeaseOutcome::kApplied);
  CHECK(store.mutations() == written);
}

TEST_CASE("Shutdown ends waiting dequeues and refuses new calls") {
  EngineFixture f;
  std::promise<DequeueResult> answered;
  f.engine().Dequeue(Request("jobs", 1, seconds(0), seconds(60)),
                     [&answered](DequeueResult items) { answered.set_value(std::move(items)); });
  f.engine().Shutdown();
  CHECK(answered.get_future().get().status().code() == absl::StatusCode::kUnavailable);
  CHECK(f.TryEnqueue("jobs", "x").status().code() == absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace pi::controlplane::queue
