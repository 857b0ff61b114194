#pragma once

// The pictl command line: parses argv, connects to the controller's Admin service and prints the
// answer. main.cc only supplies the process environment, the clock and the Ctrl-C token.
#include <ostream>
#include <string>

#include "common/system/cancel_token.h"
#include "common/system/clock.h"
#include "control-plane/pictl/config.h"

namespace pi::controlplane::pictl {

struct RunContext {
  Environment env;
  std::string version;
  const common::Clock* clock = nullptr;
  // Cancelled on Ctrl-C: the call in flight is cancelled and a stream ends cleanly.
  common::CancelToken* interrupt = nullptr;
};

// Runs one pictl invocation and returns the process exit code (see ExitCode in errors.h). Normal
// output goes to `out`, messages to `err`. Never throws.
int RunPictl(int argc, const char* const* argv, const RunContext& context, std::ostream& out,
             std::ostream& err);

}  // namespace pi::controlplane::pictl
