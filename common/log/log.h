#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

namespace pi::common {

// Configures the process-wide spdlog logger: level is one of trace|debug|info|warn|error.
// Logs go to stderr, which systemd forwards to the journal.
void InitLogging(std::string_view program, std::string_view level);

}  // namespace pi::common
