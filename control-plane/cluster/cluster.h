#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/system/clock.h"
#include "common/tls/identity.h"
#include "control-plane/cluster/certificate_authority.h"
#include "control-plane/cluster/revision_feed.h"
#include "control-plane/store/cluster_store.h"

// The cluster core (DESIGN 4.3, 5.2, 5.4): nodes join with a token and a CSR, heartbeat, go DOWN
// when they fall silent and READY when they return; admins label, cordon, drain and remove them
// and manage join tokens; peers read the change log. Durable state lives in the ClusterStore;
// liveness (last sign of life, last health summary, last poll) is kept in memory, with heartbeat
// times written to the store in batches by Tick().
namespace pi::controlplane::cluster {

using TimePoint = std::chrono::system_clock::time_point;

struct ClusterOptions {
  // What RegisterNode tells agents; a node is DOWN after heartbeat_ttl + down_grace of silence.
  std::chrono::seconds heartbeat_interval{5};
  std::chrono::seconds heartbeat_ttl{15};
  std::chrono::seconds down_grace{5};
  std::chrono::seconds node_cert_validity{std::chrono::hours(24 * 365)};
  std::chrono::seconds default_token_ttl{std::chrono::hours(24)};
  std::chrono::seconds max_token_ttl{std::chrono::hours(24 * 30)};
  // SyncClusterState answers at most this many changes at once.
  int max_changes_per_sync = 1000;
  // Changes older than this many revisions are compacted; a peer further behind gets a snapshot.
  int64_t retained_changes = 10000;
};

// Who is calling, as the transport verified it. `identity` is empty for a caller without a
// verified certificate (a joining agent).
struct Caller {
  std::optional<common::Identity> identity;
  // Lowercase hex SHA-256 of the presented certificate's DER.
  std::string cert_sha256;
};

struct Registration {
  std::string join_token;
  std::string hostname;
  std::string agent_address;
  // The address the request came from; replaces an empty or unspecified host in agent_address.
  std::string peer_host;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> facts;
  std::string csr_pem;
};

struct RegistrationResult {
  std::string node_id;
  // Where the controller will reach the node's agent (unspecified host filled in).
  std::string agent_address;
  // Empty on re-registration: the node keeps the certificate it joined with.
  std::string certificate_pem;
  std::string ca_pem;
  std::chrono::seconds heartbeat_interval{0};
};

// A node with what the controller knows of it in memory.
struct NodeView {
  store::Node node;
  // The last heartbeat's health summary as the transport serialized it; opaque to the core.
  std::string health_summary;
  std::optional<TimePoint> last_health_check;
  std::string health_check_error;
};

struct CreatedJoinToken {
  std::string text;  // shown once
  store::JoinToken token;
};

struct ClusterDelta {
  int64_t revision = 0;
  bool full_snapshot = false;
  bool more = false;
  std::vector<store::Change> changes;
  store::ClusterSnapshot snapshot;  // only when full_snapshot
};

class Cluster {
 public:
  // Loads every node from the store; each gets a fresh heartbeat TTL from now, so a controller
  // restart does not mark the whole fleet DOWN. `store`, `ca` and `clock` must outlive it.
  static absl::StatusOr<std::unique_ptr<Cluster>> Create(store::ClusterStore& store,
                                                         const CertificateAuthority& ca,
                                                         const common::Clock& clock,
                                                         ClusterOptions options);

  // A join (join_token set) or a re-registration by a node presenting its certificate (token
  // empty). Refusals an agent can act on are UNAUTHENTICATED (token unknown, wrong, expired,
  // revoked or used up; no token and no node certificate), PERMISSION_DENIED (token for another
  // CA, removed node, foreign certificate) or ALREADY_EXISTS (hostname taken); a malformed
  // request is INVALID_ARGUMENT.
  absl::StatusOr<RegistrationResult> RegisterNode(const Registration& registration,
                                                  const Caller& caller);
  // A heartbeat; only `node:<node_id>` with the certificate that node joined with may send it.
  absl::Status ReportHealth(const Caller& caller, const std::string& node_id,
                            std::string health_summary);
  // OK for a joined, not removed node presenting the certificate it joined with; PERMISSION_DENIED
  // naming why otherwise. For services other than heartbeats that nodes call (RunnerService).
  absl::Status AuthenticateNode(const Caller& caller);
  // The result of the controller's own poll of the agent's HealthCheck. OK and FAILED_PRECONDITION
  // (the agent answered but is degraded) are signs of life; any other error is only recorded.
  void RecordHealthCheck(const std::string& node_id, const absl::Status& result);
  // Marks nodes DOWN whose last sign of life is older than TTL + grace, writes the buffered
  // heartbeat times and compacts the change log. Called about once a second.
  absl::Status Tick();

  // Node ids and agent addresses of every node that is not REMOVED and has told its port, for
  // the health poller.
  std::vector<std::pair<std::string, std::string>> PollTargets();

  // Nodes matching the selector and in one of `states` (empty: every state but REMOVED).
  absl::StatusOr<std::vector<NodeView>> ListNodes(const std::string& label_selector,
                                                  const std::set<store::NodeState>& states);
  absl::StatusOr<NodeView> GetNode(const std::string& id);
  absl::StatusOr<NodeView> LabelNode(const std::string& id,
                                     const std::map<std::string, std::string>& set,
                                     const std::vector<std::string>& remove);
  absl::StatusOr<NodeView> SetAdminState(const std::string& id, store::AdminState admin_state);
  // Marks the node REMOVED: its certificate is refused from then on; its hostname can join again.
  absl::StatusOr<NodeView> RemoveNode(const std::string& id);

  // `ttl` absent = options.default_token_ttl; `max_uses` absent = unlimited until expiry.
  absl::StatusOr<CreatedJoinToken> CreateJoinToken(const common::Identity& creator,
                                                   const std::string& description,
                                                   std::optional<std::chrono::seconds> ttl,
                                                   std::optional<int64_t> max_uses);
  absl::StatusOr<std::vector<store::JoinToken>> ListJoinTokens();
  absl::StatusOr<store::JoinToken> RevokeJoinToken(const std::string& id);

  // Changes after `since_revision` (at most max_changes, capped by the options; <= 0 = the cap),
  // or a full snapshot when since_revision is 0 or older than the retained change log.
  absl::StatusOr<ClusterDelta> ChangesSince(int64_t since_revision, int max_changes);

  const RevisionFeed& feed() const { return feed_; }
  const ClusterOptions& options() const { return options_; }

 private:
  // Liveness as the controller sees it; combined with the admin state into the stored state.
  enum class Life { kNew, kUp, kDown };

  struct LiveNode {
    Life life = Life::kNew;
    store::AdminState admin_state = store::AdminState::kNone;
    bool removed = false;
    store::NodeState stored_state = store::NodeState::kRegistered;
    std::string cert_sha256;
    std::string agent_address;
    std::chrono::steady_clock::time_point last_seen;
    std::optional<TimePoint> last_heartbeat;
    bool heartbeat_pending = false;
    std::string health_summary;
    std::optional<TimePoint> last_health_check;
    std::string health_check_error;
  };

  Cluster(store::ClusterStore& store, const CertificateAuthority& ca, const common::Clock& clock,
          ClusterOptions options, int64_t revision);

  static store::NodeState EffectiveState(const LiveNode& live);
  void Track(const store::Node& node);
  NodeView ViewLocked(store::Node node) const;
  // Brings the stored state in line with `live` (mu_ held).
  absl::Status PersistStateLocked(const std::string& id, LiveNode& live);
  // Writes an admin change of the node and takes its admin state into nodes_ (mu_ held).
  absl::StatusOr<NodeView> Store(const store::Node& node);
  // A known, not removed node presenting the certificate it joined with (mu_ held).
  absl::Status AuthenticateNodeLocked(const Caller& caller);
  absl::StatusOr<RegistrationResult> Join(const Registration& registration,
                                          const std::string& agent_address);
  absl::StatusOr<RegistrationResult> Reregister(const Registration& registration,
                                                const Caller& caller,
                                                const std::string& agent_address);
  absl::StatusOr<std::string> ChooseNodeId(const std::string& hostname);
  void PublishRevision();

  store::ClusterStore& store_;
  const CertificateAuthority& ca_;
  const common::Clock& clock_;
  const ClusterOptions options_;
  RevisionFeed feed_;
  // Registrations run one at a time: they are rare, and it keeps id choice free of races.
  std::mutex register_mu_;
  // Guards nodes_ and orders every write of node records to the store.
  std::mutex mu_;
  std::unordered_map<std::string, LiveNode> nodes_;
  int ticks_ = 0;
};

}  // namespace pi::controlplane::cluster
