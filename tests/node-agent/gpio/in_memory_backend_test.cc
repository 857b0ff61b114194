#include "node-agent/gpio/in_memory_backend.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <thread>

#include "tests/node-agent/gpio/gpio_test_util.h"

namespace pi::agent::gpio {
namespace {

ChipInfo HeaderChip(InMemoryGpioBackend& backend) {
  absl::StatusOr<std::vector<ChipInfo>> chips = backend.ListChips();
  REQUIRE_OK(chips);
  REQUIRE_FALSE(chips->empty());
  return chips->front();
}

LineConfig Output(int value) {
  return LineConfig{.direction = Direction::kOutput, .output_value = value};
}

TEST_CASE("The default simulation looks like a Raspberry Pi", "[gpio][sim]") {
  InMemoryGpioBackend backend;
  absl::StatusOr<std::vector<ChipInfo>> chips = backend.ListChips();
  REQUIRE_OK(chips);
  REQUIRE(chips->size() == 2);
  CHECK((*chips)[0] == ChipInfo{"gpiochip0", "pinctrl-bcm2835", "/dev/gpiochip0", 54});
  CHECK((*chips)[1].name == "gpiochip1");
  CHECK((*chips)[1].num_lines == 8);
  absl::StatusOr<LineInfo> last = backend.GetLineInfo((*chips)[0], 53);
  REQUIRE_OK(last);
  CHECK(last->name == "GPIO53");
  CHECK_FALSE(last->used);
}

TEST_CASE("The simulation finds a line offset by name", "[gpio][sim]") {
  InMemoryGpioBackend backend;
  absl::StatusOr<unsigned int> offset = backend.FindLineOffset(HeaderChip(backend), "GPIO17");
  REQUIRE_OK(offset);
  CHECK(*offset == 17);
}

TEST_CASE("The simulation reports an unknown line name", "[gpio][sim]") {
  InMemoryGpioBackend backend;
  REQUIRE_CODE(backend.FindLineOffset(HeaderChip(backend), "GPIO54"), absl::StatusCode::kNotFound);
}

TEST_CASE("The simulation reports an offset past the last line", "[gpio][sim]") {
  InMemoryGpioBackend backend;
  absl::StatusOr<LineInfo> info = backend.GetLineInfo(HeaderChip(backend), 54);
  REQUIRE_CODE(info, absl::StatusCode::kNotFound);
  CHECK(info.status().message() ==
        "gpiochip0 (pinctrl-bcm2835) has no line 54; it has 54 lines (0-53)");
}

TEST_CASE("A simulated output drives its level and shows its consumer", "[gpio][sim]") {
  InMemoryGpioBackend backend;
  const ChipInfo chip = HeaderChip(backend);
  absl::StatusOr<std::unique_ptr<LineHandle>> handle = backend.RequestLine(chip, 17, Output(1));
  REQUIRE_OK(handle);
  CHECK(*backend.PhysicalLevel("gpiochip0", 17) == 1);
  REQUIRE_OK((*handle)->SetValue(0));
  CHECK(*backend.PhysicalLevel("gpiochip0", 17) == 0);
  CHECK(*(*handle)->GetValue() == 0);
  absl::StatusOr<LineInfo> info = backend.GetLineInfo(chip, 17);
  REQUIRE_OK(info);
  CHECK(info->used);
  CHECK(info->consumer == "pi-agent");
  CHECK(info->direction == Direction::kOutput);
}

TEST_CASE("A simulated active-low output inverts the physical level", "[gpio][sim]") {
  InMemoryGpioBackend backend;
  LineConfig config = Output(1);
  config.active_low = true;
  absl::StatusOr<std::unique_ptr<LineHandle>> handle =
      backend.RequestLine(HeaderChip(backend), 18, config);
  REQUIRE_OK(handle);
  CHECK(*backend.PhysicalLevel("gpiochip0", 18) == 0);
  CHECK(*(*handle)->GetValue() == 1);
}

TEST_CASE("A simulated input reads the level applied to the pin", "[gpio][sim]") {
  InMemoryGpioBackend backend;
  REQUIRE_OK(backend.SetInputLevel("gpiochip0", 22, 1));
  absl::StatusOr<std::unique_ptr<LineHandle>> handle =
      backend.RequestLine(HeaderChip(backend), 22, LineConfig{});
  REQUIRE_OK(handle);
  CHECK(*(*handle)->GetValue() == 1);
  REQUIRE_OK(backend.SetInputLevel("gpiochip0", 22, 0));
  CHECK(*(*handle)->GetValue() == 0);
}

TEST_CASE("A floating simulated input follows its pull bias", "[gpio][sim]") {
  InMemoryGpioBackend backend;
  absl::StatusOr<std::unique_ptr<LineHandle>> handle =
      backend.RequestLine(HeaderChip(backend), 23, LineConfig{.bias = Bias::kPullUp});
  REQUIRE_OK(handle);
  CHECK(*(*handle)->GetValue() == 1);
}

TEST_CASE("Setting a simulated input fails", "[gpio][sim]") {
  InMemoryGpioBackend backend;
  absl::StatusOr<std::unique_ptr<LineHandle>> handle =
      backend.RequestLine(HeaderChip(backend), 22, LineConfig{});
  REQUIRE_OK(handle);
  REQUIRE_CODE((*handle)->SetValue(1), absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("A simulated input refuses an open-drain drive", "[gpio][sim]") {
  InMemoryGpioBackend backend;
  REQUIRE_CODE(backend.RequestLine(HeaderChip(backend), 22, LineConfig{.drive = Drive::kOpenDrain}),
               absl::StatusCode::kInvalidArgument);
}

TEST_CASE("A line held by an external consumer is busy", "[gpio][sim]") {
  InMemoryGpioBackend backend;
  REQUIRE_OK(backend.SetExternalConsumer("gpiochip0", 17, "relayd"));
  absl::StatusOr<std::unique_ptr<LineHandle>> handle =
      backend.RequestLine(HeaderChip(backend), 17, Output(1));
  REQUIRE_CODE(handle, absl::StatusCode::kFailedPrecondition);
  CHECK(handle.status().message() ==
        "line 17 (GPIO17) on gpiochip0 (pinctrl-bcm2835) is busy: held by consumer 'relayd'; "
        "release it there first");
  REQUIRE_OK(backend.SetExternalConsumer("gpiochip0", 17, ""));
  REQUIRE_OK(backend.RequestLine(HeaderChip(backend), 17, Output(1)));
}

TEST_CASE("A line held through one handle is busy for a second request", "[gpio][sim]") {
  InMemoryGpioBackend backend;
  absl::StatusOr<std::unique_ptr<LineHandle>> first =
      backend.RequestLine(HeaderChip(backend), 5, Output(0));
  REQUIRE_OK(first);
  REQUIRE_CODE(backend.RequestLine(HeaderChip(backend), 5, Output(1)),
               absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("Releasing a simulated line frees it and keeps the driven level", "[gpio][sim]") {
  InMemoryGpioBackend backend;
  const ChipInfo chip = HeaderChip(backend);
  absl::StatusOr<std::unique_ptr<LineHandle>> handle = backend.RequestLine(chip, 17, Output(1));
  REQUIRE_OK(handle);
  (*handle)->Release();
  CHECK_FALSE(backend.GetLineInfo(chip, 17)->used);
  CHECK(*backend.PhysicalLevel("gpiochip0", 17) == 1);
  REQUIRE_CODE((*handle)->GetValue(), absl::StatusCode::kFailedPrecondition);
  (*handle)->Release();
  REQUIRE_OK(backend.RequestLine(chip, 17, Output(0)));
}

TEST_CASE("Destroying a simulated handle releases the line", "[gpio][sim]") {
  InMemoryGpioBackend backend;
  const ChipInfo chip = HeaderChip(backend);
  REQUIRE_OK(backend.RequestLine(chip, 17, Output(1)));
  CHECK_FALSE(backend.GetLineInfo(chip, 17)->used);
}

TEST_CASE("A simulated handle outlives its backend", "[gpio][sim]") {
  std::unique_ptr<LineHandle> handle;
  {
    InMemoryGpioBackend backend;
    absl::StatusOr<std::unique_ptr<LineHandle>> requested =
        backend.RequestLine(HeaderChip(backend), 17, Output(1));
    REQUIRE_OK(requested);
    handle = *std::move(requested);
  }
  CHECK(*handle->GetValue() == 1);
  handle->Release();
}

TEST_CASE("The simulation's test hooks reject unknown lines and bad levels", "[gpio][sim]") {
  InMemoryGpioBackend backend;
  REQUIRE_CODE(backend.SetInputLevel("gpiochip9", 0, 1), absl::StatusCode::kNotFound);
  REQUIRE_CODE(backend.SetInputLevel("gpiochip0", 99, 1), absl::StatusCode::kNotFound);
  REQUIRE_CODE(backend.SetInputLevel("gpiochip0", 4, 2), absl::StatusCode::kInvalidArgument);
  REQUIRE_CODE(backend.SetExternalConsumer("gpiochip0", 54, "x"), absl::StatusCode::kNotFound);
}

TEST_CASE("The simulation takes custom chips", "[gpio][sim]") {
  InMemoryGpioBackend backend({{"gpiochip3", "gpio-mockup-A", {"", "LED"}}});
  absl::StatusOr<std::vector<ChipInfo>> chips = backend.ListChips();
  REQUIRE_OK(chips);
  REQUIRE(chips->size() == 1);
  CHECK(chips->front() == ChipInfo{"gpiochip3", "gpio-mockup-A", "/dev/gpiochip3", 2});
  CHECK(*backend.FindLineOffset(chips->front(), "LED") == 1);
  REQUIRE_CODE(backend.FindLineOffset(chips->front(), ""), absl::StatusCode::kNotFound);
}

TEST_CASE("The simulation serves concurrent requests", "[gpio][sim]") {
  InMemoryGpioBackend backend;
  const ChipInfo chip = HeaderChip(backend);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (unsigned int t = 0; t < 4; ++t) {
    threads.emplace_back([&, offset = 4 + t] {
      for (int i = 0; i < 200; ++i) {
        absl::StatusOr<std::unique_ptr<LineHandle>> handle =
            backend.RequestLine(chip, offset, Output(i % 2));
        if (!handle.ok() || *(*handle)->GetValue() != i % 2) ++failures;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CHECK(failures == 0);
}

}  // namespace
}  // namespace pi::agent::gpio
