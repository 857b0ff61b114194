#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace pi::agent::gpio {

// One gpio.allowed_lines entry.
struct GpioLineRule {
  // Chip selector (label, name or path); empty means GpioConfig::chip.
  std::string chip{};
  // An offset ("17"), a line name ("GPIO17") or an inclusive offset range ("4-27"). A range never
  // grants the UART (14, 15) or I2C (0-3) pins of a Raspberry Pi header chip; those must be
  // listed on their own.
  std::string line{};
  // "input", "output" or "any".
  std::string mode = "any";
};

// The "gpio" section of agent.json.
struct GpioConfig {
  // Chip used when a request names none; empty picks the Raspberry Pi header chip
  // (pinctrl-bcm2835, pinctrl-bcm2711 or pinctrl-rp1), so one config fits Pi 3, 4 and 5.
  std::string chip{};
  // Lines the agent may touch; empty allows none.
  std::vector<GpioLineRule> allowed_lines{};
  // Upper bound on how long a WRITE or CONFIGURE keeps a line; zero means no bound, so a line is
  // held until RELEASE.
  std::chrono::milliseconds max_hold{0};
  // Shown as the line's consumer by gpioinfo.
  std::string consumer = "pi-agent";
};

}  // namespace pi::agent::gpio
