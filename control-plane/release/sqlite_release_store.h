#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "control-plane/release/release_store.h"
#include "control-plane/store/sqlite_db.h"

namespace pi::controlplane::release {

// ReleaseStore on its own SQLite file (release.db in the state directory), apart from the cluster
// and queue databases so a chatty release's logs never wait for their write locks. WAL with
// synchronous=FULL: a write that returned OK survives kill -9 and power loss. Times are kept as
// integer nanoseconds since the Unix epoch, which is exact for system_clock on Linux.
//
// Thread-safe: one connection behind one mutex, so every read sees the last write.
class SqliteReleaseStore final : public ReleaseStore {
 public:
  // Opens (creating, mode 0600, if absent) the database at `path`, whose directory must exist,
  // and applies pending migrations.
  static absl::StatusOr<std::unique_ptr<SqliteReleaseStore>> Open(const std::string& path);
  ~SqliteReleaseStore() override;

  // The schema, in order; the last version is the one this binary writes.
  static std::span<const store::Migration> Migrations();

  absl::StatusOr<std::vector<Release>> LoadUnfinished() override;
  absl::Status Insert(std::span<const ReleaseWithFiles> releases,
                      const Provisioning* provisioning) override;
  absl::Status Update(const Release& release) override;
  absl::Status AppendLogs(std::span<const std::pair<std::string, LogLine>> lines) override;
  absl::StatusOr<Release> Get(const std::string& id) override;
  absl::StatusOr<std::vector<Release>> List(const ReleaseFilter& filter) override;
  absl::StatusOr<std::vector<ReleaseFile>> Files(const std::string& id, FileKind kind) override;
  absl::StatusOr<std::vector<LogLine>> Logs(const std::string& id, int64_t after_sequence,
                                            int limit) override;
  absl::StatusOr<Provisioning> GetProvisioning(const std::string& id) override;

 private:
  struct Statements;
  SqliteReleaseStore(std::unique_ptr<store::SqliteDb> db, std::unique_ptr<Statements> statements);

  // The helpers below run with mu_ held (and inside the caller's transaction when writing).
  absl::Status InsertRelease(const ReleaseWithFiles& release);
  absl::Status InsertProvisioning(const Provisioning& provisioning);
  absl::StatusOr<bool> ReleaseExists(const std::string& id);
  // The List statement for one shape of filter, prepared on first use.
  absl::StatusOr<store::Statement*> ListStatement(const std::string& sql);

  std::mutex mu_;
  std::unique_ptr<store::SqliteDb> db_;
  std::unique_ptr<Statements> statements_;
  // Keyed by SQL text; a handful of shapes (which filters are set, how many states).
  std::map<std::string, store::Statement> list_statements_;
};

}  // namespace pi::controlplane::release
