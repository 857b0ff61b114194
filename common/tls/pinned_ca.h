#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace pi::common {

// First contact with a control plane whose CA is not trusted yet: connects to `address`
// ("host:port") over TLS, finds the certificate in the server's chain whose SHA-256 (of the DER,
// lowercase hex) equals `pin`, and checks that the server's own certificate verifies against it
// for that host. Returns the CA certificate as PEM.
//
// A joining agent calls this before it sends its join secret: a man in the middle cannot present
// a chain that verifies against the pinned CA, so the secret never reaches it (as in k3s).
// UNAVAILABLE when the server cannot be reached or the handshake fails; PERMISSION_DENIED when
// no certificate in the chain matches the pin or the server certificate does not verify against
// it (or not for this host); INVALID_ARGUMENT for a malformed address or pin.
absl::StatusOr<std::string> FetchPinnedCa(std::string_view address, std::string_view pin,
                                          std::chrono::milliseconds timeout);

}  // namespace pi::common
