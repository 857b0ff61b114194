#pragma once

#include <chrono>
#include <thread>

#include "common/system/cancel_token.h"
#include "control-plane/cluster/agent_dialer.h"
#include "control-plane/cluster/cluster.h"

namespace pi::controlplane::cluster {

// Polls every node agent's HealthCheck (DESIGN 5.2) and records the outcome in the cluster: a
// node that answers is alive even when its heartbeats are lost, and an operator sees why a node
// that heartbeats cannot be reached from the controller.
class HealthPoller {
 public:
  HealthPoller(Cluster& cluster, AgentDialer& dialer, std::chrono::milliseconds interval,
               std::chrono::milliseconds timeout)
      : cluster_(cluster), dialer_(dialer), interval_(interval), timeout_(timeout) {}
  ~HealthPoller() { Stop(); }

  void Start();
  void Stop();
  // One round over every node, waiting for all answers (or their timeouts).
  void PollOnce();

 private:
  void Run();

  Cluster& cluster_;
  AgentDialer& dialer_;
  const std::chrono::milliseconds interval_;
  const std::chrono::milliseconds timeout_;
  common::CancelToken stop_;
  std::thread thread_;
};

}  // namespace pi::controlplane::cluster
