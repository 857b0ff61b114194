#pragma once

#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "common/system/clock.h"
#include "control-plane/store/cluster_store.h"
#include "control-plane/store/sqlite_db.h"

namespace pi::controlplane::store {

// ClusterStore on one SQLite file. One connection, guarded by one mutex: SQLite serializes
// writers anyway, and a single connection keeps every read consistent with the last write. Other
// processes may open the same file; BEGIN IMMEDIATE and the busy timeout keep them correct.
class SqliteClusterStore : public ClusterStore {
 public:
  // Opens (creating if absent) the database at `path` and applies pending schema migrations.
  // `clock` stamps change records and migrations and must outlive the store.
  static absl::StatusOr<std::unique_ptr<SqliteClusterStore>> Open(
      const std::string& path, const pi::common::Clock& clock,
      const SqliteDb::Options& options = {});

  // The schema, in order; the last version is the one this binary writes.
  static std::span<const Migration> Migrations();

  absl::StatusOr<Node> CreateNode(const Node& node) override;
  absl::StatusOr<Node> UpdateNode(const Node& node) override;
  absl::StatusOr<Node> SetNodeState(const std::string& id, NodeState state) override;
  absl::Status RecordHeartbeat(const std::string& id, TimePoint at) override;
  absl::StatusOr<std::vector<std::string>> RecordHeartbeats(
      const std::vector<Heartbeat>& heartbeats) override;
  absl::Status DeleteNode(const std::string& id) override;
  absl::StatusOr<Node> GetNode(const std::string& id) override;
  absl::StatusOr<Node> FindNodeByHostname(const std::string& hostname) override;
  absl::StatusOr<std::vector<Node>> ListNodes() override;

  absl::StatusOr<JoinToken> CreateJoinToken(const JoinToken& token) override;
  absl::StatusOr<JoinToken> GetJoinToken(const std::string& id) override;
  absl::StatusOr<std::vector<JoinToken>> ListJoinTokens() override;
  absl::StatusOr<JoinToken> RevokeJoinToken(const std::string& id, TimePoint now) override;
  absl::Status DeleteJoinToken(const std::string& id) override;
  absl::StatusOr<JoinToken> ConsumeJoinToken(const std::string& id, const std::string& secret_hash,
                                             TimePoint now) override;

  absl::StatusOr<int64_t> CurrentRevision() override;
  absl::StatusOr<std::vector<Change>> ChangesSince(int64_t revision, int limit) override;
  absl::Status CompactChangesBefore(int64_t revision) override;
  absl::StatusOr<ClusterSnapshot> Snapshot() override;

 private:
  SqliteClusterStore(std::unique_ptr<SqliteDb> db, const pi::common::Clock& clock)
      : db_(std::move(db)), clock_(clock) {}

  // The helpers below run inside the caller's transaction and lock.
  // Bumps the cluster revision and returns the new one.
  absl::StatusOr<int64_t> BumpRevision();
  absl::Status AppendChange(int64_t revision, Change::Kind kind, const std::string& key,
                            Change::Op op, const std::string& record);
  // Bumps the revision, stamps it on the record, writes it and logs an upsert.
  absl::Status WriteNodeChange(Node& node, bool insert);
  absl::Status WriteJoinTokenChange(JoinToken& token, bool insert);
  // Bumps the revision, deletes the row and logs a delete carrying `record`.
  absl::Status DeleteRow(Change::Kind kind, const std::string& id, const std::string& record);
  absl::StatusOr<Node> PutNode(const Node& node, bool insert);
  absl::Status CheckHostnameFree(const std::string& hostname, const std::string& id);
  absl::Status WriteNode(const Node& node, bool insert);
  absl::Status WriteJoinToken(const JoinToken& token, bool insert);
  absl::StatusOr<Node> ReadNode(const std::string& id);
  absl::StatusOr<std::vector<Node>> ReadNodes();
  absl::StatusOr<JoinToken> ReadJoinToken(const std::string& id);
  absl::StatusOr<std::vector<JoinToken>> ReadJoinTokens();
  absl::StatusOr<int64_t> ReadRevision();

  std::mutex mu_;
  std::unique_ptr<SqliteDb> db_;
  const pi::common::Clock& clock_;
};

}  // namespace pi::controlplane::store
