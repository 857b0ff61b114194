#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "node-agent/logs/log_streamer.h"

namespace pi::agent::logs {

struct JournalRecord {
  LogEntry entry;
  // Where this entry sits in the journal, for resuming after it (journalctl --after-cursor).
  std::string cursor;
};

// Parses one line of `journalctl -o json`. Field values are strings, byte arrays (for data that
// is not UTF-8), arrays of those (a field set more than once; the first value is used) or null
// (data too large to show). INVALID_ARGUMENT when the line is not a journal JSON object.
absl::StatusOr<JournalRecord> ParseJournalJson(std::string_view line);

}  // namespace pi::agent::logs
