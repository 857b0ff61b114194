#include "control-plane/queue/queue_config.h"

#include <stdlib.h>

#include <catch2/catch.hpp>

namespace pi::controlplane::queue {
namespace {

absl::StatusOr<QueuesConfig> Parse(const std::string& text,
                                   std::vector<std::string> other_listeners = {"0.0.0.0:9090"}) {
  const nlohmann::json document = nlohmann::json::parse(text);
  common::ConfigReader reader(document, "queues");
  QueuesConfig config;
  ReadQueuesConfig(reader, other_listeners, config);
  if (absl::Status status = reader.Finish(); !status.ok()) return status;
  return config;
}

std::string ErrorOf(const std::string& text, std::vector<std::string> others = {"0.0.0.0:9090"}) {
  absl::StatusOr<QueuesConfig> config = Parse(text, std::move(others));
  REQUIRE_FALSE(config.ok());
  return std::string(config.status().message());
}

struct TokenEnv {
  TokenEnv() {
    setenv("PI_TEST_GLOBAL_TOKEN", "global-secret", 1);
    setenv("PI_TEST_ROUTE_TOKEN", "route-secret", 1);
  }
};

constexpr char kTwoRoutes[] = R"({
  "ingress": {"listen": "127.0.0.1:0", "max_body_bytes": 2048},
  "pull_api": {"listen": "127.0.0.1:0", "prefix": "/pull", "grpc_listen": "127.0.0.1:0",
               "auth_tokens": ["env:PI_TEST_GLOBAL_TOKEN"]},
  "routes": [
    {"name": "github", "ingress_path": "/webhooks/github", "pull_path": "/github",
     "max_depth": 10, "retention": "1h", "max_attempts": 3, "max_batch": 20,
     "max_lease_ttl": "5m"},
    {"name": "builds", "ingress_path": "/webhooks/builds", "pull_path": "/builds",
     "auth_tokens": ["env:PI_TEST_ROUTE_TOKEN"]}
  ]})";

TEST_CASE("The queues section reads routes, limits, listeners and resolved tokens") {
  TokenEnv env;
  absl::StatusOr<QueuesConfig> config = Parse(kTwoRoutes);
  REQUIRE(config.ok());
  CHECK(config->ingress_max_body_bytes == 2048);
  CHECK(config->pull_prefix == "/pull");
  CHECK(config->auth_tokens == std::vector<std::string>{"global-secret"});
  REQUIRE(config->routes.size() == 2);
  const RouteConfig& github = config->routes[0];
  CHECK(github.limits.max_depth == 10);
  CHECK(github.limits.retention == std::chrono::hours(1));
  CHECK(github.limits.max_attempts == 3);
  CHECK(github.limits.max_batch == 20);
  CHECK(github.limits.max_lease_ttl == std::chrono::minutes(5));
  CHECK(config->routes[1].auth_tokens == std::vector<std::string>{"route-secret"});
  CHECK_FALSE(config->routes[1].limits.max_attempts.has_value());
  CHECK(config->Limits().size() == 2);
}

TEST_CASE("Bad queue configurations are refused with the key that is wrong") {
  TokenEnv env;
  CHECK(ErrorOf(R"({"routes": [{"name": "a", "pull_path": "/a", "auth_tokens": ["plain"]}]})")
            .find("queues.routes[0].auth_tokens") != std::string::npos);
  CHECK(ErrorOf(R"({"routes": [{"name": "a", "pull_path": "/a"}]})").find("no worker token") !=
        std::string::npos);
  CHECK(ErrorOf(R"({"routes": [{"name": "a", "ingress_path": "/x/../y"}]})").find("ingress_path") !=
        std::string::npos);
  CHECK(
      ErrorOf(R"({"routes": [{"name": "a", "ingress_path": "relative"}]})").find("ingress_path") !=
      std::string::npos);
  CHECK(ErrorOf(R"({"routes": [{"name": "a", "ingress_path": "/a"},
                               {"name": "a", "ingress_path": "/b"}]})")
            .find("used twice") != std::string::npos);
  CHECK(ErrorOf(R"({"routes": [{"name": "a", "ingress_path": "/a"},
                               {"name": "b", "ingress_path": "/a"}]})")
            .find("used twice") != std::string::npos);
  CHECK(ErrorOf(R"({"routes": [{"ingress_path": "/a"}]})").find("name") != std::string::npos);
  CHECK(ErrorOf(R"({"routes": [{"name": "a", "ingress_path": "/a", "max_batch": 101}]})")
            .find("max_batch") != std::string::npos);
  CHECK(ErrorOf(R"({"routes": [{"name": "a", "ingress_path": "/a", "max_attempts": 0}]})")
            .find("max_attempts") != std::string::npos);
  CHECK(ErrorOf(R"({"routes": [{"name": "a", "ingress_path": "/a", "retention": "-1s"}]})")
            .find("retention") != std::string::npos);
  CHECK(ErrorOf(R"({"routes": [{"name": "a", "ingress_path": "/a", "colour": "red"}]})")
            .find("colour") != std::string::npos);
  CHECK(ErrorOf(R"({"pull_api": {"tls": {"cert_file": "/c"}}})").find("key_file") !=
        std::string::npos);
  CHECK(ErrorOf(R"({"pull_api": {"tls": {"cert_file": "/c", "key_file": "/k",
                                          "client_auth": "require_and_verify"}}})")
            .find("client_ca") != std::string::npos);
  CHECK(ErrorOf(R"({"pull_api": {"prefix": "/pull/"}})").find("prefix") != std::string::npos);
  CHECK(ErrorOf(R"({"pull_api": {"tls": {"cert_file": "/c", "key_file": "/k",
                                          "client_ca": "/ca"}}})")
            .find("client_ca") != std::string::npos);
}

TEST_CASE("The worker gRPC listener needs a pull route and an address of its own") {
  TokenEnv env;
  CHECK(ErrorOf(R"({"pull_api": {"grpc_listen": "127.0.0.1:9943"},
                    "routes": [{"name": "a", "ingress_path": "/a"}]})")
            .find("grpc_listen needs at least one route with a pull_path") != std::string::npos);
  CHECK(ErrorOf(R"({"pull_api": {"grpc_listen": "127.0.0.1:9090",
                                 "auth_tokens": ["env:PI_TEST_GLOBAL_TOKEN"]},
                    "routes": [{"name": "a", "pull_path": "/a"}]})")
            .find("must differ") != std::string::npos);
  CHECK(ErrorOf(R"({"ingress": {"listen": "127.0.0.1:8080"},
                    "pull_api": {"grpc_listen": "0.0.0.0:8080",
                                 "auth_tokens": ["env:PI_TEST_GLOBAL_TOKEN"]},
                    "routes": [{"name": "a", "pull_path": "/a"}]})")
            .find("must differ") != std::string::npos);
  // Without routes nothing listens, so nothing is checked; grpc_listen "" turns it off.
  CHECK(Parse(R"({"pull_api": {"grpc_listen": "127.0.0.1:9090"}})").ok());
  CHECK(Parse(R"({"pull_api": {"grpc_listen": ""},
                  "routes": [{"name": "a", "ingress_path": "/a"}]})")
            .ok());
}

TEST_CASE("Pull authorization checks the bearer token before the endpoint") {
  TokenEnv env;
  absl::StatusOr<QueuesConfig> config = Parse(kTwoRoutes);
  REQUIRE(config.ok());
  RouteTable table(*config);
  CHECK(*table.AuthorizePull("/github", "Bearer global-secret") == "github");
  CHECK(*table.AuthorizePull("/github", "bearer   global-secret  ") == "github");
  CHECK(*table.AuthorizePull("/github", "BEARER global-secret") == "github");
  CHECK(table.AuthorizePull("/github", "Bearer wrong").status().code() ==
        absl::StatusCode::kUnauthenticated);
  CHECK(table.AuthorizePull("/github", "Basic global-secret").status().code() ==
        absl::StatusCode::kUnauthenticated);
  CHECK(table.AuthorizePull("/github", "Bearer").status().code() ==
        absl::StatusCode::kUnauthenticated);
  CHECK(table.AuthorizePull("/github", "Bearerglobal-secret").status().code() ==
        absl::StatusCode::kUnauthenticated);
  CHECK(table.AuthorizePull("/github", std::nullopt).status().code() ==
        absl::StatusCode::kUnauthenticated);
  // A route's own tokens replace the global list.
  CHECK(*table.AuthorizePull("/builds", "Bearer route-secret") == "builds");
  CHECK(table.AuthorizePull("/builds", "Bearer global-secret").status().code() ==
        absl::StatusCode::kUnauthenticated);
  CHECK(table.AuthorizePull("/github", "Bearer route-secret").status().code() ==
        absl::StatusCode::kUnauthenticated);
  // Unknown endpoints: a bad token is still UNAUTHENTICATED, a good one NOT_FOUND.
  CHECK(table.AuthorizePull("/nope", "Bearer wrong").status().code() ==
        absl::StatusCode::kUnauthenticated);
  CHECK(table.AuthorizePull("/nope", "Bearer global-secret").status().code() ==
        absl::StatusCode::kNotFound);
  CHECK(table.ByIngressPath("/webhooks/builds")->name == "builds");
  CHECK(table.ByIngressPath("/webhooks/nope") == nullptr);
  CHECK(table.ByName("github")->pull_path == "/github");
}

}  // namespace
}  // namespace pi::controlplane::queue
