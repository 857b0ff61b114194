#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/provisioning/profile.h"
#include "common/system/cancel_token.h"
#include "node-agent/exec/command_executor.h"
#include "node-agent/gpio/gpio_controller.h"

namespace pi::agent::runner {

// The `runner` section's file policy: every path a profile writes or checks is resolved under
// filesystem_root (an image being prepared, or a test directory) and must fall inside one of
// allowed_write_roots (absolute, as seen by the profile) to be written or checked, so a check
// cannot read the agent's own secrets. Symbolic links on the way are followed only while they
// stay inside filesystem_root, and the path must fall inside an allowed root both as named and as
// the links resolve it; a file that is itself a link is never written. Missing directories are
// created (0755) only inside an allowed root.
struct ProvisionPolicy {
  std::string filesystem_root = "/";
  std::vector<std::string> allowed_write_roots;
};

// One output line of a provisioning run, for PushLogs.
using ProvisionLog = std::function<void(std::string_view channel, std::string_view line)>;

struct ProvisionResult {
  bool success = false;
  std::string error_message;  // set when !success
  // Plan mode: one line per step ("+ write /etc/motd (new file)", "= …", "~ …") and a last line
  // "Plan: N to change, M unchanged."; apply mode: the same summary of what was done.
  std::string plan_output;
  int changed = 0;
  int unchanged = 0;
};

// Executes a provisioning release: the files are the release's artifact files (profile.json and
// parameters.json; without the latter every parameter takes its default). Steps run in order; the
// first failing step ends the run (success=false). Commands go through the agent's CommandExecutor
// (its allowlist applies) and GPIO through its GpioController (a written line is held until
// RELEASE or gpio.max_hold). Plan mode changes nothing and reports what would change: it runs only
// checks and `unless` commands, which are read-only by contract, and compares GPIO lines only
// against the lines the agent holds (reading any other line would request it). Every step logs
// "step N/M NAME: <plan line>" on stdout; command output is logged line by line on its channel.
class ProfileExecutor {
 public:
  ProfileExecutor(ProvisionPolicy policy, exec::CommandExecutor& commands,
                  gpio::GpioController* gpio);
  // Non-OK only when the run could not start (missing or malformed files: INVALID_ARGUMENT);
  // a failing step is an OK result with success=false.
  absl::StatusOr<ProvisionResult> Run(const std::vector<std::pair<std::string, std::string>>& files,
                                      bool plan, const ProvisionLog& log,
                                      common::CancelToken* cancel);

 private:
  ProvisionPolicy policy_;
  exec::CommandExecutor& commands_;
  gpio::GpioController* gpio_;
};

}  // namespace pi::agent::runner
