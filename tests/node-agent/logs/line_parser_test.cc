#include "node-agent/logs/line_parser.h"

#include <catch2/catch.hpp>
#include <chrono>

#include "tests/node-agent/logs/logs_test_util.h"

namespace pi::agent::logs {
namespace {

using namespace std::chrono;
using testing::FromUnixMicros;
using testing::ScopedTimezone;

// 2023-11-22T03:07:04Z
constexpr int64_t kNov22 = 1700622424;
const system_clock::time_point kNow = FromUnixMicros((kNov22 + 3600) * 1000000);

TEST_CASE("an RFC 3339 timestamp with Z and a fraction is read exactly", "[line_parser]") {
  LineHeader h = ParseLineHeader("2023-11-22T03:07:04.123456Z INFO hello", kNow);
  REQUIRE(h.timestamp);
  CHECK(*h.timestamp == FromUnixMicros(kNov22 * 1000000 + 123456));
}

TEST_CASE("an RFC 3339 offset is applied", "[line_parser]") {
  LineHeader with_colon = ParseLineHeader("2023-11-22T04:07:04+01:00 x", kNow);
  LineHeader without_colon = ParseLineHeader("2023-11-21T22:07:04-0500 x", kNow);
  REQUIRE(with_colon.timestamp);
  REQUIRE(without_colon.timestamp);
  CHECK(*with_colon.timestamp == FromUnixMicros(kNov22 * 1000000));
  CHECK(*without_colon.timestamp == FromUnixMicros(kNov22 * 1000000));
}

TEST_CASE("an ISO timestamp without offset is local time", "[line_parser]") {
  ScopedTimezone tz("CET-1");  // UTC+1 all year, no tzdata needed
  LineHeader h = ParseLineHeader("2023-11-22 04:07:04,5 message", kNow);
  REQUIRE(h.timestamp);
  CHECK(*h.timestamp == FromUnixMicros(kNov22 * 1000000 + 500000));
}

TEST_CASE("a line that is only a timestamp still parses", "[line_parser]") {
  CHECK(ParseLineHeader("2023-11-22T03:07:04Z", kNow).timestamp);
}

TEST_CASE("a classic syslog timestamp takes the year that puts it before now", "[line_parser]") {
  ScopedTimezone tz("UTC0");
  LineHeader same_year = ParseLineHeader("Nov 22 03:07:04 pi sshd[812]: hi", kNow);
  REQUIRE(same_year.timestamp);
  CHECK(*same_year.timestamp == FromUnixMicros(kNov22 * 1000000));

  // Read on New Year's morning, a Dec 31 line is from the year before.
  const auto new_year = FromUnixMicros(int64_t{1704067800} * 1000000);  // 2024-01-01T00:10Z
  LineHeader last_year = ParseLineHeader("Dec 31 23:59:00 pi cron: x", new_year);
  REQUIRE(last_year.timestamp);
  CHECK(*last_year.timestamp == FromUnixMicros(int64_t{1704067140} * 1000000));
}

TEST_CASE("a syslog timestamp with a space-padded day parses", "[line_parser]") {
  ScopedTimezone tz("UTC0");
  LineHeader h = ParseLineHeader("Nov  2 03:07:04 pi kernel: x", kNow);
  REQUIRE(h.timestamp);
  CHECK(*h.timestamp == FromUnixMicros((kNov22 - 20 * 86400) * 1000000));
}

TEST_CASE("syslog host, identifier and pid are read", "[line_parser]") {
  LineHeader h = ParseLineHeader("Nov 22 03:07:10 raspberrypi sshd[812]: Accepted key", kNow);
  CHECK(h.hostname == "raspberrypi");
  CHECK(h.identifier == "sshd");
  CHECK(h.pid == 812);
}

TEST_CASE("a syslog tag without pid leaves pid unknown", "[line_parser]") {
  LineHeader h = ParseLineHeader("2023-11-22T03:07:04.5+00:00 raspberrypi kernel: [ 3.1] x", kNow);
  CHECK(h.hostname == "raspberrypi");
  CHECK(h.identifier == "kernel");
  CHECK(h.pid == 0);
}

TEST_CASE("text after a timestamp that is not a syslog header is left alone", "[line_parser]") {
  LineHeader h = ParseLineHeader("2023-11-22T03:07:04Z starting the sensor loop now", kNow);
  CHECK(h.timestamp);
  CHECK(h.hostname.empty());
  CHECK(h.identifier.empty());
}

TEST_CASE("a line without a timestamp has none", "[line_parser]") {
  LineHeader h = ParseLineHeader("continuation line sshd[1]: x", kNow);
  CHECK_FALSE(h.timestamp);
  CHECK(h.hostname.empty());
}

TEST_CASE("impossible dates are not timestamps", "[line_parser]") {
  CHECK_FALSE(ParseLineHeader("2023-02-30T00:00:00Z x", kNow).timestamp);
  CHECK_FALSE(ParseLineHeader("2023-11-22T25:00:00Z x", kNow).timestamp);
  CHECK_FALSE(ParseLineHeader("2023-13-01T00:00:00Z x", kNow).timestamp);
  CHECK_FALSE(ParseLineHeader("Foo 22 03:07:04 x", kNow).timestamp);
  CHECK_FALSE(ParseLineHeader("Nov 32 03:07:04 x", kNow).timestamp);
}

TEST_CASE("a timestamp glued to other text is not a timestamp", "[line_parser]") {
  CHECK_FALSE(ParseLineHeader("2023-11-22T03:07:04Zjunk", kNow).timestamp);
  CHECK_FALSE(ParseLineHeader("2023-11-22T03:07:04.x", kNow).timestamp);
  CHECK_FALSE(ParseLineHeader("Nov 22 03:07:04junk", kNow).timestamp);
}

TEST_CASE("a short numeric line is not a timestamp", "[line_parser]") {
  CHECK_FALSE(ParseLineHeader("2023", kNow).timestamp);
}

TEST_CASE("valid UTF-8 passes through unchanged", "[utf8]") {
  const std::string text = "plain, \xC3\xA9t\xC3\xA9, \xE2\x82\xAC, \xF0\x9F\x8D\x93";
  CHECK(ToValidUtf8(text) == text);
}

TEST_CASE("invalid UTF-8 bytes become U+FFFD", "[utf8]") {
  CHECK(ToValidUtf8("a\xFF"
                    "b") ==
        "a\xEF\xBF\xBD"
        "b");
  CHECK(ToValidUtf8("\xC0\xAF") == "\xEF\xBF\xBD\xEF\xBF\xBD");                  // overlong '/'
  CHECK(ToValidUtf8("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  CHECK(ToValidUtf8("end\xE2\x82") == "end\xEF\xBF\xBD\xEF\xBF\xBD");            // cut short
  CHECK(ToValidUtf8("\xF4\x90\x80\x80").find("\xEF\xBF\xBD") == 0);              // past U+10FFFF
}

}  // namespace
}  // namespace pi::agent::logs
