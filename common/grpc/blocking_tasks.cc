#include "common/grpc/blocking_tasks.h"

#include <thread>

namespace pi::common {

BlockingTasks::~BlockingTasks() { WaitIdle(); }

void BlockingTasks::Run(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    ++running_;
  }
  std::thread([this, task = std::move(task)]() mutable {
    task();
    // Destroy what the task captured before the owner can observe "idle" and go away.
    task = nullptr;
    std::lock_guard lock(mu_);
    if (--running_ == 0) idle_.notify_all();
  }).detach();
}

void BlockingTasks::WaitIdle() {
  std::unique_lock lock(mu_);
  idle_.wait(lock, [this] { return running_ == 0; });
}

}  // namespace pi::common
