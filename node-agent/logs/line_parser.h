#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/text/utf8.h"

namespace pi::agent::logs {

// What the start of a log file line says about it.
struct LineHeader {
  std::optional<std::chrono::system_clock::time_point> timestamp;
  std::string hostname;
  std::string identifier;
  int64_t pid = 0;
};

// Reads a leading timestamp, either RFC 3339 / ISO 8601 ("2023-11-22T03:07:04.5+01:00",
// "2023-11-22 03:07:04"; local time without an offset) or classic syslog ("Nov 22 03:07:04",
// local time). Syslog stamps carry no year: the one that puts the stamp closest before `now`
// (allowing a day of clock skew) is taken. When a syslog-style "host tag[pid]:" follows, its
// parts are filled in too.
LineHeader ParseLineHeader(std::string_view line, std::chrono::system_clock::time_point now);

// Log text travels in protobuf string fields, which must be valid UTF-8.
using common::ToValidUtf8;

}  // namespace pi::agent::logs
