#include "node-agent/logs/journal_json.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <string>
#include <vector>

#include "tests/node-agent/logs/logs_test_util.h"

namespace pi::agent::logs {
namespace {

using testing::FromUnixMicros;

std::vector<JournalRecord> ParseFixture() {
  std::ifstream in(std::string(PI_FIXTURES_DIR) + "/logs/journal.jsonl");
  REQUIRE(in);
  std::vector<JournalRecord> records;
  for (std::string line; std::getline(in, line);) {
    auto record = ParseJournalJson(line);
    INFO(line);
    REQUIRE(record.ok());
    records.push_back(*record);
  }
  REQUIRE(records.size() == 6);
  return records;
}

TEST_CASE("a kernel entry has priority, host and identifier but no unit or pid", "[journal]") {
  const std::vector<JournalRecord> records = ParseFixture();
  const LogEntry& e = records[0].entry;
  CHECK(e.timestamp == FromUnixMicros(1700622424123456));
  CHECK(e.source == "journal");
  CHECK(e.message == "hwmon hwmon1: Undervoltage detected!");
  CHECK(e.priority == 4);
  CHECK(e.hostname == "raspberrypi");
  CHECK(e.identifier == "kernel");
  CHECK(e.unit.empty());
  CHECK(e.pid == 0);
}

TEST_CASE("a service entry carries its unit and pid", "[journal]") {
  std::vector<JournalRecord> records = ParseFixture();
  const LogEntry& e = records[2].entry;
  CHECK(e.timestamp == FromUnixMicros(1700622430000096));
  CHECK(e.unit == "ssh.service");
  CHECK(e.pid == 812);
  CHECK(e.identifier == "sshd");
  CHECK(e.priority == 6);
  CHECK(e.message.rfind("Accepted publickey for pi", 0) == 0);
  CHECK(records[2].cursor.rfind("s=6f1d0a4ae5a8449ab01c8b24d5a5f3c1;i=1a2d;", 0) == 0);
}

TEST_CASE("a MESSAGE given as a byte array is decoded and made valid UTF-8", "[journal]") {
  const std::vector<JournalRecord> records = ParseFixture();
  const LogEntry& e = records[3].entry;
  CHECK(e.message == "sensor id \xEF\xBF\xBD\xEF\xBF\xBD unreadable");
  CHECK(e.priority == 3);
}

TEST_CASE("a null MESSAGE (too large to show) becomes empty", "[journal]") {
  const std::vector<JournalRecord> records = ParseFixture();
  const LogEntry& e = records[4].entry;
  CHECK(e.message.empty());
  CHECK(e.priority == 7);
}

TEST_CASE("a field set twice uses its first value", "[journal]") {
  CHECK(ParseFixture()[5].entry.message == "calibration done");
}

TEST_CASE("a line that is not JSON is INVALID_ARGUMENT", "[journal]") {
  CHECK(ParseJournalJson("-- No entries --").status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("JSON that is not an object is INVALID_ARGUMENT", "[journal]") {
  CHECK(ParseJournalJson("[1,2,3]").status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("an entry without __REALTIME_TIMESTAMP is INVALID_ARGUMENT", "[journal]") {
  CHECK(ParseJournalJson(R"({"MESSAGE":"x"})").status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(ParseJournalJson(R"({"MESSAGE":"x","__REALTIME_TIMESTAMP":"12ab"})").status().code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("an out-of-range PRIORITY is left unknown", "[journal]") {
  auto record = ParseJournalJson(R"({"__REALTIME_TIMESTAMP":"1","PRIORITY":"9","MESSAGE":"x"})");
  REQUIRE(record.ok());
  CHECK_FALSE(record->entry.priority.has_value());
}

}  // namespace
}  // namespace pi::agent::logs
