#include "control-plane/cluster/cluster.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/system/host_port.h"
#include "common/tls/x509.h"
#include "control-plane/cluster/join_token.h"
#include "control-plane/cluster/node_names.h"

namespace pi::controlplane::cluster {
namespace {

using store::AdminState;
using store::NodeState;

constexpr int kMaxIdSuffix = 99;
constexpr size_t kMaxDescriptionLength = 256;
// The change log is compacted every this many ticks (about a minute).
constexpr int kCompactEveryTicks = 60;

bool IsUnspecifiedHost(const std::string& host) {
  return host.empty() || host == "0.0.0.0" || host == "::";
}

}  // namespace

absl::StatusOr<std::unique_ptr<Cluster>> Cluster::Create(store::ClusterStore& store,
                                                         const CertificateAuthority& ca,
                                                         const common::Clock& clock,
                                                         ClusterOptions options) {
  if (options.heartbeat_interval <= std::chrono::seconds(0) ||
      options.heartbeat_ttl < options.heartbeat_interval ||
      options.down_grace < std::chrono::seconds(0)) {
    return absl::InvalidArgumentError(
        "cluster.heartbeat_interval must be positive and at most cluster.heartbeat_ttl, and "
        "cluster.down_grace must not be negative");
  }
  if (options.default_token_ttl <= std::chrono::seconds(0) ||
      options.default_token_ttl > options.max_token_ttl) {
    return absl::InvalidArgumentError(
        "the default join token TTL must be positive and at most cluster.max_token_ttl");
  }
  absl::StatusOr<store::ClusterSnapshot> snapshot = store.Snapshot();
  if (!snapshot.ok()) return snapshot.status();
  auto cluster = std::unique_ptr<Cluster>(
      new Cluster(store, ca, clock, std::move(options), snapshot->revision));
  for (const store::Node& node : snapshot->nodes) cluster->Track(node);
  return cluster;
}

Cluster::Cluster(store::ClusterStore& store, const CertificateAuthority& ca,
                 const common::Clock& clock, ClusterOptions options, int64_t revision)
    : store_(store), ca_(ca), clock_(clock), options_(std::move(options)), feed_(revision) {}

NodeState Cluster::EffectiveState(const LiveNode& live) {
  if (live.removed) return NodeState::kRemoved;
  if (live.life == Life::kDown) return NodeState::kDown;
  if (live.admin_state == AdminState::kDraining) return NodeState::kDraining;
  if (live.admin_state == AdminState::kCordoned) return NodeState::kCordoned;
  return live.life == Life::kNew ? NodeState::kRegistered : NodeState::kReady;
}

void Cluster::Track(const store::Node& node) {
  LiveNode& live = nodes_[node.id];
  live.removed = node.state == NodeState::kRemoved;
  // A cordoned or draining node without a recorded heartbeat may never have been up: it must not
  // turn READY when uncordoned before it heartbeats.
  const bool held = node.state == NodeState::kCordoned || node.state == NodeState::kDraining;
  const bool never_up =
      node.state == NodeState::kRegistered || (held && !node.last_heartbeat.has_value());
  live.life = node.state == NodeState::kDown ? Life::kDown : never_up ? Life::kNew : Life::kUp;
  live.admin_state = node.admin_state;
  live.stored_state = node.state;
  live.cert_sha256 = node.cert_sha256;
  live.agent_address = node.agent_address;
  live.last_seen = clock_.Now();
  if (node.last_heartbeat.has_value() &&
      (!live.last_heartbeat.has_value() || *node.last_heartbeat > *live.last_heartbeat)) {
    live.last_heartbeat = node.last_heartbeat;
  }
}

void Cluster::PublishRevision() {
  absl::StatusOr<int64_t> revision = store_.CurrentRevision();
  if (revision.ok()) feed_.Publish(*revision);
}

absl::Status Cluster::PersistStateLocked(const std::string& id, LiveNode& live) {
  const NodeState wanted = EffectiveState(live);
  if (wanted == live.stored_state) return absl::OkStatus();
  absl::StatusOr<store::Node> stored = store_.SetNodeState(id, wanted);
  if (!stored.ok()) return stored.status();
  live.stored_state = wanted;
  feed_.Publish(stored->revision);
  return absl::OkStatus();
}

NodeView Cluster::ViewLocked(store::Node node) const {
  NodeView view;
  auto found = nodes_.find(node.id);
  if (found != nodes_.end()) {
    const LiveNode& live = found->second;
    if (live.last_heartbeat.has_value() &&
        (!node.last_heartbeat.has_value() || *live.last_heartbeat > *node.last_heartbeat)) {
      node.last_heartbeat = live.last_heartbeat;
    }
    view.health_summary = live.health_summary;
    view.last_health_check = live.last_health_check;
    view.health_check_error = live.health_check_error;
  }
  view.node = std::move(node);
  return view;
}

// ---- registration and liveness ---------------------------------------------------------------

absl::StatusOr<RegistrationResult> Cluster::RegisterNode(const Registration& registration,
                                                         const Caller& caller) {
  if (absl::Status status = ValidateHostname(registration.hostname); !status.ok()) return status;
  if (absl::Status status = ValidateLabels(registration.labels); !status.ok()) return status;
  if (absl::Status status = ValidateFacts(registration.facts); !status.ok()) return status;
  absl::StatusOr<common::HostPort> address = common::SplitHostPort(registration.agent_address);
  if (!address.ok()) return address.status();
  // A joining agent may not listen yet (its listener needs the certificate it is about to get);
  // it registers again with its port once it does.
  if (address->port == 0 && registration.join_token.empty()) {
    return absl::InvalidArgumentError(fmt::format(
        "agent_address {:?} needs the port the agent listens on", registration.agent_address));
  }
  if (IsUnspecifiedHost(address->host)) {
    if (registration.peer_host.empty()) {
      return absl::InvalidArgumentError(
          "agent_address has no host and the address the registration came from is unknown");
    }
    address->host = registration.peer_host;
  }
  const std::string agent_address = common::JoinHostPort(*address);

  std::lock_guard registering(register_mu_);
  if (!registration.join_token.empty()) return Join(registration, agent_address);
  if (!caller.identity.has_value()) {
    return absl::UnauthenticatedError(
        "a join token is required to join (pictl tokens create), or the node's own certificate "
        "to register again");
  }
  return Reregister(registration, caller, agent_address);
}

absl::StatusOr<std::string> Cluster::ChooseNodeId(const std::string& hostname) {
  const std::string base = NodeIdFromHostname(hostname);
  for (int suffix = 1; suffix <= kMaxIdSuffix; ++suffix) {
    const std::string id = suffix == 1 ? base : fmt::format("{}-{}", base, suffix);
    // A removed node's id is never given again: its certificate still names
    // "<id>.node.pi-controller", and the controller dials agents by that name.
    absl::StatusOr<store::Node> existing = store_.GetNode(id);
    if (absl::IsNotFound(existing.status())) return id;
    if (!existing.ok()) return existing.status();
  }
  return absl::ResourceExhaustedError(
      fmt::format("no free node id for hostname {}: ids {} to {}-{} are taken", hostname, base,
                  base, kMaxIdSuffix));
}

absl::StatusOr<RegistrationResult> Cluster::Join(const Registration& registration,
                                                 const std::string& agent_address) {
  absl::StatusOr<JoinToken> token = ParseJoinToken(registration.join_token);
  if (!token.ok()) return token.status();
  if (token->ca_pin != ca_.pin()) {
    return absl::PermissionDeniedError(
        "the join token was made for another cluster: its CA pin does not match this "
        "controller's CA");
  }
  if (registration.csr_pem.empty()) {
    return absl::InvalidArgumentError("a join needs a certificate signing request (csr_pem)");
  }
  if (absl::StatusOr<common::CsrInfo> csr = CertificateAuthority::CheckCsr(registration.csr_pem);
      !csr.ok()) {
    return csr.status();
  }
  absl::StatusOr<store::Node> holder = store_.FindNodeByHostname(registration.hostname);
  if (holder.ok()) {
    return absl::AlreadyExistsError(
        fmt::format("hostname {} is already registered as node {}; register again with that node's "
                    "certificate, or remove it first (pictl nodes remove {})",
                    registration.hostname, holder->id, holder->id));
  }
  if (!absl::IsNotFound(holder.status())) return holder.status();
  absl::StatusOr<std::string> id = ChooseNodeId(registration.hostname);
  if (!id.ok()) return id.status();
  // The certificate names nothing the joiner chose: a hostname or address in it would let a node
  // pose as the controller, or as another host, to anyone checking names against the CA.
  const std::vector<std::string> sans = {NodeTlsName(*id)};
  if (absl::Status status = common::ValidateSubjectAltNames(sans); !status.ok()) return status;

  // Everything that depends on the request was checked above, so a token use is only spent on a
  // join that goes through.
  absl::StatusOr<store::JoinToken> consumed =
      store_.ConsumeJoinToken(token->id, HashJoinSecret(token->secret), clock_.WallNow());
  if (!consumed.ok()) return consumed.status();
  absl::StatusOr<std::string> certificate = ca_.SignCsr(
      registration.csr_pem, fmt::format("node:{}", *id), sans, options_.node_cert_validity);
  if (!certificate.ok()) return certificate.status();
  absl::StatusOr<common::CertificateInfo> info = common::ParseCertificate(*certificate);
  if (!info.ok()) return info.status();

  store::Node node;
  node.id = *id;
  node.hostname = registration.hostname;
  node.agent_address = agent_address;
  node.labels = registration.labels;
  node.facts = registration.facts;
  node.state = NodeState::kRegistered;
  node.registered_at = clock_.WallNow();
  node.cert_serial = info->serial_hex;
  node.cert_sha256 = info->sha256_fingerprint;
  std::lock_guard lock(mu_);
  absl::StatusOr<store::Node> created = store_.CreateNode(node);
  if (!created.ok()) return created.status();
  Track(*created);
  feed_.Publish(created->revision);
  return RegistrationResult{*id, agent_address, *std::move(certificate), ca_.ca_pem(),
                            options_.heartbeat_interval};
}

absl::Status Cluster::AuthenticateNode(const Caller& caller) {
  std::lock_guard lock(mu_);
  return AuthenticateNodeLocked(caller);
}

absl::Status Cluster::AuthenticateNodeLocked(const Caller& caller) {
  if (!caller.identity.has_value() || caller.identity->role != common::Role::kNode) {
    return absl::PermissionDeniedError(fmt::format(
        "{} is not a node identity",
        caller.identity.has_value() ? caller.identity->ToString() : "an anonymous caller"));
  }
  const std::string& id = caller.identity->name;
  auto found = nodes_.find(id);
  if (found == nodes_.end()) {
    return absl::PermissionDeniedError(
        fmt::format("node {} is not registered with this controller; join it with a token", id));
  }
  if (found->second.removed) {
    return absl::PermissionDeniedError(fmt::format(
        "node {} was removed from the cluster; delete its state and join again with a new token",
        id));
  }
  if (caller.cert_sha256.empty() || caller.cert_sha256 != found->second.cert_sha256) {
    return absl::PermissionDeniedError(
        fmt::format("the certificate presented for node {} is not the one it joined with", id));
  }
  return absl::OkStatus();
}

absl::StatusOr<RegistrationResult> Cluster::Reregister(const Registration& registration,
                                                       const Caller& caller,
                                                       const std::string& agent_address) {
  std::lock_guard lock(mu_);
  if (absl::Status authenticated = AuthenticateNodeLocked(caller); !authenticated.ok()) {
    return authenticated;
  }
  absl::StatusOr<store::Node> node = store_.GetNode(caller.identity->name);
  if (!node.ok()) return node.status();
  if (node->hostname != registration.hostname || node->agent_address != agent_address ||
      node->facts != registration.facts) {
    store::Node updated = *node;
    updated.hostname = registration.hostname;
    updated.agent_address = agent_address;
    updated.facts = registration.facts;
    absl::StatusOr<store::Node> stored = store_.UpdateNode(updated);
    if (!stored.ok()) return stored.status();
    nodes_[node->id].agent_address = agent_address;
    feed_.Publish(stored->revision);
  }
  nodes_[node->id].last_seen = clock_.Now();
  return RegistrationResult{node->id, agent_address, "", ca_.ca_pem(), options_.heartbeat_interval};
}

absl::Status Cluster::ReportHealth(const Caller& caller, const std::string& node_id,
                                   std::string health_summary) {
  if (!caller.identity.has_value() || caller.identity->role != common::Role::kNode) {
    return absl::PermissionDeniedError("only nodes report health");
  }
  if (caller.identity->name != node_id) {
    return absl::PermissionDeniedError(
        fmt::format("{} may report health only for node {}, not for node {:?}",
                    caller.identity->ToString(), caller.identity->name, node_id));
  }
  std::lock_guard lock(mu_);
  // Memory only: a heartbeat reads nothing from disk.
  if (absl::Status authenticated = AuthenticateNodeLocked(caller); !authenticated.ok()) {
    return authenticated;
  }
  LiveNode& live = nodes_[node_id];
  live.last_seen = clock_.Now();
  live.last_heartbeat = clock_.WallNow();
  live.heartbeat_pending = true;
  live.health_summary = std::move(health_summary);
  live.life = Life::kUp;
  return PersistStateLocked(node_id, live);
}

void Cluster::RecordHealthCheck(const std::string& node_id, const absl::Status& result) {
  std::lock_guard lock(mu_);
  auto found = nodes_.find(node_id);
  if (found == nodes_.end() || found->second.removed) return;
  LiveNode& live = found->second;
  live.last_health_check = clock_.WallNow();
  live.health_check_error = result.ok() ? "" : std::string(result.message());
  const bool answered = result.ok() || absl::IsFailedPrecondition(result);
  if (!answered) return;
  live.last_seen = clock_.Now();
  live.life = Life::kUp;
  // A failed write is retried by the next heartbeat or poll; the poll itself has no caller.
  PersistStateLocked(node_id, live).IgnoreError();
}

absl::Status Cluster::Tick() {
  std::vector<store::Heartbeat> heartbeats;
  absl::Status result;
  {
    std::lock_guard lock(mu_);
    const auto silent_since = clock_.Now() - options_.heartbeat_ttl - options_.down_grace;
    for (auto& [id, live] : nodes_) {
      if (live.heartbeat_pending) {
        heartbeats.push_back({id, *live.last_heartbeat});
        live.heartbeat_pending = false;
      }
      if (live.removed || live.life == Life::kDown || live.last_seen >= silent_since) continue;
      live.life = Life::kDown;
      if (absl::Status status = PersistStateLocked(id, live); !status.ok()) result = status;
    }
  }
  if (!heartbeats.empty()) {
    absl::StatusOr<std::vector<std::string>> missing = store_.RecordHeartbeats(heartbeats);
    if (!missing.ok()) result = missing.status();
  }
  if (++ticks_ % kCompactEveryTicks == 0) {
    absl::StatusOr<int64_t> revision = store_.CurrentRevision();
    if (revision.ok() && *revision > options_.retained_changes) {
      absl::Status status = store_.CompactChangesBefore(*revision - options_.retained_changes);
      if (!status.ok()) result = status;
    }
  }
  return result;
}

std::vector<std::pair<std::string, std::string>> Cluster::PollTargets() {
  std::lock_guard lock(mu_);
  std::vector<std::pair<std::string, std::string>> targets;
  for (const auto& [id, live] : nodes_) {
    absl::StatusOr<common::HostPort> address = common::SplitHostPort(live.agent_address);
    // Port 0: joined, but not listening yet.
    if (!live.removed && address.ok() && address->port != 0) {
      targets.emplace_back(id, live.agent_address);
    }
  }
  std::sort(targets.begin(), targets.end());
  return targets;
}

// ---- admin operations on nodes ---------------------------------------------------------------

absl::StatusOr<std::vector<NodeView>> Cluster::ListNodes(const std::string& label_selector,
                                                         const std::set<NodeState>& states) {
  absl::StatusOr<LabelSelector> selector = ParseLabelSelector(label_selector);
  if (!selector.ok()) return selector.status();
  std::lock_guard lock(mu_);
  absl::StatusOr<std::vector<store::Node>> nodes = store_.ListNodes();
  if (!nodes.ok()) return nodes.status();
  std::vector<NodeView> views;
  for (store::Node& node : *nodes) {
    const bool state_wanted =
        states.empty() ? node.state != NodeState::kRemoved : states.count(node.state) > 0;
    if (state_wanted && MatchesSelector(node.labels, *selector)) {
      views.push_back(ViewLocked(std::move(node)));
    }
  }
  return views;
}

absl::StatusOr<NodeView> Cluster::GetNode(const std::string& id) {
  std::lock_guard lock(mu_);
  absl::StatusOr<store::Node> node = store_.GetNode(id);
  if (!node.ok()) return node.status();
  return ViewLocked(*std::move(node));
}

absl::StatusOr<NodeView> Cluster::Store(const store::Node& node) {
  absl::StatusOr<store::Node> stored = store_.UpdateNode(node);
  if (!stored.ok()) return stored.status();
  LiveNode& live = nodes_[stored->id];
  live.removed = stored->state == NodeState::kRemoved;
  live.admin_state = stored->admin_state;
  live.stored_state = stored->state;
  feed_.Publish(stored->revision);
  return ViewLocked(*std::move(stored));
}

absl::StatusOr<NodeView> Cluster::LabelNode(const std::string& id,
                                            const std::map<std::string, std::string>& set,
                                            const std::vector<std::string>& remove) {
  if (set.empty() && remove.empty()) {
    return absl::InvalidArgumentError("give at least one label to set or remove");
  }
  for (const std::string& key : remove) {
    if (set.count(key) > 0) {
      return absl::InvalidArgumentError(
          fmt::format("label {} is both set and removed in one request", key));
    }
    if (absl::Status status = ValidateLabels({{key, ""}}); !status.ok()) return status;
  }
  std::lock_guard lock(mu_);
  absl::StatusOr<store::Node> node = store_.GetNode(id);
  if (!node.ok()) return node.status();
  if (node->state == NodeState::kRemoved) {
    return absl::FailedPreconditionError(fmt::format("node {} was removed", id));
  }
  store::Node updated = *node;
  for (const std::string& key : remove) updated.labels.erase(key);
  for (const auto& [key, value] : set) updated.labels[key] = value;
  if (absl::Status status = ValidateLabels(updated.labels); !status.ok()) return status;
  if (updated.labels == node->labels) return ViewLocked(*std::move(node));
  return Store(updated);
}

absl::StatusOr<NodeView> Cluster::SetAdminState(const std::string& id, AdminState admin_state) {
  if (AdminStateName(admin_state) == "UNKNOWN") {
    return absl::InvalidArgumentError("unknown admin state");
  }
  std::lock_guard lock(mu_);
  absl::StatusOr<store::Node> node = store_.GetNode(id);
  if (!node.ok()) return node.status();
  if (node->state == NodeState::kRemoved) {
    return absl::FailedPreconditionError(fmt::format("node {} was removed", id));
  }
  LiveNode wanted = nodes_[id];
  wanted.admin_state = admin_state;
  store::Node updated = *node;
  updated.admin_state = admin_state;
  updated.state = EffectiveState(wanted);
  if (updated == *node) return ViewLocked(*std::move(node));
  return Store(updated);
}

absl::StatusOr<NodeView> Cluster::RemoveNode(const std::string& id) {
  std::lock_guard lock(mu_);
  absl::StatusOr<store::Node> node = store_.GetNode(id);
  if (!node.ok()) return node.status();
  if (node->state == NodeState::kRemoved) return ViewLocked(*std::move(node));
  store::Node updated = *node;
  updated.state = NodeState::kRemoved;
  updated.admin_state = AdminState::kNone;
  return Store(updated);
}

// ---- join tokens -----------------------------------------------------------------------------

absl::StatusOr<CreatedJoinToken> Cluster::CreateJoinToken(const common::Identity& creator,
                                                          const std::string& description,
                                                          std::optional<std::chrono::seconds> ttl,
                                                          std::optional<int64_t> max_uses) {
  const std::chrono::seconds lifetime = ttl.value_or(options_.default_token_ttl);
  if (lifetime <= std::chrono::seconds(0)) {
    return absl::InvalidArgumentError("a join token's ttl must be positive");
  }
  if (lifetime > options_.max_token_ttl) {
    return absl::InvalidArgumentError(
        fmt::format("ttl {}s is longer than cluster.max_token_ttl ({}s)", lifetime.count(),
                    options_.max_token_ttl.count()));
  }
  if (max_uses.has_value() && *max_uses <= 0) {
    return absl::InvalidArgumentError("max_uses must be positive (leave it out for unlimited)");
  }
  const bool printable = std::all_of(description.begin(), description.end(), [](char c) {
    return static_cast<unsigned char>(c) >= 0x20 && c != 0x7f;
  });
  if (description.size() > kMaxDescriptionLength || !printable) {
    return absl::InvalidArgumentError(fmt::format(
        "a token description is at most {} printable characters", kMaxDescriptionLength));
  }
  absl::StatusOr<MintedJoinToken> minted = MintJoinToken(ca_.pin());
  if (!minted.ok()) return minted.status();
  store::JoinToken token;
  token.id = minted->id;
  token.secret_hash = minted->secret_hash;
  token.description = description;
  token.created_by = creator.ToString();
  token.created_at = clock_.WallNow();
  token.expires_at = token.created_at + lifetime;
  token.max_uses = max_uses;
  absl::StatusOr<store::JoinToken> created = store_.CreateJoinToken(token);
  if (!created.ok()) return created.status();
  feed_.Publish(created->revision);
  return CreatedJoinToken{minted->text, *std::move(created)};
}

absl::StatusOr<std::vector<store::JoinToken>> Cluster::ListJoinTokens() {
  return store_.ListJoinTokens();
}

absl::StatusOr<store::JoinToken> Cluster::RevokeJoinToken(const std::string& id) {
  absl::StatusOr<store::JoinToken> revoked = store_.RevokeJoinToken(id, clock_.WallNow());
  if (revoked.ok()) feed_.Publish(revoked->revision);
  return revoked;
}

// ---- change log ------------------------------------------------------------------------------

absl::StatusOr<ClusterDelta> Cluster::ChangesSince(int64_t since_revision, int max_changes) {
  if (since_revision < 0) {
    return absl::InvalidArgumentError("since_revision must not be negative");
  }
  const int limit = max_changes <= 0 ? options_.max_changes_per_sync
                                     : std::min(max_changes, options_.max_changes_per_sync);
  ClusterDelta delta;
  if (since_revision > 0) {
    absl::StatusOr<std::vector<store::Change>> changes = store_.ChangesSince(since_revision, limit);
    if (changes.ok()) {
      delta.changes = *std::move(changes);
      if (delta.changes.empty()) {
        delta.revision = since_revision;
      } else {
        delta.revision = delta.changes.back().revision;
        absl::StatusOr<int64_t> current = store_.CurrentRevision();
        if (!current.ok()) return current.status();
        delta.more = delta.revision < *current;
      }
      return delta;
    }
    if (!absl::IsOutOfRange(changes.status())) return changes.status();
  }
  absl::StatusOr<store::ClusterSnapshot> snapshot = store_.Snapshot();
  if (!snapshot.ok()) return snapshot.status();
  delta.full_snapshot = true;
  delta.revision = snapshot->revision;
  {
    std::lock_guard lock(mu_);
    for (store::Node& node : snapshot->nodes) node = ViewLocked(std::move(node)).node;
  }
  delta.snapshot = *std::move(snapshot);
  return delta;
}

}  // namespace pi::controlplane::cluster
