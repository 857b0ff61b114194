#include "control-plane/release/release_engine.h"

#include <catch2/catch.hpp>
#include <mutex>

#include "common/system/clock.h"
#include "common/tls/x509.h"
#include "control-plane/release/sqlite_release_store.h"
#include "tests/common/test_dir.h"

namespace pi::controlplane::release {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

// Records what the engine sends a runner, as the gRPC adapter would queue it.
class RecordingChannel : public RunnerChannel {
 public:
  void Assign(const Assignment& assignment) override {
    std::lock_guard lock(mu_);
    assignments_.push_back(assignment);
  }
  void Close(const absl::Status& status) override {
    std::lock_guard lock(mu_);
    closed_ = status;
  }
  std::vector<Assignment> assignments() {
    std::lock_guard lock(mu_);
    return assignments_;
  }
  std::optional<absl::Status> closed() {
    std::lock_guard lock(mu_);
    return closed_;
  }
  const Assignment& Last() {
    std::lock_guard lock(mu_);
    REQUIRE(!assignments_.empty());
    return assignments_.back();
  }

 private:
  std::mutex mu_;
  std::vector<Assignment> assignments_;
  std::optional<absl::Status> closed_;
};

const DestinationType kDeploy{"acme", "deploy", 1};

common::Identity RunnerIdentity(std::string name) {
  return common::Identity{common::Role::kRunner, std::move(name)};
}
common::Identity NodeIdentity(std::string name) {
  return common::Identity{common::Role::kNode, std::move(name)};
}

RunnerHello Hello(std::string id, int max_concurrent = 1,
                  std::vector<DestinationType> capabilities = {kDeploy}) {
  RunnerHello hello;
  hello.runner_id = std::move(id);
  hello.max_concurrent = max_concurrent;
  hello.capabilities = std::move(capabilities);
  return hello;
}

NewRelease Deploy(std::string file_content = "echo hi\n") {
  NewRelease release;
  release.type = kDeploy;
  release.destination_name = "prod";
  release.artifact_files = {{"deploy.sh", std::move(file_content)}};
  release.spec_files = {{"spec/app.yaml", "replicas: 1\n"}};
  release.created_by = "admin:alice";
  return release;
}

struct Fixture {
  Fixture() { Reopen(); }

  void Reopen(ReleaseOptions options = {}) {
    engine.reset();
    store.reset();
    auto opened_store = SqliteReleaseStore::Open((dir.path() / "release.db").string());
    REQUIRE(opened_store.ok());
    store = *std::move(opened_store);
    auto opened = ReleaseEngine::Open(*store, clock, options);
    REQUIRE(opened.ok());
    engine = *std::move(opened);
  }

  std::pair<RunnerSession, std::shared_ptr<RecordingChannel>> Connect(
      RunnerHello hello, common::Identity identity = RunnerIdentity("ci")) {
    auto channel = std::make_shared<RecordingChannel>();
    absl::StatusOr<RunnerSession> session = engine->ConnectRunner(identity, hello, channel);
    REQUIRE(session.ok());
    return {*session, channel};
  }

  Release Stored(const std::string& id) {
    absl::StatusOr<Release> release = store->Get(id);
    REQUIRE(release.ok());
    return *release;
  }

  pi::testing::TempDir dir;
  common::ManualClock clock;
  std::unique_ptr<SqliteReleaseStore> store;
  std::unique_ptr<ReleaseEngine> engine;
};

std::vector<ReleaseState> States(const Release& release) {
  std::vector<ReleaseState> states;
  for (const Transition& transition : release.history) states.push_back(transition.state);
  return states;
}

TEST_CASE("a release waits QUEUED until a qualifying runner connects, then is assigned at once") {
  Fixture f;
  absl::StatusOr<Release> created = f.engine->Create(Deploy());
  REQUIRE(created.ok());
  CHECK(created->state == ReleaseState::kQueued);
  CHECK(f.Stored(created->id).state == ReleaseState::kQueued);

  auto [other, other_channel] = f.Connect(Hello("other", 1, {{"acme", "build", 1}}));
  CHECK(other_channel->assignments().empty());

  auto [session, channel] = f.Connect(Hello("r1"));
  REQUIRE(channel->assignments().size() == 1);
  const Assignment& assignment = channel->Last();
  CHECK(assignment.release.id == created->id);
  CHECK(assignment.token.size() == 64);
  const Release stored = f.Stored(created->id);
  CHECK(stored.state == ReleaseState::kAssigned);
  CHECK(stored.runner_id == "r1");
  CHECK(stored.attempts == 1);
  // Only the hash of the token is kept.
  CHECK(stored.token_sha256 == common::Sha256Hex(assignment.token));
  CHECK(States(stored) == std::vector{ReleaseState::kQueued, ReleaseState::kAssigned});
}

TEST_CASE("a release created while a runner is free is assigned in the same call") {
  Fixture f;
  auto [session, channel] = f.Connect(Hello("r1"));
  absl::StatusOr<Release> created = f.engine->Create(Deploy());
  REQUIRE(created.ok());
  CHECK(created->state == ReleaseState::kAssigned);
  REQUIRE(channel->assignments().size() == 1);
  CHECK(f.Stored(created->id).state == ReleaseState::kAssigned);
}

TEST_CASE("the runner with the most free slots gets the release; slots are respected") {
  Fixture f;
  auto [small, small_channel] = f.Connect(Hello("small", 1));
  auto [big, big_channel] = f.Connect(Hello("big", 3));
  REQUIRE(f.engine->Create(Deploy()).ok());
  CHECK(big_channel->assignments().size() == 1);
  REQUIRE(f.engine->Create(Deploy()).ok());
  REQUIRE(f.engine->Create(Deploy()).ok());
  REQUIRE(f.engine->Create(Deploy()).ok());
  CHECK(big_channel->assignments().size() == 3);
  CHECK(small_channel->assignments().size() == 1);
  absl::StatusOr<Release> waiting = f.engine->Create(Deploy());
  REQUIRE(waiting.ok());
  CHECK(waiting->state == ReleaseState::kQueued);

  // A freed slot takes the oldest queued release at once.
  REQUIRE(f.engine
              ->Complete(small_channel->Last().token, ReleaseEngine::Outcome::kSuccess, "",
                         std::nullopt)
              .ok());
  REQUIRE(small_channel->assignments().size() == 2);
  CHECK(small_channel->Last().release.id == waiting->id);
}

TEST_CASE("a node's runner gets only releases pinned to its node; others only unpinned ones") {
  Fixture f;
  auto [node, node_channel] = f.Connect(Hello("pi-1"), NodeIdentity("pi-1"));
  auto [plain, plain_channel] = f.Connect(Hello("ci"));

  NewRelease pinned_elsewhere = Deploy();
  pinned_elsewhere.node_id = "pi-2";
  absl::StatusOr<Release> elsewhere = f.engine->Create(pinned_elsewhere);
  REQUIRE(elsewhere.ok());
  CHECK(elsewhere->state == ReleaseState::kQueued);
  CHECK(elsewhere->metadata.at("node_id") == "pi-2");

  NewRelease pinned = Deploy();
  pinned.metadata["node_id"] = "pi-1";
  absl::StatusOr<Release> mine = f.engine->Create(pinned);
  REQUIRE(mine.ok());
  CHECK(mine->node_id == "pi-1");
  REQUIRE(node_channel->assignments().size() == 1);
  CHECK(node_channel->Last().release.id == mine->id);

  REQUIRE(f.engine->Create(Deploy()).ok());
  CHECK(plain_channel->assignments().size() == 1);
  CHECK(node_channel->assignments().size() == 1);
}

TEST_CASE("WorkAck accepted moves ASSIGNED to RUNNING; a rejection goes to another runner") {
  Fixture f;
  auto [first, first_channel] = f.Connect(Hello("r1", 2));
  absl::StatusOr<Release> created = f.engine->Create(Deploy());
  REQUIRE(created.ok());
  const std::string first_token = first_channel->Last().token;

  SECTION("accepted") {
    REQUIRE(f.engine->WorkAck(first, first_token, true).ok());
    CHECK(f.Stored(created->id).state == ReleaseState::kRunning);
  }
  SECTION("rejected: requeued, not offered back, then taken by a new runner") {
    REQUIRE(f.engine->WorkAck(first, first_token, false).ok());
    Release stored = f.Stored(created->id);
    CHECK(stored.state == ReleaseState::kQueued);
    CHECK(stored.history.back().reason == "runner r1 rejected the work");
    CHECK(first_channel->assignments().size() == 1);
    // The rejected token is dead.
    CHECK(f.engine->Authorize(first_token).status().code() == absl::StatusCode::kUnauthenticated);

    auto [second, second_channel] = f.Connect(Hello("r2"));
    REQUIRE(second_channel->assignments().size() == 1);
    CHECK(second_channel->Last().release.id == created->id);
    stored = f.Stored(created->id);
    CHECK(stored.runner_id == "r2");
    CHECK(stored.attempts == 2);
  }
  SECTION("a token of another runner is refused") {
    auto [other, other_channel] = f.Connect(Hello("r9"));
    CHECK(f.engine->WorkAck(other, first_token, false).code() ==
          absl::StatusCode::kUnauthenticated);
    CHECK(f.Stored(created->id).state == ReleaseState::kAssigned);
  }
}

TEST_CASE("the only runner that can take a release gets it again after the rejection backoff") {
  Fixture f;
  auto [node, channel] = f.Connect(Hello("pi-1"), NodeIdentity("pi-1"));
  NewRelease pinned = Deploy();
  pinned.node_id = "pi-1";
  absl::StatusOr<Release> created = f.engine->Create(pinned);
  REQUIRE(created.ok());
  for (int attempt = 1; attempt <= 3; ++attempt) {
    REQUIRE(channel->assignments().size() == static_cast<size_t>(attempt));
    REQUIRE(f.engine->WorkAck(node, channel->Last().token, false).ok());
    if (attempt == 3) break;
    CHECK(f.Stored(created->id).state == ReleaseState::kQueued);
    // Not offered back at once, even with its slot free.
    f.engine->RunTimers();
    CHECK(channel->assignments().size() == static_cast<size_t>(attempt));
    f.clock.Advance(seconds(29));
    f.engine->Heartbeat(node, 0);
    f.engine->RunTimers();
    CHECK(channel->assignments().size() == static_cast<size_t>(attempt));
    f.clock.Advance(seconds(2));
    f.engine->RunTimers();
  }
  // Every refusal used an attempt: after max_attempts the release ends instead of waiting.
  const Release stored = f.Stored(created->id);
  CHECK(stored.state == ReleaseState::kFailed);
  CHECK(stored.attempts == 3);
  CHECK(stored.error_message.find("rejected the work; all 3 attempts used") != std::string::npos);
}

TEST_CASE("a runner that never acks completes from ASSIGNED; the token dies with the release") {
  Fixture f;
  auto [session, channel] = f.Connect(Hello("stock"));
  NewRelease plan = Deploy();
  plan.plan = true;
  absl::StatusOr<Release> created = f.engine->Create(plan);
  REQUIRE(created.ok());
  const std::string token = channel->Last().token;

  CHECK(f.engine->Complete(token, ReleaseEngine::Outcome::kUnspecified, "", std::nullopt)
            .status()
            .code() == absl::StatusCode::kInvalidArgument);
  CHECK(f.Stored(created->id).state == ReleaseState::kAssigned);

  absl::StatusOr<Release> done =
      f.engine->Complete(token, ReleaseEngine::Outcome::kSuccess, "", "Plan: 1 to change");
  REQUIRE(done.ok());
  CHECK(done->state == ReleaseState::kSucceeded);
  const Release stored = f.Stored(created->id);
  CHECK(stored.state == ReleaseState::kSucceeded);
  CHECK(stored.plan_output == std::optional<std::string>("Plan: 1 to change"));
  CHECK(stored.finished_at.has_value());
  CHECK(stored.token_sha256.empty());
  CHECK(f.engine->Files(token, FileKind::kArtifact).status().code() ==
        absl::StatusCode::kUnauthenticated);
  CHECK(f.engine->Complete(token, ReleaseEngine::Outcome::kFailure, "again", std::nullopt)
            .status()
            .code() == absl::StatusCode::kUnauthenticated);
}

TEST_CASE("a runner's oversize error and plan output are cut, not stored whole") {
  Fixture f;
  auto [session, channel] = f.Connect(Hello("r1", 2));
  absl::StatusOr<Release> failed = f.engine->Create(Deploy());
  absl::StatusOr<Release> planned = f.engine->Create(Deploy());
  REQUIRE((failed.ok() && planned.ok()));
  const std::vector<Assignment> assignments = channel->assignments();
  REQUIRE(f.engine
              ->Complete(assignments[0].token, ReleaseEngine::Outcome::kFailure,
                         std::string(1024 * 1024, 'e'), std::nullopt)
              .ok());
  REQUIRE(f.engine
              ->Complete(assignments[1].token, ReleaseEngine::Outcome::kSuccess, "",
                         std::string(3 * 1024 * 1024, 'p'))
              .ok());
  const Release stored_failure = f.Stored(failed->id);
  CHECK(stored_failure.error_message.size() <= 4 * 1024);
  CHECK_THAT(stored_failure.error_message, Catch::Contains("(cut:"));
  CHECK(stored_failure.history.back().reason == stored_failure.error_message);
  const Release stored_plan = f.Stored(planned->id);
  REQUIRE(stored_plan.plan_output.has_value());
  CHECK(stored_plan.plan_output->size() <= 256 * 1024);
  CHECK_THAT(*stored_plan.plan_output, Catch::EndsWith("the controller keeps)"));
}

TEST_CASE("a failure is stored with its error") {
  Fixture f;
  auto [session, channel] = f.Connect(Hello("r1"));
  absl::StatusOr<Release> created = f.engine->Create(Deploy());
  REQUIRE(created.ok());
  REQUIRE(f.engine
              ->Complete(channel->Last().token, ReleaseEngine::Outcome::kFailure,
                         "step 2 failed: exit 1", std::nullopt)
              .ok());
  const Release stored = f.Stored(created->id);
  CHECK(stored.state == ReleaseState::kFailed);
  CHECK(stored.error_message == "step 2 failed: exit 1");
}

TEST_CASE("a release token reads only its own release's files, and makes it RUNNING") {
  Fixture f;
  auto [session, channel] = f.Connect(Hello("r1", 2));
  absl::StatusOr<Release> a = f.engine->Create(Deploy("release A\n"));
  absl::StatusOr<Release> b = f.engine->Create(Deploy("release B\n"));
  REQUIRE((a.ok() && b.ok()));
  std::map<std::string, std::string> tokens;
  for (const Assignment& assignment : channel->assignments()) {
    tokens[assignment.release.id] = assignment.token;
  }
  absl::StatusOr<std::vector<ReleaseFile>> files =
      f.engine->Files(tokens.at(a->id), FileKind::kArtifact);
  REQUIRE(files.ok());
  REQUIRE(files->size() == 1);
  CHECK(files->front().content == "release A\n");
  absl::StatusOr<std::vector<ReleaseFile>> spec =
      f.engine->Files(tokens.at(a->id), FileKind::kSpec);
  REQUIRE(spec.ok());
  CHECK(spec->front().name == "spec/app.yaml");
  CHECK(f.Stored(a->id).state == ReleaseState::kRunning);
  CHECK(f.Stored(b->id).state == ReleaseState::kAssigned);

  for (const std::string& bad :
       {std::string(), std::string("abc"), std::string(64, 'G'), std::string(64, 'a')}) {
    CHECK(f.engine->Files(bad, FileKind::kArtifact).status().code() ==
          absl::StatusCode::kUnauthenticated);
  }
}

TEST_CASE("a disconnected runner's releases are requeued until max_attempts, then FAILED") {
  Fixture f;
  NewRelease once = Deploy();
  once.max_attempts = 1;
  auto [session, channel] = f.Connect(Hello("r1", 2));
  absl::StatusOr<Release> retried = f.engine->Create(Deploy());
  absl::StatusOr<Release> single = f.engine->Create(once);
  REQUIRE((retried.ok() && single.ok()));
  REQUIRE(channel->assignments().size() == 2);

  f.engine->DisconnectRunner(session, "stream cancelled");
  Release stored = f.Stored(retried->id);
  CHECK(stored.state == ReleaseState::kQueued);
  CHECK(stored.token_sha256.empty());
  stored = f.Stored(single->id);
  CHECK(stored.state == ReleaseState::kFailed);
  CHECK(stored.error_message.find("all 1 attempts used") != std::string::npos);
  for (const Assignment& assignment : channel->assignments()) {
    CHECK(f.engine->Authorize(assignment.token).status().code() ==
          absl::StatusCode::kUnauthenticated);
  }
  CHECK(f.engine->Runners().empty());
}

TEST_CASE("a runner silent for runner_silence_limit is dropped and its releases requeued") {
  Fixture f;
  auto [quiet, quiet_channel] = f.Connect(Hello("quiet"));
  absl::StatusOr<Release> created = f.engine->Create(Deploy());
  REQUIRE(created.ok());
  auto [chatty, chatty_channel] = f.Connect(Hello("chatty"));

  f.clock.Advance(seconds(60));
  f.engine->Heartbeat(chatty, 0);
  f.clock.Advance(seconds(31));
  f.engine->RunTimers();
  REQUIRE(quiet_channel->closed().has_value());
  CHECK(quiet_channel->closed()->code() == absl::StatusCode::kUnavailable);
  CHECK(!chatty_channel->closed().has_value());
  // Requeued and handed straight to the runner that is still there.
  REQUIRE(chatty_channel->assignments().size() == 1);
  CHECK(chatty_channel->Last().release.id == created->id);
}

TEST_CASE("a release that runs past its timeout is TIMED_OUT and its slot freed") {
  Fixture f;
  NewRelease quick = Deploy();
  quick.timeout = seconds(30);
  auto [session, channel] = f.Connect(Hello("r1"));
  absl::StatusOr<Release> created = f.engine->Create(quick);
  REQUIRE(created.ok());
  absl::StatusOr<Release> next = f.engine->Create(Deploy());
  REQUIRE(next.ok());
  f.engine->Heartbeat(session, 1);
  f.clock.Advance(seconds(31));
  f.engine->Heartbeat(session, 1);
  f.engine->RunTimers();
  CHECK(f.Stored(created->id).state == ReleaseState::kTimedOut);
  REQUIRE(channel->assignments().size() == 2);
  CHECK(channel->Last().release.id == next->id);
}

TEST_CASE("cancel ends a waiting or running release; an ended one cannot be cancelled") {
  Fixture f;
  absl::StatusOr<Release> queued = f.engine->Create(Deploy());
  REQUIRE(queued.ok());
  absl::StatusOr<Release> cancelled = f.engine->Cancel(queued->id, "admin:bob");
  REQUIRE(cancelled.ok());
  CHECK(cancelled->state == ReleaseState::kCancelled);
  CHECK(cancelled->history.back().reason == "cancelled by admin:bob");
  // It does not come back when a runner connects.
  auto [session, channel] = f.Connect(Hello("r1"));
  CHECK(channel->assignments().empty());

  absl::StatusOr<Release> running = f.engine->Create(Deploy());
  REQUIRE(running.ok());
  const std::string token = channel->Last().token;
  REQUIRE(f.engine->Cancel(running->id, "admin:bob").ok());
  CHECK(f.engine->Authorize(token).status().code() == absl::StatusCode::kUnauthenticated);
  CHECK(f.engine->Cancel(running->id, "admin:bob").status().code() ==
        absl::StatusCode::kFailedPrecondition);
  CHECK(f.engine->Cancel("0123456789abcdef", "admin:bob").status().code() ==
        absl::StatusCode::kNotFound);
}

TEST_CASE("log lines are numbered, refused whole when one is bad, and followed live") {
  Fixture f;
  auto [session, channel] = f.Connect(Hello("r1"));
  absl::StatusOr<Release> created = f.engine->Create(Deploy());
  REQUIRE(created.ok());
  const std::string token = channel->Last().token;

  std::vector<ReleaseEvent> events;
  std::optional<absl::Status> ended;
  absl::StatusOr<uint64_t> follow =
      f.engine->Follow(created->id, 0,
                       FollowSink{[&](const ReleaseEvent& event) { events.push_back(event); },
                                  [&](const absl::Status& status) { ended = status; }});
  REQUIRE(follow.ok());
  REQUIRE(events.size() == 1);
  CHECK(events[0].release->state == ReleaseState::kAssigned);

  CHECK(f.engine->AppendLogs(token, {{0, "stdin", "x", 1}}).code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(f.engine
            ->AppendLogs(token, {{0, "stdout", "ok", 1},
                                 {0, "stdout", std::string(kMaxLogLineBytes + 1, 'x'), 2}})
            .code() == absl::StatusCode::kInvalidArgument);
  CHECK(events.size() == 1);

  REQUIRE(f.engine->AppendLogs(token, {{0, "stdout", "one", 10}, {0, "stderr", "two", 11}}).ok());
  // The first line makes the release RUNNING; followers see the change and both lines.
  REQUIRE(events.size() == 4);
  CHECK(events[1].release->state == ReleaseState::kRunning);
  CHECK(events[2].log->sequence == 1);
  CHECK(events[3].log->line == "two");
  CHECK(events[3].log->channel == "stderr");
  CHECK(!ended.has_value());

  REQUIRE(f.engine->Complete(token, ReleaseEngine::Outcome::kSuccess, "", std::nullopt).ok());
  REQUIRE(ended.has_value());
  CHECK(ended->ok());
  CHECK(events.back().release->state == ReleaseState::kSucceeded);

  absl::StatusOr<std::vector<LogLine>> stored = f.store->Logs(created->id, 0, 100);
  REQUIRE(stored.ok());
  REQUIRE(stored->size() == 2);
  CHECK((*stored)[1] == LogLine{2, "stderr", "two", 11});
  CHECK(f.Stored(created->id).log_lines == 2);

  // Following an ended release replays it and ends.
  std::vector<ReleaseEvent> replay;
  bool replay_ended = false;
  REQUIRE(f.engine
              ->Follow(created->id, 1,
                       FollowSink{[&](const ReleaseEvent& event) { replay.push_back(event); },
                                  [&](const absl::Status& status) { replay_ended = status.ok(); }})
              .ok());
  CHECK(replay_ended);
  REQUIRE(replay.size() == 2);
  CHECK(replay[1].log->line == "two");
  CHECK(f.engine->Follow("0123456789abcdef", 0, {}).status().code() == absl::StatusCode::kNotFound);
}

TEST_CASE("registration refusals name the problem") {
  Fixture f;
  auto channel = std::make_shared<RecordingChannel>();
  const auto code = [&](const common::Identity& identity, RunnerHello hello) {
    return f.engine->ConnectRunner(identity, std::move(hello), channel).status().code();
  };
  CHECK(code(common::Identity{common::Role::kAdmin, "alice"}, Hello("r1")) ==
        absl::StatusCode::kPermissionDenied);
  CHECK(code(RunnerIdentity("ci"), Hello("r1", 0)) == absl::StatusCode::kInvalidArgument);
  CHECK(code(RunnerIdentity("ci"), Hello("r1", 1, {})) == absl::StatusCode::kInvalidArgument);
  CHECK(code(RunnerIdentity("ci"), Hello("r1", 1, {{"", "x", 1}})) ==
        absl::StatusCode::kInvalidArgument);
  CHECK(code(RunnerIdentity("ci"), Hello("bad id!")) == absl::StatusCode::kInvalidArgument);
  CHECK(code(RunnerIdentity("ci"), Hello(std::string(129, 'a'))) ==
        absl::StatusCode::kInvalidArgument);
  // A node registers under its own id only, so nobody can squat another node's id.
  CHECK(code(NodeIdentity("pi-2"), Hello("pi-1")) == absl::StatusCode::kInvalidArgument);
  CHECK(f.engine->Runners().empty());

  absl::StatusOr<RunnerSession> assigned_id = f.engine->ConnectRunner(
      RunnerIdentity("ci"), Hello(""), std::make_shared<RecordingChannel>());
  REQUIRE(assigned_id.ok());
  CHECK(assigned_id->runner_id.rfind("ci-", 0) == 0);
  CHECK(code(RunnerIdentity("other"), Hello(assigned_id->runner_id)) ==
        absl::StatusCode::kPermissionDenied);
  absl::StatusOr<RunnerSession> node = f.engine->ConnectRunner(
      NodeIdentity("pi-3"), Hello(""), std::make_shared<RecordingChannel>());
  REQUIRE(node.ok());
  CHECK(node->runner_id == "pi-3");
}

TEST_CASE("a runner reconnecting with its id replaces the old connection") {
  Fixture f;
  auto [old_session, old_channel] = f.Connect(Hello("r1"));
  absl::StatusOr<Release> created = f.engine->Create(Deploy());
  REQUIRE(created.ok());
  auto [new_session, new_channel] = f.Connect(Hello("r1"));
  REQUIRE(old_channel->closed().has_value());
  CHECK(old_channel->closed()->code() == absl::StatusCode::kAborted);
  // The release the old connection held goes to the new one.
  REQUIRE(new_channel->assignments().size() == 1);
  CHECK(new_channel->Last().release.id == created->id);
  // The old stream ending later changes nothing.
  f.engine->DisconnectRunner(old_session, "stream ended");
  REQUIRE(f.engine->Runners().size() == 1);
  CHECK(f.Stored(created->id).state == ReleaseState::kAssigned);
}

TEST_CASE("bad releases are refused and nothing is stored") {
  Fixture f;
  const auto refused = [&](NewRelease release) {
    return f.engine->Create(std::move(release)).status().code();
  };
  NewRelease dotdot = Deploy();
  dotdot.artifact_files = {{"../etc/passwd", "x"}};
  CHECK(refused(dotdot) == absl::StatusCode::kInvalidArgument);
  NewRelease absolute = Deploy();
  absolute.spec_files = {{"/etc/passwd", "x"}};
  CHECK(refused(absolute) == absl::StatusCode::kInvalidArgument);
  NewRelease untyped = Deploy();
  untyped.type = {};
  CHECK(refused(untyped) == absl::StatusCode::kInvalidArgument);
  NewRelease conflicting = Deploy();
  conflicting.node_id = "pi-1";
  conflicting.metadata["node_id"] = "pi-2";
  CHECK(refused(conflicting) == absl::StatusCode::kInvalidArgument);
  NewRelease too_long = Deploy();
  too_long.timeout = hours(2);
  CHECK(refused(too_long) == absl::StatusCode::kInvalidArgument);
  NewRelease attempts = Deploy();
  attempts.max_attempts = 21;
  CHECK(refused(attempts) == absl::StatusCode::kInvalidArgument);

  NewRelease good = Deploy();
  Provisioning provisioning;
  provisioning.profile = "motd";
  CHECK(f.engine->CreateProvisioning(provisioning, {good, dotdot}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::vector<Release>> all = f.engine->List({});
  REQUIRE(all.ok());
  CHECK(all->empty());
}

TEST_CASE("a provisioning request creates its releases together and dispatches them") {
  Fixture f;
  auto [one, one_channel] = f.Connect(Hello("pi-1"), NodeIdentity("pi-1"));
  std::vector<NewRelease> releases;
  for (const char* node : {"pi-1", "pi-2"}) {
    NewRelease release = Deploy();
    release.node_id = node;
    releases.push_back(release);
  }
  Provisioning request;
  request.profile = "motd";
  request.target = "all";
  request.created_by = "admin:alice";
  absl::StatusOr<Provisioning> created = f.engine->CreateProvisioning(request, releases);
  REQUIRE(created.ok());
  REQUIRE(created->release_ids.size() == 2);
  absl::StatusOr<Provisioning> stored = f.engine->GetProvisioning(created->id);
  REQUIRE(stored.ok());
  CHECK(stored->release_ids == created->release_ids);
  CHECK(f.Stored(created->release_ids[0]).state == ReleaseState::kAssigned);
  CHECK(f.Stored(created->release_ids[1]).state == ReleaseState::kQueued);
  CHECK(f.Stored(created->release_ids[1]).provisioning_id == created->id);
  REQUIRE(one_channel->assignments().size() == 1);
}

TEST_CASE("after a restart queued releases wait again and lost ones are requeued or failed") {
  Fixture f;
  NewRelease once = Deploy();
  once.max_attempts = 1;
  absl::StatusOr<Release> waiting = f.engine->Create(Deploy());
  REQUIRE(waiting.ok());
  auto [session, channel] = f.Connect(Hello("r1", 2));
  absl::StatusOr<Release> single = f.engine->Create(once);
  REQUIRE(single.ok());
  REQUIRE(channel->assignments().size() == 2);
  const std::string lost_token = channel->assignments().front().token;
  REQUIRE(f.engine->AppendLogs(lost_token, {{0, "stdout", "before the crash", 1}}).ok());
  REQUIRE(f.engine->FlushLogs().ok());

  f.Reopen();
  CHECK(f.Stored(waiting->id).state == ReleaseState::kQueued);
  CHECK(f.Stored(waiting->id).history.back().reason.find("restarted") != std::string::npos);
  CHECK(f.Stored(single->id).state == ReleaseState::kFailed);
  CHECK(f.engine->Authorize(lost_token).status().code() == absl::StatusCode::kUnauthenticated);
  CHECK(f.Stored(waiting->id).log_lines == 1);

  auto [again, again_channel] = f.Connect(Hello("r1"));
  REQUIRE(again_channel->assignments().size() == 1);
  const std::string token = again_channel->Last().token;
  // Numbering continues after the lines stored before the restart.
  REQUIRE(f.engine->AppendLogs(token, {{0, "stdout", "after", 2}}).ok());
  REQUIRE(f.engine->FlushLogs().ok());
  absl::StatusOr<std::vector<LogLine>> lines = f.store->Logs(waiting->id, 0, 10);
  REQUIRE(lines.ok());
  REQUIRE(lines->size() == 2);
  CHECK((*lines)[1].sequence == 2);
}

TEST_CASE("after Shutdown every call is UNAVAILABLE and streams are closed") {
  Fixture f;
  auto [session, channel] = f.Connect(Hello("r1"));
  f.engine->Shutdown();
  REQUIRE(channel->closed().has_value());
  CHECK(channel->closed()->code() == absl::StatusCode::kUnavailable);
  CHECK(f.engine->Create(Deploy()).status().code() == absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace pi::controlplane::release
