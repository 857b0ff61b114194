#include "node-agent/gpio/libgpiod_backend.h"

#include <catch2/catch.hpp>

#include "common/system/clock.h"
#include "node-agent/gpio/chip_selector.h"
#include "node-agent/gpio/gpio_controller.h"
#include "tests/node-agent/gpio/gpio_test_util.h"

// These run against the real /dev of whatever machine runs the tests: a build machine without
// GPIO chips or a Pi with them. They only use selectors and paths that cannot exist, so they pass
// on both and never touch a real pin.
namespace pi::agent::gpio {
namespace {

constexpr char kImpossibleLabel[] = "pi-agent-test-no-such-chip";

const ChipInfo kMissingChip{"gpiochip-pi-agent-test", "pi-agent-test",
                            "/dev/gpiochip-pi-agent-test-missing", 8};

TEST_CASE("libgpiod lists the chips of this machine without failing", "[gpio][libgpiod]") {
  LibgpiodBackend backend;
  absl::StatusOr<std::vector<ChipInfo>> chips = backend.ListChips();
  REQUIRE_OK(chips);
  for (const ChipInfo& chip : *chips) {
    CHECK_THAT(chip.name, Catch::StartsWith("gpiochip"));
    CHECK_THAT(chip.path, Catch::StartsWith("/dev/gpiochip"));
  }
}

TEST_CASE("libgpiod lookup of an absent chip is NOT_FOUND with a clear message",
          "[gpio][libgpiod]") {
  LibgpiodBackend backend;
  absl::StatusOr<std::vector<ChipInfo>> chips = backend.ListChips();
  REQUIRE_OK(chips);
  absl::StatusOr<ChipInfo> chip = SelectChip(*chips, kImpossibleLabel);
  REQUIRE_CODE(chip, absl::StatusCode::kNotFound);
  const std::string message(chip.status().message());
  CHECK_THAT(message, Catch::StartsWith("no GPIO chip matches 'pi-agent-test-no-such-chip'; "));
  if (chips->empty()) {
    CHECK(message ==
          "no GPIO chip matches 'pi-agent-test-no-such-chip'; found none (is /dev/gpiochip* "
          "present and readable by this user?)");
  } else {
    CHECK_THAT(message, Catch::Contains("found " + chips->front().name));
  }
}

TEST_CASE("libgpiod controller never reports success for an absent chip", "[gpio][libgpiod]") {
  LibgpiodBackend backend;
  pi::common::ManualClock clock;
  absl::StatusOr<std::unique_ptr<GpioController>> controller = GpioController::Create(
      GpioConfig{.chip = kImpossibleLabel, .allowed_lines = {{.line = "0-63"}}}, backend, clock);
  REQUIRE_OK(controller);
  for (GpioAction action :
       {GpioAction::kRead, GpioAction::kWrite, GpioAction::kConfigure, GpioAction::kRelease}) {
    GpioCommand command{
        .offset = 17,
        .action = action,
        .value = 1,
        .direction = action == GpioAction::kRead ? Direction::kInput : Direction::kOutput};
    absl::StatusOr<GpioResult> result = (*controller)->Execute(command);
    INFO(GpioActionName(action));
    REQUIRE_CODE(result, absl::StatusCode::kNotFound);
    CHECK_THAT(std::string(result.status().message()),
               Catch::StartsWith("no GPIO chip matches 'pi-agent-test-no-such-chip'"));
  }
  REQUIRE_CODE((*controller)->Probe(), absl::StatusCode::kNotFound);
  CHECK((*controller)->HeldLines().empty());
}

TEST_CASE("libgpiod request on a missing chip device fails", "[gpio][libgpiod]") {
  LibgpiodBackend backend;
  absl::StatusOr<std::unique_ptr<LineHandle>> handle =
      backend.RequestLine(kMissingChip, 0, LineConfig{});
  REQUIRE_FALSE(handle.ok());
  CHECK_THAT(std::string(handle.status().message()),
             Catch::Contains("/dev/gpiochip-pi-agent-test-missing") ||
                 Catch::Contains("gpiochip-pi-agent-test"));
}

TEST_CASE("libgpiod line info of a missing chip device fails", "[gpio][libgpiod]") {
  LibgpiodBackend backend;
  REQUIRE_FALSE(backend.GetLineInfo(kMissingChip, 0).ok());
  REQUIRE_FALSE(backend.FindLineOffset(kMissingChip, "GPIO17").ok());
}

TEST_CASE("libgpiod rejects an offset past the chip's lines before opening it",
          "[gpio][libgpiod]") {
  LibgpiodBackend backend;
  REQUIRE_CODE(backend.GetLineInfo(kMissingChip, 8), absl::StatusCode::kNotFound);
  REQUIRE_CODE(backend.RequestLine(kMissingChip, 8, LineConfig{}), absl::StatusCode::kNotFound);
}

TEST_CASE("libgpiod rejects an initial value other than 0 or 1", "[gpio][libgpiod]") {
  LibgpiodBackend backend;
  REQUIRE_CODE(backend.RequestLine(kMissingChip, 0,
                                   LineConfig{.direction = Direction::kOutput, .output_value = 2}),
               absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pi::agent::gpio
