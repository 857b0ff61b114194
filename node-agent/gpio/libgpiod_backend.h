#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "node-agent/gpio/gpio_backend.h"

namespace pi::agent::gpio {

// The GPIO character devices (/dev/gpiochip*) through libgpiod's v1 C++ API. Every libgpiod
// exception is turned into a Status here. Each request opens its own chip file descriptor, so
// handles are independent of each other and of this object.
class LibgpiodBackend : public GpioBackend {
 public:
  absl::StatusOr<std::vector<ChipInfo>> ListChips() override;
  absl::StatusOr<unsigned int> FindLineOffset(const ChipInfo& chip,
                                              std::string_view line_name) override;
  absl::StatusOr<LineInfo> GetLineInfo(const ChipInfo& chip, unsigned int offset) override;
  absl::StatusOr<std::unique_ptr<LineHandle>> RequestLine(const ChipInfo& chip, unsigned int offset,
                                                          const LineConfig& config) override;
};

}  // namespace pi::agent::gpio
