#pragma once

#include <atomic>

#include "common/grpc/blocking_tasks.h"
#include "control-plane/cluster/cluster.h"
#include "picontroller/v1/control_plane.grpc.pb.h"

namespace pi::controlplane::cluster {

// The ControlPlane gRPC adapter (DESIGN 4.3): wire messages in, Cluster calls, wire messages out.
// Registration refusals by policy are answered accepted = false with the reason; every other
// error keeps its status code.
class ControlPlaneService final : public picontroller::v1::ControlPlane::CallbackService {
 public:
  explicit ControlPlaneService(Cluster& cluster) : cluster_(cluster) {}

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
  std::atomic<int> pending_registrations_{0};
  // Registrations sign a certificate and commit to disk: they run here, not on gRPC's threads.
  common::BlockingTasks blocking_;
};

// INVALID_ARGUMENT when a heartbeat's summary carries values no agent sends (NaN, negative,
// available memory above the total, CPU above 100 %).
absl::Status ValidateHealthSummary(const picontroller::v1::HealthSummary& summary);

}  // namespace pi::controlplane::cluster
