#pragma once

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "node-agent/gpio/gpio_backend.h"

namespace pi::agent::gpio {

// The controllers wired to the Raspberry Pi 40-pin header: Pi 1-3, Pi 4, Pi 5.
inline constexpr std::string_view kRaspberryPiHeaderLabels[] = {"pinctrl-bcm2835",
                                                                "pinctrl-bcm2711", "pinctrl-rp1"};

bool IsRaspberryPiHeaderChip(const ChipInfo& chip);

// Finds the chip a selector names: exact label first, then name ("gpiochip0"), then path
// ("/dev/gpiochip0"). Labels win because chip numbers change between Pi models and kernels (the
// Pi 5 header moved from gpiochip4 to gpiochip0) while labels do not. NOT_FOUND lists the chips
// that do exist.
absl::StatusOr<ChipInfo> SelectChip(const std::vector<ChipInfo>& chips, std::string_view selector);

// The chip used when a request names none: `configured` (gpio.chip) when set, else the one
// Raspberry Pi header chip present.
absl::StatusOr<ChipInfo> SelectDefaultChip(const std::vector<ChipInfo>& chips,
                                           std::string_view configured);

}  // namespace pi::agent::gpio
