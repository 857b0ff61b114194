#pragma once

#include <chrono>
#include <optional>
#include <regex>
#include <string>

#include "absl/status/statusor.h"
#include "node-agent/logs/log_streamer.h"

namespace pi::agent::logs {

// The parts of a LogFilter that are checked entry by entry in the agent: since, substring, regex.
class EntryMatcher {
 public:
  // The regex is searched for in at most this many leading bytes of a message, which bounds the
  // time and stack one line can cost.
  static constexpr size_t kMaxRegexSubject = 4096;
  static constexpr size_t kMaxRegexLength = 1024;

  // INVALID_ARGUMENT for a regex that does not compile, is too long or uses back-references.
  static absl::StatusOr<EntryMatcher> Create(const LogFilter& filter);

  // INVALID_ARGUMENT when the regex engine gives up on an entry.
  absl::StatusOr<bool> Matches(const LogEntry& entry) const;

  bool has_text_filter() const { return !substring_.empty() || regex_.has_value(); }

 private:
  std::optional<std::chrono::system_clock::time_point> since_;
  std::string substring_;
  std::optional<std::regex> regex_;
};

}  // namespace pi::agent::logs
