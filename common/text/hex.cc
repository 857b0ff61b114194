#include "common/text/hex.h"

#include <algorithm>

namespace pi::common {

bool IsLowerHex(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool IsSha256Hex(std::string_view text) { return text.size() == 64 && IsLowerHex(text); }

}  // namespace pi::common
