#include "node-agent/agent_config.h"

#include <catch2/catch.hpp>

#include "tests/common/test_dir.h"

namespace pi::agent {
namespace {

using nlohmann::json;

std::string ErrorOf(const json& document) {
  auto config = ParseAgentConfig(document);
  REQUIRE_FALSE(config.ok());
  CHECK(config.status().code() == absl::StatusCode::kInvalidArgument);
  return std::string(config.status().message());
}

TEST_CASE("an empty config gives the documented defaults", "[agent_config]") {
  auto config = ParseAgentConfig(json::object());
  REQUIRE(config.ok());
  CHECK(config->listen == "0.0.0.0:9091");
  CHECK(config->http_listen == ":9101");
  CHECK(config->tls.client_auth == common::ClientAuth::kRequireAndVerify);
  CHECK(config->tls.cert_file == "/var/lib/pi-agent/node.crt");
  CHECK(config->gpio_backend == "libgpiod");
  CHECK(config->gpio.allowed_lines.empty());
  CHECK(config->exec.allowed_commands.empty());
  CHECK(config->max_request_bytes == 1024 * 1024);
  CHECK_FALSE(config->tls_files_configured);
  CHECK(config->control_plane.address.empty());
  CHECK(config->control_plane.state_dir == "/var/lib/pi-agent");
  CHECK(config->control_plane.advertise_address.empty());
  CHECK(config->control_plane.labels.empty());
  CHECK(config->runner.enabled);
  CHECK(config->runner.max_concurrent == 1);
  CHECK(config->runner.provision.filesystem_root == "/");
  CHECK(config->runner.provision.allowed_write_roots ==
        std::vector<std::string>{"/etc/motd", "/etc/hostname", "/etc/pi-provision",
                                 "/etc/rancher/k3s"});
  CHECK(config->runner.reconnect_max_backoff == std::chrono::seconds(30));
  CHECK(config->runner.heartbeat_interval == std::chrono::seconds(10));
}

TEST_CASE("the example config shipped in deploy/config parses", "[agent_config]") {
  auto config = LoadAgentConfig(std::string(PI_SOURCE_DIR) + "/deploy/config/agent.json");
  REQUIRE(config.ok());
  CHECK(config->gpio.allowed_lines.size() == 3);
  CHECK(config->gpio.allowed_lines[0].line == "GPIO17");
  CHECK(config->gpio.max_hold == std::chrono::hours(24));
  CHECK(config->exec.max_timeout == std::chrono::minutes(5));
  CHECK(config->control_plane.state_dir == "/var/lib/pi-agent");
  CHECK(config->runner.enabled);
  CHECK(config->runner.heartbeat_interval == std::chrono::seconds(10));
  // The one write root the packaged unit makes writable (ReadWritePaths=-/etc/pi-provision).
  CHECK(config->runner.provision.allowed_write_roots ==
        std::vector<std::string>{"/etc/pi-provision"});
}

TEST_CASE("the control_plane section names the cluster to join", "[agent_config]") {
  const json document = json::parse(R"({
    "control_plane": {"address": "controller.lan:9090", "state_dir": "/srv/pi-agent",
                      "advertise_address": "10.0.0.7:9091",
                      "labels": {"role": "worker", "example.com/zone": "rack-2"}}
  })");
  auto config = ParseAgentConfig(document);
  REQUIRE(config.ok());
  CHECK(config->control_plane.address == "controller.lan:9090");
  CHECK(config->control_plane.state_dir == "/srv/pi-agent");
  CHECK(config->control_plane.advertise_address == "10.0.0.7:9091");
  CHECK(config->control_plane.labels ==
        std::map<std::string, std::string>{{"role", "worker"}, {"example.com/zone", "rack-2"}});
}

TEST_CASE("setting a TLS file marks TLS as configured, client_auth alone does not",
          "[agent_config]") {
  auto only_auth = ParseAgentConfig(json::parse(R"({"tls": {"client_auth": "request"}})"));
  REQUIRE(only_auth.ok());
  CHECK_FALSE(only_auth->tls_files_configured);
  for (const char* key : {"cert_file", "key_file", "ca_file"}) {
    INFO(key);
    auto config = ParseAgentConfig({{"tls", {{key, "/etc/pi-agent/x.pem"}}}});
    REQUIRE(config.ok());
    CHECK(config->tls_files_configured);
  }
}

TEST_CASE("sections map onto the capability configs", "[agent_config]") {
  const json document = json::parse(R"({
    "node_name": "pi-07",
    "tls": {"client_auth": "request"},
    "grpc": {"max_request_bytes": 65536, "max_log_streams": 4},
    "metrics": {"proc_root": "/host", "cpu_sample_interval": "250ms"},
    "gpio": {"backend": "simulated", "chip": "pinctrl-rp1",
             "allowed_lines": [{"line": 17, "mode": "output"}, {"line": "2-8"}]},
    "exec": {"allowed_commands": ["/usr/bin/uptime"], "default_timeout": "2s",
             "allowed_env": ["LANG"]},
    "logs": {"files": {"app": "/var/log/app.log"}, "journald": false,
             "follow_poll_interval": "50ms", "max_limit": 500}
  })");
  auto config = ParseAgentConfig(document);
  REQUIRE(config.ok());
  CHECK(config->node_name == "pi-07");
  CHECK(config->tls.client_auth == common::ClientAuth::kRequest);
  CHECK(config->max_request_bytes == 65536);
  CHECK(config->max_log_streams == 4);
  CHECK(config->collector.root == "/host");
  CHECK(config->cpu_sampler.root == "/host");
  CHECK(config->cpu_sampler.interval == std::chrono::milliseconds(250));
  CHECK(config->gpio_backend == "simulated");
  CHECK(config->gpio.chip == "pinctrl-rp1");
  REQUIRE(config->gpio.allowed_lines.size() == 2);
  CHECK(config->gpio.allowed_lines[0].line == "17");
  CHECK(config->gpio.allowed_lines[1].mode == "any");
  CHECK(config->exec.default_timeout == std::chrono::seconds(2));
  CHECK(config->exec.allowed_env == std::vector<std::string>{"LANG"});
  CHECK(config->logs.files == std::map<std::string, std::string>{{"app", "/var/log/app.log"}});
  CHECK_FALSE(config->logs.journald);
  CHECK(config->logs.follow_poll_interval == std::chrono::milliseconds(50));
  CHECK(config->logs.max_limit == 500);
}

TEST_CASE("unknown keys are refused with their path", "[agent_config]") {
  CHECK_THAT(ErrorOf({{"lisen", ":1"}}), Catch::StartsWith("lisen: unknown key"));
  CHECK_THAT(ErrorOf(json::parse(R"({"gpio": {"allowed_lines": [{"line": 1, "mod": "x"}]}})")),
             Catch::StartsWith("gpio.allowed_lines[0].mod: unknown key"));
}

TEST_CASE("bad values are refused naming the key", "[agent_config]") {
  CHECK_THAT(ErrorOf({{"listen", "9091"}}), Catch::StartsWith("listen:"));
  CHECK_THAT(ErrorOf({{"http_listen", "localhost:x"}}), Catch::StartsWith("http_listen:"));
  CHECK_THAT(ErrorOf({{"log_level", "loud"}}), Catch::StartsWith("log_level: must be one of"));
  CHECK_THAT(ErrorOf({{"tls", {{"client_auth", "maybe"}}}}),
             Catch::StartsWith("tls.client_auth: must be one of"));
  CHECK_THAT(ErrorOf({{"gpio", {{"backend", "sysfs"}}}}),
             Catch::StartsWith("gpio.backend: must be one of libgpiod|simulated"));
  CHECK_THAT(ErrorOf(json::parse(R"({"gpio": {"allowed_lines": [{"mode": "input"}]}})")),
             Catch::StartsWith("gpio.allowed_lines[0].line: is required"));
  CHECK_THAT(ErrorOf(json::parse(R"({"gpio": {"allowed_lines": [{"line": -3}]}})")),
             Catch::StartsWith("gpio.allowed_lines[0].line: expected an offset"));
  CHECK_THAT(ErrorOf({{"exec", {{"allowed_commands", {"uptime"}}}}}),
             Catch::StartsWith("exec.allowed_commands: \"uptime\" must be an absolute path"));
  CHECK_THAT(ErrorOf({{"exec", {{"allowed_commands", {"/usr/bin/../bin/rm"}}}}}),
             Catch::Contains("must not contain"));
  CHECK_THAT(ErrorOf({{"exec", {{"max_timeout", "-5s"}}}}),
             Catch::StartsWith("exec.max_timeout: invalid duration"));
  CHECK_THAT(ErrorOf({{"exec", {{"default_timeout", "10m"}, {"max_timeout", "1m"}}}}),
             Catch::StartsWith("exec.default_timeout: must not exceed exec.max_timeout"));
  CHECK_THAT(ErrorOf({{"exec", {{"max_concurrent", 0}}}}),
             Catch::StartsWith("exec.max_concurrent: must be between 1 and 256"));
  CHECK_THAT(ErrorOf({{"grpc", {{"max_request_bytes", 10}}}}),
             Catch::StartsWith("grpc.max_request_bytes: must be between"));
  CHECK_THAT(ErrorOf({{"metrics", {{"proc_root", "host"}}}}),
             Catch::StartsWith("metrics.proc_root: \"host\" must be an absolute path"));
  CHECK_THAT(ErrorOf({{"logs", {{"files", {{"app", 7}}}}}}),
             Catch::StartsWith("logs.files.app: expected a string"));
  CHECK_THAT(ErrorOf({{"logs", {{"follow_poll_interval", "1ms"}}}}),
             Catch::StartsWith("logs.follow_poll_interval: must be between 10ms and 1m"));
}

TEST_CASE("a control_plane address without a host or port is refused", "[agent_config]") {
  CHECK_THAT(ErrorOf({{"control_plane", {{"address", "controller.lan"}}}}),
             Catch::StartsWith("control_plane.address:"));
  CHECK_THAT(ErrorOf({{"control_plane", {{"address", ":9090"}}}}),
             Catch::StartsWith("control_plane.address: \":9090\" needs a host and a port"));
  CHECK_THAT(ErrorOf({{"control_plane", {{"address", "controller.lan:0"}}}}),
             Catch::StartsWith("control_plane.address:"));
}

TEST_CASE("a relative or empty control_plane state_dir is refused", "[agent_config]") {
  CHECK_THAT(ErrorOf({{"control_plane", {{"state_dir", "state"}}}}),
             Catch::StartsWith("control_plane.state_dir: \"state\" must be an absolute path"));
  CHECK_THAT(ErrorOf({{"control_plane", {{"state_dir", ""}}}}),
             Catch::StartsWith("control_plane.state_dir: must not be empty"));
  CHECK_THAT(ErrorOf({{"control_plane", {{"state_dir", "/var/lib/../etc"}}}}),
             Catch::Contains("must not contain"));
}

TEST_CASE("an advertise_address without a usable port is refused", "[agent_config]") {
  CHECK_THAT(ErrorOf({{"control_plane", {{"advertise_address", "10.0.0.7"}}}}),
             Catch::StartsWith("control_plane.advertise_address:"));
  CHECK_THAT(ErrorOf({{"control_plane", {{"advertise_address", "10.0.0.7:0"}}}}),
             Catch::StartsWith("control_plane.advertise_address: needs the port"));
}

TEST_CASE("control_plane labels must be simple keys and values", "[agent_config]") {
  CHECK_THAT(ErrorOf({{"control_plane", {{"labels", {{"role", 3}}}}}}),
             Catch::StartsWith("control_plane.labels.role: expected a string"));
  CHECK_THAT(ErrorOf({{"control_plane", {{"labels", {{"bad key", "x"}}}}}}),
             Catch::StartsWith("control_plane.labels: key \"bad key\""));
  CHECK_THAT(ErrorOf({{"control_plane", {{"labels", {{"", "x"}}}}}}),
             Catch::StartsWith("control_plane.labels: key \"\""));
  CHECK_THAT(ErrorOf({{"control_plane", {{"labels", {{"role", "a,b"}}}}}}),
             Catch::StartsWith("control_plane.labels: value \"a,b\" of role"));
  CHECK_THAT(ErrorOf({{"control_plane", {{"labels", {{"role", std::string(64, 'a')}}}}}}),
             Catch::StartsWith("control_plane.labels: value"));
}

TEST_CASE("unknown control_plane keys are refused", "[agent_config]") {
  CHECK_THAT(ErrorOf({{"control_plane", {{"token", "K10..."}}}}),
             Catch::StartsWith("control_plane.token: unknown key"));
}

TEST_CASE("the runner section sets the provisioning policy and the connection", "[agent_config]") {
  const json document = json::parse(R"({
    "runner": {"enabled": false, "max_concurrent": 3, "filesystem_root": "/mnt/image",
               "allowed_write_roots": ["/etc/motd", "/opt/site"],
               "reconnect_max_backoff": "2m", "heartbeat_interval": "500ms"}
  })");
  auto config = ParseAgentConfig(document);
  REQUIRE(config.ok());
  CHECK_FALSE(config->runner.enabled);
  CHECK(config->runner.max_concurrent == 3);
  CHECK(config->runner.provision.filesystem_root == "/mnt/image");
  CHECK(config->runner.provision.allowed_write_roots ==
        std::vector<std::string>{"/etc/motd", "/opt/site"});
  CHECK(config->runner.reconnect_max_backoff == std::chrono::minutes(2));
  CHECK(config->runner.heartbeat_interval == std::chrono::milliseconds(500));
}

TEST_CASE("an empty allowed_write_roots lets profiles write nothing", "[agent_config]") {
  auto config = ParseAgentConfig(json::parse(R"({"runner": {"allowed_write_roots": []}})"));
  REQUIRE(config.ok());
  CHECK(config->runner.provision.allowed_write_roots.empty());
}

TEST_CASE("bad runner values are refused naming the key", "[agent_config]") {
  CHECK_THAT(ErrorOf({{"runner", {{"enabld", true}}}}),
             Catch::StartsWith("runner.enabld: unknown key"));
  CHECK_THAT(ErrorOf({{"runner", {{"enabled", "yes"}}}}), Catch::StartsWith("runner.enabled:"));
  CHECK_THAT(ErrorOf({{"runner", {{"max_concurrent", 0}}}}),
             Catch::StartsWith("runner.max_concurrent: must be between 1 and 64"));
  CHECK_THAT(ErrorOf({{"runner", {{"filesystem_root", "image"}}}}),
             Catch::StartsWith("runner.filesystem_root: \"image\" must be an absolute path"));
  CHECK_THAT(ErrorOf({{"runner", {{"filesystem_root", ""}}}}),
             Catch::StartsWith("runner.filesystem_root: must not be empty"));
  CHECK_THAT(ErrorOf({{"runner", {{"filesystem_root", "/mnt/../etc"}}}}),
             Catch::StartsWith("runner.filesystem_root:") && Catch::Contains("must not contain"));
  CHECK_THAT(ErrorOf({{"runner", {{"allowed_write_roots", {"etc/motd"}}}}}),
             Catch::StartsWith("runner.allowed_write_roots: \"etc/motd\" must be an absolute"));
  CHECK_THAT(
      ErrorOf({{"runner", {{"allowed_write_roots", {"/etc/../root"}}}}}),
      Catch::StartsWith("runner.allowed_write_roots:") && Catch::Contains("must not contain"));
  CHECK_THAT(ErrorOf({{"runner", {{"allowed_write_roots", {""}}}}}),
             Catch::StartsWith("runner.allowed_write_roots: entries must not be empty"));
  CHECK_THAT(ErrorOf({{"runner", {{"allowed_write_roots", "/etc/motd"}}}}),
             Catch::StartsWith("runner.allowed_write_roots:"));
  CHECK_THAT(ErrorOf({{"runner", {{"heartbeat_interval", "90s"}}}}),
             Catch::StartsWith("runner.heartbeat_interval: must be between 100ms and 1m"));
  CHECK_THAT(ErrorOf({{"runner", {{"heartbeat_interval", "10"}}}}),
             Catch::StartsWith("runner.heartbeat_interval: invalid duration"));
  CHECK_THAT(ErrorOf({{"runner", {{"reconnect_max_backoff", "100ms"}}}}),
             Catch::StartsWith("runner.reconnect_max_backoff: must be between 1s and 1h"));
}

TEST_CASE("a broken config file names the file", "[agent_config]") {
  pi::testing::TempDir dir;
  const auto path = dir.Write("agent.json", R"({"exec": {"max_concurrent": "four"}})");
  auto config = LoadAgentConfig(path);
  REQUIRE_FALSE(config.ok());
  CHECK_THAT(std::string(config.status().message()),
             Catch::StartsWith(path + ": exec.max_concurrent: expected an integer"));
}

}  // namespace
}  // namespace pi::agent
