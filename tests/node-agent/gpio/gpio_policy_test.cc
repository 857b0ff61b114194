#include "node-agent/gpio/gpio_policy.h"

#include <catch2/catch.hpp>

#include "tests/node-agent/gpio/gpio_test_util.h"

namespace pi::agent::gpio {
namespace {

const ChipInfo kHeader{"gpiochip0", "pinctrl-bcm2835", "/dev/gpiochip0", 54};
const ChipInfo kFirmware{"gpiochip1", "raspberrypi-exp-gpio", "/dev/gpiochip1", 8};
const std::vector<ChipInfo> kChips{kHeader, kFirmware};

GpioPolicy Policy(std::vector<GpioLineRule> rules, std::string chip = "") {
  absl::StatusOr<GpioPolicy> policy =
      GpioPolicy::Create(GpioConfig{.chip = std::move(chip), .allowed_lines = std::move(rules)});
  REQUIRE_OK(policy);
  return *std::move(policy);
}

absl::Status CheckHeader(const GpioPolicy& policy, unsigned int offset, Direction direction) {
  return policy.Check(kChips, kHeader, offset, "GPIO" + std::to_string(offset), direction);
}

absl::Status CreateWith(GpioLineRule rule) {
  return GpioPolicy::Create(GpioConfig{.allowed_lines = {std::move(rule)}}).status();
}

TEST_CASE("Policy allows a line listed by offset", "[gpio][policy]") {
  GpioPolicy policy = Policy({{.line = "17"}});
  REQUIRE_OK(CheckHeader(policy, 17, Direction::kOutput));
  REQUIRE_OK(CheckHeader(policy, 17, Direction::kInput));
}

TEST_CASE("Policy allows a line listed by name", "[gpio][policy]") {
  GpioPolicy policy = Policy({{.line = "GPIO17"}});
  REQUIRE_OK(CheckHeader(policy, 17, Direction::kOutput));
  REQUIRE_CODE(CheckHeader(policy, 18, Direction::kOutput), absl::StatusCode::kPermissionDenied);
}

TEST_CASE("Policy denies a line that is not listed", "[gpio][policy]") {
  GpioPolicy policy = Policy({{.line = "17"}});
  absl::Status status = CheckHeader(policy, 5, Direction::kOutput);
  REQUIRE_CODE(status, absl::StatusCode::kPermissionDenied);
  CHECK(status.message() == "line 5 (GPIO5) is not in gpio.allowed_lines");
}

TEST_CASE("Policy denies everything when no lines are listed", "[gpio][policy]") {
  GpioPolicy policy = Policy({});
  REQUIRE_CODE(CheckHeader(policy, 17, Direction::kInput), absl::StatusCode::kPermissionDenied);
}

TEST_CASE("Policy allows every ordinary line of a range", "[gpio][policy]") {
  GpioPolicy policy = Policy({{.line = "4-27"}});
  for (unsigned int offset : {4u, 13u, 16u, 27u}) {
    REQUIRE_OK(CheckHeader(policy, offset, Direction::kOutput));
  }
  REQUIRE_CODE(CheckHeader(policy, 28, Direction::kOutput), absl::StatusCode::kPermissionDenied);
}

TEST_CASE("Policy never grants UART pins through a range", "[gpio][policy]") {
  GpioPolicy policy = Policy({{.line = "4-27"}});
  absl::Status status = CheckHeader(policy, 14, Direction::kOutput);
  REQUIRE_CODE(status, absl::StatusCode::kPermissionDenied);
  CHECK(status.message() ==
        "line 14 (GPIO14) is a UART pin; list it on its own in gpio.allowed_lines to use it");
  REQUIRE_CODE(CheckHeader(policy, 15, Direction::kInput), absl::StatusCode::kPermissionDenied);
}

TEST_CASE("Policy never grants I2C pins through a range", "[gpio][policy]") {
  GpioPolicy policy = Policy({{.line = "0-27"}});
  for (unsigned int offset : {0u, 1u, 2u, 3u}) {
    absl::Status status = CheckHeader(policy, offset, Direction::kInput);
    REQUIRE_CODE(status, absl::StatusCode::kPermissionDenied);
    CHECK_THAT(std::string(status.message()), Catch::Contains("I2C pin"));
  }
  REQUIRE_OK(CheckHeader(policy, 4, Direction::kInput));
}

TEST_CASE("Policy allows a UART pin listed on its own by offset", "[gpio][policy]") {
  GpioPolicy policy = Policy({{.line = "4-27"}, {.line = "14"}});
  REQUIRE_OK(CheckHeader(policy, 14, Direction::kOutput));
  REQUIRE_CODE(CheckHeader(policy, 15, Direction::kOutput), absl::StatusCode::kPermissionDenied);
}

TEST_CASE("Policy allows an I2C pin listed on its own by name", "[gpio][policy]") {
  GpioPolicy policy = Policy({{.line = "0-27"}, {.line = "GPIO2"}});
  REQUIRE_OK(CheckHeader(policy, 2, Direction::kInput));
  REQUIRE_CODE(CheckHeader(policy, 3, Direction::kInput), absl::StatusCode::kPermissionDenied);
}

TEST_CASE("Policy protects UART pins on the Pi 4 and Pi 5 header chips too", "[gpio][policy]") {
  for (const char* label : {"pinctrl-bcm2711", "pinctrl-rp1"}) {
    const ChipInfo header{"gpiochip0", label, "/dev/gpiochip0", 54};
    GpioPolicy policy = Policy({{.line = "4-27"}});
    REQUIRE_CODE(policy.Check({header}, header, 14, "GPIO14", Direction::kInput),
                 absl::StatusCode::kPermissionDenied);
    REQUIRE_OK(policy.Check({header}, header, 17, "GPIO17", Direction::kInput));
  }
}

TEST_CASE("Policy grants low offsets of other chips through a range", "[gpio][policy]") {
  const ChipInfo expander{"gpiochip2", "pca9555", "/dev/gpiochip2", 16};
  GpioPolicy policy = Policy({{.chip = "pca9555", .line = "0-15"}});
  REQUIRE_OK(policy.Check({kHeader, expander}, expander, 1, "", Direction::kOutput));
  REQUIRE_OK(policy.Check({kHeader, expander}, expander, 14, "", Direction::kOutput));
}

TEST_CASE("Policy applies entries without a chip to the default chip only", "[gpio][policy]") {
  GpioPolicy policy = Policy({{.line = "3"}});
  REQUIRE_OK(policy.Check(kChips, kHeader, 3, "GPIO3", Direction::kOutput));
  absl::Status status = policy.Check(kChips, kFirmware, 3, "LAN_RUN", Direction::kOutput);
  REQUIRE_CODE(status, absl::StatusCode::kPermissionDenied);
  CHECK(status.message() ==
        "line 3 (LAN_RUN) on gpiochip1 (raspberrypi-exp-gpio) is not in gpio.allowed_lines");
}

TEST_CASE("Policy matches an entry's chip by label, name or path", "[gpio][policy]") {
  for (const char* selector : {"raspberrypi-exp-gpio", "gpiochip1", "/dev/gpiochip1"}) {
    GpioPolicy policy = Policy({{.chip = selector, .line = "2"}});
    REQUIRE_OK(policy.Check(kChips, kFirmware, 2, "STATUS_LED", Direction::kOutput));
    REQUIRE_CODE(policy.Check(kChips, kHeader, 2, "GPIO2", Direction::kOutput),
                 absl::StatusCode::kPermissionDenied);
  }
}

TEST_CASE("Policy uses the configured default chip for entries without a chip", "[gpio][policy]") {
  GpioPolicy policy = Policy({{.line = "STATUS_LED"}}, "gpiochip1");
  REQUIRE_OK(policy.Check(kChips, kFirmware, 2, "STATUS_LED", Direction::kOutput));
}

TEST_CASE("Policy refuses to drive a line allowed for input only", "[gpio][policy]") {
  GpioPolicy policy = Policy({{.line = "22", .mode = "input"}});
  REQUIRE_OK(CheckHeader(policy, 22, Direction::kInput));
  absl::Status status = CheckHeader(policy, 22, Direction::kOutput);
  REQUIRE_CODE(status, absl::StatusCode::kPermissionDenied);
  CHECK_THAT(std::string(status.message()),
             Catch::StartsWith("line 22 (GPIO22) is allowed for input only"));
}

TEST_CASE("Policy refuses to request a line allowed for output only as an input",
          "[gpio][policy]") {
  GpioPolicy policy = Policy({{.line = "23", .mode = "output"}});
  REQUIRE_OK(CheckHeader(policy, 23, Direction::kOutput));
  absl::Status status = CheckHeader(policy, 23, Direction::kInput);
  REQUIRE_CODE(status, absl::StatusCode::kPermissionDenied);
  CHECK_THAT(std::string(status.message()),
             Catch::StartsWith("line 23 (GPIO23) is allowed for output only"));
}

TEST_CASE("Policy lets a single-line entry override its range's mode", "[gpio][policy]") {
  GpioPolicy policy = Policy({{.line = "4-27"}, {.line = "22", .mode = "input"}});
  REQUIRE_CODE(CheckHeader(policy, 22, Direction::kOutput), absl::StatusCode::kPermissionDenied);
  REQUIRE_OK(CheckHeader(policy, 21, Direction::kOutput));
}

TEST_CASE("Policy config rejects an empty line", "[gpio][policy][config]") {
  absl::Status status = CreateWith({.line = ""});
  REQUIRE_CODE(status, absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(status.message()), Catch::Contains("the line is empty"));
}

TEST_CASE("Policy config rejects a range with a non-number end", "[gpio][policy][config]") {
  absl::Status status = CreateWith({.line = "4-x"});
  REQUIRE_CODE(status, absl::StatusCode::kInvalidArgument);
  CHECK(status.message() ==
        "gpio.allowed_lines entry '4-x': '4-x' is not a range; write two offsets like 4-27");
}

TEST_CASE("Policy config rejects a range with a missing end", "[gpio][policy][config]") {
  REQUIRE_CODE(CreateWith({.line = "4-"}), absl::StatusCode::kInvalidArgument);
  REQUIRE_CODE(CreateWith({.line = "-4"}), absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Policy config rejects a backwards range", "[gpio][policy][config]") {
  absl::Status status = CreateWith({.line = "27-4"});
  REQUIRE_CODE(status, absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(status.message()), Catch::Contains("write 4-27"));
}

TEST_CASE("Policy config rejects a malformed offset", "[gpio][policy][config]") {
  REQUIRE_CODE(CreateWith({.line = "17a"}), absl::StatusCode::kInvalidArgument);
  REQUIRE_CODE(CreateWith({.line = "99999999999"}), absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Policy config rejects a line with whitespace", "[gpio][policy][config]") {
  REQUIRE_CODE(CreateWith({.line = "GPIO 17"}), absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Policy config rejects an unknown mode", "[gpio][policy][config]") {
  absl::Status status = CreateWith({.line = "17", .mode = "inout"});
  REQUIRE_CODE(status, absl::StatusCode::kInvalidArgument);
  CHECK(status.message() ==
        "gpio.allowed_lines entry '17': unknown mode 'inout'; use input, output or any");
}

TEST_CASE("Policy config rejects a repeated entry", "[gpio][policy][config]") {
  absl::Status status =
      GpioPolicy::Create(GpioConfig{.allowed_lines = {{.line = "17"}, {.line = "17"}}}).status();
  REQUIRE_CODE(status, absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(status.message()), Catch::Contains("repeats an earlier entry"));
  REQUIRE_CODE(
      GpioPolicy::Create(GpioConfig{.allowed_lines = {{.line = "GPIO4"}, {.line = "GPIO4"}}}),
      absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Policy config rejects overlapping ranges on one chip", "[gpio][policy][config]") {
  absl::Status status =
      GpioPolicy::Create(GpioConfig{.allowed_lines = {{.line = "4-12"}, {.line = "10-20"}}})
          .status();
  REQUIRE_CODE(status, absl::StatusCode::kInvalidArgument);
  CHECK(status.message() ==
        "gpio.allowed_lines entry '10-20' overlaps gpio.allowed_lines entry '4-12'; ranges on "
        "one chip must not overlap");
}

TEST_CASE("Policy config accepts the same range on different chips", "[gpio][policy][config]") {
  REQUIRE_OK(GpioPolicy::Create(
      GpioConfig{.allowed_lines = {{.line = "0-7"}, {.chip = "gpiochip1", .line = "0-7"}}}));
}

}  // namespace
}  // namespace pi::agent::gpio
