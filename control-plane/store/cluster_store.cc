#include "control-plane/store/cluster_store.h"

#include <fmt/format.h>

#include <array>
#include <nlohmann/json.hpp>
#include <utility>

namespace pi::controlplane::store {
namespace {

constexpr std::array<std::pair<NodeState, const char*>, 6> kNodeStateNames = {{
    {NodeState::kRegistered, "REGISTERED"},
    {NodeState::kReady, "READY"},
    {NodeState::kDown, "DOWN"},
    {NodeState::kDraining, "DRAINING"},
    {NodeState::kCordoned, "CORDONED"},
    {NodeState::kRemoved, "REMOVED"},
}};

constexpr std::array<std::pair<AdminState, const char*>, 3> kAdminStateNames = {{
    {AdminState::kNone, ""},
    {AdminState::kCordoned, "CORDONED"},
    {AdminState::kDraining, "DRAINING"},
}};

nlohmann::json OptionalNanos(const std::optional<TimePoint>& t) {
  return t.has_value() ? nlohmann::json(UnixNanos(*t)) : nlohmann::json(nullptr);
}

std::optional<TimePoint> ReadOptionalNanos(const nlohmann::json& value) {
  if (value.is_null()) return std::nullopt;
  return FromUnixNanos(value.get<int64_t>());
}

}  // namespace

int64_t UnixNanos(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

TimePoint FromUnixNanos(int64_t nanos) {
  return TimePoint(
      std::chrono::duration_cast<TimePoint::duration>(std::chrono::nanoseconds(nanos)));
}

std::string NodeStateName(NodeState state) {
  for (const auto& [value, name] : kNodeStateNames) {
    if (value == state) return name;
  }
  return "UNKNOWN";
}

absl::StatusOr<NodeState> ParseNodeState(const std::string& name) {
  for (const auto& [value, known] : kNodeStateNames) {
    if (name == known) return value;
  }
  return absl::InvalidArgumentError(fmt::format(
      "unknown node state \"{}\" (expected REGISTERED, READY, DOWN, DRAINING, CORDONED or "
      "REMOVED)",
      name));
}

std::string AdminStateName(AdminState state) {
  for (const auto& [value, name] : kAdminStateNames) {
    if (value == state) return name;
  }
  return "UNKNOWN";
}

absl::StatusOr<AdminState> ParseAdminState(const std::string& name) {
  for (const auto& [value, known] : kAdminStateNames) {
    if (name == known) return value;
  }
  return absl::InvalidArgumentError(
      fmt::format("unknown admin state \"{}\" (expected \"\", CORDONED or DRAINING)", name));
}

std::string ChangeKindName(Change::Kind kind) {
  return kind == Change::Kind::kNode ? "node" : "join_token";
}

std::string ChangeOpName(Change::Op op) { return op == Change::Op::kUpsert ? "upsert" : "delete"; }

std::string NodeToJson(const Node& node) {
  return nlohmann::json{
      {"id", node.id},
      {"hostname", node.hostname},
      {"agent_address", node.agent_address},
      {"labels", node.labels},
      {"facts", node.facts},
      {"state", NodeStateName(node.state)},
      {"admin_state", AdminStateName(node.admin_state)},
      {"registered_at_ns", UnixNanos(node.registered_at)},
      {"last_heartbeat_ns", OptionalNanos(node.last_heartbeat)},
      {"cert_serial", node.cert_serial},
      {"cert_sha256", node.cert_sha256},
      {"revision", node.revision},
  }
      .dump();
}

absl::StatusOr<Node> NodeFromJson(const std::string& json) {
  try {
    const nlohmann::json value = nlohmann::json::parse(json);
    Node node;
    node.id = value.at("id").get<std::string>();
    node.hostname = value.at("hostname").get<std::string>();
    node.agent_address = value.at("agent_address").get<std::string>();
    node.labels = value.at("labels").get<std::map<std::string, std::string>>();
    node.facts = value.at("facts").get<std::map<std::string, std::string>>();
    absl::StatusOr<NodeState> state = ParseNodeState(value.at("state").get<std::string>());
    if (!state.ok()) return state.status();
    node.state = *state;
    // Records written before schema version 2 have no admin state.
    absl::StatusOr<AdminState> admin_state =
        ParseAdminState(value.value("admin_state", std::string()));
    if (!admin_state.ok()) return admin_state.status();
    node.admin_state = *admin_state;
    node.registered_at = FromUnixNanos(value.at("registered_at_ns").get<int64_t>());
    node.last_heartbeat = ReadOptionalNanos(value.at("last_heartbeat_ns"));
    node.cert_serial = value.at("cert_serial").get<std::string>();
    node.cert_sha256 = value.at("cert_sha256").get<std::string>();
    node.revision = value.at("revision").get<int64_t>();
    return node;
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(fmt::format("malformed node record: {}", e.what()));
  }
}

std::string JoinTokenToJson(const JoinToken& token) {
  return nlohmann::json{
      {"id", token.id},
      {"secret_hash", token.secret_hash},
      {"description", token.description},
      {"created_by", token.created_by},
      {"created_at_ns", UnixNanos(token.created_at)},
      {"expires_at_ns", UnixNanos(token.expires_at)},
      {"revoked_at_ns", OptionalNanos(token.revoked_at)},
      {"use_count", token.use_count},
      {"max_uses",
       token.max_uses.has_value() ? nlohmann::json(*token.max_uses) : nlohmann::json(nullptr)},
      {"revision", token.revision},
  }
      .dump();
}

absl::StatusOr<JoinToken> JoinTokenFromJson(const std::string& json) {
  try {
    const nlohmann::json value = nlohmann::json::parse(json);
    JoinToken token;
    token.id = value.at("id").get<std::string>();
    token.secret_hash = value.at("secret_hash").get<std::string>();
    token.description = value.at("description").get<std::string>();
    token.created_by = value.at("created_by").get<std::string>();
    token.created_at = FromUnixNanos(value.at("created_at_ns").get<int64_t>());
    token.expires_at = FromUnixNanos(value.at("expires_at_ns").get<int64_t>());
    token.revoked_at = ReadOptionalNanos(value.at("revoked_at_ns"));
    token.use_count = value.at("use_count").get<int64_t>();
    if (!value.at("max_uses").is_null()) token.max_uses = value.at("max_uses").get<int64_t>();
    token.revision = value.at("revision").get<int64_t>();
    return token;
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(fmt::format("malformed join token record: {}", e.what()));
  }
}

}  // namespace pi::controlplane::store
