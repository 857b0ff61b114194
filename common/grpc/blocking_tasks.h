#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>

#include "absl/status/status.h"

namespace pi::common {

// Runs slow work (a child process, a blocking read) on threads of its own so that gRPC's callback
// threads never block. Each task gets a thread; callers bound concurrency themselves. The
// destructor waits for every task to finish.
class BlockingTasks {
 public:
  BlockingTasks() = default;
  ~BlockingTasks();
  BlockingTasks(const BlockingTasks&) = delete;
  BlockingTasks& operator=(const BlockingTasks&) = delete;

  // RESOURCE_EXHAUSTED when no thread can be created (TasksMax, RLIMIT_NPROC); the task then
  // does not run.
  absl::Status Run(std::function<void()> task);
  void WaitIdle();

 private:
  void Done();

  std::mutex mu_;
  std::condition_variable idle_;
  int running_ = 0;
};

}  // namespace pi::common
