#include "control-plane/release/release_types.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

namespace pi::controlplane::release {
namespace {

ReleaseFile File(std::string name, std::string content = "text") {
  return ReleaseFile{.name = std::move(name), .content = std::move(content)};
}

TEST_CASE("Release states name themselves as the wire enum does and know when they are final") {
  CHECK(StateName(ReleaseState::kQueued) == "QUEUED");
  CHECK(StateName(ReleaseState::kAssigned) == "ASSIGNED");
  CHECK(StateName(ReleaseState::kRunning) == "RUNNING");
  CHECK(StateName(ReleaseState::kSucceeded) == "SUCCEEDED");
  CHECK(StateName(ReleaseState::kFailed) == "FAILED");
  CHECK(StateName(ReleaseState::kCancelled) == "CANCELLED");
  CHECK(StateName(ReleaseState::kTimedOut) == "TIMED_OUT");
  CHECK(StateName(static_cast<ReleaseState>(42)) == "UNKNOWN");

  CHECK_FALSE(IsFinal(ReleaseState::kQueued));
  CHECK_FALSE(IsFinal(ReleaseState::kAssigned));
  CHECK_FALSE(IsFinal(ReleaseState::kRunning));
  CHECK(IsFinal(ReleaseState::kSucceeded));
  CHECK(IsFinal(ReleaseState::kFailed));
  CHECK(IsFinal(ReleaseState::kCancelled));
  CHECK(IsFinal(ReleaseState::kTimedOut));
}

TEST_CASE("Destination types print as organisation/name@version") {
  CHECK(DestinationTypeText({.organisation = "acme", .name = "k8s", .version = 12}) ==
        "acme/k8s@12");
  CHECK(DestinationTypeText(ProvisionDestinationType()) == "picontroller/provision@1");
  CHECK(ProvisionDestinationType() ==
        DestinationType{.organisation = "picontroller", .name = "provision", .version = 1});
}

TEST_CASE("Safe relative file names of valid UTF-8 text are accepted") {
  CHECK(ValidateFiles({}, {}).ok());
  CHECK(ValidateFiles({File("dir/sub/file.txt"), File("profile.json"), File(".hidden"),
                       File("a..b/c...d"), File("ünïcode/名前.yaml", "héllo ✓")},
                      {File("main.tf", "")})
            .ok());
  // A name may appear once in each kind.
  CHECK(ValidateFiles({File("same.txt")}, {File("same.txt")}).ok());
  CHECK(ValidateFiles({File(std::string(kMaxFileNameBytes, 'n'))}, {}).ok());
}

TEST_CASE("Every unsafe file name is refused, naming the file") {
  const std::vector<std::string> bad = {
      "",
      "/abs",
      "/",
      "a/../b",
      "..",
      "../up",
      "a/..",
      ".",
      "./a",
      "a/.",
      "a//b",
      "a/",
      "a\\b",
      std::string("a\0b", 3),
      "tab\there",
      "new\nline",
      "del\x7f",
      std::string(kMaxFileNameBytes + 1, 'n'),
      "bad\xff utf8",
  };
  for (const std::string& name : bad) {
    CAPTURE(name);
    absl::Status artifact = ValidateFiles({File("ok.txt"), File(name)}, {});
    CHECK(artifact.code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(artifact.message()), Catch::Contains("artifact"));
    absl::Status spec = ValidateFiles({}, {File(name)});
    CHECK(spec.code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(spec.message()), Catch::Contains("spec"));
  }
}

TEST_CASE("A control character in a file name is not echoed back raw") {
  absl::Status status = ValidateFiles({File("evil\x1b[2Jname")}, {});
  REQUIRE(status.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(status.message()), Catch::Contains("evil\\x1b[2Jname"));
  CHECK_THAT(std::string(status.message()), Catch::Contains("control character"));
}

TEST_CASE("A name given twice within one kind is refused") {
  absl::Status artifacts = ValidateFiles({File("a/b.txt"), File("c"), File("a/b.txt")}, {});
  CHECK(artifacts.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(artifacts.message()), Catch::Contains("a/b.txt"));
  CHECK(ValidateFiles({}, {File("x"), File("x")}).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("File content that is not UTF-8 is refused") {
  for (const std::string& content : {std::string("\xff"), std::string("ok then \xc3"),
                                     std::string("\xed\xa0\x80"), std::string("\xc0\xaf")}) {
    CAPTURE(content);
    absl::Status status = ValidateFiles({File("bin.dat", content)}, {});
    CHECK(status.code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(status.message()), Catch::Contains("bin.dat"));
    CHECK(ValidateFiles({}, {File("bin.dat", content)}).code() ==
          absl::StatusCode::kInvalidArgument);
  }
}

TEST_CASE("The file count, file size and total size limits hold across both kinds") {
  std::vector<ReleaseFile> artifacts;
  std::vector<ReleaseFile> specs;
  for (size_t i = 0; i < kMaxReleaseFiles / 2; ++i) {
    artifacts.push_back(File("a" + std::to_string(i)));
    specs.push_back(File("s" + std::to_string(i)));
  }
  CHECK(ValidateFiles(artifacts, specs).ok());
  specs.push_back(File("one-too-many"));
  CHECK(ValidateFiles(artifacts, specs).code() == absl::StatusCode::kInvalidArgument);

  CHECK(ValidateFiles({File("big", std::string(kMaxReleaseFileBytes, 'x'))}, {}).ok());
  absl::Status too_big =
      ValidateFiles({}, {File("big", std::string(kMaxReleaseFileBytes + 1, 'x'))});
  CHECK(too_big.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(too_big.message()), Catch::Contains("big"));

  // Each file is within its limit; together they are one byte over.
  static_assert(kMaxReleaseTotalBytes % kMaxReleaseFileBytes == 0);
  const std::string full(kMaxReleaseFileBytes, 'x');
  std::vector<ReleaseFile> at_limit;
  for (size_t i = 0; i < kMaxReleaseTotalBytes / kMaxReleaseFileBytes; ++i) {
    at_limit.push_back(File("full" + std::to_string(i), full));
  }
  CHECK(ValidateFiles(at_limit, {File("empty", "")}).ok());
  absl::Status total = ValidateFiles(at_limit, {File("one-byte", "x")});
  CHECK(total.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(total.message()), Catch::Contains("together"));
}

}  // namespace
}  // namespace pi::controlplane::release
