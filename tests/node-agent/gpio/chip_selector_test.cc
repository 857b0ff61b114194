#include "node-agent/gpio/chip_selector.h"

#include <catch2/catch.hpp>

#include "tests/node-agent/gpio/gpio_test_util.h"

namespace pi::agent::gpio {
namespace {

std::vector<ChipInfo> PiChips() {
  return {{"gpiochip0", "pinctrl-bcm2835", "/dev/gpiochip0", 54},
          {"gpiochip1", "raspberrypi-exp-gpio", "/dev/gpiochip1", 8}};
}

TEST_CASE("SelectChip finds a chip by its label", "[gpio][chip]") {
  absl::StatusOr<ChipInfo> chip = SelectChip(PiChips(), "raspberrypi-exp-gpio");
  REQUIRE_OK(chip);
  CHECK(chip->name == "gpiochip1");
}

TEST_CASE("SelectChip finds a chip by its name", "[gpio][chip]") {
  absl::StatusOr<ChipInfo> chip = SelectChip(PiChips(), "gpiochip1");
  REQUIRE_OK(chip);
  CHECK(chip->label == "raspberrypi-exp-gpio");
}

TEST_CASE("SelectChip finds a chip by its path", "[gpio][chip]") {
  absl::StatusOr<ChipInfo> chip = SelectChip(PiChips(), "/dev/gpiochip0");
  REQUIRE_OK(chip);
  CHECK(chip->label == "pinctrl-bcm2835");
}

TEST_CASE("SelectChip prefers a label over another chip's name", "[gpio][chip]") {
  // After a renumbering a label may coincide with another chip's name; the label is the stable
  // identity, so it wins.
  std::vector<ChipInfo> chips = {{"gpiochip0", "other", "/dev/gpiochip0", 4},
                                 {"gpiochip4", "gpiochip0", "/dev/gpiochip4", 54}};
  absl::StatusOr<ChipInfo> chip = SelectChip(chips, "gpiochip0");
  REQUIRE_OK(chip);
  CHECK(chip->name == "gpiochip4");
}

TEST_CASE("SelectChip reports an unknown chip with the chips that exist", "[gpio][chip]") {
  absl::StatusOr<ChipInfo> chip = SelectChip(PiChips(), "pinctrl-rp1");
  REQUIRE_CODE(chip, absl::StatusCode::kNotFound);
  CHECK(chip.status().message() ==
        "no GPIO chip matches 'pinctrl-rp1'; found gpiochip0 (pinctrl-bcm2835), gpiochip1 "
        "(raspberrypi-exp-gpio)");
}

TEST_CASE("SelectChip on a system without chips says where it looked", "[gpio][chip]") {
  absl::StatusOr<ChipInfo> chip = SelectChip({}, "pinctrl-bcm2835");
  REQUIRE_CODE(chip, absl::StatusCode::kNotFound);
  CHECK(chip.status().message() ==
        "no GPIO chip matches 'pinctrl-bcm2835'; found none (is /dev/gpiochip* present and "
        "readable by this user?)");
}

TEST_CASE("SelectChip does not match a partial label", "[gpio][chip]") {
  REQUIRE_CODE(SelectChip(PiChips(), "pinctrl"), absl::StatusCode::kNotFound);
}

TEST_CASE("SelectDefaultChip uses the configured selector", "[gpio][chip]") {
  absl::StatusOr<ChipInfo> chip = SelectDefaultChip(PiChips(), "gpiochip1");
  REQUIRE_OK(chip);
  CHECK(chip->name == "gpiochip1");
}

TEST_CASE("SelectDefaultChip without a configured chip picks the Pi header chip", "[gpio][chip]") {
  std::vector<ChipInfo> pi5 = {{"gpiochip0", "gpio-brcmstb@107d508500", "/dev/gpiochip0", 32},
                               {"gpiochip4", "pinctrl-rp1", "/dev/gpiochip4", 54}};
  absl::StatusOr<ChipInfo> chip = SelectDefaultChip(pi5, "");
  REQUIRE_OK(chip);
  CHECK(chip->name == "gpiochip4");
}

TEST_CASE("SelectDefaultChip without a header chip asks for gpio.chip", "[gpio][chip]") {
  std::vector<ChipInfo> chips = {{"gpiochip0", "gpio-mockup-A", "/dev/gpiochip0", 8}};
  absl::StatusOr<ChipInfo> chip = SelectDefaultChip(chips, "");
  REQUIRE_CODE(chip, absl::StatusCode::kNotFound);
  CHECK_THAT(
      std::string(chip.status().message()),
      Catch::Contains("found gpiochip0 (gpio-mockup-A)") && Catch::Contains("set gpio.chip"));
}

TEST_CASE("SelectDefaultChip refuses to guess between two header chips", "[gpio][chip]") {
  std::vector<ChipInfo> chips = {{"gpiochip0", "pinctrl-bcm2835", "/dev/gpiochip0", 54},
                                 {"gpiochip2", "pinctrl-bcm2711", "/dev/gpiochip2", 58}};
  REQUIRE_CODE(SelectDefaultChip(chips, ""), absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("IsRaspberryPiHeaderChip knows the Pi 1-5 header controllers", "[gpio][chip]") {
  for (const char* label : {"pinctrl-bcm2835", "pinctrl-bcm2711", "pinctrl-rp1"}) {
    CHECK(IsRaspberryPiHeaderChip({"gpiochip0", label, "/dev/gpiochip0", 54}));
  }
  CHECK_FALSE(IsRaspberryPiHeaderChip({"gpiochip1", "raspberrypi-exp-gpio", "/dev/gpiochip1", 8}));
}

}  // namespace
}  // namespace pi::agent::gpio
