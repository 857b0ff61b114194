#pragma once

#include <grpcpp/security/auth_context.h>

#include "absl/status/statusor.h"
#include "common/tls/identity.h"

namespace pi::common {

// The caller's identity from the verified TLS peer. UNAUTHENTICATED when the connection carries
// no certificate, or when certificates are not verified (`peer_verified` false: client_auth
// "require" or "none"), or when the common name is not an identity.
absl::StatusOr<Identity> IdentityFromAuthContext(const grpc::AuthContext& context,
                                                 bool peer_verified);

}  // namespace pi::common
