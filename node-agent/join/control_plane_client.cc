#include "node-agent/join/control_plane_client.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>

#include "common/grpc/proto_time.h"
#include "common/system/duration.h"
#include "common/system/files.h"
#include "common/tls/credentials.h"
#include "common/tls/identity.h"
#include "common/tls/pinned_ca.h"
#include "common/tls/x509.h"
#include "control-plane/cluster/join_token.h"
#include "node-agent/join/backoff.h"
#include "picontroller/v1/control_plane.grpc.pb.h"

namespace pi::agent::join {
namespace {

namespace v1 = picontroller::v1;
using std::chrono::nanoseconds;

// The CA signs whatever identity the controller decides; the CSR's subject is only a label.
constexpr char kCsrCommonName[] = "pi-agent";
constexpr size_t kMaxPemBytes = 1024 * 1024;

absl::Status FromGrpc(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

std::string_view CodeName(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kUnauthenticated:
      return "UNAUTHENTICATED";
    case absl::StatusCode::kPermissionDenied:
      return "PERMISSION_DENIED";
    case absl::StatusCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case absl::StatusCode::kAlreadyExists:
      return "ALREADY_EXISTS";
    case absl::StatusCode::kNotFound:
      return "NOT_FOUND";
    case absl::StatusCode::kFailedPrecondition:
      return "FAILED_PRECONDITION";
    case absl::StatusCode::kUnavailable:
      return "UNAVAILABLE";
    case absl::StatusCode::kDeadlineExceeded:
      return "DEADLINE_EXCEEDED";
    default:
      return "error";
  }
}

// Sets the deadline and lets `cancel` end the call early.
class CallContext {
 public:
  CallContext(std::chrono::milliseconds timeout, common::CancelToken* cancel) {
    context_.set_deadline(std::chrono::system_clock::now() + timeout);
    if (cancel != nullptr) {
      registration_.emplace(cancel->OnCancel([this] { context_.TryCancel(); }));
    }
  }
  grpc::ClientContext* get() { return &context_; }

 private:
  grpc::ClientContext context_;
  std::optional<common::CancelToken::Registration> registration_;
};

v1::NodeRegistration MakeRegistration(const NodeDescription& node) {
  v1::NodeRegistration request;
  request.set_hostname(node.hostname);
  request.set_agent_address(node.agent_address);
  request.mutable_labels()->insert(node.labels.begin(), node.labels.end());
  request.mutable_facts()->insert(node.facts.begin(), node.facts.end());
  return request;
}

nanoseconds HeartbeatInterval(const v1::RegistrationResponse& response,
                              const ClientOptions& options) {
  nanoseconds interval = options.default_heartbeat_interval;
  if (response.has_heartbeat_interval()) {
    auto parsed = common::FromProtoDuration(response.heartbeat_interval(), "heartbeat_interval");
    if (parsed.ok() && *parsed > nanoseconds(0)) interval = *parsed;
  }
  return std::max<nanoseconds>(interval, kMinHeartbeatInterval);
}

// What an operator does about a join the controller refused with `code`.
std::string_view JoinAdvice(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kUnauthenticated:
      return "the join token is wrong, expired, used up or revoked: ask an admin for a new one";
    case absl::StatusCode::kAlreadyExists:
      return "if this Pi was in the cluster before, an admin removes the old node first; "
             "otherwise give it another node_name";
    default:
      return "fix what the controller names (an admin creates a new join token with pictl tokens "
             "create) and run the join again";
  }
}

}  // namespace

bool IsTransient(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable ||
         status.code() == absl::StatusCode::kDeadlineExceeded;
}

absl::StatusOr<Registration> Enroll(const StateDir& state, std::string_view address,
                                    std::string_view token, const NodeDescription& node,
                                    const ClientOptions& options) {
  auto parsed = controlplane::cluster::ParseJoinToken(token);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        fmt::format("the join token is malformed ({}); copy it again from the admin who created "
                    "it",
                    std::string(parsed.status().message())));
  }
  // The pin check comes first: until the controller proves it holds the pinned CA, nothing
  // secret leaves this host.
  auto ca_pem = common::FetchPinnedCa(address, parsed->ca_pin, options.rpc_timeout);
  if (!ca_pem.ok()) {
    const std::string message(ca_pem.status().message());
    if (ca_pem.status().code() == absl::StatusCode::kPermissionDenied) {
      return absl::PermissionDeniedError(fmt::format(
          "refusing to join {}: {}. Check the address, and that the join token was created on "
          "this controller",
          address, message));
    }
    return absl::Status(ca_pem.status().code(),
                        fmt::format("cannot fetch the CA of {}: {}", address, message));
  }

  auto key = state.LoadOrCreateKey();
  if (!key.ok()) return key.status();
  auto csr = common::CreateCsr(*key, kCsrCommonName, {});
  if (!csr.ok()) return csr.status();

  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = *ca_pem;
  auto stub = v1::ControlPlane::NewStub(
      grpc::CreateChannel(std::string(address), grpc::SslCredentials(tls)));
  v1::NodeRegistration request = MakeRegistration(node);
  request.set_join_token(std::string(token));
  request.set_csr_pem(*csr);
  v1::RegistrationResponse response;
  CallContext context(options.rpc_timeout, nullptr);
  const absl::Status status = FromGrpc(stub->RegisterNode(context.get(), request, &response));
  if (!status.ok()) {
    if (IsTransient(status)) {
      return absl::Status(status.code(), fmt::format("cannot register with {}: {}", address,
                                                     std::string(status.message())));
    }
    return absl::Status(status.code(),
                        fmt::format("the controller at {} refused the join ({}: {}); {}", address,
                                    CodeName(status.code()), std::string(status.message()),
                                    JoinAdvice(status.code())));
  }
  if (!response.accepted()) {
    return absl::PermissionDeniedError(
        fmt::format("the controller at {} refused the join: {}; {}", address,
                    response.reason().empty() ? "no reason given" : response.reason(),
                    JoinAdvice(absl::StatusCode::kUnknown)));
  }

  const auto bad_answer = [&address](const std::string& what) {
    return absl::InternalError(fmt::format(
        "the controller at {} accepted the join but {}; nothing was stored, report this to the "
        "controller's admin",
        address, what));
  };
  if (!common::ParseIdentity("node:" + response.node_id()).ok()) {
    return bad_answer(fmt::format("returned an invalid node id \"{}\"", response.node_id()));
  }
  if (auto checked = CheckNodeCertificate(response.certificate_pem(), *key, response.node_id());
      !checked.ok()) {
    return bad_answer(
        fmt::format("its certificate is unusable: {}", std::string(checked.message())));
  }
  // Keep the bundle the controller sends (it may carry more than one CA) only when it starts with
  // the CA the token pinned; otherwise the one that was verified.
  std::string ca_bundle = *ca_pem;
  if (!response.ca_bundle_pem().empty()) {
    auto pin = common::CaPin(response.ca_bundle_pem());
    if (!pin.ok() || *pin != parsed->ca_pin) {
      return bad_answer("its CA bundle does not start with the pinned CA");
    }
    ca_bundle = response.ca_bundle_pem();
  }
  const Enrollment enrollment{std::string(address), response.node_id()};
  if (auto saved = state.Save(enrollment, response.certificate_pem(), ca_bundle); !saved.ok()) {
    return saved;
  }
  return Registration{response.node_id(), HeartbeatInterval(response, options), false};
}

absl::StatusOr<Registration> Reregister(const StateDir& state, const Enrollment& enrollment,
                                        const NodeDescription& node, bool renew,
                                        const ClientOptions& options, common::CancelToken* cancel) {
  auto credentials =
      common::MakeChannelCredentials({state.ca_file(), state.cert_file(), state.key_file()});
  if (!credentials.ok()) return credentials.status();
  v1::NodeRegistration request = MakeRegistration(node);
  std::string key_pem;
  if (renew) {
    auto key = common::ReadFileToString(state.key_file(), kMaxPemBytes);
    if (!key.ok()) return key.status();
    key_pem = *std::move(key);
    auto csr = common::CreateCsr(key_pem, kCsrCommonName, {});
    if (!csr.ok()) return csr.status();
    request.set_csr_pem(*csr);
  }
  auto stub = v1::ControlPlane::NewStub(grpc::CreateChannel(enrollment.address, *credentials));
  v1::RegistrationResponse response;
  CallContext context(options.rpc_timeout, cancel);
  const absl::Status status = FromGrpc(stub->RegisterNode(context.get(), request, &response));
  if (!status.ok()) {
    return absl::Status(
        status.code(),
        fmt::format("registering node {} with {} failed ({}: {})", enrollment.node_id,
                    enrollment.address, CodeName(status.code()), std::string(status.message())));
  }
  if (!response.accepted()) {
    return absl::PermissionDeniedError(fmt::format(
        "the controller at {} refused node {}: {}; if the node was removed from the cluster, "
        "stop pi-agent, delete the files in {} and join again with a new token",
        enrollment.address, enrollment.node_id,
        response.reason().empty() ? "no reason given" : response.reason(), state.dir()));
  }
  if (response.node_id() != enrollment.node_id) {
    return absl::FailedPreconditionError(
        fmt::format("the controller at {} answered for node \"{}\" but this agent is node {}",
                    enrollment.address, response.node_id(), enrollment.node_id));
  }
  Registration registration{response.node_id(), HeartbeatInterval(response, options), false};
  if (!response.certificate_pem().empty()) {
    if (key_pem.empty()) {
      auto key = common::ReadFileToString(state.key_file(), kMaxPemBytes);
      if (!key.ok()) return key.status();
      key_pem = *std::move(key);
    }
    if (auto checked =
            CheckNodeCertificate(response.certificate_pem(), key_pem, enrollment.node_id);
        !checked.ok()) {
      return absl::InternalError(
          fmt::format("the controller at {} renewed the node certificate but it is unusable "
                      "({}); keeping the old one",
                      enrollment.address, std::string(checked.message())));
    }
    if (auto saved = state.SaveCertificate(response.certificate_pem()); !saved.ok()) return saved;
    registration.certificate_renewed = true;
  }
  return registration;
}

Heartbeater::Heartbeater(StateDir state, Enrollment enrollment, NodeDescription node,
                         std::function<NodeHealthSummary()> summarize, Options options)
    : state_(std::move(state)),
      enrollment_(std::move(enrollment)),
      node_(std::move(node)),
      summarize_(std::move(summarize)),
      options_(std::move(options)) {}

Heartbeater::~Heartbeater() { Stop(); }

void Heartbeater::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Heartbeater::Stop() {
  cancel_.Cancel();
  if (thread_.joinable()) thread_.join();
}

namespace {

v1::HealthReport MakeReport(const std::string& node_id, const NodeHealthSummary& summary) {
  v1::HealthReport report;
  report.set_node_id(node_id);
  auto* out = report.mutable_summary();
  out->set_status(summary.healthy ? v1::HealthStatus::OK : v1::HealthStatus::DEGRADED);
  out->set_cpu_usage_percent(summary.cpu_usage_percent);
  out->set_memory_total_bytes(summary.memory_total_bytes);
  out->set_memory_available_bytes(summary.memory_available_bytes);
  out->set_load1(summary.load1);
  if (summary.max_temperature_celsius) {
    out->set_max_temperature_celsius(*summary.max_temperature_celsius);
  }
  out->set_under_voltage_now(summary.under_voltage_now);
  out->set_throttled_now(summary.throttled_now);
  out->set_root_filesystem_available_bytes(summary.root_filesystem_available_bytes);
  *out->mutable_uptime() = common::ToProtoDuration(summary.uptime);
  out->set_agent_version(summary.agent_version);
  return report;
}

// A heartbeat refused for who the caller is: the controller lost or replaced this node, so
// registering again is the way back (or the way to a clear refusal in the log).
bool NeedsRegistration(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnauthenticated ||
         status.code() == absl::StatusCode::kPermissionDenied ||
         status.code() == absl::StatusCode::kNotFound ||
         status.code() == absl::StatusCode::kFailedPrecondition;
}

}  // namespace

void Heartbeater::Run() {
  const common::Clock& clock = *options_.clock;
  Backoff backoff(options_.initial_backoff, options_.max_backoff, clock);
  bool renew = options_.renew_certificate;
  std::optional<Registration> registration;
  std::unique_ptr<v1::ControlPlane::Stub> stub;

  while (!cancel_.cancelled()) {
    if (!registration) {
      auto registered = Reregister(state_, enrollment_, node_, renew, options_.client, &cancel_);
      if (cancel_.cancelled()) break;
      absl::Status status = registered.status();
      if (registered.ok()) {
        // The channel is made after a renewal so heartbeats present the current certificate.
        auto credentials = common::MakeChannelCredentials(
            {state_.ca_file(), state_.cert_file(), state_.key_file()});
        status = credentials.status();
        if (credentials.ok()) {
          stub = v1::ControlPlane::NewStub(grpc::CreateChannel(enrollment_.address, *credentials));
        }
      }
      if (status.ok()) {
        registration = *std::move(registered);
        renew = false;
        spdlog::info("registered with the controller at {} as node {}; heartbeat every {}{}",
                     enrollment_.address, registration->node_id,
                     common::FormatDuration(registration->heartbeat_interval),
                     registration->certificate_renewed
                         ? "; node certificate renewed (the NodeAgent listener uses it after "
                           "the next restart)"
                         : "");
        continue;
      }
      const nanoseconds delay = backoff.Failure();
      spdlog::log(IsTransient(status) ? spdlog::level::warn : spdlog::level::err,
                  "{}; retrying in {}", std::string(status.message()),
                  common::FormatDuration(delay));
      cancel_.WaitFor(backoff.Remaining());
      continue;
    }

    const auto started = clock.Now();
    const v1::HealthReport report = MakeReport(registration->node_id, summarize_());
    google::protobuf::Empty reply;
    CallContext context(options_.client.rpc_timeout, &cancel_);
    const absl::Status status = FromGrpc(stub->ReportHealth(context.get(), report, &reply));
    if (cancel_.cancelled()) break;
    if (status.ok()) {
      if (backoff.consecutive_failures() > 0) {
        spdlog::info("heartbeats to {} are acknowledged again", enrollment_.address);
      }
      backoff.Success();
      acknowledged_.fetch_add(1);
      cancel_.WaitFor(
          std::max(nanoseconds(0), started + registration->heartbeat_interval - clock.Now()));
      continue;
    }
    const nanoseconds delay = backoff.Failure();
    spdlog::warn("heartbeat of node {} to {} failed ({}: {}); {} in {}", registration->node_id,
                 enrollment_.address, CodeName(status.code()), std::string(status.message()),
                 NeedsRegistration(status) ? "registering again" : "retrying",
                 common::FormatDuration(delay));
    if (NeedsRegistration(status)) registration.reset();
    cancel_.WaitFor(backoff.Remaining());
  }
}

}  // namespace pi::agent::join
