#include "control-plane/queue/worker_service.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/grpc/proto_time.h"
#include "common/grpc/status.h"
#include "common/tls/credentials.h"

namespace pi::controlplane::queue {
namespace {

namespace wire = hookaido::worker::v1;

constexpr std::string_view kLeaseConflictMessage = "lease is invalid or expired";

// Finishes a unary call at once; used for the checks made before the engine is involved.
grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context,
                                    const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(common::ToGrpcStatus(status));
  return reactor;
}

std::optional<std::string_view> AuthorizationHeader(const grpc::CallbackServerContext& context) {
  const auto& metadata = context.client_metadata();
  auto found = metadata.find("authorization");
  if (found == metadata.end()) return std::nullopt;
  return std::string_view(found->second.data(), found->second.size());
}

absl::Status RequireEndpoint(const std::string& endpoint) {
  if (endpoint.empty()) return absl::InvalidArgumentError("endpoint is required");
  return absl::OkStatus();
}

// A Duration field that must be well formed and not negative.
absl::StatusOr<std::chrono::nanoseconds> NonNegativeDuration(
    const google::protobuf::Duration& value, std::string_view field) {
  auto duration = common::FromProtoDuration(value, field);
  if (!duration.ok()) return duration.status();
  if (*duration < std::chrono::nanoseconds::zero()) {
    return absl::InvalidArgumentError(fmt::format("{} must not be negative", field));
  }
  return duration;
}

// The leases an ack or nack names: exactly one of the single and the batch form, every id
// non-empty, at most kMaxLeaseBatch distinct ones. Checked here rather than left to the engine so
// that a malformed request is refused before its token is looked at (DESIGN 4.1).
absl::StatusOr<std::vector<std::string>> LeaseIds(
    const std::string& lease_id, const google::protobuf::RepeatedPtrField<std::string>& lease_ids) {
  if (lease_id.empty() == lease_ids.empty()) {
    return absl::InvalidArgumentError("exactly one of lease_id and lease_ids is required");
  }
  if (!lease_id.empty()) return std::vector<std::string>{lease_id};
  return DistinctLeaseIds(std::vector<std::string>(lease_ids.begin(), lease_ids.end()));
}

// Fills an Ack or Nack response from the engine's per-lease results. The single form has no
// conflict list on the wire: its one conflict is the call's FAILED_PRECONDITION status.
template <typename Response>
grpc::Status SettleResponse(const absl::StatusOr<std::vector<LeaseResult>>& results,
                            bool single_form, Response& response,
                            void (Response::*set_count)(uint32_t)) {
  if (!results.ok()) return common::ToGrpcStatus(results.status());
  uint32_t applied = 0;
  for (const LeaseResult& result : *results) {
    if (result.outcome == LeaseOutcome::kApplied) {
      ++applied;
      continue;
    }
    if (single_form) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          std::string(kLeaseConflictMessage));
    }
    wire::LeaseConflict* conflict = response.add_conflicts();
    conflict->set_lease_id(result.lease_id);
    conflict->set_expired(result.outcome == LeaseOutcome::kExpired);
  }
  (response.*set_count)(applied);
  return grpc::Status::OK;
}

void FillItem(const LeasedItem& leased, wire::DequeueItem& item) {
  item.set_id(leased.id);
  item.set_lease_id(leased.lease_id);
  *item.mutable_received_at() = common::ToProtoTimestamp(leased.received_at);
  item.set_attempt(leased.attempt);
  *item.mutable_next_run_at() = common::ToProtoTimestamp(leased.next_run_at);
  item.set_route(leased.route);
  item.set_payload(leased.payload);
  item.mutable_headers()->insert(leased.headers.begin(), leased.headers.end());
  item.mutable_trace()->insert(leased.trace.begin(), leased.trace.end());
}

// When the engine must stop leasing to this caller, on the steady clock; unset when the client
// gave no deadline (gRPC then reports one at the end of time).
//
// A little before the RPC deadline: the server learns the deadline as a timeout relative to the
// request's arrival, so its deadline falls after the client's by the request's transit time, and
// a lease made in the last moments could not reach the client anyway (its commit and the reply
// take time). An item leased to a client that already gave up would sit leased until the lease
// expires. The margin is a tenth of the time left, at most kMaxDeadlineMargin.
std::optional<std::chrono::steady_clock::time_point> CallerDeadline(
    const grpc::CallbackServerContext& context) {
  constexpr auto kNoDeadlineBeyond = std::chrono::hours(24 * 365);
  constexpr auto kMaxDeadlineMargin = std::chrono::milliseconds(100);
  const auto wall_now = std::chrono::system_clock::now();
  const auto steady_now = std::chrono::steady_clock::now();
  const auto remaining = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      context.deadline() - wall_now);
  if (remaining > kNoDeadlineBeyond) return std::nullopt;
  const std::chrono::steady_clock::duration margin =
      std::clamp<std::chrono::steady_clock::duration>(
          remaining / 10, std::chrono::steady_clock::duration::zero(), kMaxDeadlineMargin);
  return steady_now + remaining - margin;
}

// One Dequeue call. The engine answers through `done`, possibly much later (long-poll), so no
// thread waits. The engine's callback is the only place that calls Finish: a cancelled call asks
// the engine to end the wait, and the engine then answers CANCELLED through the same callback.
// That keeps Finish to exactly once and the reactor alive until the engine is done with it
// (gRPC calls OnDone, which deletes it, only after Finish).
class DequeueReactor final : public grpc::ServerUnaryReactor {
 public:
  DequeueReactor(QueueEngine& engine, wire::DequeueResponse* response)
      : engine_(engine), response_(response) {}

  void Start(DequeueRequest request) {
    const uint64_t ticket = engine_.Dequeue(
        std::move(request),
        [this](absl::StatusOr<std::vector<LeasedItem>> items) { Answer(std::move(items)); });
    std::lock_guard lock(mu_);
    ticket_ = ticket;
  }

  // gRPC calls OnCancel only once the handler has returned, so after Start stored the ticket.
  void OnCancel() override {
    std::optional<uint64_t> ticket;
    {
      std::lock_guard lock(mu_);
      ticket = ticket_;
    }
    // A no-op when the engine already answered.
    if (ticket) engine_.CancelDequeue(*ticket);
  }

  void OnDone() override { delete this; }

 private:
  void Answer(absl::StatusOr<std::vector<LeasedItem>> items) {
    if (!items.ok()) {
      Finish(common::ToGrpcStatus(items.status()));
      return;
    }
    for (const LeasedItem& leased : *items) FillItem(leased, *response_->add_items());
    // May delete this reactor; nothing may touch it afterwards.
    Finish(grpc::Status::OK);
  }

  QueueEngine& engine_;
  wire::DequeueResponse* response_;
  std::mutex mu_;
  std::optional<uint64_t> ticket_;
};

}  // namespace

WorkerService::WorkerService(QueueEngine& engine, const RouteTable& routes)
    : engine_(engine), routes_(routes) {}

grpc::ServerUnaryReactor* WorkerService::Dequeue(grpc::CallbackServerContext* context,
                                                 const wire::DequeueRequest* request,
                                                 wire::DequeueResponse* response) {
  if (auto valid = RequireEndpoint(request->endpoint()); !valid.ok()) {
    return FinishNow(context, valid);
  }
  auto max_wait = NonNegativeDuration(request->max_wait(), "max_wait");
  if (!max_wait.ok()) return FinishNow(context, max_wait.status());
  auto lease_ttl = NonNegativeDuration(request->lease_ttl(), "lease_ttl");
  if (!lease_ttl.ok()) return FinishNow(context, lease_ttl.status());
  auto route = routes_.AuthorizePull(request->endpoint(), AuthorizationHeader(*context));
  if (!route.ok()) return FinishNow(context, route.status());

  DequeueRequest dequeue;
  dequeue.route = *std::move(route);
  // uint32 on the wire; clamp before narrowing, the engine clamps to the route's limit.
  dequeue.batch = static_cast<int>(
      std::clamp<uint32_t>(request->batch(), 1, static_cast<uint32_t>(kMaxDequeueBatch)));
  dequeue.lease_ttl = *lease_ttl;
  dequeue.max_wait = *max_wait;
  dequeue.caller_deadline = CallerDeadline(*context);

  auto* reactor = new DequeueReactor(engine_, response);
  reactor->Start(std::move(dequeue));
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::Ack(grpc::CallbackServerContext* context,
                                             const wire::AckRequest* request,
                                             wire::AckResponse* response) {
  if (auto valid = RequireEndpoint(request->endpoint()); !valid.ok()) {
    return FinishNow(context, valid);
  }
  auto lease_ids = LeaseIds(request->lease_id(), request->lease_ids());
  if (!lease_ids.ok()) return FinishNow(context, lease_ids.status());
  auto route = routes_.AuthorizePull(request->endpoint(), AuthorizationHeader(*context));
  if (!route.ok()) return FinishNow(context, route.status());

  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const bool single_form = !request->lease_id().empty();
  engine_.Ack(*route, *lease_ids,
              [reactor, response, single_form](absl::StatusOr<std::vector<LeaseResult>> results) {
                reactor->Finish(
                    SettleResponse(results, single_form, *response, &wire::AckResponse::set_acked));
              });
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::Nack(grpc::CallbackServerContext* context,
                                              const wire::NackRequest* request,
                                              wire::NackResponse* response) {
  if (auto valid = RequireEndpoint(request->endpoint()); !valid.ok()) {
    return FinishNow(context, valid);
  }
  auto lease_ids = LeaseIds(request->lease_id(), request->lease_ids());
  if (!lease_ids.ok()) return FinishNow(context, lease_ids.status());
  // Refused even with dead=true, where the delay is ignored: the request is still malformed.
  auto delay = NonNegativeDuration(request->delay(), "delay");
  if (!delay.ok()) return FinishNow(context, delay.status());
  auto route = routes_.AuthorizePull(request->endpoint(), AuthorizationHeader(*context));
  if (!route.ok()) return FinishNow(context, route.status());

  NackOptions options;
  options.delay = *delay;
  options.dead = request->dead();
  options.reason = request->reason();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const bool single_form = !request->lease_id().empty();
  engine_.Nack(*route, *lease_ids, options,
               [reactor, response, single_form](absl::StatusOr<std::vector<LeaseResult>> results) {
                 reactor->Finish(SettleResponse(results, single_form, *response,
                                                &wire::NackResponse::set_succeeded));
               });
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::Extend(grpc::CallbackServerContext* context,
                                                const wire::ExtendRequest* request,
                                                google::protobuf::Empty* /*response*/) {
  if (auto valid = RequireEndpoint(request->endpoint()); !valid.ok()) {
    return FinishNow(context, valid);
  }
  if (request->lease_id().empty()) {
    return FinishNow(context, absl::InvalidArgumentError("lease_id is required"));
  }
  // Any well-formed duration is accepted: extend_by <= 0 is a no-op success (DESIGN 4.1).
  auto extend_by = common::FromProtoDuration(request->extend_by(), "extend_by");
  if (!extend_by.ok()) return FinishNow(context, extend_by.status());
  auto route = routes_.AuthorizePull(request->endpoint(), AuthorizationHeader(*context));
  if (!route.ok()) return FinishNow(context, route.status());

  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  engine_.Extend(*route, request->lease_id(), *extend_by,
                 [reactor](absl::Status status) { reactor->Finish(common::ToGrpcStatus(status)); });
  return reactor;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> WorkerServerCredentials(
    const PullTlsConfig& tls) {
  if (tls.cert_file.empty()) {
    // Serving plaintext while the operator asked for client certificates would silently drop
    // the protection they configured.
    if (!tls.key_file.empty() || !tls.client_ca.empty() || tls.require_client_cert) {
      return absl::InvalidArgumentError(
          "pull_api.tls: key_file, client_ca and client_auth need a cert_file");
    }
    return grpc::InsecureServerCredentials();
  }
  common::ServerTlsConfig config;
  config.cert_file = tls.cert_file;
  config.key_file = tls.key_file;
  config.ca_file = tls.client_ca;
  config.client_auth =
      tls.require_client_cert ? common::ClientAuth::kRequireAndVerify : common::ClientAuth::kNone;
  return common::MakeServerCredentials(config);
}

}  // namespace pi::controlplane::queue
