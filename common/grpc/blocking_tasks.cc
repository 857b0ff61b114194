#include "common/grpc/blocking_tasks.h"

#include <string>
#include <system_error>
#include <thread>

namespace pi::common {

BlockingTasks::~BlockingTasks() { WaitIdle(); }

absl::Status BlockingTasks::Run(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    ++running_;
  }
  try {
    std::thread([this, task = std::move(task)]() mutable {
      task();
      // Destroy what the task captured before the owner can observe "idle" and go away.
      task = nullptr;
      Done();
    }).detach();
  } catch (const std::system_error& error) {
    Done();
    return absl::ResourceExhaustedError(std::string("cannot start a worker thread: ") +
                                        error.what());
  }
  return absl::OkStatus();
}

void BlockingTasks::Done() {
  std::lock_guard lock(mu_);
  if (--running_ == 0) idle_.notify_all();
}

void BlockingTasks::WaitIdle() {
  std::unique_lock lock(mu_);
  idle_.wait(lock, [this] { return running_ == 0; });
}

}  // namespace pi::common
