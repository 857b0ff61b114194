#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/system/clock.h"
#include "node-agent/gpio/gpio_backend.h"
#include "node-agent/gpio/gpio_config.h"
#include "node-agent/gpio/gpio_policy.h"

namespace pi::agent::gpio {

enum class GpioAction { kRead, kWrite, kConfigure, kRelease };

std::string_view GpioActionName(GpioAction action);

struct GpioCommand {
  // Chip label, name or path; empty means gpio.chip.
  std::string chip{};
  // Exactly one of offset and line_name.
  std::optional<std::int64_t> offset{};
  std::string line_name{};
  GpioAction action = GpioAction::kRead;
  // WRITE: required. CONFIGURE as output: the level to drive (default: the level the held line
  // drives now, else 0). Ignored otherwise.
  std::optional<int> value{};
  // CONFIGURE: required unless the agent holds the line (then its direction is kept). WRITE:
  // unset or output. READ: unset or input.
  std::optional<Direction> direction{};
  // WRITE and CONFIGURE: unset keeps the held line's setting (defaults: active high, bias as-is,
  // push-pull). READ of a line the agent does not hold uses active_low and bias for the
  // momentary input request; READ of a held line reads through the held request unchanged.
  std::optional<bool> active_low{};
  std::optional<Bias> bias{};
  std::optional<Drive> drive{};
  // WRITE and CONFIGURE: how long the agent holds the line; zero holds it until RELEASE. Each
  // WRITE or CONFIGURE restarts the hold. Capped by gpio.max_hold.
  std::chrono::milliseconds hold{0};
};

struct GpioResult {
  std::string chip_name{};
  std::string chip_label{};
  unsigned int offset = 0;
  std::string line_name{};
  // The logical level read or driven; unset when it could not be read (after RELEASE).
  std::optional<int> value{};
  Direction direction = Direction::kInput;
  bool active_low = false;
  Bias bias = Bias::kAsIs;
  Drive drive = Drive::kPushPull;
  // Whether the agent holds the line after the command.
  bool held = false;
  // When the hold ends; unset while held until RELEASE.
  std::optional<std::chrono::system_clock::time_point> held_until{};
};

// The GPIO core behind NodeAgent.ControlGPIO. A written value persists because the agent keeps
// the line requested until RELEASE or the end of its hold. Thread-safe.
class GpioController {
 public:
  // INVALID_ARGUMENT when gpio.allowed_lines is malformed. `backend` and `clock` must outlive the
  // controller.
  static absl::StatusOr<std::unique_ptr<GpioController>> Create(GpioConfig config,
                                                                GpioBackend& backend,
                                                                const pi::common::Clock& clock);
  ~GpioController();

  GpioController(const GpioController&) = delete;
  GpioController& operator=(const GpioController&) = delete;

  // INVALID_ARGUMENT for a malformed command, NOT_FOUND for an unknown chip or line,
  // PERMISSION_DENIED when gpio.allowed_lines forbids it, FAILED_PRECONDITION when another
  // consumer holds the line or RELEASE names a line the agent does not hold.
  absl::StatusOr<GpioResult> Execute(const GpioCommand& command);

  // Releases the lines whose hold has ended; returns how many. Called from the agent's timer.
  std::size_t ReleaseExpired();
  // When the next hold ends, so the timer can sleep exactly that long; unset when none will.
  std::optional<std::chrono::steady_clock::time_point> NextExpiry() const;
  // Releases every held line (shutdown); returns how many.
  std::size_t ReleaseAll();
  // The lines the agent holds now, for health and debugging.
  std::vector<GpioResult> HeldLines() const;
  // OK when the default chip is present; for the agent's health check.
  absl::Status Probe();

 private:
  struct Held {
    ChipInfo chip;
    unsigned int offset = 0;
    std::string line_name;
    LineConfig config;
    std::unique_ptr<LineHandle> handle;
    std::optional<std::chrono::steady_clock::time_point> until;
  };
  using Key = std::pair<std::string, unsigned int>;  // chip name, offset

  GpioController(GpioConfig config, GpioPolicy policy, GpioBackend& backend,
                 const pi::common::Clock& clock);

  absl::StatusOr<GpioResult> Read(const ChipInfo& chip, const LineInfo& info,
                                  const std::vector<ChipInfo>& chips, const GpioCommand& command);
  absl::StatusOr<GpioResult> Hold(const ChipInfo& chip, const LineInfo& info,
                                  const std::vector<ChipInfo>& chips, const GpioCommand& command);
  absl::StatusOr<GpioResult> Release(const ChipInfo& chip, const LineInfo& info);
  std::optional<std::chrono::steady_clock::time_point> HoldDeadline(
      std::chrono::milliseconds requested) const;
  GpioResult ResultFor(const Held& held, std::optional<int> value) const;

  const GpioConfig config_;
  const GpioPolicy policy_;
  GpioBackend& backend_;
  const pi::common::Clock& clock_;

  mutable std::mutex mu_;
  std::map<Key, Held> held_;
};

}  // namespace pi::agent::gpio
