// pi-agent as a Forest runner, end to end in one process: the real controller side (ReleaseEngine
// on a SQLite file behind RunnerService, served over loopback mTLS) and the agent's RunnerClient
// with a real ProfileExecutor writing under a temporary filesystem root.
#include "node-agent/runner/runner_client.h"

#include <grpcpp/grpcpp.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/provisioning/profile.h"
#include "common/system/clock.h"
#include "common/tls/credentials.h"
#include "control-plane/release/release_engine.h"
#include "control-plane/release/runner_service.h"
#include "control-plane/release/sqlite_release_store.h"
#include "node-agent/exec/command_executor.h"
#include "node-agent/runner/profile_executor.h"
#include "tests/common/test_dir.h"
#include "tests/common/test_pki.h"

namespace pi::agent::runner {
namespace {

namespace release = controlplane::release;
using std::chrono::milliseconds;
using std::chrono::seconds;

// The cluster CA with the controller's certificate and two nodes'.
struct Pki : pi::testing::TestPki {
  Pki() {
    Issue("controller", "controller", "--ip 127.0.0.1");
    Issue("pi-1", "node:pi-1");
    Issue("pi-2", "node:pi-2");
    Issue("admin", "admin:alice");
  }
};

// Polls `condition` until it holds or `timeout` passes.
template <typename Condition>
bool Eventually(Condition condition, std::chrono::milliseconds timeout = seconds(15)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return condition();
}

// The controller's release side: engine and store, RunnerService on a mTLS listener.
class Controller {
 public:
  explicit Controller(const Pki& pki) : pki_(pki) {
    auto store = release::SqliteReleaseStore::Open((dir_.path() / "release.db").string());
    REQUIRE(store.ok());
    store_ = *std::move(store);
    Start();
  }
  ~Controller() { Stop(); }

  void Restart() {
    Stop();
    Start();
  }

  // Listens again on the port it had (any port the first time).
  void Start() {
    release::ReleaseOptions options;
    options.log_flush_interval = milliseconds(20);
    auto engine = release::ReleaseEngine::Open(*store_, common::RealClock(), options);
    REQUIRE(engine.ok());
    engine_ = *std::move(engine);
    engine_->Start();
    service_ = std::make_unique<release::RunnerService>(*engine_, nullptr);
    auto credentials =
        common::MakeServerCredentials({pki_.File("controller.crt"), pki_.File("controller.key"),
                                       pki_.File("ca.crt"), common::ClientAuth::kRequireAndVerify});
    REQUIRE(credentials.ok());
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:" + std::to_string(port_), *credentials, &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    REQUIRE(server_ != nullptr);
    REQUIRE(port_ > 0);
  }

  // Everything but the database stops, as in a controller restart.
  void Stop() {
    if (!server_) return;
    service_->Shutdown();
    server_->Shutdown(std::chrono::system_clock::now() + seconds(2));
    server_.reset();
    service_.reset();
    engine_->Shutdown();
    engine_.reset();
  }

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  release::ReleaseEngine& engine() { return *engine_; }

  std::string Create(const std::string& node_id, const std::string& profile_text, bool plan,
                     int max_attempts = 0) {
    auto profile = common::provisioning::ParseProfile(profile_text, "profile.json");
    REQUIRE(profile.ok());
    auto parameters = common::provisioning::ResolveParameters(*profile, {});
    REQUIRE(parameters.ok());
    release::NewRelease request;
    request.artifact_files = {{std::string(common::provisioning::kProfileFileName), profile_text},
                              {std::string(common::provisioning::kParametersFileName),
                               common::provisioning::ParametersJson(*parameters)}};
    request.type = release::ProvisionDestinationType();
    request.destination_name = node_id;
    request.node_id = node_id;
    request.plan = plan;
    request.max_attempts = max_attempts;
    request.created_by = "admin:alice";
    auto created = engine_->Create(std::move(request));
    REQUIRE(created.ok());
    return created->id;
  }

  release::Release Get(const std::string& id) {
    auto found = engine_->Get(id);
    REQUIRE(found.ok());
    return *found;
  }

  // The release once it has ended; fails the test when it does not end in time.
  release::Release AwaitEnd(const std::string& id) {
    REQUIRE(Eventually([&] { return release::IsFinal(Get(id).state); }));
    return Get(id);
  }

  std::vector<release::LogLine> Logs(const std::string& id) {
    REQUIRE(engine_->FlushLogs().ok());
    auto lines = store_->Logs(id, 0, 1000);
    REQUIRE(lines.ok());
    return *lines;
  }

  std::optional<release::RunnerView> Runner(const std::string& runner_id) {
    for (auto& runner : engine_->Runners()) {
      if (runner.runner_id == runner_id) return runner;
    }
    return std::nullopt;
  }

 private:
  const Pki& pki_;
  pi::testing::TempDir dir_;
  std::unique_ptr<release::SqliteReleaseStore> store_;
  std::unique_ptr<release::ReleaseEngine> engine_;
  std::unique_ptr<release::RunnerService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// A joined agent's runner: its certificate (`certificate`.crt/.key), its node id, and a
// filesystem root of its own where profiles may write /etc/motd and /etc/pi-provision.
class Agent {
 public:
  Agent(const Pki& pki, const std::string& address, const std::string& certificate,
        const std::string& node_id, int max_concurrent = 1,
        milliseconds heartbeat_interval = milliseconds(100))
      : commands_(CommandPolicy()),
        executor_(ProvisionPolicy{.filesystem_root = root_.path().string(),
                                  .allowed_write_roots = {"/etc/motd", "/etc/pi-provision"}},
                  commands_, nullptr) {
    std::filesystem::create_directories(root_.path() / "etc");
    RunnerClientOptions options;
    options.address = address;
    options.node_id = node_id;
    options.tls = {pki.File("ca.crt"), pki.File(certificate + ".crt"),
                   pki.File(certificate + ".key")};
    options.max_concurrent = max_concurrent;
    options.heartbeat_interval = heartbeat_interval;
    options.initial_backoff = milliseconds(50);
    options.max_backoff = milliseconds(200);
    options.rpc_timeout = seconds(5);
    client_ = std::make_unique<RunnerClient>(options, executor_);
    client_->Start();
  }

  RunnerClient& client() { return *client_; }
  std::filesystem::path Path(const std::string& path) const { return root_.path() / path; }

  std::string Read(const std::string& path) const {
    std::ifstream in(Path(path));
    std::stringstream content;
    content << in.rdbuf();
    return content.str();
  }

 private:
  static exec::ExecPolicy CommandPolicy() {
    exec::ExecPolicy policy;
    policy.allowed_commands = {"/usr/bin/sleep"};
    policy.max_timeout = seconds(60);
    return policy;
  }

  pi::testing::TempDir root_;
  exec::CommandExecutor commands_;
  ProfileExecutor executor_;
  std::unique_ptr<RunnerClient> client_;
};

constexpr char kMotdProfile[] = R"({
  "name": "motd",
  "parameters": {"message": {"type": "string", "default": "Hello from the runner test"}},
  "steps": [
    {"name": "motd", "write_file": {"path": "/etc/motd", "content": "{{message}}\n",
                                    "mode": "0644"}},
    {"name": "motd-check", "check": {"path": "/etc/motd", "contains": "{{message}}"}}
  ]
})";

constexpr char kFailingProfile[] = R"({
  "name": "broken",
  "steps": [
    {"name": "marker", "write_file": {"path": "/etc/pi-provision/marker", "content": "x\n"}},
    {"name": "needs-k3s", "check": {"path": "/etc/pi-provision/k3s/config.yaml"}}
  ]
})";

constexpr char kSlowProfile[] = R"({
  "name": "slow",
  "steps": [
    {"name": "marker", "write_file": {"path": "/etc/pi-provision/started", "content": "x\n"}},
    {"name": "wait", "run": {"argv": ["/usr/bin/sleep", "30"], "timeout": "60s"}},
    {"name": "after", "write_file": {"path": "/etc/pi-provision/finished", "content": "x\n"}}
  ]
})";

bool HasLineContaining(const std::vector<release::LogLine>& lines, const std::string& text) {
  for (const auto& line : lines) {
    if (line.line.find(text) != std::string::npos) return true;
  }
  return false;
}

TEST_CASE("the agent registers as the runner of its node and heartbeats", "[runner_client]") {
  Pki pki;
  Controller controller(pki);
  Agent agent(pki, controller.address(), "pi-1", "pi-1", 2);

  REQUIRE(Eventually([&] { return controller.Runner("pi-1").has_value(); }));
  const release::RunnerView runner = *controller.Runner("pi-1");
  CHECK(runner.identity == "node:pi-1");
  CHECK(runner.node_id == "pi-1");
  CHECK(runner.max_concurrent == 2);
  CHECK(runner.capabilities ==
        std::vector<release::DestinationType>{release::ProvisionDestinationType()});
  // The controller may list the runner just before the agent has read its RegisterAck.
  CHECK(Eventually([&] { return agent.client().registrations() == 1; }));
  CHECK(Eventually([&] {
    auto now = controller.Runner("pi-1");
    return now && now->last_heartbeat > now->connected_at;
  }));
}

TEST_CASE("a provisioning release pinned to the node runs and succeeds", "[runner_client]") {
  Pki pki;
  Controller controller(pki);
  Agent agent(pki, controller.address(), "pi-1", "pi-1");

  const std::string id = controller.Create("pi-1", kMotdProfile, /*plan=*/false);
  const release::Release done = controller.AwaitEnd(id);
  INFO(done.error_message);
  REQUIRE(done.state == release::ReleaseState::kSucceeded);
  CHECK(done.runner_id == "pi-1");
  CHECK(done.error_message.empty());
  CHECK(agent.Read("etc/motd") == "Hello from the runner test\n");
  REQUIRE(done.plan_output.has_value());
  CHECK_THAT(*done.plan_output, Catch::Contains("1 changed"));

  const auto logs = controller.Logs(id);
  CHECK(logs.size() >= 3);
  CHECK(HasLineContaining(logs, "motd-check"));
  for (const auto& line : logs) {
    CHECK(line.channel == "stdout");
    CHECK(line.timestamp_ms > 0);
    CHECK(line.line.find('\n') == std::string::npos);
  }
  CHECK(Eventually([&] { return agent.client().active() == 0; }));
}

TEST_CASE("plan mode writes nothing and stores the plan", "[runner_client]") {
  Pki pki;
  Controller controller(pki);
  Agent agent(pki, controller.address(), "pi-1", "pi-1");

  const std::string id = controller.Create("pi-1", kMotdProfile, /*plan=*/true);
  const release::Release done = controller.AwaitEnd(id);
  INFO(done.error_message);
  REQUIRE(done.state == release::ReleaseState::kSucceeded);
  CHECK_FALSE(std::filesystem::exists(agent.Path("etc/motd")));
  REQUIRE(done.plan_output.has_value());
  CHECK_THAT(*done.plan_output, Catch::Contains("/etc/motd"));
  CHECK_THAT(*done.plan_output, Catch::EndsWith("Plan: 1 to change, 1 unchanged."));
  CHECK(HasLineContaining(controller.Logs(id), "Plan:"));

  // Applied, then planned again: nothing left to change.
  REQUIRE(controller.AwaitEnd(controller.Create("pi-1", kMotdProfile, false)).state ==
          release::ReleaseState::kSucceeded);
  const release::Release again = controller.AwaitEnd(controller.Create("pi-1", kMotdProfile, true));
  REQUIRE(again.plan_output.has_value());
  CHECK_THAT(*again.plan_output, Catch::EndsWith("Plan: 0 to change, 2 unchanged."));
}

TEST_CASE("a failing step fails the release with the step's error", "[runner_client]") {
  Pki pki;
  Controller controller(pki);
  Agent agent(pki, controller.address(), "pi-1", "pi-1");

  const std::string id = controller.Create("pi-1", kFailingProfile, false);
  const release::Release done = controller.AwaitEnd(id);
  REQUIRE(done.state == release::ReleaseState::kFailed);
  CHECK_THAT(done.error_message, Catch::Contains("needs-k3s"));
  CHECK_THAT(done.error_message, Catch::Contains("/etc/pi-provision/k3s/config.yaml"));
  // The step before the failing one ran.
  CHECK(agent.Read("etc/pi-provision/marker") == "x\n");
  CHECK(HasLineContaining(controller.Logs(id), "config.yaml does not exist"));
}

TEST_CASE("a command's stderr reaches the controller on the stderr channel", "[runner_client]") {
  Pki pki;
  Controller controller(pki);
  Agent agent(pki, controller.address(), "pi-1", "pi-1");

  const std::string id = controller.Create("pi-1", R"({
    "name": "bad-sleep",
    "steps": [{"name": "nap", "run": {"argv": ["/usr/bin/sleep", "not-a-duration"]}}]
  })",
                                           false);
  const release::Release done = controller.AwaitEnd(id);
  REQUIRE(done.state == release::ReleaseState::kFailed);
  CHECK_THAT(done.error_message, Catch::Contains("nap"));
  bool on_stderr = false;
  for (const auto& line : controller.Logs(id)) {
    UNSCOPED_INFO(line.channel << ": " << line.line);
    on_stderr |= line.channel == "stderr" && line.line.find("not-a-duration") != std::string::npos;
  }
  CHECK(on_stderr);
}

TEST_CASE("a release whose files cannot be executed still completes as FAILED", "[runner_client]") {
  Pki pki;
  Controller controller(pki);
  Agent agent(pki, controller.address(), "pi-1", "pi-1");

  release::NewRelease request;
  request.artifact_files = {{"profile.json", R"({"name": "x", "steps": [{"name": "s"}]})"}};
  request.type = release::ProvisionDestinationType();
  request.node_id = "pi-1";
  request.created_by = "admin:alice";
  auto created = controller.engine().Create(std::move(request));
  REQUIRE(created.ok());
  const release::Release done = controller.AwaitEnd(created->id);
  REQUIRE(done.state == release::ReleaseState::kFailed);
  CHECK_THAT(done.error_message, Catch::Contains("profile.json"));

  release::NewRelease without_profile;
  without_profile.artifact_files = {{"README", "no profile here"}};
  without_profile.type = release::ProvisionDestinationType();
  without_profile.node_id = "pi-1";
  without_profile.created_by = "admin:alice";
  auto second = controller.engine().Create(std::move(without_profile));
  REQUIRE(second.ok());
  const release::Release missing = controller.AwaitEnd(second->id);
  REQUIRE(missing.state == release::ReleaseState::kFailed);
  CHECK_THAT(missing.error_message, Catch::Contains("profile.json"));
}

TEST_CASE("a release pinned to another node is never run by this agent", "[runner_client]") {
  Pki pki;
  Controller controller(pki);

  SECTION("the controller keeps it for that node") {
    Agent agent(pki, controller.address(), "pi-1", "pi-1");
    const std::string other = controller.Create("pi-2", kMotdProfile, false);
    // A release for this node passes it by.
    const std::string own = controller.Create("pi-1", kFailingProfile, false);
    CHECK(controller.AwaitEnd(own).state == release::ReleaseState::kFailed);
    CHECK(controller.Get(other).state == release::ReleaseState::kQueued);
    CHECK_FALSE(std::filesystem::exists(agent.Path("etc/motd")));
  }

  SECTION("a runner id that is not the certificate's node is refused at registration") {
    // Certificate of pi-2, but the agent believes it is pi-1: it never gets pi-2's release.
    Agent agent(pki, controller.address(), "pi-2", "pi-1");
    const std::string id = controller.Create("pi-2", kMotdProfile, false, /*max_attempts=*/1);
    std::this_thread::sleep_for(milliseconds(500));
    CHECK(agent.client().registrations() == 0);
    CHECK(controller.Get(id).state == release::ReleaseState::kQueued);
    CHECK_FALSE(std::filesystem::exists(agent.Path("etc/motd")));
  }
}

TEST_CASE("the runner reconnects after the controller restarts", "[runner_client]") {
  Pki pki;
  Controller controller(pki);
  Agent agent(pki, controller.address(), "pi-1", "pi-1");
  REQUIRE(Eventually([&] { return agent.client().registrations() == 1; }));

  controller.Restart();
  REQUIRE(Eventually([&] { return agent.client().registrations() == 2; }));
  REQUIRE(Eventually([&] { return controller.Runner("pi-1").has_value(); }));

  const release::Release done = controller.AwaitEnd(controller.Create("pi-1", kMotdProfile, false));
  INFO(done.error_message);
  CHECK(done.state == release::ReleaseState::kSucceeded);
  CHECK(agent.Read("etc/motd") == "Hello from the runner test\n");
}

TEST_CASE("an unreachable controller is retried until it is up", "[runner_client]") {
  Pki pki;
  Controller controller(pki);
  controller.Stop();
  Agent agent(pki, controller.address(), "pi-1", "pi-1");
  std::this_thread::sleep_for(milliseconds(300));
  CHECK(agent.client().registrations() == 0);

  controller.Start();
  REQUIRE(Eventually([&] { return agent.client().registrations() == 1; }));
  CHECK(controller.AwaitEnd(controller.Create("pi-1", kMotdProfile, false)).state ==
        release::ReleaseState::kSucceeded);
}

TEST_CASE("Stop ends the retries at once while the controller is unreachable", "[runner_client]") {
  Pki pki;
  Controller controller(pki);
  controller.Stop();
  Agent agent(pki, controller.address(), "pi-1", "pi-1");
  std::this_thread::sleep_for(milliseconds(200));
  const auto started = std::chrono::steady_clock::now();
  agent.client().Stop();
  CHECK(std::chrono::steady_clock::now() - started < seconds(2));
  CHECK(agent.client().registrations() == 0);
}

TEST_CASE("a certificate that is not a node's or runner's is refused and retried",
          "[runner_client]") {
  Pki pki;
  Controller controller(pki);
  Agent agent(pki, controller.address(), "admin", "pi-1");
  std::this_thread::sleep_for(milliseconds(500));
  CHECK(agent.client().registrations() == 0);
  CHECK(controller.engine().Runners().empty());
  const auto started = std::chrono::steady_clock::now();
  agent.client().Stop();
  CHECK(std::chrono::steady_clock::now() - started < seconds(2));
}

TEST_CASE("stopping the agent cancels a running release, which the controller requeues",
          "[runner_client]") {
  Pki pki;
  Controller controller(pki);
  Agent agent(pki, controller.address(), "pi-1", "pi-1");

  const std::string id = controller.Create("pi-1", kSlowProfile, false);
  REQUIRE(Eventually([&] { return agent.client().active() == 1; }));
  REQUIRE(Eventually([&] { return controller.Get(id).state == release::ReleaseState::kRunning; }));
  const auto started = std::chrono::steady_clock::now();
  agent.client().Stop();
  CHECK(std::chrono::steady_clock::now() - started < seconds(5));
  CHECK(agent.client().active() == 0);
  // No outcome was reported: the controller lost the runner and gives the release another
  // attempt (3 by default).
  REQUIRE(Eventually([&] { return controller.Get(id).state == release::ReleaseState::kQueued; }));
  const release::Release requeued = controller.Get(id);
  CHECK(requeued.attempts == 1);
  CHECK_FALSE(std::filesystem::exists(agent.Path("etc/pi-provision/finished")));
}

TEST_CASE("a release cancelled on the controller stops its running command on the agent",
          "[runner_client]") {
  Pki pki;
  Controller controller(pki);
  Agent agent(pki, controller.address(), "pi-1", "pi-1");

  const std::string id = controller.Create("pi-1", kSlowProfile, false);
  // Step 1 has run: the sleep of step 2 is about to start or running.
  REQUIRE(
      Eventually([&] { return std::filesystem::exists(agent.Path("etc/pi-provision/started")); }));
  REQUIRE(agent.client().active() == 1);
  REQUIRE(controller.engine().Cancel(id, "admin:alice").ok());
  // The sleep has 30 seconds to go.
  const auto cancelled = std::chrono::steady_clock::now();
  REQUIRE(Eventually([&] { return agent.client().active() == 0; }, seconds(5)));
  CHECK(std::chrono::steady_clock::now() - cancelled < seconds(5));
  CHECK_FALSE(std::filesystem::exists(agent.Path("etc/pi-provision/finished")));
  const release::Release done = controller.Get(id);
  CHECK(done.state == release::ReleaseState::kCancelled);
  CHECK_THAT(done.error_message, Catch::Contains("admin:alice"));

  // The node is free for the next release.
  const release::Release next =
      controller.AwaitEnd(controller.Create("pi-1", kMotdProfile, false, /*max_attempts=*/1));
  CHECK(next.state == release::ReleaseState::kSucceeded);
}

TEST_CASE("a cancelled release stops once PushLogs answers UNAUTHENTICATED", "[runner_client]") {
  Pki pki;
  Controller controller(pki);
  // Heartbeats, and with them the token probes, are far apart: only PushLogs can tell.
  Agent agent(pki, controller.address(), "pi-1", "pi-1", 1, seconds(60));

  const std::string id = controller.Create("pi-1", R"({
    "name": "steps",
    "steps": [
      {"name": "first", "run": {"argv": ["/usr/bin/sleep", "1"]}},
      {"name": "second", "run": {"argv": ["/usr/bin/sleep", "1"]}},
      {"name": "long", "run": {"argv": ["/usr/bin/sleep", "30"], "timeout": "60s"}},
      {"name": "after", "write_file": {"path": "/etc/pi-provision/finished", "content": "x\n"}}
    ]
  })",
                                           false);
  REQUIRE(Eventually([&] { return controller.Get(id).state == release::ReleaseState::kRunning; }));
  REQUIRE(controller.engine().Cancel(id, "admin:alice").ok());
  // The line of the first step meets the revoked token; the line of the second finds the stream
  // ended, and the long step never starts.
  CHECK(Eventually([&] { return agent.client().active() == 0; }, seconds(8)));
  CHECK_FALSE(std::filesystem::exists(agent.Path("etc/pi-provision/finished")));
  CHECK(controller.Get(id).state == release::ReleaseState::kCancelled);
}

TEST_CASE("a release assigned as the previous one completes is taken, not refused as busy",
          "[runner_client]") {
  Pki pki;
  Controller controller(pki);
  // One slot: the controller frees it when it gets CompleteRelease and assigns the next release
  // at once, before the agent's thread of the previous one has ended.
  Agent agent(pki, controller.address(), "pi-1", "pi-1", /*max_concurrent=*/1);
  REQUIRE(Eventually([&] { return controller.Runner("pi-1").has_value(); }));

  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) {
    ids.push_back(controller.Create("pi-1", kMotdProfile, false, /*max_attempts=*/1));
  }
  for (const std::string& id : ids) {
    const release::Release done = controller.AwaitEnd(id);
    INFO(id << ": " << done.error_message);
    CHECK(done.state == release::ReleaseState::kSucceeded);
    CHECK(done.attempts == 1);
  }
}

}  // namespace
}  // namespace pi::agent::runner
