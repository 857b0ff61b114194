#include "node-agent/gpio/in_memory_backend.h"

#include <fmt/format.h>

#include <cstdint>
#include <mutex>
#include <optional>
#include <utility>

namespace pi::agent::gpio {

std::vector<SimulatedChip> RaspberryPiSimulatedChips() {
  SimulatedChip header{.name = "gpiochip0", .label = "pinctrl-bcm2835", .line_names = {}};
  for (int i = 0; i < 54; ++i) header.line_names.push_back(fmt::format("GPIO{}", i));
  SimulatedChip firmware{.name = "gpiochip1",
                         .label = "raspberrypi-exp-gpio",
                         .line_names = {"BT_ON", "WL_ON", "STATUS_LED", "LAN_RUN", "HDMI_HPD_N",
                                        "CAM_GPIO0", "CAM_GPIO1", "PWR_LOW_N"}};
  return {std::move(header), std::move(firmware)};
}

struct InMemoryGpioBackend::State {
  struct Line {
    std::string name;
    std::string consumer;
    // The handle holding the line; 0 when free or held by an external consumer.
    std::uint64_t request_id = 0;
    Direction direction = Direction::kInput;
    bool active_low = false;
    Bias bias = Bias::kAsIs;
    Drive drive = Drive::kPushPull;
    int driven_level = 0;
    std::optional<int> applied_level;

    int Physical() const {
      if (direction == Direction::kOutput) return driven_level;
      if (applied_level) return *applied_level;
      return bias == Bias::kPullUp ? 1 : 0;
    }
  };
  struct Chip {
    ChipInfo info;
    std::vector<Line> lines;
  };

  mutable std::mutex mu;
  std::vector<Chip> chips;
  std::uint64_t next_request_id = 1;

  // Callers hold mu.
  absl::StatusOr<Line*> Find(std::string_view chip_name, unsigned int offset) {
    for (Chip& chip : chips) {
      if (chip.info.name != chip_name) continue;
      if (offset >= chip.lines.size()) return NoSuchLineError(chip.info, offset);
      return &chip.lines[offset];
    }
    return absl::NotFoundError(fmt::format("no GPIO chip named '{}'", chip_name));
  }
};

class InMemoryGpioBackend::Handle : public LineHandle {
 public:
  Handle(std::shared_ptr<State> state, ChipInfo chip, unsigned int offset, std::uint64_t id)
      : state_(std::move(state)), chip_(std::move(chip)), offset_(offset), id_(id) {}
  ~Handle() override { Release(); }

  absl::StatusOr<int> GetValue() override {
    std::lock_guard lock(state_->mu);
    absl::StatusOr<State::Line*> line = Held();
    if (!line.ok()) return line.status();
    return (*line)->Physical() ^ ((*line)->active_low ? 1 : 0);
  }

  absl::Status SetValue(int value) override {
    if (value != 0 && value != 1) {
      return absl::InvalidArgumentError(fmt::format("value must be 0 or 1, got {}", value));
    }
    std::lock_guard lock(state_->mu);
    absl::StatusOr<State::Line*> line = Held();
    if (!line.ok()) return line.status();
    if ((*line)->direction != Direction::kOutput) {
      return absl::FailedPreconditionError(fmt::format(
          "{} is requested as an input; it cannot be set", DescribeLine(offset_, (*line)->name)));
    }
    (*line)->driven_level = value ^ ((*line)->active_low ? 1 : 0);
    return absl::OkStatus();
  }

  void Release() override {
    std::lock_guard lock(state_->mu);
    absl::StatusOr<State::Line*> line = Held();
    if (!line.ok()) return;
    (*line)->request_id = 0;
    (*line)->consumer.clear();
    (*line)->active_low = false;
    released_ = true;
  }

 private:
  // Callers hold state_->mu.
  absl::StatusOr<State::Line*> Held() {
    if (released_) {
      return absl::FailedPreconditionError(
          fmt::format("{} on {} was released", DescribeLine(offset_, ""), DescribeChip(chip_)));
    }
    absl::StatusOr<State::Line*> line = state_->Find(chip_.name, offset_);
    if (line.ok() && (*line)->request_id != id_) {
      return absl::FailedPreconditionError(fmt::format(
          "{} on {} is no longer held", DescribeLine(offset_, (*line)->name), DescribeChip(chip_)));
    }
    return line;
  }

  std::shared_ptr<State> state_;
  ChipInfo chip_;
  unsigned int offset_;
  std::uint64_t id_;
  bool released_ = false;
};

InMemoryGpioBackend::InMemoryGpioBackend(std::vector<SimulatedChip> chips)
    : state_(std::make_shared<State>()) {
  for (SimulatedChip& sim : chips) {
    State::Chip chip;
    chip.info = ChipInfo{.name = sim.name,
                         .label = sim.label,
                         .path = fmt::format("/dev/{}", sim.name),
                         .num_lines = static_cast<unsigned int>(sim.line_names.size())};
    for (std::string& name : sim.line_names) {
      State::Line line;
      line.name = std::move(name);
      chip.lines.push_back(std::move(line));
    }
    state_->chips.push_back(std::move(chip));
  }
}

InMemoryGpioBackend::~InMemoryGpioBackend() = default;

absl::StatusOr<std::vector<ChipInfo>> InMemoryGpioBackend::ListChips() {
  std::lock_guard lock(state_->mu);
  std::vector<ChipInfo> chips;
  for (const State::Chip& chip : state_->chips) chips.push_back(chip.info);
  return chips;
}

absl::StatusOr<unsigned int> InMemoryGpioBackend::FindLineOffset(const ChipInfo& chip,
                                                                 std::string_view line_name) {
  std::lock_guard lock(state_->mu);
  for (const State::Chip& sim : state_->chips) {
    if (sim.info.name != chip.name) continue;
    for (unsigned int offset = 0; offset < sim.lines.size(); ++offset) {
      if (!line_name.empty() && sim.lines[offset].name == line_name) return offset;
    }
    break;
  }
  return absl::NotFoundError(
      fmt::format("no line named '{}' on {}", line_name, DescribeChip(chip)));
}

absl::StatusOr<LineInfo> InMemoryGpioBackend::GetLineInfo(const ChipInfo& chip,
                                                          unsigned int offset) {
  std::lock_guard lock(state_->mu);
  absl::StatusOr<State::Line*> found = state_->Find(chip.name, offset);
  if (!found.ok()) return found.status();
  const State::Line& line = **found;
  return LineInfo{.offset = offset,
                  .name = line.name,
                  .consumer = line.consumer,
                  .used = !line.consumer.empty(),
                  .direction = line.direction,
                  .active_low = line.active_low,
                  .bias = line.bias,
                  .drive = line.drive};
}

absl::StatusOr<std::unique_ptr<LineHandle>> InMemoryGpioBackend::RequestLine(
    const ChipInfo& chip, unsigned int offset, const LineConfig& config) {
  if (config.output_value != 0 && config.output_value != 1) {
    return absl::InvalidArgumentError(
        fmt::format("value must be 0 or 1, got {}", config.output_value));
  }
  if (config.direction == Direction::kInput && config.drive != Drive::kPushPull) {
    return absl::InvalidArgumentError(
        fmt::format("drive {} applies to outputs only", DriveName(config.drive)));
  }
  std::lock_guard lock(state_->mu);
  absl::StatusOr<State::Line*> found = state_->Find(chip.name, offset);
  if (!found.ok()) return found.status();
  State::Line& line = **found;
  if (!line.consumer.empty()) return LineBusyError(chip, offset, line.name, line.consumer);
  line.consumer = config.consumer;
  line.request_id = state_->next_request_id++;
  line.direction = config.direction;
  line.active_low = config.active_low;
  line.bias = config.bias;
  line.drive = config.drive;
  if (config.direction == Direction::kOutput) {
    line.driven_level = config.output_value ^ (config.active_low ? 1 : 0);
  }
  return std::make_unique<Handle>(state_, chip, offset, line.request_id);
}

absl::Status InMemoryGpioBackend::SetExternalConsumer(std::string_view chip_name,
                                                      unsigned int offset, std::string consumer) {
  std::lock_guard lock(state_->mu);
  absl::StatusOr<State::Line*> found = state_->Find(chip_name, offset);
  if (!found.ok()) return found.status();
  State::Line& line = **found;
  if (line.request_id != 0) {
    return absl::FailedPreconditionError(fmt::format("{} is requested through this backend by '{}'",
                                                     DescribeLine(offset, line.name),
                                                     line.consumer));
  }
  line.consumer = std::move(consumer);
  return absl::OkStatus();
}

absl::Status InMemoryGpioBackend::SetInputLevel(std::string_view chip_name, unsigned int offset,
                                                int level) {
  if (level != 0 && level != 1) {
    return absl::InvalidArgumentError(fmt::format("level must be 0 or 1, got {}", level));
  }
  std::lock_guard lock(state_->mu);
  absl::StatusOr<State::Line*> found = state_->Find(chip_name, offset);
  if (!found.ok()) return found.status();
  (*found)->applied_level = level;
  return absl::OkStatus();
}

absl::StatusOr<int> InMemoryGpioBackend::PhysicalLevel(std::string_view chip_name,
                                                       unsigned int offset) const {
  std::lock_guard lock(state_->mu);
  absl::StatusOr<State::Line*> found = state_->Find(chip_name, offset);
  if (!found.ok()) return found.status();
  return (*found)->Physical();
}

}  // namespace pi::agent::gpio
