#pragma once

#include <memory>
#include <span>
#include <string>

#include "common/system/clock.h"
#include "control-plane/queue/queue_store.h"
#include "control-plane/store/sqlite_db.h"

namespace pi::controlplane::queue {

// QueueStore on its own SQLite file (queue.db in the state directory), apart from the cluster
// database so queue traffic never waits for the cluster's write lock. WAL with synchronous=FULL:
// a Commit that returned OK survives kill -9 and power loss. Statements are prepared once.
//
// Not thread-safe: the queue engine commits from one thread.
class SqliteQueueStore : public QueueStore {
 public:
  // Opens (creating, mode 0600, if absent) the database at `path` and applies pending
  // migrations; `clock` stamps them.
  static absl::StatusOr<std::unique_ptr<SqliteQueueStore>> Open(
      const std::string& path, const pi::common::Clock& clock,
      const store::SqliteDb::Options& options = {});
  ~SqliteQueueStore() override;

  // The schema, in order; the last version is the one this binary writes.
  static std::span<const store::Migration> Migrations();

  absl::StatusOr<std::vector<StoredMessage>> LoadAll() override;
  absl::Status Commit(std::span<const QueueMutation> mutations) override;

 private:
  struct Statements;
  SqliteQueueStore(std::unique_ptr<store::SqliteDb> db, std::unique_ptr<Statements> statements);

  absl::Status Apply(const QueueMutation& mutation);

  std::unique_ptr<store::SqliteDb> db_;
  std::unique_ptr<Statements> statements_;
};

}  // namespace pi::controlplane::queue
