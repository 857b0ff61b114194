#include "node-agent/logs/log_streamer.h"

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/system/paths.h"
#include "node-agent/logs/entry_matcher.h"
#include "node-agent/logs/file_source.h"
#include "node-agent/logs/journal_source.h"

namespace pi::agent::logs {
namespace {

constexpr size_t kMaxUnitLength = 256;

// Unit names and the glob patterns journalctl --unit accepts.
bool IsValidUnit(const std::string& unit) {
  if (unit.size() > kMaxUnitLength) return false;
  for (char c : unit) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::string_view(":_.\\@-*?[]").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<LogStreamer> LogStreamer::Create(LogsConfig config, const common::Clock& clock) {
  for (const auto& [name, path] : config.files) {
    if (name.empty() || name == kJournalSource) {
      return absl::InvalidArgumentError(
          absl::StrCat("logs.files: \"", name, "\" cannot name a file source (empty or reserved)"));
    }
    if (path.empty() || path.front() != '/' || common::HasDotDotComponent(path)) {
      return absl::InvalidArgumentError(absl::StrCat("logs.files.", name, ": \"", path,
                                                     "\" must be an absolute path without \"..\""));
    }
  }
  if (config.journald &&
      (config.journalctl_path.empty() || config.journalctl_path.front() != '/')) {
    return absl::InvalidArgumentError(absl::StrCat(
        "logs.journalctl_path: \"", config.journalctl_path, "\" must be an absolute path"));
  }
  if (config.follow_poll_interval.count() <= 0) {
    return absl::InvalidArgumentError("logs.follow_poll_interval must be positive");
  }
  if (config.max_limit < 0) {
    return absl::InvalidArgumentError("logs.max_limit must not be negative");
  }
  return LogStreamer(std::move(config), clock);
}

std::vector<std::string> LogStreamer::SourceNames() const {
  std::vector<std::string> names;
  if (config_.journald) names.push_back(kJournalSource);
  for (const auto& [name, path] : config_.files) names.push_back(name);
  return names;
}

absl::Status LogStreamer::Stream(const LogFilter& filter, const EmitFn& emit,
                                 common::CancelToken& cancel) const {
  if (filter.limit < 0) return absl::InvalidArgumentError("limit must not be negative");
  if (config_.max_limit > 0 && filter.limit > config_.max_limit) {
    return absl::InvalidArgumentError(absl::StrCat("limit ", filter.limit,
                                                   " exceeds logs.max_limit (", config_.max_limit,
                                                   "); use 0 for no limit"));
  }
  if (filter.max_priority && (*filter.max_priority < 0 || *filter.max_priority > 7)) {
    return absl::InvalidArgumentError(absl::StrCat("priority ", *filter.max_priority,
                                                   " is out of range: use 0 (emerg) to 7 (debug)"));
  }
  if (!IsValidUnit(filter.unit)) {
    return absl::InvalidArgumentError(absl::StrCat("\"", filter.unit, "\" is not a unit name"));
  }
  absl::StatusOr<EntryMatcher> matcher = EntryMatcher::Create(filter);
  if (!matcher.ok()) return matcher.status();

  std::string source = filter.source;
  if (source.empty()) {
    if (!config_.journald) {
      return absl::InvalidArgumentError(
          absl::StrCat("name a log source: the journal is disabled here; configured sources: ",
                       absl::StrJoin(SourceNames(), ", ")));
    }
    source = kJournalSource;
  }

  if (source == kJournalSource && config_.journald) {
    return StreamJournal(config_.journalctl_path, filter, *matcher, emit, cancel, *clock_);
  }
  auto file = config_.files.find(source);
  if (file == config_.files.end()) {
    std::vector<std::string> names = SourceNames();
    return absl::NotFoundError(absl::StrCat(
        "unknown log source \"", source,
        "\"; configured sources: ", names.empty() ? "(none)" : absl::StrJoin(names, ", ")));
  }
  if (!filter.unit.empty() || filter.max_priority) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unit and priority filters apply to the journal only, not to log source ", source));
  }
  FileStreamOptions options;
  options.source = source;
  options.path = file->second;
  options.limit = filter.limit;
  options.follow = filter.follow;
  options.poll_interval = config_.follow_poll_interval;
  options.clock = clock_;
  return StreamFile(options, *matcher, emit, cancel);
}

}  // namespace pi::agent::logs
