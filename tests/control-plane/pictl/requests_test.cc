#include "control-plane/pictl/requests.h"

#include <catch2/catch.hpp>
#include <string>

#include "common/grpc/proto_time.h"
#include "tests/common/test_dir.h"

namespace pi::controlplane::pictl {
namespace {

using std::chrono_literals::operator""s;

std::string MessageOf(const absl::Status& status) {
  CHECK(status.code() == absl::StatusCode::kInvalidArgument);
  return std::string(status.message());
}

GpioOptions Gpio(const std::string& action, const std::string& line = "17") {
  GpioOptions options;
  options.action = action;
  options.line = line;
  return options;
}

}  // namespace

// ---- nodes list

TEST_CASE("node states parse in any case, with or without the prefix") {
  CHECK(*ParseNodeState("READY") == pb::NODE_STATE_READY);
  CHECK(*ParseNodeState("down") == pb::NODE_STATE_DOWN);
  CHECK(*ParseNodeState("NODE_STATE_CORDONED") == pb::NODE_STATE_CORDONED);
}

TEST_CASE("an unknown node state is refused with the valid names") {
  CHECK_THAT(MessageOf(ParseNodeState("SLEEPY").status()), Catch::Contains("READY, DOWN"));
}

TEST_CASE("the UNSPECIFIED node state is refused") { CHECK(!ParseNodeState("UNSPECIFIED").ok()); }

TEST_CASE("a list request carries the normalised selector and the states") {
  auto request = BuildListNodesRequest(" role = worker ,zone=a", {"ready", "DRAINING"});
  REQUIRE(request.ok());
  CHECK(request->label_selector() == "role=worker,zone=a");
  REQUIRE(request->states_size() == 2);
  CHECK(request->states(1) == pb::NODE_STATE_DRAINING);
  CHECK(BuildListNodesRequest("", {})->label_selector().empty());
}

TEST_CASE("a selector term without '=' is refused") {
  CHECK_THAT(MessageOf(BuildListNodesRequest("role=worker,zone", {}).status()),
             Catch::Contains("\"zone\" is not key=value"));
}

TEST_CASE("a selector term with an empty key is refused") {
  CHECK(!BuildListNodesRequest("=worker", {}).ok());
}

TEST_CASE("an empty selector term between commas is refused") {
  CHECK(!BuildListNodesRequest("a=b,,c=d", {}).ok());
}

TEST_CASE("a list request with a bad state is refused") {
  CHECK(!BuildListNodesRequest("", {"READY", "nope"}).ok());
}

// ---- nodes label

TEST_CASE("label changes set key=value and remove key-") {
  auto request = BuildLabelNodeRequest("pi-1", {"role=worker", "zone-", "empty=", "a=b=c"});
  REQUIRE(request.ok());
  CHECK(request->node().id() == "pi-1");
  CHECK(request->set().at("role") == "worker");
  CHECK(request->set().at("empty").empty());
  CHECK(request->set().at("a") == "b=c");
  REQUIRE(request->remove_size() == 1);
  CHECK(request->remove(0) == "zone");
}

TEST_CASE("a label change without '=' or a trailing '-' is refused") {
  CHECK_THAT(MessageOf(BuildLabelNodeRequest("pi-1", {"role"}).status()),
             Catch::Contains("key=value to set a label or key- to remove it"));
}

TEST_CASE("a label change with an empty key is refused") {
  CHECK(!BuildLabelNodeRequest("pi-1", {"=worker"}).ok());
}

TEST_CASE("a lone '-' is not a label removal") {
  CHECK(!BuildLabelNodeRequest("pi-1", {"-"}).ok());
}

TEST_CASE("a label set and removed in one call is refused") {
  CHECK_THAT(MessageOf(BuildLabelNodeRequest("pi-1", {"role=a", "role-"}).status()),
             Catch::Contains("given twice"));
}

TEST_CASE("a label call without changes is refused") {
  CHECK(!BuildLabelNodeRequest("pi-1", {}).ok());
}

// ---- gpio

TEST_CASE("a numeric GPIO line is an offset, anything else a line name") {
  auto by_offset = BuildGpioRequest("pi-1", Gpio("read", "17"));
  REQUIRE(by_offset.ok());
  CHECK(by_offset->request().line_case() == pb::GPIORequest::kOffset);
  CHECK(by_offset->request().offset() == 17);
  CHECK(by_offset->request().action() == pb::GPIO_ACTION_READ);
  auto by_name = BuildGpioRequest("pi-1", Gpio("release", "GPIO17"));
  REQUIRE(by_name.ok());
  CHECK(by_name->request().line_name() == "GPIO17");
  CHECK(by_name->request().action() == pb::GPIO_ACTION_RELEASE);
}

TEST_CASE("a GPIO write carries the chip, the level and the hold") {
  GpioOptions options = Gpio("write");
  options.chip = "pinctrl-bcm2835";
  options.value = "1";
  options.hold = "30s";
  auto request = BuildGpioRequest("pi-1", options);
  REQUIRE(request.ok());
  CHECK(request->request().chip() == "pinctrl-bcm2835");
  CHECK(request->request().value() == 1);
  CHECK(request->request().hold().seconds() == 30);
}

TEST_CASE("a GPIO configure carries direction, bias, drive, polarity and level") {
  GpioOptions options = Gpio("configure");
  options.direction = "out";
  options.bias = "pull-down";
  options.drive = "open-drain";
  options.active_low = true;
  options.value = "0";
  auto request = BuildGpioRequest("pi-1", options);
  REQUIRE(request.ok());
  const auto& gpio = request->request();
  CHECK(gpio.action() == pb::GPIO_ACTION_CONFIGURE);
  CHECK(gpio.direction() == pb::GPIO_DIRECTION_OUTPUT);
  CHECK(gpio.bias() == pb::GPIO_BIAS_PULL_DOWN);
  CHECK(gpio.drive() == pb::GPIO_DRIVE_OPEN_DRAIN);
  CHECK(gpio.active_low());
  CHECK(gpio.has_value());
  CHECK(gpio.value() == 0);
}

TEST_CASE("a GPIO configure leaves unset what was not given") {
  GpioOptions options = Gpio("configure");
  options.direction = "in";
  auto request = BuildGpioRequest("pi-1", options);
  REQUIRE(request.ok());
  CHECK_FALSE(request->request().has_bias());
  CHECK_FALSE(request->request().has_active_low());
  CHECK_FALSE(request->request().has_value());
}

TEST_CASE("a GPIO write level other than 0 or 1 is refused") {
  GpioOptions options = Gpio("write");
  options.value = "2";
  CHECK_THAT(MessageOf(BuildGpioRequest("pi-1", options).status()), Catch::Contains("0 or 1"));
}

TEST_CASE("a GPIO write without a level is refused") {
  CHECK(!BuildGpioRequest("pi-1", Gpio("write")).ok());
}

TEST_CASE("a GPIO offset that does not fit 32 bits is refused") {
  CHECK(!BuildGpioRequest("pi-1", Gpio("read", "99999999999")).ok());
}

TEST_CASE("a GPIO line starting with a digit but not a number is refused") {
  CHECK(!BuildGpioRequest("pi-1", Gpio("read", "17a")).ok());
}

TEST_CASE("an empty GPIO line is refused") {
  CHECK(!BuildGpioRequest("pi-1", Gpio("read", "")).ok());
}

TEST_CASE("a bad GPIO hold duration is refused") {
  GpioOptions options = Gpio("write");
  options.value = "1";
  options.hold = "soon";
  CHECK_THAT(MessageOf(BuildGpioRequest("pi-1", options).status()), Catch::Contains("--hold"));
}

TEST_CASE("a GPIO configure without a direction is refused") {
  CHECK(!BuildGpioRequest("pi-1", Gpio("configure")).ok());
}

TEST_CASE("a bad GPIO direction is refused") {
  GpioOptions options = Gpio("configure");
  options.direction = "sideways";
  CHECK_THAT(MessageOf(BuildGpioRequest("pi-1", options).status()), Catch::Contains("--direction"));
}

TEST_CASE("a bad GPIO bias is refused") {
  GpioOptions options = Gpio("configure");
  options.direction = "in";
  options.bias = "up";
  CHECK_THAT(MessageOf(BuildGpioRequest("pi-1", options).status()), Catch::Contains("--bias"));
}

TEST_CASE("a bad GPIO drive is refused") {
  GpioOptions options = Gpio("configure");
  options.direction = "out";
  options.drive = "strong";
  CHECK_THAT(MessageOf(BuildGpioRequest("pi-1", options).status()), Catch::Contains("--drive"));
}

TEST_CASE("a GPIO level for an input is refused") {
  GpioOptions options = Gpio("configure");
  options.direction = "in";
  options.value = "1";
  CHECK(!BuildGpioRequest("pi-1", options).ok());
}

TEST_CASE("a GPIO read with a level is refused") {
  GpioOptions options = Gpio("read");
  options.value = "1";
  CHECK(!BuildGpioRequest("pi-1", options).ok());
}

TEST_CASE("configure options on a GPIO write are refused") {
  GpioOptions options = Gpio("write");
  options.value = "1";
  options.active_low = true;
  CHECK(!BuildGpioRequest("pi-1", options).ok());
}

TEST_CASE("an unknown GPIO action is refused") {
  CHECK(!BuildGpioRequest("pi-1", Gpio("toggle")).ok());
}

// ---- exec

TEST_CASE("an exec request carries argv, timeout, directory and environment") {
  ExecOptions options{{"/bin/echo", "hi"}, "30s", "/tmp", {"LANG=C", "X=a=b"}};
  auto request = BuildCommandRequest("pi-1", options);
  REQUIRE(request.ok());
  const auto& command = request->request();
  CHECK(command.argv_size() == 2);
  CHECK(command.timeout().seconds() == 30);
  CHECK(command.working_directory() == "/tmp");
  CHECK(command.env().at("LANG") == "C");
  CHECK(command.env().at("X") == "a=b");
}

TEST_CASE("an exec without a command is refused") { CHECK(!BuildCommandRequest("pi-1", {}).ok()); }

TEST_CASE("an exec of a relative command is refused with the reason") {
  CHECK_THAT(MessageOf(BuildCommandRequest("pi-1", {{"ls"}, "", "", {}}).status()),
             Catch::Contains("absolute path"));
}

TEST_CASE("an exec with a bad timeout is refused") {
  CHECK(!BuildCommandRequest("pi-1", {{"/bin/ls"}, "forever", "", {}}).ok());
}

TEST_CASE("an exec with a zero timeout is refused") {
  CHECK(!BuildCommandRequest("pi-1", {{"/bin/ls"}, "0s", "", {}}).ok());
}

TEST_CASE("an exec with a relative working directory is refused") {
  CHECK(!BuildCommandRequest("pi-1", {{"/bin/ls"}, "", "tmp", {}}).ok());
}

TEST_CASE("an exec environment entry without '=' is refused") {
  CHECK_THAT(MessageOf(BuildCommandRequest("pi-1", {{"/bin/ls"}, "", "", {"LANG"}}).status()),
             Catch::Contains("NAME=value"));
}

TEST_CASE("an exec environment entry with an empty name is refused") {
  CHECK(!BuildCommandRequest("pi-1", {{"/bin/ls"}, "", "", {"=C"}}).ok());
}

TEST_CASE("an exec environment name given twice is refused") {
  CHECK(!BuildCommandRequest("pi-1", {{"/bin/ls"}, "", "", {"A=1", "A=2"}}).ok());
}

// ---- logs

TEST_CASE("a log request carries the filter, since counted back from now") {
  const auto now = std::chrono::system_clock::time_point(std::chrono::hours(1000));
  LogsOptions options;
  options.source = "syslog";
  options.follow = true;
  options.since = "10m";
  options.grep = "error";
  options.regex = "e+";
  options.unit = "ssh.service";
  options.priority = "4";
  options.limit = 20;
  auto request = BuildLogRequest("pi-1", options, now);
  REQUIRE(request.ok());
  const auto& filter = request->filter();
  CHECK(filter.source() == "syslog");
  CHECK(filter.follow());
  CHECK(*common::FromProtoTimestamp(filter.since(), "since") == now - std::chrono::minutes(10));
  CHECK(filter.contains() == "error");
  CHECK(filter.regex() == "e+");
  CHECK(filter.unit() == "ssh.service");
  CHECK(filter.max_priority() == 4);
  CHECK(filter.limit() == 20);
}

TEST_CASE("log priorities take syslog names") {
  LogsOptions options;
  options.priority = "debug";
  CHECK(BuildLogRequest("pi-1", options, {})->filter().max_priority() == 7);
  options.priority = "emerg";
  CHECK(BuildLogRequest("pi-1", options, {})->filter().max_priority() == 0);
}

TEST_CASE("a log request without options leaves since and priority unset") {
  auto request = BuildLogRequest("pi-1", {}, {});
  REQUIRE(request.ok());
  CHECK_FALSE(request->filter().has_since());
  CHECK_FALSE(request->filter().has_max_priority());
}

TEST_CASE("a log priority above 7 is refused") {
  LogsOptions options;
  options.priority = "8";
  CHECK_THAT(MessageOf(BuildLogRequest("pi-1", options, {}).status()),
             Catch::Contains("--priority"));
}

TEST_CASE("an unknown log priority name is refused") {
  LogsOptions options;
  options.priority = "loud";
  CHECK(!BuildLogRequest("pi-1", options, {}).ok());
}

TEST_CASE("a bad log --since is refused") {
  LogsOptions options;
  options.since = "yesterday";
  CHECK_THAT(MessageOf(BuildLogRequest("pi-1", options, {}).status()), Catch::Contains("--since"));
}

TEST_CASE("a negative log limit is refused") {
  LogsOptions options;
  options.limit = -1;
  CHECK(!BuildLogRequest("pi-1", options, {}).ok());
}

TEST_CASE("a log limit beyond 32 bits is refused") {
  LogsOptions options;
  options.limit = int64_t{1} << 40;
  CHECK(!BuildLogRequest("pi-1", options, {}).ok());
}

// ---- tokens, watch, timeout

TEST_CASE("a token request carries ttl, uses and description") {
  auto request = BuildCreateTokenRequest({"2h", 3, "rack 2"});
  REQUIRE(request.ok());
  CHECK(request->ttl().seconds() == 7200);
  CHECK(request->max_uses() == 3);
  CHECK(request->description() == "rack 2");
}

TEST_CASE("a token ttl that does not parse is refused") {
  CHECK_THAT(MessageOf(BuildCreateTokenRequest({"1 day", 0, ""}).status()),
             Catch::Contains("--ttl"));
}

TEST_CASE("a zero token ttl is refused") { CHECK(!BuildCreateTokenRequest({"0", 0, ""}).ok()); }

TEST_CASE("negative token uses are refused") {
  CHECK(!BuildCreateTokenRequest({"1h", -1, ""}).ok());
}

TEST_CASE("a watch from a revision carries it") {
  CHECK(BuildWatchRequest(42)->since_revision() == 42);
}

TEST_CASE("a negative watch revision is refused") { CHECK(!BuildWatchRequest(-1).ok()); }

TEST_CASE("--timeout takes a positive duration") { CHECK(*ParseTimeout("1m30s") == 90s); }

TEST_CASE("a --timeout that does not parse is refused") { CHECK(!ParseTimeout("ten").ok()); }

TEST_CASE("a zero --timeout is refused") { CHECK(!ParseTimeout("0s").ok()); }

// ---- queues

TEST_CASE("queue stats asks for one route, or every route when none is given") {
  CHECK(BuildQueueStatsRequest("github").route() == "github");
  CHECK(BuildQueueStatsRequest("").route().empty());
}

TEST_CASE("a dead letter listing carries the route and a limit of 1..1000") {
  auto request = BuildListDeadLettersRequest("github", 1000);
  REQUIRE(request.ok());
  CHECK(request->route() == "github");
  CHECK(request->limit() == 1000);
  CHECK(BuildListDeadLettersRequest("github", 1)->limit() == 1);
  CHECK_THAT(MessageOf(BuildListDeadLettersRequest("github", 0).status()),
             Catch::Contains("--limit 0"));
  CHECK_THAT(MessageOf(BuildListDeadLettersRequest("github", 1001).status()),
             Catch::Contains("1..1000"));
  CHECK_THAT(MessageOf(BuildListDeadLettersRequest("github", -5).status()),
             Catch::Contains("--limit -5"));
  CHECK_THAT(MessageOf(BuildListDeadLettersRequest("", 10).status()), Catch::Contains("ROUTE"));
}

TEST_CASE("dead letter ids keep their order and drop repeats") {
  auto request = BuildDeadLetterIds("github", {"b", "a", "b"});
  REQUIRE(request.ok());
  CHECK(request->route() == "github");
  REQUIRE(request->ids_size() == 2);
  CHECK(request->ids(0) == "b");
  CHECK(request->ids(1) == "a");
}

TEST_CASE("dead letter ids must be 1..1000 non-empty ids of a named route") {
  CHECK_THAT(MessageOf(BuildDeadLetterIds("github", {}).status()), Catch::Contains("--all"));
  CHECK_THAT(MessageOf(BuildDeadLetterIds("github", {"a", ""}).status()), Catch::Contains("empty"));
  CHECK_THAT(MessageOf(BuildDeadLetterIds("", {"a"}).status()), Catch::Contains("ROUTE"));
  std::vector<std::string> many;
  for (int i = 0; i < 1001; ++i) many.push_back(std::to_string(i));
  CHECK_THAT(MessageOf(BuildDeadLetterIds("github", many).status()),
             Catch::Contains("at most 1000"));
  many.pop_back();
  CHECK(BuildDeadLetterIds("github", many).ok());
  // Repeats do not count against the cap.
  many.push_back("0");
  CHECK(BuildDeadLetterIds("github", many).ok());
}

TEST_CASE("publish takes the payload from --data and headers as NAME=VALUE") {
  PublishOptions options;
  options.data = "{\"ok\":true}";
  options.headers = {"Content-Type=application/json", "X-Empty=", "X-Eq=a=b"};
  auto request = BuildPublishRequest("github", options);
  REQUIRE(request.ok());
  CHECK(request->route() == "github");
  CHECK(request->payload() == "{\"ok\":true}");
  REQUIRE(request->headers_size() == 3);
  CHECK(request->headers().at("Content-Type") == "application/json");
  CHECK(request->headers().at("X-Empty").empty());
  CHECK(request->headers().at("X-Eq") == "a=b");
}

TEST_CASE("publish --data '' sends an empty payload") {
  PublishOptions options;
  options.data = "";
  auto request = BuildPublishRequest("github", options);
  REQUIRE(request.ok());
  CHECK(request->payload().empty());
}

TEST_CASE("publish --file reads the payload byte for byte") {
  pi::testing::TempDir dir;
  const std::string bytes("line\n\0\xff", 7);
  PublishOptions options;
  options.file = dir.Write("payload.bin", bytes);
  auto request = BuildPublishRequest("github", options);
  REQUIRE(request.ok());
  CHECK(request->payload() == bytes);
}

TEST_CASE("publish with a missing file names the file") {
  PublishOptions options;
  options.file = "/nonexistent/payload.json";
  CHECK_THAT(MessageOf(BuildPublishRequest("github", options).status()),
             Catch::Contains("/nonexistent/payload.json"));
}

TEST_CASE("publish needs exactly one of --data and --file") {
  PublishOptions neither;
  CHECK_THAT(MessageOf(BuildPublishRequest("github", neither).status()),
             Catch::Contains("exactly one of --data or --file"));
  PublishOptions both;
  both.data = "x";
  both.file = "/tmp/x";
  CHECK_THAT(MessageOf(BuildPublishRequest("github", both).status()),
             Catch::Contains("exactly one"));
}

TEST_CASE("publish refuses malformed and repeated headers") {
  for (const char* bad : {"novalue", "=value", " X=1", "X =1"}) {
    PublishOptions options;
    options.data = "x";
    options.headers = {bad};
    INFO(bad);
    CHECK_THAT(MessageOf(BuildPublishRequest("github", options).status()),
               Catch::Contains("--header"));
  }
  PublishOptions twice;
  twice.data = "x";
  twice.headers = {"A=1", "A=2"};
  CHECK_THAT(MessageOf(BuildPublishRequest("github", twice).status()), Catch::Contains("twice"));
}

}  // namespace pi::controlplane::pictl
