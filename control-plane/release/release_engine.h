#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/system/clock.h"
#include "common/tls/identity.h"
#include "control-plane/release/release_store.h"
#include "control-plane/release/release_types.h"

namespace pi::controlplane::release {

struct ReleaseOptions {
  // Release tokens live this long at most (DESIGN 4.2: 1h); a release's timeout is capped by it.
  std::chrono::seconds token_ttl{std::chrono::hours(1)};
  std::chrono::seconds default_timeout{std::chrono::minutes(30)};
  // A runner silent this long is treated as disconnected (DESIGN 4.2: 90s).
  std::chrono::seconds runner_silence_limit{90};
  // Runners a release may be given (rejections and lost runners count).
  int default_max_attempts = 3;
  // A runner that rejected a release is not offered it again for this long. Not for ever: a
  // release pinned to a node has only that node's runner, which may have refused while busy.
  std::chrono::seconds rejection_backoff{30};
  int max_max_attempts = 20;
  // Buffered log lines are written at least this often, and at once when this many wait.
  std::chrono::milliseconds log_flush_interval{200};
  size_t log_flush_lines = 512;
  // Connected runners at most (RESOURCE_EXHAUSTED beyond).
  int max_runners = 4096;
};

// What a runner says in its RunnerRegister.
struct RunnerHello {
  std::string runner_id;  // empty = the engine assigns one
  std::vector<DestinationType> capabilities;
  int max_concurrent = 0;
};

// A release handed to a runner: the token is the only copy of the secret.
struct Assignment {
  std::string token;
  Release release;
};

// The engine's way to a connected runner's stream. Called with the engine's lock held: must not
// block and must not call back into the engine (the gRPC adapter queues a write).
class RunnerChannel {
 public:
  virtual ~RunnerChannel() = default;
  virtual void Assign(const Assignment& assignment) = 0;
  // The engine dropped the runner (silent too long, replaced by a new connection with its id,
  // shutdown): end the stream with `status`.
  virtual void Close(const absl::Status& status) = 0;
};

struct RunnerSession {
  std::string runner_id;
  uint64_t session = 0;  // identifies this connection for Heartbeat/Ack/Disconnect
};

struct RunnerView {
  std::string runner_id;
  std::string identity;  // "node:pi-1", "runner:ci"
  std::string node_id;   // set for a node's agent
  std::vector<DestinationType> capabilities;
  int max_concurrent = 0;
  int active = 0;
  WallTime connected_at;
  WallTime last_heartbeat;
  std::vector<std::string> release_ids;
};

// What a release token gives access to, read-only.
struct TokenScope {
  Release release;  // as it is now
  // The certificate identity of the runner holding the release ("node:pi-1", "runner:ci"): only
  // that caller may use the token.
  std::string holder;
};

// An event for a follower: the release after a change, or a new log line.
struct ReleaseEvent {
  std::optional<Release> release;
  std::optional<LogLine> log;
};

// Called with the engine's lock held: must be quick and must not call into the engine. on_end
// runs once: OK after the event of the release's final state, UNAVAILABLE when the engine stops.
struct FollowSink {
  std::function<void(const ReleaseEvent& event)> on_event;
  std::function<void(const absl::Status& status)> on_end;
};

struct ReleaseCounts {
  std::map<ReleaseState, int64_t> unfinished;  // QUEUED, ASSIGNED, RUNNING now
  std::map<ReleaseState, int64_t> finished_since_start;
  int64_t runners = 0;
  int64_t assignments_since_start = 0;
};

// The release core (DESIGN 4.2, 5.3): stores releases, matches them to runners at once when one
// is created or a slot frees (no polling sweep), mints a release token per assignment (only its
// SHA-256 is kept), checks every token-scoped call, keeps logs durably and lets admins follow a
// release live. Runners that reject work, disconnect or fall silent lose their releases, which go
// back to the queue until max_attempts runners have had them, then FAIL.
//
// Thread-safe. Store writes run under the engine's lock, on the caller's thread; callers on gRPC
// callback threads hand calls to a thread of their own.
class ReleaseEngine {
 public:
  // Loads unfinished releases. Releases that were ASSIGNED or RUNNING when the controller stopped
  // lost their runner: they are requeued or failed as for a disconnect.
  static absl::StatusOr<std::unique_ptr<ReleaseEngine>> Open(ReleaseStore& store,
                                                             const common::Clock& clock,
                                                             ReleaseOptions options);
  ~ReleaseEngine();
  ReleaseEngine(const ReleaseEngine&) = delete;
  ReleaseEngine& operator=(const ReleaseEngine&) = delete;

  // Starts the thread that runs timers and flushes logs. Tests with a ManualClock call RunTimers()
  // and FlushLogs() themselves instead.
  void Start();
  // Ends every runner stream and follow with UNAVAILABLE, writes buffered logs and stops the
  // thread. Idempotent; the destructor calls it.
  void Shutdown();

  // ---- admin
  // INVALID_ARGUMENT for bad files (ValidateFiles), an empty destination type, a node_id that
  // disagrees with metadata["node_id"], max_attempts or timeout out of range.
  absl::StatusOr<Release> Create(NewRelease request);
  // Creates every release (each as Create would) and the provisioning record in one write; none
  // is created when one is refused. Fills provisioning.id, created_at and release_ids.
  absl::StatusOr<Provisioning> CreateProvisioning(Provisioning provisioning,
                                                  std::vector<NewRelease> releases);
  absl::StatusOr<Release> Get(const std::string& id);
  absl::StatusOr<std::vector<Release>> List(const ReleaseFilter& filter);
  absl::StatusOr<Provisioning> GetProvisioning(const std::string& id);
  // FAILED_PRECONDITION when the release has already ended.
  absl::StatusOr<Release> Cancel(const std::string& id, const std::string& by);
  // Sends the release as it is now, stored lines after `after_sequence`, then every change until
  // the release ends. Returns a handle for Unfollow. NOT_FOUND for an unknown release.
  absl::StatusOr<uint64_t> Follow(const std::string& id, int64_t after_sequence, FollowSink sink);
  void Unfollow(uint64_t handle);
  std::vector<RunnerView> Runners();
  ReleaseCounts Counts();

  // ---- runners (the RegisterRunner stream). `identity` is the verified certificate identity:
  // a node's agent (node:<id>) gets releases pinned to its node only; a runner identity gets
  // releases that are not pinned. INVALID_ARGUMENT for a bad runner id, no capabilities or
  // max_concurrent < 1; PERMISSION_DENIED for another role or a runner id connected under another
  // identity; RESOURCE_EXHAUSTED at max_runners. A node's runner id is its node id (empty is
  // taken as that; another id is INVALID_ARGUMENT), so no one can hold a node's id before it. A
  // runner id already connected under the same identity is taken over: the old connection is closed
  // and loses its releases.
  absl::StatusOr<RunnerSession> ConnectRunner(const common::Identity& identity, RunnerHello hello,
                                              std::shared_ptr<RunnerChannel> channel);
  // Keeps the runner from being dropped as silent.
  void Heartbeat(const RunnerSession& session, int active_releases);
  // accepted: ASSIGNED → RUNNING. Rejected: the release goes to another runner (not back to this
  // one for rejection_backoff) or fails when max_attempts is used up. UNAUTHENTICATED for a token
  // that is not one of this runner's live ones.
  absl::Status WorkAck(const RunnerSession& session, const std::string& token, bool accepted);
  // The stream ended: tokens revoked, releases requeued or failed.
  void DisconnectRunner(const RunnerSession& session, const std::string& reason);

  // ---- token-scoped calls. UNAUTHENTICATED when the token is malformed, unknown, expired or
  // revoked (its release ended, was cancelled or went to another runner). A first file fetch
  // or log line of an ASSIGNED release makes it RUNNING (stock Forest runners never WorkAck).
  absl::StatusOr<TokenScope> Authorize(const std::string& token);
  absl::StatusOr<std::vector<ReleaseFile>> Files(const std::string& token, FileKind kind);
  // Lines are buffered and written within log_flush_interval; followers see them at once.
  // INVALID_ARGUMENT for a channel other than "stdout"/"stderr" or an oversize line (nothing of
  // the batch is kept); RESOURCE_EXHAUSTED past kMaxLogLinesPerRelease.
  absl::Status AppendLogs(const std::string& token, std::vector<LogLine> lines);
  // Writes every buffered log line now.
  absl::Status FlushLogs();
  // SUCCEEDED or FAILED; stores plan_output (cut at 256 KiB) and the error (cut at 4 KiB); frees
  // the slot; revokes the token. INVALID_ARGUMENT for an outcome that is neither.
  enum class Outcome { kUnspecified, kSuccess, kFailure };
  absl::StatusOr<Release> Complete(const std::string& token, Outcome outcome,
                                   const std::string& error_message,
                                   std::optional<std::string> plan_output);

  // Drops silent runners, times out overdue releases (a token never outlives its release's
  // timeout), offers releases again whose rejection backoff ended, and writes buffered log lines;
  // the Start() thread calls it every second.
  void RunTimers();

 private:
  struct Runner;
  struct Live;
  struct Follower {
    std::string release_id;
    FollowSink sink;
  };
  using SteadyTime = std::chrono::steady_clock::time_point;

  ReleaseEngine(ReleaseStore& store, const common::Clock& clock, ReleaseOptions options);
  void Loop();

  // The helpers below require mu_.
  absl::Status CheckRunningLocked() const;
  absl::StatusOr<ReleaseWithFiles> BuildLocked(NewRelease request);
  // Writes `next` as the release's new state, then takes it into memory (the store first, so a
  // failed write leaves the release as it was) and tells its followers.
  absl::Status PersistLocked(Live& live, Release next);
  void NotifyLocked(Live& live);
  bool QualifiesLocked(const Runner& runner, const Live& live) const;
  Runner* ChooseRunnerLocked(const Live& live);
  // Turns `release` into an assignment to `runner`; returns the token to hand over.
  absl::StatusOr<std::string> PrepareAssignmentLocked(Release& release, const Runner& runner,
                                                      WallTime now);
  // Memory side of an assignment already written: token index, slot, deadline, channel.
  void CommitAssignmentLocked(Live& live, Runner& runner, const std::string& token);
  void TryDispatchLocked(Live& live);
  void DispatchQueuedLocked();
  // The release's runner is gone (disconnect, silence, rejection, restart): back to the queue
  // while attempts remain, FAILED otherwise.
  absl::Status LoseLocked(Live& live, const std::string& reason);
  // Ends the release: final state, token revoked, slot freed, followers ended, memory dropped.
  // `live` is destroyed when this returns OK.
  absl::StatusOr<Release> FinishLocked(Live& live, ReleaseState state, const std::string& reason,
                                       std::optional<std::string> plan_output);
  void RevokeLocked(Live& live);
  absl::StatusOr<Live*> LiveByTokenLocked(const std::string& token);
  absl::Status MarkRunningLocked(Live& live, const std::string& reason);
  void DropRunnerLocked(Runner& runner, const std::string& reason);
  absl::Status FlushLogsLocked();
  void EndFollowersLocked(Live& live, const absl::Status& status);

  ReleaseStore& store_;
  const common::Clock& clock_;
  const ReleaseOptions options_;

  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool started_ = false;
  std::thread thread_;
  // Releases that have not ended, by id; QUEUED ones also in queue_ in arrival order.
  std::unordered_map<std::string, std::unique_ptr<Live>> live_;
  std::map<uint64_t, std::string> queue_;
  uint64_t next_queue_order_ = 1;
  // SHA-256 of each live token → release id.
  std::unordered_map<std::string, std::string> tokens_;
  std::map<std::string, std::unique_ptr<Runner>> runners_;
  uint64_t next_session_ = 1;
  std::unordered_map<uint64_t, Follower> followers_;
  uint64_t next_follow_handle_ = 1;
  std::vector<std::pair<std::string, LogLine>> pending_logs_;
  SteadyTime last_log_flush_;
  std::map<ReleaseState, int64_t> finished_since_start_;
  int64_t assignments_since_start_ = 0;
};

}  // namespace pi::controlplane::release
