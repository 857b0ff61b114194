#include "common/system/host_port.h"

#include <catch2/catch.hpp>

namespace pi::common {
namespace {

TEST_CASE("addresses split in all three forms", "[host_port]") {
  CHECK(SplitHostPort("pi-01.lan:9091")->host == "pi-01.lan");
  CHECK(SplitHostPort("pi-01.lan:9091")->port == 9091);
  CHECK(SplitHostPort(":9101")->host.empty());
  CHECK(SplitHostPort("[::1]:80")->host == "::1");
  CHECK(SplitHostPort("127.0.0.1:0")->port == 0);
}

TEST_CASE("listen addresses default to every IPv4 interface", "[host_port]") {
  CHECK(ParseListenAddress(":9101")->host == "0.0.0.0");
  CHECK(ParseListenAddress("127.0.0.1:9101")->host == "127.0.0.1");
}

TEST_CASE("malformed addresses are refused naming the address", "[host_port]") {
  for (const char* bad :
       {"9101", "host:", "host:99999", "host:12ab", "[::1]80", "[::1", "::1:80", "host:-1", ""}) {
    INFO(bad);
    const auto status = SplitHostPort(bad).status();
    CHECK(status.code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(status.message()), Catch::Contains(std::string("\"") + bad + "\""));
  }
}

TEST_CASE("joining brackets IPv6 hosts", "[host_port]") {
  CHECK(JoinHostPort({"::1", 9091}) == "[::1]:9091");
  CHECK(JoinHostPort({"10.0.0.5", 9091}) == "10.0.0.5:9091");
  CHECK(JoinHostPort(*SplitHostPort("[fe80::1]:1")) == "[fe80::1]:1");
}

}  // namespace
}  // namespace pi::common
