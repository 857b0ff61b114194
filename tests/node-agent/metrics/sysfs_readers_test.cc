#include <catch2/catch.hpp>
#include <string>

#include "node-agent/metrics/readers.h"
#include "tests/node-agent/metrics/test_util.h"

namespace pi::agent::metrics {
namespace {

using testing::Fixture;
using testing::TempTree;

constexpr char kThrottledPath[] = "sys/devices/platform/soc/soc:firmware/get_throttled";

bool MessageContains(const absl::Status& status, const std::string& text) {
  return std::string(status.message()).find(text) != std::string::npos;
}

TEST_CASE("thermal zones of a Pi 3B give the cpu-thermal zone in degrees Celsius", "[thermal]") {
  absl::StatusOr<std::vector<ThermalZone>> zones = ReadThermalZones(Fixture("pi3b"));
  REQUIRE(zones.ok());
  REQUIRE(zones->size() == 1);
  CHECK((*zones)[0].zone == 0);
  CHECK((*zones)[0].type == "cpu-thermal");
  CHECK((*zones)[0].celsius == 48.312);
}

TEST_CASE("thermal zones are sorted by number and may be below zero", "[thermal]") {
  TempTree tree;
  tree.Write("sys/class/thermal/thermal_zone10/type", "late\n");
  tree.Write("sys/class/thermal/thermal_zone10/temp", "30125\n");
  tree.Write("sys/class/thermal/thermal_zone2/type", "outdoor\n");
  tree.Write("sys/class/thermal/thermal_zone2/temp", "-5500\n");
  absl::StatusOr<std::vector<ThermalZone>> zones = ReadThermalZones(tree.root());
  REQUIRE(zones.ok());
  REQUIRE(zones->size() == 2);
  CHECK((*zones)[0].zone == 2);
  CHECK((*zones)[0].celsius == -5.5);
  CHECK((*zones)[1].zone == 10);
  CHECK((*zones)[1].type == "late");
  CHECK((*zones)[1].celsius == 30.125);
}

TEST_CASE("a thermal zone whose temperature cannot be read is left out", "[thermal]") {
  TempTree tree;
  tree.Write("sys/class/thermal/thermal_zone0/type", "cpu-thermal\n");
  tree.Write("sys/class/thermal/thermal_zone0/temp", "41000\n");
  tree.Write("sys/class/thermal/thermal_zone1/type", "iwlwifi_1\n");
  absl::StatusOr<std::vector<ThermalZone>> zones = ReadThermalZones(tree.root());
  REQUIRE(zones.ok());
  REQUIRE(zones->size() == 1);
  CHECK((*zones)[0].type == "cpu-thermal");
}

TEST_CASE("a non-numeric thermal zone temperature is DATA_LOSS naming the file", "[thermal]") {
  absl::StatusOr<std::vector<ThermalZone>> zones = ReadThermalZones(Fixture("broken"));
  REQUIRE(absl::IsDataLoss(zones.status()));
  CHECK(MessageContains(zones.status(), "thermal_zone0/temp"));
}

TEST_CASE("no thermal class directory is NOT_FOUND", "[thermal]") {
  TempTree empty;
  REQUIRE(absl::IsNotFound(ReadThermalZones(empty.root()).status()));
}

TEST_CASE("get_throttled 50005 decodes to under-voltage and throttling now and since boot",
          "[power]") {
  absl::StatusOr<PowerState> power = ReadPowerState(Fixture("pi3b"));
  REQUIRE(power.ok());
  CHECK(power->raw == 0x50005);
  CHECK(power->now.under_voltage);
  CHECK_FALSE(power->now.arm_frequency_capped);
  CHECK(power->now.throttled);
  CHECK_FALSE(power->now.soft_temperature_limit);
  CHECK(power->since_boot.under_voltage);
  CHECK_FALSE(power->since_boot.arm_frequency_capped);
  CHECK(power->since_boot.throttled);
  CHECK_FALSE(power->since_boot.soft_temperature_limit);
}

TEST_CASE("each get_throttled bit maps to its own condition", "[power]") {
  const PowerState capped = DecodePowerState(0x2);
  CHECK(capped.now.arm_frequency_capped);
  CHECK_FALSE(capped.now.under_voltage);
  CHECK_FALSE(capped.since_boot.arm_frequency_capped);
  const PowerState soft_since_boot = DecodePowerState(0x80000);
  CHECK(soft_since_boot.since_boot.soft_temperature_limit);
  CHECK_FALSE(soft_since_boot.now.soft_temperature_limit);
  const PowerState capped_since_boot = DecodePowerState(0x20000);
  CHECK(capped_since_boot.since_boot.arm_frequency_capped);
  CHECK_FALSE(capped_since_boot.since_boot.throttled);
}

TEST_CASE("get_throttled in vcgencmd's 0x form is accepted", "[power]") {
  TempTree tree;
  tree.Write(kThrottledPath, "0x80008\n");
  absl::StatusOr<PowerState> power = ReadPowerState(tree.root());
  REQUIRE(power.ok());
  CHECK(power->raw == 0x80008);
  CHECK(power->now.soft_temperature_limit);
}

TEST_CASE("no get_throttled (not a Pi) is NOT_FOUND", "[power]") {
  TempTree empty;
  REQUIRE(absl::IsNotFound(ReadPowerState(empty.root()).status()));
}

TEST_CASE("get_throttled that is not hexadecimal is DATA_LOSS", "[power]") {
  absl::StatusOr<PowerState> power = ReadPowerState(Fixture("broken"));
  REQUIRE(absl::IsDataLoss(power.status()));
  CHECK(MessageContains(power.status(), "get_throttled line 1"));
}

TEST_CASE("get_throttled wider than 32 bits is DATA_LOSS", "[power]") {
  TempTree tree;
  tree.Write(kThrottledPath, "100000000\n");
  REQUIRE(absl::IsDataLoss(ReadPowerState(tree.root()).status()));
}

TEST_CASE("empty get_throttled is DATA_LOSS", "[power]") {
  TempTree tree;
  tree.Write(kThrottledPath, "\n");
  REQUIRE(absl::IsDataLoss(ReadPowerState(tree.root()).status()));
}

TEST_CASE("device-tree model loses its terminating NUL", "[model]") {
  absl::StatusOr<std::string> model = ReadDeviceModel(Fixture("pi3b"));
  REQUIRE(model.ok());
  CHECK(*model == "Raspberry Pi 3 Model B Rev 1.2");
}

TEST_CASE("device-tree model falls back to /sys/firmware/devicetree", "[model]") {
  TempTree tree;
  tree.Write("sys/firmware/devicetree/base/model",
             std::string("Raspberry Pi 5 Model B Rev 1.0\0", 31));
  absl::StatusOr<std::string> model = ReadDeviceModel(tree.root());
  REQUIRE(model.ok());
  CHECK(*model == "Raspberry Pi 5 Model B Rev 1.0");
}

TEST_CASE("no device tree is NOT_FOUND", "[model]") {
  TempTree empty;
  REQUIRE(absl::IsNotFound(ReadDeviceModel(empty.root()).status()));
}

TEST_CASE("an empty device-tree model is DATA_LOSS", "[model]") {
  absl::StatusOr<std::string> model = ReadDeviceModel(Fixture("broken"));
  REQUIRE(absl::IsDataLoss(model.status()));
  CHECK(MessageContains(model.status(), "broken/proc/device-tree/model"));
}

TEST_CASE("a device-tree model holding several strings is DATA_LOSS", "[model]") {
  TempTree tree;
  tree.Write("proc/device-tree/model", std::string("one\0two\0", 8));
  REQUIRE(absl::IsDataLoss(ReadDeviceModel(tree.root()).status()));
}

}  // namespace
}  // namespace pi::agent::metrics
