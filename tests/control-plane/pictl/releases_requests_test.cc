// Argument parsing of the release and provisioning commands: destination types, release files
// read from a directory, list filters and provisioning targets, and their bad inputs.
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "control-plane/pictl/requests.h"
#include "tests/common/test_dir.h"

namespace pi::controlplane::pictl {
namespace {

using pi::testing::TempDir;

std::vector<std::string> Names(const std::vector<pb::ReleaseFileContent>& files) {
  std::vector<std::string> names;
  for (const auto& file : files) names.push_back(file.name());
  return names;
}

CreateReleaseOptions CreateOptions(const TempDir& dir) {
  CreateReleaseOptions options;
  options.type = "acme/deploy@2";
  options.dir = (dir.path() / "artifacts").string();
  return options;
}

}  // namespace

TEST_CASE("destination types are ORGANISATION/NAME@VERSION") {
  auto type = ParseDestinationType("picontroller/provision@1");
  REQUIRE(type.ok());
  CHECK(type->organisation() == "picontroller");
  CHECK(type->name() == "provision");
  CHECK(type->version() == 1);
  CHECK(ParseDestinationType("acme/web-app@12")->name() == "web-app");

  for (const char* bad : {"", "acme", "acme/deploy", "acme/deploy@", "acme/deploy@0",
                          "acme/deploy@x", "acme/deploy@-1", "/deploy@1", "acme/@1",
                          "acme@1/deploy", "acme/a/b@1", "acme/deploy@1.5"}) {
    INFO(bad);
    auto parsed = ParseDestinationType(bad);
    CHECK(parsed.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(parsed.status().message()), Catch::Matchers::Contains("--type"));
  }
}

TEST_CASE("release files are every regular file under the directory, by relative name") {
  TempDir dir;
  dir.Write("artifacts/b.txt", "bee");
  dir.Write("artifacts/a/nested/deep.yaml", "deep: true\n");
  dir.Write("artifacts/a/one.json", "{}");
  std::filesystem::create_directories(dir.path() / "artifacts/empty");

  auto files = ReadReleaseFiles((dir.path() / "artifacts").string(), "--dir");
  REQUIRE(files.ok());
  CHECK(Names(*files) == std::vector<std::string>{"a/nested/deep.yaml", "a/one.json", "b.txt"});
  CHECK((*files)[2].content() == "bee");
}

TEST_CASE("release files refuse a missing directory and oversize files") {
  TempDir dir;
  auto missing = ReadReleaseFiles((dir.path() / "nope").string(), "--spec-dir");
  CHECK(missing.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(missing.status().message()), Catch::Matchers::Contains("--spec-dir"));

  const std::string file = dir.Write("plain.txt", "x");
  CHECK(ReadReleaseFiles(file, "--dir").status().code() == absl::StatusCode::kInvalidArgument);

  dir.Write("big/huge.bin", std::string(1024 * 1024 + 1, 'x'));
  CHECK(ReadReleaseFiles((dir.path() / "big").string(), "--dir").status().code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("release files refuse a file that is not UTF-8 text") {
  TempDir dir;
  dir.Write("artifacts/readme.txt", "caf\xc3\xa9\n");
  const std::string binary = dir.Write("artifacts/tool.bin", std::string("\x7f"
                                                                         "ELF\x02\xff\x00",
                                                                         7));
  auto files = ReadReleaseFiles((dir.path() / "artifacts").string(), "--dir");
  REQUIRE(files.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(files.status().message()) ==
        "--dir: " + binary + " is not UTF-8 text; releases carry text files only");

  CreateReleaseOptions options = CreateOptions(dir);
  CHECK(BuildCreateReleaseRequest(options).status().code() == absl::StatusCode::kInvalidArgument);
  std::filesystem::remove(binary);
  CHECK(BuildCreateReleaseRequest(options).ok());
}

TEST_CASE("releases create builds the whole request") {
  TempDir dir;
  dir.Write("artifacts/app.yaml", "replicas: 2\n");
  dir.Write("spec/spec.json", "{}");
  CreateReleaseOptions options = CreateOptions(dir);
  options.spec_dir = (dir.path() / "spec").string();
  options.node = "pi-1";
  options.plan = true;
  options.name = "web";
  options.environment = "prod";
  options.metadata = {"region=eu", "note=a=b"};
  options.max_attempts = 5;
  options.timeout = "10m";

  auto request = BuildCreateReleaseRequest(options);
  REQUIRE(request.ok());
  CHECK(request->destination_type().name() == "deploy");
  CHECK(request->destination_type().version() == 2);
  REQUIRE(request->artifact_files_size() == 1);
  CHECK(request->artifact_files(0).name() == "app.yaml");
  REQUIRE(request->spec_files_size() == 1);
  CHECK(request->spec_files(0).name() == "spec.json");
  CHECK(request->node_id() == "pi-1");
  CHECK(request->plan());
  CHECK(request->destination_name() == "web");
  CHECK(request->environment() == "prod");
  CHECK(request->destination_metadata().at("region") == "eu");
  CHECK(request->destination_metadata().at("note") == "a=b");
  CHECK(request->max_attempts() == 5);
  CHECK(request->timeout().seconds() == 600);

  CreateReleaseOptions minimal = CreateOptions(dir);
  auto plain = BuildCreateReleaseRequest(minimal);
  REQUIRE(plain.ok());
  CHECK_FALSE(plain->has_timeout());
  CHECK(plain->spec_files().empty());
}

TEST_CASE("releases create refuses bad arguments") {
  TempDir dir;
  dir.Write("artifacts/app.yaml", "x");
  std::filesystem::create_directories(dir.path() / "empty");

  struct Case {
    const char* what;
    std::function<void(CreateReleaseOptions&)> change;
    const char* flag;
  };
  const std::vector<Case> cases = {
      {"bad type", [](auto& o) { o.type = "deploy"; }, "--type"},
      {"metadata without =", [](auto& o) { o.metadata = {"region"}; }, "--meta"},
      {"metadata with empty key", [](auto& o) { o.metadata = {"=eu"}; }, "--meta"},
      {"metadata twice",
       [](auto& o) {
         o.metadata = {"a=1", "a=2"};
       },
       "--meta"},
      {"negative attempts", [](auto& o) { o.max_attempts = -1; }, "--max-attempts"},
      {"bad timeout", [](auto& o) { o.timeout = "soon"; }, "--timeout"},
      {"zero timeout", [](auto& o) { o.timeout = "0s"; }, "--timeout"},
      {"no files", [&dir](auto& o) { o.dir = (dir.path() / "empty").string(); }, "--dir"},
      {"missing dir", [&dir](auto& o) { o.dir = (dir.path() / "gone").string(); }, "--dir"},
      {"missing spec dir", [&dir](auto& o) { o.spec_dir = (dir.path() / "gone").string(); },
       "--spec-dir"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    CreateReleaseOptions options = CreateOptions(dir);
    c.change(options);
    auto request = BuildCreateReleaseRequest(options);
    CHECK(request.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(request.status().message()), Catch::Matchers::Contains(c.flag));
  }
}

TEST_CASE("release states parse in any case, with or without the prefix") {
  CHECK(*ParseReleaseState("running") == pb::RELEASE_STATE_RUNNING);
  CHECK(*ParseReleaseState("TIMED_OUT") == pb::RELEASE_STATE_TIMED_OUT);
  CHECK(*ParseReleaseState("RELEASE_STATE_FAILED") == pb::RELEASE_STATE_FAILED);
  CHECK_FALSE(ParseReleaseState("unspecified").ok());
  CHECK_FALSE(ParseReleaseState("done").ok());
  CHECK_FALSE(ParseReleaseState("").ok());
}

TEST_CASE("releases list builds filters and checks the limit") {
  auto request = BuildListReleasesRequest({"queued", "running"}, "pi-1", "p1", 20);
  REQUIRE(request.ok());
  REQUIRE(request->states_size() == 2);
  CHECK(request->states(0) == pb::RELEASE_STATE_QUEUED);
  CHECK(request->states(1) == pb::RELEASE_STATE_RUNNING);
  CHECK(request->node_id() == "pi-1");
  CHECK(request->provisioning_id() == "p1");
  CHECK(request->limit() == 20);

  CHECK_FALSE(BuildListReleasesRequest({}, "", "", 0).ok());
  CHECK_FALSE(BuildListReleasesRequest({}, "", "", 1001).ok());
  CHECK(BuildListReleasesRequest({}, "", "", 1000).ok());
  CHECK_FALSE(BuildListReleasesRequest({"bogus"}, "", "", 10).ok());
}

TEST_CASE("provision takes exactly one target, parameters and the mode") {
  ProvisionOptions options;
  options.profile = "hostname";
  options.node = "pi-1";
  options.parameters = {"hostname=pi-kitchen", "motd=a=b"};
  auto request = BuildProvisioningRequest(options);
  REQUIRE(request.ok());
  CHECK(request->node_id() == "pi-1");
  CHECK(request->profile() == "hostname");
  CHECK(request->parameters().at("hostname") == "pi-kitchen");
  CHECK(request->parameters().at("motd") == "a=b");
  CHECK(request->mode() == pb::ProvisioningRequest::MODE_APPLY);

  ProvisionOptions selector;
  selector.profile = "base";
  selector.selector = "role=sensor";
  selector.plan = true;
  auto by_selector = BuildProvisioningRequest(selector);
  REQUIRE(by_selector.ok());
  CHECK(by_selector->label_selector() == "role=sensor");
  CHECK(by_selector->mode() == pb::ProvisioningRequest::MODE_PLAN);

  ProvisionOptions all;
  all.profile = "base";
  all.all = true;
  CHECK(BuildProvisioningRequest(all)->all_nodes());

  ProvisionOptions none;
  none.profile = "base";
  CHECK_FALSE(BuildProvisioningRequest(none).ok());
  ProvisionOptions two = all;
  two.node = "pi-1";
  CHECK_FALSE(BuildProvisioningRequest(two).ok());
  ProvisionOptions no_profile = all;
  no_profile.profile = "";
  CHECK_FALSE(BuildProvisioningRequest(no_profile).ok());
  ProvisionOptions bad_param = all;
  bad_param.parameters = {"hostname"};
  CHECK_THAT(std::string(BuildProvisioningRequest(bad_param).status().message()),
             Catch::Matchers::Contains("--param"));
  ProvisionOptions twice = all;
  twice.parameters = {"a=1", "a=2"};
  CHECK_FALSE(BuildProvisioningRequest(twice).ok());
}

}  // namespace pi::controlplane::pictl
