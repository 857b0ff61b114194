#include "control-plane/cluster/control_plane_service.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <cmath>

#include "common/grpc/proto_time.h"
#include "common/grpc/status.h"
#include "common/grpc/unary_task.h"
#include "control-plane/cluster/cluster_grpc.h"

namespace pi::controlplane::cluster {
namespace {

namespace pb = picontroller::v1;

bool IsPolicyRefusal(const absl::Status& status) {
  return absl::IsUnauthenticated(status) || absl::IsPermissionDenied(status) ||
         absl::IsAlreadyExists(status) || absl::IsFailedPrecondition(status);
}

bool IsFraction(double value, double max) {
  return std::isfinite(value) && value >= 0 && value <= max;
}

}  // namespace

absl::Status ValidateHealthSummary(const pb::HealthSummary& summary) {
  if (!pb::HealthStatus::State_IsValid(summary.status())) {
    return absl::InvalidArgumentError("summary.status is not a known health state");
  }
  if (!IsFraction(summary.cpu_usage_percent(), 100.0)) {
    return absl::InvalidArgumentError("summary.cpu_usage_percent must be within 0-100");
  }
  if (summary.memory_available_bytes() > summary.memory_total_bytes()) {
    return absl::InvalidArgumentError(
        "summary.memory_available_bytes is larger than memory_total_bytes");
  }
  if (!IsFraction(summary.load1(), 1e6)) {
    return absl::InvalidArgumentError("summary.load1 must be a finite, non-negative number");
  }
  if (summary.has_max_temperature_celsius() &&
      !(std::isfinite(summary.max_temperature_celsius()) &&
        std::fabs(summary.max_temperature_celsius()) < 1000)) {
    return absl::InvalidArgumentError("summary.max_temperature_celsius is not a temperature");
  }
  if (summary.uptime().seconds() < 0 || summary.uptime().nanos() < 0) {
    return absl::InvalidArgumentError("summary.uptime must not be negative");
  }
  if (summary.agent_version().size() > 64) {
    return absl::InvalidArgumentError("summary.agent_version is longer than 64 characters");
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* ControlPlaneService::RegisterNode(grpc::CallbackServerContext* context,
                                                            const pb::NodeRegistration* request,
                                                            pb::RegistrationResponse* response) {
  Registration registration;
  registration.join_token = request->join_token();
  registration.hostname = request->hostname();
  registration.agent_address = request->agent_address();
  registration.peer_host = PeerHost(*context);
  registration.labels.insert(request->labels().begin(), request->labels().end());
  registration.facts.insert(request->facts().begin(), request->facts().end());
  registration.csr_pem = request->csr_pem();
  if (++pending_registrations_ > kMaxPendingRegistrations) {
    --pending_registrations_;
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                 "too many registrations at once; try again in a moment"));
    return reactor;
  }
  // Frees the slot when the task is done with, whether it ran or could not be started.
  std::shared_ptr<void> slot(nullptr, [this](void*) { --pending_registrations_; });
  return common::FinishUnaryOnTask(
      context, blocking_,
      [this, slot = std::move(slot), registration = std::move(registration),
       caller = CallerFromContext(*context), response]() -> absl::Status {
        absl::StatusOr<RegistrationResult> result = cluster_.RegisterNode(registration, caller);
        if (!result.ok()) {
          if (!IsPolicyRefusal(result.status())) return result.status();
          spdlog::warn("refused registration of {:?}: {}", registration.hostname,
                       std::string(result.status().message()));
          response->set_accepted(false);
          response->set_reason(std::string(result.status().message()));
          return absl::OkStatus();
        }
        spdlog::info("node {} ({}) {} at {}", result->node_id, registration.hostname,
                     registration.join_token.empty() ? "registered again" : "joined",
                     result->agent_address);
        response->set_accepted(true);
        response->set_node_id(result->node_id);
        response->set_certificate_pem(result->certificate_pem);
        response->set_ca_bundle_pem(result->ca_pem);
        *response->mutable_heartbeat_interval() =
            common::ToProtoDuration(result->heartbeat_interval);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* ControlPlaneService::ReportHealth(grpc::CallbackServerContext* context,
                                                            const pb::HealthReport* request,
                                                            google::protobuf::Empty*) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status = ValidateHealthSummary(request->summary());
  if (status.ok()) {
    status = cluster_.ReportHealth(CallerFromContext(*context), request->node_id(),
                                   request->summary().SerializeAsString());
  }
  reactor->Finish(common::ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* ControlPlaneService::SyncClusterState(
    grpc::CallbackServerContext* context, const pb::ClusterStateRequest* request,
    pb::ClusterStateResponse* response) {
  const Caller caller = CallerFromContext(*context);
  absl::Status allowed = caller.identity.has_value()
                             ? common::RequireRole(*caller.identity, {common::Role::kController},
                                                   "ControlPlane.SyncClusterState")
                             : absl::UnauthenticatedError(
                                   "SyncClusterState needs the controller certificate of a peer");
  if (!allowed.ok()) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(common::ToGrpcStatus(allowed));
    return reactor;
  }
  return common::FinishUnaryOnTask(
      context, blocking_,
      [this, since = request->since_revision(), max = request->max_changes(),
       response]() -> absl::Status {
        absl::StatusOr<ClusterDelta> delta = cluster_.ChangesSince(since, max);
        if (!delta.ok()) return delta.status();
        response->set_revision(delta->revision);
        response->set_full_snapshot(delta->full_snapshot);
        response->set_more(delta->more);
        for (const store::Change& change : delta->changes) {
          if (absl::Status status = ToProto(change, true, response->add_changes()); !status.ok()) {
            return status;
          }
        }
        for (const store::Node& node : delta->snapshot.nodes) ToProto(node, response->add_nodes());
        for (const store::JoinToken& token : delta->snapshot.join_tokens) {
          ToProto(token, true, response->add_join_tokens());
        }
        return absl::OkStatus();
      });
}

absl::StatusOr<provisioning::ProvisioningSpec> FromProto(const pb::ProvisioningRequest& request) {
  provisioning::ProvisioningSpec spec;
  switch (request.target_case()) {
    case pb::ProvisioningRequest::kNodeId:
      spec.target = provisioning::TargetKind::kNode;
      spec.node_id = request.node_id();
      break;
    case pb::ProvisioningRequest::kLabelSelector:
      spec.target = provisioning::TargetKind::kSelector;
      spec.label_selector = request.label_selector();
      break;
    case pb::ProvisioningRequest::kAllNodes:
      if (!request.all_nodes()) {
        return absl::InvalidArgumentError("all_nodes is false: name a node or a label selector");
      }
      spec.target = provisioning::TargetKind::kAll;
      break;
    case pb::ProvisioningRequest::TARGET_NOT_SET:
      return absl::InvalidArgumentError("name the target: node_id, label_selector or all_nodes");
  }
  switch (request.mode()) {
    case pb::ProvisioningRequest::MODE_UNSPECIFIED:
    case pb::ProvisioningRequest::MODE_APPLY:
      spec.plan = false;
      break;
    case pb::ProvisioningRequest::MODE_PLAN:
      spec.plan = true;
      break;
    default:
      return absl::InvalidArgumentError(fmt::format("mode {} is not a known provisioning mode",
                                                    static_cast<int>(request.mode())));
  }
  spec.profile = request.profile();
  spec.parameters.insert(request.parameters().begin(), request.parameters().end());
  return spec;
}

grpc::ServerUnaryReactor* ControlPlaneService::RequestProvisioning(
    grpc::CallbackServerContext* context, const pb::ProvisioningRequest* request,
    pb::ProvisioningResponse* response) {
  // A call has one default reactor: the refusals take it here, the task below otherwise.
  const auto refuse = [context](const absl::Status& status) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(common::ToGrpcStatus(status));
    return reactor;
  };
  const Caller caller = CallerFromContext(*context);
  absl::Status allowed =
      caller.identity.has_value()
          ? common::RequireRole(*caller.identity, {common::Role::kAdmin},
                                "ControlPlane.RequestProvisioning")
          : absl::UnauthenticatedError("RequestProvisioning needs an admin certificate");
  if (!allowed.ok()) return refuse(allowed);
  if (provisioner_ == nullptr) {
    return refuse(absl::UnimplementedError("provisioning is not enabled in this pi-controller"));
  }
  absl::StatusOr<provisioning::ProvisioningSpec> spec = FromProto(*request);
  if (!spec.ok()) return refuse(spec.status());
  // Reading the profile and the release commit touch the disk: not on gRPC's threads.
  return common::FinishUnaryOnTask(
      context, blocking_,
      [this, spec = *std::move(spec), who = caller.identity->ToString(),
       response]() -> absl::Status {
        absl::StatusOr<provisioning::Requested> requested = provisioner_->Request(spec, who);
        if (!requested.ok()) return requested.status();
        const release::Provisioning& created = requested->provisioning;
        spdlog::info("{} requested provisioning {} ({} {} on {}): releases {}", who, created.id,
                     created.plan ? "plan" : "apply", created.profile, created.target,
                     fmt::join(created.release_ids, ", "));
        response->set_provisioning_id(created.id);
        for (const std::string& id : created.release_ids) response->add_release_ids(id);
        for (const std::string& id : requested->node_ids) response->add_node_ids(id);
        return absl::OkStatus();
      });
}

}  // namespace pi::controlplane::cluster
