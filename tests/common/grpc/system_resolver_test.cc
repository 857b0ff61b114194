#include "common/grpc/system_resolver.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>

namespace pi::common {
namespace {

TEST_CASE("gRPC is pointed at the system resolver unless the operator chose one", "[resolver]") {
  const char* before = std::getenv("GRPC_DNS_RESOLVER");
  const std::string saved = before == nullptr ? "" : before;

  unsetenv("GRPC_DNS_RESOLVER");
  UseSystemResolver();
  REQUIRE(std::getenv("GRPC_DNS_RESOLVER") != nullptr);
  CHECK(std::string(std::getenv("GRPC_DNS_RESOLVER")) == "native");

  setenv("GRPC_DNS_RESOLVER", "ares", 1);
  UseSystemResolver();
  CHECK(std::string(std::getenv("GRPC_DNS_RESOLVER")) == "ares");

  if (before == nullptr) {
    unsetenv("GRPC_DNS_RESOLVER");
  } else {
    setenv("GRPC_DNS_RESOLVER", saved.c_str(), 1);
  }
}

}  // namespace
}  // namespace pi::common
