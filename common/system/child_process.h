#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pi::common {

struct SpawnOptions {
  // argv[0] is the name the program sees (multi-call binaries dispatch on it).
  std::vector<std::string> argv;
  // Absolute path that is executed; empty means argv[0]. There is never a PATH search.
  std::string executable;
  // The child's whole environment as NAME=value: nothing is inherited from this process.
  std::vector<std::string> environment;
  // Empty keeps this process's working directory.
  std::string working_directory;
};

struct ExitStatus {
  // Set when the process called exit().
  std::optional<int> exit_code;
  // Non-zero when a signal ended the process.
  int signal = 0;
};

// A child started in its own process group with stdin from /dev/null and stdout/stderr on pipes.
// Every other descriptor is closed in the child, so concurrent spawns from many threads never
// leak pipes into each other's children. The owner calls Read()/KillGroup()/Wait() from one
// thread; Wake() and KillGroup() may be called from any thread.
//
// Nothing else in the process may reap children with waitpid(-1) or set SIGCHLD to SIG_IGN:
// the group is signalled only while its leader is known to be unreaped, which is what keeps
// kill(-pgid) from ever hitting a recycled process group id.
class ChildProcess {
 public:
  using Deadline = std::chrono::steady_clock::time_point;

  enum class Event {
    kOutput,    // bytes were appended to at least one of the sinks
    kExited,    // the leader has exited and no output was pending
    kWoken,     // Wake() was called
    kDeadline,  // nothing happened before the deadline
  };

  // Fails with INVALID_ARGUMENT for an empty argv or a relative executable, NOT_FOUND when the
  // executable or working directory is missing, FAILED_PRECONDITION when it cannot be executed.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Spawn(const SpawnOptions& options);

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  // Kills the group and reaps the leader unless Wait() already did.
  ~ChildProcess();

  pid_t pid() const { return pid_; }

  // Waits until output arrives, the leader exits, Wake() is called or `deadline` passes.
  // Appends at most one buffer (64 KiB) per stream per call, so callers can cap what they keep.
  // Pending output is always returned before kExited. After the leader exits, a grandchild may
  // still hold the pipes open: kExited is returned anyway, so that never blocks the caller.
  absl::StatusOr<Event> Read(Deadline deadline, std::string* out, std::string* err);

  // True once the leader has exited (it stays unreaped until Wait()). After that, Read() no
  // longer blocks: it returns queued output or kExited.
  bool LeaderExited();

  // Makes the current or next Read() return kWoken.
  void Wake();

  // Sends SIGTERM to the whole group and gives the leader `grace` to exit, then SIGKILLs the
  // group, so descendants that ignored SIGTERM or outlived the leader go too. With a zero grace
  // the group gets SIGKILL at once. Does nothing once the leader has been reaped.
  void KillGroup(std::chrono::milliseconds grace = std::chrono::milliseconds(0));

  // Blocks until the leader exits and reaps it; later calls return the same status.
  absl::StatusOr<ExitStatus> Wait();

 private:
  ChildProcess() = default;

  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  int stderr_fd_ = -1;
  int pidfd_ = -1;  // -1 on kernels without pidfd_open: then exit is noticed by polling
  int wake_fd_ = -1;
  bool exited_ = false;

  std::mutex reap_mu_;  // orders kill(-pgid) against reaping
  bool reaped_ = false;
  ExitStatus exit_status_;
};

}  // namespace pi::common
