#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// The control plane's durable cluster state, behind an interface that names no database, so a
// PostgreSQL implementation can replace the SQLite one without touching callers.
namespace pi::controlplane::store {

using TimePoint = std::chrono::system_clock::time_point;

enum class NodeState { kRegistered, kReady, kDown, kDraining, kCordoned, kRemoved };

// "REGISTERED", "READY", ...; "UNKNOWN" for a value outside the enum.
std::string NodeStateName(NodeState state);
// The inverse of NodeStateName; INVALID_ARGUMENT for any other text.
absl::StatusOr<NodeState> ParseNodeState(const std::string& name);

// What an admin asked of a node's scheduling. Kept apart from `state` so that it outlives a DOWN
// spell: a cordoned node that goes down and comes back is cordoned again.
enum class AdminState { kNone, kCordoned, kDraining };

// "" for kNone, "CORDONED", "DRAINING"; "UNKNOWN" for a value outside the enum.
std::string AdminStateName(AdminState state);
// The inverse of AdminStateName; INVALID_ARGUMENT for any other text.
absl::StatusOr<AdminState> ParseAdminState(const std::string& name);

struct Node {
  std::string id;
  std::string hostname;  // Unique among nodes that are not REMOVED.
  std::string agent_address;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> facts;  // os, kernel, model, arch...
  NodeState state = NodeState::kRegistered;
  AdminState admin_state = AdminState::kNone;
  TimePoint registered_at;
  std::optional<TimePoint> last_heartbeat;
  std::string cert_serial;
  std::string cert_sha256;  // Hex SHA-256 fingerprint of the node certificate.
  // The cluster revision of the node's last change; set by the store, ignored on input.
  int64_t revision = 0;

  bool operator==(const Node&) const = default;
};

struct JoinToken {
  std::string id;           // Public part of the token.
  std::string secret_hash;  // Hex SHA-256 of the secret; the secret itself is never stored.
  std::string description;
  std::string created_by;
  TimePoint created_at;
  TimePoint expires_at;
  std::optional<TimePoint> revoked_at;
  int64_t use_count = 0;
  std::optional<int64_t> max_uses;  // Unlimited when absent.
  int64_t revision = 0;             // As for Node.

  bool operator==(const JoinToken&) const = default;
};

// One entry of the change log. `record` is the JSON of the Node or JoinToken after the change
// (NodeToJson / JoinTokenToJson); for a delete it is the record as it was before.
struct Change {
  enum class Kind { kNode, kJoinToken };
  enum class Op { kUpsert, kDelete };
  int64_t revision = 0;
  Kind kind = Kind::kNode;
  std::string key;  // The node or token id.
  Op op = Op::kUpsert;
  std::string record;
  TimePoint at;

  bool operator==(const Change&) const = default;
};

std::string ChangeKindName(Change::Kind kind);  // "node", "join_token"
std::string ChangeOpName(Change::Op op);        // "upsert", "delete"

// Everything, as of `revision`, read in one transaction. Heartbeat times may be newer than
// `revision`: heartbeats do not bump it (see ClusterStore::RecordHeartbeat).
struct Heartbeat {
  std::string node_id;
  TimePoint at;
};

struct ClusterSnapshot {
  int64_t revision = 0;
  std::vector<Node> nodes;
  std::vector<JoinToken> join_tokens;
};

// Times are stored and exchanged as integer nanoseconds since the Unix epoch.
int64_t UnixNanos(TimePoint t);
TimePoint FromUnixNanos(int64_t nanos);

// JSON forms used in change records.
std::string NodeToJson(const Node& node);
absl::StatusOr<Node> NodeFromJson(const std::string& json);
std::string JoinTokenToJson(const JoinToken& token);
absl::StatusOr<JoinToken> JoinTokenFromJson(const std::string& json);

// Every mutation below (except RecordHeartbeat) bumps the one cluster revision and appends a Change
// in the same transaction, and returns only after that transaction is durably committed. The
// store does not judge state transitions; it stores what it is told. Implementations are
// thread-safe.
class ClusterStore {
 public:
  virtual ~ClusterStore() = default;

  // ALREADY_EXISTS when the id exists or the hostname belongs to a node that is not REMOVED.
  virtual absl::StatusOr<Node> CreateNode(const Node& node) = 0;
  // Replaces every field of the node with that id, except that a last_heartbeat older than the
  // stored one keeps the stored one. NOT_FOUND, or ALREADY_EXISTS for a hostname taken by another
  // live node.
  virtual absl::StatusOr<Node> UpdateNode(const Node& node) = 0;
  // Sets the state; setting the state a node already has changes nothing and bumps nothing.
  virtual absl::StatusOr<Node> SetNodeState(const std::string& id, NodeState state) = 0;
  // Records a heartbeat time WITHOUT bumping the cluster revision or logging a change: 1,000 agents
  // heartbeating every few seconds would otherwise flood the change log and every peer's sync
  // with entries that carry no state. A heartbeat that changes the state goes through
  // SetNodeState as well.
  virtual absl::Status RecordHeartbeat(const std::string& id, TimePoint at) = 0;
  // Records many heartbeats in one transaction (one disk sync for all of them) and returns the
  // ids of the nodes that do not exist, which are skipped: one node deleted meanwhile must not
  // fail the heartbeats of the others.
  virtual absl::StatusOr<std::vector<std::string>> RecordHeartbeats(
      const std::vector<Heartbeat>& heartbeats) = 0;
  // Deletes the node's row (a REMOVED node stays listed until deleted).
  virtual absl::Status DeleteNode(const std::string& id) = 0;
  virtual absl::StatusOr<Node> GetNode(const std::string& id) = 0;
  // The node with this hostname that is not REMOVED; NOT_FOUND when there is none.
  virtual absl::StatusOr<Node> FindNodeByHostname(const std::string& hostname) = 0;
  virtual absl::StatusOr<std::vector<Node>> ListNodes() = 0;

  // ALREADY_EXISTS for a duplicate id.
  virtual absl::StatusOr<JoinToken> CreateJoinToken(const JoinToken& token) = 0;
  virtual absl::StatusOr<JoinToken> GetJoinToken(const std::string& id) = 0;
  virtual absl::StatusOr<std::vector<JoinToken>> ListJoinTokens() = 0;
  // Revoking a revoked token keeps the first revocation time and bumps nothing.
  virtual absl::StatusOr<JoinToken> RevokeJoinToken(const std::string& id, TimePoint now) = 0;
  virtual absl::Status DeleteJoinToken(const std::string& id) = 0;
  // Checks, in one transaction, that the token exists, that `secret_hash` matches (compared in
  // constant time), and that it is not revoked, not expired at `now` and has uses left; then
  // counts one use. An unknown id and a wrong secret give the same UNAUTHENTICATED message, so
  // a caller cannot probe which ids exist; once the secret matched, the message says whether the
  // token was revoked, expired or used up (also UNAUTHENTICATED).
  virtual absl::StatusOr<JoinToken> ConsumeJoinToken(const std::string& id,
                                                     const std::string& secret_hash,
                                                     TimePoint now) = 0;

  virtual absl::StatusOr<int64_t> CurrentRevision() = 0;
  // Up to `limit` changes with revision > `revision`, oldest first. OUT_OF_RANGE when some of the
  // changes after `revision` were compacted away, or `revision` is ahead of the store: the
  // caller then takes a Snapshot().
  virtual absl::StatusOr<std::vector<Change>> ChangesSince(int64_t revision, int limit) = 0;
  // Drops changes with revision < `revision` (clamped to the current revision + 1).
  virtual absl::Status CompactChangesBefore(int64_t revision) = 0;
  virtual absl::StatusOr<ClusterSnapshot> Snapshot() = 0;
};

}  // namespace pi::controlplane::store
