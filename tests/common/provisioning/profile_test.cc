#include "common/provisioning/profile.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <string>
#include <utility>

#include "common/system/files.h"

namespace pi::common::provisioning {
namespace {

using std::chrono::milliseconds;

constexpr std::string_view kFullProfile = R"({
  "name": "sample",
  "description": "every kind of step",
  "parameters": {
    "hostname": {"type": "hostname", "description": "the node's name"},
    "greeting": {"default": "Hello"},
    "config_dir": {"type": "path", "default": "/etc/sample"},
    "port": {"type": "integer", "default": 8080},
    "debug": {"type": "boolean", "default": false}
  },
  "steps": [
    {"name": "motd", "write_file": {"path": "/etc/motd", "content": "{{greeting}} from {{hostname}}\n", "mode": "0640"}},
    {"name": "config", "write_file": {"path": "{{config_dir}}/{{hostname}}.conf", "content": "port={{port}} debug={{debug}}"}},
    {"name": "apply", "run": {"argv": ["/usr/bin/hostnamectl", "set-hostname", "{{hostname}}"], "timeout": "30s", "unless": ["/bin/grep", "-qx", "{{hostname}}", "/etc/hostname"], "only_if_changed": true}},
    {"name": "led", "gpio": {"chip": "pinctrl-bcm2711", "line": 17, "value": 1}},
    {"name": "motd-ok", "check": {"path": "/etc/motd", "contains": "{{hostname}}"}},
    {"name": "true", "check": {"argv": ["/bin/true"]}}
  ]
})";

// A one-step profile around `step` (a JSON object text) with one string parameter "p".
std::string WithStep(const std::string& step) {
  return R"({"name": "t", "parameters": {"p": {"default": "v"}, "dir": {"type": "path", "default": "/srv"}}, "steps": [)" +
         step + "]}";
}

absl::Status ParseStatus(std::string_view text) { return ParseProfile(text, "test.json").status(); }

// The error message when `text` does not parse; fails the test when it does.
std::string ParseError(std::string_view text) {
  absl::Status status = ParseStatus(text);
  INFO(text);
  REQUIRE(status.code() == absl::StatusCode::kInvalidArgument);
  return std::string(status.message());
}

TEST_CASE("a profile with every step kind parses into typed steps", "[profile]") {
  absl::StatusOr<Profile> profile = ParseProfile(kFullProfile, "sample.json");
  INFO(profile.status().ToString());
  REQUIRE(profile.ok());
  CHECK(profile->name == "sample");
  CHECK(profile->description == "every kind of step");
  REQUIRE(profile->parameters.size() == 5);
  REQUIRE(profile->steps.size() == 6);

  const auto& motd = std::get<WriteFileStep>(profile->steps[0].action);
  CHECK(motd.path == "/etc/motd");
  CHECK(motd.mode == 0640);
  CHECK(std::get<WriteFileStep>(profile->steps[1].action).mode == 0644);

  const auto& run = std::get<RunStep>(profile->steps[2].action);
  CHECK(run.argv.size() == 3);
  CHECK(run.timeout == milliseconds(30000));
  CHECK(run.unless.front() == "/bin/grep");
  CHECK(run.only_if_changed);

  const auto& gpio = std::get<GpioStep>(profile->steps[3].action);
  CHECK(gpio.chip == "pinctrl-bcm2711");
  CHECK(gpio.line == 17);
  CHECK(gpio.value == 1);

  const auto& check = std::get<CheckStep>(profile->steps[4].action);
  CHECK(check.path == "/etc/motd");
  CHECK(check.contains == "{{hostname}}");
  CHECK(std::get<CheckStep>(profile->steps[5].action).argv.front() == "/bin/true");
}

TEST_CASE("defaults written as JSON numbers and booleans become strings", "[profile]") {
  absl::StatusOr<Profile> profile = ParseProfile(kFullProfile, "sample.json");
  REQUIRE(profile.ok());
  std::map<std::string, std::optional<std::string>> defaults;
  for (const Parameter& parameter : profile->parameters) {
    defaults[parameter.name] = parameter.default_value;
  }
  CHECK(defaults["port"] == "8080");
  CHECK(defaults["debug"] == "false");
  CHECK(defaults["greeting"] == "Hello");
  CHECK_FALSE(defaults["hostname"].has_value());
}

TEST_CASE("the example profiles in deploy/profiles parse and render with their defaults",
          "[profile]") {
  const std::map<std::string, std::map<std::string, std::string>> given = {
      {"motd", {}},
      {"hostname", {{"hostname", "node-1"}}},
      {"k3s-agent", {{"server_url", "https://10.0.0.1:6443"}}}};
  for (const auto& [name, parameters] : given) {
    const std::string path = std::string(PI_SOURCE_DIR) + "/deploy/profiles/" + name + ".json";
    absl::StatusOr<std::string> text = ReadFileToString(path, 1 << 20);
    INFO(path);
    REQUIRE(text.ok());
    absl::StatusOr<Profile> profile = ParseProfile(*text, path);
    INFO(profile.status().ToString());
    REQUIRE(profile.ok());
    CHECK(profile->name == name);
    absl::StatusOr<std::map<std::string, std::string>> resolved =
        ResolveParameters(*profile, parameters);
    INFO(resolved.status().ToString());
    REQUIRE(resolved.ok());
    absl::StatusOr<Profile> rendered = Render(*profile, *resolved);
    INFO(rendered.status().ToString());
    REQUIRE(rendered.ok());
  }
}

TEST_CASE("every file in deploy/profiles is a valid profile named after its file", "[profile]") {
  int count = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(PI_SOURCE_DIR) + "/deploy/profiles")) {
    if (entry.path().extension() != ".json") continue;
    absl::StatusOr<std::string> text = ReadFileToString(entry.path().string(), 1 << 20);
    REQUIRE(text.ok());
    absl::StatusOr<Profile> profile = ParseProfile(*text, entry.path().string());
    INFO(profile.status().ToString());
    REQUIRE(profile.ok());
    CHECK(profile->name == entry.path().stem().string());
    ++count;
  }
  CHECK(count >= 3);
}

TEST_CASE("malformed JSON is refused naming the origin", "[profile]") {
  CHECK(ParseError("{\"name\": ").find("test.json: invalid JSON") == 0);
  CHECK(ParseError("[]").find("test.json: the top level must be a JSON object") == 0);
  CHECK(ParseError("").find("test.json") == 0);
}

TEST_CASE("unknown keys are refused with their key path", "[profile]") {
  CHECK(
      ParseError(
          R"({"name": "t", "steps": [{"name": "a", "check": {"argv": ["/bin/true"]}}], "colour": 1})")
          .find("test.json: colour: unknown key") == 0);
  CHECK(ParseError(
            WithStep(
                R"({"name": "a", "write_file": {"path": "/a", "content": "", "owner": "root"}})"))
            .find("test.json: steps[0].write_file.owner: unknown key") == 0);
  CHECK(
      ParseError(
          R"({"name": "t", "parameters": {"p": {"typ": "string"}}, "steps": [{"name": "a", "check": {"argv": ["/bin/true"]}}]})")
          .find("parameters.p.typ: unknown key") != std::string::npos);
  CHECK(ParseError(WithStep(R"({"name": "a", "chek": {"argv": ["/bin/true"]}})"))
            .find("needs exactly one action") != std::string::npos);
}

TEST_CASE("required top-level fields are enforced", "[profile]") {
  CHECK(ParseError(R"({"steps": [{"name": "a", "check": {"argv": ["/bin/true"]}}]})")
            .find("name: is required") != std::string::npos);
  CHECK(ParseError(R"({"name": "t"})").find("steps: is required") != std::string::npos);
  CHECK(ParseError(R"({"name": "t", "steps": []})").find("at least one step") != std::string::npos);
  CHECK(ParseError(R"({"name": "", "steps": [{"name": "a", "check": {"argv": ["/bin/true"]}}]})")
            .find("must not be empty") != std::string::npos);
}

TEST_CASE("a step needs a unique name and exactly one action", "[profile]") {
  CHECK(ParseError(WithStep(R"({"write_file": {"path": "/a", "content": ""}})"))
            .find("steps[0].name: is required") != std::string::npos);
  CHECK(
      ParseError(
          WithStep(
              R"({"name": "a", "write_file": {"path": "/a", "content": ""}, "run": {"argv": ["/bin/true"]}})"))
          .find("it has 2") != std::string::npos);
  CHECK(ParseError(WithStep(R"({"name": "a"})")).find("it has 0") != std::string::npos);
  CHECK(
      ParseError(
          WithStep(
              R"({"name": "a", "check": {"argv": ["/bin/true"]}}, {"name": "a", "check": {"argv": ["/bin/true"]}})"))
          .find("steps[1].name: \"a\" is used by an earlier step") != std::string::npos);
}

TEST_CASE("write_file paths must be absolute and free of ..", "[profile]") {
  CHECK(ParseError(WithStep(R"({"name": "a", "write_file": {"path": "etc/motd", "content": ""}})"))
            .find("steps[0].write_file.path") != std::string::npos);
  CHECK(ParseError(
            WithStep(R"({"name": "a", "write_file": {"path": "/etc/../root/x", "content": ""}})"))
            .find("absolute path without \"..\"") != std::string::npos);
  // A plain string parameter cannot start a path; a path parameter can.
  CHECK(ParseError(WithStep(R"({"name": "a", "write_file": {"path": "{{p}}/x", "content": ""}})"))
            .find("steps[0].write_file.path") != std::string::npos);
  CHECK(
      ParseStatus(WithStep(R"({"name": "a", "write_file": {"path": "{{dir}}/x", "content": ""}})"))
          .ok());
  CHECK(ParseError(WithStep(R"({"name": "a", "write_file": {"content": ""}})"))
            .find("path: is required") != std::string::npos);
  CHECK(ParseError(WithStep(R"({"name": "a", "write_file": {"path": "/a"}})"))
            .find("content: is required") != std::string::npos);
}

TEST_CASE("file modes are octal strings up to 7777", "[profile]") {
  const auto mode_of = [](const std::string& mode) {
    absl::StatusOr<Profile> profile = ParseProfile(
        WithStep(R"({"name": "a", "write_file": {"path": "/a", "content": "", "mode": ")" + mode +
                 R"("}})"),
        "test.json");
    REQUIRE(profile.ok());
    return std::get<WriteFileStep>(profile->steps[0].action).mode;
  };
  CHECK(mode_of("0600") == 0600);
  CHECK(mode_of("755") == 0755);
  CHECK(mode_of("4755") == 04755);
  for (const std::string bad : {"0800", "10000", "", "rw-r--r--", "-644", "077777"}) {
    CHECK(ParseError(
              WithStep(R"({"name": "a", "write_file": {"path": "/a", "content": "", "mode": ")" +
                       bad + R"("}})"))
              .find("write_file.mode") != std::string::npos);
  }
  CHECK(ParseError(
            WithStep(R"({"name": "a", "write_file": {"path": "/a", "content": "", "mode": 420}})"))
            .find("write_file.mode: expected a string") != std::string::npos);
}

TEST_CASE("references must name declared parameters", "[profile]") {
  const std::string message =
      ParseError(WithStep(R"({"name": "a", "write_file": {"path": "/a", "content": "{{nope}}"}})"));
  CHECK(message.find("steps[0].write_file.content") != std::string::npos);
  CHECK(message.find("{{nope}} names no parameter (declared: dir, p)") != std::string::npos);
  CHECK(ParseError(WithStep(R"({"name": "a", "run": {"argv": ["/bin/echo", "{{x}}"]}})"))
            .find("run.argv[1]") != std::string::npos);
  CHECK(ParseError(WithStep(R"({"name": "a", "check": {"path": "/a", "contains": "{{p"}})"))
            .find("is not closed") != std::string::npos);
  CHECK(ParseError(WithStep(R"({"name": "a", "check": {"path": "/a", "contains": "{{ p }}"}})"))
            .find("is not a parameter reference") != std::string::npos);
}

TEST_CASE("four opening braces stand for two literal ones", "[profile]") {
  absl::StatusOr<Profile> profile = ParseProfile(
      WithStep(
          R"({"name": "a", "write_file": {"path": "/a", "content": "{{{{p}} is {{p}}; }} stays"}})"),
      "test.json");
  INFO(profile.status().ToString());
  REQUIRE(profile.ok());
  absl::StatusOr<Profile> rendered = Render(*profile, {{"p", "v"}, {"dir", "/srv"}});
  REQUIRE(rendered.ok());
  CHECK(std::get<WriteFileStep>(rendered->steps[0].action).content == "{{p}} is v; }} stays");
}

TEST_CASE("run steps need an absolute program and a sane timeout", "[profile]") {
  CHECK(ParseError(WithStep(R"({"name": "a", "run": {"argv": []}})"))
            .find("must name at least the program") != std::string::npos);
  CHECK(ParseError(WithStep(R"({"name": "a", "run": {"argv": ["echo", "hi"]}})"))
            .find("run.argv[0]") != std::string::npos);
  CHECK(ParseError(WithStep(R"({"name": "a", "run": {}})")).find("run.argv: is required") !=
        std::string::npos);
  CHECK(ParseError(WithStep(R"({"name": "a", "run": {"argv": ["/bin/true"], "timeout": "soon"}})"))
            .find("run.timeout") != std::string::npos);
  CHECK(ParseError(WithStep(R"({"name": "a", "run": {"argv": ["/bin/true"], "timeout": "48h"}})"))
            .find("run.timeout") != std::string::npos);
  CHECK(ParseError(WithStep(R"({"name": "a", "run": {"argv": ["/bin/true"], "unless": ["true"]}})"))
            .find("run.unless[0]") != std::string::npos);
  CHECK(ParseError(
            WithStep(R"({"name": "a", "run": {"argv": ["/bin/true"], "only_if_changed": "yes"}})"))
            .find("only_if_changed: expected true or false") != std::string::npos);
}

TEST_CASE("gpio steps need a line and a 0/1 value", "[profile]") {
  CHECK(ParseError(WithStep(R"({"name": "a", "gpio": {"value": 1}})"))
            .find("gpio.line: is required") != std::string::npos);
  CHECK(ParseError(WithStep(R"({"name": "a", "gpio": {"line": 17}})"))
            .find("gpio.value: is required") != std::string::npos);
  CHECK(ParseError(WithStep(R"({"name": "a", "gpio": {"line": 17, "value": 2}})"))
            .find("gpio.value: must be between 0 and 1") != std::string::npos);
  CHECK(ParseError(WithStep(R"({"name": "a", "gpio": {"line": -1, "value": 1}})"))
            .find("gpio.line") != std::string::npos);
  CHECK(ParseError(WithStep(R"({"name": "a", "gpio": {"line": "17", "value": 1}})"))
            .find("gpio.line: expected an integer") != std::string::npos);
}

TEST_CASE("check steps take either a command or a path", "[profile]") {
  CHECK(ParseError(WithStep(R"({"name": "a", "check": {}})")).find("exactly one of argv") !=
        std::string::npos);
  CHECK(ParseError(WithStep(R"({"name": "a", "check": {"argv": ["/bin/true"], "path": "/a"}})"))
            .find("exactly one of argv") != std::string::npos);
  CHECK(ParseError(WithStep(R"({"name": "a", "check": {"argv": ["/bin/true"], "contains": "x"}})"))
            .find("check.contains: applies to a path check only") != std::string::npos);
  CHECK(
      ParseError(WithStep(R"({"name": "a", "check": {"path": "relative"}})")).find("check.path") !=
      std::string::npos);
}

TEST_CASE("parameter declarations are validated", "[profile]") {
  const auto with_parameter = [](const std::string& declaration) {
    return R"({"name": "t", "parameters": )" + declaration +
           R"(, "steps": [{"name": "a", "check": {"argv": ["/bin/true"]}}]})";
  };
  CHECK(ParseError(with_parameter(R"({"p": {"type": "float"}})"))
            .find("parameters.p.type: must be one of") != std::string::npos);
  CHECK(ParseError(with_parameter(R"({"1p": {}})")).find("parameters.1p") != std::string::npos);
  CHECK(ParseError(with_parameter(R"({"my-param": {}})")).find("parameters.my-param") !=
        std::string::npos);
  CHECK(ParseError(with_parameter(R"({"p": {"type": "hostname", "default": "not a host"}})"))
            .find("parameters.p.default: \"not a host\" is not a hostname") != std::string::npos);
  CHECK(ParseError(with_parameter(R"({"p": {"type": "integer", "default": "ten"}})"))
            .find("parameters.p.default") != std::string::npos);
  CHECK(ParseError(with_parameter(R"({"p": {"default": [1]}})"))
            .find("parameters.p.default: expected a string, an integer or a boolean") !=
        std::string::npos);
  CHECK(ParseError(with_parameter(R"({"p": "string"})")).find("parameters.p: expected an object") !=
        std::string::npos);
  CHECK(ParseError(with_parameter(R"(["p"])")).find("parameters: expected an object") !=
        std::string::npos);
}

TEST_CASE("ResolveParameters fills defaults and keeps given values", "[profile]") {
  absl::StatusOr<Profile> profile = ParseProfile(kFullProfile, "sample.json");
  REQUIRE(profile.ok());
  absl::StatusOr<std::map<std::string, std::string>> resolved =
      ResolveParameters(*profile, {{"hostname", "node-7"}, {"port", "-12"}});
  INFO(resolved.status().ToString());
  REQUIRE(resolved.ok());
  CHECK(*resolved == std::map<std::string, std::string>{{"config_dir", "/etc/sample"},
                                                        {"debug", "false"},
                                                        {"greeting", "Hello"},
                                                        {"hostname", "node-7"},
                                                        {"port", "-12"}});
}

TEST_CASE("ResolveParameters refuses unknown, missing and mistyped values", "[profile]") {
  absl::StatusOr<Profile> profile = ParseProfile(kFullProfile, "sample.json");
  REQUIRE(profile.ok());
  const auto error = [&](const std::map<std::string, std::string>& given) {
    absl::StatusOr<std::map<std::string, std::string>> resolved =
        ResolveParameters(*profile, given);
    REQUIRE(resolved.status().code() == absl::StatusCode::kInvalidArgument);
    return std::string(resolved.status().message());
  };
  CHECK(error({{"hostname", "n"}, {"colour", "red"}}).find("no parameter \"colour\"") !=
        std::string::npos);
  CHECK(error({}).find("needs parameter \"hostname\" (hostname: the node's name)") !=
        std::string::npos);
  CHECK(error({{"hostname", "-bad-"}}).find("parameter hostname") != std::string::npos);
  CHECK(error({{"hostname", std::string(64, 'a')}}).find("is not a hostname") != std::string::npos);
  CHECK(error({{"hostname", "n"}, {"port", "80x"}}).find("is not a 64-bit integer") !=
        std::string::npos);
  CHECK(error({{"hostname", "n"}, {"port", "99999999999999999999"}}).find("64-bit") !=
        std::string::npos);
  CHECK(error({{"hostname", "n"}, {"debug", "yes"}}).find("is not true or false") !=
        std::string::npos);
  CHECK(error({{"hostname", "n"}, {"config_dir", "relative"}}).find("absolute path") !=
        std::string::npos);
  CHECK(error({{"hostname", "n"}, {"config_dir", "/etc/../root"}}).find("absolute path") !=
        std::string::npos);
  CHECK(error({{"hostname", "n"}, {"greeting", std::string("a\0b", 3)}}).find("NUL") !=
        std::string::npos);
  CHECK(error({{"hostname", "n"}, {"greeting", "\xff"}}).find("UTF-8") != std::string::npos);
}

TEST_CASE("Render substitutes values into paths, contents and argv", "[profile]") {
  absl::StatusOr<Profile> profile = ParseProfile(kFullProfile, "sample.json");
  REQUIRE(profile.ok());
  absl::StatusOr<std::map<std::string, std::string>> resolved =
      ResolveParameters(*profile, {{"hostname", "node-7"}, {"greeting", "Hi {{hostname}}"}});
  REQUIRE(resolved.ok());
  absl::StatusOr<Profile> rendered = Render(*profile, *resolved);
  INFO(rendered.status().ToString());
  REQUIRE(rendered.ok());
  // Values are inserted once, never expanded again.
  CHECK(std::get<WriteFileStep>(rendered->steps[0].action).content ==
        "Hi {{hostname}} from node-7\n");
  const auto& config = std::get<WriteFileStep>(rendered->steps[1].action);
  CHECK(config.path == "/etc/sample/node-7.conf");
  CHECK(config.content == "port=8080 debug=false");
  CHECK(std::get<RunStep>(rendered->steps[2].action).argv[2] == "node-7");
  CHECK(std::get<RunStep>(rendered->steps[2].action).unless[2] == "node-7");
  CHECK(std::get<CheckStep>(rendered->steps[4].action).contains == "node-7");
  // The parsed profile itself is left as it was.
  CHECK(std::get<WriteFileStep>(profile->steps[0].action).content ==
        "{{greeting}} from {{hostname}}\n");
}

TEST_CASE("Render refuses a substituted path that gains ..", "[profile]") {
  absl::StatusOr<Profile> profile = ParseProfile(
      WithStep(R"({"name": "a", "write_file": {"path": "/etc/{{p}}/x", "content": ""}})"),
      "test.json");
  REQUIRE(profile.ok());
  absl::StatusOr<Profile> rendered = Render(*profile, {{"p", ".."}, {"dir", "/srv"}});
  REQUIRE(rendered.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(rendered.status().message()).find("steps[0] (a).write_file.path") !=
        std::string::npos);
  CHECK(Render(*profile, {{"p", "a/b"}, {"dir", "/srv"}}).ok());
  CHECK(Render(*profile, {{"dir", "/srv"}}).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Render refuses a program that a parameter makes climb with ..", "[profile]") {
  const std::map<std::string, std::string> climbing = {{"p", "../../bin/sh"}, {"dir", "/srv"}};
  const std::pair<std::string, std::string> steps[] = {
      {R"({"name": "a", "run": {"argv": ["/usr/bin/{{p}}", "-c", "id"]}})", ".run.argv[0]"},
      {R"({"name": "a", "run": {"argv": ["/bin/true"], "unless": ["/usr/bin/{{p}}"]}})",
       ".run.unless[0]"},
      {R"({"name": "a", "check": {"argv": ["/usr/bin/{{p}}"]}})", ".check.argv[0]"}};
  for (const auto& [step, key] : steps) {
    INFO(step);
    absl::StatusOr<Profile> profile = ParseProfile(WithStep(step), "test.json");
    REQUIRE(profile.ok());
    absl::StatusOr<Profile> rendered = Render(*profile, climbing);
    REQUIRE(rendered.status().code() == absl::StatusCode::kInvalidArgument);
    const std::string message(rendered.status().message());
    CHECK(message.find("steps[0] (a)" + key) != std::string::npos);
    CHECK(message.find("/usr/bin/../../bin/sh") != std::string::npos);
    CHECK(Render(*profile, {{"p", "true"}, {"dir", "/srv"}}).ok());
  }
  // Arguments after the program are data, free to hold "..".
  absl::StatusOr<Profile> arguments =
      ParseProfile(WithStep(R"({"name": "a", "run": {"argv": ["/bin/ls", "{{p}}"]}})"), "t.json");
  REQUIRE(arguments.ok());
  CHECK(Render(*arguments, climbing).ok());
}

TEST_CASE("parameters.json round-trips and is strict", "[profile]") {
  const std::map<std::string, std::string> values = {
      {"hostname", "node-1"}, {"message", "line one\nline \"two\" ünïcode"}, {"empty", ""}};
  const std::string text = ParametersJson(values);
  absl::StatusOr<std::map<std::string, std::string>> parsed = ParseParametersJson(text);
  REQUIRE(parsed.ok());
  CHECK(*parsed == values);
  CHECK(ParametersJson({}) == "{}\n");
  CHECK(ParseParametersJson("{}")->empty());

  CHECK(ParseParametersJson(R"({"port": 80})").status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(std::string(ParseParametersJson(R"({"port": 80})").status().message())
            .find("parameters.json: port: expected a string") == 0);
  CHECK(ParseParametersJson("[]").status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(ParseParametersJson("{").status().code() == absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pi::common::provisioning
