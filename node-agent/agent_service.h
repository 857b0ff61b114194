#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/grpc/blocking_tasks.h"
#include "node-agent/exec/command_executor.h"
#include "node-agent/gpio/gpio_controller.h"
#include "node-agent/logs/log_streamer.h"
#include "node-agent/metrics/collector.h"
#include "picontroller/v1/agent.grpc.pb.h"

namespace pi::agent {

struct SubsystemHealth {
  std::string name;
  bool ok = false;
  std::string detail;
};

// The NodeAgent gRPC adapter: checks the caller's identity, converts wire messages to core types,
// calls the core and maps its Status to the wire. Blocking work (commands, log streams) runs on
// threads of its own, never on gRPC's.
class AgentService final : public picontroller::v1::NodeAgent::CallbackService {
 public:
  struct Options {
    std::string version;
    // Reported in HealthStatus.hostname.
    std::string node_name;
    // Without TLS (--insecure) every caller is let in.
    bool insecure = false;
    // Whether the listener verifies client certificates, so that their identities can be trusted.
    bool peer_verified = true;
    int max_log_streams = 16;
    // Commands running at once (exec.max_concurrent): bounds the threads commands hold.
    int max_commands = 4;
    std::function<std::vector<SubsystemHealth>()> health_checks;
  };

  AgentService(Options options, metrics::SystemMetricsCollector& collector,
               gpio::GpioController& gpio, exec::CommandExecutor& executor,
               logs::LogStreamer& logs);
  // Cancels what still runs and waits for it.
  ~AgentService() override;

  // Graceful shutdown: ends every open log stream (UNAVAILABLE) and kills every running command,
  // and refuses new ones.
  void CancelAll();

  grpc::ServerUnaryReactor* GetSystemMetrics(grpc::CallbackServerContext* context,
                                             const google::protobuf::Empty* request,
                                             picontroller::v1::SystemMetrics* response) override;
  grpc::ServerUnaryReactor* ControlGPIO(grpc::CallbackServerContext* context,
                                        const picontroller::v1::GPIORequest* request,
                                        picontroller::v1::GPIOResponse* response) override;
  grpc::ServerUnaryReactor* ExecuteCommand(grpc::CallbackServerContext* context,
                                           const picontroller::v1::CommandRequest* request,
                                           picontroller::v1::CommandResponse* response) override;
  grpc::ServerWriteReactor<picontroller::v1::LogEntry>* StreamLogs(
      grpc::CallbackServerContext* context, const picontroller::v1::LogFilter* request) override;
  grpc::ServerUnaryReactor* HealthCheck(grpc::CallbackServerContext* context,
                                        const google::protobuf::Empty* request,
                                        picontroller::v1::HealthStatus* response) override;

 private:
  // A call that holds one of our threads and can be ended early.
  class CancellableCall {
   public:
    virtual ~CancellableCall() = default;
    virtual void Shutdown() = 0;
  };
  class LogStreamReactor;
  class CommandReactor;

  // UNAVAILABLE after CancelAll, RESOURCE_EXHAUSTED when `limit` calls of `kind` already run.
  absl::Status Register(CancellableCall* call, int& running, int limit, std::string_view kind);
  void Unregister(CancellableCall* call, int& running);
  // The caller as written to audit logs, or PERMISSION_DENIED/UNAUTHENTICATED.
  absl::StatusOr<std::string> Authorize(grpc::CallbackServerContext* context,
                                        std::string_view method) const;

  const Options options_;
  metrics::SystemMetricsCollector& collector_;
  gpio::GpioController& gpio_;
  exec::CommandExecutor& executor_;
  logs::LogStreamer& logs_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();

  std::mutex calls_mu_;
  std::set<CancellableCall*> calls_;
  int running_streams_ = 0;
  int running_commands_ = 0;
  bool closed_ = false;
  common::BlockingTasks blocking_;
};

}  // namespace pi::agent
