#include "common/tls/identity.h"

#include <catch2/catch.hpp>

namespace pi::common {
namespace {

TEST_CASE("every role parses from a common name", "[identity]") {
  CHECK(*ParseIdentity("controller") == Identity{Role::kController, ""});
  CHECK(*ParseIdentity("admin:alice") == Identity{Role::kAdmin, "alice"});
  CHECK(*ParseIdentity("node:pi-01.rack_2") == Identity{Role::kNode, "pi-01.rack_2"});
  CHECK(*ParseIdentity("runner:forest") == Identity{Role::kRunner, "forest"});
  CHECK(ParseIdentity("admin:alice")->ToString() == "admin:alice");
}

TEST_CASE("common names that are not identities are unauthenticated", "[identity]") {
  for (const char* cn : {"", "root", "admin:", "admin:-x", "node:a b", "node:../x", "controller:x",
                         "Admin:alice", "node:a:b"}) {
    INFO(cn);
    CHECK(ParseIdentity(cn).status().code() == absl::StatusCode::kUnauthenticated);
  }
  CHECK(ParseIdentity("node:" + std::string(64, 'a')).status().code() ==
        absl::StatusCode::kUnauthenticated);
}

TEST_CASE("a role check names the caller and the allowed roles", "[identity]") {
  const Identity node{Role::kNode, "pi-01"};
  CHECK(RequireRole(node, {Role::kNode}, "ReportHealth").ok());
  const auto denied = RequireRole(node, {Role::kController, Role::kAdmin}, "ControlGPIO");
  CHECK(denied.code() == absl::StatusCode::kPermissionDenied);
  CHECK(std::string(denied.message()) ==
        "node:pi-01 may not call ControlGPIO (allowed roles: controller, admin)");
}

}  // namespace
}  // namespace pi::common
