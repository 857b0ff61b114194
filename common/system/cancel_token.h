#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>

namespace pi::common {

// Lets another thread end a blocking stream at once: Cancel() wakes every WaitFor() and runs the
// registered callbacks (which wake waits that are not on the condition variable, such as a poll()
// on a child's pipe).
class CancelToken {
 public:
  // Removes its callback when destroyed; after that the callback is neither running nor run.
  class Registration {
   public:
    Registration(Registration&& other) noexcept;
    Registration& operator=(Registration&&) = delete;
    Registration(const Registration&) = delete;
    ~Registration();

   private:
    friend class CancelToken;
    Registration(CancelToken* token, uint64_t id) : token_(token), id_(id) {}
    CancelToken* token_;
    uint64_t id_;
  };

  CancelToken() = default;
  CancelToken(const CancelToken&) = delete;
  CancelToken& operator=(const CancelToken&) = delete;

  void Cancel();
  bool cancelled() const;

  // Returns true as soon as the token is cancelled, false once `timeout` passes without that.
  bool WaitFor(std::chrono::nanoseconds timeout) const;

  // Runs `callback` when Cancel() is called, or right here if it already was. Callbacks run with
  // the token's lock held: they must be quick and must not call back into the token.
  [[nodiscard]] Registration OnCancel(std::function<void()> callback);

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool cancelled_ = false;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::function<void()>> callbacks_;
};

}  // namespace pi::common
