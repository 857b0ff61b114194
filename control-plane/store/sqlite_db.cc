#include "control-plane/store/sqlite_db.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace pi::controlplane::store {

absl::Status SqliteStatus(int code, std::string_view operation, std::string_view detail) {
  const std::string message = fmt::format("{}: {} ({})", operation, detail, sqlite3_errstr(code));
  switch (code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(
          fmt::format("{}; the database is held by another writer, retry later", message));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(message);
    case SQLITE_CONSTRAINT:
      if (code == SQLITE_CONSTRAINT_UNIQUE || code == SQLITE_CONSTRAINT_PRIMARYKEY) {
        return absl::AlreadyExistsError(message);
      }
      return absl::FailedPreconditionError(message);
    default:
      return absl::InternalError(message);
  }
}

Statement::Statement(sqlite3* db, sqlite3_stmt* statement, std::string sql)
    : db_(db), statement_(statement), sql_(std::move(sql)) {}

Statement::Statement(Statement&& other) noexcept
    : db_(other.db_),
      statement_(std::exchange(other.statement_, nullptr)),
      sql_(std::move(other.sql_)),
      bind_status_(std::move(other.bind_status_)) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(statement_);
    db_ = other.db_;
    statement_ = std::exchange(other.statement_, nullptr);
    sql_ = std::move(other.sql_);
    bind_status_ = std::move(other.bind_status_);
  }
  return *this;
}

Statement::~Statement() { sqlite3_finalize(statement_); }

void Statement::RecordBind(int code, int index) {
  if (code != SQLITE_OK && bind_status_.ok()) {
    bind_status_ = SqliteStatus(code, fmt::format("binding parameter {} of \"{}\"", index, sql_),
                                sqlite3_errmsg(db_));
  }
}

Statement& Statement::Bind(int index, std::string_view value) {
  // An empty string_view may have a null data(), which SQLite would bind as NULL, not "".
  const char* data = value.data() != nullptr ? value.data() : "";
  RecordBind(
      sqlite3_bind_text64(statement_, index, data, value.size(), SQLITE_TRANSIENT, SQLITE_UTF8),
      index);
  return *this;
}

Statement& Statement::Bind(int index, int64_t value) {
  RecordBind(sqlite3_bind_int64(statement_, index, value), index);
  return *this;
}

Statement& Statement::Bind(int index, std::optional<int64_t> value) {
  return value.has_value() ? Bind(index, *value) : BindNull(index);
}

Statement& Statement::BindBlob(int index, std::string_view bytes) {
  // A null data() would bind NULL; an empty blob must stay an empty blob.
  static constexpr char kEmpty = 0;
  const char* data = bytes.data() != nullptr ? bytes.data() : &kEmpty;
  RecordBind(sqlite3_bind_blob64(statement_, index, data, bytes.size(), SQLITE_TRANSIENT), index);
  return *this;
}

Statement& Statement::BindNull(int index) {
  RecordBind(sqlite3_bind_null(statement_, index), index);
  return *this;
}

absl::StatusOr<bool> Statement::Step() {
  if (!bind_status_.ok()) return bind_status_;
  const int code = sqlite3_step(statement_);
  if (code == SQLITE_ROW) return true;
  if (code == SQLITE_DONE) return false;
  // sqlite3_errmsg is only meaningful before the statement is reset.
  absl::Status status = SqliteStatus(sqlite3_extended_errcode(db_),
                                     fmt::format("running \"{}\"", sql_), sqlite3_errmsg(db_));
  sqlite3_reset(statement_);
  return status;
}

absl::Status Statement::Run() {
  while (true) {
    absl::StatusOr<bool> row = Step();
    if (!row.ok()) return row.status();
    if (!*row) return absl::OkStatus();
  }
}

void Statement::Reset() {
  sqlite3_reset(statement_);
  sqlite3_clear_bindings(statement_);
  bind_status_ = absl::OkStatus();
}

int64_t Statement::ColumnInt64(int column) const {
  return sqlite3_column_int64(statement_, column);
}

std::optional<int64_t> Statement::ColumnOptionalInt64(int column) const {
  if (sqlite3_column_type(statement_, column) == SQLITE_NULL) return std::nullopt;
  return sqlite3_column_int64(statement_, column);
}

std::string Statement::ColumnText(int column) const {
  const unsigned char* text = sqlite3_column_text(statement_, column);
  if (text == nullptr) return "";
  return std::string(reinterpret_cast<const char*>(text),
                     static_cast<size_t>(sqlite3_column_bytes(statement_, column)));
}

std::string Statement::ColumnBlob(int column) const {
  const void* bytes = sqlite3_column_blob(statement_, column);
  if (bytes == nullptr) return "";
  return std::string(static_cast<const char*>(bytes),
                     static_cast<size_t>(sqlite3_column_bytes(statement_, column)));
}

absl::StatusOr<std::unique_ptr<SqliteDb>> SqliteDb::Open(const std::string& path,
                                                         const Options& options) {
  if (path.empty()) return absl::InvalidArgumentError("database path is empty");
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code error;
  if (!parent.empty() && !std::filesystem::is_directory(parent, error)) {
    return absl::FailedPreconditionError(fmt::format(
        "cannot open database {}: directory {} does not exist; create the state directory first",
        path, parent.string()));
  }
  // Create the file ourselves so it is 0600 from the first byte: it holds token hashes and node
  // identities. SQLite gives the -wal and -shm files the same mode as the database file.
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        fmt::format("cannot open database {}: {}", path, std::strerror(errno)));
  }
  close(fd);

  sqlite3* raw = nullptr;
  const int code =
      sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<SqliteDb> db(new SqliteDb(raw, path));
  if (code != SQLITE_OK) {
    return SqliteStatus(code, fmt::format("opening database {}", path),
                        raw != nullptr ? sqlite3_errmsg(raw) : "out of memory");
  }
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, static_cast<int>(options.busy_timeout.count()));

  // journal_mode answers with the mode in effect; anything but "wal" (e.g. on a file system
  // without shared memory) would silently lose the concurrency the store relies on.
  absl::StatusOr<Statement> journal = db->Prepare("PRAGMA journal_mode=WAL");
  if (!journal.ok()) return journal.status();
  absl::StatusOr<bool> row = journal->Step();
  if (!row.ok()) return row.status();
  if (!*row || journal->ColumnText(0) != "wal") {
    return absl::FailedPreconditionError(
        fmt::format("database {} cannot use write-ahead logging (journal mode is \"{}\")", path,
                    *row ? journal->ColumnText(0) : ""));
  }
  if (absl::Status s = db->Exec("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
                                fmt::format("configuring database {}", path));
      !s.ok()) {
    return s;
  }
  return db;
}

SqliteDb::~SqliteDb() { sqlite3_close_v2(db_); }

absl::Status SqliteDb::Exec(std::string_view sql, std::string_view operation) {
  char* error = nullptr;
  const int code = sqlite3_exec(db_, std::string(sql).c_str(), nullptr, nullptr, &error);
  if (code == SQLITE_OK) return absl::OkStatus();
  const std::string detail = error != nullptr ? error : sqlite3_errmsg(db_);
  sqlite3_free(error);
  return SqliteStatus(sqlite3_extended_errcode(db_), operation, detail);
}

absl::StatusOr<Statement> SqliteDb::Prepare(std::string_view sql) {
  sqlite3_stmt* statement = nullptr;
  const int code =
      sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &statement, nullptr);
  if (code != SQLITE_OK) {
    return SqliteStatus(code, fmt::format("preparing \"{}\"", sql), sqlite3_errmsg(db_));
  }
  return Statement(db_, statement, std::string(sql));
}

int64_t SqliteDb::ChangedRows() const { return sqlite3_changes64(db_); }

absl::StatusOr<Transaction> Transaction::Begin(SqliteDb& db, Mode mode) {
  if (absl::Status s = db.Exec(mode == Mode::kImmediate ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED",
                               "starting a transaction");
      !s.ok()) {
    return s;
  }
  return Transaction(&db);
}

Transaction::Transaction(Transaction&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}

Transaction::~Transaction() {
  // A failed rollback leaves nothing to do: SQLite rolls back an open transaction when the
  // connection is closed, and the next BEGIN on this connection reports the problem.
  if (db_ != nullptr) db_->Exec("ROLLBACK", "rolling back").IgnoreError();
}

absl::Status Transaction::Commit() {
  if (db_ == nullptr) return absl::InternalError("transaction committed twice");
  absl::Status status = db_->Exec("COMMIT", "committing");
  // After a failed COMMIT the transaction is still open; the destructor rolls it back.
  if (status.ok()) db_ = nullptr;
  return status;
}

absl::StatusOr<int> SchemaVersion(SqliteDb& db) {
  if (absl::Status s = db.Exec("CREATE TABLE IF NOT EXISTS schema_migrations ("
                               " version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
                               "applied_at_ns INTEGER NOT NULL)",
                               "creating schema_migrations");
      !s.ok()) {
    return s;
  }
  absl::StatusOr<Statement> query =
      db.Prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
  if (!query.ok()) return query.status();
  absl::StatusOr<bool> row = query->Step();
  if (!row.ok()) return row.status();
  return static_cast<int>(query->ColumnInt64(0));
}

absl::Status ApplyMigrations(SqliteDb& db, std::span<const Migration> migrations,
                             std::chrono::system_clock::time_point now) {
  for (size_t i = 0; i < migrations.size(); ++i) {
    if (migrations[i].version != static_cast<int>(i) + 1) {
      return absl::InternalError(
          fmt::format("migration list is not numbered 1, 2, 3...: entry {} has version {}", i,
                      migrations[i].version));
    }
  }
  const int latest = static_cast<int>(migrations.size());
  while (true) {
    absl::StatusOr<Transaction> transaction = Transaction::Begin(db);
    if (!transaction.ok()) return transaction.status();
    // Read inside the write transaction, so two processes opening the same file at once cannot
    // both apply the same migration.
    absl::StatusOr<int> version = SchemaVersion(db);
    if (!version.ok()) return version.status();
    if (*version > latest) {
      return absl::FailedPreconditionError(fmt::format(
          "database {} has schema version {} but this binary knows versions up to {}: it was "
          "created by a newer pi-controller; run that version or restore a backup",
          db.path(), *version, latest));
    }
    if (*version == latest) return absl::OkStatus();
    const Migration& migration = migrations[static_cast<size_t>(*version)];
    if (absl::Status s = db.Exec(
            migration.sql, fmt::format("applying schema migration {} ({}) to {}", migration.version,
                                       migration.description, db.path()));
        !s.ok()) {
      return s;
    }
    absl::StatusOr<Statement> record = db.Prepare(
        "INSERT INTO schema_migrations (version, description, applied_at_ns) VALUES (?, ?, ?)");
    if (!record.ok()) return record.status();
    record->Bind(1, int64_t{migration.version})
        .Bind(2, migration.description)
        .Bind(3,
              int64_t{std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch())
                          .count()});
    if (absl::Status s = record->Run(); !s.ok()) return s;
    if (absl::Status s = transaction->Commit(); !s.ok()) return s;
  }
}

}  // namespace pi::controlplane::store
