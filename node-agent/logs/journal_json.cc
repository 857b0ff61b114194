#include "node-agent/logs/journal_json.h"

#include <charconv>
#include <nlohmann/json.hpp>
#include <optional>

#include "absl/strings/str_cat.h"
#include "node-agent/logs/line_parser.h"

namespace pi::agent::logs {
namespace {

using nlohmann::json;

// A field value as text: strings as they are, byte arrays decoded, the first of repeated values.
std::optional<std::string> FieldText(const json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end()) return std::nullopt;
  const json* value = &*it;
  if (value->is_array() && !value->empty() && !value->front().is_number()) {
    value = &value->front();
  }
  if (value->is_string()) return value->get_ref<const std::string&>();
  if (value->is_array()) {
    std::string bytes;
    bytes.reserve(value->size());
    for (const json& byte : *value) {
      if (!byte.is_number_unsigned() || byte.get<uint64_t>() > 255) return std::nullopt;
      bytes.push_back(static_cast<char>(byte.get<uint64_t>()));
    }
    return bytes;
  }
  return std::nullopt;
}

template <typename Int>
std::optional<Int> FieldInt(const json& object, const char* name) {
  std::optional<std::string> text = FieldText(object, name);
  if (!text) return std::nullopt;
  Int value{};
  auto [end, error] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (error != std::errc() || end != text->data() + text->size()) return std::nullopt;
  return value;
}

}  // namespace

absl::StatusOr<JournalRecord> ParseJournalJson(std::string_view line) {
  json object = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!object.is_object()) {
    return absl::InvalidArgumentError("journalctl printed a line that is not a JSON object");
  }
  std::optional<int64_t> realtime_us = FieldInt<int64_t>(object, "__REALTIME_TIMESTAMP");
  if (!realtime_us) {
    return absl::InvalidArgumentError("journal entry has no valid __REALTIME_TIMESTAMP");
  }

  JournalRecord record;
  LogEntry& entry = record.entry;
  entry.timestamp = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::microseconds(*realtime_us)));
  entry.source = kJournalSource;
  entry.message = ToValidUtf8(FieldText(object, "MESSAGE").value_or(""));
  if (auto priority = FieldInt<int>(object, "PRIORITY");
      priority && *priority >= 0 && *priority <= 7) {
    entry.priority = priority;
  }
  entry.unit = ToValidUtf8(FieldText(object, "_SYSTEMD_UNIT").value_or(""));
  entry.hostname = ToValidUtf8(FieldText(object, "_HOSTNAME").value_or(""));
  entry.identifier = ToValidUtf8(
      FieldText(object, "SYSLOG_IDENTIFIER").value_or(FieldText(object, "_COMM").value_or("")));
  entry.pid = FieldInt<int64_t>(object, "_PID").value_or(0);
  record.cursor = FieldText(object, "__CURSOR").value_or("");
  return record;
}

}  // namespace pi::agent::logs
