#pragma once

#include <span>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "control-plane/queue/queue_types.h"

namespace pi::controlplane::queue {

// A message's changed lease state; the payload, headers and trace never change after insert.
struct MessageStateChange {
  std::string id;
  ItemState state = ItemState::kQueued;
  int attempt = 0;
  WallTime next_run_at;
  std::string lease_id;
  std::string dead_reason;
  WallTime dead_at;
};

struct MessageDelete {
  std::string id;
};

// One change to the queues. The engine decides every change in memory; the store only makes a
// group of them durable.
using QueueMutation = std::variant<StoredMessage, MessageStateChange, MessageDelete>;

// Durable storage behind the queue engine. The engine keeps the live queues in memory and writes
// each group of changes with one Commit, so one fsync covers every request that arrived while the
// previous group was being written (group commit). A PostgreSQL implementation can follow behind
// the same interface.
class QueueStore {
 public:
  virtual ~QueueStore() = default;

  // Every stored message, in any order; called once at start.
  virtual absl::StatusOr<std::vector<StoredMessage>> LoadAll() = 0;
  // Applies the changes in order, in one transaction that is durable when this returns OK; on an
  // error nothing of it is applied.
  virtual absl::Status Commit(std::span<const QueueMutation> mutations) = 0;
};

}  // namespace pi::controlplane::queue
