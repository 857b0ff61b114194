#include "common/provisioning/profile.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cctype>
#include <charconv>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "common/config/json_config.h"
#include "common/system/paths.h"
#include "common/text/utf8.h"

namespace pi::common::provisioning {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kReferenceOpen = "{{";
constexpr std::string_view kReferenceClose = "}}";
constexpr std::string_view kEscapedOpen = "{{{{";
const std::vector<std::string> kParameterTypes = {"string", "hostname", "integer", "boolean",
                                                  "path"};
constexpr std::chrono::hours kMaxRunTimeout{24};
constexpr int64_t kMaxGpioLine = 65535;
constexpr int kMaxMode = 07777;

bool IsIdentifier(std::string_view name) {
  if (name.empty() || !(std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_')) {
    return false;
  }
  for (const char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

// Left to right: "{{{{" is a literal "{{"; any other "{{" opens a reference that must be an
// identifier closed by "}}". "}}" outside a reference is plain text. Values are inserted as they
// are, never expanded again.
absl::StatusOr<std::string> Expand(
    std::string_view text,
    const std::function<absl::StatusOr<std::string>(const std::string& name)>& value_of) {
  std::string out;
  size_t at = 0;
  while (at < text.size()) {
    const size_t open = text.find(kReferenceOpen, at);
    if (open == std::string_view::npos) {
      out.append(text.substr(at));
      break;
    }
    out.append(text.substr(at, open - at));
    if (text.substr(open, kEscapedOpen.size()) == kEscapedOpen) {
      out.append(kReferenceOpen);
      at = open + kEscapedOpen.size();
      continue;
    }
    const size_t name_start = open + kReferenceOpen.size();
    const size_t close = text.find(kReferenceClose, name_start);
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError(
          fmt::format("\"{{{{\" at offset {} is not closed by \"}}}}\" (write \"{{{{{{{{\" for a "
                      "literal \"{{{{\")",
                      open));
    }
    const std::string name(text.substr(name_start, close - name_start));
    if (!IsIdentifier(name)) {
      return absl::InvalidArgumentError(fmt::format(
          "\"{{{{{}}}}}\" is not a parameter reference: names are letters, digits and _ (write "
          "\"{{{{{{{{\" for a literal \"{{{{\")",
          name));
    }
    absl::StatusOr<std::string> value = value_of(name);
    if (!value.ok()) return value.status();
    out.append(*value);
    at = close + kReferenceClose.size();
  }
  return out;
}

bool IsHostname(std::string_view value) {
  if (value.empty() || value.size() > 253) return false;
  size_t label_start = 0;
  while (true) {
    const size_t dot = value.find('.', label_start);
    const std::string_view label = value.substr(
        label_start, dot == std::string_view::npos ? std::string_view::npos : dot - label_start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (const char c : label) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    }
    if (dot == std::string_view::npos) return true;
    label_start = dot + 1;
  }
}

bool IsInteger(std::string_view value) {
  const std::string_view digits = value.starts_with('-') ? value.substr(1) : value;
  if (digits.empty() || digits.size() > 19) return false;
  for (const char c : digits) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  // 19 digits may still overflow int64.
  int64_t parsed = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), parsed);
  return error == std::errc() && end == value.data() + value.size();
}

bool IsAbsoluteCleanPath(std::string_view path) {
  return path.starts_with('/') && !HasDotDotComponent(path);
}

// Empty when `value` is acceptable for `type`, else why not.
std::string TypeProblem(const std::string& type, std::string_view value) {
  if (!IsValidUtf8(value)) return "is not valid UTF-8";
  if (value.find('\0') != std::string_view::npos) return "contains a NUL byte";
  if (type == "hostname" && !IsHostname(value)) {
    return "is not a hostname (dot-separated labels of letters, digits and -, each 1-63 "
           "characters, not starting or ending with -)";
  }
  if (type == "integer" && !IsInteger(value)) return "is not a 64-bit integer";
  if (type == "boolean" && value != "true" && value != "false") return "is not true or false";
  if (type == "path" && !IsAbsoluteCleanPath(value)) {
    return "is not an absolute path without \"..\"";
  }
  return "";
}

using Declared = std::map<std::string, const Parameter*, std::less<>>;

std::string DeclaredNames(const Declared& declared) {
  if (declared.empty()) return "the profile declares no parameters";
  std::vector<std::string> names;
  for (const auto& [name, parameter] : declared) names.push_back(name);
  return fmt::format("declared: {}", fmt::join(names, ", "));
}

// Checks a template against the declared parameters. Returns the text with sample values ("/x"
// for a path parameter, "x" otherwise) so callers can check its shape before real values exist.
absl::StatusOr<std::string> CheckTemplate(std::string_view text, const Declared& declared) {
  return Expand(text, [&](const std::string& name) -> absl::StatusOr<std::string> {
    auto it = declared.find(name);
    if (it == declared.end()) {
      return absl::InvalidArgumentError(
          fmt::format("{{{{{}}}}} names no parameter ({})", name, DeclaredNames(declared)));
    }
    return it->second->type == "path" ? std::string("/x") : std::string("x");
  });
}

// Reads a templated string key and checks its references; `absolute_path` also requires that
// the text is an absolute path without ".." once expanded.
void ReadTemplate(ConfigReader& reader, std::string_view key, std::string* out,
                  const Declared& declared, bool absolute_path = false) {
  const bool present = reader.Raw(key) != nullptr;
  reader.Read(key, out);
  if (!present || !reader.ok()) return;
  absl::StatusOr<std::string> sample = CheckTemplate(*out, declared);
  if (!sample.ok()) {
    reader.Fail(key, std::string(sample.status().message()));
  } else if (absolute_path && !IsAbsoluteCleanPath(*sample)) {
    reader.Fail(key, fmt::format("\"{}\" must be an absolute path without \"..\" (it may start "
                                 "with a parameter of type path)",
                                 *out));
  }
}

void ReadTemplates(ConfigReader& reader, std::string_view key, std::vector<std::string>* out,
                   const Declared& declared) {
  reader.Read(key, out);
  for (size_t i = 0; i < out->size() && reader.ok(); ++i) {
    absl::StatusOr<std::string> sample = CheckTemplate((*out)[i], declared);
    if (!sample.ok()) {
      reader.Fail(fmt::format("{}[{}]", key, i), std::string(sample.status().message()));
    }
  }
}

// An argv: non-empty, its program an absolute path (the exec allowlist has only those).
void ReadArgv(ConfigReader& reader, std::string_view key, std::vector<std::string>* out,
              const Declared& declared, bool required) {
  const bool present = reader.Raw(key) != nullptr;
  ReadTemplates(reader, key, out, declared);
  if (!reader.ok()) return;
  if (!present) {
    if (required) reader.Fail(key, "is required: the program and its arguments");
    return;
  }
  if (out->empty()) {
    reader.Fail(key, "must name at least the program");
    return;
  }
  absl::StatusOr<std::string> program = CheckTemplate(out->front(), declared);
  if (program.ok() && !IsAbsoluteCleanPath(*program)) {
    reader.Fail(fmt::format("{}[0]", key),
                fmt::format("\"{}\" must be an absolute path (no shell or PATH lookup is involved)",
                            out->front()));
  }
}

void ReadRequired(ConfigReader& reader, std::string_view key, std::string* out) {
  const bool present = reader.Raw(key) != nullptr;
  reader.Read(key, out);
  if (reader.ok() && !present) reader.Fail(key, "is required");
}

void ReadMode(ConfigReader& reader, int* mode) {
  std::string text;
  const bool present = reader.Raw("mode") != nullptr;
  reader.Read("mode", &text);
  if (!present || !reader.ok()) return;
  const bool octal =
      !text.empty() && text.size() <= 5 && text.find_first_not_of("01234567") == std::string::npos;
  int value = -1;
  if (octal) std::from_chars(text.data(), text.data() + text.size(), value, 8);
  if (!octal || value > kMaxMode) {
    reader.Fail("mode", fmt::format("\"{}\" is not an octal file mode between \"0000\" and "
                                    "\"7777\" (write it as a string such as \"0644\")",
                                    text));
    return;
  }
  *mode = value;
}

WriteFileStep ReadWriteFile(ConfigReader& reader, const Declared& declared) {
  WriteFileStep step;
  if (reader.Raw("path") == nullptr) reader.Fail("path", "is required");
  ReadTemplate(reader, "path", &step.path, declared, /*absolute_path=*/true);
  if (reader.Raw("content") == nullptr) reader.Fail("content", "is required (may be \"\")");
  ReadTemplate(reader, "content", &step.content, declared);
  ReadMode(reader, &step.mode);
  return step;
}

RunStep ReadRun(ConfigReader& reader, const Declared& declared) {
  RunStep step;
  ReadArgv(reader, "argv", &step.argv, declared, /*required=*/true);
  std::chrono::nanoseconds timeout{0};
  reader.Read("timeout", &timeout, std::chrono::nanoseconds::zero(), kMaxRunTimeout);
  step.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
  ReadArgv(reader, "unless", &step.unless, declared, /*required=*/false);
  reader.Read("only_if_changed", &step.only_if_changed);
  return step;
}

GpioStep ReadGpio(ConfigReader& reader, const Declared& declared) {
  GpioStep step;
  ReadTemplate(reader, "chip", &step.chip, declared);
  int64_t line = -1;
  if (reader.Raw("line") == nullptr) reader.Fail("line", "is required: the line offset");
  reader.Read("line", &line, 0, kMaxGpioLine);
  step.line = static_cast<int>(line);
  int64_t value = 0;
  if (reader.Raw("value") == nullptr) reader.Fail("value", "is required: 0 or 1");
  reader.Read("value", &value, 0, 1);
  step.value = static_cast<int>(value);
  return step;
}

CheckStep ReadCheck(ConfigReader& reader, const Declared& declared) {
  CheckStep step;
  const bool has_argv = reader.Raw("argv") != nullptr;
  const bool has_path = reader.Raw("path") != nullptr;
  const bool has_contains = reader.Raw("contains") != nullptr;
  if (has_argv == has_path) {
    reader.Fail("argv",
                "give exactly one of argv (a command that must exit 0) and path (a file "
                "that must exist)");
    return step;
  }
  if (has_contains && !has_path) {
    reader.Fail("contains", "applies to a path check only");
    return step;
  }
  ReadArgv(reader, "argv", &step.argv, declared, /*required=*/false);
  ReadTemplate(reader, "path", &step.path, declared, /*absolute_path=*/true);
  ReadTemplate(reader, "contains", &step.contains, declared);
  return step;
}

void ReadStep(ConfigReader& reader, const Declared& declared, std::set<std::string>* names,
              std::vector<Step>* steps) {
  Step step;
  ReadRequired(reader, "name", &step.name);
  if (reader.ok() && step.name.empty()) reader.Fail("name", "must not be empty");
  if (reader.ok() && !names->insert(step.name).second) {
    reader.Fail("name",
                fmt::format("\"{}\" is used by an earlier step; step names are unique", step.name));
  }
  constexpr std::string_view kActions[] = {"write_file", "run", "gpio", "check"};
  int actions = 0;
  for (const std::string_view action : kActions) {
    if (reader.Raw(action) != nullptr) ++actions;
  }
  if (actions != 1) {
    reader.Fail("name", fmt::format("step \"{}\" needs exactly one action (write_file, run, "
                                    "gpio or check); it has {}",
                                    step.name, actions));
    return;
  }
  reader.Section("write_file", [&](ConfigReader& r) { step.action = ReadWriteFile(r, declared); });
  reader.Section("run", [&](ConfigReader& r) { step.action = ReadRun(r, declared); });
  reader.Section("gpio", [&](ConfigReader& r) { step.action = ReadGpio(r, declared); });
  reader.Section("check", [&](ConfigReader& r) { step.action = ReadCheck(r, declared); });
  steps->push_back(std::move(step));
}

Parameter ReadParameter(ConfigReader& reader, const std::string& name) {
  Parameter parameter;
  parameter.name = name;
  reader.Read("description", &parameter.description);
  reader.ReadEnum("type", &parameter.type, kParameterTypes);
  // Defaults may be written as JSON numbers and booleans; values travel as strings.
  if (const Json* value = reader.Raw("default")) {
    if (value->is_string()) {
      parameter.default_value = value->get<std::string>();
    } else if (value->is_number_integer()) {
      parameter.default_value = value->dump();
    } else if (value->is_boolean()) {
      parameter.default_value = value->get<bool>() ? "true" : "false";
    } else {
      reader.Fail("default", fmt::format("expected a string, an integer or a boolean, got {}",
                                         value->type_name()));
    }
  }
  if (reader.ok() && parameter.default_value) {
    if (const std::string problem = TypeProblem(parameter.type, *parameter.default_value);
        !problem.empty()) {
      reader.Fail("default", fmt::format("\"{}\" {} (type {})", *parameter.default_value, problem,
                                         parameter.type));
    }
  }
  return parameter;
}

absl::Status WithOrigin(const absl::Status& status, std::string_view origin) {
  if (status.ok()) return status;
  return absl::Status(status.code(), fmt::format("{}: {}", origin, std::string(status.message())));
}

absl::StatusOr<Json> ParseObject(std::string_view json_text, std::string_view origin) {
  Json doc;
  try {
    doc = Json::parse(json_text, nullptr, true, /*ignore_comments=*/false);
  } catch (const Json::parse_error& error) {
    return absl::InvalidArgumentError(fmt::format("{}: invalid JSON: {}", origin, error.what()));
  }
  if (!doc.is_object()) {
    return absl::InvalidArgumentError(
        fmt::format("{}: the top level must be a JSON object", origin));
  }
  return doc;
}

absl::StatusOr<std::string> RenderText(const std::string& text,
                                       const std::map<std::string, std::string>& resolved) {
  return Expand(text, [&](const std::string& name) -> absl::StatusOr<std::string> {
    auto it = resolved.find(name);
    if (it == resolved.end()) {
      return absl::InvalidArgumentError(fmt::format("parameter {} has no value", name));
    }
    return it->second;
  });
}

// Renders `*text` in place; `what` names it in errors ("steps[2].write_file.path").
absl::Status RenderInPlace(std::string* text, const std::map<std::string, std::string>& resolved,
                           const std::string& what, bool absolute_path = false) {
  absl::StatusOr<std::string> rendered = RenderText(*text, resolved);
  if (!rendered.ok()) {
    return absl::InvalidArgumentError(
        fmt::format("{}: {}", what, std::string(rendered.status().message())));
  }
  if (absolute_path && !IsAbsoluteCleanPath(*rendered)) {
    return absl::InvalidArgumentError(
        fmt::format("{}: \"{}\" becomes \"{}\", which is not an absolute path without \"..\"", what,
                    *text, *rendered));
  }
  *text = *std::move(rendered);
  return absl::OkStatus();
}

// Renders an argv; its program must stay an absolute path without "..", whatever a parameter
// put into it (ParseProfile checked it with sample values only).
absl::Status RenderArgv(std::vector<std::string>* argv,
                        const std::map<std::string, std::string>& resolved,
                        const std::string& what) {
  for (size_t i = 0; i < argv->size(); ++i) {
    if (absl::Status status =
            RenderInPlace(&(*argv)[i], resolved, fmt::format("{}[{}]", what, i), i == 0);
        !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

absl::Status RenderStep(Step* step, size_t index,
                        const std::map<std::string, std::string>& resolved) {
  const std::string prefix = fmt::format("steps[{}] ({})", index, step->name);
  if (auto* write = std::get_if<WriteFileStep>(&step->action)) {
    if (absl::Status s = RenderInPlace(&write->path, resolved, prefix + ".write_file.path", true);
        !s.ok()) {
      return s;
    }
    return RenderInPlace(&write->content, resolved, prefix + ".write_file.content");
  }
  if (auto* run = std::get_if<RunStep>(&step->action)) {
    if (absl::Status s = RenderArgv(&run->argv, resolved, prefix + ".run.argv"); !s.ok()) return s;
    return RenderArgv(&run->unless, resolved, prefix + ".run.unless");
  }
  if (auto* gpio = std::get_if<GpioStep>(&step->action)) {
    return RenderInPlace(&gpio->chip, resolved, prefix + ".gpio.chip");
  }
  auto& check = std::get<CheckStep>(step->action);
  if (absl::Status s = RenderArgv(&check.argv, resolved, prefix + ".check.argv"); !s.ok()) {
    return s;
  }
  if (!check.path.empty()) {
    if (absl::Status s = RenderInPlace(&check.path, resolved, prefix + ".check.path", true);
        !s.ok()) {
      return s;
    }
  }
  return RenderInPlace(&check.contains, resolved, prefix + ".check.contains");
}

}  // namespace

absl::StatusOr<Profile> ParseProfile(std::string_view json_text, std::string_view origin) {
  absl::StatusOr<Json> doc = ParseObject(json_text, origin);
  if (!doc.ok()) return doc.status();

  Profile profile;
  ConfigReader reader(*doc, "");
  ReadRequired(reader, "name", &profile.name);
  if (reader.ok() && profile.name.empty()) reader.Fail("name", "must not be empty");
  reader.Read("description", &profile.description);

  // Parameters are an object keyed by name: the names come from the raw object, each value is
  // read strictly by its own section reader.
  if (const Json* raw = reader.Raw("parameters"); raw != nullptr && raw->is_object()) {
    reader.Section("parameters", [&](ConfigReader& parameters) {
      for (const auto& [name, value] : raw->items()) {
        if (!IsIdentifier(name)) {
          parameters.Fail(name,
                          "parameter names are letters, digits and _, not starting with a "
                          "digit");
          return;
        }
        parameters.Section(name, [&](ConfigReader& parameter) {
          profile.parameters.push_back(ReadParameter(parameter, name));
        });
      }
    });
  } else {
    reader.Section("parameters", [](ConfigReader&) {});
  }
  Declared declared;
  for (const Parameter& parameter : profile.parameters) declared[parameter.name] = &parameter;

  std::set<std::string> step_names;
  const bool has_steps = reader.Raw("steps") != nullptr;
  reader.ObjectArray(
      "steps", [&](ConfigReader& step) { ReadStep(step, declared, &step_names, &profile.steps); });
  if (reader.ok() && (!has_steps || profile.steps.empty())) {
    reader.Fail("steps", "is required and must hold at least one step");
  }
  if (absl::Status status = reader.Finish(); !status.ok()) return WithOrigin(status, origin);
  return profile;
}

absl::StatusOr<std::map<std::string, std::string>> ResolveParameters(
    const Profile& profile, const std::map<std::string, std::string>& given) {
  Declared declared;
  for (const Parameter& parameter : profile.parameters) declared[parameter.name] = &parameter;
  for (const auto& [name, value] : given) {
    if (declared.find(name) == declared.end()) {
      return absl::InvalidArgumentError(fmt::format("profile {} has no parameter \"{}\" ({})",
                                                    profile.name, name, DeclaredNames(declared)));
    }
  }
  std::map<std::string, std::string> resolved;
  for (const Parameter& parameter : profile.parameters) {
    auto it = given.find(parameter.name);
    if (it == given.end() && !parameter.default_value) {
      return absl::InvalidArgumentError(fmt::format(
          "profile {} needs parameter \"{}\" ({}{})", profile.name, parameter.name, parameter.type,
          parameter.description.empty() ? std::string()
                                        : fmt::format(": {}", parameter.description)));
    }
    const std::string& value = it != given.end() ? it->second : *parameter.default_value;
    if (const std::string problem = TypeProblem(parameter.type, value); !problem.empty()) {
      return absl::InvalidArgumentError(fmt::format("parameter {}: \"{}\" {} (type {})",
                                                    parameter.name, ToValidUtf8(value), problem,
                                                    parameter.type));
    }
    resolved[parameter.name] = value;
  }
  return resolved;
}

absl::StatusOr<Profile> Render(const Profile& profile,
                               const std::map<std::string, std::string>& resolved) {
  Profile rendered = profile;
  for (size_t i = 0; i < rendered.steps.size(); ++i) {
    if (absl::Status status = RenderStep(&rendered.steps[i], i, resolved); !status.ok()) {
      return status;
    }
  }
  return rendered;
}

std::string ParametersJson(const std::map<std::string, std::string>& resolved) {
  Json doc = Json::object();
  for (const auto& [name, value] : resolved) doc[name] = value;
  // Resolved values are valid UTF-8; replacing keeps a stray byte from throwing.
  return doc.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

absl::StatusOr<std::map<std::string, std::string>> ParseParametersJson(std::string_view json_text) {
  absl::StatusOr<Json> doc = ParseObject(json_text, kParametersFileName);
  if (!doc.ok()) return doc.status();
  std::map<std::string, std::string> parameters;
  for (const auto& [name, value] : doc->items()) {
    if (!value.is_string()) {
      return absl::InvalidArgumentError(
          fmt::format("{}: {}: expected a string, got {} (parameter values are strings)",
                      kParametersFileName, name, value.type_name()));
    }
    parameters[name] = value.get<std::string>();
  }
  return parameters;
}

}  // namespace pi::common::provisioning
