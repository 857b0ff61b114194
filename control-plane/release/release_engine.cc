#include "control-plane/release/release_engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "common/system/random.h"
#include "common/text/hex.h"
#include "common/text/utf8.h"
#include "common/tls/x509.h"
#include "spdlog/spdlog.h"

namespace pi::controlplane::release {
namespace {

constexpr size_t kReleaseIdBytes = 8;
constexpr size_t kTokenBytes = 32;
constexpr size_t kRunnerIdMaxLength = 128;
constexpr int kMaxConcurrentLimit = 1000;
// A runner's error message and plan output are cut to these sizes: they are stored with the
// release, repeated in its history and sent with every listing of it.
constexpr size_t kMaxErrorMessageBytes = 4 * 1024;
constexpr size_t kMaxPlanOutputBytes = 256 * 1024;
// Stored lines are sent to a new follower in pages of this many.
constexpr int kFollowPage = 5000;

absl::Status CheckRunnerId(const std::string& id) {
  const auto allowed = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-' || c == ':' || c == '@';
  };
  if (id.empty() || id.size() > kRunnerIdMaxLength || !std::all_of(id.begin(), id.end(), allowed) ||
      !std::isalnum(static_cast<unsigned char>(id.front()))) {
    return absl::InvalidArgumentError(fmt::format(
        "runner id \"{}\" is invalid: 1-{} characters of [A-Za-z0-9._:@-], starting with a letter "
        "or digit",
        id, kRunnerIdMaxLength));
  }
  return absl::OkStatus();
}

absl::Status CheckCapabilities(const std::vector<DestinationType>& capabilities) {
  if (capabilities.empty()) {
    return absl::InvalidArgumentError("a runner must advertise at least one capability");
  }
  for (const DestinationType& type : capabilities) {
    if (type.organisation.empty() || type.name.empty()) {
      return absl::InvalidArgumentError(fmt::format(
          "capability \"{}\" needs an organisation and a name", DestinationTypeText(type)));
    }
  }
  return absl::OkStatus();
}

Transition MakeTransition(ReleaseState state, WallTime at, std::string reason,
                          std::string runner_id) {
  Transition transition;
  transition.state = state;
  transition.at = at;
  transition.reason = std::move(reason);
  transition.runner_id = std::move(runner_id);
  return transition;
}

void AddTransition(Release& release, ReleaseState state, WallTime now, std::string reason) {
  release.state = state;
  release.updated_at = now;
  release.history.push_back(MakeTransition(state, now, std::move(reason), release.runner_id));
}

std::string Capped(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  constexpr std::string_view kMarker = "\n… (cut: the runner sent more than the controller keeps)";
  return std::string(common::Utf8Prefix(text, max_bytes - kMarker.size())) + std::string(kMarker);
}

absl::Status Unauthenticated(std::string_view why) {
  return absl::UnauthenticatedError(fmt::format("release token {}", why));
}

}  // namespace

struct ReleaseEngine::Runner {
  std::string id;
  uint64_t session = 0;
  common::Identity identity;
  std::string node_id;
  std::vector<DestinationType> capabilities;
  int max_concurrent = 1;
  std::set<std::string> releases;
  std::shared_ptr<RunnerChannel> channel;
  WallTime connected_at;
  WallTime last_heartbeat;
  SteadyTime last_seen;

  int FreeSlots() const { return max_concurrent - static_cast<int>(releases.size()); }
};

struct ReleaseEngine::Live {
  Release release;
  uint64_t queue_order = 0;  // key in queue_ while QUEUED
  // Runners that turned the release down, and until when they are not offered it again.
  std::map<std::string, SteadyTime> rejected_until;
  std::optional<SteadyTime> deadline;  // ASSIGNED/RUNNING: TIMED_OUT after this
  std::set<uint64_t> followers;
};

ReleaseEngine::ReleaseEngine(ReleaseStore& store, const common::Clock& clock,
                             ReleaseOptions options)
    : store_(store), clock_(clock), options_(options), last_log_flush_(clock.Now()) {}

absl::StatusOr<std::unique_ptr<ReleaseEngine>> ReleaseEngine::Open(ReleaseStore& store,
                                                                   const common::Clock& clock,
                                                                   ReleaseOptions options) {
  absl::StatusOr<std::vector<Release>> unfinished = store.LoadUnfinished();
  if (!unfinished.ok()) return unfinished.status();
  std::unique_ptr<ReleaseEngine> engine(new ReleaseEngine(store, clock, options));
  std::lock_guard lock(engine->mu_);
  for (Release& release : *unfinished) {
    auto live = std::make_unique<Live>();
    live->release = std::move(release);
    Live& ref = *live;
    const std::string id = ref.release.id;
    engine->live_.emplace(id, std::move(live));
    if (ref.release.state == ReleaseState::kQueued) {
      ref.queue_order = engine->next_queue_order_++;
      engine->queue_.emplace(ref.queue_order, id);
      continue;
    }
    // Its runner's stream ended with the old process; the token died with it.
    const std::string reason = fmt::format(
        "pi-controller restarted while runner {} had the release", ref.release.runner_id);
    if (absl::Status status = engine->LoseLocked(ref, reason); !status.ok()) return status;
  }
  return engine;
}

ReleaseEngine::~ReleaseEngine() { Shutdown(); }

void ReleaseEngine::Start() {
  std::lock_guard lock(mu_);
  if (started_ || stopping_) return;
  started_ = true;
  thread_ = std::thread([this] { Loop(); });
}

void ReleaseEngine::Loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    const auto wait =
        std::min<std::chrono::nanoseconds>(options_.log_flush_interval, std::chrono::seconds(1));
    wake_.wait_for(lock, wait);
    if (stopping_) break;
    lock.unlock();
    RunTimers();
    lock.lock();
  }
}

void ReleaseEngine::Shutdown() {
  std::thread thread;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    if (absl::Status status = FlushLogsLocked(); !status.ok()) {
      spdlog::error("releases: cannot write buffered log lines at shutdown: {}",
                    std::string(status.message()));
    }
    stopping_ = true;
    const absl::Status closing = absl::UnavailableError("pi-controller is shutting down");
    for (auto& [id, runner] : runners_) runner->channel->Close(closing);
    runners_.clear();
    for (auto& [handle, follower] : followers_) follower.sink.on_end(closing);
    followers_.clear();
    thread = std::move(thread_);
  }
  wake_.notify_all();
  if (thread.joinable()) thread.join();
}

absl::Status ReleaseEngine::CheckRunningLocked() const {
  if (stopping_) return absl::UnavailableError("pi-controller is shutting down");
  return absl::OkStatus();
}

// ---- admin ---------------------------------------------------------------------------------

absl::StatusOr<ReleaseWithFiles> ReleaseEngine::BuildLocked(NewRelease request) {
  if (absl::Status status = ValidateFiles(request.artifact_files, request.spec_files);
      !status.ok()) {
    return status;
  }
  if (request.type.organisation.empty() || request.type.name.empty()) {
    return absl::InvalidArgumentError(
        "a release needs a destination type with an organisation and a name");
  }
  const std::string key(kNodeIdMetadataKey);
  if (auto pinned = request.metadata.find(key); pinned != request.metadata.end()) {
    if (!request.node_id.empty() && pinned->second != request.node_id) {
      return absl::InvalidArgumentError(
          fmt::format("node_id \"{}\" disagrees with destination metadata node_id \"{}\"",
                      request.node_id, pinned->second));
    }
    request.node_id = pinned->second;
  }
  if (!request.node_id.empty()) request.metadata[key] = request.node_id;
  if (request.max_attempts < 0 || request.max_attempts > options_.max_max_attempts) {
    return absl::InvalidArgumentError(fmt::format("max_attempts must be 1..{} (0 = default {})",
                                                  options_.max_max_attempts,
                                                  options_.default_max_attempts));
  }
  if (request.timeout < std::chrono::seconds(0) || request.timeout > options_.token_ttl) {
    return absl::InvalidArgumentError(
        fmt::format("timeout must be at most {}s, the lifetime of a release token (0 = default "
                    "{}s)",
                    options_.token_ttl.count(), options_.default_timeout.count()));
  }
  absl::StatusOr<std::string> id = common::RandomHex(kReleaseIdBytes);
  if (!id.ok()) return id.status();
  const WallTime now = clock_.WallNow();

  ReleaseWithFiles built;
  Release& release = built.release;
  release.id = *id;
  release.plan = request.plan;
  release.type = std::move(request.type);
  release.destination_name = std::move(request.destination_name);
  release.environment = std::move(request.environment);
  release.metadata = std::move(request.metadata);
  release.node_id = std::move(request.node_id);
  release.max_attempts =
      request.max_attempts == 0 ? options_.default_max_attempts : request.max_attempts;
  release.timeout = request.timeout == std::chrono::seconds(0)
                        ? std::min(options_.default_timeout, options_.token_ttl)
                        : request.timeout;
  release.created_at = now;
  release.provisioning_id = std::move(request.provisioning_id);
  for (const ReleaseFile& file : request.artifact_files) {
    release.artifact_file_names.push_back(file.name);
  }
  for (const ReleaseFile& file : request.spec_files) release.spec_file_names.push_back(file.name);
  release.annotation = std::move(request.annotation);
  release.project_organisation = std::move(request.project_organisation);
  release.project = std::move(request.project);
  release.created_by = std::move(request.created_by);
  AddTransition(release, ReleaseState::kQueued, now,
                release.created_by.empty() ? "created" : "created by " + release.created_by);
  built.artifact_files = std::move(request.artifact_files);
  built.spec_files = std::move(request.spec_files);
  return built;
}

absl::StatusOr<Release> ReleaseEngine::Create(NewRelease request) {
  std::lock_guard lock(mu_);
  if (absl::Status status = CheckRunningLocked(); !status.ok()) return status;
  absl::StatusOr<ReleaseWithFiles> built = BuildLocked(std::move(request));
  if (!built.ok()) return built.status();

  // A runner free now gets the release in the same write that creates it: one fsync between
  // the admin's call and the runner's assignment.
  auto live = std::make_unique<Live>();
  live->release = built->release;
  Runner* runner = ChooseRunnerLocked(*live);
  std::string token;
  if (runner != nullptr) {
    absl::StatusOr<std::string> minted =
        PrepareAssignmentLocked(built->release, *runner, built->release.created_at);
    if (!minted.ok()) return minted.status();
    token = *std::move(minted);
  }
  if (absl::Status status = store_.Insert({&*built, 1}, nullptr); !status.ok()) return status;

  live->release = built->release;
  Live& ref = *live;
  live_.emplace(ref.release.id, std::move(live));
  if (runner != nullptr) {
    CommitAssignmentLocked(ref, *runner, token);
  } else {
    ref.queue_order = next_queue_order_++;
    queue_.emplace(ref.queue_order, ref.release.id);
  }
  return ref.release;
}

absl::StatusOr<Provisioning> ReleaseEngine::CreateProvisioning(Provisioning provisioning,
                                                               std::vector<NewRelease> releases) {
  std::lock_guard lock(mu_);
  if (absl::Status status = CheckRunningLocked(); !status.ok()) return status;
  if (releases.empty()) {
    return absl::InvalidArgumentError("a provisioning request needs at least one release");
  }
  absl::StatusOr<std::string> id = common::RandomHex(kReleaseIdBytes);
  if (!id.ok()) return id.status();
  provisioning.id = "p" + *id;
  provisioning.created_at = clock_.WallNow();
  provisioning.release_ids.clear();
  std::vector<ReleaseWithFiles> built;
  built.reserve(releases.size());
  for (NewRelease& request : releases) {
    request.provisioning_id = provisioning.id;
    request.created_by = provisioning.created_by;
    absl::StatusOr<ReleaseWithFiles> one = BuildLocked(std::move(request));
    if (!one.ok()) return one.status();
    provisioning.release_ids.push_back(one->release.id);
    built.push_back(*std::move(one));
  }
  if (absl::Status status = store_.Insert(built, &provisioning); !status.ok()) return status;
  for (ReleaseWithFiles& one : built) {
    auto live = std::make_unique<Live>();
    live->release = std::move(one.release);
    live->queue_order = next_queue_order_++;
    queue_.emplace(live->queue_order, live->release.id);
    live_.emplace(live->release.id, std::move(live));
  }
  DispatchQueuedLocked();
  return provisioning;
}

absl::StatusOr<Release> ReleaseEngine::Get(const std::string& id) {
  std::lock_guard lock(mu_);
  if (auto found = live_.find(id); found != live_.end()) return found->second->release;
  return store_.Get(id);
}

absl::StatusOr<std::vector<Release>> ReleaseEngine::List(const ReleaseFilter& filter) {
  std::lock_guard lock(mu_);
  // The store has every release; unfinished ones are written on each change, so it is current
  // except for log counts still buffered.
  if (absl::Status status = FlushLogsLocked(); !status.ok()) return status;
  return store_.List(filter);
}

absl::StatusOr<Provisioning> ReleaseEngine::GetProvisioning(const std::string& id) {
  std::lock_guard lock(mu_);
  return store_.GetProvisioning(id);
}

absl::StatusOr<Release> ReleaseEngine::Cancel(const std::string& id, const std::string& by) {
  std::lock_guard lock(mu_);
  if (absl::Status status = CheckRunningLocked(); !status.ok()) return status;
  auto found = live_.find(id);
  if (found == live_.end()) {
    absl::StatusOr<Release> stored = store_.Get(id);
    if (!stored.ok()) return stored.status();
    return absl::FailedPreconditionError(
        fmt::format("release {} has already ended ({})", id, StateName(stored->state)));
  }
  return FinishLocked(*found->second, ReleaseState::kCancelled,
                      by.empty() ? "cancelled" : "cancelled by " + by, std::nullopt);
}

absl::StatusOr<uint64_t> ReleaseEngine::Follow(const std::string& id, int64_t after_sequence,
                                               FollowSink sink) {
  std::lock_guard lock(mu_);
  if (absl::Status status = CheckRunningLocked(); !status.ok()) return status;
  if (after_sequence < 0) {
    return absl::InvalidArgumentError("after_sequence must not be negative");
  }
  if (absl::Status status = FlushLogsLocked(); !status.ok()) return status;
  auto found = live_.find(id);
  Release release;
  if (found != live_.end()) {
    release = found->second->release;
  } else {
    absl::StatusOr<Release> stored = store_.Get(id);
    if (!stored.ok()) return stored.status();
    release = *std::move(stored);
  }
  ReleaseEvent first;
  first.release = release;
  sink.on_event(first);
  int64_t after = after_sequence;
  while (true) {
    absl::StatusOr<std::vector<LogLine>> page = store_.Logs(id, after, kFollowPage);
    if (!page.ok()) return page.status();
    for (LogLine& line : *page) {
      after = line.sequence;
      ReleaseEvent event;
      event.log = std::move(line);
      sink.on_event(event);
    }
    if (page->size() < static_cast<size_t>(kFollowPage)) break;
  }
  if (found == live_.end()) {
    sink.on_end(absl::OkStatus());
    return uint64_t{0};
  }
  const uint64_t handle = next_follow_handle_++;
  found->second->followers.insert(handle);
  followers_.emplace(handle, Follower{id, std::move(sink)});
  return handle;
}

void ReleaseEngine::Unfollow(uint64_t handle) {
  std::lock_guard lock(mu_);
  auto found = followers_.find(handle);
  if (found == followers_.end()) return;
  if (auto live = live_.find(found->second.release_id); live != live_.end()) {
    live->second->followers.erase(handle);
  }
  followers_.erase(found);
}

std::vector<RunnerView> ReleaseEngine::Runners() {
  std::lock_guard lock(mu_);
  std::vector<RunnerView> views;
  for (const auto& [id, runner] : runners_) {
    RunnerView view;
    view.runner_id = id;
    view.identity = runner->identity.ToString();
    view.node_id = runner->node_id;
    view.capabilities = runner->capabilities;
    view.max_concurrent = runner->max_concurrent;
    view.active = static_cast<int>(runner->releases.size());
    view.connected_at = runner->connected_at;
    view.last_heartbeat = runner->last_heartbeat;
    view.release_ids.assign(runner->releases.begin(), runner->releases.end());
    views.push_back(std::move(view));
  }
  return views;
}

ReleaseCounts ReleaseEngine::Counts() {
  std::lock_guard lock(mu_);
  ReleaseCounts counts;
  for (ReleaseState state :
       {ReleaseState::kQueued, ReleaseState::kAssigned, ReleaseState::kRunning}) {
    counts.unfinished[state] = 0;
  }
  for (const auto& [id, live] : live_) ++counts.unfinished[live->release.state];
  counts.finished_since_start = finished_since_start_;
  counts.runners = static_cast<int64_t>(runners_.size());
  counts.assignments_since_start = assignments_since_start_;
  return counts;
}

// ---- runners -------------------------------------------------------------------------------

absl::StatusOr<RunnerSession> ReleaseEngine::ConnectRunner(const common::Identity& identity,
                                                           RunnerHello hello,
                                                           std::shared_ptr<RunnerChannel> channel) {
  if (absl::Status status = common::RequireRole(
          identity, {common::Role::kRunner, common::Role::kNode}, "register as a runner");
      !status.ok()) {
    return status;
  }
  if (absl::Status status = CheckCapabilities(hello.capabilities); !status.ok()) return status;
  if (hello.max_concurrent < 1 || hello.max_concurrent > kMaxConcurrentLimit) {
    return absl::InvalidArgumentError(fmt::format("max_concurrent must be 1..{}, not {}",
                                                  kMaxConcurrentLimit, hello.max_concurrent));
  }
  std::lock_guard lock(mu_);
  if (absl::Status status = CheckRunningLocked(); !status.ok()) return status;
  if (identity.role == common::Role::kNode) {
    if (!hello.runner_id.empty() && hello.runner_id != identity.name) {
      return absl::InvalidArgumentError(
          fmt::format("node {} must register with runner id \"{}\" (or none), not \"{}\"",
                      identity.name, identity.name, hello.runner_id));
    }
    hello.runner_id = identity.name;
  } else if (hello.runner_id.empty()) {
    absl::StatusOr<std::string> suffix = common::RandomHex(4);
    if (!suffix.ok()) return suffix.status();
    hello.runner_id = fmt::format("{}-{}", identity.name, *suffix);
  }
  if (absl::Status status = CheckRunnerId(hello.runner_id); !status.ok()) return status;
  if (auto existing = runners_.find(hello.runner_id); existing != runners_.end()) {
    if (!(existing->second->identity == identity)) {
      return absl::PermissionDeniedError(
          fmt::format("runner id {} is connected as {}; {} cannot take it over", hello.runner_id,
                      existing->second->identity.ToString(), identity.ToString()));
    }
    // The same runner reconnected before its old stream was noticed as gone.
    existing->second->channel->Close(
        absl::AbortedError("replaced by a newer connection of the same runner"));
    DropRunnerLocked(
        *existing->second,
        fmt::format("runner {} reconnected; its old connection was dropped", hello.runner_id));
  } else if (static_cast<int>(runners_.size()) >= options_.max_runners) {
    return absl::ResourceExhaustedError(fmt::format(
        "{} runners are connected, the most this controller accepts", options_.max_runners));
  }
  auto runner = std::make_unique<Runner>();
  runner->id = hello.runner_id;
  runner->session = next_session_++;
  runner->identity = identity;
  if (identity.role == common::Role::kNode) runner->node_id = identity.name;
  runner->capabilities = std::move(hello.capabilities);
  runner->max_concurrent = hello.max_concurrent;
  runner->channel = std::move(channel);
  runner->connected_at = clock_.WallNow();
  runner->last_heartbeat = runner->connected_at;
  runner->last_seen = clock_.Now();
  RunnerSession session{runner->id, runner->session};
  runners_.emplace(runner->id, std::move(runner));
  DispatchQueuedLocked();
  return session;
}

void ReleaseEngine::Heartbeat(const RunnerSession& session, int active_releases) {
  std::lock_guard lock(mu_);
  auto found = runners_.find(session.runner_id);
  if (found == runners_.end() || found->second->session != session.session) return;
  Runner& runner = *found->second;
  runner.last_seen = clock_.Now();
  runner.last_heartbeat = clock_.WallNow();
  if (active_releases != static_cast<int>(runner.releases.size())) {
    spdlog::debug("runner {} reports {} active releases, the controller counts {}", runner.id,
                  active_releases, runner.releases.size());
  }
}

absl::Status ReleaseEngine::WorkAck(const RunnerSession& session, const std::string& token,
                                    bool accepted) {
  std::lock_guard lock(mu_);
  if (absl::Status status = CheckRunningLocked(); !status.ok()) return status;
  absl::StatusOr<Live*> live = LiveByTokenLocked(token);
  if (!live.ok()) return live.status();
  Live& ref = **live;
  auto runner = runners_.find(session.runner_id);
  if (ref.release.runner_id != session.runner_id || runner == runners_.end() ||
      runner->second->session != session.session) {
    return Unauthenticated("belongs to another runner");
  }
  if (accepted) {
    if (ref.release.state != ReleaseState::kAssigned) return absl::OkStatus();
    return MarkRunningLocked(ref, "runner accepted the work");
  }
  ref.rejected_until[session.runner_id] = clock_.Now() + options_.rejection_backoff;
  return LoseLocked(ref, fmt::format("runner {} rejected the work", session.runner_id));
}

void ReleaseEngine::DisconnectRunner(const RunnerSession& session, const std::string& reason) {
  std::lock_guard lock(mu_);
  if (stopping_) return;  // releases are settled when the controller starts again
  auto found = runners_.find(session.runner_id);
  if (found == runners_.end() || found->second->session != session.session) return;
  DropRunnerLocked(*found->second,
                   fmt::format("runner {} disconnected ({})", session.runner_id, reason));
}

void ReleaseEngine::DropRunnerLocked(Runner& runner, const std::string& reason) {
  const std::set<std::string> releases = runner.releases;
  const std::string id = runner.id;
  runners_.erase(id);  // destroys `runner`
  for (const std::string& release_id : releases) {
    auto live = live_.find(release_id);
    if (live == live_.end()) continue;
    if (absl::Status status = LoseLocked(*live->second, reason); !status.ok()) {
      spdlog::error("releases: cannot record that release {} lost its runner: {}", release_id,
                    std::string(status.message()));
    }
  }
}

// ---- token-scoped --------------------------------------------------------------------------

absl::StatusOr<ReleaseEngine::Live*> ReleaseEngine::LiveByTokenLocked(const std::string& token) {
  if (token.empty()) return Unauthenticated("is missing");
  if (token.size() != kTokenBytes * 2 || !common::IsLowerHex(token)) {
    return Unauthenticated("is malformed: expected 64 lowercase hex characters");
  }
  auto owner = tokens_.find(common::Sha256Hex(token));
  if (owner == tokens_.end()) {
    return Unauthenticated("is unknown, revoked, or its release has ended");
  }
  auto live = live_.find(owner->second);
  if (live == live_.end()) return Unauthenticated("is unknown, revoked, or its release has ended");
  const Release& release = live->second->release;
  if (release.token_expires_at && clock_.WallNow() >= *release.token_expires_at) {
    return Unauthenticated("has expired");
  }
  return live->second.get();
}

absl::StatusOr<TokenScope> ReleaseEngine::Authorize(const std::string& token) {
  std::lock_guard lock(mu_);
  if (absl::Status status = CheckRunningLocked(); !status.ok()) return status;
  absl::StatusOr<Live*> live = LiveByTokenLocked(token);
  if (!live.ok()) return live.status();
  TokenScope scope;
  scope.release = (*live)->release;
  if (auto runner = runners_.find(scope.release.runner_id); runner != runners_.end()) {
    scope.holder = runner->second->identity.ToString();
  }
  return scope;
}

absl::StatusOr<std::vector<ReleaseFile>> ReleaseEngine::Files(const std::string& token,
                                                              FileKind kind) {
  std::lock_guard lock(mu_);
  if (absl::Status status = CheckRunningLocked(); !status.ok()) return status;
  absl::StatusOr<Live*> live = LiveByTokenLocked(token);
  if (!live.ok()) return live.status();
  if ((*live)->release.state == ReleaseState::kAssigned) {
    if (absl::Status status = MarkRunningLocked(**live, "runner fetched the release's files");
        !status.ok()) {
      return status;
    }
  }
  return store_.Files((*live)->release.id, kind);
}

absl::Status ReleaseEngine::AppendLogs(const std::string& token, std::vector<LogLine> lines) {
  std::lock_guard lock(mu_);
  if (absl::Status status = CheckRunningLocked(); !status.ok()) return status;
  absl::StatusOr<Live*> found = LiveByTokenLocked(token);
  if (!found.ok()) return found.status();
  Live& live = **found;
  for (const LogLine& line : lines) {
    if (line.channel != "stdout" && line.channel != "stderr") {
      return absl::InvalidArgumentError(
          fmt::format("log channel must be \"stdout\" or \"stderr\", not \"{}\"", line.channel));
    }
    if (line.line.size() > kMaxLogLineBytes) {
      return absl::InvalidArgumentError(
          fmt::format("a log line has {} bytes; at most {}", line.line.size(), kMaxLogLineBytes));
    }
  }
  if (live.release.log_lines + static_cast<int64_t>(lines.size()) > kMaxLogLinesPerRelease) {
    return absl::ResourceExhaustedError(
        fmt::format("release {} has reached {} log lines, the most one release keeps",
                    live.release.id, kMaxLogLinesPerRelease));
  }
  if (lines.empty()) return absl::OkStatus();
  if (live.release.state == ReleaseState::kAssigned) {
    if (absl::Status status = MarkRunningLocked(live, "runner sent its first log line");
        !status.ok()) {
      return status;
    }
  }
  for (LogLine& line : lines) {
    line.sequence = ++live.release.log_lines;
    for (uint64_t handle : live.followers) {
      ReleaseEvent event;
      event.log = line;
      followers_.at(handle).sink.on_event(event);
    }
    pending_logs_.emplace_back(live.release.id, std::move(line));
  }
  if (pending_logs_.size() >= options_.log_flush_lines) return FlushLogsLocked();
  return absl::OkStatus();
}

absl::Status ReleaseEngine::FlushLogs() {
  std::lock_guard lock(mu_);
  return FlushLogsLocked();
}

absl::Status ReleaseEngine::FlushLogsLocked() {
  last_log_flush_ = clock_.Now();
  if (pending_logs_.empty()) return absl::OkStatus();
  if (absl::Status status = store_.AppendLogs(pending_logs_); !status.ok()) {
    // Kept for the next flush: the lines were already shown to followers and counted.
    return status;
  }
  pending_logs_.clear();
  return absl::OkStatus();
}

absl::StatusOr<Release> ReleaseEngine::Complete(const std::string& token, Outcome outcome,
                                                const std::string& error_message,
                                                std::optional<std::string> plan_output) {
  if (outcome != Outcome::kSuccess && outcome != Outcome::kFailure) {
    return absl::InvalidArgumentError("outcome must be SUCCESS or FAILURE");
  }
  std::lock_guard lock(mu_);
  if (absl::Status status = CheckRunningLocked(); !status.ok()) return status;
  absl::StatusOr<Live*> live = LiveByTokenLocked(token);
  if (!live.ok()) return live.status();
  if (absl::Status status = FlushLogsLocked(); !status.ok()) return status;
  if (plan_output) plan_output = Capped(*plan_output, kMaxPlanOutputBytes);
  if (outcome == Outcome::kSuccess) {
    return FinishLocked(**live, ReleaseState::kSucceeded, "runner reported success",
                        std::move(plan_output));
  }
  return FinishLocked(**live, ReleaseState::kFailed,
                      error_message.empty() ? "runner reported failure"
                                            : Capped(error_message, kMaxErrorMessageBytes),
                      std::move(plan_output));
}

// ---- state changes -------------------------------------------------------------------------

absl::Status ReleaseEngine::PersistLocked(Live& live, Release next) {
  if (absl::Status status = store_.Update(next); !status.ok()) return status;
  live.release = std::move(next);
  NotifyLocked(live);
  return absl::OkStatus();
}

void ReleaseEngine::NotifyLocked(Live& live) {
  for (uint64_t handle : live.followers) {
    ReleaseEvent event;
    event.release = live.release;
    followers_.at(handle).sink.on_event(event);
  }
}

absl::Status ReleaseEngine::MarkRunningLocked(Live& live, const std::string& reason) {
  Release next = live.release;
  AddTransition(next, ReleaseState::kRunning, clock_.WallNow(), reason);
  return PersistLocked(live, std::move(next));
}

bool ReleaseEngine::QualifiesLocked(const Runner& runner, const Live& live) const {
  const Release& release = live.release;
  if (runner.FreeSlots() <= 0) return false;
  // A node's agent runs what is pinned to its node; other runners run what is not pinned.
  if (runner.node_id != release.node_id) return false;
  if (auto rejected = live.rejected_until.find(runner.id);
      rejected != live.rejected_until.end() && clock_.Now() < rejected->second) {
    return false;
  }
  return std::find(runner.capabilities.begin(), runner.capabilities.end(), release.type) !=
         runner.capabilities.end();
}

ReleaseEngine::Runner* ReleaseEngine::ChooseRunnerLocked(const Live& live) {
  Runner* best = nullptr;
  for (auto& [id, runner] : runners_) {
    if (!QualifiesLocked(*runner, live)) continue;
    if (best == nullptr || runner->FreeSlots() > best->FreeSlots()) best = runner.get();
  }
  return best;
}

absl::StatusOr<std::string> ReleaseEngine::PrepareAssignmentLocked(Release& release,
                                                                   const Runner& runner,
                                                                   WallTime now) {
  absl::StatusOr<std::string> token = common::RandomHex(kTokenBytes);
  if (!token.ok()) return token.status();
  release.runner_id = runner.id;
  ++release.attempts;
  release.token_sha256 = common::Sha256Hex(*token);
  release.token_expires_at = now + options_.token_ttl;
  AddTransition(release, ReleaseState::kAssigned, now,
                fmt::format("assigned to runner {} (attempt {} of {})", runner.id, release.attempts,
                            release.max_attempts));
  return token;
}

void ReleaseEngine::CommitAssignmentLocked(Live& live, Runner& runner, const std::string& token) {
  if (live.queue_order != 0) {
    queue_.erase(live.queue_order);
    live.queue_order = 0;
  }
  tokens_[live.release.token_sha256] = live.release.id;
  runner.releases.insert(live.release.id);
  live.deadline = clock_.Now() + live.release.timeout;
  ++assignments_since_start_;
  runner.channel->Assign(Assignment{token, live.release});
}

void ReleaseEngine::TryDispatchLocked(Live& live) {
  Runner* runner = ChooseRunnerLocked(live);
  if (runner == nullptr) return;
  Release next = live.release;
  absl::StatusOr<std::string> token = PrepareAssignmentLocked(next, *runner, clock_.WallNow());
  absl::Status status = token.status();
  if (status.ok()) status = PersistLocked(live, std::move(next));
  if (!status.ok()) {
    spdlog::error("releases: cannot assign release {} to runner {}: {}", live.release.id,
                  runner->id, std::string(status.message()));
    return;
  }
  CommitAssignmentLocked(live, *runner, *token);
}

void ReleaseEngine::DispatchQueuedLocked() {
  std::vector<std::string> order;
  order.reserve(queue_.size());
  for (const auto& [key, id] : queue_) order.push_back(id);
  for (const std::string& id : order) {
    const bool any_free = std::any_of(runners_.begin(), runners_.end(), [](const auto& entry) {
      return entry.second->FreeSlots() > 0;
    });
    if (!any_free) return;
    auto live = live_.find(id);
    if (live != live_.end() && live->second->release.state == ReleaseState::kQueued) {
      TryDispatchLocked(*live->second);
    }
  }
}

void ReleaseEngine::RevokeLocked(Live& live) {
  if (!live.release.token_sha256.empty()) tokens_.erase(live.release.token_sha256);
  if (auto runner = runners_.find(live.release.runner_id); runner != runners_.end()) {
    runner->second->releases.erase(live.release.id);
  }
  live.deadline.reset();
}

absl::Status ReleaseEngine::LoseLocked(Live& live, const std::string& reason) {
  if (live.release.attempts >= live.release.max_attempts) {
    absl::StatusOr<Release> failed = FinishLocked(
        live, ReleaseState::kFailed,
        fmt::format("{}; all {} attempts used", reason, live.release.max_attempts), std::nullopt);
    return failed.status();
  }
  Release next = live.release;
  next.token_sha256.clear();
  next.token_expires_at.reset();
  AddTransition(next, ReleaseState::kQueued, clock_.WallNow(), reason);
  const std::string previous_runner = live.release.runner_id;
  if (absl::Status status = store_.Update(next); !status.ok()) {
    // The runner is gone either way: its token dies now. The release keeps its deadline, so the
    // timeout settles it if the store recovers.
    tokens_.erase(live.release.token_sha256);
    if (auto runner = runners_.find(previous_runner); runner != runners_.end()) {
      runner->second->releases.erase(live.release.id);
    }
    return status;
  }
  RevokeLocked(live);
  live.release = std::move(next);
  live.queue_order = next_queue_order_++;
  queue_.emplace(live.queue_order, live.release.id);
  NotifyLocked(live);
  TryDispatchLocked(live);
  // The slot the release held is free for others.
  if (runners_.contains(previous_runner)) DispatchQueuedLocked();
  return absl::OkStatus();
}

absl::StatusOr<Release> ReleaseEngine::FinishLocked(Live& live, ReleaseState state,
                                                    const std::string& reason,
                                                    std::optional<std::string> plan_output) {
  const WallTime now = clock_.WallNow();
  Release next = live.release;
  next.token_sha256.clear();
  next.token_expires_at.reset();
  next.finished_at = now;
  if (state != ReleaseState::kSucceeded) next.error_message = reason;
  if (plan_output) next.plan_output = std::move(plan_output);
  AddTransition(next, state, now, reason);
  if (absl::Status status = store_.Update(next); !status.ok()) return status;

  const std::string previous_runner = live.release.runner_id;
  RevokeLocked(live);
  if (live.queue_order != 0) queue_.erase(live.queue_order);
  live.release = std::move(next);
  NotifyLocked(live);
  EndFollowersLocked(live, absl::OkStatus());
  ++finished_since_start_[state];
  Release finished = live.release;
  live_.erase(finished.id);  // destroys `live`
  if (runners_.contains(previous_runner)) DispatchQueuedLocked();
  return finished;
}

void ReleaseEngine::EndFollowersLocked(Live& live, const absl::Status& status) {
  for (uint64_t handle : live.followers) {
    auto follower = followers_.find(handle);
    if (follower == followers_.end()) continue;
    follower->second.sink.on_end(status);
    followers_.erase(follower);
  }
  live.followers.clear();
}

// ---- timers --------------------------------------------------------------------------------

void ReleaseEngine::RunTimers() {
  std::lock_guard lock(mu_);
  if (stopping_) return;
  const SteadyTime now = clock_.Now();
  std::vector<std::string> silent;
  for (const auto& [id, runner] : runners_) {
    if (now - runner->last_seen >= options_.runner_silence_limit) silent.push_back(id);
  }
  for (const std::string& id : silent) {
    auto runner = runners_.find(id);
    const std::string reason = fmt::format("runner {} sent no heartbeat for {}s", id,
                                           options_.runner_silence_limit.count());
    runner->second->channel->Close(absl::UnavailableError(reason));
    DropRunnerLocked(*runner->second, reason);
  }
  std::vector<std::string> overdue;
  for (const auto& [id, live] : live_) {
    if (live->deadline && now >= *live->deadline) overdue.push_back(id);
  }
  for (const std::string& id : overdue) {
    auto live = live_.find(id);
    if (live == live_.end()) continue;
    const std::string reason = fmt::format("did not finish within {}s of being assigned",
                                           live->second->release.timeout.count());
    if (absl::StatusOr<Release> ended =
            FinishLocked(*live->second, ReleaseState::kTimedOut, reason, std::nullopt);
        !ended.ok()) {
      spdlog::error("releases: cannot time out release {}: {}", id,
                    std::string(ended.status().message()));
    }
  }
  // Releases whose rejection backoff ended may go back to the runners that refused them.
  if (!queue_.empty()) DispatchQueuedLocked();
  if (now - last_log_flush_ >= options_.log_flush_interval) {
    if (absl::Status status = FlushLogsLocked(); !status.ok()) {
      spdlog::error("releases: cannot write log lines: {}", std::string(status.message()));
    }
  }
}

}  // namespace pi::controlplane::release
