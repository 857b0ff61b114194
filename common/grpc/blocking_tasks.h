#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>

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

  void Run(std::function<void()> task);
  void WaitIdle();

 private:
  std::mutex mu_;
  std::condition_variable idle_;
  int running_ = 0;
};

}  // namespace pi::common
