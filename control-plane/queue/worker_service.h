#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>

#include "absl/status/statusor.h"
#include "control-plane/queue/queue_config.h"
#include "control-plane/queue/queue_engine.h"
#include "hookaido/worker/v1/workerapi.grpc.pb.h"

namespace pi::controlplane::queue {

// hookaido.worker.v1.WorkerService (DESIGN 4.1) on the queue engine: converts the wire messages,
// authenticates the bearer token through the route table and answers from the engine's
// callbacks, so a long-polling Dequeue holds no thread.
class WorkerService final : public hookaido::worker::v1::WorkerService::CallbackService {
 public:
  WorkerService(QueueEngine& engine, const RouteTable& routes);

  grpc::ServerUnaryReactor* Dequeue(grpc::CallbackServerContext* context,
                                    const hookaido::worker::v1::DequeueRequest* request,
                                    hookaido::worker::v1::DequeueResponse* response) override;
  grpc::ServerUnaryReactor* Ack(grpc::CallbackServerContext* context,
                                const hookaido::worker::v1::AckRequest* request,
                                hookaido::worker::v1::AckResponse* response) override;
  grpc::ServerUnaryReactor* Nack(grpc::CallbackServerContext* context,
                                 const hookaido::worker::v1::NackRequest* request,
                                 hookaido::worker::v1::NackResponse* response) override;
  grpc::ServerUnaryReactor* Extend(grpc::CallbackServerContext* context,
                                   const hookaido::worker::v1::ExtendRequest* request,
                                   google::protobuf::Empty* response) override;

 private:
  QueueEngine& engine_;
  const RouteTable& routes_;
};

// Server credentials for the worker listener from pull_api.tls: plaintext without a
// certificate, TLS with one, mTLS when client certificates are required.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> WorkerServerCredentials(
    const PullTlsConfig& tls);

}  // namespace pi::controlplane::queue
