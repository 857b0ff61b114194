#include "common/config/secret.h"

#include <catch2/catch.hpp>
#include <cstdlib>

#include "tests/common/test_dir.h"

namespace pi::common {
namespace {

TEST_CASE("env: references read the environment variable", "[secret]") {
  setenv("PI_TEST_SECRET", "s3cret", 1);
  auto value = ResolveSecret("env:PI_TEST_SECRET");
  REQUIRE(value.ok());
  CHECK(*value == "s3cret");
  unsetenv("PI_TEST_SECRET");
  CHECK(ResolveSecret("env:PI_TEST_SECRET").status().code() == absl::StatusCode::kNotFound);
}

TEST_CASE("env: references with an invalid variable name are refused", "[secret]") {
  CHECK(ResolveSecret("env:").status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(ResolveSecret("env:1ABC").status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(ResolveSecret("env:A-B").status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("file: references read the file without its trailing newline", "[secret]") {
  pi::testing::TempDir dir;
  const auto path = dir.Write("token", "abc123\n");
  auto value = ResolveSecret("file:" + path);
  REQUIRE(value.ok());
  CHECK(*value == "abc123");
}

TEST_CASE("file: references must be absolute, readable and non-empty", "[secret]") {
  pi::testing::TempDir dir;
  CHECK(ResolveSecret("file:relative/token").status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(ResolveSecret("file:" + (dir.path() / "missing").string()).status().code() ==
        absl::StatusCode::kNotFound);
  const auto empty = dir.Write("empty", "\n");
  CHECK(ResolveSecret("file:" + empty).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("inline secrets are refused without echoing them", "[secret]") {
  const auto status = ResolveSecret("hunter2").status();
  CHECK(status.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(status.message()), !Catch::Contains("hunter2"));
}

}  // namespace
}  // namespace pi::common
