#pragma once

#include <cstddef>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/statusor.h"
#include "common/tls/credentials.h"
#include "node-agent/exec/command_executor.h"
#include "node-agent/gpio/gpio_config.h"
#include "node-agent/logs/log_streamer.h"
#include "node-agent/metrics/collector.h"
#include "node-agent/metrics/cpu_sampler.h"

namespace pi::agent {

// The "control_plane" section: which Pi-Controller cluster this agent belongs to.
struct ControlPlaneConfig {
  // The controller's cluster address (host:port) to join; empty = not joined through the config
  // (pi-agent --join gives it on the command line instead). The join token is never in config.
  std::string address;
  // node.key, node.crt, ca.crt and control_plane.json of the enrollment.
  std::string state_dir = "/var/lib/pi-agent";
  // host:port the controller reaches the NodeAgent listener at; empty = `listen`, whose
  // unspecified host the controller replaces with the address the agent connects from.
  std::string advertise_address;
  // Sent with the registration; the controller applies them on the first join only.
  std::map<std::string, std::string> labels;
};

// Everything in /etc/pi-agent/agent.json. Defaults are what an operator gets with an empty file.
struct AgentConfig {
  // Shown in health and logs; empty = the machine's hostname.
  std::string node_name;
  std::string listen = "0.0.0.0:9091";
  std::string http_listen = ":9101";
  std::string log_level = "info";
  common::ServerTlsConfig tls{"/var/lib/pi-agent/node.crt", "/var/lib/pi-agent/node.key",
                              "/var/lib/pi-agent/ca.crt", common::ClientAuth::kRequireAndVerify};
  // Whether tls.cert_file, key_file or ca_file was set. A joined agent that has none of them
  // serves with its enrollment's files in control_plane.state_dir.
  bool tls_files_configured = false;
  ControlPlaneConfig control_plane;
  // Larger requests are refused with RESOURCE_EXHAUSTED before they reach a handler.
  size_t max_request_bytes = 1024 * 1024;
  // Concurrent StreamLogs calls; each holds a thread while it runs.
  int max_log_streams = 16;

  metrics::CpuSamplerOptions cpu_sampler;
  metrics::CollectorOptions collector;
  // "libgpiod" (the kernel's GPIO character devices) or "simulated" (in memory, no hardware).
  std::string gpio_backend = "libgpiod";
  gpio::GpioConfig gpio;
  exec::ExecPolicy exec;
  logs::LogsConfig logs;
};

// Reads and validates agent.json. Errors name the file and the offending key.
absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path);
// The same from an already parsed document (the file name is only used in messages).
absl::StatusOr<AgentConfig> ParseAgentConfig(const nlohmann::json& document);

}  // namespace pi::agent
