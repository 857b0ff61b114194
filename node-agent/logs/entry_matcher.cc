#include "node-agent/logs/entry_matcher.h"

#include <string_view>

#include "absl/strings/str_cat.h"

namespace pi::agent::logs {

absl::StatusOr<EntryMatcher> EntryMatcher::Create(const LogFilter& filter) {
  EntryMatcher matcher;
  matcher.since_ = filter.since;
  matcher.substring_ = filter.substring;
  if (filter.regex.empty()) return matcher;
  if (filter.regex.size() > kMaxRegexLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "regex is ", filter.regex.size(), " bytes; at most ", kMaxRegexLength, " are accepted"));
  }
  try {
    // __polynomial (a documented libstdc++ extension) selects the breadth-first matcher: no
    // exponential backtracking and no recursion as deep as the line is long, either of which a
    // client's pattern could otherwise use to stall or crash the agent.
    matcher.regex_.emplace(filter.regex,
                           std::regex::ECMAScript | std::regex_constants::__polynomial);
    // Back-references are only refused once matching starts; find out now.
    std::regex_search(std::string_view().begin(), std::string_view().end(), *matcher.regex_);
  } catch (const std::regex_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid regex \"", filter.regex, "\": ", e.what()));
  }
  return matcher;
}

absl::StatusOr<bool> EntryMatcher::Matches(const LogEntry& entry) const {
  if (since_ && entry.timestamp < *since_) return false;
  if (!substring_.empty() && entry.message.find(substring_) == std::string::npos) return false;
  if (!regex_) return true;
  std::string_view subject = entry.message;
  subject = subject.substr(0, kMaxRegexSubject);
  try {
    return std::regex_search(subject.begin(), subject.end(), *regex_);
  } catch (const std::regex_error& e) {
    return absl::InvalidArgumentError(absl::StrCat("regex could not be evaluated: ", e.what()));
  }
}

}  // namespace pi::agent::logs
