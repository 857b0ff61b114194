#include "node-agent/exec/command_executor.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/system/child_process.h"
#include "common/system/duration.h"
#include "common/system/paths.h"

namespace pi::agent::exec {
namespace {

using common::ChildProcess;
using common::FormatDuration;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr char kDefaultPath[] = "/usr/sbin:/usr/bin:/sbin:/bin";
constexpr char kDefaultLang[] = "C.UTF-8";
// After the leader exits, output it queued is still collected, but a descendant that keeps
// writing must not keep the call alive: at most this many reads (64 KiB each) follow the exit.
constexpr int kMaxReadsAfterExit = 40;

// Resolves symlinks in the directory only; see ExecPolicy::allowed_commands for why.
std::string CanonicalProgram(const std::string& path) {
  std::filesystem::path p(path);
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::canonical(p.parent_path(), ec);
  if (ec) return p.lexically_normal().string();
  return (dir / p.filename()).string();
}

// Argv as a JSON array: quoted, with control characters escaped, so a crafted argument cannot
// forge audit lines.
std::string AuditArgv(const std::vector<std::string>& argv) {
  return nlohmann::json(argv).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void Keep(std::string& chunk, std::string& sink, bool& truncated, size_t cap) {
  size_t room = cap - std::min(cap, sink.size());
  if (chunk.size() > room) {
    truncated = true;
    sink.append(chunk, 0, room);
  } else {
    sink.append(chunk);
  }
  chunk.clear();
}

}  // namespace

CommandExecutor::CommandExecutor(ExecPolicy policy) : policy_(std::move(policy)) {}

absl::Status CommandExecutor::Validate(const CommandRequest& request) const {
  if (request.argv.empty()) {
    return absl::InvalidArgumentError(
        "argv is empty; argv[0] must be the absolute path of an allowed program");
  }
  if (request.argv.size() > policy_.max_argv_count) {
    return absl::InvalidArgumentError(absl::StrCat("argv has ", request.argv.size(),
                                                   " elements; exec.max_argv_count is ",
                                                   policy_.max_argv_count));
  }
  size_t bytes = 0;
  for (const std::string& arg : request.argv) {
    if (arg.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError("argv elements must not contain NUL bytes");
    }
    bytes += arg.size() + 1;
  }
  for (const auto& [name, value] : request.env) {
    if (name.empty() || name.find_first_of(std::string_view("=\0", 2)) != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid environment variable name \"", name, "\""));
    }
    if (value.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("environment variable ", name, " contains a NUL byte"));
    }
    bytes += name.size() + value.size() + 2;
  }
  if (bytes > policy_.max_argv_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("argv and environment take ", bytes,
                                                   " bytes; exec.max_argv_bytes is ",
                                                   policy_.max_argv_bytes));
  }

  const std::string& program = request.argv.front();
  if (program.empty() || program.front() != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "argv[0] must be an absolute path (no PATH lookup is done), got \"", program, "\""));
  }
  if (common::HasDotDotComponent(program)) {
    return absl::InvalidArgumentError(absl::StrCat("argv[0] must not contain \"..\": ", program));
  }
  if (std::filesystem::path(program).filename().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("argv[0] must name a file: ", program));
  }

  if (request.timeout.count() < 0) {
    return absl::InvalidArgumentError("timeout must not be negative");
  }
  if (request.timeout > policy_.max_timeout) {
    return absl::InvalidArgumentError(absl::StrCat("timeout ", FormatDuration(request.timeout),
                                                   " exceeds exec.max_timeout (",
                                                   FormatDuration(policy_.max_timeout), ")"));
  }

  const std::string& cwd = request.working_directory;
  if (!cwd.empty()) {
    if (cwd.front() != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("working directory must be an absolute path, got \"", cwd, "\""));
    }
    if (cwd.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError("working directory must not contain NUL bytes");
    }
    if (common::HasDotDotComponent(cwd)) {
      return absl::InvalidArgumentError(
          absl::StrCat("working directory must not contain \"..\": ", cwd));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> CommandExecutor::ResolveAllowed(const std::string& program) const {
  const std::string wanted = CanonicalProgram(program);
  for (const std::string& allowed : policy_.allowed_commands) {
    if (CanonicalProgram(allowed) == wanted) return wanted;
  }
  return absl::PermissionDeniedError(absl::StrCat(program, " is not in exec.allowed_commands"));
}

absl::StatusOr<CommandResult> CommandExecutor::Execute(const CommandRequest& request,
                                                       std::string_view caller,
                                                       common::CancelToken* cancel) {
  auto reject = [&](absl::Status status) {
    spdlog::warn("exec rejected: caller={} argv={} reason={}", caller, AuditArgv(request.argv),
                 std::string(status.message()));
    return status;
  };

  if (absl::Status valid = Validate(request); !valid.ok()) return reject(valid);
  absl::StatusOr<std::string> executable = ResolveAllowed(request.argv.front());
  if (!executable.ok()) return reject(executable.status());
  for (const auto& [name, value] : request.env) {
    if (std::find(policy_.allowed_env.begin(), policy_.allowed_env.end(), name) ==
        policy_.allowed_env.end()) {
      return reject(absl::PermissionDeniedError(
          absl::StrCat("environment variable ", name, " is not in exec.allowed_env")));
    }
  }
  if (!request.working_directory.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_directory(request.working_directory, ec)) {
      return reject(
          absl::InvalidArgumentError(absl::StrCat("working directory ", request.working_directory,
                                                  " does not exist or is not a directory")));
    }
  }

  {
    std::lock_guard lock(mu_);
    if (running_ >= policy_.max_concurrent) {
      return reject(absl::ResourceExhaustedError(
          absl::StrCat(running_, " commands are already running (exec.max_concurrent is ",
                       policy_.max_concurrent, "); retry later")));
    }
    ++running_;
  }
  absl::StatusOr<CommandResult> result = Run(request, *executable, cancel);
  {
    std::lock_guard lock(mu_);
    --running_;
  }

  if (!result.ok()) return reject(result.status());
  spdlog::info(
      "exec: caller={} argv={} exit_code={} signal={} timed_out={} duration_ms={} "
      "stdout_bytes={} stderr_bytes={}",
      caller, AuditArgv(request.argv), result->exit_code, result->signal, result->timed_out,
      result->duration.count(), result->stdout_data.size(), result->stderr_data.size());
  return result;
}

absl::StatusOr<CommandResult> CommandExecutor::Run(const CommandRequest& request,
                                                   const std::string& executable,
                                                   common::CancelToken* cancel) {
  // Later entries win, so an allowed PATH or LANG from the request replaces the default.
  std::map<std::string, std::string> env_map = {
      {"PATH", kDefaultPath},
      {"LANG", kDefaultLang},
  };
  for (const auto& [name, value] : request.env) env_map[name] = value;
  common::SpawnOptions options{
      .argv = request.argv,
      .executable = executable,
      .environment = {},
      .working_directory = request.working_directory.empty() ? "/" : request.working_directory,
  };
  for (const auto& [name, value] : env_map) {
    options.environment.push_back(fmt::format("{}={}", name, value));
  }

  const milliseconds timeout =
      request.timeout.count() == 0 ? policy_.default_timeout : request.timeout;
  const auto start = steady_clock::now();
  const auto deadline = start + timeout;

  absl::StatusOr<std::unique_ptr<ChildProcess>> spawned = ChildProcess::Spawn(options);
  if (!spawned.ok()) return spawned.status();
  ChildProcess& child = **spawned;
  std::optional<common::CancelToken::Registration> wake_on_cancel;
  if (cancel != nullptr) wake_on_cancel.emplace(cancel->OnCancel([&child] { child.Wake(); }));

  CommandResult result;
  std::string out_chunk;
  std::string err_chunk;
  auto keep = [&] {
    Keep(out_chunk, result.stdout_data, result.stdout_truncated, policy_.max_output_bytes);
    Keep(err_chunk, result.stderr_data, result.stderr_truncated, policy_.max_output_bytes);
  };

  bool exited = false;
  while (!exited && !result.timed_out) {
    absl::StatusOr<ChildProcess::Event> event = child.Read(deadline, &out_chunk, &err_chunk);
    if (!event.ok()) return event.status();
    if (cancel != nullptr && cancel->cancelled()) {
      child.KillGroup();
      child.Wait().IgnoreError();
      return absl::CancelledError(
          "the command was cancelled (the caller went away or pi-agent is stopping); its "
          "process group was killed");
    }
    keep();
    if (*event == ChildProcess::Event::kExited || child.LeaderExited()) {
      exited = true;
    } else if (steady_clock::now() >= deadline) {
      result.timed_out = true;
    }
  }
  for (int i = 0; exited && i < kMaxReadsAfterExit; ++i) {
    absl::StatusOr<ChildProcess::Event> event = child.Read(deadline, &out_chunk, &err_chunk);
    if (!event.ok()) return event.status();
    keep();
    if (*event != ChildProcess::Event::kOutput) break;
  }

  // Also on a normal exit: whatever the command left running in its group goes with it.
  child.KillGroup(result.timed_out ? policy_.kill_grace : milliseconds(0));
  absl::StatusOr<common::ExitStatus> status = child.Wait();
  if (!status.ok()) return status.status();
  result.duration = std::chrono::duration_cast<milliseconds>(steady_clock::now() - start);
  result.exit_code = status->exit_code.value_or(-1);
  result.signal = status->signal;
  return result;
}

}  // namespace pi::agent::exec
