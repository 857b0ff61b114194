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

}  // namespace
}  // namespace pi::common
