#include "common/system/host_port.h"

#include <fmt/format.h>

#include <charconv>

namespace pi::common {

absl::StatusOr<HostPort> SplitHostPort(std::string_view address) {
  const auto malformed = [address] {
    return absl::InvalidArgumentError(
        fmt::format("address \"{}\" must look like host:port, :port or [v6addr]:port", address));
  };
  std::string_view host;
  std::string_view port_text;
  if (address.starts_with('[')) {
    const size_t close = address.find("]:");
    if (close == std::string_view::npos) return malformed();
    host = address.substr(1, close - 1);
    port_text = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string_view::npos) return malformed();
    host = address.substr(0, colon);
    port_text = address.substr(colon + 1);
    // More colons without brackets would be an IPv6 address with its port glued on.
    if (host.find(':') != std::string_view::npos) return malformed();
  }
  uint32_t port = 0;
  const auto [end, error] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || error != std::errc() || end != port_text.data() + port_text.size() ||
      port > 65535) {
    return absl::InvalidArgumentError(
        fmt::format("address \"{}\" has an invalid port (0-65535)", address));
  }
  return HostPort{std::string(host), static_cast<uint16_t>(port)};
}

absl::StatusOr<HostPort> ParseListenAddress(std::string_view address) {
  auto parsed = SplitHostPort(address);
  if (parsed.ok() && parsed->host.empty()) parsed->host = "0.0.0.0";
  return parsed;
}

std::string JoinHostPort(const HostPort& address) {
  return address.host.find(':') != std::string::npos
             ? fmt::format("[{}]:{}", address.host, address.port)
             : fmt::format("{}:{}", address.host, address.port);
}

}  // namespace pi::common
