#include <fcntl.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/system/clock.h"
#include "node-agent/logs/file_source.h"
#include "node-agent/logs/log_streamer.h"
#include "tests/common/test_dir.h"
#include "tests/node-agent/logs/logs_test_util.h"

namespace pi::agent::logs {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using pi::testing::TempDir;
using testing::BackgroundStream;
using testing::CheckCancelEndsStream;
using testing::Collector;
using testing::FromUnixMicros;
using testing::ScopedTimezone;

using Messages = std::vector<std::string>;

// 2023-11-22T12:00:00Z, so the fixture's year-less syslog stamps land in 2023.
common::ManualClock& FixtureClock() {
  static common::ManualClock clock;
  static const bool set = [] {
    clock.Advance(FromUnixMicros(int64_t{1700654400} * 1000000) - clock.WallNow());
    return true;
  }();
  static_cast<void>(set);
  return clock;
}

std::string Fixture(const std::string& name) {
  return std::string(PI_FIXTURES_DIR) + "/logs/" + name;
}

LogStreamer MakeStreamer(std::map<std::string, std::string> files,
                         std::chrono::milliseconds poll = 10ms) {
  LogsConfig config;
  config.files = std::move(files);
  config.journald = false;
  config.follow_poll_interval = poll;
  auto streamer = LogStreamer::Create(config, FixtureClock());
  REQUIRE(streamer.ok());
  return *std::move(streamer);
}

LogFilter FromSource(const std::string& source) {
  LogFilter filter;
  filter.source = source;
  return filter;
}

// Runs a stream that ends by itself and returns what it emitted.
Messages Run(const LogStreamer& streamer, const LogFilter& filter,
             absl::StatusCode expected = absl::StatusCode::kOk) {
  Collector collector;
  common::CancelToken cancel;
  absl::Status status = streamer.Stream(filter, collector.Emit(), cancel);
  INFO(status.ToString());
  CHECK(status.code() == expected);
  return collector.Messages();
}

void Append(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::app | std::ios::binary) << text;
}

TEST_CASE("all complete lines of a file are emitted in order", "[file]") {
  LogStreamer streamer = MakeStreamer({{"syslog", Fixture("syslog")}});
  Messages messages = Run(streamer, FromSource("syslog"));
  REQUIRE(messages.size() == 5);
  CHECK(messages[0] ==
        "Nov 22 03:07:04 raspberrypi kernel: [    3.100958] hwmon hwmon1: Undervoltage detected!");
  CHECK(messages[4] ==
        "Nov 22 03:08:00 raspberrypi CRON[1101]: (root) CMD (run-parts /etc/cron.hourly)");
}

TEST_CASE("syslog lines carry their timestamp, host, identifier and pid", "[file]") {
  ScopedTimezone tz("UTC0");
  LogStreamer streamer = MakeStreamer({{"syslog", Fixture("syslog")}});
  Collector collector;
  common::CancelToken cancel;
  REQUIRE(streamer.Stream(FromSource("syslog"), collector.Emit(), cancel).ok());
  std::vector<LogEntry> entries = collector.Entries();
  REQUIRE(entries.size() == 5);
  const LogEntry& sshd = entries[2];
  CHECK(sshd.timestamp == FromUnixMicros(int64_t{1700622430} * 1000000));
  CHECK(sshd.source == "syslog");
  CHECK(sshd.hostname == "raspberrypi");
  CHECK(sshd.identifier == "sshd");
  CHECK(sshd.pid == 812);
  CHECK_FALSE(sshd.priority.has_value());
}

TEST_CASE("lines without a timestamp get the file's modification time", "[file]") {
  TempDir dir;
  std::string path = dir.Write("app.log", "no stamp here\n2023-11-22T03:07:04Z stamped\n");
  timespec times[2] = {{.tv_sec = 1600000000, .tv_nsec = 0}, {.tv_sec = 1600000000, .tv_nsec = 0}};
  REQUIRE(utimensat(AT_FDCWD, path.c_str(), times, 0) == 0);
  LogStreamer streamer = MakeStreamer({{"app", path}});
  Collector collector;
  common::CancelToken cancel;
  REQUIRE(streamer.Stream(FromSource("app"), collector.Emit(), cancel).ok());
  std::vector<LogEntry> entries = collector.Entries();
  REQUIRE(entries.size() == 2);
  CHECK(entries[0].timestamp == FromUnixMicros(int64_t{1600000000} * 1000000));
  CHECK(entries[1].timestamp == FromUnixMicros(int64_t{1700622424} * 1000000));
}

TEST_CASE("the substring filter keeps only lines containing it", "[file]") {
  LogStreamer streamer = MakeStreamer({{"syslog", Fixture("syslog")}});
  LogFilter filter = FromSource("syslog");
  filter.substring = "ssh";
  Messages messages = Run(streamer, filter);
  REQUIRE(messages.size() == 2);
  CHECK_THAT(messages[0], Catch::Contains("Started ssh.service"));
  CHECK_THAT(messages[1], Catch::Contains("Accepted publickey"));
}

TEST_CASE("the regex filter keeps only lines it matches", "[file]") {
  LogStreamer streamer = MakeStreamer({{"syslog", Fixture("syslog")}});
  LogFilter filter = FromSource("syslog");
  filter.regex = R"(\[(812|1024)\]:)";
  Messages messages = Run(streamer, filter);
  REQUIRE(messages.size() == 2);
  CHECK_THAT(messages[0], Catch::Contains("sshd[812]"));
  CHECK_THAT(messages[1], Catch::Contains("sensor-reader[1024]"));
}

TEST_CASE("the since filter drops older lines", "[file]") {
  ScopedTimezone tz("UTC0");
  LogStreamer streamer = MakeStreamer({{"app", Fixture("app.log")}});
  LogFilter filter = FromSource("app");
  filter.since = FromUnixMicros(int64_t{1700622425} * 1000000);  // 03:07:05Z
  Messages messages = Run(streamer, filter);
  // 03:07:04.250Z is too old, 03:07:05+01:00 is 02:07:05Z, the continuation line has the
  // fixture's modification time (recent), and 03:07:06 local is 03:07:06Z.
  REQUIRE(messages.size() == 2);
  CHECK(messages[0] == "continuation line without a timestamp");
  CHECK(messages[1] == "2023-11-22 03:07:06 ERROR sensor 3 timeout");
}

TEST_CASE("limit returns the last matching lines, like tail -n", "[file]") {
  LogStreamer streamer = MakeStreamer({{"syslog", Fixture("syslog")}});
  LogFilter filter = FromSource("syslog");
  filter.limit = 2;
  CHECK(
      Run(streamer, filter) ==
      Messages{"Nov 22 03:07:11 raspberrypi sensor-reader[1024]: reading failed: timeout",
               "Nov 22 03:08:00 raspberrypi CRON[1101]: (root) CMD (run-parts /etc/cron.hourly)"});
}

TEST_CASE("limit counts matching lines, not all lines", "[file]") {
  LogStreamer streamer = MakeStreamer({{"syslog", Fixture("syslog")}});
  LogFilter filter = FromSource("syslog");
  filter.limit = 1;
  filter.substring = "ssh";
  Messages messages = Run(streamer, filter);
  REQUIRE(messages.size() == 1);
  CHECK_THAT(messages[0], Catch::Contains("Accepted publickey"));
}

TEST_CASE("a limit above the number of lines returns them all", "[file]") {
  LogStreamer streamer = MakeStreamer({{"syslog", Fixture("syslog")}});
  LogFilter filter = FromSource("syslog");
  filter.limit = 100;
  Messages messages = Run(streamer, filter);
  REQUIRE(messages.size() == 5);
  CHECK_THAT(messages[0], Catch::Contains("Undervoltage"));
}

TEST_CASE("limit finds the tail of a file larger than one read", "[file]") {
  TempDir dir;
  std::string contents;
  for (int i = 0; i < 20000; ++i) contents += "line " + std::to_string(i) + "\n";
  std::string path = dir.Write("big.log", contents);
  LogStreamer streamer = MakeStreamer({{"big", path}});
  LogFilter filter = FromSource("big");
  filter.limit = 3;
  CHECK(Run(streamer, filter) == Messages{"line 19997", "line 19998", "line 19999"});
  filter.limit = 10000;
  Messages last = Run(streamer, filter);
  REQUIRE(last.size() == 10000);
  CHECK(last.front() == "line 10000");
  CHECK(last[2345] == "line 12345");
}

TEST_CASE("an overlong line is cut at the line limit, in both reading directions", "[file]") {
  TempDir dir;
  std::string huge(kMaxFileLineBytes + 1000, 'x');
  huge[0] = 'A';
  std::string path = dir.Write("long.log", "before\n" + huge + "\nafter\n");
  LogStreamer streamer = MakeStreamer({{"long", path}});
  Messages forward = Run(streamer, FromSource("long"));
  LogFilter tail = FromSource("long");
  tail.limit = 3;
  Messages backward = Run(streamer, tail);
  for (const Messages& messages : {forward, backward}) {
    REQUIRE(messages.size() == 3);
    CHECK(messages[0] == "before");
    CHECK(messages[1] == huge.substr(0, kMaxFileLineBytes));
    CHECK(messages[2] == "after");
  }
}

TEST_CASE("a partial last line is not emitted until its newline arrives", "[file]") {
  TempDir dir;
  std::string path = dir.Write("app.log", "one\ntwo\nthr");
  LogStreamer streamer = MakeStreamer({{"app", path}});
  CHECK(Run(streamer, FromSource("app")) == Messages{"one", "two"});
  LogFilter tail = FromSource("app");
  tail.limit = 1;
  CHECK(Run(streamer, tail) == Messages{"two"});

  LogFilter follow = FromSource("app");
  follow.follow = true;
  follow.limit = 1;
  Collector collector;
  BackgroundStream stream(streamer, follow, collector);
  REQUIRE(collector.WaitForCount(1));
  Append(path, "ee\n");
  REQUIRE(collector.WaitForCount(2));
  CHECK(collector.Messages() == Messages{"two", "three"});
}

TEST_CASE("carriage returns of CRLF lines are dropped", "[file]") {
  TempDir dir;
  std::string path = dir.Write("dos.log", "one\r\ntwo\r\n");
  LogStreamer streamer = MakeStreamer({{"dos", path}});
  CHECK(Run(streamer, FromSource("dos")) == Messages{"one", "two"});
}

TEST_CASE("invalid UTF-8 in a line is replaced", "[file]") {
  TempDir dir;
  std::string path = dir.Write("bin.log", "bad \xFF byte\n");
  LogStreamer streamer = MakeStreamer({{"bin", path}});
  CHECK(Run(streamer, FromSource("bin")) == Messages{"bad \xEF\xBF\xBD byte"});
}

TEST_CASE("follow emits lines appended after the backlog", "[file]") {
  TempDir dir;
  std::string path = dir.Write("app.log", "old\n");
  LogStreamer streamer = MakeStreamer({{"app", path}});
  LogFilter filter = FromSource("app");
  filter.follow = true;
  filter.substring = "keep";
  Append(path, "keep 1\n");
  Collector collector;
  BackgroundStream stream(streamer, filter, collector);
  REQUIRE(collector.WaitForCount(1));
  Append(path, "drop\nkeep 2\n");
  Append(path, "keep 3\n");
  REQUIRE(collector.WaitForCount(3));
  CHECK(collector.Messages() == Messages{"keep 1", "keep 2", "keep 3"});
}

TEST_CASE("follow survives rotation: the old file is finished, then the new one read", "[file]") {
  TempDir dir;
  std::string path = dir.Write("app.log", "first\n");
  LogStreamer streamer = MakeStreamer({{"app", path}});
  LogFilter filter = FromSource("app");
  filter.follow = true;
  Collector collector;
  BackgroundStream stream(streamer, filter, collector);
  REQUIRE(collector.WaitForCount(1));

  fs::rename(path, path + ".1");
  // A writer that still has the old file open finishes its last lines there.
  Append(path + ".1", "last in old\nunterminated");
  dir.Write("app.log", "first in new\n");
  REQUIRE(collector.WaitForCount(4));
  Append(path, "second in new\n");
  REQUIRE(collector.WaitForCount(5));
  CHECK(collector.Messages() ==
        Messages{"first", "last in old", "unterminated", "first in new", "second in new"});
}

TEST_CASE("follow survives truncation: reading restarts at the beginning", "[file]") {
  TempDir dir;
  std::string path = dir.Write("app.log", "a fairly long first line\n");
  LogStreamer streamer = MakeStreamer({{"app", path}});
  LogFilter filter = FromSource("app");
  filter.follow = true;
  Collector collector;
  BackgroundStream stream(streamer, filter, collector);
  REQUIRE(collector.WaitForCount(1));
  fs::resize_file(path, 0);
  // Even if no poll sees the empty file, the file stays shorter than what was read.
  Append(path, "after\n");
  REQUIRE(collector.WaitForCount(2));
  CHECK(collector.Messages() == Messages{"a fairly long first line", "after"});
}

TEST_CASE("a following stream ends promptly when cancelled", "[file]") {
  TempDir dir;
  std::string path = dir.Write("app.log", "x\n");
  // A poll interval far longer than the test: only the wake-up can end the wait.
  LogStreamer streamer = MakeStreamer({{"app", path}}, 1h);
  LogFilter filter = FromSource("app");
  filter.follow = true;
  Collector collector;
  BackgroundStream stream(streamer, filter, collector);
  REQUIRE(collector.WaitForCount(1));
  CheckCancelEndsStream(stream);
}

TEST_CASE("a stream ends with OK when emit returns false", "[file]") {
  LogStreamer streamer = MakeStreamer({{"syslog", Fixture("syslog")}}, 1h);
  LogFilter filter = FromSource("syslog");
  filter.follow = true;
  Collector collector;
  collector.StopAfter(2);
  common::CancelToken cancel;
  CHECK(streamer.Stream(filter, collector.Emit(), cancel).ok());
  CHECK(collector.Messages().size() == 2);
}

TEST_CASE("a configured file that does not exist is NOT_FOUND", "[file]") {
  LogStreamer streamer = MakeStreamer({{"gone", "/nonexistent/app.log"}});
  Run(streamer, FromSource("gone"), absl::StatusCode::kNotFound);
}

TEST_CASE("a configured path that is a directory is FAILED_PRECONDITION", "[file]") {
  TempDir dir;
  LogStreamer streamer = MakeStreamer({{"dir", dir.path().string()}});
  Run(streamer, FromSource("dir"), absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("a regex with nested quantifiers does not backtrack exponentially", "[file]") {
  TempDir dir;
  // A backtracking matcher tries about 2^40 ways to split these before giving up.
  std::string path = dir.Write("a.log", std::string(40, 'a') + "\n");
  LogStreamer streamer = MakeStreamer({{"a", path}});
  LogFilter filter = FromSource("a");
  filter.regex = "(a*)*b";
  CHECK(Run(streamer, filter).empty());
  filter.regex = "(a*)*$";
  CHECK(Run(streamer, filter).size() == 1);
}

TEST_CASE("the regex and the substring both see the whole of a long line", "[file]") {
  TempDir dir;
  std::string path = dir.Write("wide.log", std::string(60000, 'x') + "needle\n");
  LogStreamer streamer = MakeStreamer({{"wide", path}});
  LogFilter filter = FromSource("wide");
  filter.regex = "x+needle$";
  CHECK(Run(streamer, filter).size() == 1);
  filter.regex = "needles";
  CHECK(Run(streamer, filter).empty());
  filter.regex.clear();
  filter.substring = "needle";
  CHECK(Run(streamer, filter).size() == 1);
}

}  // namespace
}  // namespace pi::agent::logs
