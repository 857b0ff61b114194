#include "node-agent/logs/line_parser.h"

#include <array>
#include <ctime>

namespace pi::agent::logs {
namespace {

using std::chrono::system_clock;

constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Reads exactly `count` digits at `pos`.
std::optional<int> Digits(std::string_view s, size_t pos, size_t count) {
  if (pos + count > s.size()) return std::nullopt;
  int value = 0;
  for (size_t i = pos; i < pos + count; ++i) {
    if (!IsDigit(s[i])) return std::nullopt;
    value = value * 10 + (s[i] - '0');
  }
  return value;
}

bool EndsToken(std::string_view s, size_t pos) {
  return pos == s.size() || s[pos] == ' ' || s[pos] == '\t';
}

struct CivilTime {
  int year = 0;
  int month = 0;
  int day = 0;
  int hour = 0;
  int minute = 0;
  int second = 0;
  std::chrono::nanoseconds fraction{0};

  static CivilTime Of(int year, int month, int day, int hour, int minute, int second) {
    CivilTime t;
    t.year = year;
    t.month = month;
    t.day = day;
    t.hour = hour;
    t.minute = minute;
    t.second = second;
    return t;
  }

  bool Valid() const {
    using namespace std::chrono;
    return year_month_day(std::chrono::year(year), std::chrono::month(month), std::chrono::day(day))
               .ok() &&
           hour < 24 && minute < 60 && second <= 60;
  }

  // A leap second is folded into the second before it.
  int ClampedSecond() const { return second == 60 ? 59 : second; }

  system_clock::time_point AsUtc(std::chrono::minutes offset) const {
    using namespace std::chrono;
    sys_days date = std::chrono::year(year) / std::chrono::month(month) / std::chrono::day(day);
    return time_point_cast<system_clock::duration>(date + hours(hour) + minutes(minute) +
                                                   seconds(ClampedSecond()) - offset) +
           duration_cast<system_clock::duration>(fraction);
  }

  std::optional<system_clock::time_point> AsLocal() const {
    std::tm tm{};
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = ClampedSecond();
    tm.tm_isdst = -1;
    std::time_t t = std::mktime(&tm);
    if (t == static_cast<std::time_t>(-1)) return std::nullopt;
    return system_clock::from_time_t(t) +
           std::chrono::duration_cast<system_clock::duration>(fraction);
  }
};

// "2023-11-22T03:07:04[.frac][Z|+hh:mm|+hhmm]"; `end` receives the index after it.
std::optional<system_clock::time_point> ParseIso(std::string_view s, size_t& end) {
  if (s.size() < 19) return std::nullopt;
  auto year = Digits(s, 0, 4);
  auto month = Digits(s, 5, 2);
  auto day = Digits(s, 8, 2);
  auto hour = Digits(s, 11, 2);
  auto minute = Digits(s, 14, 2);
  auto second = Digits(s, 17, 2);
  if (!year || !month || !day || !hour || !minute || !second || s[4] != '-' || s[7] != '-' ||
      (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' || s[16] != ':') {
    return std::nullopt;
  }
  CivilTime t = CivilTime::Of(*year, *month, *day, *hour, *minute, *second);
  if (!t.Valid()) return std::nullopt;

  size_t pos = 19;
  if (pos < s.size() && (s[pos] == '.' || s[pos] == ',')) {
    size_t start = ++pos;
    int64_t nanos = 0;
    while (pos < s.size() && IsDigit(s[pos])) {
      if (pos - start < 9) nanos = nanos * 10 + (s[pos] - '0');
      ++pos;
    }
    if (pos == start) return std::nullopt;
    for (size_t digits = pos - start; digits < 9; ++digits) nanos *= 10;
    t.fraction = std::chrono::nanoseconds(nanos);
  }

  std::optional<std::chrono::minutes> offset;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    offset = std::chrono::minutes(0);
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int sign = s[pos] == '-' ? -1 : 1;
    auto off_hours = Digits(s, pos + 1, 2);
    size_t minute_pos = pos + 3;
    if (minute_pos < s.size() && s[minute_pos] == ':') ++minute_pos;
    auto off_minutes = Digits(s, minute_pos, 2);
    if (!off_hours || !off_minutes || *off_hours > 23 || *off_minutes > 59) return std::nullopt;
    offset = std::chrono::minutes(sign * (*off_hours * 60 + *off_minutes));
    pos = minute_pos + 2;
  }
  if (!EndsToken(s, pos)) return std::nullopt;
  end = pos;
  if (offset) return t.AsUtc(*offset);
  return t.AsLocal();
}

// "Nov 22 03:07:04" or "Nov  2 03:07:04"; `end` receives the index after it.
std::optional<system_clock::time_point> ParseSyslog(std::string_view s,
                                                    system_clock::time_point now, size_t& end) {
  if (s.size() < 15 || s[3] != ' ' || s[6] != ' ' || s[9] != ':' || s[12] != ':') {
    return std::nullopt;
  }
  int month = 0;
  for (size_t i = 0; i < kMonths.size(); ++i) {
    if (s.substr(0, 3) == kMonths[i]) month = static_cast<int>(i) + 1;
  }
  std::optional<int> day;
  if (s[4] == ' ') {
    day = Digits(s, 5, 1);
  } else {
    day = Digits(s, 4, 2);
  }
  auto hour = Digits(s, 7, 2);
  auto minute = Digits(s, 10, 2);
  auto second = Digits(s, 13, 2);
  if (month == 0 || !day || !hour || !minute || !second || !EndsToken(s, 15)) return std::nullopt;

  std::time_t now_t = system_clock::to_time_t(now);
  std::tm now_tm{};
  localtime_r(&now_t, &now_tm);
  const auto latest = now + std::chrono::hours(24);
  for (int year : {now_tm.tm_year + 1900, now_tm.tm_year + 1899}) {
    CivilTime t = CivilTime::Of(year, month, *day, *hour, *minute, *second);
    if (!t.Valid()) continue;  // Feb 29 outside a leap year
    auto local = t.AsLocal();
    if (local && *local <= latest) {
      end = 15;
      return local;
    }
  }
  return std::nullopt;
}

bool IsHostChar(char c) {
  return IsDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' || c == '-' ||
         c == '_';
}

bool IsTagChar(char c) { return IsHostChar(c) || c == '/' || c == '@'; }

// " host tag[pid]: " or " host tag: " right after the timestamp.
void ParseSyslogHeader(std::string_view rest, LineHeader& header) {
  size_t pos = 0;
  if (pos >= rest.size() || rest[pos] != ' ') return;
  ++pos;
  size_t host_start = pos;
  while (pos < rest.size() && IsHostChar(rest[pos])) ++pos;
  if (pos == host_start || pos >= rest.size() || rest[pos] != ' ') return;
  std::string_view host = rest.substr(host_start, pos - host_start);
  ++pos;
  size_t tag_start = pos;
  while (pos < rest.size() && IsTagChar(rest[pos])) ++pos;
  if (pos == tag_start) return;
  std::string_view tag = rest.substr(tag_start, pos - tag_start);
  int64_t pid = 0;
  if (pos < rest.size() && rest[pos] == '[') {
    size_t digits_start = ++pos;
    while (pos < rest.size() && IsDigit(rest[pos]) && pos - digits_start < 10) {
      pid = pid * 10 + (rest[pos] - '0');
      ++pos;
    }
    if (pos == digits_start || pos >= rest.size() || rest[pos] != ']') return;
    ++pos;
  }
  if (pos >= rest.size() || rest[pos] != ':' || !EndsToken(rest, pos + 1)) return;
  header.hostname = std::string(host);
  header.identifier = std::string(tag);
  header.pid = pid;
}

}  // namespace

LineHeader ParseLineHeader(std::string_view line, system_clock::time_point now) {
  LineHeader header;
  size_t end = 0;
  if (!line.empty() && IsDigit(line[0])) {
    header.timestamp = ParseIso(line, end);
  } else {
    header.timestamp = ParseSyslog(line, now, end);
  }
  if (header.timestamp) ParseSyslogHeader(line.substr(end), header);
  return header;
}

}  // namespace pi::agent::logs
