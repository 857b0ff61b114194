#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node-agent/gpio/gpio_backend.h"

namespace pi::agent::gpio {

struct SimulatedChip {
  std::string name{};                     // "gpiochip0"; the path becomes "/dev/<name>".
  std::string label{};                    // "pinctrl-bcm2835"
  std::vector<std::string> line_names{};  // One per line; "" for an unnamed line.
};

// A Raspberry-Pi-like system: gpiochip0 "pinctrl-bcm2835" with 54 lines "GPIO0".."GPIO53" and
// gpiochip1 "raspberrypi-exp-gpio" with 8 named firmware lines.
std::vector<SimulatedChip> RaspberryPiSimulatedChips();

// GPIO chips kept in memory, for tests and the agent's --gpio-sim mode. Like the BCM2835 pin
// controller, a released line keeps its direction and the level it drove. Thread-safe; handles
// stay valid after the backend is destroyed.
class InMemoryGpioBackend : public GpioBackend {
 public:
  explicit InMemoryGpioBackend(std::vector<SimulatedChip> chips = RaspberryPiSimulatedChips());
  ~InMemoryGpioBackend() override;

  absl::StatusOr<std::vector<ChipInfo>> ListChips() override;
  absl::StatusOr<unsigned int> FindLineOffset(const ChipInfo& chip,
                                              std::string_view line_name) override;
  absl::StatusOr<LineInfo> GetLineInfo(const ChipInfo& chip, unsigned int offset) override;
  absl::StatusOr<std::unique_ptr<LineHandle>> RequestLine(const ChipInfo& chip, unsigned int offset,
                                                          const LineConfig& config) override;

  // Marks the line as held by another process (`consumer` non-empty) or frees it again (empty).
  // FAILED_PRECONDITION when the line is currently requested through this backend.
  absl::Status SetExternalConsumer(std::string_view chip_name, unsigned int offset,
                                   std::string consumer);
  // The physical level something outside applies to the pin; inputs read it back.
  absl::Status SetInputLevel(std::string_view chip_name, unsigned int offset, int level);
  // The physical level on the pin: what an output drives, else what an input sees.
  absl::StatusOr<int> PhysicalLevel(std::string_view chip_name, unsigned int offset) const;

 private:
  struct State;
  class Handle;

  std::shared_ptr<State> state_;
};

}  // namespace pi::agent::gpio
