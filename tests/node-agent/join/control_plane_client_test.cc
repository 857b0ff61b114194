// The agent's ControlPlane client against an in-process fake controller: real TLS on 127.0.0.1
// with certificates from the cluster CA, the listener asking for (not requiring) client
// certificates as the controller's cluster listener does.
#include "node-agent/join/control_plane_client.h"

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <mutex>
#include <optional>
#include <vector>

#include "common/grpc/proto_time.h"
#include "common/system/files.h"
#include "common/tls/credentials.h"
#include "common/tls/peer_identity.h"
#include "common/tls/x509.h"
#include "control-plane/cluster/certificate_authority.h"
#include "control-plane/cluster/join_token.h"
#include "node-agent/join/port_reservation.h"
#include "picontroller/v1/control_plane.grpc.pb.h"
#include "tests/common/test_dir.h"
#include "tests/common/test_process.h"

namespace pi::agent::join {
namespace {

namespace v1 = picontroller::v1;
namespace fs = std::filesystem;
using controlplane::cluster::CertificateAuthority;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kNodeId[] = "pi-1";
constexpr seconds kValidity{3600};

CertificateAuthority MakeCa(const pi::testing::TempDir& dir) {
  auto ca = CertificateAuthority::LoadOrCreate(dir.path().string(), common::RealClock());
  REQUIRE(ca.ok());
  return *std::move(ca);
}

int ModeOf(const std::string& path) {
  struct stat info {};
  REQUIRE(stat(path.c_str(), &info) == 0);
  return static_cast<int>(info.st_mode & 0777);
}

std::string ReadText(const std::string& path) {
  auto text = common::ReadFileToString(path, 1 << 20);
  REQUIRE(text.ok());
  return *text;
}

// What the fake saw of one call.
struct SeenRegistration {
  v1::NodeRegistration request;
  std::string identity;  // "" without a verified client certificate
};
struct SeenReport {
  v1::HealthReport report;
  std::string identity;
  std::chrono::steady_clock::time_point at;
};

// A ControlPlane that accepts a join with its one token, signs CSRs for node pi-1, accepts
// re-registrations from node:pi-1 and records every call. Tests replace the answers.
class FakeControlPlane final : public v1::ControlPlane::CallbackService {
 public:
  FakeControlPlane(const CertificateAuthority& ca, std::string secret_hash)
      : ca_(ca), secret_hash_(std::move(secret_hash)) {}

  ~FakeControlPlane() override { ReleaseHeld(); }

  grpc::ServerUnaryReactor* RegisterNode(grpc::CallbackServerContext* context,
                                         const v1::NodeRegistration* request,
                                         v1::RegistrationResponse* response) override {
    const std::string identity = IdentityOf(context);
    std::function<grpc::Status(const v1::NodeRegistration&, v1::RegistrationResponse*)> answer;
    {
      std::lock_guard lock(mu_);
      registrations_.push_back({*request, identity});
      answer = register_answer_;
    }
    auto* reactor = context->DefaultReactor();
    if (answer) {
      reactor->Finish(answer(*request, response));
      return reactor;
    }
    if (request->join_token().empty()) {
      if (identity != std::string("node:") + kNodeId) {
        reactor->Finish(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "not node:pi-1"));
        return reactor;
      }
    } else {
      auto token = controlplane::cluster::ParseJoinToken(request->join_token());
      if (!token.ok() || !controlplane::cluster::SecretMatches(token->secret, secret_hash_)) {
        reactor->Finish(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "unknown join token"));
        return reactor;
      }
    }
    response->set_accepted(true);
    response->set_node_id(kNodeId);
    if (!request->csr_pem().empty()) {
      auto cert = ca_.SignCsr(request->csr_pem(), std::string("node:") + kNodeId, {}, kValidity);
      if (!cert.ok()) {
        reactor->Finish(
            grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(cert.status().message())));
        return reactor;
      }
      response->set_certificate_pem(*cert);
      response->set_ca_bundle_pem(ca_.ca_pem());
    }
    *response->mutable_heartbeat_interval() = common::ToProtoDuration(heartbeat_interval_.load());
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* ReportHealth(grpc::CallbackServerContext* context,
                                         const v1::HealthReport* request,
                                         google::protobuf::Empty*) override {
    auto* reactor = context->DefaultReactor();
    std::lock_guard lock(mu_);
    reports_.push_back({*request, IdentityOf(context), std::chrono::steady_clock::now()});
    if (hold_reports_) {
      held_.push_back(reactor);
    } else if (!report_failures_.empty()) {
      reactor->Finish(report_failures_.front());
      report_failures_.erase(report_failures_.begin());
    } else {
      reactor->Finish(grpc::Status::OK);
    }
    return reactor;
  }

  void set_heartbeat_interval(std::chrono::nanoseconds interval) { heartbeat_interval_ = interval; }
  void AnswerRegistrations(
      std::function<grpc::Status(const v1::NodeRegistration&, v1::RegistrationResponse*)> answer) {
    std::lock_guard lock(mu_);
    register_answer_ = std::move(answer);
  }
  // The next heartbeats fail with these statuses, in order.
  void FailReports(std::vector<grpc::Status> statuses) {
    std::lock_guard lock(mu_);
    report_failures_ = std::move(statuses);
  }
  // Heartbeats are left unanswered until ReleaseHeld().
  void HoldReports() {
    std::lock_guard lock(mu_);
    hold_reports_ = true;
  }
  void ReleaseHeld() {
    std::lock_guard lock(mu_);
    hold_reports_ = false;
    for (auto* reactor : held_) reactor->Finish(grpc::Status::OK);
    held_.clear();
  }

  std::vector<SeenRegistration> registrations() const {
    std::lock_guard lock(mu_);
    return registrations_;
  }
  std::vector<SeenReport> reports() const {
    std::lock_guard lock(mu_);
    return reports_;
  }

 private:
  static std::string IdentityOf(grpc::CallbackServerContext* context) {
    auto identity = common::IdentityFromAuthContext(*context->auth_context(), true);
    return identity.ok() ? identity->ToString() : "";
  }

  const CertificateAuthority& ca_;
  const std::string secret_hash_;
  std::atomic<std::chrono::nanoseconds> heartbeat_interval_{seconds(10)};
  mutable std::mutex mu_;
  std::function<grpc::Status(const v1::NodeRegistration&, v1::RegistrationResponse*)>
      register_answer_;
  std::vector<grpc::Status> report_failures_;
  bool hold_reports_ = false;
  std::vector<grpc::ServerUnaryReactor*> held_;
  std::vector<SeenRegistration> registrations_;
  std::vector<SeenReport> reports_;
};

// A controller stand-in: the cluster CA, a join token for it and the fake serving on a port of
// its own. The server presents its certificate followed by the CA, as FetchPinnedCa needs.
class Controller {
 public:
  Controller() : ca_(MakeCa(dir_)) {
    auto minted = controlplane::cluster::MintJoinToken(ca_.pin());
    REQUIRE(minted.ok());
    token_ = minted->text;
    fake_.emplace(ca_, minted->secret_hash);

    auto issued = ca_.Issue("controller", {"127.0.0.1", "localhost"}, kValidity);
    REQUIRE(issued.ok());
    const std::string chain = dir_.Write("controller.crt", issued->cert_pem + ca_.ca_pem());
    const std::string key = (dir_.path() / "controller.key").string();
    REQUIRE(common::WritePrivateKeyFile(key, issued->key_pem).ok());
    auto credentials = common::MakeServerCredentials(
        {chain, key, (dir_.path() / "ca.crt").string(), common::ClientAuth::kRequest});
    REQUIRE(credentials.ok());
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", *credentials, &port_);
    builder.RegisterService(&*fake_);
    server_ = builder.BuildAndStart();
    REQUIRE(server_ != nullptr);
    REQUIRE(port_ > 0);
  }
  ~Controller() {
    fake_->ReleaseHeld();
    server_->Shutdown(std::chrono::system_clock::now() + seconds(1));
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& token() const { return token_; }
  const CertificateAuthority& ca() const { return ca_; }
  FakeControlPlane& fake() { return *fake_; }

 private:
  pi::testing::TempDir dir_;
  CertificateAuthority ca_;
  std::string token_;
  std::optional<FakeControlPlane> fake_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

NodeDescription Node() {
  return {"pi-1.lan", ":9091", {{"role", "worker"}}, {{"arch", "aarch64"}, {"cpu_count", "4"}}};
}

ClientOptions Options() {
  ClientOptions options;
  options.rpc_timeout = milliseconds(5000);
  return options;
}

NodeHealthSummary Summary() {
  NodeHealthSummary summary;
  summary.cpu_usage_percent = 12.5;
  summary.max_temperature_celsius = 55.5;
  summary.agent_version = "9.9.9";
  return summary;
}

Heartbeater::Options FastHeartbeats() {
  Heartbeater::Options options;
  options.client = Options();
  options.initial_backoff = milliseconds(50);
  options.max_backoff = milliseconds(200);
  options.renew_certificate = false;
  return options;
}

// An agent with a state directory of its own, joining or joined to `controller`.
struct Agent {
  explicit Agent(Controller& controller) : controller(controller) {}

  absl::StatusOr<Registration> TryEnroll(const std::string& token,
                                         ClientOptions options = Options()) {
    return join::Enroll(state, controller.address(), token, Node(), options);
  }
  Registration Enroll() {
    auto registration = TryEnroll(controller.token());
    REQUIRE(registration.ok());
    return *registration;
  }
  absl::StatusOr<Registration> Reregister(bool renew) {
    return join::Reregister(state, {controller.address(), kNodeId}, Node(), renew, Options());
  }
  std::unique_ptr<Heartbeater> StartHeartbeats(Heartbeater::Options options = FastHeartbeats()) {
    auto heartbeater = std::make_unique<Heartbeater>(
        state, Enrollment{controller.address(), kNodeId}, Node(), Summary, options);
    heartbeater->Start();
    return heartbeater;
  }
  // Heartbeats until the controller acknowledged `count` of them, then stops.
  void HeartbeatUntilAcknowledged(uint64_t count, Heartbeater::Options options = FastHeartbeats()) {
    auto heartbeater = StartHeartbeats(options);
    REQUIRE(pi::testing::WaitUntil([&] { return heartbeater->heartbeats_acknowledged() >= count; },
                                   milliseconds(10'000)));
    heartbeater->Stop();
  }

  Controller& controller;
  pi::testing::TempDir dir;
  StateDir state{(dir.path() / "state").string()};
};

using RegisterAnswer =
    std::function<grpc::Status(const v1::NodeRegistration&, v1::RegistrationResponse*)>;

// A first join answered with `answer`; the join must fail.
absl::Status FailedJoin(RegisterAnswer answer) {
  Controller controller;
  controller.fake().AnswerRegistrations(std::move(answer));
  Agent agent(controller);
  auto registration = agent.TryEnroll(controller.token());
  REQUIRE_FALSE(registration.ok());
  CHECK_FALSE(fs::exists(agent.state.control_plane_file()));
  CHECK_FALSE(fs::exists(agent.state.cert_file()));
  return registration.status();
}

// A re-registration of an enrolled agent answered with `answer`; it must fail.
absl::Status FailedReregistration(RegisterAnswer answer) {
  Controller controller;
  Agent agent(controller);
  agent.Enroll();
  controller.fake().AnswerRegistrations(std::move(answer));
  auto registration = agent.Reregister(true);
  REQUIRE_FALSE(registration.ok());
  return registration.status();
}

bool EmptyDir(const std::string& dir) { return !fs::exists(dir) || fs::is_empty(dir); }

TEST_CASE("enrolling stores the node certificate, key, CA and address", "[client]") {
  Controller controller;
  controller.fake().set_heartbeat_interval(milliseconds(1500));
  Agent agent(controller);
  const Registration registration = agent.Enroll();
  CHECK(registration.node_id == kNodeId);
  CHECK(registration.heartbeat_interval == milliseconds(1500));

  CHECK(ModeOf(agent.state.key_file()) == 0600);
  CHECK(ModeOf(agent.state.cert_file()) == 0644);
  CHECK(ModeOf(agent.state.ca_file()) == 0644);
  CHECK(ModeOf(agent.state.control_plane_file()) == 0644);
  CHECK(ReadText(agent.state.ca_file()) == controller.ca().ca_pem());
  auto loaded = agent.state.Load();
  REQUIRE(loaded.ok());
  REQUIRE(loaded->has_value());
  CHECK(**loaded == Enrollment{controller.address(), kNodeId});
}

TEST_CASE(
    "enrolling sends the token, a CSR and the node's description without a client certificate",
    "[client]") {
  Controller controller;
  Agent agent(controller);
  agent.Enroll();
  const auto seen = controller.fake().registrations();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].identity.empty());
  const auto& request = seen[0].request;
  CHECK(request.join_token() == controller.token());
  CHECK(request.hostname() == "pi-1.lan");
  CHECK(request.agent_address() == ":9091");
  CHECK(request.labels().at("role") == "worker");
  CHECK(request.facts().at("cpu_count") == "4");
  REQUIRE(common::ParseCsr(request.csr_pem()).ok());
  // The certificate is for the key kept on the node.
  auto key = common::ParsePrivateKeyPem(ReadText(agent.state.key_file()));
  REQUIRE(key.ok());
  auto cert = common::ParseCertificatePem(ReadText(agent.state.cert_file()));
  REQUIRE(cert.ok());
  CHECK(common::KeyMatchesCertificate(cert->get(), key->get()));
}

TEST_CASE("a token pinning another CA is refused before anything reaches the controller",
          "[client]") {
  Controller controller;
  pi::testing::TempDir other_dir;
  const CertificateAuthority other = MakeCa(other_dir);
  auto wrong = controlplane::cluster::MintJoinToken(other.pin());
  REQUIRE(wrong.ok());
  Agent agent(controller);
  auto registration = agent.TryEnroll(wrong->text);
  REQUIRE_FALSE(registration.ok());
  CHECK(registration.status().code() == absl::StatusCode::kPermissionDenied);
  const std::string message(registration.status().message());
  CHECK_THAT(message, Catch::Contains("refusing to join"));
  CHECK_THAT(message, Catch::Contains("secret was not sent"));
  CHECK_THAT(message, Catch::Contains(controller.address()));
  CHECK(message.find(wrong->text) == std::string::npos);
  CHECK(controller.fake().registrations().empty());
  CHECK(EmptyDir(agent.state.dir()));
}

TEST_CASE("a malformed token is refused without contacting the controller", "[client]") {
  Controller controller;
  Agent agent(controller);
  auto registration = agent.TryEnroll("K10abc::secret-ish");
  REQUIRE_FALSE(registration.ok());
  CHECK(registration.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(registration.status().message()), Catch::Contains("malformed"));
  CHECK(std::string(registration.status().message()).find("secret-ish") == std::string::npos);
  CHECK(controller.fake().registrations().empty());
}

TEST_CASE("a registration the controller does not accept surfaces its reason", "[client]") {
  const absl::Status status =
      FailedJoin([](const v1::NodeRegistration&, v1::RegistrationResponse* response) {
        response->set_accepted(false);
        response->set_reason("hostname pi-1.lan belongs to node pi-1; present its certificate");
        return grpc::Status::OK;
      });
  CHECK(status.code() == absl::StatusCode::kPermissionDenied);
  CHECK_THAT(std::string(status.message()),
             Catch::Contains("refused the join: hostname pi-1.lan belongs to node pi-1"));
  CHECK_FALSE(join::IsTransient(status));
}

TEST_CASE("a join token the controller rejects surfaces its status and what to do", "[client]") {
  const absl::Status status =
      FailedJoin([](const v1::NodeRegistration&, v1::RegistrationResponse*) {
        return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "join token abcd1234 was revoked");
      });
  CHECK(status.code() == absl::StatusCode::kUnauthenticated);
  CHECK_THAT(std::string(status.message()), Catch::Contains("join token abcd1234 was revoked"));
  CHECK_THAT(std::string(status.message()), Catch::Contains("ask an admin for a new one"));
}

TEST_CASE("an accepted join with a certificate for another key stores nothing", "[client]") {
  pi::testing::TempDir ca_dir;
  const CertificateAuthority ca = MakeCa(ca_dir);
  const absl::Status status =
      FailedJoin([&ca](const v1::NodeRegistration&, v1::RegistrationResponse* response) {
        auto issued = ca.Issue("node:pi-1", {}, kValidity);
        response->set_accepted(true);
        response->set_node_id(kNodeId);
        response->set_certificate_pem(issued->cert_pem);
        return grpc::Status::OK;
      });
  CHECK_THAT(std::string(status.message()), Catch::Contains("unusable"));
}

TEST_CASE("an accepted join with a CA bundle that is not the pinned CA stores nothing",
          "[client]") {
  pi::testing::TempDir ca_dir;
  const CertificateAuthority other = MakeCa(ca_dir);
  Controller controller;
  const CertificateAuthority& ca = controller.ca();
  controller.fake().AnswerRegistrations(
      [&](const v1::NodeRegistration& request, v1::RegistrationResponse* response) {
        response->set_accepted(true);
        response->set_node_id(kNodeId);
        response->set_certificate_pem(*ca.SignCsr(request.csr_pem(), "node:pi-1", {}, kValidity));
        response->set_ca_bundle_pem(other.ca_pem());
        return grpc::Status::OK;
      });
  Agent agent(controller);
  auto registration = agent.TryEnroll(controller.token());
  REQUIRE_FALSE(registration.ok());
  CHECK_THAT(std::string(registration.status().message()),
             Catch::Contains("does not start with the pinned CA"));
  CHECK_FALSE(fs::exists(agent.state.control_plane_file()));
}

TEST_CASE("an unreachable controller is a transient failure", "[client]") {
  int port = 0;
  {
    Controller gone;
    port = std::stoi(gone.address().substr(gone.address().find(':') + 1));
  }
  Controller controller;
  Agent agent(controller);
  ClientOptions options = Options();
  options.rpc_timeout = milliseconds(1000);
  auto registration = join::Enroll(agent.state, "127.0.0.1:" + std::to_string(port),
                                   controller.token(), Node(), options);
  REQUIRE_FALSE(registration.ok());
  CHECK(join::IsTransient(registration.status()));
}

TEST_CASE("re-registration presents the node certificate and renews it", "[client]") {
  Controller controller;
  Agent agent(controller);
  agent.Enroll();
  const std::string first_cert = ReadText(agent.state.cert_file());

  auto registration = agent.Reregister(/*renew=*/true);
  REQUIRE(registration.ok());
  CHECK(registration->node_id == kNodeId);
  CHECK(registration->certificate_renewed);
  const auto seen = controller.fake().registrations();
  REQUIRE(seen.size() == 2);
  CHECK(seen[1].identity == "node:pi-1");
  CHECK(seen[1].request.join_token().empty());
  CHECK_FALSE(seen[1].request.csr_pem().empty());
  CHECK(ReadText(agent.state.cert_file()) != first_cert);
  CHECK(agent.state.Load().ok());
}

TEST_CASE("re-registration without renewal sends no CSR and keeps node.crt", "[client]") {
  Controller controller;
  Agent agent(controller);
  agent.Enroll();
  const std::string first_cert = ReadText(agent.state.cert_file());
  auto registration = agent.Reregister(/*renew=*/false);
  REQUIRE(registration.ok());
  CHECK_FALSE(registration->certificate_renewed);
  const auto seen = controller.fake().registrations();
  REQUIRE(seen.size() == 2);
  CHECK(seen[1].identity == "node:pi-1");
  CHECK(seen[1].request.csr_pem().empty());
  CHECK(ReadText(agent.state.cert_file()) == first_cert);
}

TEST_CASE("a refused re-registration names the controller's reason", "[client]") {
  const absl::Status status =
      FailedReregistration([](const v1::NodeRegistration&, v1::RegistrationResponse* response) {
        response->set_accepted(false);
        response->set_reason("node pi-1 was removed by admin:alice");
        return grpc::Status::OK;
      });
  CHECK(status.code() == absl::StatusCode::kPermissionDenied);
  CHECK_THAT(std::string(status.message()),
             Catch::Contains("node pi-1 was removed by admin:alice"));
  CHECK_THAT(std::string(status.message()), Catch::Contains("join again"));
}

TEST_CASE("a re-registration answered for another node is refused", "[client]") {
  const absl::Status status =
      FailedReregistration([](const v1::NodeRegistration&, v1::RegistrationResponse* response) {
        response->set_accepted(true);
        response->set_node_id("pi-9");
        return grpc::Status::OK;
      });
  CHECK(status.code() == absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("heartbeats arrive at the returned interval as the node and stop on Stop",
          "[heartbeat]") {
  Controller controller;
  Agent agent(controller);
  agent.Enroll();
  constexpr milliseconds kInterval{150};
  controller.fake().set_heartbeat_interval(kInterval);
  auto heartbeater = agent.StartHeartbeats();
  // Acknowledged, not only received: the fifth answer may still be on its way to the agent.
  REQUIRE(pi::testing::WaitUntil([&] { return heartbeater->heartbeats_acknowledged() >= 5; },
                                 milliseconds(10'000)));
  heartbeater->Stop();
  const size_t after_stop = controller.fake().reports().size();

  // First a registration with the node certificate, then the heartbeats.
  const auto registrations = controller.fake().registrations();
  REQUIRE(registrations.size() == 2);
  CHECK(registrations[1].identity == "node:pi-1");
  const auto reports = controller.fake().reports();
  for (const auto& seen : reports) {
    CHECK(seen.identity == "node:pi-1");
    CHECK(seen.report.node_id() == kNodeId);
    CHECK(seen.report.summary().status() == v1::HealthStatus::OK);
    CHECK(seen.report.summary().cpu_usage_percent() == 12.5);
    CHECK(seen.report.summary().max_temperature_celsius() == 55.5);
    CHECK(seen.report.summary().agent_version() == "9.9.9");
  }
  // Spacing, measured loosely (a shared machine delays some calls and bunches others): on
  // average no faster than half the interval, and no gap near ten intervals.
  const auto span = reports.back().at - reports.front().at;
  CHECK(span >= (kInterval / 2) * static_cast<int>(reports.size() - 1));
  for (size_t i = 1; i < reports.size(); ++i) {
    CHECK(reports[i].at - reports[i - 1].at < kInterval * 10);
  }
  CHECK(heartbeater->heartbeats_acknowledged() >= 5);
  // Nothing may follow Stop(): this waits for what would have been three more heartbeats.
  std::this_thread::sleep_for(kInterval * 3);
  CHECK(controller.fake().reports().size() == after_stop);
}

TEST_CASE("Stop returns promptly while a heartbeat is in flight", "[heartbeat]") {
  Controller controller;
  Agent agent(controller);
  agent.Enroll();
  controller.fake().HoldReports();
  auto heartbeater = agent.StartHeartbeats();
  REQUIRE(pi::testing::WaitUntil([&] { return controller.fake().reports().size() == 1; },
                                 milliseconds(10'000)));
  const auto before = std::chrono::steady_clock::now();
  heartbeater->Stop();
  CHECK(std::chrono::steady_clock::now() - before < milliseconds(2000));
}

TEST_CASE("failed heartbeats are retried with backoff until they succeed", "[heartbeat]") {
  Controller controller;
  Agent agent(controller);
  agent.Enroll();
  controller.fake().set_heartbeat_interval(seconds(30));
  controller.fake().FailReports({grpc::Status(grpc::StatusCode::UNAVAILABLE, "busy"),
                                 grpc::Status(grpc::StatusCode::UNAVAILABLE, "busy")});
  agent.HeartbeatUntilAcknowledged(1);
  const auto reports = controller.fake().reports();
  REQUIRE(reports.size() == 3);
  // 50 ms after the first failure, 100 ms after the second: well before the 30 s interval.
  CHECK(reports[1].at - reports[0].at >= milliseconds(45));
  CHECK(reports[2].at - reports[1].at >= milliseconds(95));
  // Transient failures do not make the agent register again.
  CHECK(controller.fake().registrations().size() == 2);
}

TEST_CASE("a heartbeat refused for the node's identity leads to a new registration",
          "[heartbeat]") {
  Controller controller;
  Agent agent(controller);
  agent.Enroll();
  controller.fake().FailReports(
      {grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "node pi-1 is unknown")});
  agent.HeartbeatUntilAcknowledged(1);
  // The join, the start-up registration, and one more after the refusal.
  CHECK(controller.fake().registrations().size() == 3);
}

TEST_CASE("a restarted agent renews its certificate when it registers again", "[heartbeat]") {
  Controller controller;
  Agent agent(controller);
  agent.Enroll();
  const std::string first_cert = ReadText(agent.state.cert_file());
  Heartbeater::Options options = FastHeartbeats();
  options.renew_certificate = true;
  agent.HeartbeatUntilAcknowledged(1, options);
  CHECK(ReadText(agent.state.cert_file()) != first_cert);
  CHECK(controller.fake().reports().front().identity == "node:pi-1");
}

// main.cc relies on this: the NodeAgent listener binds the port held for it during the join.
TEST_CASE("a gRPC listener binds a port while it is reserved", "[port]") {
  auto reservation = PortReservation::Reserve({"127.0.0.1", 0});
  REQUIRE(reservation.ok());
  grpc::CallbackGenericService service;
  grpc::ServerBuilder builder;
  int bound = 0;
  const std::string address = "127.0.0.1:" + std::to_string(reservation->port());
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound);
  builder.RegisterCallbackGenericService(&service);
  auto server = builder.BuildAndStart();
  REQUIRE(server != nullptr);
  CHECK(bound == reservation->port());
  server->Shutdown();
}

}  // namespace
}  // namespace pi::agent::join
