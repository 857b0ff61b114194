#pragma once

#include <initializer_list>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace pi::common {

// Roles of DESIGN 5.4. A certificate's subject common name carries the identity:
// "controller", "admin:<name>", "node:<id>", "runner:<name>".
enum class Role { kController, kAdmin, kNode, kRunner };

struct Identity {
  Role role = Role::kNode;
  std::string name;  // empty for kController

  std::string ToString() const;
  bool operator==(const Identity&) const = default;
};

std::string_view RoleName(Role role);

// Parses a common name strictly; names are 1–63 characters of [A-Za-z0-9._-] starting with a
// letter or digit.
absl::StatusOr<Identity> ParseIdentity(std::string_view common_name);

// PERMISSION_DENIED unless the identity has one of `roles`; the message names who and what.
absl::Status RequireRole(const Identity& identity, std::initializer_list<Role> roles,
                         std::string_view operation);

}  // namespace pi::common
