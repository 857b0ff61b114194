#include "common/tls/peer_identity.h"

namespace pi::common {

absl::StatusOr<Identity> IdentityFromAuthContext(const grpc::AuthContext& context,
                                                 bool peer_verified) {
  if (!peer_verified) {
    return absl::UnauthenticatedError(
        "this listener does not verify client certificates, so no caller identity is trusted");
  }
  const auto names = context.FindPropertyValues("x509_common_name");
  if (names.empty()) {
    return absl::UnauthenticatedError("a client certificate issued by the cluster CA is required");
  }
  if (names.size() > 1) {
    return absl::UnauthenticatedError("client certificate has more than one common name");
  }
  return ParseIdentity(std::string_view(names.front().data(), names.front().size()));
}

std::string AuditName(const Identity& caller, const grpc::ServerContextBase& context) {
  if (caller.role != Role::kController) return caller.ToString();
  const auto& metadata = context.client_metadata();
  auto found =
      metadata.find(grpc::string_ref(kOnBehalfOfMetadata.data(), kOnBehalfOfMetadata.size()));
  if (found == metadata.end()) return caller.ToString();
  absl::StatusOr<Identity> forwarded =
      ParseIdentity(std::string_view(found->second.data(), found->second.size()));
  if (!forwarded.ok() || forwarded->role != Role::kAdmin) return caller.ToString();
  return caller.ToString() + " for " + forwarded->ToString();
}

}  // namespace pi::common
