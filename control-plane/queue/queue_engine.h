#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/system/clock.h"
#include "control-plane/queue/queue_store.h"
#include "control-plane/queue/queue_types.h"

namespace pi::controlplane::queue {

using EnqueueDone = std::function<void(absl::StatusOr<std::string>)>;
using DequeueDone = std::function<void(absl::StatusOr<std::vector<LeasedItem>>)>;
using SettleDone = std::function<void(absl::StatusOr<std::vector<LeaseResult>>)>;
using StatusDone = std::function<void(absl::Status)>;

struct DequeueRequest {
  std::string route;
  int batch = 1;                          // Clamped to 1..min(route max_batch, 100).
  std::chrono::nanoseconds lease_ttl{0};  // 0 = kDefaultLeaseTtl; capped at max_lease_ttl.
  std::chrono::nanoseconds max_wait{0};   // Long-poll this long (at most kMaxLongPoll).
  // When the caller stops listening (its RPC deadline). Nothing is leased to a caller after
  // this; unset = no deadline beyond max_wait.
  std::optional<std::chrono::steady_clock::time_point> caller_deadline;
};

// The lease engine behind both worker transports (gRPC WorkerService and the HTTP Pull API),
// HTTP ingress and the admin queue commands. DESIGN 4.1 and 5.1.
//
// The live queues are in memory; every change is written to the QueueStore before the caller
// hears of it. Changes that arrive while a commit is running are written together by the next
// one (group commit), so throughput grows with concurrency while every acknowledged change is
// durable. Anything a caller observes (a leased item, an ack) was committed first, including the
// enqueue of an item it was leased.
//
// Asynchronous: each call's `done` runs exactly once, either on the caller's thread (refusals
// that change nothing: validation, unknown route, full queue) or on the engine's commit thread
// once everything decided before it is committed; that includes idempotent retries and empty
// answers, so no answer ever runs ahead of a write it depends on. `done` must be quick and must
// not call back into the engine synchronously.
//
// If the store fails to commit, the memory no longer matches the disk: the engine fails every
// pending and later call with UNAVAILABLE and the controller must be restarted, which reloads
// the queues from the last good commit.
class QueueEngine {
 public:
  // Loads every stored message. Routes named in `routes` get those limits; stored messages of a
  // route that is no longer configured are kept on disk and left alone. `store` and `clock` must
  // outlive the engine.
  static absl::StatusOr<std::unique_ptr<QueueEngine>> Open(
      QueueStore& store, const pi::common::Clock& clock,
      const std::map<std::string, QueueLimits>& routes);
  ~QueueEngine();
  QueueEngine(const QueueEngine&) = delete;
  QueueEngine& operator=(const QueueEngine&) = delete;

  // Stores a message; done gets its id. NOT_FOUND for an unknown route; RESOURCE_EXHAUSTED when
  // the route holds max_depth queued + leased items.
  void Enqueue(const std::string& route, NewMessage message, EnqueueDone done);

  // Leases up to `batch` due items (next_run_at <= now), ordered by next_run_at then
  // received_at; each gets a fresh unguessable lease id and attempt + 1. With nothing due it
  // waits up to max_wait, woken at once by an enqueue, a nack or an expiry, and then answers an
  // empty list. Returns a ticket for CancelDequeue. NOT_FOUND for an unknown route,
  // INVALID_ARGUMENT for a negative duration, DEADLINE_EXCEEDED when the caller's deadline
  // passes first.
  uint64_t Dequeue(DequeueRequest request, DequeueDone done);
  // Ends a waiting dequeue with CANCELLED (its caller went away); no-op when already answered.
  void CancelDequeue(uint64_t ticket);

  // Batch settle: `lease_ids` are deduplicated (first occurrence kept) and must be 1..100
  // non-empty ids, otherwise INVALID_ARGUMENT and nothing changes. done gets one result per
  // distinct id, in order; the applied ones are committed together.
  void Ack(const std::string& route, const std::vector<std::string>& lease_ids, SettleDone done);
  // As Ack. A negative delay is INVALID_ARGUMENT even when dead.
  void Nack(const std::string& route, const std::vector<std::string>& lease_ids,
            const NackOptions& options, SettleDone done);
  // Moves a valid lease's expiry extend_by later (the whole lease capped at max_lease_ttl from
  // now). extend_by <= 0 succeeds without looking at the lease. FAILED_PRECONDITION "lease is
  // invalid or expired" for an unknown, expired or foreign lease.
  void Extend(const std::string& route, const std::string& lease_id,
              std::chrono::nanoseconds extend_by, StatusDone done);

  // Admin. NOT_FOUND for an unknown route.
  absl::StatusOr<QueueStats> Stats(const std::string& route);
  absl::StatusOr<QueueCounters> Counters(const std::string& route);
  // Dead letters of the route, oldest death first, at most `limit`.
  absl::StatusOr<std::vector<StoredMessage>> ListDeadLetters(const std::string& route, int limit);
  // Puts dead letters back in the queue, due now, with attempt reset to 0; done gets how many of
  // `ids` were dead letters of the route.
  void RequeueDeadLetters(const std::string& route, const std::vector<std::string>& ids,
                          std::function<void(absl::StatusOr<int64_t>)> done);
  // Removes dead letters for good; done gets how many of `ids` were dead letters of the route.
  void DeleteDeadLetters(const std::string& route, const std::vector<std::string>& ids,
                         std::function<void(absl::StatusOr<int64_t>)> done);

  std::vector<std::string> RouteNames() const;

  // Ends every waiting dequeue and refuses new calls with UNAVAILABLE, commits what is pending
  // and stops the engine's thread. Idempotent; the destructor calls it.
  void Shutdown();

  // Runs due work now (lease expiries, delayed items becoming due, long-poll timeouts, retention);
  // the engine's thread calls it on its own. Tests with a ManualClock call it after Advance().
  void RunTimers();

 private:
  struct Entry;
  struct Route;
  struct Waiter;
  struct Pending;
  using Completion = std::function<void(const absl::Status& commit)>;
  enum class SettleKind { kAck, kNack };

  QueueEngine(QueueStore& store, const pi::common::Clock& clock);
  void Loop();
  // The helpers below require mu_.
  absl::StatusOr<Route*> FindRoute(const std::string& name);
  // FindRoute for a call holding `lock`: on failure unlocks, answers `done` and returns null.
  template <typename Done>
  Route* RouteOrAnswer(std::unique_lock<std::mutex>& lock, const std::string& name, Done& done);
  // Answers `done` with `value` once everything recorded so far is committed, or with the
  // commit's error.
  template <typename Done, typename Value>
  void AnswerAfterCommit(Done done, Value value);
  void Requeue(Route& route, Entry& entry, WallTime next_run_at);
  void DeadLetter(Route& route, Entry& entry, std::string reason, WallTime now);
  // Requeues the item, or dead-letters it when it used up max_attempts.
  void ReturnToQueue(Route& route, Entry& entry, WallTime next_run_at, WallTime now);
  std::vector<LeasedItem> LeaseDue(Route& route, int batch, std::chrono::nanoseconds ttl,
                                   WallTime now);
  void ServeWaiters(Route& route, WallTime now);
  // The shared part of Ack and Nack: validates, reports each lease, answers repeats of the same
  // kind from memory, and runs `apply` on each valid lease (already removed from the lease maps).
  void Settle(const std::string& route, const std::vector<std::string>& lease_ids, SettleKind kind,
              const std::function<void(Route&, Entry&, WallTime)>& apply, SettleDone done);
  void ExpireLeases(Route& route, WallTime now);
  void RunTimersLocked();
  void Record(QueueMutation mutation);
  void RecordState(const Entry& entry);
  // Runs `completion` once everything recorded so far is committed.
  void AfterCommit(Completion completion);
  std::chrono::nanoseconds TimeToNextTimer() const;
  // Removes every waiting dequeue and returns their callbacks.
  std::vector<DequeueDone> TakeWaiters();

  QueueStore& store_;
  const pi::common::Clock& clock_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::map<std::string, std::unique_ptr<Route>> routes_;
  std::unordered_map<uint64_t, Route*> waiting_tickets_;
  uint64_t next_ticket_ = 1;
  uint64_t next_sequence_ = 1;
  // The group being collected for the next commit.
  std::unique_ptr<Pending> pending_;
  std::chrono::steady_clock::time_point next_housekeeping_;
  absl::Status failure_;
  bool stopping_ = false;
  std::thread thread_;
};

// The distinct lease ids of a batch ack/nack (first occurrence kept): 1..kMaxLeaseBatch non-empty
// ids, otherwise INVALID_ARGUMENT. The engine checks this itself; transports call it too, because
// a malformed request must be refused before its token is looked at (DESIGN 4.1).
absl::StatusOr<std::vector<std::string>> DistinctLeaseIds(const std::vector<std::string>& ids);

// Runs one asynchronous engine call and waits for its result; for admin calls and tests:
//   AwaitEngine<absl::Status>([&](auto done) { engine.Extend(route, id, by, std::move(done)); });
template <typename T>
T AwaitEngine(const std::function<void(std::function<void(T)>)>& call) {
  std::promise<T> promise;
  std::future<T> result = promise.get_future();
  call([&promise](T value) { promise.set_value(std::move(value)); });
  return result.get();
}

}  // namespace pi::controlplane::queue
