#include "node-agent/agent_config.h"

#include <fmt/format.h>

#include "common/config/json_config.h"
#include "common/system/host_port.h"
#include "common/system/paths.h"

namespace pi::agent {
namespace {

using common::ConfigReader;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

constexpr int64_t kMiB = 1024 * 1024;

void ReadMilliseconds(ConfigReader& reader, std::string_view key, milliseconds* out,
                      nanoseconds min, nanoseconds max) {
  nanoseconds value = *out;
  reader.Read(key, &value, min, max);
  // Up, so that "500us" stays a positive bound instead of becoming 0 ("none").
  *out = std::chrono::ceil<milliseconds>(value);
}

void ReadSize(ConfigReader& reader, std::string_view key, size_t* out, int64_t min, int64_t max) {
  int64_t value = static_cast<int64_t>(*out);
  reader.Read(key, &value, min, max);
  *out = static_cast<size_t>(value);
}

void ReadInt(ConfigReader& reader, std::string_view key, int* out, int64_t min, int64_t max) {
  int64_t value = *out;
  reader.Read(key, &value, min, max);
  *out = static_cast<int>(value);
}

void RequireAbsolutePath(ConfigReader& reader, std::string_view key, const std::string& path) {
  if (!path.empty() && path.front() != '/') {
    reader.Fail(key, fmt::format("\"{}\" must be an absolute path", path));
  }
  if (common::HasDotDotComponent(path)) {
    reader.Fail(key, fmt::format("\"{}\" must not contain \"..\"", path));
  }
}

void ReadTls(ConfigReader& reader, AgentConfig& config) {
  common::ServerTlsConfig& tls = config.tls;
  for (const auto& [key, file] :
       {std::pair{"cert_file", &tls.cert_file}, std::pair{"key_file", &tls.key_file},
        std::pair{"ca_file", &tls.ca_file}}) {
    if (reader.Raw(key) != nullptr) config.tls_files_configured = true;
    reader.Read(key, file);
  }
  std::string client_auth(common::ClientAuthName(tls.client_auth));
  reader.ReadEnum("client_auth", &client_auth,
                  {"none", "request", "require", "require_and_verify"});
  if (auto parsed = common::ParseClientAuth(client_auth); parsed.ok()) tls.client_auth = *parsed;
}

void ReadMetrics(ConfigReader& reader, AgentConfig& config) {
  std::string root = config.collector.root.string();
  reader.Read("proc_root", &root);
  RequireAbsolutePath(reader, "proc_root", root);
  config.collector.root = root;
  config.cpu_sampler.root = root;
  ReadMilliseconds(reader, "cpu_sample_interval", &config.cpu_sampler.interval,
                   std::chrono::milliseconds(10), hours(1));
}

void ReadGpio(ConfigReader& reader, AgentConfig& config) {
  reader.ReadEnum("backend", &config.gpio_backend, {"libgpiod", "simulated"});
  reader.Read("chip", &config.gpio.chip);
  reader.Read("consumer", &config.gpio.consumer);
  ReadMilliseconds(reader, "max_hold", &config.gpio.max_hold, nanoseconds(0), hours(24 * 365));
  reader.ObjectArray("allowed_lines", [&](ConfigReader& entry) {
    gpio::GpioLineRule rule;
    entry.Read("chip", &rule.chip);
    if (const auto* line = entry.Raw("line")) {
      if (line->is_number_unsigned()) {
        rule.line = std::to_string(line->get<uint64_t>());
      } else if (line->is_string()) {
        rule.line = line->get<std::string>();
      } else {
        entry.Fail("line",
                   "expected an offset (17), a line name (\"GPIO17\") or a range "
                   "(\"4-27\")");
      }
    } else {
      entry.Fail("line", "is required");
    }
    entry.ReadEnum("mode", &rule.mode, {"input", "output", "any"});
    config.gpio.allowed_lines.push_back(std::move(rule));
  });
}

void ReadExec(ConfigReader& reader, exec::ExecPolicy& exec) {
  reader.Read("allowed_commands", &exec.allowed_commands);
  for (const auto& command : exec.allowed_commands) {
    RequireAbsolutePath(reader, "allowed_commands", command);
  }
  ReadMilliseconds(reader, "default_timeout", &exec.default_timeout, milliseconds(1), hours(24));
  ReadMilliseconds(reader, "max_timeout", &exec.max_timeout, milliseconds(1), hours(24));
  ReadMilliseconds(reader, "kill_grace", &exec.kill_grace, nanoseconds(0), seconds(60));
  ReadSize(reader, "max_output_bytes", &exec.max_output_bytes, 1, 64 * kMiB);
  ReadInt(reader, "max_concurrent", &exec.max_concurrent, 1, 256);
  reader.Read("allowed_env", &exec.allowed_env);
  ReadSize(reader, "max_argv_count", &exec.max_argv_count, 1, 65536);
  ReadSize(reader, "max_argv_bytes", &exec.max_argv_bytes, 1, 16 * kMiB);
  if (reader.ok() && exec.default_timeout > exec.max_timeout) {
    reader.Fail("default_timeout", "must not exceed exec.max_timeout");
  }
}

// Label keys and values as Kubernetes spells the simple ones, so selectors such as
// "role=worker,zone=rack2" can name them.
bool IsLabelText(std::string_view text, bool allow_slash) {
  if (text.size() > 63) return false;
  for (const char c : text) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.' || (allow_slash && c == '/');
    if (!ok) return false;
  }
  return true;
}

void ReadControlPlane(ConfigReader& reader, ControlPlaneConfig& control_plane) {
  reader.Read("address", &control_plane.address);
  if (!control_plane.address.empty()) {
    auto parsed = common::SplitHostPort(control_plane.address);
    if (!parsed.ok()) {
      reader.Fail("address", std::string(parsed.status().message()));
    } else if (parsed->host.empty() || parsed->port == 0) {
      reader.Fail("address", fmt::format("\"{}\" needs a host and a port, such as "
                                         "controller.lan:9090",
                                         control_plane.address));
    }
  }
  reader.Read("state_dir", &control_plane.state_dir);
  if (control_plane.state_dir.empty()) reader.Fail("state_dir", "must not be empty");
  RequireAbsolutePath(reader, "state_dir", control_plane.state_dir);
  reader.Read("advertise_address", &control_plane.advertise_address);
  if (!control_plane.advertise_address.empty()) {
    auto parsed = common::SplitHostPort(control_plane.advertise_address);
    if (!parsed.ok()) {
      reader.Fail("advertise_address", std::string(parsed.status().message()));
    } else if (parsed->port == 0) {
      reader.Fail("advertise_address", "needs the port the controller connects to, not 0");
    }
  }
  std::vector<std::pair<std::string, std::string>> labels;
  reader.StringMap("labels", &labels);
  for (const auto& [key, value] : labels) {
    if (key.empty() || !IsLabelText(key, true)) {
      reader.Fail("labels",
                  fmt::format("key \"{}\" must be 1-63 characters of [A-Za-z0-9._/-]", key));
    } else if (!IsLabelText(value, false)) {
      reader.Fail("labels", fmt::format("value \"{}\" of {} must be at most 63 characters of "
                                        "[A-Za-z0-9._-]",
                                        value, key));
    }
  }
  control_plane.labels = {labels.begin(), labels.end()};
}

// Paths and reserved names are checked by logs::LogStreamer::Create when the agent starts.
void ReadLogs(ConfigReader& reader, logs::LogsConfig& logs) {
  std::vector<std::pair<std::string, std::string>> files;
  reader.StringMap("files", &files);
  logs.files = {files.begin(), files.end()};
  reader.Read("journald", &logs.journald);
  reader.Read("journalctl_path", &logs.journalctl_path);
  ReadMilliseconds(reader, "follow_poll_interval", &logs.follow_poll_interval, milliseconds(10),
                   seconds(60));
  reader.Read("max_limit", &logs.max_limit, 0, 10'000'000);
}

void ReadRunner(ConfigReader& reader, RunnerConfig& config) {
  reader.Read("enabled", &config.enabled);
  ReadInt(reader, "max_concurrent", &config.max_concurrent, 1, 64);
  runner::ProvisionPolicy& policy = config.provision;
  reader.Read("filesystem_root", &policy.filesystem_root);
  if (policy.filesystem_root.empty()) reader.Fail("filesystem_root", "must not be empty");
  RequireAbsolutePath(reader, "filesystem_root", policy.filesystem_root);
  reader.Read("allowed_write_roots", &policy.allowed_write_roots);
  for (const auto& root : policy.allowed_write_roots) {
    if (root.empty()) reader.Fail("allowed_write_roots", "entries must not be empty");
    RequireAbsolutePath(reader, "allowed_write_roots", root);
  }
  ReadMilliseconds(reader, "reconnect_max_backoff", &config.reconnect_max_backoff, seconds(1),
                   hours(1));
  ReadMilliseconds(reader, "heartbeat_interval", &config.heartbeat_interval, milliseconds(100),
                   seconds(60));
}

}  // namespace

absl::StatusOr<AgentConfig> ParseAgentConfig(const nlohmann::json& document) {
  AgentConfig config;
  ConfigReader reader(document, "");
  reader.Read("node_name", &config.node_name);
  reader.Read("listen", &config.listen);
  if (auto parsed = common::ParseListenAddress(config.listen); !parsed.ok()) {
    reader.Fail("listen", std::string(parsed.status().message()));
  }
  reader.Read("http_listen", &config.http_listen);
  if (!config.http_listen.empty()) {
    if (auto parsed = common::ParseListenAddress(config.http_listen); !parsed.ok()) {
      reader.Fail("http_listen", std::string(parsed.status().message()));
    }
  }
  reader.ReadEnum("log_level", &config.log_level, {"trace", "debug", "info", "warn", "error"});
  reader.Section("tls", [&](ConfigReader& tls) { ReadTls(tls, config); });
  reader.Section("grpc", [&](ConfigReader& grpc) {
    ReadSize(grpc, "max_request_bytes", &config.max_request_bytes, 1024, 64 * kMiB);
    ReadInt(grpc, "max_log_streams", &config.max_log_streams, 1, 1024);
  });
  reader.Section("metrics", [&](ConfigReader& metrics) { ReadMetrics(metrics, config); });
  reader.Section("gpio", [&](ConfigReader& gpio) { ReadGpio(gpio, config); });
  reader.Section("exec", [&](ConfigReader& exec) { ReadExec(exec, config.exec); });
  reader.Section("logs", [&](ConfigReader& logs) { ReadLogs(logs, config.logs); });
  reader.Section("control_plane",
                 [&](ConfigReader& section) { ReadControlPlane(section, config.control_plane); });
  reader.Section("runner", [&](ConfigReader& section) { ReadRunner(section, config.runner); });
  if (auto status = reader.Finish(); !status.ok()) return status;
  return config;
}

absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path) {
  auto document = common::ParseJsonConfigFile(path);
  if (!document.ok()) return document.status();
  auto config = ParseAgentConfig(*document);
  if (!config.ok()) {
    return absl::InvalidArgumentError(
        fmt::format("{}: {}", path, std::string(config.status().message())));
  }
  return config;
}

}  // namespace pi::agent
