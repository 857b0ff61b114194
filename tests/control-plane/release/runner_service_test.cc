// forest.v1.RunnerService end to end: a real gRPC server on 127.0.0.1:0 with the cluster
// listener's TLS settings (client certificates verified when presented), in front of the real
// release engine over a real SQLite file, called through the generated stubs as a runner would.
#include "control-plane/release/runner_service.h"

#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/system/clock.h"
#include "common/system/files.h"
#include "common/tls/credentials.h"
#include "common/tls/x509.h"
#include "control-plane/release/release_engine.h"
#include "control-plane/release/sqlite_release_store.h"
#include "tests/common/test_dir.h"
#include "tests/common/test_pki.h"

namespace pi::controlplane::release {
namespace {

namespace wire = forest::v1;
using std::chrono::milliseconds;
using std::chrono::seconds;

const DestinationType kTerraform{.organisation = "acme", .name = "terraform", .version = 1};

// Certificates for the server and every kind of caller, made once: pki.sh is slow-ish.
struct RunnerPki : pi::testing::TestPki {
  RunnerPki() {
    Issue("server", "controller", "--dns localhost --ip 127.0.0.1");
    Issue("ci", "runner:ci");
    Issue("ci2", "runner:ci2");
    Issue("pi-1", "node:pi-1");
    Issue("alice", "admin:alice");
  }
};

const RunnerPki& Pki() {
  static const RunnerPki* const pki = new RunnerPki();
  return *pki;
}

std::string Fingerprint(const std::string& cert_file) {
  auto pem = common::ReadFileToString(cert_file, 1 << 20);
  REQUIRE(pem.ok());
  auto info = common::ParseCertificate(*pem);
  REQUIRE(info.ok());
  return info->sha256_fingerprint;
}

// Polls `condition` for up to 10 s; engine work after a stream ends happens on other threads.
bool Eventually(const std::function<bool()>& condition) {
  const auto deadline = std::chrono::steady_clock::now() + seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return condition();
}

template <typename Context>
void SetDeadline(Context& context) {
  context.set_deadline(std::chrono::system_clock::now() + seconds(10));
}

// The store, the engine and the service behind a listening server.
class Harness {
 public:
  explicit Harness(RunnerAuthorizer authorize = nullptr, ReleaseOptions options = {}) {
    auto store = SqliteReleaseStore::Open((dir_.path() / "release.db").string());
    REQUIRE(store.ok());
    store_ = *std::move(store);
    auto engine = ReleaseEngine::Open(*store_, common::RealClock(), options);
    REQUIRE(engine.ok());
    engine_ = *std::move(engine);
    engine_->Start();
    service_ = std::make_unique<RunnerService>(*engine_, std::move(authorize));

    const RunnerPki& pki = Pki();
    auto credentials =
        common::MakeServerCredentials({pki.File("server.crt"), pki.File("server.key"),
                                       pki.File("ca.crt"), common::ClientAuth::kRequest});
    REQUIRE(credentials.ok());
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", *credentials, &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    REQUIRE(server_ != nullptr);
    REQUIRE(port_ > 0);
  }

  ~Harness() {
    service_->Shutdown();
    server_->Shutdown(std::chrono::system_clock::now() + seconds(1));
    server_.reset();
    service_.reset();
    engine_->Shutdown();
  }

  // A stub presenting the certificate `name` from the test PKI; "" presents none.
  std::unique_ptr<wire::RunnerService::Stub> Stub(const std::string& name = "ci") const {
    const RunnerPki& pki = Pki();
    common::ClientTlsConfig tls{pki.File("ca.crt"), "", ""};
    if (!name.empty()) tls = {pki.File("ca.crt"), pki.File(name + ".crt"), pki.File(name + ".key")};
    auto credentials = common::MakeChannelCredentials(tls);
    REQUIRE(credentials.ok());
    grpc::ChannelArguments arguments;
    // A connection per stub, so each presents its own certificate.
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return wire::RunnerService::NewStub(
        grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port_), *credentials, arguments));
  }

  ReleaseEngine& engine() { return *engine_; }
  ReleaseStore& store() { return *store_; }
  RunnerService& service() { return *service_; }

  Release Create(NewRelease request) {
    auto release = engine_->Create(std::move(request));
    REQUIRE(release.ok());
    return *release;
  }

  ReleaseState StateOf(const std::string& id) {
    auto release = engine_->Get(id);
    REQUIRE(release.ok());
    return release->state;
  }

 private:
  pi::testing::TempDir dir_;
  std::unique_ptr<SqliteReleaseStore> store_;
  std::unique_ptr<ReleaseEngine> engine_;
  std::unique_ptr<RunnerService> service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

NewRelease Deploy(const std::string& name) {
  NewRelease request;
  request.artifact_files = {{"main.tf", "resource \"" + name + "\" {}"},
                            {"modules/net.tf", "# network of " + name}};
  request.spec_files = {{"spec.yaml", "name: " + name}};
  request.type = kTerraform;
  request.destination_name = name;
  request.environment = "production";
  request.metadata = {{"region", "eu-west"}};
  request.annotation.slug = name + "-slug";
  request.annotation.source_username = "alice";
  request.annotation.reference_commit_sha = "0123abcd";
  request.project_organisation = "acme";
  request.project = "site";
  request.created_by = "admin:alice";
  return request;
}

wire::RunnerMessage Register(const std::string& runner_id, int max_concurrent,
                             const DestinationType& type = kTerraform) {
  wire::RunnerMessage message;
  wire::RunnerRegister* request = message.mutable_register_();
  request->set_runner_id(runner_id);
  wire::DestinationCapability* capability = request->add_capabilities();
  capability->set_organisation(type.organisation);
  capability->set_name(type.name);
  capability->set_version(type.version);
  request->set_max_concurrent(max_concurrent);
  return message;
}

wire::RunnerMessage Ack(const std::string& token, bool accepted) {
  wire::RunnerMessage message;
  message.mutable_work_ack()->set_release_token(token);
  message.mutable_work_ack()->set_accepted(accepted);
  return message;
}

wire::RunnerMessage Heartbeat(int active) {
  wire::RunnerMessage message;
  message.mutable_heartbeat()->set_active_releases(active);
  return message;
}

// A runner's RegisterRunner stream: a thread collects what the server sends.
class RunnerClient {
 public:
  explicit RunnerClient(wire::RunnerService::Stub& stub) : stream_(stub.RegisterRunner(&context_)) {
    reader_ = std::thread([this] {
      wire::ServerMessage message;
      while (stream_->Read(&message)) {
        std::lock_guard lock(mu_);
        received_.push_back(message);
        changed_.notify_all();
      }
      std::lock_guard lock(mu_);
      ended_ = true;
      changed_.notify_all();
    });
  }

  ~RunnerClient() {
    context_.TryCancel();
    reader_.join();
    if (!status_.has_value()) stream_->Finish();
  }

  bool Send(const wire::RunnerMessage& message) { return stream_->Write(message); }

  // The next message from the server, or nothing when none comes within `timeout`.
  std::optional<wire::ServerMessage> Next(milliseconds timeout = seconds(10)) {
    std::unique_lock lock(mu_);
    changed_.wait_for(lock, timeout, [this] { return !received_.empty() || ended_; });
    if (received_.empty()) return std::nullopt;
    wire::ServerMessage message = received_.front();
    received_.pop_front();
    return message;
  }

  wire::RegisterAck NextAck() {
    auto message = Next();
    REQUIRE(message.has_value());
    REQUIRE(message->has_register_ack());
    return message->register_ack();
  }

  wire::WorkAssignment NextAssignment() {
    auto message = Next();
    REQUIRE(message.has_value());
    REQUIRE(message->has_work_assignment());
    return message->work_assignment();
  }

  // The tokens of the next `count` assignments, by release id.
  std::map<std::string, std::string> NextTokens(int count) {
    std::map<std::string, std::string> tokens;
    for (int i = 0; i < count; ++i) {
      const wire::WorkAssignment work = NextAssignment();
      tokens[work.release_id()] = work.release_token();
    }
    REQUIRE(tokens.size() == static_cast<size_t>(count));
    return tokens;
  }

  // Waits for the server to end the stream and returns its status.
  grpc::Status Status() {
    {
      std::unique_lock lock(mu_);
      REQUIRE(changed_.wait_for(lock, seconds(10), [this] { return ended_; }));
    }
    if (!status_.has_value()) status_ = stream_->Finish();
    return *status_;
  }

  void Cancel() { context_.TryCancel(); }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<wire::RunnerMessage, wire::ServerMessage>> stream_;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::deque<wire::ServerMessage> received_;
  bool ended_ = false;
  std::optional<grpc::Status> status_;
};

// Registers `runner_id` and checks it was accepted.
std::unique_ptr<RunnerClient> Connect(wire::RunnerService::Stub& stub, const std::string& runner_id,
                                      int max_concurrent = 1,
                                      const DestinationType& type = kTerraform) {
  auto runner = std::make_unique<RunnerClient>(stub);
  REQUIRE(runner->Send(Register(runner_id, max_concurrent, type)));
  const wire::RegisterAck ack = runner->NextAck();
  INFO(ack.reason());
  REQUIRE(ack.accepted());
  CHECK(ack.runner_id() == runner_id);
  return runner;
}

struct Files {
  grpc::Status status;
  std::vector<ReleaseFile> files;
};

Files ReadFiles(wire::RunnerService::Stub& stub, const std::string& token,
                FileKind kind = FileKind::kArtifact) {
  grpc::ClientContext context;
  SetDeadline(context);
  std::unique_ptr<grpc::ClientReader<wire::ReleaseFile>> reader;
  if (kind == FileKind::kArtifact) {
    wire::GetReleaseFilesRequest request;
    request.set_release_token(token);
    reader = stub.GetReleaseFiles(&context, request);
  } else {
    wire::GetSpecFilesRequest request;
    request.set_release_token(token);
    reader = stub.GetSpecFiles(&context, request);
  }
  Files result;
  wire::ReleaseFile file;
  while (reader->Read(&file)) result.files.push_back({file.file_name(), file.file_content()});
  result.status = reader->Finish();
  return result;
}

grpc::Status Complete(wire::RunnerService::Stub& stub, const std::string& token,
                      wire::ReleaseOutcome outcome, const std::string& error_message = "",
                      std::optional<std::string> plan_output = std::nullopt) {
  grpc::ClientContext context;
  SetDeadline(context);
  wire::CompleteReleaseRequest request;
  request.set_release_token(token);
  request.set_outcome(outcome);
  request.set_error_message(error_message);
  if (plan_output.has_value()) request.set_plan_output(*plan_output);
  wire::CompleteReleaseResponse response;
  return stub.CompleteRelease(&context, request, &response);
}

wire::PushLogRequest LogMessage(const std::string& token, const std::string& channel,
                                const std::string& line, uint64_t timestamp) {
  wire::PushLogRequest request;
  request.set_release_token(token);
  request.set_channel(channel);
  request.set_line(line);
  request.set_timestamp(timestamp);
  return request;
}

grpc::Status PushLogs(wire::RunnerService::Stub& stub,
                      const std::vector<wire::PushLogRequest>& messages) {
  grpc::ClientContext context;
  SetDeadline(context);
  wire::PushLogResponse response;
  auto writer = stub.PushLogs(&context, &response);
  for (const auto& message : messages) {
    if (!writer->Write(message)) break;
  }
  writer->WritesDone();
  return writer->Finish();
}

grpc::Status Annotation(wire::RunnerService::Stub& stub, const std::string& token) {
  grpc::ClientContext context;
  SetDeadline(context);
  wire::GetReleaseAnnotationRequest request;
  request.set_release_token(token);
  wire::ReleaseAnnotationResponse response;
  return stub.GetReleaseAnnotation(&context, request, &response);
}

grpc::Status ProjectInfo(wire::RunnerService::Stub& stub, const std::string& token) {
  grpc::ClientContext context;
  SetDeadline(context);
  wire::GetProjectInfoRequest request;
  request.set_release_token(token);
  wire::ProjectInfoResponse response;
  return stub.GetProjectInfo(&context, request, &response);
}

// Every token-scoped call made with `token`, by name. CompleteRelease comes last: when it is
// let through, the token is spent.
std::vector<std::pair<std::string, grpc::Status>> CallEveryTokenRpc(wire::RunnerService::Stub& stub,
                                                                    const std::string& token) {
  return {{"GetReleaseFiles", ReadFiles(stub, token).status},
          {"GetSpecFiles", ReadFiles(stub, token, FileKind::kSpec).status},
          {"GetReleaseAnnotation", Annotation(stub, token)},
          {"GetProjectInfo", ProjectInfo(stub, token)},
          {"PushLogs", PushLogs(stub, {LogMessage(token, "stdout", "x", 1)})},
          {"CompleteRelease", Complete(stub, token, wire::RELEASE_OUTCOME_SUCCESS)}};
}

// Log lines of one release as the engine hands them to a follower.
class LogFollower {
 public:
  void Follow(ReleaseEngine& engine, const std::string& release_id) {
    auto handle = engine.Follow(release_id, 0,
                                FollowSink{.on_event =
                                               [this](const ReleaseEvent& event) {
                                                 if (!event.log.has_value()) return;
                                                 std::lock_guard lock(mu_);
                                                 lines_.push_back(event.log->line);
                                                 changed_.notify_all();
                                               },
                                           .on_end = [](const absl::Status&) {}});
    REQUIRE(handle.ok());
  }

  // The lines seen once `count` have come, or within `timeout`.
  std::vector<std::string> WaitFor(size_t count, milliseconds timeout) {
    std::unique_lock lock(mu_);
    changed_.wait_for(lock, timeout, [&] { return lines_.size() >= count; });
    return lines_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<std::string> lines_;
};

// ---------------------------------------------------------------------------------------------
// Registration

TEST_CASE("RegisterRunner refuses a stream whose first message is not register", "[runner_grpc]") {
  Harness harness;
  auto stub = harness.Stub("ci");
  for (const wire::RunnerMessage& first : {Heartbeat(0), Ack("whatever", true)}) {
    RunnerClient runner(*stub);
    REQUIRE(runner.Send(first));
    const grpc::Status status = runner.Status();
    CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(status.error_message(), Catch::Contains("register"));
    CHECK_FALSE(runner.Next(milliseconds(0)).has_value());
  }
  RunnerClient empty(*stub);
  REQUIRE(empty.Send(wire::RunnerMessage()));
  CHECK(empty.Status().error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(harness.engine().Runners().empty());
}

TEST_CASE("RegisterRunner refuses callers without a runner or node certificate", "[runner_grpc]") {
  Harness harness;
  struct Case {
    std::string certificate;
    grpc::StatusCode code;
  };
  for (const Case& tried : {Case{"", grpc::StatusCode::UNAUTHENTICATED},
                            Case{"alice", grpc::StatusCode::PERMISSION_DENIED}}) {
    INFO("certificate: " << tried.certificate);
    auto stub = harness.Stub(tried.certificate);
    RunnerClient runner(*stub);
    REQUIRE(runner.Send(Register("sneaky", 1)));
    const wire::RegisterAck ack = runner.NextAck();
    CHECK_FALSE(ack.accepted());
    CHECK_FALSE(ack.reason().empty());
    const grpc::Status status = runner.Status();
    CHECK(status.error_code() == tried.code);
    CHECK(status.error_message() == ack.reason());
  }
  CHECK(harness.engine().Runners().empty());
}

TEST_CASE("RegisterRunner refuses a bad registration with a reason", "[runner_grpc]") {
  Harness harness;
  auto stub = harness.Stub("ci");
  wire::RunnerMessage no_capabilities = Register("ci-1", 1);
  no_capabilities.mutable_register_()->clear_capabilities();
  for (const wire::RunnerMessage& bad :
       {Register("ci-1", 0), Register("ci-1", -3), no_capabilities, Register("bad id/..", 1)}) {
    INFO(bad.ShortDebugString());
    RunnerClient runner(*stub);
    REQUIRE(runner.Send(bad));
    const wire::RegisterAck ack = runner.NextAck();
    CHECK_FALSE(ack.accepted());
    CHECK_FALSE(ack.reason().empty());
    const grpc::Status status = runner.Status();
    CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(status.error_message() == ack.reason());
  }
  CHECK(harness.engine().Runners().empty());
}

TEST_CASE("RegisterRunner asks the authorizer with the certificate's fingerprint",
          "[runner_grpc]") {
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> asked;
  Harness harness([&](const common::Identity& identity, const std::string& cert_sha256) {
    std::lock_guard lock(mu);
    asked.emplace_back(identity.ToString(), cert_sha256);
    if (identity.role == common::Role::kNode) {
      return absl::PermissionDeniedError("node pi-1 was removed from the cluster");
    }
    return absl::OkStatus();
  });

  auto node_stub = harness.Stub("pi-1");
  RunnerClient node(*node_stub);
  REQUIRE(node.Send(Register("pi-1", 1, ProvisionDestinationType())));
  const wire::RegisterAck refused = node.NextAck();
  CHECK_FALSE(refused.accepted());
  CHECK(refused.reason() == "node pi-1 was removed from the cluster");
  CHECK(node.Status().error_code() == grpc::StatusCode::PERMISSION_DENIED);

  auto ci_stub = harness.Stub("ci");
  auto ci = Connect(*ci_stub, "ci-1");

  std::lock_guard lock(mu);
  REQUIRE(asked.size() == 2);
  CHECK(asked[0].first == "node:pi-1");
  CHECK(asked[0].second == Fingerprint(Pki().File("pi-1.crt")));
  CHECK(asked[1].first == "runner:ci");
  CHECK(asked[1].second == Fingerprint(Pki().File("ci.crt")));
}

TEST_CASE("a runner that leaves while it registers is not left connected", "[runner_grpc]") {
  std::promise<void> release_authorizer;
  std::shared_future<void> authorizer_released = release_authorizer.get_future().share();
  std::promise<void> authorizer_called;
  Harness harness([&](const common::Identity&, const std::string&) {
    authorizer_called.set_value();
    authorizer_released.wait();
    return absl::OkStatus();
  });
  auto stub = harness.Stub("ci");
  {
    RunnerClient runner(*stub);
    REQUIRE(runner.Send(Register("ci-1", 1)));
    REQUIRE(authorizer_called.get_future().wait_for(seconds(10)) == std::future_status::ready);
    runner.Cancel();
    CHECK(runner.Status().error_code() == grpc::StatusCode::CANCELLED);
  }
  release_authorizer.set_value();
  // The registration completes after the stream is gone and is undone at once.
  std::this_thread::sleep_for(milliseconds(200));
  CHECK(Eventually([&] { return harness.engine().Runners().empty(); }));
  const Release release = harness.Create(Deploy("web"));
  CHECK(harness.StateOf(release.id) == ReleaseState::kQueued);
}

TEST_CASE("RegisterRunner assigns a runner id when the runner sends none", "[runner_grpc]") {
  Harness harness;
  auto stub = harness.Stub("ci");
  RunnerClient runner(*stub);
  REQUIRE(runner.Send(Register("", 2)));
  const wire::RegisterAck ack = runner.NextAck();
  CHECK(ack.accepted());
  CHECK_FALSE(ack.runner_id().empty());
  const auto runners = harness.engine().Runners();
  REQUIRE(runners.size() == 1);
  CHECK(runners[0].runner_id == ack.runner_id());
  CHECK(runners[0].identity == "runner:ci");
  CHECK(runners[0].max_concurrent == 2);
}

TEST_CASE("a second register on the stream is refused", "[runner_grpc]") {
  Harness harness;
  auto stub = harness.Stub("ci");
  auto runner = Connect(*stub, "ci-1");
  REQUIRE(runner->Send(Register("ci-1", 1)));
  CHECK(runner->Status().error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(Eventually([&] { return harness.engine().Runners().empty(); }));
}

// ---------------------------------------------------------------------------------------------
// Work

TEST_CASE("a new release is assigned to a connected runner with its destination", "[runner_grpc]") {
  Harness harness;
  auto stub = harness.Stub("ci");
  auto runner = Connect(*stub, "ci-1");
  const Release release = harness.Create(Deploy("web"));

  const wire::WorkAssignment work = runner->NextAssignment();
  CHECK(work.release_token().size() == 64);
  CHECK(work.release_token().find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(work.release_id() == release.id);
  CHECK(work.release_intent_id() == release.id);
  CHECK(work.artifact_id() == release.id);
  CHECK(work.destination_id() == "web");
  CHECK(work.destination().name() == "web");
  CHECK(work.destination().environment() == "production");
  CHECK(work.destination().metadata().at("region") == "eu-west");
  CHECK(work.destination().type().organisation() == "acme");
  CHECK(work.destination().type().name() == "terraform");
  CHECK(work.destination().type().version() == 1);
  CHECK(work.destination().organisation() == "acme");
  CHECK(work.mode() == wire::RELEASE_MODE_DEPLOY);
  CHECK_FALSE(work.has_artifact_store());
  CHECK(harness.StateOf(release.id) == ReleaseState::kAssigned);

  // A plan release says so.
  NewRelease plan = Deploy("db");
  plan.plan = true;
  REQUIRE(runner->Send(Heartbeat(1)));
  REQUIRE(Complete(*stub, work.release_token(), wire::RELEASE_OUTCOME_SUCCESS).ok());
  const Release planned = harness.Create(plan);
  const wire::WorkAssignment plan_work = runner->NextAssignment();
  CHECK(plan_work.release_id() == planned.id);
  CHECK(plan_work.mode() == wire::RELEASE_MODE_PLAN);
  CHECK(plan_work.release_token() != work.release_token());
}

TEST_CASE("a runner that never sends WorkAck completes its release", "[runner_grpc]") {
  Harness harness;
  auto stub = harness.Stub("ci");
  auto runner = Connect(*stub, "ci-1");
  const Release release = harness.Create(Deploy("web"));
  const std::string token = runner->NextAssignment().release_token();

  const Files artifacts = ReadFiles(*stub, token);
  REQUIRE(artifacts.status.ok());
  CHECK(artifacts.files == std::vector<ReleaseFile>{{"main.tf", "resource \"web\" {}"},
                                                    {"modules/net.tf", "# network of web"}});
  const Files specs = ReadFiles(*stub, token, FileKind::kSpec);
  REQUIRE(specs.status.ok());
  CHECK(specs.files == std::vector<ReleaseFile>{{"spec.yaml", "name: web"}});

  {
    grpc::ClientContext context;
    SetDeadline(context);
    wire::GetReleaseAnnotationRequest request;
    request.set_release_token(token);
    wire::ReleaseAnnotationResponse annotation;
    REQUIRE(stub->GetReleaseAnnotation(&context, request, &annotation).ok());
    CHECK(annotation.slug() == "web-slug");
    CHECK(annotation.source_username() == "alice");
    CHECK(annotation.reference_commit_sha() == "0123abcd");
    google::protobuf::Timestamp created_at;
    REQUIRE(google::protobuf::util::TimeUtil::FromString(annotation.created_at(), &created_at));
    CHECK(annotation.created_at().back() == 'Z');
    CHECK(
        google::protobuf::util::TimeUtil::TimestampToNanoseconds(created_at) ==
        std::chrono::duration_cast<std::chrono::nanoseconds>(release.created_at.time_since_epoch())
            .count());
  }
  {
    grpc::ClientContext context;
    SetDeadline(context);
    wire::GetProjectInfoRequest request;
    request.set_release_token(token);
    wire::ProjectInfoResponse project;
    REQUIRE(stub->GetProjectInfo(&context, request, &project).ok());
    CHECK(project.organisation() == "acme");
    CHECK(project.project() == "site");
  }

  REQUIRE(Complete(*stub, token, wire::RELEASE_OUTCOME_SUCCESS).ok());
  CHECK(harness.StateOf(release.id) == ReleaseState::kSucceeded);

  // The token died with the release.
  CHECK(ReadFiles(*stub, token).status.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK(Complete(*stub, token, wire::RELEASE_OUTCOME_FAILURE).error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);
  CHECK(harness.StateOf(release.id) == ReleaseState::kSucceeded);
}

TEST_CASE("WorkAck accepted makes the release RUNNING", "[runner_grpc]") {
  Harness harness;
  auto stub = harness.Stub("ci");
  auto runner = Connect(*stub, "ci-1");
  const Release release = harness.Create(Deploy("web"));
  const std::string token = runner->NextAssignment().release_token();
  REQUIRE(runner->Send(Ack(token, true)));
  CHECK(Eventually([&] { return harness.StateOf(release.id) == ReleaseState::kRunning; }));
  REQUIRE(Complete(*stub, token, wire::RELEASE_OUTCOME_FAILURE, "terraform exited 1").ok());
  auto finished = harness.engine().Get(release.id);
  REQUIRE(finished.ok());
  CHECK(finished->state == ReleaseState::kFailed);
  CHECK(finished->error_message == "terraform exited 1");
}

TEST_CASE("a WorkAck with a bad token leaves the stream working", "[runner_grpc]") {
  Harness harness;
  auto stub = harness.Stub("ci");
  auto runner = Connect(*stub, "ci-1", 2);
  REQUIRE(runner->Send(Ack(std::string(64, 'a'), true)));
  REQUIRE(runner->Send(Ack("", false)));
  REQUIRE(runner->Send(Heartbeat(0)));
  const Release release = harness.Create(Deploy("web"));
  CHECK(runner->NextAssignment().release_id() == release.id);
  CHECK(harness.engine().Runners().size() == 1);
}

TEST_CASE("a rejected release goes to another runner", "[runner_grpc]") {
  Harness harness;
  auto first_stub = harness.Stub("ci");
  auto first = Connect(*first_stub, "ci-1");
  const Release release = harness.Create(Deploy("web"));
  const std::string first_token = first->NextAssignment().release_token();

  auto second_stub = harness.Stub("ci2");
  auto second = Connect(*second_stub, "ci-2");
  REQUIRE(first->Send(Ack(first_token, false)));

  const wire::WorkAssignment reassigned = second->NextAssignment();
  CHECK(reassigned.release_id() == release.id);
  CHECK(reassigned.release_token() != first_token);
  // Never back to the runner that said no.
  CHECK_FALSE(first->Next(milliseconds(200)).has_value());

  CHECK(ReadFiles(*first_stub, first_token).status.error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);
  CHECK(ReadFiles(*second_stub, reassigned.release_token()).status.ok());
  auto now = harness.engine().Get(release.id);
  REQUIRE(now.ok());
  CHECK(now->runner_id == "ci-2");
  CHECK(now->attempts == 2);
}

TEST_CASE("a runner whose stream ends loses its release", "[runner_grpc]") {
  Harness harness;
  auto stub = harness.Stub("ci");
  const int max_attempts = GENERATE(1, 3);
  INFO("max_attempts " << max_attempts);
  auto runner = Connect(*stub, "ci-1");
  NewRelease request = Deploy("web");
  request.max_attempts = max_attempts;
  const Release release = harness.Create(request);
  const std::string token = runner->NextAssignment().release_token();
  REQUIRE(ReadFiles(*stub, token).status.ok());

  runner->Cancel();
  CHECK(Eventually([&] { return harness.engine().Runners().empty(); }));
  CHECK(ReadFiles(*stub, token).status.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK(Complete(*stub, token, wire::RELEASE_OUTCOME_SUCCESS).error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);
  const ReleaseState expected = max_attempts == 1 ? ReleaseState::kFailed : ReleaseState::kQueued;
  CHECK(Eventually([&] { return harness.StateOf(release.id) == expected; }));

  if (max_attempts > 1) {
    // The requeued release goes to the next runner that comes.
    auto again = Connect(*stub, "ci-1");
    const wire::WorkAssignment work = again->NextAssignment();
    CHECK(work.release_id() == release.id);
    CHECK(work.release_token() != token);
  }
}

TEST_CASE("a runner that closes its side is disconnected", "[runner_grpc]") {
  Harness harness;
  auto stub = harness.Stub("ci");
  grpc::ClientContext context;
  auto stream = stub->RegisterRunner(&context);
  REQUIRE(stream->Write(Register("ci-1", 1)));
  wire::ServerMessage message;
  REQUIRE(stream->Read(&message));
  REQUIRE(message.register_ack().accepted());
  const Release release = harness.Create(Deploy("web"));
  REQUIRE(stream->Read(&message));
  REQUIRE(message.has_work_assignment());
  REQUIRE(stream->WritesDone());
  while (stream->Read(&message)) {
  }
  CHECK(stream->Finish().ok());
  CHECK(Eventually([&] { return harness.engine().Runners().empty(); }));
  CHECK(Eventually([&] { return harness.StateOf(release.id) == ReleaseState::kQueued; }));
}

TEST_CASE("a runner that reconnects replaces its old stream", "[runner_grpc]") {
  Harness harness;
  auto stub = harness.Stub("ci");
  auto old_stream = Connect(*stub, "ci-1");
  const Release first = harness.Create(Deploy("web"));
  const std::string old_token = old_stream->NextAssignment().release_token();

  auto new_stream = Connect(*stub, "ci-1");
  CHECK(old_stream->Status().error_code() == grpc::StatusCode::ABORTED);
  // The old stream's end must not drop the new connection, which got the release back.
  const wire::WorkAssignment again = new_stream->NextAssignment();
  CHECK(again.release_id() == first.id);
  CHECK(again.release_token() != old_token);
  std::this_thread::sleep_for(milliseconds(200));
  REQUIRE(harness.engine().Runners().size() == 1);
  CHECK(ReadFiles(*stub, again.release_token()).status.ok());

  // Another identity cannot take the id over.
  auto other_stub = harness.Stub("ci2");
  RunnerClient thief(*other_stub);
  REQUIRE(thief.Send(Register("ci-1", 1)));
  const wire::RegisterAck refused = thief.NextAck();
  CHECK_FALSE(refused.accepted());
  CHECK(thief.Status().error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(harness.engine().Runners().size() == 1);
}

TEST_CASE("a silent runner is dropped and its release goes to one that heartbeats",
          "[runner_grpc]") {
  ReleaseOptions options;
  options.runner_silence_limit = seconds(1);
  Harness harness(nullptr, options);
  auto silent_stub = harness.Stub("ci");
  auto silent = Connect(*silent_stub, "silent");
  const Release release = harness.Create(Deploy("web"));
  CHECK(silent->NextAssignment().release_id() == release.id);

  auto alive_stub = harness.Stub("ci2");
  auto alive = Connect(*alive_stub, "alive");
  std::atomic<bool> beating{true};
  std::thread heart([&] {
    while (beating) {
      alive->Send(Heartbeat(0));
      std::this_thread::sleep_for(milliseconds(100));
    }
  });
  const grpc::Status dropped = silent->Status();
  CHECK(dropped.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK_THAT(dropped.error_message(), Catch::Contains("heartbeat"));
  const auto reassigned = alive->Next(seconds(5));
  beating = false;
  heart.join();
  REQUIRE(reassigned.has_value());
  CHECK(reassigned->work_assignment().release_id() == release.id);
  const auto runners = harness.engine().Runners();
  REQUIRE(runners.size() == 1);
  CHECK(runners[0].runner_id == "alive");
}

TEST_CASE("a release token reads only its own release", "[runner_grpc]") {
  Harness harness;
  auto stub = harness.Stub("ci");
  auto runner = Connect(*stub, "ci-1", 2);
  const Release a = harness.Create(Deploy("alpha"));
  const Release b = harness.Create(Deploy("beta"));
  std::map<std::string, std::string> tokens = runner->NextTokens(2);

  const Files alpha = ReadFiles(*stub, tokens[a.id]);
  REQUIRE(alpha.status.ok());
  REQUIRE(alpha.files.size() == 2);
  CHECK(alpha.files[0].content == "resource \"alpha\" {}");
  const Files beta = ReadFiles(*stub, tokens[b.id], FileKind::kSpec);
  REQUIRE(beta.status.ok());
  CHECK(beta.files == std::vector<ReleaseFile>{{"spec.yaml", "name: beta"}});

  // Completing A with A's token leaves B alone.
  REQUIRE(Complete(*stub, tokens[a.id], wire::RELEASE_OUTCOME_SUCCESS).ok());
  CHECK(harness.StateOf(a.id) == ReleaseState::kSucceeded);
  CHECK(harness.StateOf(b.id) == ReleaseState::kRunning);
  CHECK(ReadFiles(*stub, tokens[b.id]).status.ok());
}

TEST_CASE("token-scoped calls refuse missing and unknown tokens", "[runner_grpc]") {
  Harness harness;
  auto stub = harness.Stub("ci");
  for (const std::string& token :
       {std::string(), std::string(64, '0'), std::string("not-hex"), std::string(65, 'a')}) {
    INFO("token " << token);
    for (const auto& [rpc, status] : CallEveryTokenRpc(*stub, token)) {
      INFO(rpc);
      CHECK(status.error_code() == grpc::StatusCode::UNAUTHENTICATED);
    }
  }
}

TEST_CASE("token-scoped calls refuse callers without a runner or node certificate",
          "[runner_grpc]") {
  Harness harness;
  auto stub = harness.Stub("ci");
  auto runner = Connect(*stub, "ci-1");
  const Release release = harness.Create(Deploy("web"));
  const std::string token = runner->NextAssignment().release_token();

  struct Case {
    std::string certificate;
    grpc::StatusCode code;
  };
  for (const Case& tried : {Case{"", grpc::StatusCode::UNAUTHENTICATED},
                            Case{"alice", grpc::StatusCode::PERMISSION_DENIED}}) {
    INFO("certificate: " << tried.certificate);
    auto intruder = harness.Stub(tried.certificate);
    for (const auto& [rpc, status] : CallEveryTokenRpc(*intruder, token)) {
      INFO(rpc << ": " << status.error_message());
      CHECK(status.error_code() == tried.code);
    }
  }
  // A valid token was not enough: the release was neither started, logged to nor completed.
  CHECK(harness.StateOf(release.id) == ReleaseState::kAssigned);
  REQUIRE(harness.engine().FlushLogs().ok());
  auto lines = harness.store().Logs(release.id, 0, 10);
  REQUIRE(lines.ok());
  CHECK(lines->empty());
  CHECK(ReadFiles(*stub, token).status.ok());
}

TEST_CASE("a runner cannot use a release token held by another runner", "[runner_grpc]") {
  Harness harness;
  auto holder_stub = harness.Stub("ci");
  auto holder = Connect(*holder_stub, "ci-1");
  const Release release = harness.Create(Deploy("web"));
  const std::string token = holder->NextAssignment().release_token();
  auto other_stub = harness.Stub("ci2");
  auto other = Connect(*other_stub, "ci-2");

  for (const auto& [rpc, status] : CallEveryTokenRpc(*other_stub, token)) {
    INFO(rpc);
    CHECK(status.error_code() == grpc::StatusCode::UNAUTHENTICATED);
    CHECK(status.error_message() == "release token belongs to another runner");
  }
  auto unchanged = harness.engine().Get(release.id);
  REQUIRE(unchanged.ok());
  CHECK(unchanged->state == ReleaseState::kAssigned);
  CHECK(unchanged->runner_id == "ci-1");
  CHECK(unchanged->log_lines == 0);

  // The holder's own calls still work.
  CHECK(ReadFiles(*holder_stub, token).status.ok());
  CHECK(Complete(*holder_stub, token, wire::RELEASE_OUTCOME_SUCCESS).ok());
  CHECK(harness.StateOf(release.id) == ReleaseState::kSucceeded);
}

TEST_CASE("CompleteRelease refuses an unspecified outcome and changes nothing", "[runner_grpc]") {
  Harness harness;
  auto stub = harness.Stub("ci");
  auto runner = Connect(*stub, "ci-1");
  const Release release = harness.Create(Deploy("web"));
  const std::string token = runner->NextAssignment().release_token();

  for (const auto outcome :
       {wire::RELEASE_OUTCOME_UNSPECIFIED, static_cast<wire::ReleaseOutcome>(7)}) {
    CHECK(Complete(*stub, token, outcome).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  }
  CHECK(harness.StateOf(release.id) == ReleaseState::kAssigned);
  CHECK(ReadFiles(*stub, token).status.ok());
  REQUIRE(Complete(*stub, token, wire::RELEASE_OUTCOME_SUCCESS).ok());
  CHECK(harness.StateOf(release.id) == ReleaseState::kSucceeded);
}

TEST_CASE("CompleteRelease stores the plan output when there is one", "[runner_grpc]") {
  Harness harness;
  auto stub = harness.Stub("ci");
  auto runner = Connect(*stub, "ci-1");
  NewRelease request = Deploy("web");
  request.plan = true;
  const Release with_plan = harness.Create(request);
  const std::string token = runner->NextAssignment().release_token();
  const std::string plan = "~ file /etc/motd\nPlan: 1 to change, 0 unchanged.";
  REQUIRE(Complete(*stub, token, wire::RELEASE_OUTCOME_SUCCESS, "", plan).ok());
  auto stored = harness.store().Get(with_plan.id);
  REQUIRE(stored.ok());
  CHECK(stored->plan_output == std::optional<std::string>(plan));

  // An empty plan is still a plan; no plan at all stays absent.
  const Release empty_plan = harness.Create(request);
  REQUIRE(Complete(*stub, runner->NextAssignment().release_token(), wire::RELEASE_OUTCOME_SUCCESS,
                   "", std::string())
              .ok());
  stored = harness.store().Get(empty_plan.id);
  REQUIRE(stored.ok());
  CHECK(stored->plan_output == std::optional<std::string>(""));

  const Release without_plan = harness.Create(Deploy("other"));
  REQUIRE(Complete(*stub, runner->NextAssignment().release_token(), wire::RELEASE_OUTCOME_SUCCESS)
              .ok());
  stored = harness.store().Get(without_plan.id);
  REQUIRE(stored.ok());
  CHECK_FALSE(stored->plan_output.has_value());
}

// ---------------------------------------------------------------------------------------------
// Logs

TEST_CASE("PushLogs stores every line in order before it answers", "[runner_grpc]") {
  Harness harness;
  auto stub = harness.Stub("ci");
  auto runner = Connect(*stub, "ci-1");
  const Release release = harness.Create(Deploy("web"));
  const std::string token = runner->NextAssignment().release_token();

  // More lines than a stream holds while the engine is busy, then a second stream that
  // continues the sequence.
  constexpr int kLines = 3000;
  std::vector<wire::PushLogRequest> first;
  for (int i = 0; i < kLines; ++i) {
    first.push_back(
        LogMessage(token, i % 3 == 0 ? "stderr" : "stdout", "line " + std::to_string(i), 1000 + i));
  }
  REQUIRE(PushLogs(*stub, first).ok());
  REQUIRE(PushLogs(*stub, {LogMessage(token, "stdout", "last", 9000)}).ok());
  // An empty stream is fine and stores nothing.
  REQUIRE(PushLogs(*stub, {}).ok());

  // Durable on return: the store has them without waiting for a timed flush.
  auto lines = harness.store().Logs(release.id, 0, 2 * kLines);
  REQUIRE(lines.ok());
  REQUIRE(lines->size() == kLines + 1);
  for (int i = 0; i < kLines; ++i) {
    const LogLine& line = (*lines)[i];
    CHECK(line.sequence == i + 1);
    CHECK(line.channel == (i % 3 == 0 ? "stderr" : "stdout"));
    CHECK(line.line == "line " + std::to_string(i));
    CHECK(line.timestamp_ms == static_cast<uint64_t>(1000 + i));
  }
  CHECK(lines->back().line == "last");
  CHECK(lines->back().sequence == kLines + 1);
  // A first log line makes an ASSIGNED release RUNNING (stock runners never WorkAck).
  CHECK(harness.StateOf(release.id) == ReleaseState::kRunning);
}

TEST_CASE("PushLogs hands each line to the engine while the stream is open", "[runner_grpc]") {
  LogFollower follower;
  Harness harness;
  auto stub = harness.Stub("ci");
  auto runner = Connect(*stub, "ci-1");
  const Release release = harness.Create(Deploy("web"));
  const std::string token = runner->NextAssignment().release_token();
  follower.Follow(harness.engine(), release.id);

  grpc::ClientContext context;
  SetDeadline(context);
  wire::PushLogResponse response;
  auto writer = stub->PushLogs(&context, &response);
  for (int i = 0; i < 3; ++i) {
    REQUIRE(writer->Write(LogMessage(token, "stdout", "line " + std::to_string(i), 1000 + i)));
  }
  // An admin following the release sees the lines before the runner closes the stream.
  CHECK(follower.WaitFor(3, seconds(2)) == std::vector<std::string>{"line 0", "line 1", "line 2"});
  REQUIRE(harness.engine().FlushLogs().ok());
  auto stored = harness.store().Logs(release.id, 0, 10);
  REQUIRE(stored.ok());
  CHECK(stored->size() == 3);
  CHECK(harness.StateOf(release.id) == ReleaseState::kRunning);

  REQUIRE(writer->WritesDone());
  CHECK(writer->Finish().ok());
}

TEST_CASE("a runner logging to a cancelled release is told at its next line", "[runner_grpc]") {
  Harness harness;
  auto stub = harness.Stub("ci");
  auto runner = Connect(*stub, "ci-1");
  const Release release = harness.Create(Deploy("web"));
  const std::string token = runner->NextAssignment().release_token();

  grpc::ClientContext context;
  SetDeadline(context);
  wire::PushLogResponse response;
  auto writer = stub->PushLogs(&context, &response);
  REQUIRE(writer->Write(LogMessage(token, "stdout", "starting", 1)));
  REQUIRE(harness.engine().Cancel(release.id, "admin:alice").ok());

  // The runner keeps its stream open and goes on logging: the server ends the call.
  bool open = true;
  int written = 0;
  const auto deadline = std::chrono::steady_clock::now() + seconds(3);
  while (open && std::chrono::steady_clock::now() < deadline) {
    open = writer->Write(LogMessage(token, "stdout", "still working", 2));
    ++written;
    std::this_thread::sleep_for(milliseconds(50));
  }
  CHECK_FALSE(open);
  INFO("lines written after the cancel: " << written);
  const grpc::Status status = writer->Finish();
  CHECK(status.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK(harness.StateOf(release.id) == ReleaseState::kCancelled);
}

TEST_CASE("PushLogs refuses bad streams", "[runner_grpc]") {
  Harness harness;
  auto stub = harness.Stub("ci");
  auto runner = Connect(*stub, "ci-1", 2);
  const Release a = harness.Create(Deploy("alpha"));
  const Release b = harness.Create(Deploy("beta"));
  std::map<std::string, std::string> tokens = runner->NextTokens(2);

  SECTION("a message without a token") {
    CHECK(PushLogs(*stub, {LogMessage(tokens[a.id], "stdout", "ok", 1),
                           LogMessage("", "stdout", "anonymous", 2)})
              .error_code() == grpc::StatusCode::UNAUTHENTICATED);
  }
  SECTION("lines of two releases on one stream") {
    CHECK(PushLogs(*stub, {LogMessage(tokens[a.id], "stdout", "alpha", 1),
                           LogMessage(tokens[b.id], "stdout", "beta", 2)})
              .error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  }
  SECTION("an unknown channel") {
    CHECK(PushLogs(*stub, {LogMessage(tokens[a.id], "stdlog", "what", 1)}).error_code() ==
          grpc::StatusCode::INVALID_ARGUMENT);
  }
  SECTION("a completed release's token") {
    REQUIRE(Complete(*stub, tokens[a.id], wire::RELEASE_OUTCOME_SUCCESS).ok());
    CHECK(PushLogs(*stub, {LogMessage(tokens[a.id], "stdout", "late", 1)}).error_code() ==
          grpc::StatusCode::UNAUTHENTICATED);
  }
  // Nothing of a refused stream reaches release B, and A keeps at most what was valid.
  auto b_lines = harness.store().Logs(b.id, 0, 100);
  REQUIRE(b_lines.ok());
  CHECK(b_lines->empty());
}

// ---------------------------------------------------------------------------------------------
// Nodes

TEST_CASE("a node's runner gets only releases pinned to its node", "[runner_grpc]") {
  Harness harness;
  auto node_stub = harness.Stub("pi-1");
  auto node = Connect(*node_stub, "pi-1", 4, ProvisionDestinationType());

  NewRelease unpinned = Deploy("anywhere");
  unpinned.type = ProvisionDestinationType();
  const Release free_release = harness.Create(unpinned);
  NewRelease other_node = unpinned;
  other_node.node_id = "pi-2";
  const Release elsewhere = harness.Create(other_node);
  CHECK_FALSE(node->Next(milliseconds(300)).has_value());

  NewRelease pinned = unpinned;
  pinned.node_id = "pi-1";
  pinned.destination_name = "pi-1";
  pinned.provisioning_id = "";
  const Release mine = harness.Create(pinned);
  const wire::WorkAssignment work = node->NextAssignment();
  CHECK(work.release_id() == mine.id);
  CHECK(work.destination_id() == "pi-1");
  CHECK(work.destination().metadata().at("node_id") == "pi-1");
  CHECK(work.destination().type().organisation() == "picontroller");
  CHECK(work.destination().type().name() == "provision");
  // A node's agent is a runner for its token-scoped calls too.
  CHECK(ReadFiles(*node_stub, work.release_token()).status.ok());

  CHECK(harness.StateOf(free_release.id) == ReleaseState::kQueued);
  CHECK(harness.StateOf(elsewhere.id) == ReleaseState::kQueued);
  CHECK_FALSE(node->Next(milliseconds(100)).has_value());
}

TEST_CASE("a provisioning release names its provisioning request as the intent", "[runner_grpc]") {
  Harness harness;
  auto node_stub = harness.Stub("pi-1");
  auto node = Connect(*node_stub, "pi-1", 1, ProvisionDestinationType());
  NewRelease release = Deploy("pi-1");
  release.type = ProvisionDestinationType();
  release.node_id = "pi-1";
  release.plan = true;
  Provisioning provisioning;
  provisioning.profile = "motd";
  provisioning.plan = true;
  provisioning.target = "node=pi-1";
  provisioning.created_by = "admin:alice";
  auto created = harness.engine().CreateProvisioning(provisioning, {release});
  REQUIRE(created.ok());
  REQUIRE(created->release_ids.size() == 1);
  const wire::WorkAssignment work = node->NextAssignment();
  CHECK(work.release_id() == created->release_ids[0]);
  CHECK(work.release_intent_id() == created->id);
  CHECK(work.artifact_id() == created->release_ids[0]);
  CHECK(work.mode() == wire::RELEASE_MODE_PLAN);
}

// ---------------------------------------------------------------------------------------------
// Shutdown

TEST_CASE("Shutdown ends open streams with UNAVAILABLE and refuses new ones", "[runner_grpc]") {
  Harness harness;
  auto stub = harness.Stub("ci");
  auto runner = Connect(*stub, "ci-1");
  harness.service().Shutdown();
  CHECK(runner->Status().error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(Eventually([&] { return harness.engine().Runners().empty(); }));

  RunnerClient late(*stub);
  late.Send(Register("ci-2", 1));
  CHECK(late.Status().error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(harness.engine().Runners().empty());
}

}  // namespace
}  // namespace pi::controlplane::release
