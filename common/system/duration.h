#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace pi::common {

// Parses durations written as a sequence of <number><unit> with units ns, us, ms, s, m, h
// ("250ms", "1.5s", "1h30m"); "0" alone is zero. Negative values are refused.
absl::StatusOr<std::chrono::nanoseconds> ParseDuration(std::string_view text);

// The shortest exact form ParseDuration reads back: "1h30m", "250ms", "0s".
std::string FormatDuration(std::chrono::nanoseconds duration);

}  // namespace pi::common
