#pragma once

#include <string_view>

namespace pi::common {

// Only 0-9 and a-f. Digests and tokens are kept in lower case so they compare as plain strings.
bool IsLowerHex(std::string_view text);
// 64 lowercase hex characters: a SHA-256 digest as the stores keep it.
bool IsSha256Hex(std::string_view text);

}  // namespace pi::common
