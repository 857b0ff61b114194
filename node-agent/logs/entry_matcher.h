#pragma once

#include <re2/re2.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "node-agent/logs/log_streamer.h"

namespace pi::agent::logs {

// The parts of a LogFilter that are checked entry by entry in the agent: since, substring, regex.
class EntryMatcher {
 public:
  static constexpr size_t kMaxRegexLength = 1024;

  // INVALID_ARGUMENT for a regex that does not compile (RE2 syntax: no back-references or
  // look-around) or is too long.
  static absl::StatusOr<EntryMatcher> Create(const LogFilter& filter);

  bool Matches(const LogEntry& entry) const;
  bool has_text_filter() const { return !substring_.empty() || regex_ != nullptr; }

 private:
  std::optional<std::chrono::system_clock::time_point> since_;
  std::string substring_;
  // RE2 matches in time linear in the line whatever the pattern, so a client's regex can neither
  // stall the agent with backtracking nor overflow its stack. Shared: RE2 is not copyable.
  std::shared_ptr<const re2::RE2> regex_;
};

}  // namespace pi::agent::logs
