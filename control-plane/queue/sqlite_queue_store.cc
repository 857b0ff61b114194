#include "control-plane/queue/sqlite_queue_store.h"

#include <fmt/format.h>

#include <array>
#include <nlohmann/json.hpp>

namespace pi::controlplane::queue {
namespace {

using store::Migration;
using store::Statement;

constexpr std::array<Migration, 1> kMigrations = {{
    {1, "queue messages",
     R"sql(
CREATE TABLE queue_messages (
  id             TEXT NOT NULL UNIQUE,
  route          TEXT NOT NULL,
  received_at_ns INTEGER NOT NULL,
  next_run_at_ns INTEGER NOT NULL,
  attempt        INTEGER NOT NULL,
  state          INTEGER NOT NULL,
  lease_id       TEXT NOT NULL,
  dead_reason    TEXT NOT NULL,
  dead_at_ns     INTEGER NOT NULL,
  payload        BLOB NOT NULL,
  headers        TEXT NOT NULL,
  trace          TEXT NOT NULL
);
)sql"},
}};

int64_t ToNanos(WallTime time) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch()).count();
}

WallTime FromNanos(int64_t nanos) {
  return WallTime(std::chrono::duration_cast<WallTime::duration>(std::chrono::nanoseconds(nanos)));
}

// Values are UTF-8 by contract; replacing a stray invalid byte beats throwing on a commit thread.
std::string HeadersToJson(const Headers& headers) {
  return nlohmann::json(headers).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

absl::StatusOr<Headers> HeadersFromJson(const std::string& text, const std::string& id) {
  nlohmann::json parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object()) {
    return absl::DataLossError(
        fmt::format("queue message {}: stored headers are not a JSON object", id));
  }
  Headers headers;
  for (const auto& [name, value] : parsed.items()) {
    if (!value.is_string()) {
      return absl::DataLossError(
          fmt::format("queue message {}: header {} is not a string", id, name));
    }
    headers[name] = value.get<std::string>();
  }
  return headers;
}

}  // namespace

struct SqliteQueueStore::Statements {
  Statement insert;
  Statement update;
  Statement remove;
};

SqliteQueueStore::SqliteQueueStore(std::unique_ptr<store::SqliteDb> db,
                                   std::unique_ptr<Statements> statements)
    : db_(std::move(db)), statements_(std::move(statements)) {}

SqliteQueueStore::~SqliteQueueStore() = default;

std::span<const Migration> SqliteQueueStore::Migrations() { return kMigrations; }

absl::StatusOr<std::unique_ptr<SqliteQueueStore>> SqliteQueueStore::Open(
    const std::string& path, const pi::common::Clock& clock,
    const store::SqliteDb::Options& options) {
  absl::StatusOr<std::unique_ptr<store::SqliteDb>> db = store::SqliteDb::Open(path, options);
  if (!db.ok()) return db.status();
  if (absl::Status s = store::ApplyMigrations(**db, kMigrations, clock.WallNow()); !s.ok()) {
    return s;
  }
  absl::StatusOr<Statement> insert = (*db)->Prepare(
      "INSERT INTO queue_messages (id, route, received_at_ns, next_run_at_ns, attempt, state, "
      "lease_id, dead_reason, dead_at_ns, payload, headers, trace) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
  if (!insert.ok()) return insert.status();
  absl::StatusOr<Statement> update = (*db)->Prepare(
      "UPDATE queue_messages SET state = ?2, attempt = ?3, next_run_at_ns = ?4, lease_id = ?5, "
      "dead_reason = ?6, dead_at_ns = ?7 WHERE id = ?1");
  if (!update.ok()) return update.status();
  absl::StatusOr<Statement> remove = (*db)->Prepare("DELETE FROM queue_messages WHERE id = ?1");
  if (!remove.ok()) return remove.status();
  auto statements = std::make_unique<Statements>(
      Statements{*std::move(insert), *std::move(update), *std::move(remove)});
  return std::unique_ptr<SqliteQueueStore>(
      new SqliteQueueStore(*std::move(db), std::move(statements)));
}

absl::StatusOr<std::vector<StoredMessage>> SqliteQueueStore::LoadAll() {
  absl::StatusOr<Statement> query = db_->Prepare(
      "SELECT id, route, received_at_ns, next_run_at_ns, attempt, state, lease_id, dead_reason, "
      "dead_at_ns, payload, headers, trace FROM queue_messages");
  if (!query.ok()) return query.status();
  std::vector<StoredMessage> messages;
  while (true) {
    absl::StatusOr<bool> row = query->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    StoredMessage message;
    message.id = query->ColumnText(0);
    message.route = query->ColumnText(1);
    message.received_at = FromNanos(query->ColumnInt64(2));
    message.next_run_at = FromNanos(query->ColumnInt64(3));
    message.attempt = static_cast<int>(query->ColumnInt64(4));
    const int64_t state = query->ColumnInt64(5);
    if (state < 0 || state > static_cast<int64_t>(ItemState::kDead)) {
      return absl::DataLossError(
          fmt::format("queue message {}: unknown state {}", message.id, state));
    }
    message.state = static_cast<ItemState>(state);
    message.lease_id = query->ColumnText(6);
    message.dead_reason = query->ColumnText(7);
    message.dead_at = FromNanos(query->ColumnInt64(8));
    message.payload = query->ColumnBlob(9);
    absl::StatusOr<Headers> headers = HeadersFromJson(query->ColumnText(10), message.id);
    if (!headers.ok()) return headers.status();
    message.headers = *std::move(headers);
    absl::StatusOr<Headers> trace = HeadersFromJson(query->ColumnText(11), message.id);
    if (!trace.ok()) return trace.status();
    message.trace = *std::move(trace);
    messages.push_back(std::move(message));
  }
  return messages;
}

absl::Status SqliteQueueStore::Apply(const QueueMutation& mutation) {
  if (const auto* message = std::get_if<StoredMessage>(&mutation)) {
    Statement& insert = statements_->insert;
    insert.Reset();
    insert.Bind(1, message->id)
        .Bind(2, message->route)
        .Bind(3, ToNanos(message->received_at))
        .Bind(4, ToNanos(message->next_run_at))
        .Bind(5, int64_t{message->attempt})
        .Bind(6, static_cast<int64_t>(message->state))
        .Bind(7, message->lease_id)
        .Bind(8, message->dead_reason)
        .Bind(9, ToNanos(message->dead_at))
        .BindBlob(10, message->payload)
        .Bind(11, HeadersToJson(message->headers))
        .Bind(12, HeadersToJson(message->trace));
    return insert.Run();
  }
  if (const auto* change = std::get_if<MessageStateChange>(&mutation)) {
    Statement& update = statements_->update;
    update.Reset();
    update.Bind(1, change->id)
        .Bind(2, static_cast<int64_t>(change->state))
        .Bind(3, int64_t{change->attempt})
        .Bind(4, ToNanos(change->next_run_at))
        .Bind(5, change->lease_id)
        .Bind(6, change->dead_reason)
        .Bind(7, ToNanos(change->dead_at));
    return update.Run();
  }
  Statement& remove = statements_->remove;
  remove.Reset();
  remove.Bind(1, std::get<MessageDelete>(mutation).id);
  return remove.Run();
}

absl::Status SqliteQueueStore::Commit(std::span<const QueueMutation> mutations) {
  if (mutations.empty()) return absl::OkStatus();
  absl::StatusOr<store::Transaction> transaction = store::Transaction::Begin(*db_);
  if (!transaction.ok()) return transaction.status();
  for (const QueueMutation& mutation : mutations) {
    if (absl::Status s = Apply(mutation); !s.ok()) return s;
  }
  return transaction->Commit();
}

}  // namespace pi::controlplane::queue
