#include "node-agent/join/port_reservation.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

namespace pi::agent::join {
namespace {

// Whether a socket without SO_REUSEPORT can bind 127.0.0.1:`port`, as another program would.
bool PlainBindSucceeds(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool bound = bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  close(fd);
  return bound;
}

TEST_CASE("a reserved port is picked by the kernel and kept from others", "[port]") {
  uint16_t port = 0;
  {
    auto reservation = PortReservation::Reserve({"127.0.0.1", 0});
    REQUIRE(reservation.ok());
    port = reservation->port();
    CHECK(port > 0);
    CHECK_FALSE(PlainBindSucceeds(port));
  }
  CHECK(PlainBindSucceeds(port));
}

TEST_CASE("a moved reservation keeps the port until the new owner ends", "[port]") {
  auto reservation = PortReservation::Reserve({"127.0.0.1", 0});
  REQUIRE(reservation.ok());
  const uint16_t port = reservation->port();
  {
    PortReservation moved(*std::move(reservation));
    CHECK(moved.port() == port);
  }
  CHECK(PlainBindSucceeds(port));
}

TEST_CASE("a listen host that does not resolve cannot reserve a port", "[port]") {
  auto reservation = PortReservation::Reserve({"no-such-host.invalid", 0});
  REQUIRE_FALSE(reservation.ok());
  CHECK(reservation.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(reservation.status().message()), Catch::Contains("no-such-host.invalid"));
}

}  // namespace
}  // namespace pi::agent::join
