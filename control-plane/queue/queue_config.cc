#include "control-plane/queue/queue_config.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <set>

#include "absl/strings/ascii.h"
#include "common/config/secret.h"
#include "common/system/host_port.h"

namespace pi::controlplane::queue {
namespace {

using common::ConfigReader;
using std::chrono::nanoseconds;

// A path a route can be reached at: absolute, and nothing a proxy or a client could normalise
// into another route's path.
bool IsCleanPath(const std::string& path) {
  return !path.empty() && path.front() == '/' && path.find("//") == std::string::npos &&
         path.find("..") == std::string::npos && path.find('?') == std::string::npos &&
         path.find('#') == std::string::npos && path.find(' ') == std::string::npos;
}

void ReadTokens(ConfigReader& reader, std::string_view key, std::vector<std::string>* out) {
  std::vector<std::string> references;
  reader.Read(key, &references);
  if (!reader.ok()) return;
  out->clear();
  for (const std::string& reference : references) {
    absl::StatusOr<std::string> token = common::ResolveSecret(reference);
    if (!token.ok()) {
      reader.Fail(key, std::string(token.status().message()));
      return;
    }
    out->push_back(*std::move(token));
  }
}

void ReadListen(ConfigReader& reader, std::string_view key, std::string* out) {
  reader.Read(key, out);
  if (reader.ok() && !out->empty() && !common::ParseListenAddress(*out).ok()) {
    reader.Fail(key, fmt::format("\"{}\" is not host:port", *out));
  }
}

void ReadRoute(ConfigReader& reader, RouteConfig& route) {
  reader.Read("name", &route.name);
  if (reader.ok() && route.name.empty()) reader.Fail("name", "is required");
  reader.Read("ingress_path", &route.ingress_path);
  if (reader.ok() && !route.ingress_path.empty() && !IsCleanPath(route.ingress_path)) {
    reader.Fail("ingress_path", "must start with \"/\" and hold no \"..\", \"//\", \"?\" or \"#\"");
  }
  reader.Read("pull_path", &route.pull_path);
  if (reader.ok() && !route.pull_path.empty() && !IsCleanPath(route.pull_path)) {
    reader.Fail("pull_path", "must start with \"/\" and hold no \"..\", \"//\", \"?\" or \"#\"");
  }
  ReadTokens(reader, "auth_tokens", &route.auth_tokens);
  QueueLimits& limits = route.limits;
  reader.Read("max_depth", &limits.max_depth, 0, int64_t{1} << 40);
  reader.Read("retention", &limits.retention, nanoseconds::zero(), std::chrono::hours(24 * 3650));
  int64_t max_batch = limits.max_batch;
  reader.Read("max_batch", &max_batch, 1, kMaxDequeueBatch);
  limits.max_batch = static_cast<int>(max_batch);
  reader.Read("max_lease_ttl", &limits.max_lease_ttl, std::chrono::seconds(1),
              std::chrono::hours(24));
  if (reader.Raw("max_attempts") != nullptr) {
    int64_t max_attempts = 0;
    reader.Read("max_attempts", &max_attempts, 1, 1000000);
    limits.max_attempts = static_cast<int>(max_attempts);
  }
}

std::string_view TrimAsciiSpace(std::string_view text) {
  while (!text.empty() && absl::ascii_isspace(static_cast<unsigned char>(text.front()))) {
    text.remove_prefix(1);
  }
  while (!text.empty() && absl::ascii_isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  return text;
}

// "Bearer <token>" with a case-insensitive scheme; the token trimmed.
std::optional<std::string_view> BearerToken(std::string_view header) {
  header = TrimAsciiSpace(header);
  constexpr std::string_view kScheme = "bearer";
  if (header.size() <= kScheme.size() ||
      absl::AsciiStrToLower(std::string(header.substr(0, kScheme.size()))) != kScheme ||
      !absl::ascii_isspace(static_cast<unsigned char>(header[kScheme.size()]))) {
    return std::nullopt;
  }
  std::string_view token = TrimAsciiSpace(header.substr(kScheme.size()));
  if (token.empty()) return std::nullopt;
  return token;
}

TokenDigest DigestOf(std::string_view token) {
  TokenDigest digest{};
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest.data());
  return digest;
}

// Compares digests, so neither the length nor the content of an allowed token shows in the time
// taken, and checks every allowed token without stopping early.
bool TokenAllowed(std::string_view presented, const std::vector<TokenDigest>& allowed) {
  const TokenDigest digest = DigestOf(presented);
  bool match = false;
  for (const TokenDigest& token : allowed) {
    if (CRYPTO_memcmp(token.data(), digest.data(), digest.size()) == 0) match = true;
  }
  return match;
}

std::vector<TokenDigest> DigestsOf(const std::vector<std::string>& tokens) {
  std::vector<TokenDigest> digests;
  for (const std::string& token : tokens) digests.push_back(DigestOf(token));
  return digests;
}

}  // namespace

std::map<std::string, QueueLimits> QueuesConfig::Limits() const {
  std::map<std::string, QueueLimits> limits;
  for (const RouteConfig& route : routes) limits[route.name] = route.limits;
  return limits;
}

void ReadQueuesConfig(ConfigReader& reader, const std::vector<std::string>& other_listeners,
                      QueuesConfig& config) {
  reader.Section("ingress", [&](ConfigReader& ingress) {
    ReadListen(ingress, "listen", &config.ingress_listen);
    int64_t max_body = static_cast<int64_t>(config.ingress_max_body_bytes);
    ingress.Read("max_body_bytes", &max_body, 1, 64 * 1024 * 1024);
    config.ingress_max_body_bytes = static_cast<size_t>(max_body);
  });
  reader.Section("pull_api", [&](ConfigReader& pull) {
    ReadListen(pull, "listen", &config.pull_listen);
    pull.Read("prefix", &config.pull_prefix);
    if (pull.ok() && !config.pull_prefix.empty() &&
        (!IsCleanPath(config.pull_prefix) || config.pull_prefix.back() == '/')) {
      pull.Fail("prefix", "must start with \"/\", not end with one, and hold no \"..\" or \"//\"");
    }
    ReadListen(pull, "grpc_listen", &config.grpc_listen);
    ReadTokens(pull, "auth_tokens", &config.auth_tokens);
    pull.Section("tls", [&](ConfigReader& tls) {
      tls.Read("cert_file", &config.tls.cert_file);
      tls.Read("key_file", &config.tls.key_file);
      tls.Read("client_ca", &config.tls.client_ca);
      std::string client_auth = "none";
      tls.ReadEnum("client_auth", &client_auth, {"none", "require_and_verify"});
      config.tls.require_client_cert = client_auth == "require_and_verify";
      if (tls.ok() && (config.tls.cert_file.empty() || config.tls.key_file.empty())) {
        tls.Fail("cert_file", "cert_file and key_file are required when tls is given");
      }
      if (tls.ok() && config.tls.require_client_cert != !config.tls.client_ca.empty()) {
        // Half an mTLS setup would mean different checks on the gRPC and the HTTP listener.
        tls.Fail("client_ca", "client_ca and client_auth \"require_and_verify\" go together");
      }
    });
  });
  reader.ObjectArray("routes", [&](ConfigReader& element) {
    RouteConfig route;
    ReadRoute(element, route);
    config.routes.push_back(std::move(route));
  });
  if (!reader.ok()) return;

  std::set<std::string> names, ingress_paths, pull_paths;
  for (size_t i = 0; i < config.routes.size() && reader.ok(); ++i) {
    const RouteConfig& route = config.routes[i];
    const std::string key = fmt::format("routes[{}]", i);
    if (!names.insert(route.name).second) {
      reader.Fail(key, fmt::format("route name \"{}\" is used twice", route.name));
    } else if (!route.ingress_path.empty() && !ingress_paths.insert(route.ingress_path).second) {
      reader.Fail(key, fmt::format("ingress_path \"{}\" is used twice", route.ingress_path));
    } else if (!route.pull_path.empty() && !pull_paths.insert(route.pull_path).second) {
      reader.Fail(key, fmt::format("pull_path \"{}\" is used twice", route.pull_path));
    } else if (!route.pull_path.empty() && route.auth_tokens.empty() &&
               config.auth_tokens.empty()) {
      reader.Fail(key, fmt::format("route \"{}\" has a pull_path but no worker token: set its "
                                   "auth_tokens or pull_api.auth_tokens",
                                   route.name));
    }
  }
  if (!reader.ok() || config.grpc_listen.empty() || config.routes.empty()) return;
  if (pull_paths.empty()) {
    reader.Fail("pull_api", "grpc_listen needs at least one route with a pull_path");
    return;
  }
  std::vector<std::string> listeners = other_listeners;
  listeners.push_back(config.ingress_listen);
  listeners.push_back(config.pull_listen);
  for (const std::string& other : listeners) {
    if (other.empty()) continue;
    absl::StatusOr<common::HostPort> a = common::ParseListenAddress(config.grpc_listen);
    absl::StatusOr<common::HostPort> b = common::ParseListenAddress(other);
    // Port 0 picks a free port per listener, so two port-0 listeners never collide.
    if (a.ok() && b.ok() && a->port != 0 && a->port == b->port &&
        (a->host == b->host || a->host == "0.0.0.0" || b->host == "0.0.0.0" || a->host == "::" ||
         b->host == "::")) {
      reader.Fail("pull_api", fmt::format("grpc_listen {} must differ from every other listener "
                                          "({} is taken)",
                                          config.grpc_listen, other));
      return;
    }
  }
}

RouteTable::RouteTable(const QueuesConfig& config)
    : routes_(config.routes), global_tokens_(DigestsOf(config.auth_tokens)) {
  for (RouteConfig& route : routes_) {
    route_tokens_[route.name] = DigestsOf(route.auth_tokens);
    route.auth_tokens.clear();
  }
}

absl::StatusOr<std::string> RouteTable::AuthorizePull(
    std::string_view endpoint, std::optional<std::string_view> authorization) const {
  const RouteConfig* route = nullptr;
  for (const RouteConfig& candidate : routes_) {
    if (!candidate.pull_path.empty() && candidate.pull_path == endpoint) route = &candidate;
  }
  const std::vector<TokenDigest>* allowed = &global_tokens_;
  if (route != nullptr && !route_tokens_.at(route->name).empty()) {
    allowed = &route_tokens_.at(route->name);
  }
  std::optional<std::string_view> token =
      authorization ? BearerToken(*authorization) : std::nullopt;
  if (!token) {
    return absl::UnauthenticatedError("missing bearer token (authorization: Bearer <token>)");
  }
  if (!TokenAllowed(*token, *allowed)) return absl::UnauthenticatedError("invalid bearer token");
  if (route == nullptr) {
    return absl::NotFoundError(fmt::format("no queue route with pull endpoint \"{}\"", endpoint));
  }
  return route->name;
}

const RouteConfig* RouteTable::ByIngressPath(std::string_view path) const {
  for (const RouteConfig& route : routes_) {
    if (!route.ingress_path.empty() && route.ingress_path == path) return &route;
  }
  return nullptr;
}

const RouteConfig* RouteTable::ByName(std::string_view name) const {
  for (const RouteConfig& route : routes_) {
    if (route.name == name) return &route;
  }
  return nullptr;
}

}  // namespace pi::controlplane::queue
