#include "node-agent/gpio/gpio_policy.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <optional>

#include "node-agent/gpio/chip_selector.h"

namespace pi::agent::gpio {
namespace {

std::string DescribeEntry(const GpioLineRule& entry) {
  if (entry.chip.empty()) return fmt::format("gpio.allowed_lines entry '{}'", entry.line);
  return fmt::format("gpio.allowed_lines entry '{}' (chip '{}')", entry.line, entry.chip);
}

std::optional<unsigned int> ParseOffset(std::string_view text) {
  unsigned int value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc() || ptr != end) return std::nullopt;
  return value;
}

// Why a Raspberry Pi header pin must be listed on its own, or nullptr for an ordinary pin.
const char* ReservedPinRole(unsigned int offset) {
  switch (offset) {
    case 0:
    case 1:
      return "an I2C pin of the HAT ID EEPROM";
    case 2:
    case 3:
      return "an I2C pin";
    case 14:
    case 15:
      return "a UART pin";
    default:
      return nullptr;
  }
}

}  // namespace

absl::StatusOr<GpioPolicy::Rule> GpioPolicy::ParseRule(const GpioLineRule& entry) {
  const std::string_view text = entry.line;
  const std::string where = DescribeEntry(entry);
  Rule rule;
  rule.chip = entry.chip;

  if (entry.mode == "input") {
    rule.mode = Mode::kInput;
  } else if (entry.mode == "output") {
    rule.mode = Mode::kOutput;
  } else if (entry.mode == "any") {
    rule.mode = Mode::kAny;
  } else {
    return absl::InvalidArgumentError(
        fmt::format("{}: unknown mode '{}'; use input, output or any", where, entry.mode));
  }

  if (text.empty()) {
    return absl::InvalidArgumentError(fmt::format(
        "{}: the line is empty; give an offset (17), a line name (GPIO17) or a range (4-27)",
        where));
  }
  if (std::any_of(text.begin(), text.end(),
                  [](unsigned char c) { return std::isspace(c) || std::iscntrl(c); })) {
    return absl::InvalidArgumentError(
        fmt::format("{}: the line contains whitespace or control characters", where));
  }

  // Anything that starts like a number is an offset or a range, so "4-2x" is reported as a bad
  // range rather than silently treated as a line name that matches nothing.
  if (!std::isdigit(static_cast<unsigned char>(text.front())) && text.front() != '-') {
    rule.kind = Kind::kName;
    rule.name = std::string(text);
    return rule;
  }
  const size_t dash = text.find('-');
  if (dash == std::string_view::npos) {
    std::optional<unsigned int> offset = ParseOffset(text);
    if (!offset) {
      return absl::InvalidArgumentError(fmt::format(
          "{}: '{}' is not a line offset; give a number such as 17, or a line name", where, text));
    }
    rule.kind = Kind::kOffset;
    rule.first = rule.last = *offset;
    return rule;
  }
  std::optional<unsigned int> first = ParseOffset(text.substr(0, dash));
  std::optional<unsigned int> last = ParseOffset(text.substr(dash + 1));
  if (!first || !last) {
    return absl::InvalidArgumentError(
        fmt::format("{}: '{}' is not a range; write two offsets like 4-27", where, text));
  }
  if (*first > *last) {
    return absl::InvalidArgumentError(
        fmt::format("{}: range '{}' runs backwards; write {}-{}", where, text, *last, *first));
  }
  rule.kind = Kind::kRange;
  rule.first = *first;
  rule.last = *last;
  return rule;
}

absl::StatusOr<GpioPolicy> GpioPolicy::Create(const GpioConfig& config) {
  std::vector<Rule> rules;
  auto effective_chip = [&](const Rule& rule) -> const std::string& {
    return rule.chip.empty() ? config.chip : rule.chip;
  };
  for (size_t i = 0; i < config.allowed_lines.size(); ++i) {
    const GpioLineRule& entry = config.allowed_lines[i];
    absl::StatusOr<Rule> rule = ParseRule(entry);
    if (!rule.ok()) return rule.status();
    for (size_t j = 0; j < rules.size(); ++j) {
      const Rule& earlier = rules[j];
      if (effective_chip(earlier) != effective_chip(*rule) || earlier.kind != rule->kind) continue;
      const GpioLineRule& earlier_entry = config.allowed_lines[j];
      const bool same = rule->kind == Kind::kName
                            ? earlier.name == rule->name
                            : earlier.first == rule->first && earlier.last == rule->last;
      if (same) {
        return absl::InvalidArgumentError(
            fmt::format("{} repeats an earlier entry; keep one of them", DescribeEntry(entry)));
      }
      if (rule->kind == Kind::kRange && rule->first <= earlier.last &&
          earlier.first <= rule->last) {
        return absl::InvalidArgumentError(
            fmt::format("{} overlaps {}; ranges on one chip must not overlap", DescribeEntry(entry),
                        DescribeEntry(earlier_entry)));
      }
    }
    rules.push_back(*std::move(rule));
  }
  return GpioPolicy(config.chip, std::move(rules));
}

absl::Status GpioPolicy::Check(const std::vector<ChipInfo>& chips, const ChipInfo& chip,
                               unsigned int offset, std::string_view line_name,
                               Direction direction) const {
  absl::StatusOr<ChipInfo> default_chip = SelectDefaultChip(chips, default_chip_);
  const bool on_default_chip = default_chip.ok() && default_chip->name == chip.name;
  auto rule_chip_matches = [&](const Rule& rule) {
    if (rule.chip.empty()) return on_default_chip;
    absl::StatusOr<ChipInfo> selected = SelectChip(chips, rule.chip);
    return selected.ok() && selected->name == chip.name;
  };

  const Rule* single = nullptr;
  const Rule* range = nullptr;
  for (const Rule& rule : rules_) {
    if (!rule_chip_matches(rule)) continue;
    const bool matches_single =
        (rule.kind == Kind::kOffset && rule.first == offset) ||
        (rule.kind == Kind::kName && !line_name.empty() && rule.name == line_name);
    if (matches_single && single == nullptr) single = &rule;
    if (rule.kind == Kind::kRange && rule.first <= offset && offset <= rule.last &&
        range == nullptr) {
      range = &rule;
    }
  }

  std::string line = DescribeLine(offset, line_name);
  if (!on_default_chip) line += fmt::format(" on {}", DescribeChip(chip));
  if (single == nullptr && range == nullptr) {
    return absl::PermissionDeniedError(fmt::format("{} is not in gpio.allowed_lines", line));
  }
  if (single == nullptr && IsRaspberryPiHeaderChip(chip)) {
    if (const char* role = ReservedPinRole(offset)) {
      return absl::PermissionDeniedError(
          fmt::format("{} is {}; list it on its own in gpio.allowed_lines to use it", line, role));
    }
  }
  const Mode mode = single != nullptr ? single->mode : range->mode;
  if (mode == Mode::kInput && direction == Direction::kOutput) {
    return absl::PermissionDeniedError(fmt::format(
        "{} is allowed for input only; set its mode to output or any in gpio.allowed_lines to "
        "drive it",
        line));
  }
  if (mode == Mode::kOutput && direction == Direction::kInput) {
    return absl::PermissionDeniedError(fmt::format(
        "{} is allowed for output only; reading it would request it as an input, so WRITE or "
        "CONFIGURE it as an output first (then READ returns the driven value) or set its mode to "
        "input or any in gpio.allowed_lines",
        line));
  }
  return absl::OkStatus();
}

}  // namespace pi::agent::gpio
