#include "control-plane/cluster/revision_feed.h"

namespace pi::controlplane::cluster {

void RevisionFeed::Publish(int64_t revision) {
  {
    std::lock_guard lock(mu_);
    if (revision <= revision_) return;
    revision_ = revision;
  }
  moved_.notify_all();
}

int64_t RevisionFeed::Current() const {
  std::lock_guard lock(mu_);
  return revision_;
}

int64_t RevisionFeed::WaitBeyond(int64_t seen, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  moved_.wait_for(lock, timeout, [&] { return revision_ > seen; });
  return revision_;
}

}  // namespace pi::controlplane::cluster
