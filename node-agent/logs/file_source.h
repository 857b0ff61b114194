#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "common/system/clock.h"
#include "common/system/cancel_token.h"
#include "node-agent/logs/entry_matcher.h"
#include "node-agent/logs/log_streamer.h"

namespace pi::agent::logs {

struct FileStreamOptions {
  std::string source;
  std::string path;
  int64_t limit = 0;
  bool follow = false;
  std::chrono::milliseconds poll_interval{250};
  const common::Clock* clock = &common::RealClock();
};

// Lines longer than this are cut; the rest of such a line is skipped.
inline constexpr size_t kMaxFileLineBytes = 64 * 1024;

// Streams the lines of one file (see LogStreamer::Stream). While following, a partial last line
// waits for its newline; when the path starts naming a new file (rotation) the old one is read to
// its end first, and when the file shrinks below what was read (truncation) reading restarts at 0.
absl::Status StreamFile(const FileStreamOptions& options, const EntryMatcher& matcher,
                        const EmitFn& emit, common::CancelToken& cancel);

}  // namespace pi::agent::logs
