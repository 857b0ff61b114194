#include "node-agent/gpio/gpio_controller.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <limits>

#include "node-agent/gpio/chip_selector.h"

namespace pi::agent::gpio {
namespace {

std::string DescribeHold(std::optional<std::chrono::steady_clock::time_point> until,
                         std::chrono::steady_clock::time_point now) {
  if (!until) return "until RELEASE";
  return fmt::format("for {}ms",
                     std::chrono::duration_cast<std::chrono::milliseconds>(*until - now).count());
}

absl::Status Validate(const GpioCommand& command) {
  switch (command.action) {
    case GpioAction::kRead:
    case GpioAction::kWrite:
    case GpioAction::kConfigure:
    case GpioAction::kRelease:
      break;
    default:
      return absl::InvalidArgumentError(
          fmt::format("unknown GPIO action {}; use READ, WRITE, CONFIGURE or RELEASE",
                      static_cast<int>(command.action)));
  }
  const std::string_view action = GpioActionName(command.action);
  if (command.offset && !command.line_name.empty()) {
    return absl::InvalidArgumentError("give either a line offset or a line name, not both");
  }
  if (!command.offset && command.line_name.empty()) {
    return absl::InvalidArgumentError("give a line offset or a line name");
  }
  if (command.offset && *command.offset < 0) {
    return absl::InvalidArgumentError(
        fmt::format("line offset must not be negative, got {}", *command.offset));
  }
  if (command.offset && *command.offset > std::numeric_limits<unsigned int>::max()) {
    return absl::InvalidArgumentError(
        fmt::format("line offset {} is out of range", *command.offset));
  }
  if (command.value && *command.value != 0 && *command.value != 1) {
    return absl::InvalidArgumentError(fmt::format("value must be 0 or 1, got {}", *command.value));
  }
  if (command.hold < std::chrono::milliseconds::zero()) {
    return absl::InvalidArgumentError(
        fmt::format("hold must not be negative, got {}ms", command.hold.count()));
  }
  const bool holds =
      command.action == GpioAction::kWrite || command.action == GpioAction::kConfigure;
  if (!holds && command.hold != std::chrono::milliseconds::zero()) {
    return absl::InvalidArgumentError(
        fmt::format("hold applies to WRITE and CONFIGURE only, not to {}", action));
  }
  if (command.action == GpioAction::kWrite) {
    if (!command.value) return absl::InvalidArgumentError("WRITE needs a value (0 or 1)");
    if (command.direction == Direction::kInput) {
      return absl::InvalidArgumentError(
          "WRITE drives the line as an output; leave direction unset or set it to output");
    }
  }
  if (command.action == GpioAction::kRead && command.direction == Direction::kOutput) {
    return absl::InvalidArgumentError(
        "READ does not change a line's direction; use CONFIGURE or WRITE to make it an output");
  }
  const bool as_input =
      command.action == GpioAction::kRead ||
      (command.action == GpioAction::kConfigure && command.direction == Direction::kInput);
  if (as_input && command.drive && *command.drive != Drive::kPushPull) {
    return absl::InvalidArgumentError(
        fmt::format("drive {} applies to outputs only; {} uses the line as an input",
                    DriveName(*command.drive), action));
  }
  return absl::OkStatus();
}

bool SameRequest(const LineConfig& a, const LineConfig& b) {
  return a.direction == b.direction && a.active_low == b.active_low && a.bias == b.bias &&
         a.drive == b.drive && a.consumer == b.consumer;
}

}  // namespace

std::string_view GpioActionName(GpioAction action) {
  switch (action) {
    case GpioAction::kRead:
      return "READ";
    case GpioAction::kWrite:
      return "WRITE";
    case GpioAction::kConfigure:
      return "CONFIGURE";
    case GpioAction::kRelease:
      return "RELEASE";
  }
  return "UNKNOWN";
}

absl::StatusOr<std::unique_ptr<GpioController>> GpioController::Create(
    GpioConfig config, GpioBackend& backend, const pi::common::Clock& clock) {
  if (config.max_hold < std::chrono::milliseconds::zero()) {
    return absl::InvalidArgumentError(
        fmt::format("gpio.max_hold must not be negative, got {}ms", config.max_hold.count()));
  }
  if (config.consumer.empty()) {
    return absl::InvalidArgumentError(
        "gpio.consumer is empty; it names the agent in gpioinfo, e.g. pi-agent");
  }
  absl::StatusOr<GpioPolicy> policy = GpioPolicy::Create(config);
  if (!policy.ok()) return policy.status();
  return std::unique_ptr<GpioController>(
      new GpioController(std::move(config), *std::move(policy), backend, clock));
}

GpioController::GpioController(GpioConfig config, GpioPolicy policy, GpioBackend& backend,
                               const pi::common::Clock& clock)
    : config_(std::move(config)), policy_(std::move(policy)), backend_(backend), clock_(clock) {}

GpioController::~GpioController() { ReleaseAll(); }

absl::StatusOr<GpioResult> GpioController::Execute(const GpioCommand& command) {
  if (absl::Status valid = Validate(command); !valid.ok()) return valid;

  std::lock_guard lock(mu_);
  absl::StatusOr<std::vector<ChipInfo>> chips = backend_.ListChips();
  if (!chips.ok()) return chips.status();
  absl::StatusOr<ChipInfo> chip = command.chip.empty() ? SelectDefaultChip(*chips, config_.chip)
                                                       : SelectChip(*chips, command.chip);
  if (!chip.ok()) return chip.status();

  unsigned int offset = 0;
  if (command.offset) {
    offset = static_cast<unsigned int>(*command.offset);
    if (offset >= chip->num_lines) return NoSuchLineError(*chip, offset);
  } else {
    absl::StatusOr<unsigned int> found = backend_.FindLineOffset(*chip, command.line_name);
    if (!found.ok()) return found.status();
    offset = *found;
  }
  absl::StatusOr<LineInfo> info = backend_.GetLineInfo(*chip, offset);
  if (!info.ok()) return info.status();

  switch (command.action) {
    case GpioAction::kRead:
      return Read(*chip, *info, *chips, command);
    case GpioAction::kWrite:
    case GpioAction::kConfigure:
      return Hold(*chip, *info, *chips, command);
    case GpioAction::kRelease:
      return Release(*chip, *info);
  }
  return absl::InternalError("unhandled GPIO action");
}

absl::StatusOr<GpioResult> GpioController::Read(const ChipInfo& chip, const LineInfo& info,
                                                const std::vector<ChipInfo>& chips,
                                                const GpioCommand& command) {
  if (auto it = held_.find(Key{chip.name, info.offset}); it != held_.end()) {
    absl::StatusOr<int> value = it->second.handle->GetValue();
    if (!value.ok()) return value.status();
    return ResultFor(it->second, *value);
  }
  if (absl::Status allowed = policy_.Check(chips, chip, info.offset, info.name, Direction::kInput);
      !allowed.ok()) {
    return allowed;
  }
  const LineConfig config{.direction = Direction::kInput,
                          .active_low = command.active_low.value_or(false),
                          .bias = command.bias.value_or(Bias::kAsIs),
                          .drive = Drive::kPushPull,
                          .output_value = 0,
                          .consumer = config_.consumer};
  absl::StatusOr<std::unique_ptr<LineHandle>> handle =
      backend_.RequestLine(chip, info.offset, config);
  if (!handle.ok()) return handle.status();
  absl::StatusOr<int> value = (*handle)->GetValue();
  (*handle)->Release();
  if (!value.ok()) return value.status();
  return GpioResult{.chip_name = chip.name,
                    .chip_label = chip.label,
                    .offset = info.offset,
                    .line_name = info.name,
                    .value = *value,
                    .direction = Direction::kInput,
                    .active_low = config.active_low,
                    .bias = config.bias,
                    .drive = config.drive,
                    .held = false,
                    .held_until = std::nullopt};
}

absl::StatusOr<GpioResult> GpioController::Hold(const ChipInfo& chip, const LineInfo& info,
                                                const std::vector<ChipInfo>& chips,
                                                const GpioCommand& command) {
  const Key key{chip.name, info.offset};
  auto it = held_.find(key);
  Held* current = it == held_.end() ? nullptr : &it->second;
  const std::string line =
      fmt::format("{} on {}", DescribeLine(info.offset, info.name), DescribeChip(chip));

  Direction direction = Direction::kOutput;
  if (command.action == GpioAction::kConfigure) {
    if (command.direction) {
      direction = *command.direction;
    } else if (current != nullptr) {
      direction = current->config.direction;
    } else {
      return absl::InvalidArgumentError(
          fmt::format("CONFIGURE needs a direction: pi-agent does not hold {} yet", line));
    }
  }
  if (absl::Status allowed = policy_.Check(chips, chip, info.offset, info.name, direction);
      !allowed.ok()) {
    return allowed;
  }

  LineConfig config = current != nullptr ? current->config : LineConfig{};
  config.consumer = config_.consumer;
  config.direction = direction;
  if (command.active_low) config.active_low = *command.active_low;
  if (command.bias) config.bias = *command.bias;
  if (command.drive) {
    config.drive = *command.drive;
  } else if (direction == Direction::kInput) {
    config.drive = Drive::kPushPull;
  }
  if (direction == Direction::kInput && config.drive != Drive::kPushPull) {
    return absl::InvalidArgumentError(
        fmt::format("drive {} of {} applies to outputs only", DriveName(config.drive), line));
  }
  if (direction == Direction::kOutput) {
    const bool was_output = current != nullptr && current->config.direction == Direction::kOutput;
    config.output_value = command.value.value_or(was_output ? current->config.output_value : 0);
  } else {
    config.output_value = 0;
  }
  const std::optional<std::chrono::steady_clock::time_point> until = HoldDeadline(command.hold);

  const bool reuse = current != nullptr && SameRequest(current->config, config);
  if (reuse) {
    if (direction == Direction::kOutput) {
      if (absl::Status set = current->handle->SetValue(config.output_value); !set.ok()) {
        return set;
      }
    }
    current->config = config;
    current->until = until;
  } else {
    const bool replaced = current != nullptr;
    if (replaced) {
      current->handle->Release();
      held_.erase(it);
      current = nullptr;
    }
    absl::StatusOr<std::unique_ptr<LineHandle>> handle =
        backend_.RequestLine(chip, info.offset, config);
    if (!handle.ok()) {
      if (!replaced) return handle.status();
      return absl::Status(handle.status().code(),
                          fmt::format("{}; pi-agent released {} to change its configuration and no "
                                      "longer holds it",
                                      std::string(handle.status().message()), line));
    }
    current = &held_
                   .emplace(key, Held{.chip = chip,
                                      .offset = info.offset,
                                      .line_name = info.name,
                                      .config = config,
                                      .handle = *std::move(handle),
                                      .until = until})
                   .first->second;
  }

  std::optional<int> value;
  if (direction == Direction::kOutput) {
    value = config.output_value;
  } else if (absl::StatusOr<int> read = current->handle->GetValue(); read.ok()) {
    value = *read;
  } else {
    spdlog::warn("gpio: {} is held as an input but cannot be read: {}", line,
                 read.status().ToString());
  }
  // Acquiring a line is worth an operator's attention; toggling one already held is not.
  spdlog::log(reuse ? spdlog::level::debug : spdlog::level::info, "gpio: {} holds {} as {}{} {}",
              GpioActionName(command.action), line, DirectionName(direction),
              direction == Direction::kOutput ? fmt::format(" = {}", config.output_value) : "",
              DescribeHold(until, clock_.Now()));
  return ResultFor(*current, value);
}

absl::StatusOr<GpioResult> GpioController::Release(const ChipInfo& chip, const LineInfo& info) {
  auto it = held_.find(Key{chip.name, info.offset});
  if (it == held_.end()) {
    return absl::FailedPreconditionError(
        fmt::format("pi-agent does not hold {} on {}; there is nothing to release",
                    DescribeLine(info.offset, info.name), DescribeChip(chip)));
  }
  GpioResult result = ResultFor(it->second, std::nullopt);
  result.held = false;
  result.held_until.reset();
  it->second.handle->Release();
  held_.erase(it);
  spdlog::info("gpio: RELEASE {} on {}", DescribeLine(info.offset, info.name), DescribeChip(chip));
  return result;
}

std::optional<std::chrono::steady_clock::time_point> GpioController::HoldDeadline(
    std::chrono::milliseconds requested) const {
  std::chrono::milliseconds hold = requested;
  const bool capped = config_.max_hold > std::chrono::milliseconds::zero();
  if (capped && (hold == std::chrono::milliseconds::zero() || hold > config_.max_hold)) {
    hold = config_.max_hold;
  }
  if (hold == std::chrono::milliseconds::zero()) return std::nullopt;
  return clock_.Now() + hold;
}

GpioResult GpioController::ResultFor(const Held& held, std::optional<int> value) const {
  GpioResult result{.chip_name = held.chip.name,
                    .chip_label = held.chip.label,
                    .offset = held.offset,
                    .line_name = held.line_name,
                    .value = value,
                    .direction = held.config.direction,
                    .active_low = held.config.active_low,
                    .bias = held.config.bias,
                    .drive = held.config.drive,
                    .held = true,
                    .held_until = std::nullopt};
  if (held.until) {
    result.held_until =
        clock_.WallNow() +
        std::chrono::duration_cast<std::chrono::system_clock::duration>(*held.until - clock_.Now());
  }
  return result;
}

std::size_t GpioController::ReleaseExpired() {
  std::lock_guard lock(mu_);
  const std::chrono::steady_clock::time_point now = clock_.Now();
  std::size_t released = 0;
  for (auto it = held_.begin(); it != held_.end();) {
    if (it->second.until && *it->second.until <= now) {
      spdlog::info("gpio: hold of {} on {} ended; releasing it",
                   DescribeLine(it->second.offset, it->second.line_name),
                   DescribeChip(it->second.chip));
      it->second.handle->Release();
      it = held_.erase(it);
      ++released;
    } else {
      ++it;
    }
  }
  return released;
}

std::optional<std::chrono::steady_clock::time_point> GpioController::NextExpiry() const {
  std::lock_guard lock(mu_);
  std::optional<std::chrono::steady_clock::time_point> next;
  for (const auto& [key, held] : held_) {
    if (held.until && (!next || *held.until < *next)) next = held.until;
  }
  return next;
}

std::size_t GpioController::ReleaseAll() {
  std::lock_guard lock(mu_);
  const std::size_t released = held_.size();
  for (auto& [key, held] : held_) held.handle->Release();
  held_.clear();
  return released;
}

std::vector<GpioResult> GpioController::HeldLines() const {
  std::lock_guard lock(mu_);
  std::vector<GpioResult> lines;
  for (const auto& [key, held] : held_) {
    absl::StatusOr<int> value = held.handle->GetValue();
    lines.push_back(ResultFor(held, value.ok() ? std::optional<int>(*value) : std::nullopt));
  }
  return lines;
}

absl::Status GpioController::Probe() {
  absl::StatusOr<std::vector<ChipInfo>> chips = backend_.ListChips();
  if (!chips.ok()) return chips.status();
  return SelectDefaultChip(*chips, config_.chip).status();
}

}  // namespace pi::agent::gpio
