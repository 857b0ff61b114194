#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/system/clock.h"
#include "common/system/cancel_token.h"

namespace pi::agent::logs {

// The source name that selects the systemd journal.
inline constexpr char kJournalSource[] = "journal";

// The `logs` section of the agent config. Field names match the config keys, which is also how
// error messages refer to them.
struct LogsConfig {
  // Source name -> absolute path. Clients pick a name; they can never name a path.
  std::map<std::string, std::string> files;
  bool journald = true;
  std::string journalctl_path = "/usr/bin/journalctl";
  // How often a followed file is checked for new lines, rotation and truncation.
  std::chrono::milliseconds follow_poll_interval{250};
  // Largest accepted LogFilter::limit: the last `limit` entries are held in memory. 0 = no cap.
  int64_t max_limit = 10000;
};

struct LogFilter {
  // A configured file source name or "journal"; empty means the journal when it is enabled.
  std::string source;
  std::optional<std::chrono::system_clock::time_point> since;
  // Journal only: a systemd unit name, as journalctl --unit takes it.
  std::string unit;
  // Journal only: 0 (emerg) to 7 (debug); entries at this priority or more severe.
  std::optional<int> max_priority;
  // Plain text the message must contain.
  std::string substring;
  // RE2 regular expression searched for in the message (EntryMatcher explains why RE2).
  std::string regex;
  // 0 = no limit. Otherwise only the last `limit` matching entries that already exist are sent,
  // as tail -n does; with `follow`, every new matching entry is sent after them.
  int64_t limit = 0;
  bool follow = false;
};

struct LogEntry {
  // For file lines without a parsable timestamp prefix, the file's modification time.
  std::chrono::system_clock::time_point timestamp;
  std::string source;
  std::string unit;
  // 0-7 when known (journal entries).
  std::optional<int> priority;
  // Always valid UTF-8 (invalid bytes become U+FFFD). For files, the whole line.
  std::string message;
  std::string hostname;
  // The syslog identifier (program name) when known.
  std::string identifier;
  // 0 when unknown.
  int64_t pid = 0;
};

// Returns false to stop the stream.
using EmitFn = std::function<bool(const LogEntry&)>;

// Streams entries from configured log files and the journal. Thread-safe: any number of streams
// may run at once, each blocking its caller's thread.
class LogStreamer {
 public:
  // INVALID_ARGUMENT for a config that names relative paths or uses the reserved name "journal".
  static absl::StatusOr<LogStreamer> Create(LogsConfig config,
                                            const common::Clock& clock = common::RealClock());

  // "journal" (when enabled) followed by the configured file source names.
  std::vector<std::string> SourceNames() const;

  // Sends matching entries to `emit` in order until the backlog is done (or, with follow, until
  // `cancel` is cancelled or `emit` returns false). Run it on a thread with the usual 8 MiB stack.
  // OK when the backlog is done or emit returned false; CANCELLED when `cancel` fired;
  // INVALID_ARGUMENT for a bad filter; NOT_FOUND for an unknown source or a missing file;
  // FAILED_PRECONDITION when the agent may not read the file; UNAVAILABLE when journalctl is
  // missing or fails.
  absl::Status Stream(const LogFilter& filter, const EmitFn& emit, common::CancelToken& cancel) const;

 private:
  LogStreamer(LogsConfig config, const common::Clock& clock)
      : config_(std::move(config)), clock_(&clock) {}

  LogsConfig config_;
  const common::Clock* clock_;
};

}  // namespace pi::agent::logs
