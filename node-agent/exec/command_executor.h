#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/system/cancel_token.h"

namespace pi::agent::exec {

// The `exec` section of the agent config. Field names match the config keys, which is also how
// error messages refer to them.
struct ExecPolicy {
  // Absolute paths of the programs callers may run. A request matches an entry when both name the
  // same file in the same directory once directory symlinks are resolved, so /bin/sh and
  // /usr/bin/sh are one entry on merged-/usr systems. The file name itself is compared as
  // written: busybox-style links that all point at one binary stay separate entries.
  std::vector<std::string> allowed_commands;
  std::chrono::milliseconds default_timeout{std::chrono::seconds(10)};
  std::chrono::milliseconds max_timeout{std::chrono::seconds(300)};
  // SIGTERM-to-SIGKILL grace on timeout; zero kills the group with SIGKILL at once.
  std::chrono::milliseconds kill_grace{0};
  // Per stream; more output is read and discarded so the child never blocks on a full pipe.
  size_t max_output_bytes = 1024 * 1024;
  int max_concurrent = 4;
  // Environment variable names a request may set.
  std::vector<std::string> allowed_env;
  size_t max_argv_count = 1024;
  // Total bytes of argv and requested environment together.
  size_t max_argv_bytes = 128 * 1024;
};

struct CommandRequest {
  // argv[0] must be an absolute path listed in ExecPolicy::allowed_commands. No shell is involved.
  std::vector<std::string> argv;
  // Zero means ExecPolicy::default_timeout.
  std::chrono::milliseconds timeout{0};
  // Absolute; empty means "/".
  std::string working_directory;
  std::map<std::string, std::string> env;
};

struct CommandResult {
  // -1 when a signal ended the command.
  int exit_code = -1;
  // The signal that ended it, or 0.
  int signal = 0;
  // Raw bytes; not necessarily UTF-8.
  std::string stdout_data;
  std::string stderr_data;
  bool stdout_truncated = false;
  bool stderr_truncated = false;
  std::chrono::milliseconds duration{0};
  bool timed_out = false;
};

// Runs allowlisted programs for diagnostics. Thread-safe: concurrent Execute() calls each block
// their own thread, up to ExecPolicy::max_concurrent at a time.
class CommandExecutor {
 public:
  explicit CommandExecutor(ExecPolicy policy);

  // `caller` is the authenticated identity, written to the audit log.
  // INVALID_ARGUMENT: malformed request (empty argv, relative or ".." paths, bad timeout, oversize
  //   argv, missing working directory).
  // PERMISSION_DENIED: executable or environment variable not allowed by the policy.
  // RESOURCE_EXHAUSTED: max_concurrent commands are already running.
  // NOT_FOUND / FAILED_PRECONDITION: the allowed executable is missing or cannot be executed.
  // CANCELLED: `cancel` fired (the caller went away or the agent is stopping); the command's
  //   process group has been killed.
  // A command that fails or times out is still OK: see exit_code, signal and timed_out.
  absl::StatusOr<CommandResult> Execute(const CommandRequest& request, std::string_view caller,
                                        common::CancelToken* cancel = nullptr);

 private:
  // The path to execute (directory symlinks resolved) when argv[0] is allowed.
  absl::StatusOr<std::string> ResolveAllowed(const std::string& program) const;
  absl::Status Validate(const CommandRequest& request) const;
  absl::StatusOr<CommandResult> Run(const CommandRequest& request, const std::string& executable,
                                    common::CancelToken* cancel);

  const ExecPolicy policy_;
  std::mutex mu_;
  int running_ = 0;
};

}  // namespace pi::agent::exec
