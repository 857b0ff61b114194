#include "node-agent/gpio/libgpiod_backend.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <exception>
#include <filesystem>
#include <gpiod.hpp>
#include <mutex>
#include <string>
#include <system_error>
#include <utility>

namespace pi::agent::gpio {
namespace {

constexpr std::string_view kDevDir = "/dev";
constexpr std::string_view kChipPrefix = "gpiochip";

// The errno behind a libgpiod exception, or 0 when it is not a system_error.
int ErrnoOf(const std::exception& e) {
  if (const auto* system = dynamic_cast<const std::system_error*>(&e)) {
    return system->code().value();
  }
  return 0;
}

absl::Status FromException(const std::exception& e, std::string_view what) {
  const int error = ErrnoOf(e);
  const std::string detail = fmt::format("{}: {}", what, e.what());
  switch (error) {
    case 0:
      return absl::InternalError(detail);
    case EACCES:
    case EPERM:
      return absl::FailedPreconditionError(fmt::format(
          "{}; run pi-agent as a user that may open /dev/gpiochip* (the gpio group)", detail));
    case ENOENT:
    case ENODEV:
    case ENXIO:
      return absl::NotFoundError(detail);
    case EINVAL:
    case EOPNOTSUPP:
      return absl::InvalidArgumentError(fmt::format(
          "{}; the kernel rejected the line configuration (bias needs Linux 5.5 or later)",
          detail));
    default:
      return absl::Status(absl::ErrnoToStatusCode(error), detail);
  }
}

// gpiochip2 sorts before gpiochip10.
unsigned long ChipNumber(const std::string& path) {
  const std::string name = std::filesystem::path(path).filename().string();
  unsigned long number = 0;
  std::from_chars(name.data() + kChipPrefix.size(), name.data() + name.size(), number);
  return number;
}

absl::StatusOr<std::vector<std::string>> ChipPaths() {
  std::vector<std::string> paths;
  std::error_code error;
  std::filesystem::directory_iterator it(kDevDir, error);
  for (; !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
    if (it->path().filename().string().starts_with(kChipPrefix)) {
      paths.push_back(it->path().string());
    }
  }
  if (error) {
    return absl::UnavailableError(fmt::format("cannot list {}: {}", kDevDir, error.message()));
  }
  std::sort(paths.begin(), paths.end(), [](const std::string& a, const std::string& b) {
    return ChipNumber(a) != ChipNumber(b) ? ChipNumber(a) < ChipNumber(b) : a < b;
  });
  return paths;
}

gpiod::chip OpenChip(const ChipInfo& chip) {
  return gpiod::chip(chip.path, gpiod::chip::OPEN_BY_PATH);
}

Bias BiasOf(const gpiod::line& line) {
  switch (line.bias()) {
    case gpiod::line::BIAS_DISABLE:
      return Bias::kDisabled;
    case gpiod::line::BIAS_PULL_UP:
      return Bias::kPullUp;
    case gpiod::line::BIAS_PULL_DOWN:
      return Bias::kPullDown;
    default:
      return Bias::kAsIs;
  }
}

LineInfo InfoOf(const gpiod::line& line) {
  Drive drive = Drive::kPushPull;
  if (line.is_open_drain()) drive = Drive::kOpenDrain;
  if (line.is_open_source()) drive = Drive::kOpenSource;
  return LineInfo{.offset = line.offset(),
                  .name = line.name(),
                  .consumer = line.consumer(),
                  .used = line.is_used(),
                  .direction = line.direction() == gpiod::line::DIRECTION_OUTPUT
                                   ? Direction::kOutput
                                   : Direction::kInput,
                  .active_low = line.active_state() == gpiod::line::ACTIVE_LOW,
                  .bias = BiasOf(line),
                  .drive = drive};
}

gpiod::line_request RequestFor(const LineConfig& config) {
  gpiod::line_request request{.consumer = config.consumer,
                              .request_type = config.direction == Direction::kOutput
                                                  ? gpiod::line_request::DIRECTION_OUTPUT
                                                  : gpiod::line_request::DIRECTION_INPUT,
                              .flags = 0};
  if (config.active_low) request.flags |= gpiod::line_request::FLAG_ACTIVE_LOW;
  switch (config.bias) {
    case Bias::kAsIs:
      break;
    case Bias::kDisabled:
      request.flags |= gpiod::line_request::FLAG_BIAS_DISABLE;
      break;
    case Bias::kPullUp:
      request.flags |= gpiod::line_request::FLAG_BIAS_PULL_UP;
      break;
    case Bias::kPullDown:
      request.flags |= gpiod::line_request::FLAG_BIAS_PULL_DOWN;
      break;
  }
  switch (config.drive) {
    case Drive::kPushPull:
      break;
    case Drive::kOpenDrain:
      request.flags |= gpiod::line_request::FLAG_OPEN_DRAIN;
      break;
    case Drive::kOpenSource:
      request.flags |= gpiod::line_request::FLAG_OPEN_SOURCE;
      break;
  }
  return request;
}

class LibgpiodLineHandle : public LineHandle {
 public:
  LibgpiodLineHandle(gpiod::line line, std::string description)
      : line_(std::move(line)), description_(std::move(description)) {}
  ~LibgpiodLineHandle() override { Release(); }

  absl::StatusOr<int> GetValue() override {
    std::lock_guard lock(mu_);
    if (released_) return ReleasedError();
    try {
      return line_.get_value();
    } catch (const std::exception& e) {
      return FromException(e, fmt::format("reading {}", description_));
    }
  }

  absl::Status SetValue(int value) override {
    if (value != 0 && value != 1) {
      return absl::InvalidArgumentError(fmt::format("value must be 0 or 1, got {}", value));
    }
    std::lock_guard lock(mu_);
    if (released_) return ReleasedError();
    try {
      line_.set_value(value);
      return absl::OkStatus();
    } catch (const std::exception& e) {
      return FromException(e, fmt::format("setting {}", description_));
    }
  }

  void Release() override {
    std::lock_guard lock(mu_);
    if (released_) return;
    released_ = true;
    try {
      line_.release();
    } catch (const std::exception& e) {
      // The kernel frees the line anyway when line_ drops the last reference to the chip's file
      // descriptor, so this is worth a log line but nothing more.
      spdlog::warn("gpio: releasing {} failed: {}", description_, e.what());
    }
  }

 private:
  absl::Status ReleasedError() const {
    return absl::FailedPreconditionError(fmt::format("{} was released", description_));
  }

  std::mutex mu_;
  gpiod::line line_;
  const std::string description_;
  bool released_ = false;
};

}  // namespace

absl::StatusOr<std::vector<ChipInfo>> LibgpiodBackend::ListChips() {
  absl::StatusOr<std::vector<std::string>> paths = ChipPaths();
  if (!paths.ok()) return paths.status();
  std::vector<ChipInfo> chips;
  std::vector<std::string> failures;
  for (const std::string& path : *paths) {
    try {
      gpiod::chip chip(path, gpiod::chip::OPEN_BY_PATH);
      chips.push_back(ChipInfo{
          .name = chip.name(), .label = chip.label(), .path = path, .num_lines = chip.num_lines()});
    } catch (const std::exception& e) {
      failures.push_back(fmt::format("{}: {}", path, e.what()));
    }
  }
  if (chips.empty() && !failures.empty()) {
    return absl::FailedPreconditionError(fmt::format(
        "cannot open any GPIO chip ({}); run pi-agent as a user that may open /dev/gpiochip* (the "
        "gpio group)",
        fmt::join(failures, "; ")));
  }
  if (!failures.empty()) {
    spdlog::warn("gpio: skipping chips that cannot be opened: {}", fmt::join(failures, "; "));
  }
  return chips;
}

absl::StatusOr<unsigned int> LibgpiodBackend::FindLineOffset(const ChipInfo& chip,
                                                             std::string_view line_name) {
  const absl::Status not_found =
      absl::NotFoundError(fmt::format("no line named '{}' on {}", line_name, DescribeChip(chip)));
  if (line_name.empty()) return not_found;
  try {
    gpiod::line line = OpenChip(chip).find_line(std::string(line_name));
    if (!line) return not_found;
    return line.offset();
  } catch (const std::exception& e) {
    return FromException(e,
                         fmt::format("looking up line '{}' on {}", line_name, DescribeChip(chip)));
  }
}

absl::StatusOr<LineInfo> LibgpiodBackend::GetLineInfo(const ChipInfo& chip, unsigned int offset) {
  if (offset >= chip.num_lines) return NoSuchLineError(chip, offset);
  try {
    return InfoOf(OpenChip(chip).get_line(offset));
  } catch (const std::exception& e) {
    return FromException(
        e, fmt::format("reading {} on {}", DescribeLine(offset, ""), DescribeChip(chip)));
  }
}

absl::StatusOr<std::unique_ptr<LineHandle>> LibgpiodBackend::RequestLine(const ChipInfo& chip,
                                                                         unsigned int offset,
                                                                         const LineConfig& config) {
  if (offset >= chip.num_lines) return NoSuchLineError(chip, offset);
  if (config.output_value != 0 && config.output_value != 1) {
    return absl::InvalidArgumentError(
        fmt::format("value must be 0 or 1, got {}", config.output_value));
  }
  std::string description = fmt::format("{} on {}", DescribeLine(offset, ""), DescribeChip(chip));
  try {
    gpiod::line line = OpenChip(chip).get_line(offset);
    description = fmt::format("{} on {}", DescribeLine(offset, line.name()), DescribeChip(chip));
    try {
      line.request(RequestFor(config), config.output_value);
    } catch (const std::system_error& e) {
      if (e.code().value() != EBUSY) throw;
      std::string consumer;
      try {
        line.update();
        consumer = line.consumer();
      } catch (const std::exception&) {
        // The busy error still stands; it just cannot name the holder.
      }
      return LineBusyError(chip, offset, line.name(), consumer);
    }
    return std::make_unique<LibgpiodLineHandle>(std::move(line), std::move(description));
  } catch (const std::exception& e) {
    return FromException(e, fmt::format("requesting {}", description));
  }
}

}  // namespace pi::agent::gpio
