#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pi::common {

// Parses a JSON configuration file; syntax errors name the file, line and column.
absl::StatusOr<nlohmann::json> ParseJsonConfigFile(const std::string& path);

// Reads one JSON object of a configuration strictly: every key it reads is recorded, types are
// checked, and Finish() rejects keys nobody read. Errors name the full key path
// ("gpio.allowed_lines[2].mode: expected a string") and the first one wins; later reads are no-ops.
// Fields that are absent leave the output untouched, so callers pre-fill defaults.
class ConfigReader {
 public:
  // `path` is the prefix used in messages ("" for the document root).
  ConfigReader(const nlohmann::json& object, std::string path);

  void Read(std::string_view key, std::string* out);
  void Read(std::string_view key, bool* out);
  void Read(std::string_view key, int64_t* out, int64_t min, int64_t max);
  // A duration string such as "250ms", "30s", "1h30m" (see ParseDuration), within [min, max].
  void Read(std::string_view key, std::chrono::nanoseconds* out, std::chrono::nanoseconds min,
            std::chrono::nanoseconds max);
  void Read(std::string_view key, std::vector<std::string>* out);
  // A string that must be one of `allowed`.
  void ReadEnum(std::string_view key, std::string* out, const std::vector<std::string>& allowed);

  // A nested object; `read` is only called when the key is present.
  void Section(std::string_view key, const std::function<void(ConfigReader&)>& read);
  // An array of objects, each read with its own reader ("key[3]").
  void ObjectArray(std::string_view key, const std::function<void(ConfigReader&)>& read_element);
  // An object used as a string → string map (for example named log files).
  void StringMap(std::string_view key, std::vector<std::pair<std::string, std::string>>* out);
  // The raw value of a key whose type varies (for example "a line offset or a name").
  const nlohmann::json* Raw(std::string_view key);

  // Records a validation error about `key` (for checks the typed readers cannot express).
  void Fail(std::string_view key, std::string_view message);
  bool ok() const { return status_.ok(); }
  std::string PathOf(std::string_view key) const;

  // The first error, or an error naming the first key that was never read.
  absl::Status Finish();

 private:
  const nlohmann::json* Lookup(std::string_view key, nlohmann::json::value_t type,
                               std::string_view expected);
  void Absorb(const absl::Status& status);

  const nlohmann::json& object_;
  std::string path_;
  std::set<std::string, std::less<>> seen_;
  absl::Status status_;
};

}  // namespace pi::common
