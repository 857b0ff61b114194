// The release, runner and provisioning commands end to end against in-process fake Admin and
// ControlPlane services over real mTLS on 127.0.0.1: the requests pictl sends, its output, when
// it stops reading a followed release and its exit codes.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/grpc/proto_time.h"
#include "common/tls/credentials.h"
#include "control-plane/pictl/cli.h"
#include "control-plane/pictl/format.h"
#include "picontroller/v1/admin.grpc.pb.h"
#include "picontroller/v1/control_plane.grpc.pb.h"
#include "tests/common/test_dir.h"
#include "tests/common/test_pki.h"
#include "tests/control-plane/pictl/stream_writer.h"

namespace pi::controlplane::pictl {
namespace {

namespace pb = ::picontroller::v1;
using std::chrono_literals::operator""s;

grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* context,
                                 const grpc::Status& status = grpc::Status::OK) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

class FakeAdmin : public pb::Admin::CallbackService {
 public:
  std::vector<pb::ReleaseEvent> events;
  bool hold_follow_open = false;
  // GetProvisioning answers these in turn, then repeats the last.
  std::vector<pb::Provisioning> provisioning_snapshots;
  pb::ListRunnersResponse runners;

  pb::CreateReleaseRequest last_create() const {
    std::lock_guard lock(mu_);
    return last_create_;
  }
  pb::ListReleasesRequest last_list() const {
    std::lock_guard lock(mu_);
    return last_list_;
  }
  pb::FollowReleaseRequest last_follow() const {
    std::lock_guard lock(mu_);
    return last_follow_;
  }
  int provisioning_calls() const {
    std::lock_guard lock(mu_);
    return provisioning_calls_;
  }

  grpc::ServerUnaryReactor* CreateRelease(grpc::CallbackServerContext* context,
                                          const pb::CreateReleaseRequest* request,
                                          pb::Release* response) override {
    {
      std::lock_guard lock(mu_);
      last_create_ = *request;
    }
    response->set_id("r1");
    response->set_state(pb::RELEASE_STATE_QUEUED);
    return Answer(context);
  }
  grpc::ServerUnaryReactor* ListReleases(grpc::CallbackServerContext* context,
                                         const pb::ListReleasesRequest* request,
                                         pb::ListReleasesResponse* response) override {
    {
      std::lock_guard lock(mu_);
      last_list_ = *request;
    }
    pb::Release* release = response->add_releases();
    release->set_id("r1");
    release->set_state(pb::RELEASE_STATE_RUNNING);
    return Answer(context);
  }
  grpc::ServerUnaryReactor* CancelRelease(grpc::CallbackServerContext* context,
                                          const pb::ReleaseRef* request, pb::Release*) override {
    return Answer(context, grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                        "release " + request->id() + " has already ended"));
  }
  grpc::ServerWriteReactor<pb::ReleaseEvent>* FollowRelease(
      grpc::CallbackServerContext*, const pb::FollowReleaseRequest* request) override {
    {
      std::lock_guard lock(mu_);
      last_follow_ = *request;
    }
    return new StreamWriter<pb::ReleaseEvent>(events, hold_follow_open);
  }
  grpc::ServerUnaryReactor* ListRunners(grpc::CallbackServerContext* context,
                                        const google::protobuf::Empty*,
                                        pb::ListRunnersResponse* response) override {
    *response = runners;
    return Answer(context);
  }
  grpc::ServerUnaryReactor* GetProvisioning(grpc::CallbackServerContext* context,
                                            const pb::ProvisioningRef*,
                                            pb::Provisioning* response) override {
    std::lock_guard lock(mu_);
    const size_t index =
        std::min(static_cast<size_t>(provisioning_calls_), provisioning_snapshots.size() - 1);
    ++provisioning_calls_;
    *response = provisioning_snapshots.at(index);
    return Answer(context);
  }

 private:
  mutable std::mutex mu_;
  pb::CreateReleaseRequest last_create_;
  pb::ListReleasesRequest last_list_;
  pb::FollowReleaseRequest last_follow_;
  int provisioning_calls_ = 0;
};

class FakeControlPlane : public pb::ControlPlane::CallbackService {
 public:
  grpc::Status status = grpc::Status::OK;
  pb::ProvisioningRequest last_request() const {
    std::lock_guard lock(mu_);
    return last_request_;
  }

  grpc::ServerUnaryReactor* RequestProvisioning(grpc::CallbackServerContext* context,
                                                const pb::ProvisioningRequest* request,
                                                pb::ProvisioningResponse* response) override {
    {
      std::lock_guard lock(mu_);
      last_request_ = *request;
    }
    response->set_provisioning_id("p1");
    response->add_release_ids("r1");
    response->add_node_ids("pi-1");
    response->add_release_ids("r2");
    response->add_node_ids("pi-2");
    return Answer(context, status);
  }

 private:
  mutable std::mutex mu_;
  pb::ProvisioningRequest last_request_;
};

struct Result {
  int code;
  std::string out;
  std::string err;
};

struct Fixture {
  Fixture() {
    pki.Issue("controller", "controller", "--dns localhost --ip 127.0.0.1");
    pki.Issue("admin", "admin:alice");
    auto credentials =
        common::MakeServerCredentials({pki.File("controller.crt"), pki.File("controller.key"),
                                       pki.File("ca.crt"), common::ClientAuth::kRequireAndVerify});
    REQUIRE(credentials.ok());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", *credentials, &port);
    builder.RegisterService(&admin);
    builder.RegisterService(&control_plane);
    server = builder.BuildAndStart();
    REQUIRE(server != nullptr);
    config = pki.dir().Write("config.json",
                             nlohmann::json{{"controller", "127.0.0.1:" + std::to_string(port)},
                                            {"ca_file", "ca.crt"},
                                            {"cert_file", "admin.crt"},
                                            {"key_file", "admin.key"}}
                                 .dump());
  }
  ~Fixture() { server->Shutdown(std::chrono::system_clock::now() + 5s); }

  Result Run(std::vector<std::string> args) {
    args.insert(args.begin(), {"pictl", "--config", config});
    std::vector<const char*> argv;
    for (const auto& arg : args) argv.push_back(arg.c_str());
    std::ostringstream out;
    std::ostringstream err;
    const RunContext context{Environment{}, "9.9.9", &clock, &interrupt};
    const int code = RunPictl(static_cast<int>(argv.size()), argv.data(), context, out, err);
    return {code, out.str(), err.str()};
  }

  pi::testing::TestPki pki;
  FakeAdmin admin;
  FakeControlPlane control_plane;
  std::unique_ptr<grpc::Server> server;
  common::ManualClock clock;
  common::CancelToken interrupt;
  std::string config;
};

pb::ReleaseEvent ReleaseEvent(pb::ReleaseState state, int64_t log_lines = 0,
                              const std::string& error = "") {
  pb::ReleaseEvent event;
  event.mutable_release()->set_id("r1");
  event.mutable_release()->set_state(state);
  event.mutable_release()->set_log_lines(log_lines);
  event.mutable_release()->set_error_message(error);
  return event;
}

pb::ReleaseEvent LogEvent(int64_t sequence, const std::string& channel, const std::string& text) {
  pb::ReleaseEvent event;
  event.mutable_log()->set_sequence(sequence);
  event.mutable_log()->set_channel(channel);
  event.mutable_log()->set_line(text);
  return event;
}

pb::Provisioning Snapshot(pb::ReleaseState first, pb::ReleaseState second, bool plan = false) {
  pb::Provisioning provisioning;
  provisioning.set_id("p1");
  provisioning.set_plan(plan);
  int index = 1;
  for (pb::ReleaseState state : {first, second}) {
    pb::Release* release = provisioning.add_releases();
    release->set_id("r" + std::to_string(index));
    release->set_node_id("pi-" + std::to_string(index));
    release->set_state(state);
    release->set_plan(plan);
    if (ReleaseEnded(state)) {
      release->set_plan_output("Plan: 1 to change, 0 unchanged.");
    }
    ++index;
  }
  return provisioning;
}

}  // namespace

TEST_CASE("releases create sends the directory's files and the release's own timeout") {
  Fixture f;
  f.pki.dir().Write("release/app.yaml", "replicas: 2\n");
  f.pki.dir().Write("release/conf/extra.txt", "x");
  const std::string dir = (f.pki.dir().path() / "release").string();

  // The global --timeout (before the subcommand) is the call's deadline; the subcommand's is the
  // release's.
  Result result =
      f.Run({"--timeout", "20s", "releases", "create", "--type", "acme/deploy@1", "--dir", dir,
             "--node", "pi-1", "--meta", "region=eu", "--timeout", "10m", "--plan"});

  INFO(result.err);
  CHECK(result.code == 0);
  CHECK(result.out == "release r1 created: QUEUED\n");
  const pb::CreateReleaseRequest sent = f.admin.last_create();
  REQUIRE(sent.artifact_files_size() == 2);
  CHECK(sent.artifact_files(0).name() == "app.yaml");
  CHECK(sent.artifact_files(1).name() == "conf/extra.txt");
  CHECK(sent.timeout().seconds() == 600);
  CHECK(sent.node_id() == "pi-1");
  CHECK(sent.plan());
  CHECK(sent.destination_metadata().at("region") == "eu");
}

TEST_CASE("releases create with a bad type is a usage error and sends nothing") {
  Fixture f;
  f.pki.dir().Write("release/app.yaml", "x");
  Result result = f.Run({"releases", "create", "--type", "deploy", "--dir",
                         (f.pki.dir().path() / "release").string()});
  CHECK(result.code == 2);
  CHECK_THAT(result.err, Catch::Matchers::Contains("--type"));
  CHECK(f.admin.last_create().artifact_files().empty());
}

TEST_CASE("releases list passes the filters; cancel reports the controller's refusal") {
  Fixture f;
  Result listed =
      f.Run({"releases", "list", "--state", "running,queued", "--node", "pi-1", "--limit", "5"});
  INFO(listed.err);
  CHECK(listed.code == 0);
  CHECK_THAT(listed.out, Catch::Matchers::StartsWith("ID  STATE"));
  CHECK(f.admin.last_list().states_size() == 2);
  CHECK(f.admin.last_list().node_id() == "pi-1");
  CHECK(f.admin.last_list().limit() == 5);

  CHECK(f.Run({"releases", "list", "--state", "bogus"}).code == 2);
  CHECK(f.Run({"releases", "list", "--limit", "0"}).code == 2);

  Result cancelled = f.Run({"releases", "cancel", "r1"});
  CHECK(cancelled.code == 1);
  CHECK_THAT(cancelled.err, Catch::Matchers::Contains("has already ended"));
}

TEST_CASE("releases logs without -f prints the stored lines and stops") {
  Fixture f;
  f.admin.events = {ReleaseEvent(pb::RELEASE_STATE_RUNNING, 2), LogEvent(1, "stdout", "one"),
                    LogEvent(2, "stderr", "two")};
  // The release is still running: only pictl can end the call.
  f.admin.hold_follow_open = true;

  Result result = f.Run({"releases", "logs", "r1"});

  INFO(result.err);
  CHECK(result.code == 0);
  CHECK(result.out == "one\nstderr: two\n");
  CHECK(f.admin.last_follow().id() == "r1");
}

TEST_CASE("releases logs of a release with no lines prints nothing and stops") {
  Fixture f;
  f.admin.events = {ReleaseEvent(pb::RELEASE_STATE_QUEUED, 0)};
  f.admin.hold_follow_open = true;
  Result result = f.Run({"releases", "logs", "r1"});
  CHECK(result.code == 0);
  CHECK(result.out.empty());
}

TEST_CASE("releases logs -f prints lines until the release ends, states on stderr") {
  Fixture f;
  f.admin.events = {ReleaseEvent(pb::RELEASE_STATE_RUNNING, 0), LogEvent(1, "stdout", "working"),
                    ReleaseEvent(pb::RELEASE_STATE_SUCCEEDED, 1)};
  Result result = f.Run({"releases", "logs", "r1", "-f"});
  CHECK(result.code == 0);
  CHECK(result.out == "working\n");
  CHECK(result.err == "release r1 SUCCEEDED\n");
}

TEST_CASE("releases wait exits 0 only for SUCCEEDED") {
  Fixture f;
  f.admin.events = {ReleaseEvent(pb::RELEASE_STATE_RUNNING), LogEvent(1, "stdout", "ignored"),
                    ReleaseEvent(pb::RELEASE_STATE_SUCCEEDED)};
  Result succeeded = f.Run({"releases", "wait", "r1"});
  CHECK(succeeded.code == 0);
  CHECK(succeeded.out == "release r1 RUNNING\nrelease r1 SUCCEEDED\n");
  // Stored lines are not asked for.
  CHECK(f.admin.last_follow().after_sequence() == std::numeric_limits<int64_t>::max());

  f.admin.events = {ReleaseEvent(pb::RELEASE_STATE_RUNNING),
                    ReleaseEvent(pb::RELEASE_STATE_FAILED, 0, "exit 2")};
  Result failed = f.Run({"releases", "wait", "r1"});
  CHECK(failed.code == 1);
  CHECK_THAT(failed.out, Catch::Matchers::EndsWith("release r1 FAILED: exit 2\n"));

  f.admin.events = {ReleaseEvent(pb::RELEASE_STATE_RUNNING)};
  Result cut = f.Run({"releases", "wait", "r1"});
  CHECK(cut.code == 1);
  CHECK_THAT(cut.err, Catch::Matchers::Contains("before the release ended"));

  f.admin.events = {ReleaseEvent(pb::RELEASE_STATE_SUCCEEDED)};
  Result json = f.Run({"releases", "wait", "r1", "--json"});
  CHECK(json.code == 0);
  CHECK(nlohmann::json::parse(json.out)["state"] == "RELEASE_STATE_SUCCEEDED");
}

TEST_CASE("runners prints the connected runners") {
  Fixture f;
  pb::RunnerInfo* runner = f.admin.runners.add_runners();
  runner->set_runner_id("ci-1");
  runner->set_identity("runner:ci");
  Result result = f.Run({"runners"});
  CHECK(result.code == 0);
  CHECK_THAT(result.out, Catch::Matchers::Contains("ci-1  runner:ci"));
}

TEST_CASE("provision sends the request and waits for every release") {
  Fixture f;
  f.admin.provisioning_snapshots = {
      Snapshot(pb::RELEASE_STATE_RUNNING, pb::RELEASE_STATE_QUEUED, /*plan=*/true),
      Snapshot(pb::RELEASE_STATE_SUCCEEDED, pb::RELEASE_STATE_SUCCEEDED, /*plan=*/true)};

  Result result = f.Run({"provision", "hostname", "--selector", "role=sensor", "--param",
                         "hostname=pi-kitchen", "--plan"});

  INFO(result.err);
  CHECK(result.code == 0);
  const pb::ProvisioningRequest sent = f.control_plane.last_request();
  CHECK(sent.profile() == "hostname");
  CHECK(sent.label_selector() == "role=sensor");
  CHECK(sent.parameters().at("hostname") == "pi-kitchen");
  CHECK(sent.mode() == pb::ProvisioningRequest::MODE_PLAN);
  CHECK(result.out ==
        "provisioning p1: plan hostname on 2 nodes\n"
        "NODE  RELEASE\n"
        "pi-1  r1\n"
        "pi-2  r2\n"
        "pi-1  r1  RUNNING\n"
        "pi-2  r2  QUEUED\n"
        "pi-1  r1  SUCCEEDED\n"
        "pi-2  r2  SUCCEEDED\n"
        "--- plan for node pi-1 (release r1) ---\n"
        "Plan: 1 to change, 0 unchanged.\n"
        "--- plan for node pi-2 (release r2) ---\n"
        "Plan: 1 to change, 0 unchanged.\n"
        "provisioning p1: 2 of 2 succeeded\n");
}

TEST_CASE("provision exits 1 when a release does not succeed") {
  Fixture f;
  f.admin.provisioning_snapshots = {
      Snapshot(pb::RELEASE_STATE_SUCCEEDED, pb::RELEASE_STATE_FAILED)};
  Result result = f.Run({"provision", "base", "--all"});
  CHECK(result.code == 1);
  CHECK_THAT(result.out, Catch::Matchers::EndsWith("provisioning p1: 1 of 2 succeeded\n"));
  CHECK(f.control_plane.last_request().all_nodes());
  CHECK(f.control_plane.last_request().mode() == pb::ProvisioningRequest::MODE_APPLY);
}

TEST_CASE("provision --no-wait only prints the releases") {
  Fixture f;
  f.admin.provisioning_snapshots = {Snapshot(pb::RELEASE_STATE_QUEUED, pb::RELEASE_STATE_QUEUED)};
  Result result = f.Run({"provision", "base", "--node", "pi-1", "--no-wait"});
  CHECK(result.code == 0);
  CHECK(f.admin.provisioning_calls() == 0);
  CHECK(f.control_plane.last_request().node_id() == "pi-1");
}

TEST_CASE("provision refuses bad targets and reports the controller's refusal") {
  Fixture f;
  CHECK(f.Run({"provision", "base"}).code == 2);
  CHECK(f.Run({"provision", "base", "--node", "pi-1", "--all"}).code == 2);
  CHECK(f.Run({"provision", "--all"}).code == 2);
  CHECK(f.Run({"provision", "base", "--all", "--param", "novalue"}).code == 2);

  f.control_plane.status =
      grpc::Status(grpc::StatusCode::NOT_FOUND, "no provisioning profile \"nope\"");
  Result refused = f.Run({"provision", "nope", "--all"});
  CHECK(refused.code == 1);
  CHECK_THAT(refused.err, Catch::Matchers::Contains("no provisioning profile"));
}

TEST_CASE("provision status shows the request and its releases") {
  Fixture f;
  f.admin.provisioning_snapshots = {
      Snapshot(pb::RELEASE_STATE_SUCCEEDED, pb::RELEASE_STATE_RUNNING)};
  Result result = f.Run({"provision", "status", "p1"});
  INFO(result.err);
  CHECK(result.code == 0);
  CHECK_THAT(result.out, Catch::Matchers::Contains("Provisioning:  p1\n"));
  CHECK_THAT(result.out, Catch::Matchers::Contains("pi-2  r2       RUNNING"));
  CHECK(f.control_plane.last_request().profile().empty());
}

}  // namespace pi::controlplane::pictl
