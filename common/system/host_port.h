#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace pi::common {

struct HostPort {
  std::string host;
  uint16_t port = 0;
};

// Splits "host:port", "[v6addr]:port" or ":port" (empty host). INVALID_ARGUMENT naming the
// address when it has another shape or the port is not 0–65535.
absl::StatusOr<HostPort> SplitHostPort(std::string_view address);

// For listeners: as SplitHostPort, with an empty host meaning every IPv4 interface ("0.0.0.0").
// Port 0 lets the kernel pick one.
absl::StatusOr<HostPort> ParseListenAddress(std::string_view address);

// "host:port" with an IPv6 host in brackets, as gRPC and dialers take it.
std::string JoinHostPort(const HostPort& address);

}  // namespace pi::common
