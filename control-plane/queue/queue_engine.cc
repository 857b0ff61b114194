#include "control-plane/queue/queue_engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <deque>
#include <list>
#include <set>
#include <tuple>
#include <unordered_set>

#include "common/system/random.h"
#include "spdlog/spdlog.h"

namespace pi::controlplane::queue {
namespace {

using std::chrono::nanoseconds;
using SteadyTime = std::chrono::steady_clock::time_point;

// Expired lease ids are remembered this long so a late ack/nack learns that its lease expired
// (LeaseConflict.expired) rather than that it never existed.
constexpr std::chrono::minutes kExpiredLeaseMemory{10};
// Retention sweeps and the pruning of remembered leases run this often.
constexpr std::chrono::seconds kHousekeepingInterval{10};
// The engine's thread never sleeps longer than this, so a clock that jumps is noticed.
constexpr std::chrono::seconds kMaxSleep{1};

// `time + by` for by >= 0, saturating instead of overflowing: a worker may ask for any delay.
WallTime AddSaturating(WallTime time, nanoseconds by) {
  const auto step = std::chrono::duration_cast<WallTime::duration>(by);
  return step >= WallTime::max() - time ? WallTime::max() : time + step;
}

// Lease ids remembered for a while, each stored once, forgotten oldest first.
template <typename Value>
class RecentLeaseIds {
 public:
  void Remember(const std::string& lease_id, Value value, WallTime now) {
    auto [it, inserted] = values_.insert_or_assign(lease_id, value);
    if (inserted) order_.emplace_back(now, &it->first);
  }
  const Value* Find(const std::string& lease_id) const {
    auto it = values_.find(lease_id);
    return it == values_.end() ? nullptr : &it->second;
  }
  void ForgetUpTo(WallTime horizon) {
    while (!order_.empty() && order_.front().first <= horizon) {
      values_.erase(values_.find(*order_.front().second));
      order_.pop_front();
    }
  }

 private:
  std::unordered_map<std::string, Value> values_;
  // Node-based map: the key pointers stay valid until their element is erased.
  std::deque<std::pair<WallTime, const std::string*>> order_;
};

// 128 bits from the kernel's CSPRNG: a lease id is the only proof of a lease, so it must not be
// guessable, and message ids share the format.
absl::StatusOr<std::string> RandomId() { return common::RandomHex(16); }

}  // namespace

absl::StatusOr<std::vector<std::string>> DistinctLeaseIds(const std::vector<std::string>& ids) {
  std::vector<std::string> distinct;
  std::unordered_set<std::string> seen;
  for (const std::string& id : ids) {
    if (id.empty()) return absl::InvalidArgumentError("a lease id is empty");
    if (seen.insert(id).second) distinct.push_back(id);
  }
  if (distinct.empty()) return absl::InvalidArgumentError("no lease id given");
  if (distinct.size() > static_cast<size_t>(kMaxLeaseBatch)) {
    return absl::InvalidArgumentError(fmt::format(
        "{} distinct lease ids given; at most {} per request", distinct.size(), kMaxLeaseBatch));
  }
  return distinct;
}

struct QueueEngine::Entry {
  StoredMessage message;
  // Orders items with equal next_run_at and received_at by arrival.
  uint64_t sequence = 0;
};

struct QueueEngine::Waiter {
  uint64_t ticket = 0;
  int batch = 1;
  nanoseconds lease_ttl{0};
  SteadyTime wait_until;
  std::optional<SteadyTime> caller_deadline;
  DequeueDone done;
};

struct QueueEngine::Route {
  using QueueKey = std::tuple<WallTime, WallTime, uint64_t>;  // next_run_at, received_at, seq.

  static QueueKey KeyOf(const Entry& entry) {
    return {entry.message.next_run_at, entry.message.received_at, entry.sequence};
  }

  std::string name;
  QueueLimits limits;
  std::unordered_map<std::string, std::unique_ptr<Entry>> entries;  // By message id.
  std::map<QueueKey, Entry*> queued;
  std::unordered_map<std::string, Entry*> leases;             // By lease id.
  std::set<std::pair<WallTime, std::string>> lease_expiries;  // Expiry, lease id.
  std::map<std::pair<WallTime, std::string>, Entry*> dead;    // Dead at, message id.
  std::list<Waiter> waiters;
  // Successful acks and nacks, for idempotent retries, and leases that expired.
  RecentLeaseIds<SettleKind> settled;
  RecentLeaseIds<bool> expired;
  QueueCounters counters;

  void Forget(WallTime now) {
    settled.ForgetUpTo(now - kIdempotentRetryWindow);
    expired.ForgetUpTo(now - kExpiredLeaseMemory);
  }
};

struct QueueEngine::Pending {
  std::vector<QueueMutation> mutations;
  std::vector<Completion> completions;
  bool empty() const { return mutations.empty() && completions.empty(); }
};

QueueEngine::QueueEngine(QueueStore& store, const pi::common::Clock& clock)
    : store_(store),
      clock_(clock),
      pending_(std::make_unique<Pending>()),
      next_housekeeping_(clock.Now()) {}

absl::StatusOr<std::unique_ptr<QueueEngine>> QueueEngine::Open(
    QueueStore& store, const pi::common::Clock& clock,
    const std::map<std::string, QueueLimits>& routes) {
  std::unique_ptr<QueueEngine> engine(new QueueEngine(store, clock));
  for (const auto& [name, limits] : routes) {
    auto route = std::make_unique<Route>();
    route->name = name;
    route->limits = limits;
    engine->routes_[name] = std::move(route);
  }
  absl::StatusOr<std::vector<StoredMessage>> stored = store.LoadAll();
  if (!stored.ok()) return stored.status();
  std::sort(stored->begin(), stored->end(), [](const StoredMessage& a, const StoredMessage& b) {
    return a.received_at < b.received_at;
  });
  size_t unrouted = 0;
  for (StoredMessage& message : *stored) {
    auto route_it = engine->routes_.find(message.route);
    if (route_it == engine->routes_.end()) {
      ++unrouted;
      continue;
    }
    Route& route = *route_it->second;
    auto entry = std::make_unique<Entry>(Entry{std::move(message), engine->next_sequence_++});
    Entry* raw = entry.get();
    switch (raw->message.state) {
      case ItemState::kQueued:
        route.queued.emplace(Route::KeyOf(*raw), raw);
        break;
      case ItemState::kLeased:
        route.leases[raw->message.lease_id] = raw;
        route.lease_expiries.emplace(raw->message.next_run_at, raw->message.lease_id);
        break;
      case ItemState::kDead:
        route.dead.emplace(std::make_pair(raw->message.dead_at, raw->message.id), raw);
        break;
    }
    route.entries[raw->message.id] = std::move(entry);
  }
  if (unrouted > 0) {
    spdlog::warn("{} stored queue messages belong to routes that are not configured; kept on disk",
                 unrouted);
  }
  engine->thread_ = std::thread([raw = engine.get()] { raw->Loop(); });
  return engine;
}

QueueEngine::~QueueEngine() { Shutdown(); }

std::vector<DequeueDone> QueueEngine::TakeWaiters() {
  std::vector<DequeueDone> waiting;
  for (auto& [name, route] : routes_) {
    for (Waiter& waiter : route->waiters) waiting.push_back(std::move(waiter.done));
    route->waiters.clear();
  }
  waiting_tickets_.clear();
  return waiting;
}

void QueueEngine::Shutdown() {
  std::vector<DequeueDone> waiting;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    waiting = TakeWaiters();
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (DequeueDone& done : waiting) {
    done(absl::UnavailableError("the queue engine is shutting down"));
  }
}

std::vector<std::string> QueueEngine::RouteNames() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> names;
  for (const auto& [name, route] : routes_) names.push_back(name);
  return names;
}

template <typename Done>
QueueEngine::Route* QueueEngine::RouteOrAnswer(std::unique_lock<std::mutex>& lock,
                                               const std::string& name, Done& done) {
  absl::StatusOr<Route*> found = FindRoute(name);
  if (found.ok()) return *found;
  lock.unlock();
  done(found.status());
  return nullptr;
}

template <typename Done, typename Value>
void QueueEngine::AnswerAfterCommit(Done done, Value value) {
  AfterCommit(
      [done = std::move(done), value = std::move(value)](const absl::Status& commit) mutable {
        if (!commit.ok()) return done(commit);
        done(std::move(value));
      });
}

absl::StatusOr<QueueEngine::Route*> QueueEngine::FindRoute(const std::string& name) {
  if (!failure_.ok()) return failure_;
  if (stopping_) return absl::UnavailableError("the queue engine is shutting down");
  auto it = routes_.find(name);
  if (it == routes_.end()) {
    return absl::NotFoundError(fmt::format("no queue route named \"{}\"", name));
  }
  return it->second.get();
}

void QueueEngine::Record(QueueMutation mutation) {
  pending_->mutations.push_back(std::move(mutation));
}

void QueueEngine::RecordState(const Entry& entry) {
  const StoredMessage& m = entry.message;
  Record(MessageStateChange{m.id, m.state, m.attempt, m.next_run_at, m.lease_id, m.dead_reason,
                            m.dead_at});
}

void QueueEngine::AfterCommit(Completion completion) {
  pending_->completions.push_back(std::move(completion));
  wake_.notify_one();
}

void QueueEngine::Requeue(Route& route, Entry& entry, WallTime next_run_at) {
  StoredMessage& m = entry.message;
  m.state = ItemState::kQueued;
  m.lease_id.clear();
  m.next_run_at = next_run_at;
  route.queued.emplace(Route::KeyOf(entry), &entry);
  RecordState(entry);
}

void QueueEngine::DeadLetter(Route& route, Entry& entry, std::string reason, WallTime now) {
  StoredMessage& m = entry.message;
  m.state = ItemState::kDead;
  m.lease_id.clear();
  m.dead_reason = std::move(reason);
  m.dead_at = now;
  route.dead.emplace(std::make_pair(now, m.id), &entry);
  ++route.counters.dead_lettered;
  RecordState(entry);
}

void QueueEngine::ReturnToQueue(Route& route, Entry& entry, WallTime next_run_at, WallTime now) {
  if (route.limits.max_attempts && entry.message.attempt >= *route.limits.max_attempts) {
    DeadLetter(route, entry, "max_attempts", now);
  } else {
    Requeue(route, entry, next_run_at);
  }
}

void QueueEngine::ExpireLeases(Route& route, WallTime now) {
  while (!route.lease_expiries.empty() && route.lease_expiries.begin()->first <= now) {
    const auto [expiry, lease_id] = *route.lease_expiries.begin();
    route.lease_expiries.erase(route.lease_expiries.begin());
    auto lease = route.leases.find(lease_id);
    if (lease == route.leases.end()) continue;
    Entry& entry = *lease->second;
    route.leases.erase(lease);
    route.expired.Remember(lease_id, true, now);
    ++route.counters.lease_expiries;
    ReturnToQueue(route, entry, expiry, now);
  }
}

std::vector<LeasedItem> QueueEngine::LeaseDue(Route& route, int batch, nanoseconds ttl,
                                              WallTime now) {
  std::vector<LeasedItem> leased;
  auto it = route.queued.begin();
  while (static_cast<int>(leased.size()) < batch && it != route.queued.end() &&
         std::get<0>(it->first) <= now) {
    Entry& entry = *it->second;
    it = route.queued.erase(it);
    StoredMessage& m = entry.message;
    // Items stored before max_attempts was lowered are buried here instead of leased again.
    if (route.limits.max_attempts && m.attempt >= *route.limits.max_attempts) {
      DeadLetter(route, entry, "max_attempts", now);
      continue;
    }
    absl::StatusOr<std::string> lease_id = RandomId();
    if (!lease_id.ok()) {
      // Without randomness no lease can be issued; the item stays due for the next dequeue.
      route.queued.emplace(Route::KeyOf(entry), &entry);
      spdlog::error("queue {}: {}", route.name, std::string(lease_id.status().message()));
      break;
    }
    m.state = ItemState::kLeased;
    m.lease_id = *lease_id;
    m.attempt += 1;
    m.next_run_at = now + std::chrono::duration_cast<WallTime::duration>(ttl);
    route.leases[m.lease_id] = &entry;
    route.lease_expiries.emplace(m.next_run_at, m.lease_id);
    RecordState(entry);
    ++route.counters.dequeued;
    leased.push_back(LeasedItem{m.id, m.lease_id, m.received_at, m.attempt, m.next_run_at,
                                route.name, m.payload, m.headers, m.trace});
  }
  return leased;
}

void QueueEngine::ServeWaiters(Route& route, WallTime now) {
  const SteadyTime steady_now = clock_.Now();
  while (!route.waiters.empty() && !route.queued.empty() &&
         std::get<0>(route.queued.begin()->first) <= now) {
    Waiter waiter = std::move(route.waiters.front());
    route.waiters.pop_front();
    waiting_tickets_.erase(waiter.ticket);
    if (waiter.caller_deadline && *waiter.caller_deadline <= steady_now) {
      AfterCommit([done = std::move(waiter.done)](const absl::Status&) {
        done(absl::DeadlineExceededError("the caller's deadline passed while waiting"));
      });
      continue;
    }
    std::vector<LeasedItem> items = LeaseDue(route, waiter.batch, waiter.lease_ttl, now);
    if (items.empty()) {
      // Every due item was dead-lettered (max_attempts) or no lease id could be made: keep
      // waiting rather than answer early.
      waiting_tickets_[waiter.ticket] = &route;
      route.waiters.push_front(std::move(waiter));
      break;
    }
    AnswerAfterCommit(std::move(waiter.done), std::move(items));
  }
}

void QueueEngine::Enqueue(const std::string& route_name, NewMessage message, EnqueueDone done) {
  absl::StatusOr<std::string> id = RandomId();
  if (!id.ok()) return done(id.status());
  std::unique_lock<std::mutex> lock(mu_);
  Route* found = RouteOrAnswer(lock, route_name, done);
  if (found == nullptr) return;
  Route& route = *found;
  const WallTime now = clock_.WallNow();
  ExpireLeases(route, now);
  const int64_t depth = static_cast<int64_t>(route.queued.size() + route.leases.size());
  if (route.limits.max_depth > 0 && depth >= route.limits.max_depth) {
    lock.unlock();
    return done(
        absl::ResourceExhaustedError(fmt::format("queue \"{}\" is full ({} items, max_depth {})",
                                                 route_name, depth, route.limits.max_depth)));
  }
  auto entry = std::make_unique<Entry>();
  entry->sequence = next_sequence_++;
  StoredMessage& m = entry->message;
  m.id = *id;
  m.route = route_name;
  m.received_at = now;
  m.next_run_at = now;
  m.payload = std::move(message.payload);
  m.headers = std::move(message.headers);
  m.trace = std::move(message.trace);
  Record(m);
  route.queued.emplace(Route::KeyOf(*entry), entry.get());
  route.entries[m.id] = std::move(entry);
  ++route.counters.enqueued;
  ServeWaiters(route, now);
  AnswerAfterCommit(std::move(done), *std::move(id));
}

uint64_t QueueEngine::Dequeue(DequeueRequest request, DequeueDone done) {
  if (request.lease_ttl < nanoseconds::zero() || request.max_wait < nanoseconds::zero()) {
    done(absl::InvalidArgumentError("lease_ttl and max_wait must not be negative"));
    return 0;
  }
  std::unique_lock<std::mutex> lock(mu_);
  Route* found = RouteOrAnswer(lock, request.route, done);
  if (found == nullptr) return 0;
  Route& route = *found;
  const SteadyTime steady_now = clock_.Now();
  if (request.caller_deadline && *request.caller_deadline <= steady_now) {
    lock.unlock();
    done(absl::DeadlineExceededError("the caller's deadline has passed"));
    return 0;
  }
  const int batch =
      std::clamp(request.batch, 1, std::clamp(route.limits.max_batch, 1, kMaxDequeueBatch));
  nanoseconds ttl =
      request.lease_ttl == nanoseconds::zero() ? nanoseconds(kDefaultLeaseTtl) : request.lease_ttl;
  ttl = std::min(ttl, route.limits.max_lease_ttl);
  const WallTime now = clock_.WallNow();
  ExpireLeases(route, now);
  std::vector<LeasedItem> items = LeaseDue(route, batch, ttl, now);
  if (!items.empty() || request.max_wait == nanoseconds::zero()) {
    AnswerAfterCommit(std::move(done), std::move(items));
    return 0;
  }
  const uint64_t ticket = next_ticket_++;
  route.waiters.push_back(Waiter{ticket, batch, ttl,
                                 steady_now + std::min<nanoseconds>(request.max_wait, kMaxLongPoll),
                                 request.caller_deadline, std::move(done)});
  waiting_tickets_[ticket] = &route;
  wake_.notify_one();
  return ticket;
}

void QueueEngine::CancelDequeue(uint64_t ticket) {
  DequeueDone done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = waiting_tickets_.find(ticket);
    if (it == waiting_tickets_.end()) return;
    std::list<Waiter>& waiters = it->second->waiters;
    waiting_tickets_.erase(it);
    auto waiter = std::find_if(waiters.begin(), waiters.end(),
                               [ticket](const Waiter& w) { return w.ticket == ticket; });
    if (waiter == waiters.end()) return;
    done = std::move(waiter->done);
    waiters.erase(waiter);
  }
  done(absl::CancelledError("the caller went away"));
}

void QueueEngine::Settle(const std::string& route_name, const std::vector<std::string>& lease_ids,
                         SettleKind kind,
                         const std::function<void(Route&, Entry&, WallTime)>& apply,
                         SettleDone done) {
  absl::StatusOr<std::vector<std::string>> ids = DistinctLeaseIds(lease_ids);
  if (!ids.ok()) return done(ids.status());
  std::unique_lock<std::mutex> lock(mu_);
  Route* found = RouteOrAnswer(lock, route_name, done);
  if (found == nullptr) return;
  Route& route = *found;
  const WallTime now = clock_.WallNow();
  ExpireLeases(route, now);
  std::vector<LeaseResult> results;
  for (const std::string& lease_id : *ids) {
    LeaseResult& result = results.emplace_back(LeaseResult{lease_id, LeaseOutcome::kUnknown});
    if (const SettleKind* settled = route.settled.Find(lease_id);
        settled != nullptr && *settled == kind) {
      result.outcome = LeaseOutcome::kApplied;
      continue;
    }
    auto lease = route.leases.find(lease_id);
    if (lease == route.leases.end()) {
      if (route.expired.Find(lease_id) != nullptr) result.outcome = LeaseOutcome::kExpired;
      ++route.counters.conflicts;
      continue;
    }
    Entry& entry = *lease->second;
    route.lease_expiries.erase({entry.message.next_run_at, lease_id});
    route.leases.erase(lease);
    route.settled.Remember(lease_id, kind, now);
    apply(route, entry, now);
    result.outcome = LeaseOutcome::kApplied;
  }
  ServeWaiters(route, now);
  AnswerAfterCommit(std::move(done), std::move(results));
}

void QueueEngine::Ack(const std::string& route_name, const std::vector<std::string>& lease_ids,
                      SettleDone done) {
  Settle(
      route_name, lease_ids, SettleKind::kAck,
      [this](Route& route, Entry& entry, WallTime) {
        ++route.counters.acked;
        std::string id = entry.message.id;
        route.entries.erase(id);
        Record(MessageDelete{std::move(id)});
      },
      std::move(done));
}

void QueueEngine::Nack(const std::string& route_name, const std::vector<std::string>& lease_ids,
                       const NackOptions& options, SettleDone done) {
  if (options.delay < nanoseconds::zero()) {
    return done(absl::InvalidArgumentError("nack delay must not be negative"));
  }
  Settle(
      route_name, lease_ids, SettleKind::kNack,
      [this, &options](Route& route, Entry& entry, WallTime now) {
        ++route.counters.nacked;
        if (options.dead) {
          DeadLetter(route, entry, options.reason, now);
        } else {
          ReturnToQueue(route, entry, AddSaturating(now, options.delay), now);
        }
      },
      std::move(done));
}

void QueueEngine::Extend(const std::string& route_name, const std::string& lease_id,
                         nanoseconds extend_by, StatusDone done) {
  std::unique_lock<std::mutex> lock(mu_);
  Route* found = RouteOrAnswer(lock, route_name, done);
  if (found == nullptr) return;
  if (extend_by <= nanoseconds::zero()) {
    lock.unlock();
    return done(absl::OkStatus());
  }
  if (lease_id.empty()) {
    lock.unlock();
    return done(absl::InvalidArgumentError("lease_id is empty"));
  }
  Route& route = *found;
  const WallTime now = clock_.WallNow();
  ExpireLeases(route, now);
  auto lease = route.leases.find(lease_id);
  if (lease == route.leases.end()) {
    lock.unlock();
    return done(absl::FailedPreconditionError("lease is invalid or expired"));
  }
  Entry& entry = *lease->second;
  const WallTime cap =
      now + std::chrono::duration_cast<WallTime::duration>(route.limits.max_lease_ttl);
  // Compared before adding, so no extend_by can overflow.
  const WallTime extended = extend_by >= cap - entry.message.next_run_at
                                ? cap
                                : AddSaturating(entry.message.next_run_at, extend_by);
  if (extended > entry.message.next_run_at) {
    route.lease_expiries.erase({entry.message.next_run_at, lease_id});
    entry.message.next_run_at = extended;
    route.lease_expiries.emplace(extended, lease_id);
    RecordState(entry);
  }
  AfterCommit([done = std::move(done)](const absl::Status& commit) { done(commit); });
}

absl::StatusOr<QueueStats> QueueEngine::Stats(const std::string& route_name) {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<Route*> found = FindRoute(route_name);
  if (!found.ok()) return found.status();
  Route& route = **found;
  const WallTime now = clock_.WallNow();
  QueueStats stats;
  stats.queued = static_cast<int64_t>(route.queued.size());
  stats.leased = static_cast<int64_t>(route.leases.size());
  stats.dead = static_cast<int64_t>(route.dead.size());
  stats.waiting = static_cast<int64_t>(route.waiters.size());
  std::optional<WallTime> oldest;
  for (const auto& [key, entry] : route.queued) {
    if (std::get<0>(key) > now) ++stats.delayed;
    if (!oldest || entry->message.received_at < *oldest) oldest = entry->message.received_at;
  }
  if (oldest) stats.oldest_queued_age = std::max(nanoseconds::zero(), nanoseconds(now - *oldest));
  return stats;
}

absl::StatusOr<QueueCounters> QueueEngine::Counters(const std::string& route_name) {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<Route*> found = FindRoute(route_name);
  if (!found.ok()) return found.status();
  return (*found)->counters;
}

absl::StatusOr<std::vector<StoredMessage>> QueueEngine::ListDeadLetters(
    const std::string& route_name, int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<Route*> found = FindRoute(route_name);
  if (!found.ok()) return found.status();
  std::vector<StoredMessage> letters;
  for (const auto& [key, entry] : (*found)->dead) {
    if (static_cast<int>(letters.size()) >= limit) break;
    letters.push_back(entry->message);
  }
  return letters;
}

void QueueEngine::RequeueDeadLetters(const std::string& route_name,
                                     const std::vector<std::string>& ids,
                                     std::function<void(absl::StatusOr<int64_t>)> done) {
  std::unique_lock<std::mutex> lock(mu_);
  Route* found = RouteOrAnswer(lock, route_name, done);
  if (found == nullptr) return;
  Route& route = *found;
  const WallTime now = clock_.WallNow();
  int64_t requeued = 0;
  for (const std::string& id : std::set<std::string>(ids.begin(), ids.end())) {
    auto it = route.entries.find(id);
    if (it == route.entries.end() || it->second->message.state != ItemState::kDead) continue;
    Entry& entry = *it->second;
    route.dead.erase({entry.message.dead_at, id});
    entry.message.attempt = 0;
    entry.message.dead_reason.clear();
    entry.message.dead_at = WallTime{};
    Requeue(route, entry, now);
    ++requeued;
  }
  ServeWaiters(route, now);
  AnswerAfterCommit(std::move(done), requeued);
}

void QueueEngine::DeleteDeadLetters(const std::string& route_name,
                                    const std::vector<std::string>& ids,
                                    std::function<void(absl::StatusOr<int64_t>)> done) {
  std::unique_lock<std::mutex> lock(mu_);
  Route* found = RouteOrAnswer(lock, route_name, done);
  if (found == nullptr) return;
  Route& route = *found;
  int64_t deleted = 0;
  for (const std::string& id : std::set<std::string>(ids.begin(), ids.end())) {
    auto it = route.entries.find(id);
    if (it == route.entries.end() || it->second->message.state != ItemState::kDead) continue;
    route.dead.erase({it->second->message.dead_at, id});
    route.entries.erase(it);
    Record(MessageDelete{id});
    ++deleted;
  }
  AnswerAfterCommit(std::move(done), deleted);
}

void QueueEngine::RunTimers() {
  std::lock_guard<std::mutex> lock(mu_);
  RunTimersLocked();
}

void QueueEngine::RunTimersLocked() {
  if (!failure_.ok() || stopping_) return;
  const WallTime now = clock_.WallNow();
  const SteadyTime steady_now = clock_.Now();
  const bool housekeeping = steady_now >= next_housekeeping_;
  if (housekeeping) next_housekeeping_ = steady_now + kHousekeepingInterval;
  for (auto& [name, route_ptr] : routes_) {
    Route& route = *route_ptr;
    ExpireLeases(route, now);
    ServeWaiters(route, now);
    for (auto it = route.waiters.begin(); it != route.waiters.end();) {
      const bool caller_gone = it->caller_deadline && *it->caller_deadline <= steady_now;
      if (!caller_gone && it->wait_until > steady_now) {
        ++it;
        continue;
      }
      waiting_tickets_.erase(it->ticket);
      AfterCommit([done = std::move(it->done), caller_gone](const absl::Status& commit) {
        if (caller_gone) return done(absl::DeadlineExceededError("the caller's deadline passed"));
        if (!commit.ok()) return done(commit);
        done(std::vector<LeasedItem>{});
      });
      it = route.waiters.erase(it);
    }
    route.Forget(now);
    if (!housekeeping) continue;
    if (route.limits.retention <= nanoseconds::zero()) continue;
    const WallTime horizon =
        now - std::chrono::duration_cast<WallTime::duration>(route.limits.retention);
    // Queued items and dead letters; leased ones are in neither index.
    const auto drop_old = [&](auto& index) {
      for (auto it = index.begin(); it != index.end();) {
        if (it->second->message.received_at >= horizon) {
          ++it;
          continue;
        }
        std::string id = it->second->message.id;
        it = index.erase(it);
        route.entries.erase(id);
        Record(MessageDelete{std::move(id)});
      }
    };
    drop_old(route.queued);
    drop_old(route.dead);
  }
}

nanoseconds QueueEngine::TimeToNextTimer() const {
  if (!failure_.ok()) return kMaxSleep;
  const WallTime now = clock_.WallNow();
  const SteadyTime steady_now = clock_.Now();
  nanoseconds wait = kMaxSleep;
  for (const auto& [name, route] : routes_) {
    if (!route->lease_expiries.empty()) {
      wait = std::min<nanoseconds>(wait, route->lease_expiries.begin()->first - now);
    }
    if (!route->waiters.empty() && !route->queued.empty()) {
      wait = std::min<nanoseconds>(wait, std::get<0>(route->queued.begin()->first) - now);
    }
    for (const Waiter& waiter : route->waiters) {
      wait = std::min<nanoseconds>(wait, waiter.wait_until - steady_now);
      if (waiter.caller_deadline) {
        wait = std::min<nanoseconds>(wait, *waiter.caller_deadline - steady_now);
      }
    }
  }
  return std::max(wait, nanoseconds::zero());
}

void QueueEngine::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    RunTimersLocked();
    if (pending_->empty()) {
      if (stopping_) return;
      wake_.wait_for(lock, TimeToNextTimer());
      continue;
    }
    std::unique_ptr<Pending> batch = std::exchange(pending_, std::make_unique<Pending>());
    absl::Status commit = failure_;
    lock.unlock();
    if (commit.ok()) {
      commit = store_.Commit(batch->mutations);
      if (!commit.ok()) {
        spdlog::critical("queue store commit failed: {}; refusing queue calls until restart",
                         std::string(commit.message()));
        commit = absl::UnavailableError(fmt::format(
            "the queue store failed ({}); restart pi-controller", std::string(commit.message())));
      }
    }
    for (Completion& completion : batch->completions) completion(commit);
    lock.lock();
    if (!commit.ok() && failure_.ok()) {
      failure_ = commit;
      // No timer runs any more, so waiting dequeues are answered now.
      std::vector<DequeueDone> waiting = TakeWaiters();
      lock.unlock();
      for (DequeueDone& done : waiting) done(commit);
      lock.lock();
    }
  }
}

}  // namespace pi::controlplane::queue
