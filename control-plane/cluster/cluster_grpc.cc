#include "control-plane/cluster/cluster_grpc.h"

#include <fmt/format.h>

#include <mutex>
#include <optional>
#include <unordered_map>

#include "common/grpc/proto_time.h"
#include "common/system/host_port.h"
#include "common/tls/peer_identity.h"
#include "common/tls/x509.h"

namespace pi::controlplane::cluster {
namespace {

namespace pb = picontroller::v1;

constexpr std::pair<store::NodeState, pb::NodeState> kStates[] = {
    {store::NodeState::kRegistered, pb::NODE_STATE_REGISTERED},
    {store::NodeState::kReady, pb::NODE_STATE_READY},
    {store::NodeState::kDown, pb::NODE_STATE_DOWN},
    {store::NodeState::kDraining, pb::NODE_STATE_DRAINING},
    {store::NodeState::kCordoned, pb::NODE_STATE_CORDONED},
    {store::NodeState::kRemoved, pb::NODE_STATE_REMOVED},
};

pb::NodeState AdminStateToProto(store::AdminState state) {
  switch (state) {
    case store::AdminState::kCordoned:
      return pb::NODE_STATE_CORDONED;
    case store::AdminState::kDraining:
      return pb::NODE_STATE_DRAINING;
    case store::AdminState::kNone:
      break;
  }
  return pb::NODE_STATE_UNSPECIFIED;
}

// Fingerprints of the certificates callers present, by PEM text. Parsing a certificate costs about
// half of a heartbeat's CPU, and a node presents the same one on every call. The function is pure,
// so the cache needs no invalidation; it is emptied when full to stay bounded.
class FingerprintCache {
 public:
  std::optional<std::string> Fingerprint(std::string_view pem) {
    std::lock_guard lock(mu_);
    auto found = fingerprints_.find(std::string(pem));
    if (found != fingerprints_.end()) return found->second;
    absl::StatusOr<common::CertificateInfo> info = common::ParseCertificate(pem);
    if (!info.ok()) return std::nullopt;
    if (fingerprints_.size() >= kCapacity) fingerprints_.clear();
    fingerprints_.emplace(std::string(pem), info->sha256_fingerprint);
    return info->sha256_fingerprint;
  }

 private:
  static constexpr size_t kCapacity = 16384;
  std::mutex mu_;
  std::unordered_map<std::string, std::string> fingerprints_;
};

}  // namespace

Caller CallerFromContext(const grpc::ServerContextBase& context) {
  Caller caller;
  const std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr) return caller;
  // The cluster listener verifies every certificate that is presented (client_auth "request").
  absl::StatusOr<common::Identity> identity = common::IdentityFromAuthContext(*auth, true);
  if (!identity.ok()) return caller;
  const auto pems = auth->FindPropertyValues("x509_pem_cert");
  if (pems.size() != 1) return caller;
  static FingerprintCache* const cache = new FingerprintCache();
  std::optional<std::string> fingerprint =
      cache->Fingerprint(std::string_view(pems.front().data(), pems.front().size()));
  if (!fingerprint.has_value()) return caller;
  caller.identity = *std::move(identity);
  caller.cert_sha256 = *std::move(fingerprint);
  return caller;
}

std::string PeerHost(const grpc::ServerContextBase& context) {
  const std::string peer = context.peer();
  for (std::string_view scheme : {"ipv4:", "ipv6:"}) {
    if (!std::string_view(peer).starts_with(scheme)) continue;
    absl::StatusOr<common::HostPort> address =
        common::SplitHostPort(std::string_view(peer).substr(scheme.size()));
    if (address.ok()) return address->host;
  }
  return "";
}

pb::NodeState ToProto(store::NodeState state) {
  for (const auto& [core, wire] : kStates) {
    if (core == state) return wire;
  }
  return pb::NODE_STATE_UNSPECIFIED;
}

absl::StatusOr<store::NodeState> FromProto(pb::NodeState state) {
  for (const auto& [core, wire] : kStates) {
    if (wire == state) return core;
  }
  return absl::InvalidArgumentError(fmt::format("unknown node state {}", static_cast<int>(state)));
}

void ToProto(const store::Node& node, pb::Node* out) {
  out->set_id(node.id);
  out->set_hostname(node.hostname);
  out->set_agent_address(node.agent_address);
  out->mutable_labels()->insert(node.labels.begin(), node.labels.end());
  out->mutable_facts()->insert(node.facts.begin(), node.facts.end());
  out->set_state(ToProto(node.state));
  out->set_admin_state(AdminStateToProto(node.admin_state));
  *out->mutable_registered_at() = common::ToProtoTimestamp(node.registered_at);
  if (node.last_heartbeat.has_value()) {
    *out->mutable_last_heartbeat() = common::ToProtoTimestamp(*node.last_heartbeat);
  }
  out->set_certificate_fingerprint(node.cert_sha256);
  out->set_revision(node.revision);
}

void ToProto(const NodeView& view, pb::Node* out) {
  ToProto(view.node, out);
  if (!view.health_summary.empty()) {
    // Written by ControlPlaneService from a parsed message, so it parses.
    out->mutable_last_health()->ParseFromString(view.health_summary);
  }
  if (view.last_health_check.has_value()) {
    *out->mutable_last_health_check() = common::ToProtoTimestamp(*view.last_health_check);
  }
  out->set_health_check_error(view.health_check_error);
}

void ToProto(const store::JoinToken& token, bool with_secret_hash, pb::JoinTokenInfo* out) {
  out->set_id(token.id);
  out->set_description(token.description);
  out->set_created_by(token.created_by);
  *out->mutable_created_at() = common::ToProtoTimestamp(token.created_at);
  *out->mutable_expires_at() = common::ToProtoTimestamp(token.expires_at);
  if (token.revoked_at.has_value()) {
    *out->mutable_revoked_at() = common::ToProtoTimestamp(*token.revoked_at);
  }
  out->set_uses(static_cast<int32_t>(token.use_count));
  out->set_max_uses(static_cast<int32_t>(token.max_uses.value_or(0)));
  if (with_secret_hash) out->set_secret_sha256(token.secret_hash);
}

absl::Status ToProto(const store::Change& change, bool with_secret_hash, pb::ClusterChange* out) {
  out->set_revision(change.revision);
  *out->mutable_changed_at() = common::ToProtoTimestamp(change.at);
  if (change.op == store::Change::Op::kDelete) {
    out->set_operation(pb::ClusterChange::OPERATION_DELETE);
    out->set_deleted_id(change.key);
  } else {
    out->set_operation(pb::ClusterChange::OPERATION_UPSERT);
  }
  if (change.kind == store::Change::Kind::kNode) {
    absl::StatusOr<store::Node> node = store::NodeFromJson(change.record);
    if (!node.ok()) {
      return absl::DataLossError(
          fmt::format("change {}: {}", change.revision, std::string(node.status().message())));
    }
    ToProto(*node, out->mutable_node());
  } else {
    absl::StatusOr<store::JoinToken> token = store::JoinTokenFromJson(change.record);
    if (!token.ok()) {
      return absl::DataLossError(
          fmt::format("change {}: {}", change.revision, std::string(token.status().message())));
    }
    ToProto(*token, with_secret_hash, out->mutable_join_token());
  }
  return absl::OkStatus();
}

}  // namespace pi::controlplane::cluster
