#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"

namespace pi::common {

// `bytes` bytes from the kernel's CSPRNG as lowercase hex (2 × bytes characters). For ids and
// secrets that must not be guessable: lease ids, release ids, release tokens.
absl::StatusOr<std::string> RandomHex(size_t bytes);

}  // namespace pi::common
