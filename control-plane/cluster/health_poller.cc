#include "control-plane/cluster/health_poller.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <grpcpp/client_context.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <mutex>

#include "picontroller/v1/agent.grpc.pb.h"

namespace pi::controlplane::cluster {
namespace {

namespace pb = picontroller::v1;

// One outstanding HealthCheck; owns what the async call needs until its callback ran.
struct Poll {
  std::string node_id;
  grpc::ClientContext context;
  google::protobuf::Empty request;
  pb::HealthStatus response;
};

absl::Status Outcome(const grpc::Status& status, const pb::HealthStatus& health) {
  if (!status.ok()) {
    return absl::UnavailableError(fmt::format("HealthCheck failed: {} ({})", status.error_message(),
                                              static_cast<int>(status.error_code())));
  }
  if (health.status() != pb::HealthStatus::OK) {
    std::vector<std::string> failing;
    for (const auto& check : health.checks()) {
      if (!check.ok()) failing.push_back(fmt::format("{}: {}", check.name(), check.detail()));
    }
    return absl::FailedPreconditionError(
        fmt::format("agent is degraded: {}", fmt::join(failing, "; ")));
  }
  return absl::OkStatus();
}

}  // namespace

void HealthPoller::Start() {
  thread_ = std::thread([this] { Run(); });
}

void HealthPoller::Stop() {
  stop_.Cancel();
  if (thread_.joinable()) thread_.join();
}

void HealthPoller::Run() {
  while (!stop_.WaitFor(interval_)) PollOnce();
}

void HealthPoller::PollOnce() {
  std::mutex mu;
  std::condition_variable done;
  size_t outstanding = 0;
  std::vector<std::unique_ptr<Poll>> polls;
  for (const auto& [node_id, address] : cluster_.PollTargets()) {
    auto poll = std::make_unique<Poll>();
    poll->node_id = node_id;
    poll->context.set_deadline(std::chrono::system_clock::now() + timeout_);
    polls.push_back(std::move(poll));
    Poll* call = polls.back().get();
    {
      std::lock_guard lock(mu);
      ++outstanding;
    }
    pb::NodeAgent::NewStub(dialer_.Channel(node_id, address))
        ->async()
        ->HealthCheck(&call->context, &call->request, &call->response,
                      [this, call, &mu, &done, &outstanding](grpc::Status status) {
                        const absl::Status outcome = Outcome(status, call->response);
                        // A degraded agent is still alive; only an unreachable one is not.
                        cluster_.RecordHealthCheck(call->node_id, outcome);
                        std::lock_guard lock(mu);
                        if (--outstanding == 0) done.notify_all();
                      });
  }
  std::unique_lock lock(mu);
  done.wait(lock, [&] { return outstanding == 0; });
}

}  // namespace pi::controlplane::cluster
