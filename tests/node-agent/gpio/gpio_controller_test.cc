#include "node-agent/gpio/gpio_controller.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <thread>

#include "common/system/clock.h"
#include "node-agent/gpio/in_memory_backend.h"
#include "tests/node-agent/gpio/gpio_test_util.h"

namespace pi::agent::gpio {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

GpioConfig TestConfig() {
  return GpioConfig{.allowed_lines = {{.line = "4-21"},
                                      {.line = "22", .mode = "input"},
                                      {.line = "23", .mode = "output"},
                                      {.line = "24-27"},
                                      {.chip = "raspberrypi-exp-gpio", .line = "STATUS_LED"}}};
}

struct Fixture {
  explicit Fixture(GpioConfig config = TestConfig()) {
    absl::StatusOr<std::unique_ptr<GpioController>> created =
        GpioController::Create(std::move(config), backend, clock);
    REQUIRE_OK(created);
    controller = *std::move(created);
  }

  absl::StatusOr<GpioResult> Run(GpioCommand command) { return controller->Execute(command); }

  bool Used(unsigned int offset) {
    absl::StatusOr<LineInfo> info =
        backend.GetLineInfo(ChipInfo{"gpiochip0", "pinctrl-bcm2835", "/dev/gpiochip0", 54}, offset);
    REQUIRE_OK(info);
    return info->used;
  }

  pi::common::ManualClock clock;
  InMemoryGpioBackend backend;
  std::unique_ptr<GpioController> controller;
};

GpioCommand Read(std::int64_t offset) {
  return GpioCommand{.offset = offset, .action = GpioAction::kRead};
}

GpioCommand Write(std::int64_t offset, int value, milliseconds hold = milliseconds::zero()) {
  return GpioCommand{.offset = offset, .action = GpioAction::kWrite, .value = value, .hold = hold};
}

GpioCommand Release(std::int64_t offset) {
  return GpioCommand{.offset = offset, .action = GpioAction::kRelease};
}

GpioCommand Configure(std::int64_t offset, Direction direction) {
  return GpioCommand{.offset = offset, .action = GpioAction::kConfigure, .direction = direction};
}

// --- Chip and line lookup ---------------------------------------------------------------------

TEST_CASE("Controller finds the chip by label, name and path", "[gpio][controller]") {
  Fixture f;
  for (const char* selector : {"pinctrl-bcm2835", "gpiochip0", "/dev/gpiochip0"}) {
    GpioCommand command = Read(17);
    command.chip = selector;
    absl::StatusOr<GpioResult> result = f.Run(command);
    REQUIRE_OK(result);
    CHECK(result->chip_name == "gpiochip0");
    CHECK(result->chip_label == "pinctrl-bcm2835");
  }
}

TEST_CASE("Controller uses the Pi header chip when the request names none", "[gpio][controller]") {
  Fixture f;
  absl::StatusOr<GpioResult> result = f.Run(Read(17));
  REQUIRE_OK(result);
  CHECK(result->chip_label == "pinctrl-bcm2835");
  CHECK(result->line_name == "GPIO17");
}

TEST_CASE("Controller uses gpio.chip when the request names no chip", "[gpio][controller]") {
  GpioConfig config = TestConfig();
  config.chip = "raspberrypi-exp-gpio";
  config.allowed_lines = {{.line = "STATUS_LED"}};
  Fixture f(config);
  absl::StatusOr<GpioResult> result =
      f.Run(GpioCommand{.line_name = "STATUS_LED", .action = GpioAction::kWrite, .value = 1});
  REQUIRE_OK(result);
  CHECK(result->chip_name == "gpiochip1");
  CHECK(result->offset == 2);
}

TEST_CASE("Controller reports an unknown chip as NOT_FOUND", "[gpio][controller]") {
  Fixture f;
  GpioCommand command = Read(17);
  command.chip = "pinctrl-rp1";
  absl::StatusOr<GpioResult> result = f.Run(command);
  REQUIRE_CODE(result, absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(result.status().message()),
             Catch::StartsWith("no GPIO chip matches 'pinctrl-rp1'; found gpiochip0"));
}

TEST_CASE("Controller reports an unknown line offset as NOT_FOUND", "[gpio][controller]") {
  Fixture f;
  absl::StatusOr<GpioResult> result = f.Run(Write(54, 1));
  REQUIRE_CODE(result, absl::StatusCode::kNotFound);
  CHECK(result.status().message() ==
        "gpiochip0 (pinctrl-bcm2835) has no line 54; it has 54 lines (0-53)");
}

TEST_CASE("Controller reports an unknown line name as NOT_FOUND", "[gpio][controller]") {
  Fixture f;
  absl::StatusOr<GpioResult> result =
      f.Run(GpioCommand{.line_name = "GPIO99", .action = GpioAction::kRead});
  REQUIRE_CODE(result, absl::StatusCode::kNotFound);
  CHECK(result.status().message() == "no line named 'GPIO99' on gpiochip0 (pinctrl-bcm2835)");
}

TEST_CASE("Controller addresses a line by name", "[gpio][controller]") {
  Fixture f;
  absl::StatusOr<GpioResult> result =
      f.Run(GpioCommand{.line_name = "GPIO17", .action = GpioAction::kWrite, .value = 1});
  REQUIRE_OK(result);
  CHECK(result->offset == 17);
  CHECK(*f.backend.PhysicalLevel("gpiochip0", 17) == 1);
}

TEST_CASE("Controller without any chip reports where it looked", "[gpio][controller]") {
  pi::common::ManualClock clock;
  InMemoryGpioBackend backend(std::vector<SimulatedChip>{});
  absl::StatusOr<std::unique_ptr<GpioController>> controller =
      GpioController::Create(GpioConfig{.chip = "pinctrl-bcm2835"}, backend, clock);
  REQUIRE_OK(controller);
  absl::StatusOr<GpioResult> result = (*controller)->Execute(Read(17));
  REQUIRE_CODE(result, absl::StatusCode::kNotFound);
  CHECK(result.status().message() ==
        "no GPIO chip matches 'pinctrl-bcm2835'; found none (is /dev/gpiochip* present and "
        "readable by this user?)");
  REQUIRE_CODE((*controller)->Probe(), absl::StatusCode::kNotFound);
}

TEST_CASE("Controller probe succeeds when the default chip is present", "[gpio][controller]") {
  Fixture f;
  REQUIRE_OK(f.controller->Probe());
}

// --- READ / WRITE / hold ----------------------------------------------------------------------

TEST_CASE("Controller writes a value and reads it back", "[gpio][controller]") {
  Fixture f;
  absl::StatusOr<GpioResult> written = f.Run(Write(17, 1));
  REQUIRE_OK(written);
  CHECK(*written->value == 1);
  CHECK(written->direction == Direction::kOutput);
  CHECK(written->held);
  CHECK_FALSE(written->held_until.has_value());

  absl::StatusOr<GpioResult> read = f.Run(Read(17));
  REQUIRE_OK(read);
  CHECK(*read->value == 1);
  CHECK(read->held);

  REQUIRE_OK(f.Run(Write(17, 0)));
  CHECK(*f.Run(Read(17))->value == 0);
  CHECK(*f.backend.PhysicalLevel("gpiochip0", 17) == 0);
}

TEST_CASE("Controller keeps a written value while it holds the line", "[gpio][controller]") {
  Fixture f;
  REQUIRE_OK(f.Run(Write(17, 1)));
  f.clock.Advance(std::chrono::hours(24));
  CHECK(f.controller->ReleaseExpired() == 0);
  CHECK(f.Used(17));
  CHECK(*f.backend.PhysicalLevel("gpiochip0", 17) == 1);
  absl::StatusOr<LineInfo> info =
      f.backend.GetLineInfo({"gpiochip0", "pinctrl-bcm2835", "/dev/gpiochip0", 54}, 17);
  CHECK(info->consumer == "pi-agent");
  CHECK_FALSE(f.controller->NextExpiry().has_value());
}

TEST_CASE("Controller reads a line it does not hold as an input and lets it go",
          "[gpio][controller]") {
  Fixture f;
  REQUIRE_OK(f.backend.SetInputLevel("gpiochip0", 22, 1));
  absl::StatusOr<GpioResult> read = f.Run(Read(22));
  REQUIRE_OK(read);
  CHECK(*read->value == 1);
  CHECK(read->direction == Direction::kInput);
  CHECK_FALSE(read->held);
  CHECK_FALSE(f.Used(22));
}

TEST_CASE("Controller applies active_low to a momentary read", "[gpio][controller]") {
  Fixture f;
  REQUIRE_OK(f.backend.SetInputLevel("gpiochip0", 22, 1));
  GpioCommand command = Read(22);
  command.active_low = true;
  absl::StatusOr<GpioResult> read = f.Run(command);
  REQUIRE_OK(read);
  CHECK(*read->value == 0);
  CHECK(read->active_low);
}

TEST_CASE("Controller releases a line when its hold ends", "[gpio][controller]") {
  Fixture f;
  absl::StatusOr<GpioResult> written = f.Run(Write(17, 1, seconds(5)));
  REQUIRE_OK(written);
  REQUIRE(written->held_until.has_value());
  CHECK(*written->held_until == f.clock.WallNow() + seconds(5));
  CHECK(f.controller->NextExpiry() == f.clock.Now() + seconds(5));

  f.clock.Advance(milliseconds(4999));
  CHECK(f.controller->ReleaseExpired() == 0);
  CHECK(f.Used(17));

  f.clock.Advance(milliseconds(1));
  CHECK(f.controller->ReleaseExpired() == 1);
  CHECK_FALSE(f.Used(17));
  CHECK_FALSE(f.controller->NextExpiry().has_value());
  REQUIRE_CODE(f.Run(Release(17)), absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("Controller restarts the hold on every write", "[gpio][controller]") {
  Fixture f;
  REQUIRE_OK(f.Run(Write(17, 1, seconds(5))));
  f.clock.Advance(seconds(4));
  REQUIRE_OK(f.Run(Write(17, 0, seconds(5))));
  f.clock.Advance(seconds(4));
  CHECK(f.controller->ReleaseExpired() == 0);
  REQUIRE_OK(f.Run(Write(17, 0)));
  f.clock.Advance(seconds(10));
  CHECK(f.controller->ReleaseExpired() == 0);
  CHECK(f.Used(17));
}

TEST_CASE("Controller reports the earliest hold end as the next expiry", "[gpio][controller]") {
  Fixture f;
  REQUIRE_OK(f.Run(Write(17, 1, seconds(30))));
  REQUIRE_OK(f.Run(Write(18, 1, seconds(10))));
  REQUIRE_OK(f.Run(Write(19, 1)));
  CHECK(f.controller->NextExpiry() == f.clock.Now() + seconds(10));
  f.clock.Advance(seconds(10));
  CHECK(f.controller->ReleaseExpired() == 1);
  CHECK(f.controller->NextExpiry() == f.clock.Now() + seconds(20));
}

TEST_CASE("Controller caps a hold at gpio.max_hold", "[gpio][controller]") {
  GpioConfig config = TestConfig();
  config.max_hold = seconds(10);
  Fixture f(config);
  absl::StatusOr<GpioResult> long_hold = f.Run(Write(17, 1, seconds(60)));
  REQUIRE_OK(long_hold);
  CHECK(*long_hold->held_until == f.clock.WallNow() + seconds(10));
  absl::StatusOr<GpioResult> until_release = f.Run(Write(18, 1));
  REQUIRE_OK(until_release);
  CHECK(*until_release->held_until == f.clock.WallNow() + seconds(10));
  absl::StatusOr<GpioResult> short_hold = f.Run(Write(19, 1, seconds(3)));
  CHECK(*short_hold->held_until == f.clock.WallNow() + seconds(3));
  f.clock.Advance(seconds(10));
  CHECK(f.controller->ReleaseExpired() == 3);
}

// --- RELEASE ----------------------------------------------------------------------------------

TEST_CASE("Controller releases a held line on RELEASE", "[gpio][controller]") {
  Fixture f;
  REQUIRE_OK(f.Run(Write(17, 1, seconds(5))));
  absl::StatusOr<GpioResult> released = f.Run(Release(17));
  REQUIRE_OK(released);
  CHECK_FALSE(released->held);
  CHECK_FALSE(released->held_until.has_value());
  CHECK_FALSE(f.Used(17));
  CHECK_FALSE(f.controller->NextExpiry().has_value());
  // Like the BCM pin controller, the pin keeps driving its last level after release.
  CHECK(*f.backend.PhysicalLevel("gpiochip0", 17) == 1);
}

TEST_CASE("Controller refuses to release a line it does not hold", "[gpio][controller]") {
  Fixture f;
  absl::StatusOr<GpioResult> released = f.Run(Release(17));
  REQUIRE_CODE(released, absl::StatusCode::kFailedPrecondition);
  CHECK(released.status().message() ==
        "pi-agent does not hold line 17 (GPIO17) on gpiochip0 (pinctrl-bcm2835); there is "
        "nothing to release");
}

TEST_CASE("Controller releases every line on ReleaseAll", "[gpio][controller]") {
  Fixture f;
  REQUIRE_OK(f.Run(Write(17, 1)));
  REQUIRE_OK(f.Run(Write(18, 1, seconds(5))));
  CHECK(f.controller->HeldLines().size() == 2);
  CHECK(f.controller->ReleaseAll() == 2);
  CHECK_FALSE(f.Used(17));
  CHECK_FALSE(f.Used(18));
  CHECK(f.controller->HeldLines().empty());
}

TEST_CASE("Destroying the controller releases its lines", "[gpio][controller]") {
  Fixture f;
  REQUIRE_OK(f.Run(Write(17, 1)));
  f.controller.reset();
  CHECK_FALSE(f.Used(17));
}

TEST_CASE("Controller lists the lines it holds", "[gpio][controller]") {
  Fixture f;
  REQUIRE_OK(f.Run(Write(17, 1, seconds(5))));
  std::vector<GpioResult> held = f.controller->HeldLines();
  REQUIRE(held.size() == 1);
  CHECK(held[0].offset == 17);
  CHECK(*held[0].value == 1);
  CHECK(held[0].held);
  CHECK(*held[0].held_until == f.clock.WallNow() + seconds(5));
}

// --- Busy lines -------------------------------------------------------------------------------

TEST_CASE("Controller reports a line held by another consumer as busy", "[gpio][controller]") {
  Fixture f;
  REQUIRE_OK(f.backend.SetExternalConsumer("gpiochip0", 17, "relayd"));
  absl::StatusOr<GpioResult> written = f.Run(Write(17, 1));
  REQUIRE_CODE(written, absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(written.status().message()),
             Catch::Contains("is busy: held by consumer 'relayd'"));
  REQUIRE_CODE(f.Run(Read(17)), absl::StatusCode::kFailedPrecondition);
  CHECK(f.controller->HeldLines().empty());
}

TEST_CASE("Controller keeps other processes off a line it holds", "[gpio][controller]") {
  Fixture f;
  REQUIRE_OK(f.Run(Write(17, 1)));
  REQUIRE_CODE(f.backend.RequestLine({"gpiochip0", "pinctrl-bcm2835", "/dev/gpiochip0", 54}, 17,
                                     LineConfig{.consumer = "other"}),
               absl::StatusCode::kFailedPrecondition);
}

// --- CONFIGURE --------------------------------------------------------------------------------

TEST_CASE("Controller configures and holds an output", "[gpio][controller]") {
  Fixture f;
  GpioCommand command = Configure(17, Direction::kOutput);
  command.drive = Drive::kOpenDrain;
  command.active_low = true;
  command.value = 1;
  absl::StatusOr<GpioResult> configured = f.Run(command);
  REQUIRE_OK(configured);
  CHECK(configured->held);
  CHECK(configured->drive == Drive::kOpenDrain);
  CHECK(configured->active_low);
  CHECK(*f.backend.PhysicalLevel("gpiochip0", 17) == 0);

  // A plain WRITE keeps the configured drive and polarity.
  absl::StatusOr<GpioResult> written = f.Run(Write(17, 0));
  REQUIRE_OK(written);
  CHECK(written->drive == Drive::kOpenDrain);
  CHECK(written->active_low);
  CHECK(*f.backend.PhysicalLevel("gpiochip0", 17) == 1);
}

TEST_CASE("Controller configures and holds an input with a pull-up", "[gpio][controller]") {
  Fixture f;
  GpioCommand command = Configure(22, Direction::kInput);
  command.bias = Bias::kPullUp;
  absl::StatusOr<GpioResult> configured = f.Run(command);
  REQUIRE_OK(configured);
  CHECK(configured->held);
  CHECK(configured->bias == Bias::kPullUp);
  CHECK(*configured->value == 1);
  CHECK(f.Used(22));
  REQUIRE_OK(f.backend.SetInputLevel("gpiochip0", 22, 0));
  CHECK(*f.Run(Read(22))->value == 0);
}

TEST_CASE("Controller switches a held output to an input", "[gpio][controller]") {
  Fixture f;
  GpioCommand output = Configure(17, Direction::kOutput);
  output.drive = Drive::kOpenDrain;
  REQUIRE_OK(f.Run(output));
  REQUIRE_OK(f.backend.SetInputLevel("gpiochip0", 17, 1));
  absl::StatusOr<GpioResult> input = f.Run(Configure(17, Direction::kInput));
  REQUIRE_OK(input);
  CHECK(input->direction == Direction::kInput);
  CHECK(input->drive == Drive::kPushPull);
  CHECK(*input->value == 1);
  CHECK(input->held);
}

TEST_CASE("Controller keeps a held line's direction when CONFIGURE names none",
          "[gpio][controller]") {
  Fixture f;
  REQUIRE_OK(f.Run(Write(17, 1)));
  GpioCommand command{.offset = 17, .action = GpioAction::kConfigure, .bias = Bias::kPullDown};
  absl::StatusOr<GpioResult> configured = f.Run(command);
  REQUIRE_OK(configured);
  CHECK(configured->direction == Direction::kOutput);
  CHECK(configured->bias == Bias::kPullDown);
  CHECK(*configured->value == 1);
}

TEST_CASE("Controller re-requests a held line whose polarity changes", "[gpio][controller]") {
  Fixture f;
  REQUIRE_OK(f.Run(Write(17, 1)));
  CHECK(*f.backend.PhysicalLevel("gpiochip0", 17) == 1);
  GpioCommand command = Write(17, 1);
  command.active_low = true;
  REQUIRE_OK(f.Run(command));
  CHECK(*f.backend.PhysicalLevel("gpiochip0", 17) == 0);
  CHECK(f.controller->HeldLines().size() == 1);
}

TEST_CASE("Controller turns a held input into an output on WRITE", "[gpio][controller]") {
  Fixture f;
  REQUIRE_OK(f.Run(Configure(17, Direction::kInput)));
  absl::StatusOr<GpioResult> written = f.Run(Write(17, 1));
  REQUIRE_OK(written);
  CHECK(written->direction == Direction::kOutput);
  CHECK(*f.backend.PhysicalLevel("gpiochip0", 17) == 1);
}

TEST_CASE("Controller uses lines of a second chip allowed by label", "[gpio][controller]") {
  Fixture f;
  GpioCommand command{.chip = "raspberrypi-exp-gpio",
                      .line_name = "STATUS_LED",
                      .action = GpioAction::kWrite,
                      .value = 1};
  absl::StatusOr<GpioResult> written = f.Run(command);
  REQUIRE_OK(written);
  CHECK(written->chip_name == "gpiochip1");
  CHECK(*f.backend.PhysicalLevel("gpiochip1", 2) == 1);
  command.line_name = "BT_ON";
  REQUIRE_CODE(f.Run(command), absl::StatusCode::kPermissionDenied);
}

// --- Policy -----------------------------------------------------------------------------------

TEST_CASE("Controller refuses a line missing from gpio.allowed_lines", "[gpio][controller]") {
  Fixture f;
  absl::StatusOr<GpioResult> result = f.Run(Write(28, 1));
  REQUIRE_CODE(result, absl::StatusCode::kPermissionDenied);
  CHECK(result.status().message() == "line 28 (GPIO28) is not in gpio.allowed_lines");
  CHECK_FALSE(f.Used(28));
}

TEST_CASE("Controller refuses a UART pin covered only by a range", "[gpio][controller]") {
  Fixture f;
  absl::StatusOr<GpioResult> result = f.Run(Write(14, 1));
  REQUIRE_CODE(result, absl::StatusCode::kPermissionDenied);
  CHECK(result.status().message() ==
        "line 14 (GPIO14) is a UART pin; list it on its own in gpio.allowed_lines to use it");
  REQUIRE_CODE(f.Run(Read(15)), absl::StatusCode::kPermissionDenied);
}

TEST_CASE("Controller refuses to write a line allowed for input only", "[gpio][controller]") {
  Fixture f;
  absl::StatusOr<GpioResult> result = f.Run(Write(22, 1));
  REQUIRE_CODE(result, absl::StatusCode::kPermissionDenied);
  CHECK_THAT(std::string(result.status().message()),
             Catch::StartsWith("line 22 (GPIO22) is allowed for input only"));
  REQUIRE_CODE(f.Run(Configure(22, Direction::kOutput)), absl::StatusCode::kPermissionDenied);
  CHECK_FALSE(f.Used(22));
}

TEST_CASE("Controller reads an output-only line only while it holds it", "[gpio][controller]") {
  Fixture f;
  REQUIRE_CODE(f.Run(Read(23)), absl::StatusCode::kPermissionDenied);
  REQUIRE_OK(f.Run(Write(23, 1)));
  absl::StatusOr<GpioResult> read = f.Run(Read(23));
  REQUIRE_OK(read);
  CHECK(*read->value == 1);
}

TEST_CASE("Controller creation rejects a malformed gpio.allowed_lines", "[gpio][controller]") {
  pi::common::ManualClock clock;
  InMemoryGpioBackend backend;
  GpioConfig config{.allowed_lines = {{.line = "27-4"}}};
  REQUIRE_CODE(GpioController::Create(config, backend, clock), absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Controller creation rejects a negative gpio.max_hold", "[gpio][controller]") {
  pi::common::ManualClock clock;
  InMemoryGpioBackend backend;
  GpioConfig config{.max_hold = milliseconds(-1)};
  REQUIRE_CODE(GpioController::Create(config, backend, clock), absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Controller creation rejects an empty consumer", "[gpio][controller]") {
  pi::common::ManualClock clock;
  InMemoryGpioBackend backend;
  GpioConfig config{.consumer = ""};
  REQUIRE_CODE(GpioController::Create(config, backend, clock), absl::StatusCode::kInvalidArgument);
}

// --- Invalid commands -------------------------------------------------------------------------

TEST_CASE("Controller rejects a value other than 0 or 1", "[gpio][controller][invalid]") {
  Fixture f;
  absl::StatusOr<GpioResult> result = f.Run(Write(17, 2));
  REQUIRE_CODE(result, absl::StatusCode::kInvalidArgument);
  CHECK(result.status().message() == "value must be 0 or 1, got 2");
  CHECK_FALSE(f.Used(17));
}

TEST_CASE("Controller rejects a WRITE without a value", "[gpio][controller][invalid]") {
  Fixture f;
  REQUIRE_CODE(f.Run(GpioCommand{.offset = 17, .action = GpioAction::kWrite}),
               absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Controller rejects a command naming both offset and line name",
          "[gpio][controller][invalid]") {
  Fixture f;
  GpioCommand command = Read(17);
  command.line_name = "GPIO17";
  absl::StatusOr<GpioResult> result = f.Run(command);
  REQUIRE_CODE(result, absl::StatusCode::kInvalidArgument);
  CHECK(result.status().message() == "give either a line offset or a line name, not both");
}

TEST_CASE("Controller rejects a command naming no line", "[gpio][controller][invalid]") {
  Fixture f;
  REQUIRE_CODE(f.Run(GpioCommand{.action = GpioAction::kRead}), absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Controller rejects a negative offset", "[gpio][controller][invalid]") {
  Fixture f;
  REQUIRE_CODE(f.Run(Read(-1)), absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Controller rejects an offset beyond 32 bits", "[gpio][controller][invalid]") {
  Fixture f;
  REQUIRE_CODE(f.Run(Read(std::int64_t{1} << 32)), absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Controller rejects a negative hold", "[gpio][controller][invalid]") {
  Fixture f;
  absl::StatusOr<GpioResult> result = f.Run(Write(17, 1, milliseconds(-5)));
  REQUIRE_CODE(result, absl::StatusCode::kInvalidArgument);
  CHECK(result.status().message() == "hold must not be negative, got -5ms");
}

TEST_CASE("Controller rejects a hold on READ", "[gpio][controller][invalid]") {
  Fixture f;
  GpioCommand command = Read(17);
  command.hold = seconds(1);
  REQUIRE_CODE(f.Run(command), absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Controller rejects an open-drain input", "[gpio][controller][invalid]") {
  Fixture f;
  GpioCommand command = Configure(17, Direction::kInput);
  command.drive = Drive::kOpenDrain;
  absl::StatusOr<GpioResult> result = f.Run(command);
  REQUIRE_CODE(result, absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(result.status().message()),
             Catch::StartsWith("drive open-drain applies to outputs only"));
}

TEST_CASE("Controller rejects an open-source drive on a held input",
          "[gpio][controller][invalid]") {
  Fixture f;
  REQUIRE_OK(f.Run(Configure(17, Direction::kInput)));
  GpioCommand command{.offset = 17, .action = GpioAction::kConfigure, .drive = Drive::kOpenSource};
  REQUIRE_CODE(f.Run(command), absl::StatusCode::kInvalidArgument);
  CHECK(f.Used(17));
}

TEST_CASE("Controller rejects a drive on READ", "[gpio][controller][invalid]") {
  Fixture f;
  GpioCommand command = Read(17);
  command.drive = Drive::kOpenDrain;
  REQUIRE_CODE(f.Run(command), absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Controller rejects a WRITE asking for an input", "[gpio][controller][invalid]") {
  Fixture f;
  GpioCommand command = Write(17, 1);
  command.direction = Direction::kInput;
  REQUIRE_CODE(f.Run(command), absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Controller rejects a READ asking for an output", "[gpio][controller][invalid]") {
  Fixture f;
  GpioCommand command = Read(17);
  command.direction = Direction::kOutput;
  REQUIRE_CODE(f.Run(command), absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Controller rejects CONFIGURE without a direction for a line it does not hold",
          "[gpio][controller][invalid]") {
  Fixture f;
  REQUIRE_CODE(f.Run(GpioCommand{.offset = 17, .action = GpioAction::kConfigure}),
               absl::StatusCode::kInvalidArgument);
  CHECK_FALSE(f.Used(17));
}

TEST_CASE("Controller rejects an unknown action", "[gpio][controller][invalid]") {
  Fixture f;
  REQUIRE_CODE(f.Run(GpioCommand{.offset = 17, .action = static_cast<GpioAction>(42)}),
               absl::StatusCode::kInvalidArgument);
}

// --- Concurrency ------------------------------------------------------------------------------

TEST_CASE("Controller serves concurrent commands", "[gpio][controller]") {
  Fixture f;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, offset = 4 + t] {
      for (int i = 0; i < 100; ++i) {
        if (!f.Run(Write(offset, i % 2, milliseconds(i % 3))).ok()) ++failures;
        absl::StatusOr<GpioResult> read = f.Run(Read(offset));
        if (!read.ok() || *read->value != i % 2) ++failures;
        f.controller->ReleaseExpired();
        f.controller->NextExpiry();
      }
      if (!f.Run(Release(offset)).ok()) ++failures;
    });
  }
  for (std::thread& thread : threads) thread.join();
  CHECK(failures == 0);
  CHECK(f.controller->HeldLines().empty());
}

}  // namespace
}  // namespace pi::agent::gpio
