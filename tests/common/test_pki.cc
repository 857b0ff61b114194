#include "tests/common/test_pki.h"

#include <catch2/catch.hpp>
#include <cstdlib>

namespace pi::testing {
namespace {

void RunPkiScript(const std::string& args) {
  const std::string command =
      std::string(PI_SOURCE_DIR) + "/deploy/pki.sh " + args + " 2>/dev/null";
  INFO(command);
  REQUIRE(std::system(command.c_str()) == 0);
}

}  // namespace

TestPki::TestPki() { RunPkiScript("init " + dir_.path().string()); }

std::string TestPki::Issue(const std::string& name, const std::string& identity,
                           const std::string& options) const {
  RunPkiScript("issue " + dir_.path().string() + " " + name + " " + identity + " " + options);
  return File(name + ".crt");
}

}  // namespace pi::testing
