#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node-agent/gpio/gpio_backend.h"
#include "node-agent/gpio/gpio_config.h"

namespace pi::agent::gpio {

// Which lines the agent may request, and in which direction, from gpio.allowed_lines.
class GpioPolicy {
 public:
  // INVALID_ARGUMENT naming the entry for a malformed line or range, an unknown mode, a repeated
  // entry or overlapping ranges on one chip.
  static absl::StatusOr<GpioPolicy> Create(const GpioConfig& config);

  // OK when the agent may request `offset` (named `line_name`) of `chip` with `direction`, else
  // PERMISSION_DENIED saying what to change in the config. `chips` is the system's chip list: the
  // entries' chip selectors are resolved against it exactly as requests are. An entry for the
  // single line (offset or name) wins over a range.
  absl::Status Check(const std::vector<ChipInfo>& chips, const ChipInfo& chip, unsigned int offset,
                     std::string_view line_name, Direction direction) const;

 private:
  enum class Kind { kOffset, kName, kRange };
  enum class Mode { kInput, kOutput, kAny };
  struct Rule {
    std::string chip;  // Empty: the default chip.
    Kind kind = Kind::kOffset;
    unsigned int first = 0;
    unsigned int last = 0;
    std::string name;
    Mode mode = Mode::kAny;
  };

  GpioPolicy(std::string default_chip, std::vector<Rule> rules)
      : default_chip_(std::move(default_chip)), rules_(std::move(rules)) {}

  static absl::StatusOr<Rule> ParseRule(const GpioLineRule& entry);

  std::string default_chip_;
  std::vector<Rule> rules_;
};

}  // namespace pi::agent::gpio
