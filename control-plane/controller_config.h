#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "control-plane/cluster/cluster.h"
#include "control-plane/queue/queue_config.h"
#include "control-plane/release/release_engine.h"

namespace pi::controlplane {

// Everything in /etc/pi-controller/controller.json. Defaults are what an operator gets with an
// empty file (DESIGN 5.6).
struct ControllerConfig {
  // The CA, the controller's certificate and the SQLite store live here.
  std::string state_dir = "/var/lib/pi-controller";
  // ControlPlane and Admin: mTLS; joining agents connect without a certificate.
  std::string listen = "0.0.0.0:9090";
  // /metrics and /healthz.
  std::string http_listen = "127.0.0.1:9900";
  std::string log_level = "info";
  // Names and addresses agents and pictl use to reach the controller; they go into its
  // certificate. The machine's hostname, "localhost" and "127.0.0.1" are always added.
  std::vector<std::string> certificate_hosts;
  // Larger gRPC requests are refused with RESOURCE_EXHAUSTED.
  size_t max_request_bytes = 4 * 1024 * 1024;

  cluster::ClusterOptions cluster;
  std::chrono::milliseconds health_poll_interval{std::chrono::seconds(30)};
  std::chrono::milliseconds health_poll_timeout{std::chrono::seconds(5)};
  // Concurrent proxied log streams and cluster watches, each.
  int admin_max_streams = 32;

  // Where the cluster CA (ca.crt, ca.key) lives; empty = state_dir. Created there when absent.
  std::string ca_dir;
  // The controller's own certificate (leaf followed by the CA) and key. Empty = issued by the
  // controller into state_dir and renewed by it; set = provided by the operator and only checked.
  std::string tls_cert_file;
  std::string tls_key_file;

  // Durable work queues: routes, HTTP ingress, the HTTP Pull API and the worker gRPC listener.
  queue::QueuesConfig queues;

  // Releases and runners (the "releases" section) and where provisioning profiles are read from.
  release::ReleaseOptions releases;
  std::string profiles_dir = "/etc/pi-controller/profiles";

  std::string DatabasePath() const { return state_dir + "/cluster.db"; }
  std::string QueueDatabasePath() const { return state_dir + "/queue.db"; }
  std::string ReleaseDatabasePath() const { return state_dir + "/release.db"; }
  std::string CaDir() const { return ca_dir.empty() ? state_dir : ca_dir; }
  bool CertificateConfigured() const { return !tls_cert_file.empty(); }
  std::string CertFile() const {
    return CertificateConfigured() ? tls_cert_file : state_dir + "/controller.crt";
  }
  std::string KeyFile() const {
    return CertificateConfigured() ? tls_key_file : state_dir + "/controller.key";
  }
};

// Reads and validates controller.json; errors name the file and the key. A missing file at the
// default path gives the defaults, so `pi-controller init` works before any config exists.
absl::StatusOr<ControllerConfig> LoadControllerConfig(const std::string& path,
                                                      bool missing_is_default);

}  // namespace pi::controlplane
