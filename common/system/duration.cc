#include "common/system/duration.h"

#include <fmt/format.h>

namespace pi::common {
namespace {

struct Unit {
  std::string_view suffix;
  int64_t nanos;
};

// Longer suffixes first so "ms" is not read as "m".
constexpr Unit kUnits[] = {{"ns", 1},
                           {"us", 1'000},
                           {"ms", 1'000'000},
                           {"s", 1'000'000'000},
                           {"m", 60'000'000'000},
                           {"h", 3'600'000'000'000}};

}  // namespace

absl::StatusOr<std::chrono::nanoseconds> ParseDuration(std::string_view text) {
  const std::string quoted = fmt::format("\"{}\"", text);
  if (text == "0") return std::chrono::nanoseconds(0);
  if (text.empty()) return absl::InvalidArgumentError("empty duration");
  const auto too_large = [&] {
    return absl::InvalidArgumentError(fmt::format("duration {} is too large", quoted));
  };
  // Integer arithmetic with overflow checks throughout: durations come from clients too.
  int64_t total = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    int64_t whole = 0;
    int64_t fraction = 0;
    int64_t fraction_scale = 1;
    bool digits = false;
    bool overflow = false;
    for (; pos < text.size() && text[pos] >= '0' && text[pos] <= '9'; ++pos) {
      digits = true;
      overflow |= __builtin_mul_overflow(whole, 10, &whole) ||
                  __builtin_add_overflow(whole, text[pos] - '0', &whole);
    }
    if (pos < text.size() && text[pos] == '.') {
      for (++pos; pos < text.size() && text[pos] >= '0' && text[pos] <= '9'; ++pos) {
        digits = true;
        // Digits past nanosecond precision of the largest unit cannot change the result.
        if (fraction_scale < 1'000'000'000'000'000) {
          fraction = fraction * 10 + (text[pos] - '0');
          fraction_scale *= 10;
        }
      }
    }
    if (!digits) {
      return absl::InvalidArgumentError(fmt::format(
          "invalid duration {}: expected a number such as \"30s\" or \"1h30m\"", quoted));
    }
    const Unit* unit = nullptr;
    for (const auto& candidate : kUnits) {
      if (text.substr(pos, candidate.suffix.size()) == candidate.suffix) {
        unit = &candidate;
        break;
      }
    }
    if (unit == nullptr) {
      return absl::InvalidArgumentError(fmt::format(
          "invalid duration {}: missing or unknown unit (ns, us, ms, s, m or h)", quoted));
    }
    pos += unit->suffix.size();
    int64_t nanos = 0;
    if (overflow || __builtin_mul_overflow(whole, unit->nanos, &nanos) ||
        __builtin_add_overflow(
            nanos,
            static_cast<int64_t>(static_cast<__int128>(fraction) * unit->nanos / fraction_scale),
            &nanos) ||
        __builtin_add_overflow(total, nanos, &total)) {
      return too_large();
    }
  }
  return std::chrono::nanoseconds(total);
}

std::string FormatDuration(std::chrono::nanoseconds duration) {
  int64_t nanos = duration.count();
  if (nanos == 0) return "0s";
  std::string out = nanos < 0 ? "-" : "";
  if (nanos < 0) nanos = -nanos;
  if (nanos % 1'000'000'000 != 0) {
    for (auto unit : {kUnits[2], kUnits[1], kUnits[0]}) {
      if (nanos % unit.nanos == 0)
        return fmt::format("{}{}{}", out, nanos / unit.nanos, unit.suffix);
    }
  }
  int64_t seconds = nanos / 1'000'000'000;
  if (seconds >= 3600) out += fmt::format("{}h", seconds / 3600);
  seconds %= 3600;
  if (seconds >= 60) out += fmt::format("{}m", seconds / 60);
  seconds %= 60;
  if (seconds > 0) out += fmt::format("{}s", seconds);
  return out;
}

}  // namespace pi::common
