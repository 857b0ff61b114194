#pragma once

#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>

#include <utility>

#include "absl/status/status.h"
#include "common/grpc/blocking_tasks.h"
#include "common/grpc/status.h"

namespace pi::common {

// Answers a unary call from a task thread: `work` (returning absl::Status, filling the response
// it captured) may block on disk or the network without holding one of gRPC's callback threads.
template <typename Work>
grpc::ServerUnaryReactor* FinishUnaryOnTask(grpc::CallbackServerContext* context,
                                            BlockingTasks& tasks, Work work) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status started = tasks.Run(
      [reactor, work = std::move(work)]() mutable { reactor->Finish(ToGrpcStatus(work())); });
  if (!started.ok()) reactor->Finish(ToGrpcStatus(started));
  return reactor;
}

}  // namespace pi::common
