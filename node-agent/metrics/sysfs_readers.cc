// Readers of thermal zones, the Raspberry Pi firmware's throttling state and the device-tree model.

#include <algorithm>
#include <charconv>
#include <limits>
#include <string>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "node-agent/metrics/parse_util.h"
#include "node-agent/metrics/readers.h"

namespace pi::agent::metrics {
namespace {

using internal::FileError;
using internal::MalformedFile;
using internal::MalformedLine;
using internal::ParseInt64;
using internal::ParseUint64;
using internal::ReadWholeFile;

constexpr absl::string_view kZonePrefix = "thermal_zone";
constexpr double kMillidegreesPerDegree = 1000.0;

// get_throttled bit positions, documented for `vcgencmd get_throttled`.
constexpr int kUnderVoltageBit = 0;
constexpr int kArmFrequencyCappedBit = 1;
constexpr int kThrottledBit = 2;
constexpr int kSoftTemperatureLimitBit = 3;
constexpr int kSinceBootShift = 16;

PowerConditions DecodeConditions(uint32_t bits) {
  PowerConditions conditions;
  conditions.under_voltage = (bits >> kUnderVoltageBit) & 1;
  conditions.arm_frequency_capped = (bits >> kArmFrequencyCappedBit) & 1;
  conditions.throttled = (bits >> kThrottledBit) & 1;
  conditions.soft_temperature_limit = (bits >> kSoftTemperatureLimitBit) & 1;
  return conditions;
}

}  // namespace

absl::StatusOr<std::vector<ThermalZone>> ReadThermalZones(const std::filesystem::path& root) {
  const std::filesystem::path dir = root / "sys/class/thermal";
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) return FileError(dir, ec.value(), "list");

  std::vector<ThermalZone> zones;
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    uint64_t number = 0;
    if (!absl::StartsWith(name, kZonePrefix) ||
        !ParseUint64(absl::string_view(name).substr(kZonePrefix.size()), &number) ||
        number > static_cast<uint64_t>(std::numeric_limits<int>::max())) {
      continue;
    }
    absl::StatusOr<std::string> type = ReadWholeFile(it->path() / "type");
    absl::StatusOr<std::string> temp = ReadWholeFile(it->path() / "temp");
    if (!type.ok() || !temp.ok()) continue;

    const absl::string_view text = absl::StripAsciiWhitespace(*temp);
    int64_t millidegrees = 0;
    if (!ParseInt64(text, &millidegrees)) {
      return MalformedLine(it->path() / "temp", 1, text, "a temperature in millidegrees Celsius");
    }
    ThermalZone zone;
    zone.zone = static_cast<int>(number);
    zone.type = std::string(absl::StripAsciiWhitespace(*type));
    zone.celsius = static_cast<double>(millidegrees) / kMillidegreesPerDegree;
    zones.push_back(std::move(zone));
  }
  if (ec) return FileError(dir, ec.value(), "list");
  std::sort(zones.begin(), zones.end(),
            [](const ThermalZone& a, const ThermalZone& b) { return a.zone < b.zone; });
  return zones;
}

PowerState DecodePowerState(uint32_t raw) {
  PowerState state;
  state.raw = raw;
  state.now = DecodeConditions(raw);
  state.since_boot = DecodeConditions(raw >> kSinceBootShift);
  return state;
}

absl::StatusOr<PowerState> ReadPowerState(const std::filesystem::path& root) {
  const std::filesystem::path path = root / "sys/devices/platform/soc/soc:firmware/get_throttled";
  absl::StatusOr<std::string> content = ReadWholeFile(path);
  if (!content.ok()) return content.status();

  // The kernel prints "%x\n"; vcgencmd's "0x" form is accepted too.
  const absl::string_view line = absl::StripAsciiWhitespace(*content);
  absl::string_view digits = line;
  if (absl::StartsWithIgnoreCase(digits, "0x")) digits.remove_prefix(2);
  uint32_t raw = 0;
  const auto [end, parse_ec] =
      std::from_chars(digits.data(), digits.data() + digits.size(), raw, 16);
  if (digits.empty() || parse_ec != std::errc() || end != digits.data() + digits.size()) {
    return MalformedLine(path, 1, line, "a hexadecimal bitmask such as '50005'");
  }
  return DecodePowerState(raw);
}

absl::StatusOr<std::string> ReadDeviceModel(const std::filesystem::path& root) {
  std::filesystem::path path = root / "proc/device-tree/model";
  absl::StatusOr<std::string> content = ReadWholeFile(path);
  if (absl::IsNotFound(content.status())) {
    path = root / "sys/firmware/devicetree/base/model";
    content = ReadWholeFile(path);
  }
  if (!content.ok()) return content.status();

  // Device-tree strings end in NUL.
  absl::string_view model = *content;
  while (!model.empty() && (model.back() == '\0' || absl::ascii_isspace(model.back()))) {
    model.remove_suffix(1);
  }
  if (model.empty()) return MalformedFile(path, "the model string is empty");
  if (model.find('\0') != absl::string_view::npos) {
    return MalformedFile(path, "expected one NUL-terminated model string, found several");
  }
  return std::string(model);
}

}  // namespace pi::agent::metrics
