#pragma once

#include <chrono>
#include <optional>
#include <string_view>

#include "absl/status/status.h"

namespace pi::common {

// Sends a systemd notification ("READY=1", "STOPPING=1", "WATCHDOG=1", "STATUS=...") to
// $NOTIFY_SOCKET, speaking the datagram protocol directly so the daemons need no libsystemd.
// Without NOTIFY_SOCKET (not started by systemd) it does nothing and returns OK.
absl::Status SdNotify(std::string_view state);

// How often the service must ping the watchdog: half of WATCHDOG_USEC, when it is set for this
// process (WATCHDOG_PID absent or equal to our pid).
std::optional<std::chrono::microseconds> WatchdogPingInterval();

}  // namespace pi::common
