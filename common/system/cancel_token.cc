#include "common/system/cancel_token.h"

#include <utility>

namespace pi::common {

CancelToken::Registration::Registration(Registration&& other) noexcept
    : token_(std::exchange(other.token_, nullptr)), id_(other.id_) {}

CancelToken::Registration::~Registration() {
  if (token_ == nullptr) return;
  std::lock_guard lock(token_->mu_);
  token_->callbacks_.erase(id_);
}

void CancelToken::Cancel() {
  std::lock_guard lock(mu_);
  if (cancelled_) return;
  cancelled_ = true;
  for (auto& [id, callback] : callbacks_) callback();
  cv_.notify_all();
}

bool CancelToken::cancelled() const {
  std::lock_guard lock(mu_);
  return cancelled_;
}

bool CancelToken::WaitFor(std::chrono::nanoseconds timeout) const {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [this] { return cancelled_; });
}

CancelToken::Registration CancelToken::OnCancel(std::function<void()> callback) {
  std::lock_guard lock(mu_);
  if (cancelled_) {
    callback();
    return Registration(nullptr, 0);
  }
  uint64_t id = next_id_++;
  callbacks_.emplace(id, std::move(callback));
  return Registration(this, id);
}

}  // namespace pi::common
