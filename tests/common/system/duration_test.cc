#include "common/system/duration.h"

#include <catch2/catch.hpp>

namespace pi::common {
namespace {

using namespace std::chrono_literals;

TEST_CASE("durations in every unit and combination parse", "[duration]") {
  CHECK(*ParseDuration("0") == 0ns);
  CHECK(*ParseDuration("250ms") == 250ms);
  CHECK(*ParseDuration("1.5s") == 1500ms);
  CHECK(*ParseDuration("1h30m") == 90min);
  CHECK(*ParseDuration("10us") == 10us);
  CHECK(*ParseDuration("7ns") == 7ns);
  CHECK(*ParseDuration("2m3s") == 123s);
}

TEST_CASE("malformed durations are refused", "[duration]") {
  for (const char* text : {"", "s", "10", "-5s", "1x", "1.2.3s", "ms5", " 5s", "5s "}) {
    INFO(text);
    CHECK(ParseDuration(text).status().code() == absl::StatusCode::kInvalidArgument);
  }
}

TEST_CASE("absurdly large durations are refused instead of overflowing", "[duration]") {
  for (const std::string& text : {std::string("9999999999h"), "1" + std::string(5000, '0') + "s",
                                  std::string("9223372037s"), std::string("5000000h5000000h")}) {
    INFO(text.substr(0, 40));
    const auto status = ParseDuration(text).status();
    CHECK(status.code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(status.message()), Catch::Contains("too large"));
  }
  CHECK(*ParseDuration("9223372036s") == std::chrono::seconds(9223372036));
}

TEST_CASE("long fractions are read to nanosecond precision without failing", "[duration]") {
  CHECK(*ParseDuration("0." + std::string(5000, '0') + "1s") == 0ns);
  CHECK(*ParseDuration("0.000000001s") == 1ns);
  CHECK(*ParseDuration("0.5ms") == 500us);
  CHECK(*ParseDuration("1.999999999999s") == 1999999999ns);
}

TEST_CASE("formatting reads back to the same duration", "[duration]") {
  for (std::chrono::nanoseconds d : std::initializer_list<std::chrono::nanoseconds>{
           0ns, 250ms, 90min, 1500ms, 10us, 7ns, 3723s}) {
    const std::string text = FormatDuration(d);
    INFO(text);
    CHECK(*ParseDuration(text) == d);
  }
  CHECK(FormatDuration(90min) == "1h30m");
  CHECK(FormatDuration(250ms) == "250ms");
}

}  // namespace
}  // namespace pi::common
