#pragma once

#include <atomic>

#include "absl/status/statusor.h"
#include "common/grpc/blocking_tasks.h"
#include "control-plane/cluster/cluster.h"
#include "control-plane/provisioning/provisioner.h"
#include "picontroller/v1/control_plane.grpc.pb.h"

namespace pi::controlplane::cluster {

// The ControlPlane gRPC adapter (DESIGN 4.3): wire messages in, Cluster calls, wire messages out.
// Registration refusals by policy are answered accepted = false with the reason; every other
// error keeps its status code. Provisioning requests (admins only) go to the provisioner.
class ControlPlaneService final : public picontroller::v1::ControlPlane::CallbackService {
 public:
  // `provisioner` null: RequestProvisioning answers UNIMPLEMENTED. Both must outlive the service.
  ControlPlaneService(Cluster& cluster, provisioning::Provisioner* provisioner)
      : cluster_(cluster), provisioner_(provisioner) {}

  grpc::ServerUnaryReactor* RegisterNode(grpc::CallbackServerContext* context,
                                         const picontroller::v1::NodeRegistration* request,
                                         picontroller::v1::RegistrationResponse* response) override;
  grpc::ServerUnaryReactor* ReportHealth(grpc::CallbackServerContext* context,
                                         const picontroller::v1::HealthReport* request,
                                         google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* SyncClusterState(
      grpc::CallbackServerContext* context, const picontroller::v1::ClusterStateRequest* request,
      picontroller::v1::ClusterStateResponse* response) override;
  grpc::ServerUnaryReactor* RequestProvisioning(
      grpc::CallbackServerContext* context, const picontroller::v1::ProvisioningRequest* request,
      picontroller::v1::ProvisioningResponse* response) override;

 private:
  // Registrations in flight at once; more are refused with RESOURCE_EXHAUSTED, so that a flood of
  // anonymous registrations cannot pile up threads.
  static constexpr int kMaxPendingRegistrations = 32;

  Cluster& cluster_;
  provisioning::Provisioner* const provisioner_;
  std::atomic<int> pending_registrations_{0};
  // Registrations sign a certificate and commit to disk: they run here, not on gRPC's threads.
  common::BlockingTasks blocking_;
};

// INVALID_ARGUMENT when a heartbeat's summary carries values no agent sends (NaN, negative,
// available memory above the total, CPU above 100 %).
absl::Status ValidateHealthSummary(const picontroller::v1::HealthSummary& summary);

// The provisioner's view of a request. MODE_UNSPECIFIED means apply, as proto3 callers that set
// no mode expect; INVALID_ARGUMENT for no target or an unknown mode.
absl::StatusOr<provisioning::ProvisioningSpec> FromProto(
    const picontroller::v1::ProvisioningRequest& request);

}  // namespace pi::controlplane::cluster
