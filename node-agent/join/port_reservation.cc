#include "node-agent/join/port_reservation.h"

#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace pi::agent::join {

absl::StatusOr<PortReservation> PortReservation::Reserve(const common::HostPort& listen) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const int resolved = getaddrinfo(listen.host.empty() ? nullptr : listen.host.c_str(),
                                   std::to_string(listen.port).c_str(), &hints, &found);
  if (resolved != 0) {
    return absl::InvalidArgumentError(
        fmt::format("cannot resolve {}: {}", listen.host, gai_strerror(resolved)));
  }
  const int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  const bool bound = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0 &&
                     bind(fd, found->ai_addr, found->ai_addrlen) == 0;
  const int saved = errno;
  freeaddrinfo(found);
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  if (!bound || getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const int error = bound ? errno : saved;
    if (fd >= 0) close(fd);
    return absl::UnavailableError(fmt::format("cannot reserve a port on {}: {}",
                                              common::JoinHostPort(listen), std::strerror(error)));
  }
  const uint16_t port =
      ntohs(address.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&address)->sin6_port
                                          : reinterpret_cast<sockaddr_in*>(&address)->sin_port);
  return PortReservation(fd, port);
}

PortReservation::PortReservation(PortReservation&& other) noexcept
    : fd_(other.fd_), port_(other.port_) {
  other.fd_ = -1;
}

PortReservation::~PortReservation() {
  if (fd_ >= 0) close(fd_);
}

}  // namespace pi::agent::join
