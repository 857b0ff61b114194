#pragma once

#include <array>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config/json_config.h"
#include "control-plane/queue/queue_types.h"

namespace pi::controlplane::queue {

// One named queue: where webhooks arrive, where workers pull, and who may pull.
struct RouteConfig {
  std::string name;
  // HTTP POST path on the ingress listener; empty = no ingress (publish through pictl only).
  std::string ingress_path;
  // The endpoint workers name: gRPC DequeueRequest.endpoint, and the HTTP Pull API path under
  // pull_api.prefix. Empty = workers cannot pull this route.
  std::string pull_path;
  // Secret references ("env:NAME", "file:/path"), resolved at load. When given they replace the
  // global pull_api.auth_tokens for this route.
  std::vector<std::string> auth_tokens;
  QueueLimits limits;
};

struct PullTlsConfig {
  std::string cert_file;  // Empty = plaintext.
  std::string key_file;
  std::string client_ca;  // With client_auth "require_and_verify": mTLS.
  bool require_client_cert = false;
};

// The "queues" section of controller.json.
struct QueuesConfig {
  // HTTP ingress; the listeners below start only when at least one route is configured.
  std::string ingress_listen = "0.0.0.0:8080";
  size_t ingress_max_body_bytes = 1024 * 1024;
  // HTTP Pull API ("" = off) and its path prefix: POST {prefix}{pull_path}/{dequeue|ack|...}.
  std::string pull_listen = "0.0.0.0:9443";
  std::string pull_prefix;
  // Worker gRPC (hookaido.worker.v1.WorkerService), "" = off. Plaintext, TLS or mTLS per `tls`,
  // shared with the HTTP Pull API.
  std::string grpc_listen = "127.0.0.1:9943";
  PullTlsConfig tls;
  // Global worker token allowlist (secret references, resolved at load).
  std::vector<std::string> auth_tokens;
  std::vector<RouteConfig> routes;

  std::map<std::string, QueueLimits> Limits() const;
};

// Reads the "queues" section (ConfigReader of that object) into `config`, resolving every token
// reference. Checks: unique route names and paths; paths start with "/" and hold no "..", "?" or
// "//"; every pull route has a token (its own or global); listener guardrails (worker gRPC needs
// a pull route and its address must differ from every other listener, passed in
// `other_listeners`).
void ReadQueuesConfig(common::ConfigReader& reader, const std::vector<std::string>& other_listeners,
                      QueuesConfig& config);

// SHA-256 of a worker token: the route table keeps only these.
using TokenDigest = std::array<unsigned char, 32>;

// Resolves worker endpoints and bearer tokens to routes for both worker transports. Keeps only
// digests of the tokens; routes() hold no tokens.
class RouteTable {
 public:
  explicit RouteTable(const QueuesConfig& config);

  // Checks `authorization` ("Bearer <token>": scheme case-insensitive, value trimmed, compared in
  // constant time) against the route's tokens (or the global list when the endpoint is unknown
  // or has none of its own), then finds the route. UNAUTHENTICATED for a missing or wrong token,
  // then NOT_FOUND for an unknown endpoint, in that order (DESIGN 4.1). Returns the route name.
  absl::StatusOr<std::string> AuthorizePull(std::string_view endpoint,
                                            std::optional<std::string_view> authorization) const;

  // The route whose ingress path is `path`, or null.
  const RouteConfig* ByIngressPath(std::string_view path) const;
  const RouteConfig* ByName(std::string_view name) const;
  const std::vector<RouteConfig>& routes() const { return routes_; }

 private:
  std::vector<RouteConfig> routes_;
  std::vector<TokenDigest> global_tokens_;
  std::map<std::string, std::vector<TokenDigest>> route_tokens_;
};

}  // namespace pi::controlplane::queue
