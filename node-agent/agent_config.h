#pragma once

#include <chrono>
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
#include "node-agent/runner/profile_executor.h"

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

// The "runner" section: a joined agent takes the provisioning releases pinned to its node from the
// controller's RunnerService (DESIGN 4.2, 5.3). A standalone agent never runs it.
struct RunnerConfig {
  bool enabled = true;
  // Provisioning releases run at once: the controller assigns no more than this, and queues the
  // rest until a release here ends.
  int max_concurrent = 1;
  // filesystem_root: what profiles see as "/" (an image being prepared can be mounted elsewhere).
  // allowed_write_roots: the only places a profile may write or check, as the profile names
  // them: what the example profiles need (motd, hostname, k3s agent join) and a directory of
  // their own.
  runner::ProvisionPolicy provision{
      .filesystem_root = "/",
      .allowed_write_roots = {"/etc/motd", "/etc/hostname", "/etc/pi-provision",
                              "/etc/rancher/k3s"}};
  // Reconnects to the controller back off exponentially from 1s up to this.
  std::chrono::milliseconds reconnect_max_backoff{std::chrono::seconds(30)};
  // The controller drops a runner silent for 90s, so at most 60s.
  std::chrono::milliseconds heartbeat_interval{std::chrono::seconds(10)};
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
  RunnerConfig runner;
};

// Reads and validates agent.json. Errors name the file and the offending key.
absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path);
// The same from an already parsed document (the file name is only used in messages).
absl::StatusOr<AgentConfig> ParseAgentConfig(const nlohmann::json& document);

}  // namespace pi::agent
