#include "common/system/files.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "tests/common/test_dir.h"

namespace pi::common {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

TEST_CASE("an atomic write replaces the file and applies the mode", "[files]") {
  pi::testing::TempDir dir;
  const std::string path = dir.Write("ports.json", "old");
  REQUIRE(WriteFileAtomically(path, "{\"grpc\":1}", 0600).ok());
  CHECK(ReadAll(path) == "{\"grpc\":1}");
  struct stat info {};
  REQUIRE(stat(path.c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0600);
}

TEST_CASE("an atomic write into a missing directory fails and leaves nothing", "[files]") {
  pi::testing::TempDir dir;
  const auto status = WriteFileAtomically((dir.path() / "no/such/file").string(), "x", 0644);
  CHECK(status.code() == absl::StatusCode::kInternal);
  CHECK_THAT(std::string(status.message()), Catch::Contains("cannot create"));
}

TEST_CASE("a small file is read whole", "[files]") {
  pi::testing::TempDir dir;
  const std::string contents = std::string(40000, 'x') + "end";
  const auto path = dir.Write("data", contents);
  auto read = ReadFileToString(path, 1 << 20);
  REQUIRE(read.ok());
  CHECK(*read == contents);
}

TEST_CASE("reading a missing, unreadable or oversize file says which and why", "[files]") {
  pi::testing::TempDir dir;
  const auto missing = ReadFileToString((dir.path() / "absent").string(), 100).status();
  CHECK(missing.code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(missing.message()), Catch::Contains("absent"));
  CHECK(ReadFileToString(dir.path().string(), 100).status().code() ==
        absl::StatusCode::kFailedPrecondition);
  const auto big = dir.Write("big", std::string(101, 'x'));
  CHECK(ReadFileToString(big, 100).status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(ReadFileToString("/dev/zero", 1 << 16).status().code() ==
        absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pi::common
