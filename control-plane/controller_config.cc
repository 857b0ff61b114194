#include "control-plane/controller_config.h"

#include <fmt/format.h>

#include <filesystem>

#include "common/config/json_config.h"
#include "common/system/host_port.h"
#include "common/system/paths.h"

namespace pi::controlplane {
namespace {

using common::ConfigReader;
using std::chrono::hours;
using std::chrono::nanoseconds;
using std::chrono::seconds;

void ReadSeconds(ConfigReader& reader, std::string_view key, seconds* out, nanoseconds min,
                 nanoseconds max) {
  nanoseconds value = *out;
  reader.Read(key, &value, min, max);
  *out = std::chrono::ceil<seconds>(value);
}

void ReadMilliseconds(ConfigReader& reader, std::string_view key, std::chrono::milliseconds* out,
                      nanoseconds min, nanoseconds max) {
  nanoseconds value = *out;
  reader.Read(key, &value, min, max);
  *out = std::chrono::ceil<std::chrono::milliseconds>(value);
}

void ReadCluster(ConfigReader& reader, ControllerConfig& config) {
  cluster::ClusterOptions& options = config.cluster;
  ReadSeconds(reader, "heartbeat_interval", &options.heartbeat_interval, seconds(1), hours(1));
  ReadSeconds(reader, "heartbeat_ttl", &options.heartbeat_ttl, seconds(1), hours(24));
  ReadSeconds(reader, "down_grace", &options.down_grace, seconds(0), hours(24));
  ReadMilliseconds(reader, "health_poll_interval", &config.health_poll_interval,
                   std::chrono::milliseconds(100), hours(24));
  ReadMilliseconds(reader, "health_poll_timeout", &config.health_poll_timeout,
                   std::chrono::milliseconds(100), std::chrono::minutes(5));
  ReadSeconds(reader, "node_cert_validity", &options.node_cert_validity, hours(1),
              hours(24 * 3650));
  ReadSeconds(reader, "join_token_ttl", &options.default_token_ttl, seconds(1), hours(24 * 365));
  ReadSeconds(reader, "max_token_ttl", &options.max_token_ttl, seconds(1), hours(24 * 365));
  if (reader.ok() && options.heartbeat_ttl < options.heartbeat_interval) {
    reader.Fail("heartbeat_ttl", "must be at least heartbeat_interval");
  }
  if (reader.ok() && options.default_token_ttl > options.max_token_ttl) {
    reader.Fail("join_token_ttl", "must not be longer than max_token_ttl");
  }
}

void ReadReleases(ConfigReader& reader, release::ReleaseOptions& options) {
  ReadSeconds(reader, "token_ttl", &options.token_ttl, std::chrono::minutes(1), hours(24));
  ReadSeconds(reader, "default_timeout", &options.default_timeout, seconds(1), hours(24));
  ReadSeconds(reader, "runner_silence_limit", &options.runner_silence_limit, seconds(5), hours(1));
  int64_t max_attempts = options.default_max_attempts;
  reader.Read("default_max_attempts", &max_attempts, 1, options.max_max_attempts);
  options.default_max_attempts = static_cast<int>(max_attempts);
  if (reader.ok() && options.default_timeout > options.token_ttl) {
    reader.Fail("default_timeout", "must not be longer than token_ttl");
  }
}

}  // namespace

absl::StatusOr<ControllerConfig> LoadControllerConfig(const std::string& path,
                                                      bool missing_is_default) {
  ControllerConfig config;
  std::error_code error;
  if (missing_is_default && !std::filesystem::exists(path, error)) return config;
  absl::StatusOr<nlohmann::json> document = common::ParseJsonConfigFile(path);
  if (!document.ok()) return document.status();
  if (!document->is_object()) {
    return absl::InvalidArgumentError(fmt::format("{}: expected a JSON object", path));
  }
  ConfigReader reader(*document, "");
  reader.Read("state_dir", &config.state_dir);
  if (config.state_dir.empty() || config.state_dir.front() != '/' ||
      common::HasDotDotComponent(config.state_dir)) {
    reader.Fail("state_dir", "must be an absolute path without \"..\"");
  }
  reader.Read("ca_dir", &config.ca_dir);
  if (!config.ca_dir.empty() &&
      (config.ca_dir.front() != '/' || common::HasDotDotComponent(config.ca_dir))) {
    reader.Fail("ca_dir", "must be an absolute path without \"..\"");
  }
  reader.Section("tls", [&](ConfigReader& tls) {
    tls.Read("cert_file", &config.tls_cert_file);
    tls.Read("key_file", &config.tls_key_file);
    if (config.tls_cert_file.empty() != config.tls_key_file.empty()) {
      tls.Fail("cert_file", "cert_file and key_file are given together or not at all");
    }
  });
  reader.Read("listen", &config.listen);
  if (reader.ok() && !common::ParseListenAddress(config.listen).ok()) {
    reader.Fail("listen", fmt::format("\"{}\" is not host:port", config.listen));
  }
  reader.Read("http_listen", &config.http_listen);
  if (reader.ok() && !common::ParseListenAddress(config.http_listen).ok()) {
    reader.Fail("http_listen", fmt::format("\"{}\" is not host:port", config.http_listen));
  }
  reader.ReadEnum("log_level", &config.log_level,
                  {"trace", "debug", "info", "warn", "error", "critical", "off"});
  reader.Read("certificate_hosts", &config.certificate_hosts);
  int64_t max_request_bytes = static_cast<int64_t>(config.max_request_bytes);
  reader.Read("max_request_bytes", &max_request_bytes, 64 * 1024, 64 * 1024 * 1024);
  config.max_request_bytes = static_cast<size_t>(max_request_bytes);
  reader.Section("cluster", [&](ConfigReader& section) { ReadCluster(section, config); });
  reader.Section("admin", [&](ConfigReader& section) {
    int64_t max_streams = config.admin_max_streams;
    section.Read("max_streams", &max_streams, 1, 4096);
    config.admin_max_streams = static_cast<int>(max_streams);
  });
  reader.Section("queues", [&](ConfigReader& section) {
    queue::ReadQueuesConfig(section, {config.listen, config.http_listen}, config.queues);
  });
  reader.Section("releases",
                 [&](ConfigReader& section) { ReadReleases(section, config.releases); });
  reader.Section("provisioning", [&](ConfigReader& section) {
    section.Read("profiles_dir", &config.profiles_dir);
    if (section.ok() && (config.profiles_dir.empty() || config.profiles_dir.front() != '/' ||
                         common::HasDotDotComponent(config.profiles_dir))) {
      section.Fail("profiles_dir", "must be an absolute path without \"..\"");
    }
  });
  if (absl::Status status = reader.Finish(); !status.ok()) {
    return absl::InvalidArgumentError(fmt::format("{}: {}", path, std::string(status.message())));
  }
  return config;
}

}  // namespace pi::controlplane
