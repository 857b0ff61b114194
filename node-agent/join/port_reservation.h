#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/system/host_port.h"

namespace pi::agent::join {

// A TCP port the kernel picked, held so that an agent configured with `listen` port 0 (tests) can
// name its NodeAgent port to the controller before the gRPC listener exists: the listener needs
// the certificate the join brings. The socket is bound with SO_REUSEPORT and never listens, so
// gRPC (whose listeners set SO_REUSEPORT too) can bind the same port while no other program can
// take it in between. Release it once the listener is up.
class PortReservation {
 public:
  // INVALID_ARGUMENT when the host does not resolve, UNAVAILABLE when no port can be bound.
  static absl::StatusOr<PortReservation> Reserve(const common::HostPort& listen);

  PortReservation(PortReservation&& other) noexcept;
  PortReservation& operator=(PortReservation&&) = delete;
  PortReservation(const PortReservation&) = delete;
  ~PortReservation();

  uint16_t port() const { return port_; }

 private:
  PortReservation(int fd, uint16_t port) : fd_(fd), port_(port) {}

  int fd_;
  uint16_t port_;
};

}  // namespace pi::agent::join
