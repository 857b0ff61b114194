#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Provisioning profiles (DESIGN 5.3): JSON files with parameters and ordered steps. The controller
// parses a profile and resolves the parameters to refuse a bad request before any release exists;
// the agent parses the same files from the release and executes them.
//
//   {"name": "motd", "description": "...",
//    "parameters": {"message": {"type": "string", "description": "...", "default": "Hi"}},
//    "steps": [
//      {"name": "motd", "write_file": {"path": "/etc/motd", "content": "{{message}}\n",
//                                      "mode": "0644"}},
//      {"name": "apply", "run": {"argv": ["/usr/bin/x"], "timeout": "30s",
//                                "unless": ["/usr/bin/y"], "only_if_changed": true}},
//      {"name": "led", "gpio": {"chip": "", "line": 17, "value": 1}},
//      {"name": "ok", "check": {"argv": ["/usr/bin/z"]}},
//      {"name": "ok2", "check": {"path": "/etc/motd", "contains": "{{message}}"}}]}
//
// Unknown keys are refused. "{{name}}" inserts a declared parameter's value in paths, contents,
// argv, unless, check texts and the gpio chip; "{{{{" stands for a literal "{{"; a value is never
// expanded again. Defaults may be JSON strings, integers or booleans; values are strings.
namespace pi::common::provisioning {

// Names of the artifact files of a provisioning release.
inline constexpr std::string_view kProfileFileName = "profile.json";
inline constexpr std::string_view kParametersFileName = "parameters.json";

// The destination type of provisioning releases, the one pi-agent registers as a runner for.
inline constexpr std::string_view kProvisionOrganisation = "picontroller";
inline constexpr std::string_view kProvisionName = "provision";
inline constexpr uint64_t kProvisionVersion = 1;
// The destination metadata key that pins a release to one node: only that node's runner
// qualifies (DESIGN 4.2).
inline constexpr std::string_view kNodeIdMetadataKey = "node_id";
// The controller refuses a longer PushLogs line, and with it the rest of the stream.
inline constexpr size_t kMaxLogLineBytes = 64 * 1024;

struct Parameter {
  std::string name;
  std::string description;
  std::optional<std::string> default_value;  // absent = required
  // One of "string", "hostname", "integer", "boolean", "path" (absolute, no "..").
  std::string type = "string";
};

struct WriteFileStep {
  std::string path;  // absolute; {{param}} substituted
  std::string content;
  int mode = 0644;  // written in JSON as an octal string, "0644"
};

struct RunStep {
  std::vector<std::string> argv;
  std::chrono::milliseconds timeout{0};  // 0 = the agent's default
  // Skip the step when this command exits 0 (the change is already in place).
  std::vector<std::string> unless;
  // Run only when an earlier step of this release changed something.
  bool only_if_changed = false;
};

struct GpioStep {
  std::string chip;  // empty = the agent's default chip
  int line = -1;
  int value = 0;
};

// Read-only; runs in plan mode too. Exactly one of argv / path is set.
struct CheckStep {
  std::vector<std::string> argv;  // must exit 0
  std::string path;               // must exist
  std::string contains;           // and, when set, contain this text
};

struct Step {
  std::string name;
  std::variant<WriteFileStep, RunStep, GpioStep, CheckStep> action;
};

struct Profile {
  std::string name;
  std::string description;
  std::vector<Parameter> parameters;
  std::vector<Step> steps;
};

// INVALID_ARGUMENT naming `origin` and the key path for anything malformed (unknown keys, a step
// with no or two actions, a relative path, a mode outside 0..07777, a reference to an undeclared
// parameter, a default that fails its own type).
absl::StatusOr<Profile> ParseProfile(std::string_view json_text, std::string_view origin);

// Every declared parameter's value: given, or its default. INVALID_ARGUMENT for an unknown name,
// a missing required one, or a value that fails its type.
absl::StatusOr<std::map<std::string, std::string>> ResolveParameters(
    const Profile& profile, const std::map<std::string, std::string>& given);

// The profile with every {{name}} replaced by its resolved value (paths, contents, argv) and every
// "{{{{" by "{{". INVALID_ARGUMENT when a substituted path or program (argv[0] of run, unless and
// check) stops being absolute or gains "..".
absl::StatusOr<Profile> Render(const Profile& profile,
                               const std::map<std::string, std::string>& resolved);

// parameters.json text of resolved parameters, and back.
std::string ParametersJson(const std::map<std::string, std::string>& resolved);
absl::StatusOr<std::map<std::string, std::string>> ParseParametersJson(std::string_view json_text);

}  // namespace pi::common::provisioning
