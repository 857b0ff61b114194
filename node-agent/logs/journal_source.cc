#include "node-agent/logs/journal_source.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/system/child_process.h"
#include "node-agent/logs/journal_json.h"

namespace pi::agent::logs {
namespace {

using common::ChildProcess;
using std::chrono::system_clock;
using RecordFn = std::function<bool(JournalRecord&&)>;

// A JSON entry with large fields can be long, but not this long: the rest of such a line is
// dropped rather than buffered without bound.
constexpr size_t kMaxJsonLineBytes = 4 * 1024 * 1024;
constexpr size_t kMaxStderrBytes = 4096;

struct JournalQuery {
  std::optional<system_clock::time_point> since;
  std::string after_cursor;
  std::optional<int64_t> lines;
  bool follow = false;
  // Makes --follow start with the whole backlog instead of its last 10 entries.
  bool no_tail = false;
};

std::vector<std::string> JournalctlArgv(const std::string& path, const LogFilter& filter,
                                        const JournalQuery& query) {
  std::vector<std::string> argv = {path, "--output=json", "--no-pager"};
  if (!filter.unit.empty()) argv.push_back("--unit=" + filter.unit);
  if (filter.max_priority) argv.push_back(absl::StrCat("--priority=", *filter.max_priority));
  if (!query.after_cursor.empty()) {
    argv.push_back("--after-cursor=" + query.after_cursor);
  } else if (query.since) {
    // Whole seconds are all journalctl takes; the matcher drops the sub-second excess.
    auto seconds = std::chrono::floor<std::chrono::seconds>(query.since->time_since_epoch());
    argv.push_back(absl::StrCat("--since=@", std::max<int64_t>(seconds.count(), 0)));
  }
  if (query.lines) argv.push_back(absl::StrCat("--lines=", *query.lines));
  if (query.follow) argv.push_back("--follow");
  if (query.no_tail) argv.push_back("--no-tail");
  return argv;
}

absl::Status Unavailable(const std::string& path, const std::string& why) {
  return absl::UnavailableError(absl::StrCat(
      "journal: ", path, " ", why,
      "; install systemd's journalctl, set logs.journalctl_path, or set logs.journald to false"));
}

class JournalctlRun {
 public:
  JournalctlRun(const std::string& path, common::CancelToken& cancel) : path_(path), cancel_(cancel) {}

  // Runs journalctl with `argv` and passes each entry to `on_record` until journalctl exits or
  // `on_record` returns false (then OK). CANCELLED when the token fires.
  absl::Status Run(const std::vector<std::string>& argv, const RecordFn& on_record) {
    if (access(path_.c_str(), X_OK) != 0) return Unavailable(path_, "is missing or not executable");
    common::SpawnOptions options;
    options.argv = argv;
    options.environment = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"};
    absl::StatusOr<std::unique_ptr<ChildProcess>> spawned = ChildProcess::Spawn(options);
    if (!spawned.ok()) return Unavailable(path_, std::string(spawned.status().message()));
    ChildProcess& child = **spawned;
    // A poll() on the pipe does not see the condition variable; waking the child reader does.
    common::CancelToken::Registration wake = cancel_.OnCancel([&child] { child.Wake(); });

    absl::Status status = Pump(child, on_record);
    child.KillGroup();
    absl::StatusOr<common::ExitStatus> exit = child.Wait();
    if (!status.ok() || stopped_) return status;
    if (!exit.ok()) return exit.status();
    if (skipped_lines_ > 0) {
      spdlog::warn("journal: skipped {} lines of journalctl output that were not journal entries",
                   skipped_lines_);
    }
    std::string stderr_text(absl::StripAsciiWhitespace(stderr_));
    if (exit->signal != 0) {
      return Unavailable(path_, absl::StrCat("was killed by signal ", exit->signal));
    }
    if (exit->exit_code != 0) {
      return Unavailable(path_, absl::StrCat("exited with status ", exit->exit_code.value_or(-1),
                                             stderr_text.empty() ? "" : ": ", stderr_text));
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Pump(ChildProcess& child, const RecordFn& on_record) {
    std::string out;
    std::string err;
    while (true) {
      absl::StatusOr<ChildProcess::Event> event =
          child.Read(ChildProcess::Deadline::max(), &out, &err);
      if (!event.ok()) return event.status();
      stderr_.append(err, 0, kMaxStderrBytes - std::min(kMaxStderrBytes, stderr_.size()));
      err.clear();
      if (*event == ChildProcess::Event::kWoken && cancel_.cancelled()) {
        return absl::CancelledError("journal stream was cancelled");
      }
      if (!TakeLines(out, on_record)) {
        stopped_ = true;
        return absl::OkStatus();
      }
      if (*event == ChildProcess::Event::kExited) return absl::OkStatus();
    }
  }

  // Hands every complete line in `out` to `on_record` and leaves the partial rest in `out`.
  bool TakeLines(std::string& out, const RecordFn& on_record) {
    size_t start = 0;
    for (size_t newline; (newline = out.find('\n', start)) != std::string::npos;
         start = newline + 1) {
      if (std::exchange(skipping_, false)) continue;
      std::string_view line(out.data() + start, newline - start);
      if (line.empty()) continue;
      absl::StatusOr<JournalRecord> record = ParseJournalJson(line);
      if (!record.ok()) {
        ++skipped_lines_;
        continue;
      }
      if (!on_record(*std::move(record))) return false;
    }
    out.erase(0, start);
    if (out.size() > kMaxJsonLineBytes) {
      out.clear();
      skipping_ = true;
      ++skipped_lines_;
    }
    return true;
  }

  const std::string& path_;
  common::CancelToken& cancel_;
  std::string stderr_;
  bool stopped_ = false;
  bool skipping_ = false;
  int64_t skipped_lines_ = 0;
};

class JournalStream {
 public:
  JournalStream(const std::string& path, const LogFilter& filter, const EntryMatcher& matcher,
                const EmitFn& emit, common::CancelToken& cancel, const common::Clock& clock)
      : path_(path),
        filter_(filter),
        matcher_(matcher),
        emit_(emit),
        cancel_(cancel),
        clock_(clock) {}

  absl::Status Run() {
    const int64_t limit = filter_.limit;
    // journalctl --lines counts entries before the agent's own filters, so it can only do the
    // tail when there are none.
    const bool journalctl_tails = limit > 0 && !filter_.since && !matcher_.has_text_filter();
    JournalQuery query;
    query.since = filter_.since;
    if (!filter_.follow) {
      if (journalctl_tails) query.lines = limit;
      return limit > 0 ? Backlog(query, nullptr) : Forward(query);
    }
    if (limit == 0 || journalctl_tails) {
      query.follow = true;
      query.no_tail = limit == 0;
      if (journalctl_tails) query.lines = limit;
      return Forward(query);
    }
    // The backlog's tail has to be found here, and a following journalctl cannot say where its
    // backlog ends: read the backlog first, then follow from just after its last entry.
    const system_clock::time_point started = clock_.WallNow();
    std::string last_cursor;
    if (absl::Status backlog = Backlog(query, &last_cursor); !backlog.ok() || stopped_) {
      return backlog;
    }
    if (cancel_.cancelled()) return absl::CancelledError("journal stream was cancelled");
    JournalQuery follow;
    follow.follow = true;
    follow.no_tail = true;
    follow.after_cursor = last_cursor;
    if (last_cursor.empty()) follow.since = std::max(filter_.since.value_or(started), started);
    return Forward(follow);
  }

 private:
  // Runs one journalctl; `on_match` gets entries that pass the matcher.
  absl::Status RunQuery(const JournalQuery& query,
                        const std::function<bool(JournalRecord&&)>& on_match,
                        std::string* last_cursor) {
    JournalctlRun run(path_, cancel_);
    absl::Status status =
        run.Run(JournalctlArgv(path_, filter_, query), [&](JournalRecord&& record) {
          if (last_cursor != nullptr && !record.cursor.empty()) *last_cursor = record.cursor;
          return !matcher_.Matches(record.entry) || on_match(std::move(record));
        });
    return status;
  }

  absl::Status Forward(const JournalQuery& query) {
    return RunQuery(
        query,
        [this](JournalRecord&& record) {
          stopped_ = !emit_(record.entry);
          return !stopped_;
        },
        nullptr);
  }

  // Collects the last `limit` matching entries, then emits them.
  absl::Status Backlog(const JournalQuery& query, std::string* last_cursor) {
    std::deque<LogEntry> tail;
    const auto limit = static_cast<size_t>(filter_.limit);
    absl::Status status = RunQuery(
        query,
        [&](JournalRecord&& record) {
          tail.push_back(std::move(record.entry));
          if (tail.size() > limit) tail.pop_front();
          return true;
        },
        last_cursor);
    if (!status.ok()) return status;
    for (const LogEntry& entry : tail) {
      if (!emit_(entry)) {
        stopped_ = true;
        break;
      }
    }
    return absl::OkStatus();
  }

  const std::string& path_;
  const LogFilter& filter_;
  const EntryMatcher& matcher_;
  const EmitFn& emit_;
  common::CancelToken& cancel_;
  const common::Clock& clock_;
  // emit_ returned false: the stream ends with OK.
  bool stopped_ = false;
};

}  // namespace

absl::Status StreamJournal(const std::string& journalctl_path, const LogFilter& filter,
                           const EntryMatcher& matcher, const EmitFn& emit, common::CancelToken& cancel,
                           const common::Clock& clock) {
  JournalStream stream(journalctl_path, filter, matcher, emit, cancel, clock);
  return stream.Run();
}

}  // namespace pi::agent::logs
