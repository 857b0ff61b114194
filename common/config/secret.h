#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace pi::common {

// Resolves a secret reference wherever configuration accepts a secret:
//   "env:NAME"   the value of environment variable NAME (must be set and non-empty)
//   "file:/path" the contents of an absolute file path, without one trailing newline
// Anything else is refused, so a secret never sits in a config file by accident.
// Error messages name the reference, never the secret.
absl::StatusOr<std::string> ResolveSecret(std::string_view reference);

}  // namespace pi::common
