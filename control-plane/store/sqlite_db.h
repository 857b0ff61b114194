#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Forward declarations keep <sqlite3.h> out of every file that includes this one.
struct sqlite3;
struct sqlite3_stmt;

namespace pi::controlplane::store {

// Turns a SQLite result code into a Status that names what was being done: BUSY/LOCKED (still
// held after the busy timeout) are UNAVAILABLE, CORRUPT/NOTADB are DATA_LOSS, a UNIQUE or
// PRIMARY KEY violation is ALREADY_EXISTS, any other constraint is FAILED_PRECONDITION, and
// everything else is INTERNAL.
absl::Status SqliteStatus(int code, std::string_view operation, std::string_view detail);

// One prepared statement. Bind indexes are 1-based and column indexes 0-based, as in SQLite.
class Statement {
 public:
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  Statement& Bind(int index, std::string_view value);
  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, std::optional<int64_t> value);
  Statement& BindNull(int index);
  // Binary data, stored as a BLOB (Bind(string_view) stores TEXT).
  Statement& BindBlob(int index, std::string_view bytes);

  // Advances to the next row: true when a row is available, false when the statement is done.
  // A bind that failed earlier is reported here.
  absl::StatusOr<bool> Step();
  // Steps until done; for statements that return no rows.
  absl::Status Run();
  // Makes the statement ready to run again with new binds (all parameters become NULL).
  void Reset();

  int64_t ColumnInt64(int column) const;
  std::optional<int64_t> ColumnOptionalInt64(int column) const;
  std::string ColumnText(int column) const;
  // TEXT or BLOB column as raw bytes.
  std::string ColumnBlob(int column) const;

 private:
  friend class SqliteDb;
  Statement(sqlite3* db, sqlite3_stmt* statement, std::string sql);
  void RecordBind(int code, int index);

  sqlite3* db_;
  sqlite3_stmt* statement_;
  std::string sql_;  // For error messages.
  absl::Status bind_status_;
};

// One SQLite connection in WAL mode with synchronous=FULL, so a committed transaction survives a
// crash of the process and of the machine.
//
// Thread-safety: a SqliteDb is NOT safe for concurrent use; its owner serializes every call (the
// cluster store holds one mutex around each operation). Several SqliteDb objects, in one process or
// several, may open the same file: SQLite's file locks and the busy timeout arbitrate between them.
class SqliteDb {
 public:
  struct Options {
    // How long a writer waits for another connection's write lock before giving up (UNAVAILABLE).
    std::chrono::milliseconds busy_timeout{5000};
  };

  // Opens (creating, with mode 0600, if absent) the database at `path`. The parent directory must
  // already exist: the state directory is the operator's, so a typo fails here instead of
  // silently creating a new, empty cluster elsewhere.
  static absl::StatusOr<std::unique_ptr<SqliteDb>> Open(const std::string& path,
                                                        const Options& options);
  static absl::StatusOr<std::unique_ptr<SqliteDb>> Open(const std::string& path) {
    return Open(path, Options{});
  }

  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;
  ~SqliteDb();

  // Runs one or more statements that return no rows (schema changes, PRAGMAs). `operation` names
  // the work in an error message.
  absl::Status Exec(std::string_view sql, std::string_view operation);
  absl::StatusOr<Statement> Prepare(std::string_view sql);
  // Rows changed by the last INSERT/UPDATE/DELETE.
  int64_t ChangedRows() const;
  const std::string& path() const { return path_; }

 private:
  SqliteDb(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

  sqlite3* db_;
  std::string path_;
};

// A write transaction: BEGIN IMMEDIATE takes the write lock up front (waiting up to the busy
// timeout), so a read-then-write inside it can never fail half-way with SQLITE_BUSY. Rolled back
// on destruction unless Commit() succeeded.
class Transaction {
 public:
  enum class Mode { kImmediate, kDeferred };
  static absl::StatusOr<Transaction> Begin(SqliteDb& db, Mode mode = Mode::kImmediate);

  Transaction(Transaction&& other) noexcept;
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();

  absl::Status Commit();

 private:
  explicit Transaction(SqliteDb* db) : db_(db) {}
  SqliteDb* db_;  // Null once committed, rolled back or moved from.
};

// One step of the schema. Versions are applied in increasing order, each in its own transaction.
struct Migration {
  int version;
  std::string_view description;
  std::string_view sql;
};

// The highest version recorded in schema_migrations (0 for a fresh database).
absl::StatusOr<int> SchemaVersion(SqliteDb& db);

// Brings the schema up to the last of `migrations` (which must be sorted by version, starting at
// 1, without gaps). A database whose version is newer than the last known one is refused with
// FAILED_PRECONDITION: an older binary must not write to a schema it does not understand. A
// migration that fails is rolled back, leaving the version at the one before it.
absl::Status ApplyMigrations(SqliteDb& db, std::span<const Migration> migrations,
                             std::chrono::system_clock::time_point now);

}  // namespace pi::controlplane::store
