#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "node-agent/logs/log_streamer.h"
#include "tests/common/test_dir.h"
#include "tests/common/test_process.h"
#include "tests/node-agent/logs/logs_test_util.h"

namespace pi::agent::logs {
namespace {

using pi::testing::ProcessDead;
using pi::testing::WaitUntil;

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using pi::testing::TempDir;
using testing::BackgroundStream;
using testing::CheckCancelEndsStream;
using testing::Collector;
using testing::FromUnixMicros;

using Lines = std::vector<std::string>;

constexpr char kLastCursor[] =
    "s=6f1d0a4ae5a8449ab01c8b24d5a5f3c1;i=1a30;b=0c3d2e8b5c6a4b7f9a1e2d3c4b5a6978;m=45d3d8;"
    "t=60aa8a1e6df19;x=3a4b5c6d7e8f9001";

std::string Fixture() { return std::string(PI_FIXTURES_DIR) + "/logs/journal.jsonl"; }

// A stand-in for journalctl: records its arguments (one line per run, without argv[0]) and its
// pid, refuses to run without JSON output, then runs `body`.
class FakeJournalctl {
 public:
  explicit FakeJournalctl(const std::string& body) {
    const std::string root = dir_.path().string();
    path_ = dir_.Write("journalctl",
                       "#!/bin/sh\n"
                       "echo \"$*\" >> " +
                           root +
                           "/args\n"
                           "echo $$ > " +
                           root +
                           "/pid\n"
                           "case \"$*\" in\n"
                           "  --output=json\\ --no-pager*) ;;\n"
                           "  *) echo \"unexpected arguments: $*\" >&2; exit 64;;\n"
                           "esac\n" +
                           body + "\n");
    fs::permissions(path_, fs::perms::owner_all);
  }

  const std::string& path() const { return path_; }

  Lines Args() const {
    std::ifstream in(dir_.path() / "args");
    Lines lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }

  // The pid of the last run; with `exec sleep` in the body, the process left behind.
  pid_t LastPid() const {
    std::ifstream in(dir_.path() / "pid");
    pid_t pid = 0;
    in >> pid;
    return pid;
  }

 private:
  TempDir dir_;
  std::string path_;
};

LogStreamer MakeStreamer(const std::string& journalctl) {
  LogsConfig config;
  config.journalctl_path = journalctl;
  config.files = {{"syslog", std::string(PI_FIXTURES_DIR) + "/logs/syslog"}};
  auto streamer = LogStreamer::Create(config);
  REQUIRE(streamer.ok());
  return *std::move(streamer);
}

LogFilter Journal() {
  LogFilter filter;
  filter.source = "journal";
  return filter;
}

Lines Run(const LogStreamer& streamer, const LogFilter& filter,
          absl::Status* status_out = nullptr) {
  Collector collector;
  common::CancelToken cancel;
  absl::Status status = streamer.Stream(filter, collector.Emit(), cancel);
  if (status_out != nullptr) {
    *status_out = status;
  } else {
    INFO(status.ToString());
    CHECK(status.ok());
  }
  return collector.Messages();
}

TEST_CASE("the journal is read through journalctl's JSON output", "[journal_stream]") {
  FakeJournalctl journalctl("cat " + Fixture());
  LogStreamer streamer = MakeStreamer(journalctl.path());
  Collector collector;
  common::CancelToken cancel;
  REQUIRE(streamer.Stream(Journal(), collector.Emit(), cancel).ok());
  CHECK(journalctl.Args() == Lines{"--output=json --no-pager"});
  std::vector<LogEntry> entries = collector.Entries();
  REQUIRE(entries.size() == 6);
  CHECK(entries[2].unit == "ssh.service");
  CHECK(entries[2].pid == 812);
  CHECK(entries[2].timestamp == FromUnixMicros(1700622430000096));
  CHECK(entries[0].priority == 4);
}

TEST_CASE("the journal is the default source", "[journal_stream]") {
  FakeJournalctl journalctl("cat " + Fixture());
  LogStreamer streamer = MakeStreamer(journalctl.path());
  CHECK(Run(streamer, LogFilter()).size() == 6);
}

TEST_CASE("unit and priority are passed to journalctl", "[journal_stream]") {
  FakeJournalctl journalctl("cat " + Fixture());
  LogStreamer streamer = MakeStreamer(journalctl.path());
  LogFilter filter = Journal();
  filter.unit = "ssh.service";
  filter.max_priority = 3;
  Run(streamer, filter);
  CHECK(journalctl.Args() == Lines{"--output=json --no-pager --unit=ssh.service --priority=3"});
}

TEST_CASE("since goes to journalctl in whole seconds and is applied exactly here",
          "[journal_stream]") {
  FakeJournalctl journalctl("cat " + Fixture());
  LogStreamer streamer = MakeStreamer(journalctl.path());
  LogFilter filter = Journal();
  filter.since = FromUnixMicros(1700622425500000);
  Lines messages = Run(streamer, filter);
  CHECK(journalctl.Args() == Lines{"--output=json --no-pager --since=@1700622425"});
  // The fake ignores --since; entries before 03:07:05.5 are still dropped.
  REQUIRE(messages.size() == 4);
  CHECK_THAT(messages[0], Catch::StartsWith("Accepted publickey"));
}

TEST_CASE("a limit without other filters is left to journalctl --lines", "[journal_stream]") {
  FakeJournalctl journalctl("cat " + Fixture());
  LogStreamer streamer = MakeStreamer(journalctl.path());
  LogFilter filter = Journal();
  filter.limit = 2;
  Lines messages = Run(streamer, filter);
  CHECK(journalctl.Args() == Lines{"--output=json --no-pager --lines=2"});
  CHECK(messages == Lines{"", "calibration done"});
}

TEST_CASE("a limit with a text filter keeps the last matching entries", "[journal_stream]") {
  FakeJournalctl journalctl("cat " + Fixture());
  LogStreamer streamer = MakeStreamer(journalctl.path());
  LogFilter filter = Journal();
  filter.limit = 1;
  filter.regex = "^(Started|Accepted) ";
  Lines messages = Run(streamer, filter);
  // --lines would count entries before the regex is applied.
  CHECK(journalctl.Args() == Lines{"--output=json --no-pager"});
  REQUIRE(messages.size() == 1);
  CHECK_THAT(messages[0], Catch::StartsWith("Accepted publickey"));
}

TEST_CASE("follow without a limit sends the whole backlog, then waits for more",
          "[journal_stream]") {
  FakeJournalctl journalctl("cat " + Fixture() + "\nexec sleep 100");
  LogStreamer streamer = MakeStreamer(journalctl.path());
  LogFilter filter = Journal();
  filter.follow = true;
  Collector collector;
  BackgroundStream stream(streamer, filter, collector);
  REQUIRE(collector.WaitForCount(6));
  CHECK(journalctl.Args() == Lines{"--output=json --no-pager --follow --no-tail"});
  CHECK_FALSE(stream.WaitDone(50ms));

  CheckCancelEndsStream(stream);
  CHECK(WaitUntil([&] { return ProcessDead(journalctl.LastPid()); }, 5s));
}

TEST_CASE("cancel ends a journal stream that has produced nothing yet", "[journal_stream]") {
  FakeJournalctl journalctl("exec sleep 100");
  LogStreamer streamer = MakeStreamer(journalctl.path());
  LogFilter filter = Journal();
  filter.follow = true;
  Collector collector;
  BackgroundStream stream(streamer, filter, collector);
  REQUIRE(WaitUntil([&] { return journalctl.LastPid() != 0; }, 10s));
  stream.cancel().Cancel();
  REQUIRE(stream.WaitDone(10s));
  CHECK(stream.status().code() == absl::StatusCode::kCancelled);
  CHECK(collector.Messages().empty());
}

TEST_CASE("follow with a limit alone lets journalctl tail and follow", "[journal_stream]") {
  FakeJournalctl journalctl("cat " + Fixture() + "\nexec sleep 100");
  LogStreamer streamer = MakeStreamer(journalctl.path());
  LogFilter filter = Journal();
  filter.follow = true;
  filter.limit = 3;
  Collector collector;
  BackgroundStream stream(streamer, filter, collector);
  REQUIRE(WaitUntil([&] { return !journalctl.Args().empty(); }, 10s));
  CHECK(journalctl.Args() == Lines{"--output=json --no-pager --lines=3 --follow"});
}

TEST_CASE("follow with a limit and a text filter follows after the backlog's last entry",
          "[journal_stream]") {
  const std::string new_entry =
      R"({"__CURSOR":"s=new","__REALTIME_TIMESTAMP":"1700622500000000","MESSAGE":"calibration again"})";
  FakeJournalctl journalctl(
      "case \"$*\" in\n"
      "  *--follow*) echo '" +
      new_entry +
      "'; exec sleep 100;;\n"
      "  *) cat " +
      Fixture() +
      ";;\n"
      "esac");
  LogStreamer streamer = MakeStreamer(journalctl.path());
  LogFilter filter = Journal();
  filter.follow = true;
  filter.limit = 1;
  filter.substring = "calibration";
  Collector collector;
  BackgroundStream stream(streamer, filter, collector);
  REQUIRE(collector.WaitForCount(2));
  CHECK(collector.Messages() == Lines{"calibration done", "calibration again"});
  CHECK(journalctl.Args() ==
        Lines{"--output=json --no-pager", std::string("--output=json --no-pager --after-cursor=") +
                                              kLastCursor + " --follow --no-tail"});
}

TEST_CASE("emit returning false stops journalctl and ends with OK", "[journal_stream]") {
  FakeJournalctl journalctl("cat " + Fixture() + "\nexec sleep 100");
  LogStreamer streamer = MakeStreamer(journalctl.path());
  LogFilter filter = Journal();
  filter.follow = true;
  Collector collector;
  collector.StopAfter(2);
  common::CancelToken cancel;
  CHECK(streamer.Stream(filter, collector.Emit(), cancel).ok());
  CHECK(collector.Messages().size() == 2);
  CHECK(WaitUntil([&] { return ProcessDead(journalctl.LastPid()); }, 5s));
}

TEST_CASE("output lines that are not journal entries are skipped", "[journal_stream]") {
  FakeJournalctl journalctl("echo '-- No entries --'\nhead -n 1 " + Fixture());
  LogStreamer streamer = MakeStreamer(journalctl.path());
  CHECK(Run(streamer, Journal()) == Lines{"hwmon hwmon1: Undervoltage detected!"});
}

TEST_CASE("a missing journalctl is UNAVAILABLE and names the path", "[journal_stream]") {
  LogStreamer streamer = MakeStreamer("/nonexistent/journalctl");
  absl::Status status;
  Run(streamer, Journal(), &status);
  CHECK(status.code() == absl::StatusCode::kUnavailable);
  CHECK_THAT(std::string(status.message()), Catch::Contains("/nonexistent/journalctl"));
}

TEST_CASE("a failing journalctl is UNAVAILABLE with its error message", "[journal_stream]") {
  FakeJournalctl journalctl("echo 'Failed to open journal: Permission denied' >&2; exit 1");
  LogStreamer streamer = MakeStreamer(journalctl.path());
  absl::Status status;
  Run(streamer, Journal(), &status);
  CHECK(status.code() == absl::StatusCode::kUnavailable);
  CHECK_THAT(std::string(status.message()),
             Catch::Contains("exited with status 1: Failed to open journal: Permission denied"));
}

}  // namespace
}  // namespace pi::agent::logs
