#pragma once

#include <string>

#include "absl/status/status.h"
#include "common/system/clock.h"
#include "common/system/cancel_token.h"
#include "node-agent/logs/entry_matcher.h"
#include "node-agent/logs/log_streamer.h"

namespace pi::agent::logs {

// Streams journal entries by running `journalctl -o json` (see LogStreamer::Stream). unit and
// priority are left to journalctl; since, substring and regex are checked here too, and the tail
// of a filtered backlog is kept here, because journalctl --lines counts entries before our
// filters. UNAVAILABLE when journalctl is missing or fails.
absl::Status StreamJournal(const std::string& journalctl_path, const LogFilter& filter,
                           const EntryMatcher& matcher, const EmitFn& emit, common::CancelToken& cancel,
                           const common::Clock& clock);

}  // namespace pi::agent::logs
