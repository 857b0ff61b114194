#include "common/config/json_config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/system/duration.h"
#include "common/system/files.h"

namespace pi::common {
namespace {

constexpr size_t kMaxConfigBytes = 4 * 1024 * 1024;

}  // namespace

absl::StatusOr<nlohmann::json> ParseJsonConfigFile(const std::string& path) {
  auto contents = ReadFileToString(path, kMaxConfigBytes);
  if (!contents.ok()) return contents.status();
  const std::string text = *std::move(contents);
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text, nullptr, true, /*ignore_comments=*/false);
  } catch (const nlohmann::json::parse_error& error) {
    // byte is 1-based and points just past the offending character.
    size_t line = 1;
    size_t column = 1;
    for (size_t i = 0; i + 1 < error.byte && i < text.size(); ++i) {
      if (text[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return absl::InvalidArgumentError(
        fmt::format("{}:{}:{}: invalid JSON: {}", path, line, column, error.what()));
  }
  if (!doc.is_object()) {
    return absl::InvalidArgumentError(fmt::format("{}: the top level must be a JSON object", path));
  }
  return doc;
}

ConfigReader::ConfigReader(const nlohmann::json& object, std::string path)
    : object_(object), path_(std::move(path)) {}

std::string ConfigReader::PathOf(std::string_view key) const {
  return path_.empty() ? std::string(key) : fmt::format("{}.{}", path_, key);
}

void ConfigReader::Fail(std::string_view key, std::string_view message) {
  Absorb(absl::InvalidArgumentError(fmt::format("{}: {}", PathOf(key), message)));
}

void ConfigReader::Absorb(const absl::Status& status) {
  if (status_.ok() && !status.ok()) status_ = status;
}

const nlohmann::json* ConfigReader::Lookup(std::string_view key, nlohmann::json::value_t type,
                                           std::string_view expected) {
  seen_.emplace(key);
  if (!status_.ok()) return nullptr;
  auto it = object_.find(key);
  if (it == object_.end()) return nullptr;
  const bool matches =
      it->type() == type || (type == nlohmann::json::value_t::number_integer &&
                             it->type() == nlohmann::json::value_t::number_unsigned);
  if (!matches) {
    Fail(key, fmt::format("expected {}, got {}", expected, it->type_name()));
    return nullptr;
  }
  return &*it;
}

const nlohmann::json* ConfigReader::Raw(std::string_view key) {
  seen_.emplace(key);
  if (!status_.ok()) return nullptr;
  auto it = object_.find(key);
  return it == object_.end() ? nullptr : &*it;
}

void ConfigReader::Read(std::string_view key, std::string* out) {
  if (const auto* value = Lookup(key, nlohmann::json::value_t::string, "a string")) {
    *out = value->get<std::string>();
  }
}

void ConfigReader::Read(std::string_view key, bool* out) {
  if (const auto* value = Lookup(key, nlohmann::json::value_t::boolean, "true or false")) {
    *out = value->get<bool>();
  }
}

void ConfigReader::Read(std::string_view key, int64_t* out, int64_t min, int64_t max) {
  const auto* value = Lookup(key, nlohmann::json::value_t::number_integer, "an integer");
  if (value == nullptr) return;
  if (value->is_number_unsigned() && value->get<uint64_t>() > static_cast<uint64_t>(max)) {
    Fail(key, fmt::format("must be between {} and {}", min, max));
    return;
  }
  const int64_t number = value->get<int64_t>();
  if (number < min || number > max) {
    Fail(key, fmt::format("must be between {} and {}, got {}", min, max, number));
    return;
  }
  *out = number;
}

void ConfigReader::Read(std::string_view key, std::chrono::nanoseconds* out,
                        std::chrono::nanoseconds min, std::chrono::nanoseconds max) {
  const auto* value =
      Lookup(key, nlohmann::json::value_t::string, "a duration string such as \"30s\"");
  if (value == nullptr) return;
  auto parsed = ParseDuration(value->get<std::string>());
  if (!parsed.ok()) {
    Fail(key, std::string(parsed.status().message()));
    return;
  }
  if (*parsed < min || *parsed > max) {
    Fail(key, fmt::format("must be between {} and {}, got {}", FormatDuration(min),
                          FormatDuration(max), value->get<std::string>()));
    return;
  }
  *out = *parsed;
}

void ConfigReader::Read(std::string_view key, std::vector<std::string>* out) {
  const auto* value = Lookup(key, nlohmann::json::value_t::array, "an array of strings");
  if (value == nullptr) return;
  std::vector<std::string> items;
  for (size_t i = 0; i < value->size(); ++i) {
    if (!(*value)[i].is_string()) {
      Fail(fmt::format("{}[{}]", key, i), "expected a string");
      return;
    }
    items.push_back((*value)[i].get<std::string>());
  }
  *out = std::move(items);
}

void ConfigReader::ReadEnum(std::string_view key, std::string* out,
                            const std::vector<std::string>& allowed) {
  std::string value;
  const bool present = object_.contains(key);
  Read(key, &value);
  if (!present || !status_.ok()) return;
  for (const auto& candidate : allowed) {
    if (candidate == value) {
      *out = value;
      return;
    }
  }
  Fail(key, fmt::format("must be one of {}, got \"{}\"", fmt::join(allowed, "|"), value));
}

void ConfigReader::Section(std::string_view key, const std::function<void(ConfigReader&)>& read) {
  const auto* value = Lookup(key, nlohmann::json::value_t::object, "an object");
  if (value == nullptr) return;
  ConfigReader child(*value, PathOf(key));
  read(child);
  Absorb(child.Finish());
}

void ConfigReader::ObjectArray(std::string_view key,
                               const std::function<void(ConfigReader&)>& read_element) {
  const auto* value = Lookup(key, nlohmann::json::value_t::array, "an array of objects");
  if (value == nullptr) return;
  for (size_t i = 0; i < value->size() && status_.ok(); ++i) {
    const std::string element_path = fmt::format("{}[{}]", PathOf(key), i);
    if (!(*value)[i].is_object()) {
      Absorb(absl::InvalidArgumentError(fmt::format("{}: expected an object", element_path)));
      return;
    }
    ConfigReader child((*value)[i], element_path);
    read_element(child);
    Absorb(child.Finish());
  }
}

void ConfigReader::StringMap(std::string_view key,
                             std::vector<std::pair<std::string, std::string>>* out) {
  const auto* value = Lookup(key, nlohmann::json::value_t::object, "an object of strings");
  if (value == nullptr) return;
  std::vector<std::pair<std::string, std::string>> items;
  for (const auto& [name, item] : value->items()) {
    if (!item.is_string()) {
      Fail(fmt::format("{}.{}", key, name), "expected a string");
      return;
    }
    items.emplace_back(name, item.get<std::string>());
  }
  *out = std::move(items);
}

absl::Status ConfigReader::Finish() {
  if (!status_.ok()) return status_;
  for (const auto& [key, value] : object_.items()) {
    if (seen_.find(key) == seen_.end()) {
      return absl::InvalidArgumentError(
          fmt::format("{}: unknown key (known here: {})", PathOf(key), fmt::join(seen_, ", ")));
    }
  }
  return absl::OkStatus();
}

}  // namespace pi::common
