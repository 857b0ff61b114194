#pragma once

#include <grpcpp/security/auth_context.h>
#include <grpcpp/server_context.h>

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/tls/identity.h"

namespace pi::common {

// The caller's identity from the verified TLS peer. UNAUTHENTICATED when the connection carries
// no certificate, or when certificates are not verified (`peer_verified` false: client_auth
// "require" or "none"), or when the common name is not an identity.
absl::StatusOr<Identity> IdentityFromAuthContext(const grpc::AuthContext& context,
                                                 bool peer_verified);

// Metadata a controller adds when it forwards an admin's call to an agent: the admin's identity.
inline constexpr std::string_view kOnBehalfOfMetadata = "pi-on-behalf-of";

// Who to name in an audit line: the caller, and for a `controller` forwarding an admin's call the
// admin too ("controller for admin:alice"). The name is taken only from a controller, and only
// when it is an admin identity.
std::string AuditName(const Identity& caller, const grpc::ServerContextBase& context);

}  // namespace pi::common
