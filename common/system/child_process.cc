#include "common/system/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace pi::common {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr size_t kReadChunk = 64 * 1024;
// Without a pidfd the leader's exit can only be noticed by asking, so waits are sliced.
constexpr milliseconds kExitPollTick(10);

std::string ErrnoText(int error) { return std::strerror(error); }

void CloseFd(int& fd) {
  if (fd >= 0) {
    close(fd);
    fd = -1;
  }
}

// Milliseconds for poll(): rounded up so a wait never ends just before the deadline.
int PollTimeout(ChildProcess::Deadline deadline, std::optional<milliseconds> cap) {
  auto left = deadline - steady_clock::now();
  if (left <= steady_clock::duration::zero()) return 0;
  auto ms = std::chrono::ceil<milliseconds>(left);
  if (cap && ms > *cap) ms = *cap;
  return static_cast<int>(std::min<milliseconds::rep>(ms.count(), 1 << 30));
}

bool ZombieOrGone(pid_t pid) {
  siginfo_t info{};
  int rc;
  do {
    rc = waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
  } while (rc < 0 && errno == EINTR);
  // ECHILD means someone else reaped it: treat it as gone rather than wait forever.
  return rc < 0 || info.si_pid == pid;
}

// Waits for the leader to exit without reaping it. Safe to call from any thread.
bool WaitLeaderExit(pid_t pid, int pidfd, ChildProcess::Deadline deadline) {
  while (true) {
    if (ZombieOrGone(pid)) return true;
    if (steady_clock::now() >= deadline) return false;
    if (pidfd >= 0) {
      pollfd pfd{.fd = pidfd, .events = POLLIN, .revents = 0};
      poll(&pfd, 1, PollTimeout(deadline, std::nullopt));
    } else {
      poll(nullptr, 0, PollTimeout(deadline, kExitPollTick));
    }
  }
}

absl::Status SpawnError(int error, const SpawnOptions& options, const std::string& executable) {
  switch (error) {
    case ENOENT:
    case ENOTDIR:
      if (!options.working_directory.empty()) {
        return absl::NotFoundError(absl::StrCat(executable, " or working directory ",
                                                options.working_directory, " does not exist"));
      }
      return absl::NotFoundError(absl::StrCat(executable, " does not exist"));
    case EACCES:
    case EPERM:
    case ENOEXEC:
    case EISDIR:
      return absl::FailedPreconditionError(
          absl::StrCat("cannot execute ", executable, ": ", ErrnoText(error)));
    case EAGAIN:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot start ", executable, ": ", ErrnoText(error)));
    default:
      return absl::InternalError(absl::StrCat("cannot start ", executable, ": ", ErrnoText(error)));
  }
}

// Owns the descriptors and spawn attributes while Spawn() runs, so every error path cleans up.
struct SpawnScratch {
  int out[2] = {-1, -1};
  int err[2] = {-1, -1};
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  bool actions_ready = false;
  bool attr_ready = false;

  ~SpawnScratch() {
    for (int* fd : {&out[0], &out[1], &err[0], &err[1]}) CloseFd(*fd);
    if (actions_ready) posix_spawn_file_actions_destroy(&actions);
    if (attr_ready) posix_spawnattr_destroy(&attr);
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Spawn(const SpawnOptions& options) {
  if (options.argv.empty()) return absl::InvalidArgumentError("argv must not be empty");
  const std::string& executable =
      options.executable.empty() ? options.argv.front() : options.executable;
  if (executable.empty() || executable.front() != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("executable must be an absolute path, got \"", executable, "\""));
  }

  SpawnScratch s;
  // The read ends must not block the parent; the write ends stay blocking for the child.
  if (pipe2(s.out, O_CLOEXEC) != 0 || pipe2(s.err, O_CLOEXEC) != 0 ||
      fcntl(s.out[0], F_SETFL, O_NONBLOCK) != 0 || fcntl(s.err[0], F_SETFL, O_NONBLOCK) != 0) {
    return SpawnError(errno, options, executable);
  }

  // posix_spawn (vfork-style in glibc) runs no allocator or lock between fork and exec, which is
  // what makes spawning safe from many threads at once.
  if (int rc = posix_spawn_file_actions_init(&s.actions); rc != 0) {
    return SpawnError(rc, options, executable);
  }
  s.actions_ready = true;
  if (int rc = posix_spawnattr_init(&s.attr); rc != 0) return SpawnError(rc, options, executable);
  s.attr_ready = true;

  int rc = posix_spawn_file_actions_addopen(&s.actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  if (rc == 0) rc = posix_spawn_file_actions_adddup2(&s.actions, s.out[1], STDOUT_FILENO);
  if (rc == 0) rc = posix_spawn_file_actions_adddup2(&s.actions, s.err[1], STDERR_FILENO);
  if (rc == 0 && !options.working_directory.empty()) {
    rc = posix_spawn_file_actions_addchdir_np(&s.actions, options.working_directory.c_str());
  }
  // Belt and braces next to O_CLOEXEC: descriptors opened elsewhere without it never leak.
  if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&s.actions, STDERR_FILENO + 1);

  // The agent may block or ignore signals for its own handling; the child starts clean.
  sigset_t all_signals;
  sigset_t no_signals;
  sigfillset(&all_signals);
  sigemptyset(&no_signals);
  if (rc == 0) {
    rc = posix_spawnattr_setflags(
        &s.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  }
  if (rc == 0) rc = posix_spawnattr_setpgroup(&s.attr, 0);
  if (rc == 0) rc = posix_spawnattr_setsigmask(&s.attr, &no_signals);
  if (rc == 0) rc = posix_spawnattr_setsigdefault(&s.attr, &all_signals);
  if (rc != 0) return SpawnError(rc, options, executable);

  std::vector<char*> argv;
  argv.reserve(options.argv.size() + 1);
  for (const std::string& arg : options.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  envp.reserve(options.environment.size() + 1);
  for (const std::string& var : options.environment) {
    envp.push_back(const_cast<char*>(var.c_str()));
  }
  envp.push_back(nullptr);

  pid_t pid = -1;
  rc = posix_spawn(&pid, executable.c_str(), &s.actions, &s.attr, argv.data(), envp.data());
  if (rc != 0) return SpawnError(rc, options, executable);

  std::unique_ptr<ChildProcess> child(new ChildProcess());
  child->pid_ = pid;
  child->stdout_fd_ = std::exchange(s.out[0], -1);
  child->stderr_fd_ = std::exchange(s.err[0], -1);
  // Through syscall(): glibc 2.36's <sys/pidfd.h> lacks extern "C". Before Linux 5.3 this is -1
  // and the exit is polled instead.
  child->pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  child->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (child->wake_fd_ < 0) {
    return absl::ResourceExhaustedError(absl::StrCat("eventfd: ", ErrnoText(errno)));
  }
  return child;
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) {
    KillGroup();
    Wait().IgnoreError();
  }
  CloseFd(stdout_fd_);
  CloseFd(stderr_fd_);
  CloseFd(pidfd_);
  CloseFd(wake_fd_);
}

bool ChildProcess::LeaderExited() {
  if (!exited_) exited_ = ZombieOrGone(pid_);
  return exited_;
}

absl::StatusOr<ChildProcess::Event> ChildProcess::Read(Deadline deadline, std::string* out,
                                                       std::string* err) {
  char buffer[kReadChunk];
  while (true) {
    pollfd fds[4];
    int count = 0;
    int out_index = -1;
    int err_index = -1;
    int exit_index = -1;
    fds[count] = {.fd = wake_fd_, .events = POLLIN, .revents = 0};
    const int wake_index = count++;
    if (stdout_fd_ >= 0) {
      out_index = count;
      fds[count++] = {.fd = stdout_fd_, .events = POLLIN, .revents = 0};
    }
    if (stderr_fd_ >= 0) {
      err_index = count;
      fds[count++] = {.fd = stderr_fd_, .events = POLLIN, .revents = 0};
    }
    if (!exited_ && pidfd_ >= 0) {
      exit_index = count;
      fds[count++] = {.fd = pidfd_, .events = POLLIN, .revents = 0};
    }
    // Once the leader is gone only data that is already queued is worth waiting for.
    int timeout =
        exited_ ? 0
                : PollTimeout(deadline, pidfd_ >= 0 ? std::nullopt : std::optional(kExitPollTick));
    int ready = poll(fds, count, timeout);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("poll: ", ErrnoText(errno)));
    }

    if (fds[wake_index].revents & POLLIN) {
      uint64_t ignored;
      [[maybe_unused]] ssize_t n = read(wake_fd_, &ignored, sizeof(ignored));
      return Event::kWoken;
    }

    bool got_output = false;
    auto drain_once = [&](int index, int& fd, std::string* sink) {
      if (index < 0 || fds[index].revents == 0) return;
      ssize_t n = read(fd, buffer, sizeof(buffer));
      if (n > 0) {
        sink->append(buffer, static_cast<size_t>(n));
        got_output = true;
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        CloseFd(fd);
      }
    };
    drain_once(out_index, stdout_fd_, out);
    drain_once(err_index, stderr_fd_, err);
    if (got_output) return Event::kOutput;

    if (exited_ || (exit_index >= 0 && fds[exit_index].revents != 0) ||
        (pidfd_ < 0 && ready == 0) || (stdout_fd_ < 0 && stderr_fd_ < 0)) {
      if (LeaderExited()) return Event::kExited;
    }
    if (steady_clock::now() >= deadline) return Event::kDeadline;
  }
}

void ChildProcess::Wake() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
}

void ChildProcess::KillGroup(milliseconds grace) {
  {
    std::lock_guard lock(reap_mu_);
    if (reaped_) return;
    if (grace.count() <= 0) {
      kill(-pid_, SIGKILL);
      return;
    }
    kill(-pid_, SIGTERM);
  }
  WaitLeaderExit(pid_, pidfd_, steady_clock::now() + grace);
  std::lock_guard lock(reap_mu_);
  if (!reaped_) kill(-pid_, SIGKILL);
}

absl::StatusOr<ExitStatus> ChildProcess::Wait() {
  WaitLeaderExit(pid_, pidfd_, steady_clock::time_point::max());
  std::lock_guard lock(reap_mu_);
  if (reaped_) return exit_status_;
  int status = 0;
  pid_t rc;
  do {
    rc = waitpid(pid_, &status, 0);
  } while (rc < 0 && errno == EINTR);
  reaped_ = true;
  exited_ = true;
  if (rc < 0) {
    return absl::InternalError(
        absl::StrCat("waitpid(", pid_, "): ", ErrnoText(errno),
                     " (something else reaped the child; is SIGCHLD ignored?)"));
  }
  if (WIFEXITED(status)) {
    exit_status_.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    exit_status_.signal = WTERMSIG(status);
  }
  return exit_status_;
}

}  // namespace pi::common
