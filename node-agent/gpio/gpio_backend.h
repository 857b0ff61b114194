#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pi::agent::gpio {

enum class Direction { kInput, kOutput };
enum class Bias { kAsIs, kDisabled, kPullUp, kPullDown };
enum class Drive { kPushPull, kOpenDrain, kOpenSource };

std::string_view DirectionName(Direction direction);
std::string_view BiasName(Bias bias);
std::string_view DriveName(Drive drive);

struct ChipInfo {
  std::string name{};   // "gpiochip0"
  std::string label{};  // "pinctrl-bcm2835"
  std::string path{};   // "/dev/gpiochip0"
  unsigned int num_lines = 0;

  bool operator==(const ChipInfo&) const = default;
};

struct LineInfo {
  unsigned int offset = 0;
  std::string name{};      // Empty when the device tree gives the line no name.
  std::string consumer{};  // Empty when nobody holds the line.
  bool used = false;
  Direction direction = Direction::kInput;
  bool active_low = false;
  Bias bias = Bias::kAsIs;
  Drive drive = Drive::kPushPull;
};

struct LineConfig {
  Direction direction = Direction::kInput;
  bool active_low = false;
  Bias bias = Bias::kAsIs;
  Drive drive = Drive::kPushPull;
  // Logical level driven as soon as an output is requested, so the line never glitches through
  // the other level.
  int output_value = 0;
  std::string consumer = "pi-agent";

  bool operator==(const LineConfig&) const = default;
};

// One requested line. Values are logical (active_low already applied). Destroying the handle
// releases the line.
class LineHandle {
 public:
  virtual ~LineHandle() = default;
  virtual absl::StatusOr<int> GetValue() = 0;
  virtual absl::Status SetValue(int value) = 0;
  // Idempotent; GetValue/SetValue fail with FAILED_PRECONDITION afterwards.
  virtual void Release() = 0;
};

// Access to the GPIO character devices. Implementations are thread-safe and never throw.
// A line held by any other request (another process, or another handle of this one) makes
// RequestLine fail with FAILED_PRECONDITION naming its consumer.
class GpioBackend {
 public:
  virtual ~GpioBackend() = default;
  // Chips in device order; an empty list when the system has none.
  virtual absl::StatusOr<std::vector<ChipInfo>> ListChips() = 0;
  // NOT_FOUND when no line of the chip carries that name.
  virtual absl::StatusOr<unsigned int> FindLineOffset(const ChipInfo& chip,
                                                      std::string_view line_name) = 0;
  virtual absl::StatusOr<LineInfo> GetLineInfo(const ChipInfo& chip, unsigned int offset) = 0;
  virtual absl::StatusOr<std::unique_ptr<LineHandle>> RequestLine(const ChipInfo& chip,
                                                                  unsigned int offset,
                                                                  const LineConfig& config) = 0;
};

// "line 14 (GPIO14)", or "line 14" when the line has no name.
std::string DescribeLine(unsigned int offset, std::string_view line_name);
// "gpiochip0 (pinctrl-bcm2835)".
std::string DescribeChip(const ChipInfo& chip);

// The errors every backend reports the same way.
absl::Status NoSuchLineError(const ChipInfo& chip, unsigned int offset);
absl::Status LineBusyError(const ChipInfo& chip, unsigned int offset, std::string_view line_name,
                           std::string_view consumer);

}  // namespace pi::agent::gpio
