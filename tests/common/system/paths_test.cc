#include "common/system/paths.h"

#include <catch2/catch.hpp>

namespace pi::common {
namespace {

TEST_CASE("paths with a .. component are recognised", "[paths]") {
  for (const char* path : {"..", "../x", "/a/../b", "/a/..", "a/b/../../c"}) {
    INFO(path);
    CHECK(HasDotDotComponent(path));
  }
}

TEST_CASE("dots inside names are not .. components", "[paths]") {
  for (const char* path : {"/a/b", "/a/..b", "/a/b..", "/a/.../b", "./x", "/", ""}) {
    INFO(path);
    CHECK_FALSE(HasDotDotComponent(path));
  }
}

}  // namespace
}  // namespace pi::common
