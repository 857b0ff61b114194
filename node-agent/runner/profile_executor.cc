#include "node-agent/runner/profile_executor.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

#include "common/system/files.h"
#include "common/text/utf8.h"

namespace pi::agent::runner {
namespace {

namespace fs = std::filesystem;
namespace profile = common::provisioning;

constexpr size_t kMaxManagedFileBytes = 64 * 1024 * 1024;
constexpr mode_t kCreatedDirectoryMode = 0755;

// Path components after the root directory: "/etc//motd/" -> {"etc", "motd"}.
std::vector<std::string> Components(const fs::path& path) {
  std::vector<std::string> parts;
  for (const auto& part : path.lexically_normal()) {
    if (part.empty() || part == "/" || part == ".") continue;
    parts.push_back(part.string());
  }
  return parts;
}

// Component-wise, so /etc2 is not inside /etc.
bool IsWithin(const std::vector<std::string>& path, const std::vector<std::string>& base) {
  if (base.size() > path.size()) return false;
  for (size_t i = 0; i < base.size(); ++i) {
    if (path[i] != base[i]) return false;
  }
  return true;
}

std::string Join(const std::vector<std::string>& parts) {
  return parts.empty() ? "/" : fmt::format("/{}", fmt::join(parts, "/"));
}

std::string ErrnoText(int error) { return std::strerror(error); }

// Debian's absl::string_view is not std::string_view, which fmt formats.
std::string Message(const absl::Status& status) { return std::string(status.message()); }

// Shell-like display of a command, so arguments with spaces stay readable.
std::string DescribeArgv(const std::vector<std::string>& argv) {
  std::vector<std::string> shown;
  for (const std::string& arg : argv) {
    const bool plain = !arg.empty() && arg.find_first_of(" \t\n'\"\\$") == std::string::npos;
    shown.push_back(plain ? arg : fmt::format("{:?}", arg));
  }
  return common::ToValidUtf8(fmt::format("{}", fmt::join(shown, " ")));
}

std::string DescribeMode(int mode) { return fmt::format("{:04o}", mode); }

std::optional<struct stat> Lstat(const std::string& path, int* error) {
  struct stat info {};
  if (lstat(path.c_str(), &info) != 0) {
    *error = errno;
    return std::nullopt;
  }
  *error = 0;
  return info;
}

// Where a path named by a profile lives on this host, resolved under the filesystem root.
struct ResolvedTarget {
  std::vector<std::string> requested;       // as the profile names it, normalised
  std::string host_parent;                  // the parent directory on the host, symlinks resolved
  std::vector<std::string> visible_parent;  // host_parent as the profile sees it
  std::vector<std::string> missing_dirs;    // components below host_parent still to create
  std::string file_name;

  std::string HostPath() const {
    fs::path path = host_parent;
    for (const std::string& dir : missing_dirs) path /= dir;
    return (path / file_name).string();
  }
};

class Filesystem {
 public:
  explicit Filesystem(const ProvisionPolicy& policy) : policy_(policy) {}

  // Resolves `path` for writing: every existing directory on the way is resolved with its
  // symlinks and must stay inside the filesystem root, and both the requested path and the one
  // the symlinks lead to must fall inside an allowed write root.
  absl::StatusOr<ResolvedTarget> ResolveForWrite(const std::string& path) {
    absl::StatusOr<ResolvedTarget> target = ResolveInsideAllowedRoots(path);
    if (!target.ok()) return target.status();
    // Directories are only created inside an allowed root, never above one.
    if (!target->missing_dirs.empty()) {
      std::vector<std::string> first_missing = target->visible_parent;
      first_missing.push_back(target->missing_dirs.front());
      if (!InsideAllowedRoot(first_missing)) {
        return absl::FailedPreconditionError(
            fmt::format("directory {} does not exist and is outside runner.allowed_write_roots "
                        "({}), so it is not created",
                        Join(first_missing), AllowedRootsText()));
      }
    }
    return target;
  }

  // Resolves `path` for a check under the rules of a write, so a profile cannot probe files it
  // may not write (the agent's own key, say) byte by byte through `contains`; the file itself may
  // be a link that stays inside the allowed roots. NOT_FOUND when it does not exist.
  absl::StatusOr<std::string> ResolveForCheck(const std::string& path) {
    absl::StatusOr<ResolvedTarget> target = ResolveInsideAllowedRoots(path);
    if (!target.ok()) return target.status();
    const std::string shown = Join(target->requested);
    char resolved[PATH_MAX];
    if (!target->missing_dirs.empty() ||
        realpath(target->HostPath().c_str(), resolved) == nullptr) {
      const int error = target->missing_dirs.empty() ? errno : ENOENT;
      if (error == ENOENT || error == ENOTDIR) {
        return absl::NotFoundError(fmt::format("{} does not exist", shown));
      }
      return absl::FailedPreconditionError(
          fmt::format("cannot resolve {}: {}", shown, ErrnoText(error)));
    }
    const std::vector<std::string> root_parts = Components(*root_);
    const std::vector<std::string> host_parts = Components(resolved);
    if (!IsWithin(host_parts, root_parts)) {
      return absl::PermissionDeniedError(
          fmt::format("{} leads through a symbolic link outside the filesystem root {}", shown,
                      policy_.filesystem_root));
    }
    const std::vector<std::string> visible(host_parts.begin() + root_parts.size(),
                                           host_parts.end());
    if (!InsideAllowedRoot(visible)) {
      return absl::PermissionDeniedError(
          fmt::format("{} is a symbolic link to {}, which is outside runner.allowed_write_roots "
                      "({})",
                      shown, Join(visible), AllowedRootsText()));
    }
    return std::string(resolved);
  }

 private:
  absl::StatusOr<std::string> Root() {
    if (!root_) {
      char resolved[PATH_MAX];
      if (realpath(policy_.filesystem_root.c_str(), resolved) == nullptr) {
        return absl::FailedPreconditionError(
            fmt::format("runner.filesystem_root {} cannot be resolved: {}", policy_.filesystem_root,
                        ErrnoText(errno)));
      }
      root_ = resolved;
    }
    return *root_;
  }

  // The requested path and the one the symlinks of its directories lead to must both fall
  // inside an allowed write root.
  absl::StatusOr<ResolvedTarget> ResolveInsideAllowedRoots(const std::string& path) {
    absl::StatusOr<ResolvedTarget> target = ResolveParent(path);
    if (!target.ok()) return target.status();
    if (!InsideAllowedRoot(target->requested)) {
      return absl::PermissionDeniedError(
          fmt::format("{} is outside runner.allowed_write_roots ({})", Join(target->requested),
                      AllowedRootsText()));
    }
    std::vector<std::string> effective = target->visible_parent;
    effective.insert(effective.end(), target->missing_dirs.begin(), target->missing_dirs.end());
    effective.push_back(target->file_name);
    if (!InsideAllowedRoot(effective)) {
      return absl::PermissionDeniedError(
          fmt::format("{} leads through a symbolic link to {}, which is outside "
                      "runner.allowed_write_roots ({})",
                      Join(target->requested), Join(effective), AllowedRootsText()));
    }
    return target;
  }

  absl::StatusOr<ResolvedTarget> ResolveParent(const std::string& path) {
    absl::StatusOr<std::string> root = Root();
    if (!root.ok()) return root.status();
    ResolvedTarget target;
    target.requested = Components(path);
    if (target.requested.empty() || path.ends_with('/')) {
      return absl::InvalidArgumentError(fmt::format("{} names a directory, not a file", path));
    }
    const std::vector<std::string> root_parts = Components(*root);
    target.file_name = target.requested.back();
    target.host_parent = *root;
    for (size_t i = 0; i + 1 < target.requested.size(); ++i) {
      const std::string& part = target.requested[i];
      if (!target.missing_dirs.empty()) {
        target.missing_dirs.push_back(part);
        continue;
      }
      const std::string next = (fs::path(target.host_parent) / part).string();
      int error = 0;
      if (!Lstat(next, &error)) {
        if (error != ENOENT) {
          return absl::FailedPreconditionError(
              fmt::format("cannot inspect {}: {}", next, ErrnoText(error)));
        }
        target.missing_dirs.push_back(part);
        continue;
      }
      char resolved[PATH_MAX];
      if (realpath(next.c_str(), resolved) == nullptr) {
        return absl::FailedPreconditionError(fmt::format(
            "cannot resolve {} (a dangling symbolic link?): {}", next, ErrnoText(errno)));
      }
      if (!IsWithin(Components(resolved), root_parts)) {
        return absl::PermissionDeniedError(
            fmt::format("{} leads through a symbolic link outside the filesystem root {}",
                        Join(target.requested), policy_.filesystem_root));
      }
      struct stat info {};
      if (stat(resolved, &info) != 0 || !S_ISDIR(info.st_mode)) {
        return absl::FailedPreconditionError(
            fmt::format("{} is not a directory",
                        Join(std::vector<std::string>(target.requested.begin(),
                                                      target.requested.begin() + i + 1))));
      }
      target.host_parent = resolved;
    }
    const std::vector<std::string> parent_parts = Components(target.host_parent);
    target.visible_parent.assign(parent_parts.begin() + root_parts.size(), parent_parts.end());
    return target;
  }

  bool InsideAllowedRoot(const std::vector<std::string>& path) const {
    for (const std::string& root : policy_.allowed_write_roots) {
      if (IsWithin(path, Components(root))) return true;
    }
    return false;
  }

  std::string AllowedRootsText() const {
    return policy_.allowed_write_roots.empty()
               ? "none configured"
               : fmt::format("{}", fmt::join(policy_.allowed_write_roots, ", "));
  }

  const ProvisionPolicy& policy_;
  std::optional<std::string> root_;
};

// What one step did or would do.
struct StepOutcome {
  bool changed = false;
  std::string line;  // "+ write /etc/motd (new file)"
};

// One execution of a rendered profile.
class ProvisionRun {
 public:
  ProvisionRun(const ProvisionPolicy& policy, exec::CommandExecutor& commands,
               gpio::GpioController* gpio, bool plan, const ProvisionLog& log,
               common::CancelToken* cancel, std::string caller)
      : files_(policy),
        commands_(commands),
        gpio_(gpio),
        plan_(plan),
        log_(log),
        cancel_(cancel),
        caller_(std::move(caller)) {}

  ProvisionResult Execute(const profile::Profile& rendered) {
    ProvisionResult result;
    std::vector<std::string> lines;
    const size_t total = rendered.steps.size();
    for (size_t i = 0; i < total; ++i) {
      const profile::Step& step = rendered.steps[i];
      const std::string label = fmt::format("step {}/{} {}", i + 1, total, step.name);
      absl::StatusOr<StepOutcome> outcome = absl::CancelledError("the release was cancelled");
      if (cancel_ == nullptr || !cancel_->cancelled()) outcome = RunStep(step, result.changed);
      if (!outcome.ok()) {
        result.error_message = fmt::format("{}: {}", label, Message(outcome.status()));
        lines.push_back(fmt::format("! {} failed: {}", step.name, Message(outcome.status())));
        Log("stdout", fmt::format("{}: failed: {}", label, Message(outcome.status())));
        break;
      }
      (outcome->changed ? result.changed : result.unchanged)++;
      lines.push_back(outcome->line);
      Log("stdout", fmt::format("{}: {}", label, outcome->line));
    }
    result.success = result.error_message.empty();
    const std::string summary =
        plan_ ? fmt::format("Plan: {} to change, {} unchanged.", result.changed, result.unchanged)
              : fmt::format("Applied: {} changed, {} unchanged.", result.changed, result.unchanged);
    lines.push_back(summary);
    Log("stdout", summary);
    // Both end up in protobuf strings; paths and messages may carry bytes from the filesystem.
    result.plan_output = common::ToValidUtf8(fmt::format("{}", fmt::join(lines, "\n")));
    result.error_message = common::ToValidUtf8(result.error_message);
    return result;
  }

 private:
  void Log(std::string_view channel, std::string_view line) {
    if (log_) log_(channel, common::ToValidUtf8(line));
  }

  absl::StatusOr<StepOutcome> RunStep(const profile::Step& step, int changed_so_far) {
    if (const auto* write = std::get_if<profile::WriteFileStep>(&step.action)) {
      return WriteFile(*write);
    }
    if (const auto* run = std::get_if<profile::RunStep>(&step.action)) {
      return Run(*run, changed_so_far);
    }
    if (const auto* gpio = std::get_if<profile::GpioStep>(&step.action)) return Gpio(*gpio);
    return Check(std::get<profile::CheckStep>(step.action));
  }

  absl::StatusOr<StepOutcome> WriteFile(const profile::WriteFileStep& step) {
    absl::StatusOr<ResolvedTarget> target = files_.ResolveForWrite(step.path);
    if (!target.ok()) return target.status();
    const std::string shown = Join(target->requested);
    const std::string host_path = target->HostPath();

    std::optional<std::string> old_content;
    int old_mode = 0;
    if (target->missing_dirs.empty()) {
      int error = 0;
      if (const std::optional<struct stat> info = Lstat(host_path, &error)) {
        if (S_ISLNK(info->st_mode)) {
          return absl::PermissionDeniedError(fmt::format(
              "{} is a symbolic link; provisioning does not write through or replace links",
              shown));
        }
        if (!S_ISREG(info->st_mode)) {
          return absl::FailedPreconditionError(fmt::format("{} is not a regular file", shown));
        }
        absl::StatusOr<std::string> content =
            common::ReadFileToString(host_path, kMaxManagedFileBytes);
        if (!content.ok()) return content.status();
        old_content = *std::move(content);
        old_mode = static_cast<int>(info->st_mode & 07777);
      } else if (error != ENOENT) {
        return absl::FailedPreconditionError(
            fmt::format("cannot inspect {}: {}", shown, ErrnoText(error)));
      }
    }
    planned_contents_[shown] = step.content;

    const bool content_differs = !old_content || *old_content != step.content;
    const bool mode_differs = old_content && old_mode != step.mode;
    if (!content_differs && !mode_differs) {
      return StepOutcome{.changed = false, .line = fmt::format("= write {} (unchanged)", shown)};
    }
    std::string what;
    if (!old_content) {
      what =
          target->missing_dirs.empty()
              ? fmt::format("new file, mode {}", DescribeMode(step.mode))
              : fmt::format("new file, mode {}, creating its directories", DescribeMode(step.mode));
    } else if (content_differs && mode_differs) {
      what = fmt::format("content changed, mode {} -> {}", DescribeMode(old_mode),
                         DescribeMode(step.mode));
    } else if (content_differs) {
      what = "content changed";
    } else {
      what = fmt::format("mode {} -> {}", DescribeMode(old_mode), DescribeMode(step.mode));
    }
    const StepOutcome outcome{
        .changed = true,
        .line = fmt::format("{} write {} ({})", old_content ? "~" : "+", shown, what)};
    if (plan_) return outcome;

    fs::path dir = target->host_parent;
    for (const std::string& part : target->missing_dirs) {
      dir /= part;
      if (mkdir(dir.c_str(), kCreatedDirectoryMode) != 0) {
        if (errno == EEXIST) continue;
        return absl::FailedPreconditionError(
            fmt::format("cannot create directory {}: {}", dir.string(), ErrnoText(errno)));
      }
      // The agent's unit runs with UMask=0077, which would leave the directory 0700.
      if (chmod(dir.c_str(), kCreatedDirectoryMode) != 0) {
        return absl::FailedPreconditionError(fmt::format("cannot set mode 0755 on directory {}: {}",
                                                         dir.string(), ErrnoText(errno)));
      }
    }
    if (content_differs) {
      if (absl::Status written = common::WriteFileAtomically(host_path, step.content, step.mode);
          !written.ok()) {
        return written;
      }
    }
    // The umask may have narrowed the mode the file was created with.
    if (chmod(host_path.c_str(), static_cast<mode_t>(step.mode)) != 0) {
      return absl::FailedPreconditionError(fmt::format(
          "cannot set mode {} on {}: {}", DescribeMode(step.mode), shown, ErrnoText(errno)));
    }
    return outcome;
  }

  absl::StatusOr<StepOutcome> Run(const profile::RunStep& step, int changed_so_far) {
    const std::string shown = DescribeArgv(step.argv);
    if (step.only_if_changed && changed_so_far == 0) {
      return StepOutcome{
          .changed = false,
          .line = fmt::format("= run {} (skipped: no earlier step changed anything)", shown)};
    }
    if (!step.unless.empty()) {
      // `unless` is read-only by contract, so it runs in plan mode as well.
      absl::StatusOr<exec::CommandResult> unless = Command(step.unless, step.timeout);
      if (!unless.ok()) {
        return absl::Status(unless.status().code(),
                            fmt::format("unless command {}: {}", DescribeArgv(step.unless),
                                        Message(unless.status())));
      }
      if (unless->exit_code == 0) {
        return StepOutcome{.changed = false,
                           .line = fmt::format("= run {} (skipped: {} succeeded)", shown,
                                               DescribeArgv(step.unless))};
      }
    }
    if (plan_) return StepOutcome{.changed = true, .line = fmt::format("~ run {}", shown)};
    absl::StatusOr<exec::CommandResult> ran = Command(step.argv, step.timeout);
    if (!ran.ok()) return ran.status();
    if (absl::Status failed = Failure(*ran, shown); !failed.ok()) return failed;
    return StepOutcome{.changed = true, .line = fmt::format("~ run {} (exit 0)", shown)};
  }

  absl::StatusOr<StepOutcome> Check(const profile::CheckStep& step) {
    if (!step.argv.empty()) {
      const std::string shown = DescribeArgv(step.argv);
      absl::StatusOr<exec::CommandResult> ran = Command(step.argv, std::chrono::milliseconds(0));
      if (!ran.ok()) return ran.status();
      if (absl::Status failed = Failure(*ran, shown); !failed.ok()) {
        return absl::FailedPreconditionError(fmt::format("check failed: {}", Message(failed)));
      }
      return StepOutcome{.changed = false, .line = fmt::format("= check {} (passed)", shown)};
    }
    const std::string shown = Join(Components(step.path));
    std::optional<std::string> content;
    // A plan has not written what earlier steps would write: check against that instead.
    if (auto planned = planned_contents_.find(shown); plan_ && planned != planned_contents_.end()) {
      content = planned->second;
    } else {
      absl::StatusOr<std::string> host_path = files_.ResolveForCheck(step.path);
      if (absl::IsNotFound(host_path.status())) {
        return absl::FailedPreconditionError(
            fmt::format("check failed: {}", Message(host_path.status())));
      }
      if (absl::IsPermissionDenied(host_path.status())) {
        return absl::PermissionDeniedError(fmt::format(
            "{}; a profile checks only files it may write", Message(host_path.status())));
      }
      if (!host_path.ok()) return host_path.status();
      if (!step.contains.empty()) {
        absl::StatusOr<std::string> read =
            common::ReadFileToString(*host_path, kMaxManagedFileBytes);
        if (!read.ok()) return read.status();
        content = *std::move(read);
      }
    }
    if (!step.contains.empty()) {
      if (content->find(step.contains) == std::string::npos) {
        return absl::FailedPreconditionError(
            fmt::format("check failed: {} does not contain {:?}", shown, step.contains));
      }
      return StepOutcome{
          .changed = false,
          .line = fmt::format("= check {} contains {:?} (passed)", shown, step.contains)};
    }
    return StepOutcome{.changed = false, .line = fmt::format("= check {} exists (passed)", shown)};
  }

  absl::StatusOr<StepOutcome> Gpio(const profile::GpioStep& step) {
    if (gpio_ == nullptr) {
      return absl::FailedPreconditionError("GPIO is not available on this agent");
    }
    const std::string shown =
        step.chip.empty() ? fmt::format("line {} = {}", step.line, step.value)
                          : fmt::format("{} line {} = {}", step.chip, step.line, step.value);
    const std::vector<gpio::GpioResult> held_before = gpio_->HeldLines();
    if (plan_) {
      // Reading a line the agent does not hold would request it as an input and so change it:
      // a plan only looks at the lines the agent holds.
      std::optional<gpio::GpioResult> current;
      int matches = 0;
      for (const gpio::GpioResult& held : held_before) {
        const bool same_chip = step.chip.empty() || step.chip == held.chip_name ||
                               step.chip == held.chip_label ||
                               step.chip == fmt::format("/dev/{}", held.chip_name);
        if (same_chip && held.offset == static_cast<unsigned int>(step.line)) {
          current = held;
          ++matches;
        }
      }
      if (matches == 1 && current->direction == gpio::Direction::kOutput &&
          current->value == step.value) {
        return StepOutcome{.changed = false, .line = fmt::format("= gpio {} (unchanged)", shown)};
      }
      const std::string now = matches != 1     ? "not held by pi-agent"
                              : current->value ? fmt::format("now {}", *current->value)
                                               : "current value unknown";
      return StepOutcome{.changed = true, .line = fmt::format("~ gpio {} ({})", shown, now)};
    }
    // Hold zero: the agent keeps driving the level until RELEASE (or gpio.max_hold).
    absl::StatusOr<gpio::GpioResult> written =
        gpio_->Execute(gpio::GpioCommand{.chip = step.chip,
                                         .offset = step.line,
                                         .line_name = {},
                                         .action = gpio::GpioAction::kWrite,
                                         .value = step.value,
                                         .direction = gpio::Direction::kOutput,
                                         .active_low = std::nullopt,
                                         .bias = std::nullopt,
                                         .drive = std::nullopt,
                                         .hold = std::chrono::milliseconds(0)});
    if (!written.ok()) return written.status();
    for (const gpio::GpioResult& held : held_before) {
      if (held.chip_name == written->chip_name && held.offset == written->offset &&
          held.direction == gpio::Direction::kOutput && held.value == step.value) {
        return StepOutcome{.changed = false, .line = fmt::format("= gpio {} (unchanged)", shown)};
      }
    }
    return StepOutcome{.changed = true,
                       .line = fmt::format("~ gpio {} ({} line {} driven)", shown,
                                           written->chip_name, written->offset)};
  }

  absl::StatusOr<exec::CommandResult> Command(const std::vector<std::string>& argv,
                                              std::chrono::milliseconds timeout) {
    absl::StatusOr<exec::CommandResult> result = commands_.Execute(
        exec::CommandRequest{.argv = argv, .timeout = timeout, .working_directory = "/", .env = {}},
        caller_, cancel_);
    if (!result.ok()) return result.status();
    LogOutput("stdout", result->stdout_data, result->stdout_truncated);
    LogOutput("stderr", result->stderr_data, result->stderr_truncated);
    return result;
  }

  void LogOutput(std::string_view channel, std::string_view data, bool truncated) {
    size_t at = 0;
    while (at < data.size()) {
      const size_t end = data.find('\n', at);
      const size_t stop = end == std::string_view::npos ? data.size() : end;
      Log(channel, data.substr(at, stop - at));
      at = stop + 1;
    }
    if (truncated) Log(channel, "(output truncated by exec.max_output_bytes)");
  }

  static absl::Status Failure(const exec::CommandResult& result, const std::string& shown) {
    if (result.timed_out) {
      return absl::DeadlineExceededError(
          fmt::format("{} timed out after {}ms", shown, result.duration.count()));
    }
    if (result.signal != 0) {
      return absl::AbortedError(fmt::format("{} was killed by signal {} ({})", shown, result.signal,
                                            strsignal(result.signal)));
    }
    if (result.exit_code != 0) {
      return absl::AbortedError(fmt::format("{} exited with code {}", shown, result.exit_code));
    }
    return absl::OkStatus();
  }

  Filesystem files_;
  exec::CommandExecutor& commands_;
  gpio::GpioController* gpio_;
  const bool plan_;
  const ProvisionLog& log_;
  common::CancelToken* cancel_;
  const std::string caller_;
  // Plan mode: what earlier write steps would have written, by path.
  std::map<std::string, std::string> planned_contents_;
};

absl::StatusOr<std::string_view> FindFile(
    const std::vector<std::pair<std::string, std::string>>& files, std::string_view name,
    bool required) {
  const std::pair<std::string, std::string>* found = nullptr;
  for (const auto& file : files) {
    if (file.first != name) continue;
    if (found != nullptr) {
      return absl::InvalidArgumentError(fmt::format("the release has {} twice", name));
    }
    found = &file;
  }
  if (found == nullptr) {
    if (!required) return std::string_view("{}");
    std::vector<std::string> names;
    for (const auto& file : files) names.push_back(file.first);
    return absl::InvalidArgumentError(fmt::format(
        "the release has no {} (it has: {}); it is not a provisioning release", name,
        names.empty() ? std::string("no files") : fmt::format("{}", fmt::join(names, ", "))));
  }
  return std::string_view(found->second);
}

}  // namespace

ProfileExecutor::ProfileExecutor(ProvisionPolicy policy, exec::CommandExecutor& commands,
                                 gpio::GpioController* gpio)
    : policy_(std::move(policy)), commands_(commands), gpio_(gpio) {}

absl::StatusOr<ProvisionResult> ProfileExecutor::Run(
    const std::vector<std::pair<std::string, std::string>>& files, bool plan,
    const ProvisionLog& log, common::CancelToken* cancel) {
  absl::StatusOr<std::string_view> profile_text =
      FindFile(files, profile::kProfileFileName, /*required=*/true);
  if (!profile_text.ok()) return profile_text.status();
  // A release made by hand may leave parameters.json out: then every parameter has its default.
  absl::StatusOr<std::string_view> parameters_text =
      FindFile(files, profile::kParametersFileName, /*required=*/false);
  if (!parameters_text.ok()) return parameters_text.status();

  absl::StatusOr<profile::Profile> parsed =
      profile::ParseProfile(*profile_text, profile::kProfileFileName);
  if (!parsed.ok()) return parsed.status();
  absl::StatusOr<std::map<std::string, std::string>> given =
      profile::ParseParametersJson(*parameters_text);
  if (!given.ok()) return given.status();
  absl::StatusOr<std::map<std::string, std::string>> resolved =
      profile::ResolveParameters(*parsed, *given);
  if (!resolved.ok()) return resolved.status();
  absl::StatusOr<profile::Profile> rendered = profile::Render(*parsed, *resolved);
  if (!rendered.ok()) return rendered.status();

  if (log) {
    log("stdout",
        common::ToValidUtf8(fmt::format("profile {} ({} mode, {} steps)", rendered->name,
                                        plan ? "plan" : "apply", rendered->steps.size())));
  }
  ProvisionRun run(policy_, commands_, gpio_, plan, log, cancel,
                   fmt::format("provisioning:{}", rendered->name));
  return run.Execute(*rendered);
}

}  // namespace pi::agent::runner
