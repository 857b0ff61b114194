#include "common/config/json_config.h"

#include <catch2/catch.hpp>

#include "tests/common/test_dir.h"

namespace pi::common {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

struct Sample {
  std::string name = "default";
  bool enabled = false;
  int64_t count = 4;
  std::chrono::nanoseconds timeout = seconds(10);
  std::vector<std::string> tags;
  std::string mode = "auto";
  std::vector<std::pair<std::string, std::string>> files;
};

absl::Status ReadSample(const json& doc, Sample* sample) {
  ConfigReader reader(doc, "");
  reader.Read("name", &sample->name);
  reader.Read("enabled", &sample->enabled);
  reader.Read("count", &sample->count, 1, 100);
  reader.Read("timeout", &sample->timeout, milliseconds(1), seconds(300));
  reader.Read("tags", &sample->tags);
  reader.ReadEnum("mode", &sample->mode, {"auto", "manual"});
  reader.Section("logs", [&](ConfigReader& logs) { logs.StringMap("files", &sample->files); });
  return reader.Finish();
}

TEST_CASE("absent keys keep the defaults the caller filled in", "[config]") {
  Sample sample;
  REQUIRE(ReadSample(json::object(), &sample).ok());
  CHECK(sample.name == "default");
  CHECK(sample.count == 4);
  CHECK(sample.timeout == seconds(10));
}

TEST_CASE("present keys are read with their types", "[config]") {
  Sample sample;
  const json doc = {{"name", "pi"},
                    {"enabled", true},
                    {"count", 7},
                    {"timeout", "1m30s"},
                    {"tags", {"a", "b"}},
                    {"mode", "manual"},
                    {"logs", {{"files", {{"syslog", "/var/log/syslog"}}}}}};
  REQUIRE(ReadSample(doc, &sample).ok());
  CHECK(sample.name == "pi");
  CHECK(sample.enabled);
  CHECK(sample.count == 7);
  CHECK(sample.timeout == seconds(90));
  CHECK(sample.tags == std::vector<std::string>{"a", "b"});
  CHECK(sample.mode == "manual");
  REQUIRE(sample.files.size() == 1);
  CHECK(sample.files[0].second == "/var/log/syslog");
}

TEST_CASE("an unknown key is refused and named with its full path", "[config]") {
  Sample sample;
  const auto status = ReadSample({{"logs", {{"filez", json::object()}}}}, &sample);
  CHECK(status.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(status.message()), Catch::Contains("logs.filez: unknown key"));
}

TEST_CASE("a value of the wrong type names the key and both types", "[config]") {
  Sample sample;
  const auto status = ReadSample({{"count", "seven"}}, &sample);
  CHECK(status.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(status.message()),
             Catch::Contains("count: expected an integer, got string"));
}

TEST_CASE("integers and durations outside their range are refused", "[config]") {
  Sample sample;
  CHECK_THAT(std::string(ReadSample({{"count", 0}}, &sample).message()),
             Catch::Contains("count: must be between 1 and 100"));
  CHECK_THAT(std::string(ReadSample({{"count", 18446744073709551615ull}}, &sample).message()),
             Catch::Contains("count: must be between 1 and 100"));
  CHECK_THAT(std::string(ReadSample({{"timeout", "1h"}}, &sample).message()),
             Catch::Contains("timeout: must be between 1ms and 5m"));
  CHECK_THAT(std::string(ReadSample({{"timeout", "soon"}}, &sample).message()),
             Catch::Contains("timeout: invalid duration"));
  CHECK(sample.count == 4);
}

TEST_CASE("an enum value outside its set lists the allowed values", "[config]") {
  Sample sample;
  const auto status = ReadSample({{"mode", "turbo"}}, &sample);
  CHECK_THAT(std::string(status.message()), Catch::Contains("mode: must be one of auto|manual"));
  CHECK(sample.mode == "auto");
}

TEST_CASE("array elements are named by index", "[config]") {
  const json doc = json::parse(R"({"items": [{"a": 1}, {"a": 2, "b": 3}]})");
  ConfigReader reader(doc, "root");
  std::vector<int64_t> seen;
  reader.ObjectArray("items", [&](ConfigReader& item) {
    int64_t a = 0;
    item.Read("a", &a, 0, 10);
    seen.push_back(a);
  });
  const auto status = reader.Finish();
  CHECK_THAT(std::string(status.message()), Catch::Contains("root.items[1].b: unknown key"));
  CHECK(seen == std::vector<int64_t>{1, 2});
  CHECK(reader.PathOf("x") == "root.x");
}

TEST_CASE("a file with invalid JSON reports its line and column", "[config]") {
  pi::testing::TempDir dir;
  const auto path = dir.Write("bad.json", "{\n  \"a\": 1,\n  \"b\": ,\n}\n");
  const auto doc = ParseJsonConfigFile(path);
  REQUIRE_FALSE(doc.ok());
  CHECK(doc.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(doc.status().message()), Catch::Contains(path + ":3:"));
}

TEST_CASE("a missing config file is NOT_FOUND and a non-object document is refused", "[config]") {
  pi::testing::TempDir dir;
  CHECK(ParseJsonConfigFile((dir.path() / "absent.json").string()).status().code() ==
        absl::StatusCode::kNotFound);
  const auto path = dir.Write("array.json", "[1, 2]");
  CHECK_THAT(std::string(ParseJsonConfigFile(path).status().message()),
             Catch::Contains("top level must be a JSON object"));
}

}  // namespace
}  // namespace pi::common
