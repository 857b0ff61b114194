#include "node-agent/logs/log_streamer.h"

#include <catch2/catch.hpp>
#include <string>

#include "tests/node-agent/logs/logs_test_util.h"

namespace pi::agent::logs {
namespace {

using testing::Collector;

LogsConfig TwoFiles() {
  LogsConfig config;
  config.files = {{"syslog", std::string(PI_FIXTURES_DIR) + "/logs/syslog"},
                  {"app", std::string(PI_FIXTURES_DIR) + "/logs/app.log"}};
  config.journalctl_path = "/nonexistent/journalctl";
  return config;
}

absl::Status StreamWith(const LogsConfig& config, const LogFilter& filter) {
  auto streamer = LogStreamer::Create(config);
  REQUIRE(streamer.ok());
  Collector collector;
  common::CancelToken cancel;
  return streamer->Stream(filter, collector.Emit(), cancel);
}

LogFilter FromSyslog() {
  LogFilter filter;
  filter.source = "syslog";
  return filter;
}

absl::StatusCode CreateCode(const LogsConfig& config) {
  return LogStreamer::Create(config).status().code();
}

TEST_CASE("a negative limit is INVALID_ARGUMENT", "[log_filter]") {
  LogFilter filter = FromSyslog();
  filter.limit = -1;
  CHECK(StreamWith(TwoFiles(), filter).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("a limit over logs.max_limit is INVALID_ARGUMENT and names the maximum", "[log_filter]") {
  LogsConfig config = TwoFiles();
  config.max_limit = 100;
  LogFilter filter = FromSyslog();
  filter.limit = 101;
  absl::Status status = StreamWith(config, filter);
  CHECK(status.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(status.message()), Catch::Contains("logs.max_limit (100)"));
}

TEST_CASE("a limit at logs.max_limit is accepted", "[log_filter]") {
  LogsConfig config = TwoFiles();
  config.max_limit = 100;
  LogFilter filter = FromSyslog();
  filter.limit = 100;
  CHECK(StreamWith(config, filter).ok());
}

TEST_CASE("a priority above 7 is INVALID_ARGUMENT", "[log_filter]") {
  LogFilter filter;
  filter.source = "journal";
  filter.max_priority = 8;
  CHECK(StreamWith(TwoFiles(), filter).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("a negative priority is INVALID_ARGUMENT", "[log_filter]") {
  LogFilter filter;
  filter.source = "journal";
  filter.max_priority = -1;
  CHECK(StreamWith(TwoFiles(), filter).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("a regex that does not compile is INVALID_ARGUMENT", "[log_filter]") {
  LogFilter filter = FromSyslog();
  filter.regex = "(unclosed";
  absl::Status status = StreamWith(TwoFiles(), filter);
  CHECK(status.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(status.message()), Catch::Contains("(unclosed"));
}

TEST_CASE("a regex with a back-reference is INVALID_ARGUMENT", "[log_filter]") {
  LogFilter filter = FromSyslog();
  filter.regex = R"((\w+) \1)";
  CHECK(StreamWith(TwoFiles(), filter).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("an overlong regex is INVALID_ARGUMENT", "[log_filter]") {
  LogFilter filter = FromSyslog();
  filter.regex = std::string(2000, 'a');
  CHECK(StreamWith(TwoFiles(), filter).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("a unit name with characters journalctl would not take is INVALID_ARGUMENT",
          "[log_filter]") {
  LogFilter filter;
  filter.source = "journal";
  filter.unit = "ssh.service --file=/etc/shadow";
  CHECK(StreamWith(TwoFiles(), filter).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("a unit filter on a file source is INVALID_ARGUMENT", "[log_filter]") {
  LogFilter filter = FromSyslog();
  filter.unit = "ssh.service";
  CHECK(StreamWith(TwoFiles(), filter).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("a priority filter on a file source is INVALID_ARGUMENT", "[log_filter]") {
  LogFilter filter = FromSyslog();
  filter.max_priority = 3;
  CHECK(StreamWith(TwoFiles(), filter).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("an unknown source is NOT_FOUND and lists the configured ones", "[log_filter]") {
  LogFilter filter;
  filter.source = "/etc/shadow";
  absl::Status status = StreamWith(TwoFiles(), filter);
  CHECK(status.code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(status.message()), Catch::Contains("journal, app, syslog"));
}

TEST_CASE("the journal is NOT_FOUND when journald is disabled", "[log_filter]") {
  LogsConfig config = TwoFiles();
  config.journald = false;
  LogFilter filter;
  filter.source = "journal";
  CHECK(StreamWith(config, filter).code() == absl::StatusCode::kNotFound);
}

TEST_CASE("no source with journald disabled is INVALID_ARGUMENT", "[log_filter]") {
  LogsConfig config = TwoFiles();
  config.journald = false;
  absl::Status status = StreamWith(config, LogFilter());
  CHECK(status.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(status.message()), Catch::Contains("app, syslog"));
}

TEST_CASE("source names list the journal first when enabled", "[log_filter]") {
  auto streamer = LogStreamer::Create(TwoFiles());
  REQUIRE(streamer.ok());
  CHECK(streamer->SourceNames() == std::vector<std::string>{"journal", "app", "syslog"});
}

TEST_CASE("a config with a relative file path is refused", "[log_config]") {
  LogsConfig config;
  config.files = {{"app", "var/log/app.log"}};
  CHECK(CreateCode(config) == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("a config with \"..\" in a file path is refused", "[log_config]") {
  LogsConfig config;
  config.files = {{"app", "/var/log/../../etc/shadow"}};
  CHECK(CreateCode(config) == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("a file source may not be called \"journal\"", "[log_config]") {
  LogsConfig config;
  config.files = {{"journal", "/var/log/syslog"}};
  CHECK(CreateCode(config) == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("a relative journalctl path is refused", "[log_config]") {
  LogsConfig config;
  config.journalctl_path = "journalctl";
  CHECK(CreateCode(config) == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("a zero follow poll interval is refused", "[log_config]") {
  LogsConfig config;
  config.follow_poll_interval = std::chrono::milliseconds(0);
  CHECK(CreateCode(config) == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("the default config is valid", "[log_config]") {
  CHECK(CreateCode(LogsConfig()) == absl::StatusCode::kOk);
}

}  // namespace
}  // namespace pi::agent::logs
