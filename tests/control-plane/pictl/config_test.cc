#include "control-plane/pictl/config.h"

#include <catch2/catch.hpp>
#include <string>

#include "tests/common/test_dir.h"

namespace pi::controlplane::pictl {
namespace {

constexpr char kFullConfig[] =
    R"({"controller": "10.0.0.1:9090", "ca_file": "ca.crt", "cert_file": "certs/admin.crt",
        "key_file": "/abs/admin.key"})";

}  // namespace

TEST_CASE("a config file's relative paths resolve against its directory") {
  pi::testing::TempDir dir;
  const std::string path = dir.Write("pictl/config.json", kFullConfig);
  auto config = LoadConfigFile(path);
  REQUIRE(config.ok());
  CHECK(config->controller == "10.0.0.1:9090");
  CHECK(config->ca_file == (dir.path() / "pictl" / "ca.crt").string());
  CHECK(config->cert_file == (dir.path() / "pictl" / "certs" / "admin.crt").string());
  CHECK(config->key_file == "/abs/admin.key");
  CHECK(config->source == path);
}

TEST_CASE("an unknown key in the config file is refused, naming the file and the key") {
  pi::testing::TempDir dir;
  const std::string path = dir.Write("config.json", R"({"controller": "a:1", "ca": "ca.crt"})");
  const auto status = LoadConfigFile(path).status();
  CHECK(status.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(status.message()), Catch::Contains(path));
  CHECK_THAT(std::string(status.message()), Catch::Contains("ca"));
  CHECK_THAT(std::string(status.message()), Catch::Contains("allowed keys"));
}

TEST_CASE("a config value of the wrong type is refused, naming the key") {
  pi::testing::TempDir dir;
  const std::string path = dir.Write("config.json", R"({"controller": 9090})");
  const auto status = LoadConfigFile(path).status();
  CHECK(status.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(status.message()), Catch::Contains("controller: expected a string"));
}

TEST_CASE("a config file that is not JSON is refused with its position") {
  pi::testing::TempDir dir;
  const std::string path = dir.Write("config.json", "{\n  \"controller\": \n");
  const auto status = LoadConfigFile(path).status();
  CHECK(status.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(status.message()), Catch::StartsWith(path + ":"));
}

TEST_CASE("a missing config file says how to create one") {
  pi::testing::TempDir dir;
  const std::string path = (dir.path() / "absent.json").string();
  const auto status = LoadConfigFile(path).status();
  CHECK(status.code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(status.message()), Catch::Contains(path));
  CHECK_THAT(std::string(status.message()), Catch::Contains("pi-controller issue-admin NAME"));
}

TEST_CASE("the default config path follows XDG_CONFIG_HOME, then HOME") {
  CHECK(DefaultConfigPath({"", "/home/ann", "/xdg"}) == "/xdg/pictl/config.json");
  CHECK(DefaultConfigPath({"", "/home/ann", ""}) == "/home/ann/.config/pictl/config.json");
  CHECK(DefaultConfigPath({}).empty());
}

TEST_CASE("--config wins over $PICTL_CONFIG, which wins over the default path") {
  pi::testing::TempDir dir;
  const std::string flag = dir.Write("flag.json", R"({"controller": "flag:1", "ca_file": "c",
      "cert_file": "d", "key_file": "e"})");
  const std::string env = dir.Write("env.json", R"({"controller": "env:1", "ca_file": "c",
      "cert_file": "d", "key_file": "e"})");
  dir.Write("xdg/pictl/config.json", R"({"controller": "default:1", "ca_file": "c",
      "cert_file": "d", "key_file": "e"})");
  const Environment environment{env, "", (dir.path() / "xdg").string()};
  CHECK(ResolveConfig({flag, "", "", "", ""}, environment)->controller == "flag:1");
  CHECK(ResolveConfig({}, environment)->controller == "env:1");
  CHECK(ResolveConfig({}, {"", "", (dir.path() / "xdg").string()})->controller == "default:1");
}

TEST_CASE("flags override the values of the config file") {
  pi::testing::TempDir dir;
  const std::string path = dir.Write("config.json", kFullConfig);
  auto config = ResolveConfig({path, "other:2", "/x/ca.pem", "", ""}, {});
  REQUIRE(config.ok());
  CHECK(config->controller == "other:2");
  CHECK(config->ca_file == "/x/ca.pem");
  CHECK(config->key_file == "/abs/admin.key");
}

TEST_CASE("flags alone are enough when the default config file does not exist") {
  pi::testing::TempDir dir;
  auto config = ResolveConfig({"", "c:1", "ca", "crt", "key"}, {"", dir.path().string(), ""});
  REQUIRE(config.ok());
  CHECK(config->controller == "c:1");
  CHECK(config->source.empty());
}

TEST_CASE("no config file and incomplete flags name the default path and how to create it") {
  pi::testing::TempDir dir;
  const auto status =
      ResolveConfig({"", "c:1", "", "", ""}, {"", dir.path().string(), ""}).status();
  CHECK(status.code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(status.message()),
             Catch::Contains(dir.path().string() + "/.config/pictl/config.json"));
  CHECK_THAT(std::string(status.message()), Catch::Contains("pi-controller issue-admin"));
}

TEST_CASE("an explicit --config that does not exist is an error even with every flag") {
  pi::testing::TempDir dir;
  const std::string path = (dir.path() / "absent.json").string();
  const auto status = ResolveConfig({path, "c:1", "ca", "crt", "key"}, {}).status();
  CHECK(status.code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(status.message()), Catch::Contains(path));
}

TEST_CASE("a config file without a controller names the key and the flag") {
  pi::testing::TempDir dir;
  const std::string path =
      dir.Write("config.json", R"({"ca_file": "c", "cert_file": "d", "key_file": "e"})");
  const auto status = ResolveConfig({path, "", "", "", ""}, {}).status();
  CHECK(status.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(status.message()),
             Catch::StartsWith(path + ": \"controller\" is not set; add it or pass --controller"));
}

TEST_CASE("a config file without a key file names the key and the flag") {
  pi::testing::TempDir dir;
  const std::string path =
      dir.Write("config.json", R"({"controller": "a:1", "ca_file": "c", "cert_file": "d"})");
  const auto status = ResolveConfig({path, "", "", "", ""}, {}).status();
  CHECK(status.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(status.message()), Catch::Contains("\"key_file\" is not set"));
  CHECK_THAT(std::string(status.message()), Catch::Contains("--key"));
}

}  // namespace pi::controlplane::pictl
