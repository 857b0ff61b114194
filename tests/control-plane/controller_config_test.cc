#include "control-plane/controller_config.h"

#include <catch2/catch.hpp>
#include <fstream>

#include "tests/common/test_dir.h"

namespace pi::controlplane {
namespace {

using std::chrono::seconds;

struct ConfigFile {
  pi::testing::TempDir dir;
  std::string path = (dir.path() / "controller.json").string();

  absl::StatusOr<ControllerConfig> Load(const std::string& text) {
    std::ofstream(path) << text;
    return LoadControllerConfig(path, false);
  }
  std::string ErrorOf(const std::string& text) {
    absl::StatusOr<ControllerConfig> config = Load(text);
    REQUIRE_FALSE(config.ok());
    CHECK(absl::IsInvalidArgument(config.status()));
    return std::string(config.status().message());
  }
};

TEST_CASE("An empty controller config gives the documented defaults") {
  ConfigFile file;
  absl::StatusOr<ControllerConfig> config = file.Load("{}");
  REQUIRE(config.ok());
  CHECK(config->state_dir == "/var/lib/pi-controller");
  CHECK(config->listen == "0.0.0.0:9090");
  CHECK(config->http_listen == "127.0.0.1:9900");
  CHECK(config->cluster.heartbeat_interval == seconds(5));
  CHECK(config->cluster.heartbeat_ttl == seconds(15));
  CHECK(config->cluster.down_grace == seconds(5));
  CHECK(config->health_poll_interval == seconds(30));
  CHECK(config->admin_max_streams == 32);
  CHECK(config->DatabasePath() == "/var/lib/pi-controller/cluster.db");
}

TEST_CASE("The example controller config in deploy/config parses") {
  absl::StatusOr<ControllerConfig> config =
      LoadControllerConfig(std::string(PI_SOURCE_DIR) + "/deploy/config/controller.json", false);
  REQUIRE(config.ok());
  CHECK(config->certificate_hosts.size() == 2);
  CHECK(config->cluster.max_token_ttl == std::chrono::hours(720));
}

TEST_CASE("A missing config file is the defaults only where that was asked for") {
  pi::testing::TempDir dir;
  const std::string missing = (dir.path() / "absent.json").string();
  CHECK(LoadControllerConfig(missing, true).ok());
  CHECK_FALSE(LoadControllerConfig(missing, false).ok());
}

TEST_CASE("Durations in the cluster section are read and checked against each other") {
  ConfigFile file;
  absl::StatusOr<ControllerConfig> config = file.Load(
      R"({"cluster": {"heartbeat_interval": "2s", "heartbeat_ttl": "1m", "down_grace": "0s"}})");
  REQUIRE(config.ok());
  CHECK(config->cluster.heartbeat_interval == seconds(2));
  CHECK(config->cluster.heartbeat_ttl == seconds(60));
  CHECK(config->cluster.down_grace == seconds(0));
  CHECK_THAT(file.ErrorOf(R"({"cluster": {"heartbeat_interval": "10s", "heartbeat_ttl": "5s"}})"),
             Catch::Contains("cluster.heartbeat_ttl"));
  CHECK_THAT(file.ErrorOf(R"({"cluster": {"join_token_ttl": "48h", "max_token_ttl": "24h"}})"),
             Catch::Contains("cluster.join_token_ttl"));
}

TEST_CASE("Bad controller configs name the offending key") {
  ConfigFile file;
  CHECK_THAT(file.ErrorOf(R"({"listen": "nowhere"})"), Catch::Contains("listen"));
  CHECK_THAT(file.ErrorOf(R"({"state_dir": "relative/dir"})"), Catch::Contains("state_dir"));
  CHECK_THAT(file.ErrorOf(R"({"state_dir": "/var/lib/../etc"})"), Catch::Contains("state_dir"));
  CHECK_THAT(file.ErrorOf(R"({"cluster": {"heartbeat_interval": "soon"}})"),
             Catch::Contains("cluster.heartbeat_interval"));
  CHECK_THAT(file.ErrorOf(R"({"cluster": {"surprise": 1}})"), Catch::Contains("cluster.surprise"));
  CHECK_THAT(file.ErrorOf(R"({"admin": {"max_streams": 0}})"),
             Catch::Contains("admin.max_streams"));
  CHECK_THAT(file.ErrorOf(R"({"unknown": true})"), Catch::Contains("unknown"));
  CHECK_THAT(file.ErrorOf(R"({"log_level": "loud"})"), Catch::Contains("log_level"));
  CHECK_THAT(file.ErrorOf("[1, 2]"), Catch::Contains("object"));
}

TEST_CASE("The CA directory and the controller certificate can be given by the operator") {
  ConfigFile file;
  absl::StatusOr<ControllerConfig> defaults = file.Load(R"({"state_dir": "/srv/pc"})");
  REQUIRE(defaults.ok());
  CHECK(defaults->CaDir() == "/srv/pc");
  CHECK_FALSE(defaults->CertificateConfigured());
  CHECK(defaults->CertFile() == "/srv/pc/controller.crt");

  absl::StatusOr<ControllerConfig> configured = file.Load(
      R"({"state_dir": "/srv/pc", "ca_dir": "/srv/ca",
          "tls": {"cert_file": "/etc/pc/c.crt", "key_file": "/etc/pc/c.key"}})");
  REQUIRE(configured.ok());
  CHECK(configured->CaDir() == "/srv/ca");
  CHECK(configured->CertificateConfigured());
  CHECK(configured->CertFile() == "/etc/pc/c.crt");
  CHECK(configured->KeyFile() == "/etc/pc/c.key");

  CHECK_THAT(file.ErrorOf(R"({"tls": {"cert_file": "/etc/pc/c.crt"}})"),
             Catch::Contains("tls.cert_file"));
  CHECK_THAT(file.ErrorOf(R"({"ca_dir": "ca"})"), Catch::Contains("ca_dir"));
  CHECK_THAT(file.ErrorOf(R"({"tls": {"ca_file": "/x"}})"), Catch::Contains("tls.ca_file"));
}

TEST_CASE("The releases and provisioning sections are read and checked") {
  ConfigFile file;
  absl::StatusOr<ControllerConfig> defaults = file.Load("{}");
  REQUIRE(defaults.ok());
  CHECK(defaults->releases.token_ttl == std::chrono::hours(1));
  CHECK(defaults->releases.default_timeout == std::chrono::minutes(30));
  CHECK(defaults->releases.runner_silence_limit == seconds(90));
  CHECK(defaults->releases.default_max_attempts == 3);
  CHECK(defaults->profiles_dir == "/etc/pi-controller/profiles");
  CHECK(defaults->ReleaseDatabasePath() == "/var/lib/pi-controller/release.db");

  absl::StatusOr<ControllerConfig> config = file.Load(
      R"({"releases": {"token_ttl": "2h", "default_timeout": "90m", "runner_silence_limit": "30s",
                       "default_max_attempts": 5},
          "provisioning": {"profiles_dir": "/srv/profiles"}})");
  REQUIRE(config.ok());
  CHECK(config->releases.token_ttl == std::chrono::hours(2));
  CHECK(config->releases.default_timeout == std::chrono::minutes(90));
  CHECK(config->releases.runner_silence_limit == seconds(30));
  CHECK(config->releases.default_max_attempts == 5);
  CHECK(config->profiles_dir == "/srv/profiles");

  CHECK_THAT(file.ErrorOf(R"({"releases": {"token_ttl": "10m", "default_timeout": "20m"}})"),
             Catch::Contains("releases.default_timeout"));
  CHECK_THAT(file.ErrorOf(R"({"releases": {"default_max_attempts": 0}})"),
             Catch::Contains("releases.default_max_attempts"));
  CHECK_THAT(file.ErrorOf(R"({"releases": {"runner_silence_limit": "1s"}})"),
             Catch::Contains("releases.runner_silence_limit"));
  CHECK_THAT(file.ErrorOf(R"({"releases": {"surprise": 1}})"),
             Catch::Contains("releases.surprise"));
  CHECK_THAT(file.ErrorOf(R"({"provisioning": {"profiles_dir": "profiles"}})"),
             Catch::Contains("provisioning.profiles_dir"));
  CHECK_THAT(file.ErrorOf(R"({"provisioning": {"profiles_dir": "/etc/../tmp"}})"),
             Catch::Contains("provisioning.profiles_dir"));
}

TEST_CASE("A config with a JSON syntax error names the line") {
  ConfigFile file;
  absl::StatusOr<ControllerConfig> config = file.Load("{\n  \"listen\": \n}");
  REQUIRE_FALSE(config.ok());
  CHECK_THAT(std::string(config.status().message()), Catch::Contains(":3:"));
}

}  // namespace
}  // namespace pi::controlplane
