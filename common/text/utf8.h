#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace pi::common {

// Length of the well-formed UTF-8 sequence starting at text[at] (1 to 4), or 0 when the bytes
// there are not one: a stray continuation byte, a sequence cut short, an overlong form, a UTF-16
// surrogate or a code point past U+10FFFF. Protobuf strings and JSON must be valid UTF-8.
size_t Utf8SequenceLength(std::string_view text, size_t at);

bool IsValidUtf8(std::string_view text);

// `text` with every byte that does not start a well-formed sequence replaced by U+FFFD.
std::string ToValidUtf8(std::string_view text);

// The longest prefix of valid UTF-8 `text` of at most `max_bytes` that does not split a sequence.
std::string_view Utf8Prefix(std::string_view text, size_t max_bytes);

}  // namespace pi::common
