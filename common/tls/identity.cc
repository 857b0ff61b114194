#include "common/tls/identity.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace pi::common {
namespace {

bool IsIdentityName(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) return false;
  }
  return true;
}

}  // namespace

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kController:
      return "controller";
    case Role::kAdmin:
      return "admin";
    case Role::kNode:
      return "node";
    case Role::kRunner:
      return "runner";
  }
  return "unknown";
}

std::string Identity::ToString() const {
  if (role == Role::kController) return "controller";
  return fmt::format("{}:{}", RoleName(role), name);
}

absl::StatusOr<Identity> ParseIdentity(std::string_view common_name) {
  if (common_name == "controller") return Identity{Role::kController, ""};
  const size_t colon = common_name.find(':');
  if (colon != std::string_view::npos) {
    const std::string_view prefix = common_name.substr(0, colon);
    const std::string_view name = common_name.substr(colon + 1);
    for (Role role : {Role::kAdmin, Role::kNode, Role::kRunner}) {
      if (prefix == RoleName(role) && IsIdentityName(name)) {
        return Identity{role, std::string(name)};
      }
    }
  }
  return absl::UnauthenticatedError(
      fmt::format("certificate common name \"{}\" is not an identity (expected controller, "
                  "admin:<name>, node:<id> or runner:<name>)",
                  common_name));
}

absl::Status RequireRole(const Identity& identity, std::initializer_list<Role> roles,
                         std::string_view operation) {
  for (Role role : roles) {
    if (identity.role == role) return absl::OkStatus();
  }
  std::vector<std::string_view> names;
  for (Role role : roles) names.push_back(RoleName(role));
  return absl::PermissionDeniedError(fmt::format("{} may not call {} (allowed roles: {})",
                                                 identity.ToString(), operation,
                                                 fmt::join(names, ", ")));
}

}  // namespace pi::common
