#include "control-plane/store/sqlite_cluster_store.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>

#include "common/text/hex.h"

namespace pi::controlplane::store {
namespace {

constexpr std::array<Migration, 2> kMigrations = {{
    {1, "nodes, join tokens, cluster revision and change log", R"sql(
CREATE TABLE cluster_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  revision INTEGER NOT NULL,
  -- The highest revision whose change record was compacted away (0: none).
  compacted_through INTEGER NOT NULL
);
INSERT INTO cluster_state (id, revision, compacted_through) VALUES (1, 0, 0);

CREATE TABLE nodes (
  id TEXT PRIMARY KEY NOT NULL,
  hostname TEXT NOT NULL,
  agent_address TEXT NOT NULL,
  labels TEXT NOT NULL,
  facts TEXT NOT NULL,
  state TEXT NOT NULL
    CHECK (state IN ('REGISTERED', 'READY', 'DOWN', 'DRAINING', 'CORDONED', 'REMOVED')),
  registered_at_ns INTEGER NOT NULL,
  last_heartbeat_ns INTEGER,
  cert_serial TEXT NOT NULL,
  cert_sha256 TEXT NOT NULL,
  revision INTEGER NOT NULL
);
CREATE UNIQUE INDEX nodes_live_hostname ON nodes (hostname) WHERE state != 'REMOVED';

CREATE TABLE join_tokens (
  id TEXT PRIMARY KEY NOT NULL,
  secret_hash TEXT NOT NULL,
  description TEXT NOT NULL,
  created_by TEXT NOT NULL,
  created_at_ns INTEGER NOT NULL,
  expires_at_ns INTEGER NOT NULL,
  revoked_at_ns INTEGER,
  use_count INTEGER NOT NULL,
  max_uses INTEGER,
  revision INTEGER NOT NULL
);

CREATE TABLE changes (
  revision INTEGER PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('node', 'join_token')),
  key TEXT NOT NULL,
  op TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
  record TEXT NOT NULL,
  at_ns INTEGER NOT NULL
);
)sql"},
    {2, "admin state of nodes, kept apart from liveness", R"sql(
ALTER TABLE nodes ADD COLUMN admin_state TEXT NOT NULL DEFAULT ''
  CHECK (admin_state IN ('', 'CORDONED', 'DRAINING'));
)sql"},
}};

constexpr char kNodeColumns[] =
    "id, hostname, agent_address, labels, facts, state, registered_at_ns, last_heartbeat_ns, "
    "cert_serial, cert_sha256, revision, admin_state";
constexpr char kJoinTokenColumns[] =
    "id, secret_hash, description, created_by, created_at_ns, expires_at_ns, revoked_at_ns, "
    "use_count, max_uses, revision";

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char difference = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    difference |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return difference == 0;
}

absl::Status ValidateId(const std::string& what, const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError(fmt::format("{} id is empty", what));
  return absl::OkStatus();
}

absl::Status ValidateState(NodeState state) {
  if (NodeStateName(state) == "UNKNOWN") {
    return absl::InvalidArgumentError(
        fmt::format("node state {} is not a known state", static_cast<int>(state)));
  }
  return absl::OkStatus();
}

absl::Status ValidateNode(const Node& node) {
  if (absl::Status s = ValidateId("node", node.id); !s.ok()) return s;
  if (node.hostname.empty()) {
    return absl::InvalidArgumentError(fmt::format("node {} has an empty hostname", node.id));
  }
  if (!node.cert_sha256.empty() && !common::IsSha256Hex(node.cert_sha256)) {
    return absl::InvalidArgumentError(fmt::format(
        "node {} certificate fingerprint must be 64 lower-case hex digits (SHA-256)", node.id));
  }
  if (AdminStateName(node.admin_state) == "UNKNOWN") {
    return absl::InvalidArgumentError(fmt::format("node {} admin state {} is not a known state",
                                                  node.id, static_cast<int>(node.admin_state)));
  }
  return ValidateState(node.state);
}

absl::Status ValidateJoinToken(const JoinToken& token) {
  if (absl::Status s = ValidateId("join token", token.id); !s.ok()) return s;
  if (!common::IsSha256Hex(token.secret_hash)) {
    return absl::InvalidArgumentError(fmt::format(
        "join token {} secret hash must be 64 lower-case hex digits (SHA-256)", token.id));
  }
  if (token.expires_at <= token.created_at) {
    return absl::InvalidArgumentError(
        fmt::format("join token {} expires before it is created", token.id));
  }
  if (token.use_count < 0) {
    return absl::InvalidArgumentError(
        fmt::format("join token {} has a negative use count", token.id));
  }
  if (token.max_uses.has_value() && *token.max_uses <= 0) {
    return absl::InvalidArgumentError(
        fmt::format("join token {} max uses must be positive (omit it for unlimited)", token.id));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, std::string>> ParseStringMap(const std::string& json,
                                                                  const std::string& what) {
  try {
    return nlohmann::json::parse(json).get<std::map<std::string, std::string>>();
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(
        fmt::format("stored {} are not a JSON string map: {}", what, e.what()));
  }
}

absl::StatusOr<Node> NodeFromRow(const Statement& row) {
  Node node;
  node.id = row.ColumnText(0);
  node.hostname = row.ColumnText(1);
  node.agent_address = row.ColumnText(2);
  absl::StatusOr<std::map<std::string, std::string>> labels =
      ParseStringMap(row.ColumnText(3), fmt::format("labels of node {}", node.id));
  if (!labels.ok()) return labels.status();
  node.labels = *std::move(labels);
  absl::StatusOr<std::map<std::string, std::string>> facts =
      ParseStringMap(row.ColumnText(4), fmt::format("facts of node {}", node.id));
  if (!facts.ok()) return facts.status();
  node.facts = *std::move(facts);
  absl::StatusOr<NodeState> state = ParseNodeState(row.ColumnText(5));
  if (!state.ok()) {
    return absl::DataLossError(
        fmt::format("node {}: {}", node.id, std::string(state.status().message())));
  }
  node.state = *state;
  node.registered_at = FromUnixNanos(row.ColumnInt64(6));
  if (std::optional<int64_t> at = row.ColumnOptionalInt64(7)) {
    node.last_heartbeat = FromUnixNanos(*at);
  }
  node.cert_serial = row.ColumnText(8);
  node.cert_sha256 = row.ColumnText(9);
  node.revision = row.ColumnInt64(10);
  absl::StatusOr<AdminState> admin_state = ParseAdminState(row.ColumnText(11));
  if (!admin_state.ok()) {
    return absl::DataLossError(
        fmt::format("node {}: {}", node.id, std::string(admin_state.status().message())));
  }
  node.admin_state = *admin_state;
  return node;
}

absl::StatusOr<JoinToken> JoinTokenFromRow(const Statement& row) {
  JoinToken token;
  token.id = row.ColumnText(0);
  token.secret_hash = row.ColumnText(1);
  token.description = row.ColumnText(2);
  token.created_by = row.ColumnText(3);
  token.created_at = FromUnixNanos(row.ColumnInt64(4));
  token.expires_at = FromUnixNanos(row.ColumnInt64(5));
  if (std::optional<int64_t> at = row.ColumnOptionalInt64(6)) token.revoked_at = FromUnixNanos(*at);
  token.use_count = row.ColumnInt64(7);
  token.max_uses = row.ColumnOptionalInt64(8);
  token.revision = row.ColumnInt64(9);
  return token;
}

absl::StatusOr<Change> ChangeFromRow(const Statement& row) {
  Change change;
  change.revision = row.ColumnInt64(0);
  const std::string kind = row.ColumnText(1);
  const std::string op = row.ColumnText(3);
  if (kind == "node") {
    change.kind = Change::Kind::kNode;
  } else if (kind == "join_token") {
    change.kind = Change::Kind::kJoinToken;
  } else {
    return absl::DataLossError(
        fmt::format("change {} has unknown kind \"{}\"", change.revision, kind));
  }
  if (op == "upsert") {
    change.op = Change::Op::kUpsert;
  } else if (op == "delete") {
    change.op = Change::Op::kDelete;
  } else {
    return absl::DataLossError(fmt::format("change {} has unknown op \"{}\"", change.revision, op));
  }
  change.key = row.ColumnText(2);
  change.record = row.ColumnText(4);
  change.at = FromUnixNanos(row.ColumnInt64(5));
  return change;
}

// Steps `query` to the end, converting every row with `from_row`.
template <typename T>
absl::StatusOr<std::vector<T>> CollectRows(Statement& query,
                                           absl::StatusOr<T> (*from_row)(const Statement&)) {
  std::vector<T> items;
  while (true) {
    absl::StatusOr<bool> row = query.Step();
    if (!row.ok()) return row.status();
    if (!*row) return items;
    absl::StatusOr<T> item = from_row(query);
    if (!item.ok()) return item.status();
    items.push_back(*std::move(item));
  }
}

}  // namespace

std::span<const Migration> SqliteClusterStore::Migrations() { return kMigrations; }

absl::StatusOr<std::unique_ptr<SqliteClusterStore>> SqliteClusterStore::Open(
    const std::string& path, const pi::common::Clock& clock, const SqliteDb::Options& options) {
  absl::StatusOr<std::unique_ptr<SqliteDb>> db = SqliteDb::Open(path, options);
  if (!db.ok()) return db.status();
  if (absl::Status s = ApplyMigrations(**db, kMigrations, clock.WallNow()); !s.ok()) return s;
  return std::unique_ptr<SqliteClusterStore>(new SqliteClusterStore(*std::move(db), clock));
}

absl::StatusOr<int64_t> SqliteClusterStore::ReadRevision() {
  absl::StatusOr<Statement> query = db_->Prepare("SELECT revision FROM cluster_state");
  if (!query.ok()) return query.status();
  absl::StatusOr<bool> row = query->Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::DataLossError("the cluster_state row is missing");
  return query->ColumnInt64(0);
}

absl::StatusOr<int64_t> SqliteClusterStore::BumpRevision() {
  absl::StatusOr<Statement> update =
      db_->Prepare("UPDATE cluster_state SET revision = revision + 1 RETURNING revision");
  if (!update.ok()) return update.status();
  absl::StatusOr<bool> row = update->Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::DataLossError("the cluster_state row is missing");
  const int64_t revision = update->ColumnInt64(0);
  if (absl::Status s = update->Run(); !s.ok()) return s;
  return revision;
}

absl::Status SqliteClusterStore::AppendChange(int64_t revision, Change::Kind kind,
                                              const std::string& key, Change::Op op,
                                              const std::string& record) {
  absl::StatusOr<Statement> insert = db_->Prepare(
      "INSERT INTO changes (revision, kind, key, op, record, at_ns) VALUES (?, ?, ?, ?, ?, ?)");
  if (!insert.ok()) return insert.status();
  insert->Bind(1, revision)
      .Bind(2, ChangeKindName(kind))
      .Bind(3, key)
      .Bind(4, ChangeOpName(op))
      .Bind(5, record)
      .Bind(6, UnixNanos(clock_.WallNow()));
  return insert->Run();
}

absl::Status SqliteClusterStore::CheckHostnameFree(const std::string& hostname,
                                                   const std::string& id) {
  absl::StatusOr<Statement> query =
      db_->Prepare("SELECT id FROM nodes WHERE hostname = ? AND state != 'REMOVED' AND id != ?");
  if (!query.ok()) return query.status();
  query->Bind(1, hostname).Bind(2, id);
  absl::StatusOr<bool> row = query->Step();
  if (!row.ok()) return row.status();
  if (*row) {
    return absl::AlreadyExistsError(
        fmt::format("hostname {} is already registered as node {}; remove that node first",
                    hostname, query->ColumnText(0)));
  }
  return absl::OkStatus();
}

absl::Status SqliteClusterStore::WriteNode(const Node& node, bool insert) {
  absl::StatusOr<Statement> write = db_->Prepare(
      insert
          ? "INSERT INTO nodes (id, hostname, agent_address, labels, facts, state, "
            "registered_at_ns, last_heartbeat_ns, cert_serial, cert_sha256, revision, admin_state) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
          : "UPDATE nodes SET hostname = ?2, agent_address = ?3, labels = ?4, facts = ?5, "
            "state = ?6, registered_at_ns = ?7, last_heartbeat_ns = ?8, cert_serial = ?9, "
            "cert_sha256 = ?10, revision = ?11, admin_state = ?12 WHERE id = ?1");
  if (!write.ok()) return write.status();
  write->Bind(1, node.id)
      .Bind(2, node.hostname)
      .Bind(3, node.agent_address)
      .Bind(4, nlohmann::json(node.labels).dump())
      .Bind(5, nlohmann::json(node.facts).dump())
      .Bind(6, NodeStateName(node.state))
      .Bind(7, UnixNanos(node.registered_at))
      .Bind(8, node.last_heartbeat.has_value()
                   ? std::optional<int64_t>(UnixNanos(*node.last_heartbeat))
                   : std::nullopt)
      .Bind(9, node.cert_serial)
      .Bind(10, node.cert_sha256)
      .Bind(11, node.revision)
      .Bind(12, AdminStateName(node.admin_state));
  return write->Run();
}

absl::Status SqliteClusterStore::WriteJoinToken(const JoinToken& token, bool insert) {
  absl::StatusOr<Statement> write = db_->Prepare(
      insert ? "INSERT INTO join_tokens (id, secret_hash, description, created_by, created_at_ns, "
               "expires_at_ns, revoked_at_ns, use_count, max_uses, revision) "
               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
             : "UPDATE join_tokens SET secret_hash = ?2, description = ?3, created_by = ?4, "
               "created_at_ns = ?5, expires_at_ns = ?6, revoked_at_ns = ?7, use_count = ?8, "
               "max_uses = ?9, revision = ?10 WHERE id = ?1");
  if (!write.ok()) return write.status();
  write->Bind(1, token.id)
      .Bind(2, token.secret_hash)
      .Bind(3, token.description)
      .Bind(4, token.created_by)
      .Bind(5, UnixNanos(token.created_at))
      .Bind(6, UnixNanos(token.expires_at))
      .Bind(7, token.revoked_at.has_value() ? std::optional<int64_t>(UnixNanos(*token.revoked_at))
                                            : std::nullopt)
      .Bind(8, token.use_count)
      .Bind(9, token.max_uses)
      .Bind(10, token.revision);
  return write->Run();
}

absl::StatusOr<Node> SqliteClusterStore::ReadNode(const std::string& id) {
  absl::StatusOr<Statement> query =
      db_->Prepare(fmt::format("SELECT {} FROM nodes WHERE id = ?", kNodeColumns));
  if (!query.ok()) return query.status();
  query->Bind(1, id);
  absl::StatusOr<std::vector<Node>> nodes = CollectRows(*query, NodeFromRow);
  if (!nodes.ok()) return nodes.status();
  if (nodes->empty()) return absl::NotFoundError(fmt::format("node {} does not exist", id));
  return std::move(nodes->front());
}

absl::StatusOr<std::vector<Node>> SqliteClusterStore::ReadNodes() {
  absl::StatusOr<Statement> query =
      db_->Prepare(fmt::format("SELECT {} FROM nodes ORDER BY id", kNodeColumns));
  if (!query.ok()) return query.status();
  return CollectRows(*query, NodeFromRow);
}

absl::StatusOr<JoinToken> SqliteClusterStore::ReadJoinToken(const std::string& id) {
  absl::StatusOr<Statement> query =
      db_->Prepare(fmt::format("SELECT {} FROM join_tokens WHERE id = ?", kJoinTokenColumns));
  if (!query.ok()) return query.status();
  query->Bind(1, id);
  absl::StatusOr<std::vector<JoinToken>> tokens = CollectRows(*query, JoinTokenFromRow);
  if (!tokens.ok()) return tokens.status();
  if (tokens->empty()) return absl::NotFoundError(fmt::format("join token {} does not exist", id));
  return std::move(tokens->front());
}

absl::StatusOr<std::vector<JoinToken>> SqliteClusterStore::ReadJoinTokens() {
  absl::StatusOr<Statement> query =
      db_->Prepare(fmt::format("SELECT {} FROM join_tokens ORDER BY id", kJoinTokenColumns));
  if (!query.ok()) return query.status();
  return CollectRows(*query, JoinTokenFromRow);
}

absl::Status SqliteClusterStore::WriteNodeChange(Node& node, bool insert) {
  absl::StatusOr<int64_t> revision = BumpRevision();
  if (!revision.ok()) return revision.status();
  node.revision = *revision;
  if (absl::Status s = WriteNode(node, insert); !s.ok()) return s;
  return AppendChange(node.revision, Change::Kind::kNode, node.id, Change::Op::kUpsert,
                      NodeToJson(node));
}

absl::Status SqliteClusterStore::WriteJoinTokenChange(JoinToken& token, bool insert) {
  absl::StatusOr<int64_t> revision = BumpRevision();
  if (!revision.ok()) return revision.status();
  token.revision = *revision;
  if (absl::Status s = WriteJoinToken(token, insert); !s.ok()) return s;
  return AppendChange(token.revision, Change::Kind::kJoinToken, token.id, Change::Op::kUpsert,
                      JoinTokenToJson(token));
}

absl::Status SqliteClusterStore::DeleteRow(Change::Kind kind, const std::string& id,
                                           const std::string& record) {
  absl::StatusOr<int64_t> revision = BumpRevision();
  if (!revision.ok()) return revision.status();
  absl::StatusOr<Statement> erase =
      db_->Prepare(kind == Change::Kind::kNode ? "DELETE FROM nodes WHERE id = ?"
                                               : "DELETE FROM join_tokens WHERE id = ?");
  if (!erase.ok()) return erase.status();
  erase->Bind(1, id);
  if (absl::Status s = erase->Run(); !s.ok()) return s;
  return AppendChange(*revision, kind, id, Change::Op::kDelete, record);
}

absl::StatusOr<Node> SqliteClusterStore::PutNode(const Node& node, bool insert) {
  if (absl::Status s = ValidateNode(node); !s.ok()) return s;
  std::lock_guard lock(mu_);
  absl::StatusOr<Transaction> transaction = Transaction::Begin(*db_);
  if (!transaction.ok()) return transaction.status();
  absl::StatusOr<Node> existing = ReadNode(node.id);
  if (insert && existing.ok()) {
    return absl::AlreadyExistsError(fmt::format("node {} already exists", node.id));
  }
  if (!existing.ok() && !(insert && absl::IsNotFound(existing.status()))) {
    return existing.status();
  }
  if (node.state != NodeState::kRemoved) {
    if (absl::Status s = CheckHostnameFree(node.hostname, node.id); !s.ok()) return s;
  }
  Node stored = node;
  // A read-modify-write (say, an admin's label change) must not roll back a heartbeat recorded
  // in between.
  if (existing.ok() && existing->last_heartbeat > stored.last_heartbeat) {
    stored.last_heartbeat = existing->last_heartbeat;
  }
  if (absl::Status s = WriteNodeChange(stored, insert); !s.ok()) return s;
  if (absl::Status s = transaction->Commit(); !s.ok()) return s;
  return stored;
}

absl::StatusOr<Node> SqliteClusterStore::CreateNode(const Node& node) {
  return PutNode(node, /*insert=*/true);
}

absl::StatusOr<Node> SqliteClusterStore::UpdateNode(const Node& node) {
  return PutNode(node, /*insert=*/false);
}

absl::StatusOr<Node> SqliteClusterStore::SetNodeState(const std::string& id, NodeState state) {
  if (absl::Status s = ValidateId("node", id); !s.ok()) return s;
  if (absl::Status s = ValidateState(state); !s.ok()) return s;
  std::lock_guard lock(mu_);
  absl::StatusOr<Transaction> transaction = Transaction::Begin(*db_);
  if (!transaction.ok()) return transaction.status();
  absl::StatusOr<Node> node = ReadNode(id);
  if (!node.ok() || node->state == state) return node;
  if (node->state == NodeState::kRemoved) {
    if (absl::Status s = CheckHostnameFree(node->hostname, id); !s.ok()) return s;
  }
  node->state = state;
  if (absl::Status s = WriteNodeChange(*node, /*insert=*/false); !s.ok()) return s;
  if (absl::Status s = transaction->Commit(); !s.ok()) return s;
  return node;
}

absl::Status SqliteClusterStore::RecordHeartbeat(const std::string& id, TimePoint at) {
  if (absl::Status s = ValidateId("node", id); !s.ok()) return s;
  std::lock_guard lock(mu_);
  // One statement in autocommit mode: its own durable transaction, with no revision bump.
  absl::StatusOr<Statement> update =
      db_->Prepare("UPDATE nodes SET last_heartbeat_ns = ? WHERE id = ?");
  if (!update.ok()) return update.status();
  update->Bind(1, UnixNanos(at)).Bind(2, id);
  if (absl::Status s = update->Run(); !s.ok()) return s;
  if (db_->ChangedRows() == 0)
    return absl::NotFoundError(fmt::format("node {} does not exist", id));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> SqliteClusterStore::RecordHeartbeats(
    const std::vector<Heartbeat>& heartbeats) {
  for (const Heartbeat& heartbeat : heartbeats) {
    if (absl::Status s = ValidateId("node", heartbeat.node_id); !s.ok()) return s;
  }
  std::lock_guard lock(mu_);
  absl::StatusOr<Transaction> transaction = Transaction::Begin(*db_);
  if (!transaction.ok()) return transaction.status();
  absl::StatusOr<Statement> update =
      db_->Prepare("UPDATE nodes SET last_heartbeat_ns = ? WHERE id = ?");
  if (!update.ok()) return update.status();
  std::vector<std::string> unknown;
  for (const Heartbeat& heartbeat : heartbeats) {
    update->Reset();
    update->Bind(1, UnixNanos(heartbeat.at)).Bind(2, heartbeat.node_id);
    if (absl::Status s = update->Run(); !s.ok()) return s;
    if (db_->ChangedRows() == 0) unknown.push_back(heartbeat.node_id);
  }
  if (absl::Status s = transaction->Commit(); !s.ok()) return s;
  return unknown;
}

absl::Status SqliteClusterStore::DeleteNode(const std::string& id) {
  if (absl::Status s = ValidateId("node", id); !s.ok()) return s;
  std::lock_guard lock(mu_);
  absl::StatusOr<Transaction> transaction = Transaction::Begin(*db_);
  if (!transaction.ok()) return transaction.status();
  absl::StatusOr<Node> node = ReadNode(id);
  if (!node.ok()) return node.status();
  if (absl::Status s = DeleteRow(Change::Kind::kNode, id, NodeToJson(*node)); !s.ok()) return s;
  return transaction->Commit();
}

absl::StatusOr<Node> SqliteClusterStore::GetNode(const std::string& id) {
  if (absl::Status s = ValidateId("node", id); !s.ok()) return s;
  std::lock_guard lock(mu_);
  return ReadNode(id);
}

absl::StatusOr<Node> SqliteClusterStore::FindNodeByHostname(const std::string& hostname) {
  if (hostname.empty()) return absl::InvalidArgumentError("hostname is empty");
  std::lock_guard lock(mu_);
  absl::StatusOr<Statement> query = db_->Prepare(
      fmt::format("SELECT {} FROM nodes WHERE hostname = ? AND state != 'REMOVED'", kNodeColumns));
  if (!query.ok()) return query.status();
  query->Bind(1, hostname);
  absl::StatusOr<std::vector<Node>> nodes = CollectRows(*query, NodeFromRow);
  if (!nodes.ok()) return nodes.status();
  if (nodes->empty()) return absl::NotFoundError(fmt::format("no node has hostname {}", hostname));
  return std::move(nodes->front());
}

absl::StatusOr<std::vector<Node>> SqliteClusterStore::ListNodes() {
  std::lock_guard lock(mu_);
  return ReadNodes();
}

absl::StatusOr<JoinToken> SqliteClusterStore::CreateJoinToken(const JoinToken& token) {
  if (absl::Status s = ValidateJoinToken(token); !s.ok()) return s;
  std::lock_guard lock(mu_);
  absl::StatusOr<Transaction> transaction = Transaction::Begin(*db_);
  if (!transaction.ok()) return transaction.status();
  if (absl::StatusOr<JoinToken> existing = ReadJoinToken(token.id); existing.ok()) {
    return absl::AlreadyExistsError(fmt::format("join token {} already exists", token.id));
  } else if (!absl::IsNotFound(existing.status())) {
    return existing.status();
  }
  JoinToken stored = token;
  if (absl::Status s = WriteJoinTokenChange(stored, /*insert=*/true); !s.ok()) return s;
  if (absl::Status s = transaction->Commit(); !s.ok()) return s;
  return stored;
}

absl::StatusOr<JoinToken> SqliteClusterStore::GetJoinToken(const std::string& id) {
  if (absl::Status s = ValidateId("join token", id); !s.ok()) return s;
  std::lock_guard lock(mu_);
  return ReadJoinToken(id);
}

absl::StatusOr<std::vector<JoinToken>> SqliteClusterStore::ListJoinTokens() {
  std::lock_guard lock(mu_);
  return ReadJoinTokens();
}

absl::StatusOr<JoinToken> SqliteClusterStore::RevokeJoinToken(const std::string& id,
                                                              TimePoint now) {
  if (absl::Status s = ValidateId("join token", id); !s.ok()) return s;
  std::lock_guard lock(mu_);
  absl::StatusOr<Transaction> transaction = Transaction::Begin(*db_);
  if (!transaction.ok()) return transaction.status();
  absl::StatusOr<JoinToken> token = ReadJoinToken(id);
  if (!token.ok() || token->revoked_at.has_value()) return token;
  token->revoked_at = now;
  if (absl::Status s = WriteJoinTokenChange(*token, /*insert=*/false); !s.ok()) return s;
  if (absl::Status s = transaction->Commit(); !s.ok()) return s;
  return token;
}

absl::Status SqliteClusterStore::DeleteJoinToken(const std::string& id) {
  if (absl::Status s = ValidateId("join token", id); !s.ok()) return s;
  std::lock_guard lock(mu_);
  absl::StatusOr<Transaction> transaction = Transaction::Begin(*db_);
  if (!transaction.ok()) return transaction.status();
  absl::StatusOr<JoinToken> token = ReadJoinToken(id);
  if (!token.ok()) return token.status();
  if (absl::Status s = DeleteRow(Change::Kind::kJoinToken, id, JoinTokenToJson(*token)); !s.ok()) {
    return s;
  }
  return transaction->Commit();
}

absl::StatusOr<JoinToken> SqliteClusterStore::ConsumeJoinToken(const std::string& id,
                                                               const std::string& secret_hash,
                                                               TimePoint now) {
  if (absl::Status s = ValidateId("join token", id); !s.ok()) return s;
  if (!common::IsSha256Hex(secret_hash)) {
    return absl::InvalidArgumentError("join token secret hash must be 64 lower-case hex digits");
  }
  std::lock_guard lock(mu_);
  absl::StatusOr<Transaction> transaction = Transaction::Begin(*db_);
  if (!transaction.ok()) return transaction.status();
  absl::StatusOr<JoinToken> token = ReadJoinToken(id);
  if (!token.ok() && !absl::IsNotFound(token.status())) return token.status();
  if (!token.ok() || !ConstantTimeEquals(token->secret_hash, secret_hash)) {
    return absl::UnauthenticatedError("join token is unknown or its secret does not match");
  }
  if (token->revoked_at.has_value()) {
    return absl::UnauthenticatedError(
        fmt::format("join token {} was revoked; ask an admin for a new one", id));
  }
  if (now >= token->expires_at) {
    return absl::UnauthenticatedError(
        fmt::format("join token {} has expired; ask an admin for a new one", id));
  }
  if (token->max_uses.has_value() && token->use_count >= *token->max_uses) {
    return absl::UnauthenticatedError(
        fmt::format("join token {} has been used {} of {} times; ask an admin for a new one", id,
                    token->use_count, *token->max_uses));
  }
  ++token->use_count;
  if (absl::Status s = WriteJoinTokenChange(*token, /*insert=*/false); !s.ok()) return s;
  if (absl::Status s = transaction->Commit(); !s.ok()) return s;
  return token;
}

absl::StatusOr<int64_t> SqliteClusterStore::CurrentRevision() {
  std::lock_guard lock(mu_);
  return ReadRevision();
}

absl::StatusOr<std::vector<Change>> SqliteClusterStore::ChangesSince(int64_t revision, int limit) {
  if (revision < 0) {
    return absl::InvalidArgumentError(fmt::format("revision {} is negative", revision));
  }
  if (limit <= 0) return absl::InvalidArgumentError(fmt::format("limit {} is not positive", limit));
  std::lock_guard lock(mu_);
  // Deferred: a read transaction so the bounds and the rows agree even with another writer.
  absl::StatusOr<Transaction> transaction = Transaction::Begin(*db_, Transaction::Mode::kDeferred);
  if (!transaction.ok()) return transaction.status();
  absl::StatusOr<Statement> bounds =
      db_->Prepare("SELECT revision, compacted_through FROM cluster_state");
  if (!bounds.ok()) return bounds.status();
  absl::StatusOr<bool> bounds_row = bounds->Step();
  if (!bounds_row.ok()) return bounds_row.status();
  if (!*bounds_row) return absl::DataLossError("the cluster_state row is missing");
  const int64_t current = bounds->ColumnInt64(0);
  const int64_t compacted_through = bounds->ColumnInt64(1);
  if (revision > current) {
    return absl::OutOfRangeError(
        fmt::format("revision {} is ahead of the store's revision {}; take a full snapshot",
                    revision, current));
  }
  if (revision < compacted_through) {
    return absl::OutOfRangeError(fmt::format(
        "changes up to revision {} were compacted, so those after {} are incomplete; take a full "
        "snapshot",
        compacted_through, revision));
  }
  absl::StatusOr<Statement> query = db_->Prepare(
      "SELECT revision, kind, key, op, record, at_ns FROM changes WHERE revision > ? "
      "ORDER BY revision LIMIT ?");
  if (!query.ok()) return query.status();
  query->Bind(1, revision).Bind(2, int64_t{limit});
  absl::StatusOr<std::vector<Change>> changes = CollectRows(*query, ChangeFromRow);
  if (!changes.ok()) return changes.status();
  if (absl::Status s = transaction->Commit(); !s.ok()) return s;
  return changes;
}

absl::Status SqliteClusterStore::CompactChangesBefore(int64_t revision) {
  if (revision < 0) {
    return absl::InvalidArgumentError(fmt::format("revision {} is negative", revision));
  }
  std::lock_guard lock(mu_);
  absl::StatusOr<Transaction> transaction = Transaction::Begin(*db_);
  if (!transaction.ok()) return transaction.status();
  absl::StatusOr<int64_t> current = ReadRevision();
  if (!current.ok()) return current.status();
  const int64_t before = std::min(revision, *current + 1);
  absl::StatusOr<Statement> erase = db_->Prepare("DELETE FROM changes WHERE revision < ?");
  if (!erase.ok()) return erase.status();
  erase->Bind(1, before);
  if (absl::Status s = erase->Run(); !s.ok()) return s;
  absl::StatusOr<Statement> mark =
      db_->Prepare("UPDATE cluster_state SET compacted_through = MAX(compacted_through, ?)");
  if (!mark.ok()) return mark.status();
  mark->Bind(1, before - 1);
  if (absl::Status s = mark->Run(); !s.ok()) return s;
  return transaction->Commit();
}

absl::StatusOr<ClusterSnapshot> SqliteClusterStore::Snapshot() {
  std::lock_guard lock(mu_);
  absl::StatusOr<Transaction> transaction = Transaction::Begin(*db_, Transaction::Mode::kDeferred);
  if (!transaction.ok()) return transaction.status();
  ClusterSnapshot snapshot;
  absl::StatusOr<int64_t> revision = ReadRevision();
  if (!revision.ok()) return revision.status();
  snapshot.revision = *revision;
  absl::StatusOr<std::vector<Node>> nodes = ReadNodes();
  if (!nodes.ok()) return nodes.status();
  snapshot.nodes = *std::move(nodes);
  absl::StatusOr<std::vector<JoinToken>> tokens = ReadJoinTokens();
  if (!tokens.ok()) return tokens.status();
  snapshot.join_tokens = *std::move(tokens);
  if (absl::Status s = transaction->Commit(); !s.ok()) return s;
  return snapshot;
}

}  // namespace pi::controlplane::store
