#include "node-agent/gpio/gpio_backend.h"

#include <fmt/format.h>

namespace pi::agent::gpio {

std::string_view DirectionName(Direction direction) {
  switch (direction) {
    case Direction::kInput:
      return "input";
    case Direction::kOutput:
      return "output";
  }
  return "unknown";
}

std::string_view BiasName(Bias bias) {
  switch (bias) {
    case Bias::kAsIs:
      return "as-is";
    case Bias::kDisabled:
      return "disabled";
    case Bias::kPullUp:
      return "pull-up";
    case Bias::kPullDown:
      return "pull-down";
  }
  return "unknown";
}

std::string_view DriveName(Drive drive) {
  switch (drive) {
    case Drive::kPushPull:
      return "push-pull";
    case Drive::kOpenDrain:
      return "open-drain";
    case Drive::kOpenSource:
      return "open-source";
  }
  return "unknown";
}

std::string DescribeLine(unsigned int offset, std::string_view line_name) {
  if (line_name.empty()) return fmt::format("line {}", offset);
  return fmt::format("line {} ({})", offset, line_name);
}

std::string DescribeChip(const ChipInfo& chip) {
  if (chip.label.empty()) return chip.name;
  return fmt::format("{} ({})", chip.name, chip.label);
}

absl::Status NoSuchLineError(const ChipInfo& chip, unsigned int offset) {
  if (chip.num_lines == 0) {
    return absl::NotFoundError(
        fmt::format("{} has no line {}; it has no lines at all", DescribeChip(chip), offset));
  }
  return absl::NotFoundError(fmt::format("{} has no line {}; it has {} lines (0-{})",
                                         DescribeChip(chip), offset, chip.num_lines,
                                         chip.num_lines - 1));
}

absl::Status LineBusyError(const ChipInfo& chip, unsigned int offset, std::string_view line_name,
                           std::string_view consumer) {
  const std::string holder =
      consumer.empty() ? "another consumer" : fmt::format("consumer '{}'", consumer);
  return absl::FailedPreconditionError(
      fmt::format("{} on {} is busy: held by {}; release it there first",
                  DescribeLine(offset, line_name), DescribeChip(chip), holder));
}

}  // namespace pi::agent::gpio
