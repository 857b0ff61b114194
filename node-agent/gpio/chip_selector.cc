#include "node-agent/gpio/chip_selector.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <iterator>
#include <string>

namespace pi::agent::gpio {
namespace {

std::string DescribeFound(const std::vector<ChipInfo>& chips) {
  if (chips.empty()) {
    return "found none (is /dev/gpiochip* present and readable by this user?)";
  }
  std::vector<std::string> described;
  described.reserve(chips.size());
  for (const ChipInfo& chip : chips) described.push_back(DescribeChip(chip));
  return fmt::format("found {}", fmt::join(described, ", "));
}

const ChipInfo* FindBy(const std::vector<ChipInfo>& chips, std::string_view value,
                       std::string ChipInfo::*field) {
  auto it = std::find_if(chips.begin(), chips.end(),
                         [&](const ChipInfo& chip) { return chip.*field == value; });
  return it == chips.end() ? nullptr : &*it;
}

}  // namespace

bool IsRaspberryPiHeaderChip(const ChipInfo& chip) {
  return std::find(std::begin(kRaspberryPiHeaderLabels), std::end(kRaspberryPiHeaderLabels),
                   chip.label) != std::end(kRaspberryPiHeaderLabels);
}

absl::StatusOr<ChipInfo> SelectChip(const std::vector<ChipInfo>& chips, std::string_view selector) {
  for (std::string ChipInfo::*field : {&ChipInfo::label, &ChipInfo::name, &ChipInfo::path}) {
    if (const ChipInfo* chip = FindBy(chips, selector, field)) return *chip;
  }
  return absl::NotFoundError(
      fmt::format("no GPIO chip matches '{}'; {}", selector, DescribeFound(chips)));
}

absl::StatusOr<ChipInfo> SelectDefaultChip(const std::vector<ChipInfo>& chips,
                                           std::string_view configured) {
  if (!configured.empty()) return SelectChip(chips, configured);
  std::vector<ChipInfo> header;
  std::copy_if(chips.begin(), chips.end(), std::back_inserter(header), IsRaspberryPiHeaderChip);
  if (header.size() == 1) return header.front();
  if (header.empty()) {
    return absl::NotFoundError(fmt::format(
        "no Raspberry Pi header GPIO chip (label {}) is present; {}; set gpio.chip or name a "
        "chip in the request",
        fmt::join(kRaspberryPiHeaderLabels, ", "), DescribeFound(chips)));
  }
  return absl::FailedPreconditionError(
      fmt::format("more than one Raspberry Pi header GPIO chip is present ({}); set gpio.chip or "
                  "name a chip in the request",
                  DescribeFound(header)));
}

}  // namespace pi::agent::gpio
