// The Admin service's release RPCs and ControlPlane.RequestProvisioning on a real gRPC server with
// mutual TLS, backed by a real release engine over SQLite and a real cluster in a temporary
// directory. The runner side is a RunnerChannel of the test's own connected to the engine, which
// captures assignments (and so the release tokens) to drive releases to their end.
#include <grpcpp/grpcpp.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/grpc/proto_time.h"
#include "common/system/clock.h"
#include "common/tls/credentials.h"
#include "common/tls/x509.h"
#include "control-plane/admin/admin_service.h"
#include "control-plane/cluster/certificate_authority.h"
#include "control-plane/cluster/control_plane_service.h"
#include "control-plane/provisioning/provisioner.h"
#include "control-plane/queue/queue_engine.h"
#include "control-plane/queue/sqlite_queue_store.h"
#include "control-plane/release/release_engine.h"
#include "control-plane/release/sqlite_release_store.h"
#include "control-plane/store/sqlite_cluster_store.h"
#include "picontroller/v1/admin.grpc.pb.h"
#include "picontroller/v1/control_plane.grpc.pb.h"
#include "tests/common/require.h"
#include "tests/common/test_dir.h"
#include "tests/control-plane/admin/admin_test_support.h"

namespace pi::controlplane::admin {
namespace {

namespace pb = ::picontroller::v1;
using std::chrono_literals::operator""s;

const release::DestinationType kDeployType{"acme", "deploy", 1};
const common::Identity kAdmin{common::Role::kAdmin, "alice"};

constexpr char kBaseProfile[] = R"({
  "name": "base",
  "parameters": {"greeting": {"type": "string", "default": "hello"}},
  "steps": [{"name": "os-release exists", "check": {"path": "/etc/os-release"}}]
})";

using pi::testing::Require;
using testing::CertFiles;
using testing::IssueFiles;

// The engine's side of a runner: keeps what it is given.
class CapturingChannel : public release::RunnerChannel {
 public:
  void Assign(const release::Assignment& assignment) override {
    std::lock_guard lock(mu_);
    assignments_.push_back(assignment);
    changed_.notify_all();
  }
  void Close(const absl::Status&) override {}

  // The token of the assignment of `release_id`; fails the test after 10 s without one.
  std::string TokenFor(const std::string& release_id) {
    std::unique_lock lock(mu_);
    std::string token;
    const bool found = changed_.wait_for(lock, 10s, [&] {
      for (const release::Assignment& assignment : assignments_) {
        if (assignment.release.id == release_id) token = assignment.token;
      }
      return !token.empty();
    });
    REQUIRE(found);
    return token;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<release::Assignment> assignments_;
};

// The controller's parts: cluster, queue engine (no routes), release engine, provisioner, and the
// Admin and ControlPlane services on 127.0.0.1 with mTLS.
struct Controller {
  explicit Controller(AdminService::Options options = {}) : service(Make(options)) {
    dir.Write("profiles/base.json", kBaseProfile);
    releases->Start();
    server = Start();
  }

  ~Controller() {
    service->Shutdown();
    server->Shutdown(std::chrono::system_clock::now() + 5s);
  }

  std::unique_ptr<AdminService> Make(AdminService::Options options) {
    return std::make_unique<AdminService>(*cluster, dialer, options, *queues, *releases);
  }

  std::unique_ptr<grpc::Server> Start() {
    auto credentials = common::MakeServerCredentials(
        {server_files.cert, server_files.key, ca_file, common::ClientAuth::kRequireAndVerify});
    REQUIRE(credentials.ok());
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", *credentials, &port);
    builder.RegisterService(service.get());
    builder.RegisterService(&control_plane);
    std::unique_ptr<grpc::Server> started = builder.BuildAndStart();
    REQUIRE(started != nullptr);
    REQUIRE(port > 0);
    return started;
  }

  std::shared_ptr<grpc::Channel> Channel(const CertFiles& client) const {
    auto credentials = common::MakeChannelCredentials({ca_file, client.cert, client.key});
    REQUIRE(credentials.ok());
    return grpc::CreateChannel("127.0.0.1:" + std::to_string(port), *credentials);
  }
  std::unique_ptr<pb::Admin::Stub> Stub(const CertFiles& client) const {
    return pb::Admin::NewStub(Channel(client));
  }

  // A runner "ci" that takes acme/deploy@1 releases, up to `slots` at once.
  std::shared_ptr<CapturingChannel> ConnectRunner(int slots = 4) {
    auto channel = std::make_shared<CapturingChannel>();
    release::RunnerHello hello;
    hello.runner_id = "ci-1";
    hello.capabilities = {kDeployType};
    hello.max_concurrent = slots;
    Require(releases->ConnectRunner(common::Identity{common::Role::kRunner, "ci"}, hello, channel));
    return channel;
  }

  // Joins `hostname` and sends its first heartbeat: READY.
  std::string JoinReady(const std::string& hostname) {
    cluster::Registration registration;
    registration.join_token =
        Require(cluster->CreateJoinToken(kAdmin, "test", std::nullopt, std::nullopt)).text;
    registration.hostname = hostname;
    registration.agent_address = "10.0.0.5:9091";
    registration.peer_host = "10.0.0.5";
    registration.csr_pem =
        Require(common::CreateCsr(Require(common::GenerateEcPrivateKeyPem()), "node:x", {}));
    cluster::RegistrationResult joined =
        Require(cluster->RegisterNode(registration, cluster::Caller{}));
    common::CertificateInfo info = Require(common::ParseCertificate(joined.certificate_pem));
    REQUIRE(cluster
                ->ReportHealth(cluster::Caller{Require(common::ParseIdentity(info.common_name)),
                                               info.sha256_fingerprint},
                               joined.node_id, "{}")
                .ok());
    return joined.node_id;
  }

  pi::testing::TempDir dir;
  const common::Clock& clock = common::RealClock();
  cluster::CertificateAuthority ca =
      Require(cluster::CertificateAuthority::LoadOrCreate(dir.path().string(), clock));
  std::string ca_file = (dir.path() / "ca.crt").string();
  CertFiles server_files =
      IssueFiles(dir, ca, "controller", "controller", {"localhost", "127.0.0.1"});
  CertFiles admin_files = IssueFiles(dir, ca, "admin", "admin:alice");
  CertFiles node_files = IssueFiles(dir, ca, "node", "node:pi-1");

  std::unique_ptr<store::SqliteClusterStore> cluster_store =
      Require(store::SqliteClusterStore::Open((dir.path() / "cluster.db").string(), clock));
  std::unique_ptr<cluster::Cluster> cluster =
      Require(cluster::Cluster::Create(*cluster_store, ca, clock, cluster::ClusterOptions{}));
  cluster::AgentDialer dialer{grpc::InsecureChannelCredentials()};
  std::unique_ptr<queue::SqliteQueueStore> queue_store =
      Require(queue::SqliteQueueStore::Open((dir.path() / "queue.db").string(), clock));
  std::unique_ptr<queue::QueueEngine> queues = Require(
      queue::QueueEngine::Open(*queue_store, clock, std::map<std::string, queue::QueueLimits>{}));
  std::unique_ptr<release::SqliteReleaseStore> release_store =
      Require(release::SqliteReleaseStore::Open((dir.path() / "releases.db").string()));
  std::unique_ptr<release::ReleaseEngine> releases =
      Require(release::ReleaseEngine::Open(*release_store, clock, release::ReleaseOptions{}));
  provisioning::Provisioner provisioner{*releases, *cluster, (dir.path() / "profiles").string()};
  cluster::ControlPlaneService control_plane{*cluster, &provisioner};

  std::unique_ptr<AdminService> service;
  int port = 0;
  std::unique_ptr<grpc::Server> server;
};

grpc::ClientContext* WithDeadline(grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() + 10s);
  return context;
}

pb::CreateReleaseRequest DeployRequest() {
  pb::CreateReleaseRequest request;
  pb::ReleaseFileContent* file = request.add_artifact_files();
  file->set_name("app/config.yaml");
  file->set_content("replicas: 2\n");
  pb::ReleaseFileContent* spec = request.add_spec_files();
  spec->set_name("spec.json");
  spec->set_content("{}");
  request.mutable_destination_type()->set_organisation(kDeployType.organisation);
  request.mutable_destination_type()->set_name(kDeployType.name);
  request.mutable_destination_type()->set_version(kDeployType.version);
  request.set_destination_name("web");
  request.set_environment("prod");
  (*request.mutable_destination_metadata())["region"] = "eu";
  request.mutable_annotation()->set_slug("web-42");
  request.set_max_attempts(2);
  *request.mutable_timeout() = common::ToProtoDuration(std::chrono::minutes(5));
  return request;
}

grpc::Status Create(pb::Admin::Stub& stub, const pb::CreateReleaseRequest& request,
                    pb::Release* response) {
  grpc::ClientContext context;
  return stub.CreateRelease(WithDeadline(&context), request, response);
}

pb::Release MustCreate(pb::Admin::Stub& stub,
                       const pb::CreateReleaseRequest& request = DeployRequest()) {
  pb::Release created;
  grpc::Status status = Create(stub, request, &created);
  INFO(status.error_message());
  REQUIRE(status.ok());
  REQUIRE_FALSE(created.id().empty());
  return created;
}

grpc::Status Get(pb::Admin::Stub& stub, const std::string& id, pb::Release* response) {
  pb::ReleaseRef ref;
  ref.set_id(id);
  grpc::ClientContext context;
  return stub.GetRelease(WithDeadline(&context), ref, response);
}

grpc::Status Cancel(pb::Admin::Stub& stub, const std::string& id, pb::Release* response) {
  pb::ReleaseRef ref;
  ref.set_id(id);
  grpc::ClientContext context;
  return stub.CancelRelease(WithDeadline(&context), ref, response);
}

grpc::Status List(pb::Admin::Stub& stub, const pb::ListReleasesRequest& request,
                  pb::ListReleasesResponse* response) {
  grpc::ClientContext context;
  return stub.ListReleases(WithDeadline(&context), request, response);
}

std::vector<std::string> ListedIds(pb::Admin::Stub& stub, const pb::ListReleasesRequest& request) {
  pb::ListReleasesResponse response;
  grpc::Status status = List(stub, request, &response);
  INFO(status.error_message());
  REQUIRE(status.ok());
  std::vector<std::string> ids;
  for (const pb::Release& item : response.releases()) ids.push_back(item.id());
  return ids;
}

// A FollowRelease call read on a thread of its own.
class Follow {
 public:
  Follow(pb::Admin::Stub& stub, const std::string& id, int64_t after_sequence = 0) {
    pb::FollowReleaseRequest request;
    request.set_id(id);
    request.set_after_sequence(after_sequence);
    context_.set_deadline(std::chrono::system_clock::now() + 30s);
    reader_ = stub.FollowRelease(&context_, request);
    thread_ = std::thread([this] {
      pb::ReleaseEvent event;
      while (reader_->Read(&event)) {
        std::lock_guard lock(mu_);
        events_.push_back(event);
        changed_.notify_all();
      }
      grpc::Status status = reader_->Finish();
      std::lock_guard lock(mu_);
      status_ = status;
      changed_.notify_all();
    });
  }
  ~Follow() {
    context_.TryCancel();
    thread_.join();
  }

  // Waits (10 s at most) until `done` holds for the events so far.
  bool WaitUntil(const std::function<bool(const std::vector<pb::ReleaseEvent>&)>& done) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, 10s, [&] { return done(events_); });
  }
  bool WaitForLogLines(size_t count) {
    return WaitUntil([count](const std::vector<pb::ReleaseEvent>& events) {
      size_t lines = 0;
      for (const pb::ReleaseEvent& event : events) lines += event.has_log() ? 1 : 0;
      return lines >= count;
    });
  }
  grpc::Status Finished() {
    std::unique_lock lock(mu_);
    REQUIRE(changed_.wait_for(lock, 10s, [&] { return status_.has_value(); }));
    return *status_;
  }
  std::vector<pb::ReleaseEvent> events() {
    std::lock_guard lock(mu_);
    return events_;
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<pb::ReleaseEvent>> reader_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<pb::ReleaseEvent> events_;
  std::optional<grpc::Status> status_;
  std::thread thread_;
};

std::vector<std::string> LogTexts(const std::vector<pb::ReleaseEvent>& events) {
  std::vector<std::string> lines;
  for (const pb::ReleaseEvent& event : events) {
    if (event.has_log()) lines.push_back(event.log().channel() + ":" + event.log().line());
  }
  return lines;
}

std::vector<pb::ReleaseState> States(const std::vector<pb::ReleaseEvent>& events) {
  std::vector<pb::ReleaseState> states;
  for (const pb::ReleaseEvent& event : events) {
    if (event.has_release()) states.push_back(event.release().state());
  }
  return states;
}

release::LogLine Line(const std::string& channel, const std::string& text) {
  release::LogLine line;
  line.channel = channel;
  line.line = text;
  line.timestamp_ms = 1700000000000;
  return line;
}

// ---- create, get, list
// ---------------------------------------------------------------------------

TEST_CASE("CreateRelease stores the release as asked; GetRelease answers it") {
  Controller c;
  auto admin = c.Stub(c.admin_files);

  const pb::Release created = MustCreate(*admin);

  CHECK(created.state() == pb::RELEASE_STATE_QUEUED);
  CHECK_FALSE(created.plan());
  CHECK(created.destination_type().organisation() == "acme");
  CHECK(created.destination_type().name() == "deploy");
  CHECK(created.destination_type().version() == 1);
  CHECK(created.destination_name() == "web");
  CHECK(created.environment() == "prod");
  CHECK(created.destination_metadata().at("region") == "eu");
  CHECK(created.max_attempts() == 2);
  CHECK(created.timeout().seconds() == 300);
  CHECK(created.annotation().slug() == "web-42");
  CHECK(created.artifact_file_names_size() == 1);
  CHECK(created.artifact_file_names(0) == "app/config.yaml");
  CHECK(created.spec_file_names(0) == "spec.json");
  CHECK(created.has_created_at());
  CHECK_FALSE(created.has_finished_at());
  REQUIRE(created.history_size() == 1);
  CHECK(created.history(0).state() == pb::RELEASE_STATE_QUEUED);

  pb::Release got;
  REQUIRE(Get(*admin, created.id(), &got).ok());
  CHECK(got.id() == created.id());
  CHECK(got.state() == pb::RELEASE_STATE_QUEUED);
  CHECK(got.environment() == "prod");
}

TEST_CASE("CreateRelease refuses bad releases with INVALID_ARGUMENT and stores none") {
  Controller c;
  auto admin = c.Stub(c.admin_files);

  pb::CreateReleaseRequest escaping = DeployRequest();
  escaping.mutable_artifact_files(0)->set_name("../etc/passwd");
  pb::CreateReleaseRequest no_type = DeployRequest();
  no_type.clear_destination_type();
  pb::CreateReleaseRequest negative_timeout = DeployRequest();
  *negative_timeout.mutable_timeout() = common::ToProtoDuration(std::chrono::seconds(-5));
  pb::CreateReleaseRequest pin_conflict = DeployRequest();
  pin_conflict.set_node_id("pi-1");
  (*pin_conflict.mutable_destination_metadata())["node_id"] = "pi-2";

  for (const auto& [what, request] : std::vector<std::pair<std::string, pb::CreateReleaseRequest>>{
           {"a file name with ..", escaping},
           {"no destination type", no_type},
           {"a negative timeout", negative_timeout},
           {"a node_id that disagrees with the metadata", pin_conflict}}) {
    INFO(what);
    pb::Release response;
    grpc::Status status = Create(*admin, request, &response);
    INFO(status.error_message());
    CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  }
  CHECK(ListedIds(*admin, pb::ListReleasesRequest{}).empty());
}

TEST_CASE("ListReleases filters by state and node, newest first, and checks its limit") {
  Controller c;
  auto admin = c.Stub(c.admin_files);
  const std::string first = MustCreate(*admin).id();
  pb::CreateReleaseRequest pinned = DeployRequest();
  pinned.set_node_id("pi-7");
  const std::string second = MustCreate(*admin, pinned).id();
  pb::Release cancelled;
  REQUIRE(Cancel(*admin, first, &cancelled).ok());

  CHECK(ListedIds(*admin, pb::ListReleasesRequest{}) == std::vector<std::string>{second, first});
  pb::ListReleasesRequest queued;
  queued.add_states(pb::RELEASE_STATE_QUEUED);
  CHECK(ListedIds(*admin, queued) == std::vector<std::string>{second});
  pb::ListReleasesRequest on_node;
  on_node.set_node_id("pi-7");
  CHECK(ListedIds(*admin, on_node) == std::vector<std::string>{second});
  pb::ListReleasesRequest one;
  one.set_limit(1);
  CHECK(ListedIds(*admin, one) == std::vector<std::string>{second});

  for (int limit : {-1, 1001}) {
    pb::ListReleasesRequest bad;
    bad.set_limit(limit);
    pb::ListReleasesResponse response;
    CHECK(List(*admin, bad, &response).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  }
  pb::ListReleasesRequest bad_state;
  bad_state.add_states(pb::RELEASE_STATE_UNSPECIFIED);
  pb::ListReleasesResponse response;
  CHECK(List(*admin, bad_state, &response).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_CASE("GetRelease and CancelRelease name unknown and missing ids") {
  Controller c;
  auto admin = c.Stub(c.admin_files);
  pb::Release response;
  CHECK(Get(*admin, "r-404", &response).error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(Get(*admin, "", &response).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(Cancel(*admin, "r-404", &response).error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(Cancel(*admin, "", &response).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
}

// ---- cancel ------------------------------------------------------------------------------------

TEST_CASE("CancelRelease ends a release once; the runner's token stops working") {
  Controller c;
  auto admin = c.Stub(c.admin_files);
  auto runner = c.ConnectRunner();
  const pb::Release created = MustCreate(*admin);
  const std::string token = runner->TokenFor(created.id());
  REQUIRE(c.releases->Authorize(token).ok());

  pb::Release cancelled;
  grpc::Status status = Cancel(*admin, created.id(), &cancelled);
  INFO(status.error_message());
  REQUIRE(status.ok());
  CHECK(cancelled.state() == pb::RELEASE_STATE_CANCELLED);
  CHECK(cancelled.has_finished_at());
  CHECK_THAT(cancelled.error_message(), Catch::Matchers::Contains("admin:alice"));
  CHECK(absl::IsUnauthenticated(c.releases->Authorize(token).status()));

  pb::Release again;
  CHECK(Cancel(*admin, created.id(), &again).error_code() == grpc::StatusCode::FAILED_PRECONDITION);
}

// ---- follow ------------------------------------------------------------------------------------

TEST_CASE("FollowRelease streams state and log lines live and ends after the release ends") {
  Controller c;
  auto admin = c.Stub(c.admin_files);
  auto runner = c.ConnectRunner();
  const pb::Release created = MustCreate(*admin);
  const std::string token = runner->TokenFor(created.id());

  Follow follow(*admin, created.id());
  REQUIRE(follow.WaitUntil([](const auto& events) { return !events.empty(); }));
  CHECK(follow.events()[0].release().state() == pb::RELEASE_STATE_ASSIGNED);

  REQUIRE(c.releases->AppendLogs(token, {Line("stdout", "starting"), Line("stderr", "warn")}).ok());
  REQUIRE(follow.WaitForLogLines(2));
  REQUIRE(c.releases->AppendLogs(token, {Line("stdout", "done")}).ok());
  REQUIRE(follow.WaitForLogLines(3));
  Require(c.releases->Complete(token, release::ReleaseEngine::Outcome::kSuccess, "", std::nullopt));

  const grpc::Status status = follow.Finished();
  INFO(status.error_message());
  CHECK(status.ok());
  const std::vector<pb::ReleaseEvent> events = follow.events();
  CHECK(LogTexts(events) ==
        std::vector<std::string>{"stdout:starting", "stderr:warn", "stdout:done"});
  const std::vector<pb::ReleaseState> states = States(events);
  REQUIRE_FALSE(states.empty());
  CHECK(std::find(states.begin(), states.end(), pb::RELEASE_STATE_RUNNING) != states.end());
  CHECK(states.back() == pb::RELEASE_STATE_SUCCEEDED);
  CHECK(events.back().has_release());
}

TEST_CASE("FollowRelease of an ended release replays it from after_sequence and ends") {
  Controller c;
  auto admin = c.Stub(c.admin_files);
  auto runner = c.ConnectRunner();
  const pb::Release created = MustCreate(*admin);
  const std::string token = runner->TokenFor(created.id());
  REQUIRE(c.releases
              ->AppendLogs(token,
                           {Line("stdout", "one"), Line("stdout", "two"), Line("stdout", "three")})
              .ok());
  Require(c.releases->Complete(token, release::ReleaseEngine::Outcome::kFailure, "exit 2",
                               std::nullopt));

  Follow all(*admin, created.id());
  CHECK(all.Finished().ok());
  CHECK(LogTexts(all.events()) ==
        std::vector<std::string>{"stdout:one", "stdout:two", "stdout:three"});
  REQUIRE_FALSE(all.events().empty());
  CHECK(all.events()[0].release().state() == pb::RELEASE_STATE_FAILED);
  CHECK(all.events()[0].release().error_message() == "exit 2");
  CHECK(all.events()[0].release().log_lines() == 3);

  Follow tail(*admin, created.id(), 2);
  CHECK(tail.Finished().ok());
  CHECK(LogTexts(tail.events()) == std::vector<std::string>{"stdout:three"});
}

TEST_CASE("FollowRelease refuses unknown releases and bad arguments") {
  Controller c;
  auto admin = c.Stub(c.admin_files);
  Follow unknown(*admin, "r-404");
  CHECK(unknown.Finished().error_code() == grpc::StatusCode::NOT_FOUND);
  Follow no_id(*admin, "");
  CHECK(no_id.Finished().error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  Follow negative(*admin, MustCreate(*admin).id(), -1);
  CHECK(negative.Finished().error_code() == grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_CASE("FollowRelease ends with UNAVAILABLE when the service shuts down") {
  Controller c;
  auto admin = c.Stub(c.admin_files);
  const pb::Release created = MustCreate(*admin);
  Follow follow(*admin, created.id());
  REQUIRE(follow.WaitUntil([](const auto& events) { return !events.empty(); }));

  c.service->Shutdown();

  CHECK(follow.Finished().error_code() == grpc::StatusCode::UNAVAILABLE);
}

TEST_CASE("FollowRelease counts against max_streams; a cancelled follow frees its slot") {
  Controller c(AdminService::Options{.max_streams = 1});
  auto admin = c.Stub(c.admin_files);
  const pb::Release created = MustCreate(*admin);
  {
    Follow first(*admin, created.id());
    REQUIRE(first.WaitUntil([](const auto& events) { return !events.empty(); }));
    Follow second(*admin, created.id());
    CHECK(second.Finished().error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  // The slot comes back once the server has seen the cancellation.
  bool followed = false;
  for (int i = 0; i < 100 && !followed; ++i) {
    Follow again(*admin, created.id());
    followed = again.WaitUntil([](const auto& events) { return !events.empty(); });
    if (!followed) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(followed);
}

// ---- runners and provisioning -------------------------------------------------------------------

TEST_CASE("ListRunners shows connected runners and their releases") {
  Controller c;
  auto admin = c.Stub(c.admin_files);
  auto runner = c.ConnectRunner(3);
  const pb::Release created = MustCreate(*admin);
  runner->TokenFor(created.id());

  pb::ListRunnersResponse response;
  grpc::ClientContext context;
  REQUIRE(admin->ListRunners(WithDeadline(&context), google::protobuf::Empty(), &response).ok());
  REQUIRE(response.runners_size() == 1);
  const pb::RunnerInfo& info = response.runners(0);
  CHECK(info.runner_id() == "ci-1");
  CHECK(info.identity() == "runner:ci");
  CHECK(info.max_concurrent() == 3);
  CHECK(info.active() == 1);
  REQUIRE(info.capabilities_size() == 1);
  CHECK(info.capabilities(0).name() == "deploy");
  REQUIRE(info.release_ids_size() == 1);
  CHECK(info.release_ids(0) == created.id());
}

TEST_CASE("RequestProvisioning creates a release per node; GetProvisioning shows them") {
  Controller c;
  auto admin = c.Stub(c.admin_files);
  auto control_plane = pb::ControlPlane::NewStub(c.Channel(c.admin_files));
  const std::string node = c.JoinReady("pi-kitchen");

  pb::ProvisioningRequest request;
  request.set_node_id(node);
  request.set_profile("base");
  (*request.mutable_parameters())["greeting"] = "hi";
  pb::ProvisioningResponse response;
  grpc::ClientContext context;
  grpc::Status status =
      control_plane->RequestProvisioning(WithDeadline(&context), request, &response);
  INFO(status.error_message());
  REQUIRE(status.ok());
  CHECK_FALSE(response.provisioning_id().empty());
  REQUIRE(response.release_ids_size() == 1);
  REQUIRE(response.node_ids_size() == 1);
  CHECK(response.node_ids(0) == node);

  pb::ProvisioningRef ref;
  ref.set_id(response.provisioning_id());
  pb::Provisioning provisioning;
  grpc::ClientContext get_context;
  REQUIRE(admin->GetProvisioning(WithDeadline(&get_context), ref, &provisioning).ok());
  CHECK(provisioning.profile() == "base");
  // MODE_UNSPECIFIED applies.
  CHECK_FALSE(provisioning.plan());
  CHECK(provisioning.target() == "node=" + node);
  CHECK(provisioning.parameters().at("greeting") == "hi");
  REQUIRE(provisioning.releases_size() == 1);
  CHECK(provisioning.releases(0).id() == response.release_ids(0));
  CHECK(provisioning.releases(0).node_id() == node);
  CHECK(provisioning.releases(0).state() == pb::RELEASE_STATE_QUEUED);

  pb::ProvisioningRef unknown;
  unknown.set_id("p-404");
  grpc::ClientContext unknown_context;
  CHECK(
      admin->GetProvisioning(WithDeadline(&unknown_context), unknown, &provisioning).error_code() ==
      grpc::StatusCode::NOT_FOUND);
}

TEST_CASE("RequestProvisioning passes refusals on and takes the plan mode") {
  Controller c;
  auto control_plane = pb::ControlPlane::NewStub(c.Channel(c.admin_files));
  const std::string node = c.JoinReady("pi-kitchen");
  auto call = [&](const pb::ProvisioningRequest& request, pb::ProvisioningResponse* response) {
    grpc::ClientContext context;
    return control_plane->RequestProvisioning(WithDeadline(&context), request, response);
  };
  pb::ProvisioningResponse response;

  pb::ProvisioningRequest no_target;
  no_target.set_profile("base");
  CHECK(call(no_target, &response).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  pb::ProvisioningRequest unknown_profile;
  unknown_profile.set_all_nodes(true);
  unknown_profile.set_profile("camera");
  CHECK(call(unknown_profile, &response).error_code() == grpc::StatusCode::NOT_FOUND);
  pb::ProvisioningRequest no_match;
  no_match.set_label_selector("role=camera");
  no_match.set_profile("base");
  CHECK(call(no_match, &response).error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  pb::ProvisioningRequest all_false;
  all_false.set_all_nodes(false);
  all_false.set_profile("base");
  CHECK(call(all_false, &response).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  pb::ProvisioningRequest bad_mode;
  bad_mode.set_all_nodes(true);
  bad_mode.set_profile("base");
  bad_mode.set_mode(static_cast<pb::ProvisioningRequest::Mode>(7));
  CHECK(call(bad_mode, &response).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(Require(c.releases->List(release::ReleaseFilter{})).empty());

  pb::ProvisioningRequest plan;
  plan.set_all_nodes(true);
  plan.set_profile("base");
  plan.set_mode(pb::ProvisioningRequest::MODE_PLAN);
  REQUIRE(call(plan, &response).ok());
  REQUIRE(response.release_ids_size() == 1);
  CHECK(Require(c.releases->Get(response.release_ids(0))).plan);
}

TEST_CASE("RequestProvisioning without a provisioner is UNIMPLEMENTED") {
  Controller c;
  cluster::ControlPlaneService disabled{*c.cluster, nullptr};
  auto credentials = common::MakeServerCredentials(
      {c.server_files.cert, c.server_files.key, c.ca_file, common::ClientAuth::kRequireAndVerify});
  REQUIRE(credentials.ok());
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", *credentials, &port);
  builder.RegisterService(&disabled);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  REQUIRE(server != nullptr);
  auto channel_credentials =
      common::MakeChannelCredentials({c.ca_file, c.admin_files.cert, c.admin_files.key});
  REQUIRE(channel_credentials.ok());
  auto stub = pb::ControlPlane::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), *channel_credentials));

  pb::ProvisioningRequest request;
  request.set_all_nodes(true);
  request.set_profile("base");
  pb::ProvisioningResponse response;
  grpc::ClientContext context;
  CHECK(stub->RequestProvisioning(WithDeadline(&context), request, &response).error_code() ==
        grpc::StatusCode::UNIMPLEMENTED);
  server->Shutdown(std::chrono::system_clock::now() + 5s);
}

// ---- who may call -----------------------------------------------------------------------------

TEST_CASE("release RPCs and RequestProvisioning refuse a node certificate") {
  Controller c;
  auto node = c.Stub(c.node_files);
  pb::Release release;
  CHECK(Create(*node, DeployRequest(), &release).error_code() ==
        grpc::StatusCode::PERMISSION_DENIED);
  pb::ListReleasesResponse listed;
  CHECK(List(*node, pb::ListReleasesRequest{}, &listed).error_code() ==
        grpc::StatusCode::PERMISSION_DENIED);
  CHECK(Get(*node, "r-1", &release).error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(Cancel(*node, "r-1", &release).error_code() == grpc::StatusCode::PERMISSION_DENIED);
  Follow follow(*node, "r-1");
  CHECK(follow.Finished().error_code() == grpc::StatusCode::PERMISSION_DENIED);
  pb::ListRunnersResponse runners;
  grpc::ClientContext runners_context;
  CHECK(node->ListRunners(WithDeadline(&runners_context), google::protobuf::Empty(), &runners)
            .error_code() == grpc::StatusCode::PERMISSION_DENIED);
  pb::ProvisioningRef ref;
  ref.set_id("p-1");
  pb::Provisioning provisioning;
  grpc::ClientContext provisioning_context;
  CHECK(
      node->GetProvisioning(WithDeadline(&provisioning_context), ref, &provisioning).error_code() ==
      grpc::StatusCode::PERMISSION_DENIED);

  auto control_plane = pb::ControlPlane::NewStub(c.Channel(c.node_files));
  pb::ProvisioningRequest request;
  request.set_all_nodes(true);
  request.set_profile("base");
  pb::ProvisioningResponse response;
  grpc::ClientContext context;
  CHECK(
      control_plane->RequestProvisioning(WithDeadline(&context), request, &response).error_code() ==
      grpc::StatusCode::PERMISSION_DENIED);
  CHECK(Require(c.releases->List(release::ReleaseFilter{})).empty());
}

}  // namespace
}  // namespace pi::controlplane::admin
