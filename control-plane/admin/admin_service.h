#pragma once

#include <atomic>
#include <mutex>
#include <set>

#include "absl/status/statusor.h"
#include "common/grpc/blocking_tasks.h"
#include "common/tls/identity.h"
#include "control-plane/cluster/agent_dialer.h"
#include "control-plane/cluster/cluster.h"
#include "control-plane/queue/queue_engine.h"
#include "control-plane/release/release_engine.h"
#include "picontroller/v1/admin.grpc.pb.h"

namespace pi::controlplane::admin {

// The Admin gRPC adapter (DESIGN 4.3): admin identities only. Node operations go to the cluster
// core; metrics, GPIO, commands and logs are proxied to the node's pi-agent over the controller's
// own mTLS channel, so an admin needs only the controller's address. Queue administration (stats,
// dead letters, publish) goes to the queue engine; releases, runners and provisioning records to
// the release engine.
class AdminService final : public picontroller::v1::Admin::CallbackService {
 public:
  struct Options {
    // Concurrent StreamNodeLogs, WatchCluster and FollowRelease calls together
    // (RESOURCE_EXHAUSTED beyond).
    int max_streams = 32;
  };

  // `queues` and `releases` must outlive the service (stop the server before destroying the
  // engines).
  AdminService(cluster::Cluster& cluster, cluster::AgentDialer& dialer, Options options,
               queue::QueueEngine& queues, release::ReleaseEngine& releases)
      : cluster_(cluster),
        dialer_(dialer),
        queues_(queues),
        releases_(releases),
        options_(options) {}

  // Ends every watch, release follow and proxied log stream with UNAVAILABLE; call before the
  // server's Shutdown.
  void Shutdown();

  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* context,
                                      const picontroller::v1::ListNodesRequest* request,
                                      picontroller::v1::ListNodesResponse* response) override;
  grpc::ServerUnaryReactor* GetNode(grpc::CallbackServerContext* context,
                                    const picontroller::v1::NodeRef* request,
                                    picontroller::v1::Node* response) override;
  grpc::ServerUnaryReactor* LabelNode(grpc::CallbackServerContext* context,
                                      const picontroller::v1::LabelNodeRequest* request,
                                      picontroller::v1::Node* response) override;
  grpc::ServerUnaryReactor* DrainNode(grpc::CallbackServerContext* context,
                                      const picontroller::v1::NodeRef* request,
                                      picontroller::v1::Node* response) override;
  grpc::ServerUnaryReactor* CordonNode(grpc::CallbackServerContext* context,
                                       const picontroller::v1::NodeRef* request,
                                       picontroller::v1::Node* response) override;
  grpc::ServerUnaryReactor* UncordonNode(grpc::CallbackServerContext* context,
                                         const picontroller::v1::NodeRef* request,
                                         picontroller::v1::Node* response) override;
  grpc::ServerUnaryReactor* RemoveNode(grpc::CallbackServerContext* context,
                                       const picontroller::v1::NodeRef* request,
                                       picontroller::v1::Node* response) override;

  grpc::ServerUnaryReactor* GetNodeMetrics(grpc::CallbackServerContext* context,
                                           const picontroller::v1::NodeRef* request,
                                           picontroller::v1::SystemMetrics* response) override;
  grpc::ServerUnaryReactor* ControlNodeGPIO(grpc::CallbackServerContext* context,
                                            const picontroller::v1::NodeGPIORequest* request,
                                            picontroller::v1::GPIOResponse* response) override;
  grpc::ServerUnaryReactor* ExecuteNodeCommand(
      grpc::CallbackServerContext* context, const picontroller::v1::NodeCommandRequest* request,
      picontroller::v1::CommandResponse* response) override;
  grpc::ServerWriteReactor<picontroller::v1::LogEntry>* StreamNodeLogs(
      grpc::CallbackServerContext* context,
      const picontroller::v1::NodeLogRequest* request) override;

  grpc::ServerUnaryReactor* CreateJoinToken(
      grpc::CallbackServerContext* context, const picontroller::v1::CreateJoinTokenRequest* request,
      picontroller::v1::CreateJoinTokenResponse* response) override;
  grpc::ServerUnaryReactor* ListJoinTokens(
      grpc::CallbackServerContext* context, const google::protobuf::Empty* request,
      picontroller::v1::ListJoinTokensResponse* response) override;
  grpc::ServerUnaryReactor* RevokeJoinToken(grpc::CallbackServerContext* context,
                                            const picontroller::v1::JoinTokenRef* request,
                                            picontroller::v1::JoinTokenInfo* response) override;

  grpc::ServerWriteReactor<picontroller::v1::ClusterChange>* WatchCluster(
      grpc::CallbackServerContext* context,
      const picontroller::v1::WatchClusterRequest* request) override;

  grpc::ServerUnaryReactor* GetQueueStats(
      grpc::CallbackServerContext* context, const picontroller::v1::GetQueueStatsRequest* request,
      picontroller::v1::GetQueueStatsResponse* response) override;
  grpc::ServerUnaryReactor* ListDeadLetters(
      grpc::CallbackServerContext* context, const picontroller::v1::ListDeadLettersRequest* request,
      picontroller::v1::ListDeadLettersResponse* response) override;
  grpc::ServerUnaryReactor* RequeueDeadLetters(
      grpc::CallbackServerContext* context, const picontroller::v1::DeadLetterIds* request,
      picontroller::v1::DeadLetterCount* response) override;
  grpc::ServerUnaryReactor* DeleteDeadLetters(grpc::CallbackServerContext* context,
                                              const picontroller::v1::DeadLetterIds* request,
                                              picontroller::v1::DeadLetterCount* response) override;
  grpc::ServerUnaryReactor* Publish(grpc::CallbackServerContext* context,
                                    const picontroller::v1::PublishRequest* request,
                                    picontroller::v1::PublishResponse* response) override;

  grpc::ServerUnaryReactor* CreateRelease(grpc::CallbackServerContext* context,
                                          const picontroller::v1::CreateReleaseRequest* request,
                                          picontroller::v1::Release* response) override;
  grpc::ServerUnaryReactor* ListReleases(grpc::CallbackServerContext* context,
                                         const picontroller::v1::ListReleasesRequest* request,
                                         picontroller::v1::ListReleasesResponse* response) override;
  grpc::ServerUnaryReactor* GetRelease(grpc::CallbackServerContext* context,
                                       const picontroller::v1::ReleaseRef* request,
                                       picontroller::v1::Release* response) override;
  grpc::ServerUnaryReactor* CancelRelease(grpc::CallbackServerContext* context,
                                          const picontroller::v1::ReleaseRef* request,
                                          picontroller::v1::Release* response) override;
  grpc::ServerWriteReactor<picontroller::v1::ReleaseEvent>* FollowRelease(
      grpc::CallbackServerContext* context,
      const picontroller::v1::FollowReleaseRequest* request) override;
  grpc::ServerUnaryReactor* ListRunners(grpc::CallbackServerContext* context,
                                        const google::protobuf::Empty* request,
                                        picontroller::v1::ListRunnersResponse* response) override;
  grpc::ServerUnaryReactor* GetProvisioning(grpc::CallbackServerContext* context,
                                            const picontroller::v1::ProvisioningRef* request,
                                            picontroller::v1::Provisioning* response) override;

 private:
  class FollowReactor;
  class WatchReactor;
  class LogProxyReactor;
  class ProxyUnaryReactor;

  absl::StatusOr<common::Identity> Authorize(grpc::CallbackServerContext* context,
                                             std::string_view method) const;
  // The node a NodeRef names; NOT_FOUND with the ref in the message.
  absl::StatusOr<cluster::NodeView> Resolve(const picontroller::v1::NodeRef& ref);
  struct ProxyTarget {
    cluster::NodeView node;
    std::string admin;  // the caller, passed on to the agent for its audit log
  };
  // Resolves a node the controller can proxy to (not REMOVED) and authorizes the caller.
  absl::StatusOr<ProxyTarget> ResolveProxyTarget(grpc::CallbackServerContext* context,
                                                 const picontroller::v1::NodeRef& ref,
                                                 std::string_view method);
  grpc::ServerUnaryReactor* SetAdminState(grpc::CallbackServerContext* context,
                                          const picontroller::v1::NodeRef* request,
                                          picontroller::v1::Node* response,
                                          store::AdminState admin_state, std::string_view method);
  absl::Status ReserveStream(std::string_view what);
  // OK for a configured queue route; NOT_FOUND naming the configured ones otherwise.
  absl::Status CheckRoute(const std::string& route) const;
  // Requeue and delete: the route and 1..kMaxDeadLetterIds non-empty ids.
  absl::Status CheckDeadLetterIds(const picontroller::v1::DeadLetterIds& request) const;
  void ReleaseStream() { --open_streams_; }

  cluster::Cluster& cluster_;
  cluster::AgentDialer& dialer_;
  queue::QueueEngine& queues_;
  release::ReleaseEngine& releases_;
  const Options options_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> open_streams_{0};
  std::mutex log_proxies_mu_;
  // Registered from Begin until the admin's stream is done, so alive while listed.
  std::set<LogProxyReactor*> log_proxies_;
  std::mutex follows_mu_;
  // Registered while following the engine, so alive while listed.
  std::set<FollowReactor*> follows_;
  // Store writes and watches run here, not on gRPC's callback threads.
  common::BlockingTasks blocking_;
};

}  // namespace pi::controlplane::admin
