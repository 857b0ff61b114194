#include "node-agent/logs/entry_matcher.h"

#include <fmt/format.h>

namespace pi::agent::logs {
namespace {

// Bounds the memory one compiled client pattern may take.
constexpr int64_t kMaxRegexProgramBytes = 1 << 20;

}  // namespace

absl::StatusOr<EntryMatcher> EntryMatcher::Create(const LogFilter& filter) {
  EntryMatcher matcher;
  matcher.since_ = filter.since;
  matcher.substring_ = filter.substring;
  if (filter.regex.empty()) return matcher;
  if (filter.regex.size() > kMaxRegexLength) {
    return absl::InvalidArgumentError(fmt::format("regex is {} bytes; at most {} are accepted",
                                                  filter.regex.size(), kMaxRegexLength));
  }
  RE2::Options options;
  options.set_log_errors(false);
  options.set_max_mem(kMaxRegexProgramBytes);
  auto regex = std::make_shared<const re2::RE2>(filter.regex, options);
  if (!regex->ok()) {
    return absl::InvalidArgumentError(
        fmt::format("invalid regex \"{}\" (RE2 syntax): {}", filter.regex, regex->error()));
  }
  matcher.regex_ = std::move(regex);
  return matcher;
}

bool EntryMatcher::Matches(const LogEntry& entry) const {
  if (since_ && entry.timestamp < *since_) return false;
  if (!substring_.empty() && entry.message.find(substring_) == std::string::npos) return false;
  return regex_ == nullptr || RE2::PartialMatch(entry.message, *regex_);
}

}  // namespace pi::agent::logs
