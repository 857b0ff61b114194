#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace pi::controlplane::queue {

using WallTime = std::chrono::system_clock::time_point;
using Headers = std::map<std::string, std::string>;

// Limits from DESIGN 4.1.
inline constexpr int kMaxDequeueBatch = 100;
inline constexpr int kMaxLeaseBatch = 100;
inline constexpr std::chrono::seconds kDefaultLeaseTtl{30};
// A repeat of a successful ack/nack of the same lease within this window succeeds again.
inline constexpr std::chrono::minutes kIdempotentRetryWindow{2};
// A dequeue long-polls at most this long, whatever max_wait it asks for.
inline constexpr std::chrono::minutes kMaxLongPoll{5};

// What the engine needs to know about a route; the transports' own settings (paths, tokens) live
// in RouteTable.
struct QueueLimits {
  // Enqueue refuses (RESOURCE_EXHAUSTED) when queued + leased items reach this; 0 = unlimited.
  int64_t max_depth = 0;
  // An item that was leased this many times is dead-lettered with reason "max_attempts" instead
  // of being leased again; unset = unlimited, as in Hookaido.
  std::optional<int> max_attempts;
  // Queued items and dead letters older than this (by received_at) are deleted; zero = forever.
  std::chrono::nanoseconds retention{0};
  // Dequeue's batch is clamped to 1..min(max_batch, kMaxDequeueBatch).
  int max_batch = kMaxDequeueBatch;
  // A requested lease_ttl (and an extension's resulting lease) is capped at this.
  std::chrono::nanoseconds max_lease_ttl{std::chrono::minutes(10)};
};

struct NewMessage {
  std::string payload;
  Headers headers;  // Values are UTF-8 (they travel as protobuf strings).
  Headers trace;
};

enum class ItemState { kQueued = 0, kLeased = 1, kDead = 2 };

// One message as stored: everything a restart needs to rebuild the queues.
struct StoredMessage {
  std::string id;
  std::string route;
  WallTime received_at;
  WallTime next_run_at;  // Due time while queued; lease expiry while leased.
  int attempt = 0;       // How many times it was leased.
  ItemState state = ItemState::kQueued;
  std::string lease_id;  // While leased.
  std::string dead_reason;
  WallTime dead_at;
  std::string payload;
  Headers headers;
  Headers trace;
};

// One leased item, the fields of hookaido.worker.v1.DequeueItem.
struct LeasedItem {
  std::string id;
  std::string lease_id;
  WallTime received_at;
  int attempt = 0;       // 1 on the first lease.
  WallTime next_run_at;  // The lease's expiry.
  std::string route;
  std::string payload;
  Headers headers;
  Headers trace;
};

// What happened to one lease named in an ack or nack.
enum class LeaseOutcome {
  kApplied,  // Also an idempotent retry of a successful ack/nack.
  kUnknown,  // Never issued, already settled, or issued for another route.
  kExpired,  // Issued for this route, but it expired before the ack/nack.
};

struct LeaseResult {
  std::string lease_id;
  LeaseOutcome outcome = LeaseOutcome::kUnknown;
};

struct NackOptions {
  std::chrono::nanoseconds delay{0};  // Requeue at now + delay; ignored when dead.
  bool dead = false;                  // Move the item to the dead letters instead.
  std::string reason;                 // Kept with a dead letter.
};

struct QueueStats {
  int64_t queued = 0;   // Due now or later.
  int64_t delayed = 0;  // The part of `queued` whose next_run_at is in the future.
  int64_t leased = 0;
  int64_t dead = 0;
  int64_t waiting = 0;  // Dequeues long-polling for an item.
  // now - received_at of the oldest queued item; unset when nothing is queued.
  std::optional<std::chrono::nanoseconds> oldest_queued_age;
};

// Counters since the controller started, for /metrics.
struct QueueCounters {
  uint64_t enqueued = 0;
  uint64_t dequeued = 0;  // Items leased.
  uint64_t acked = 0;
  uint64_t nacked = 0;
  uint64_t conflicts = 0;
  uint64_t lease_expiries = 0;
  uint64_t dead_lettered = 0;
};

}  // namespace pi::controlplane::queue
