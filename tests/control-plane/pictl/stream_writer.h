#pragma once

#include <grpcpp/grpcpp.h>

#include <mutex>
#include <vector>

namespace pi::controlplane::pictl {

// A fake server stream for the pictl tests: writes the messages, then either finishes OK or
// (follow) waits for the client to cancel, as a followed log or release does.
template <typename Message>
class StreamWriter : public grpc::ServerWriteReactor<Message> {
 public:
  StreamWriter(std::vector<Message> entries, bool follow)
      : entries_(std::move(entries)), follow_(follow) {
    std::lock_guard lock(mu_);
    NextLocked();
  }
  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    if (!ok) {
      FinishLocked(grpc::Status::CANCELLED);
      return;
    }
    NextLocked();
  }
  void OnCancel() override {
    std::lock_guard lock(mu_);
    FinishLocked(grpc::Status::CANCELLED);
  }
  void OnDone() override { delete this; }

 private:
  void NextLocked() {
    if (next_ < entries_.size()) {
      this->StartWrite(&entries_[next_++]);
    } else if (!follow_) {
      FinishLocked(grpc::Status::OK);
    }
  }
  void FinishLocked(const grpc::Status& status) {
    if (finished_) return;
    finished_ = true;
    this->Finish(status);
  }

  std::mutex mu_;
  std::vector<Message> entries_;
  size_t next_ = 0;
  bool follow_;
  bool finished_ = false;
};

}  // namespace pi::controlplane::pictl
