#include "control-plane/store/sqlite_db.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "tests/common/test_dir.h"

namespace pi::controlplane::store {
namespace {

using pi::testing::TempDir;

const std::chrono::system_clock::time_point kNow{std::chrono::hours(24 * 365 * 50)};

std::unique_ptr<SqliteDb> OpenOrDie(const std::string& path, SqliteDb::Options options = {}) {
  absl::StatusOr<std::unique_ptr<SqliteDb>> db = SqliteDb::Open(path, options);
  REQUIRE(db.ok());
  return *std::move(db);
}

std::string QueryText(SqliteDb& db, const std::string& sql) {
  absl::StatusOr<Statement> query = db.Prepare(sql);
  REQUIRE(query.ok());
  absl::StatusOr<bool> row = query->Step();
  REQUIRE(row.ok());
  REQUIRE(*row);
  return query->ColumnText(0);
}

int64_t CountRows(SqliteDb& db, const std::string& table) {
  return std::stoll(QueryText(db, "SELECT COUNT(*) FROM " + table));
}

TEST_CASE("SqliteDb::Open creates the file with mode 0600 and turns on WAL, FULL sync, FKs") {
  TempDir dir;
  const std::string path = (dir.path() / "state.db").string();
  auto db = OpenOrDie(path);
  struct stat info {};
  REQUIRE(stat(path.c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0600);
  CHECK(QueryText(*db, "PRAGMA journal_mode") == "wal");
  CHECK(QueryText(*db, "PRAGMA synchronous") == "2");  // FULL
  CHECK(QueryText(*db, "PRAGMA foreign_keys") == "1");
}

TEST_CASE("SqliteDb::Open refuses a missing parent directory") {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<SqliteDb>> db =
      SqliteDb::Open((dir.path() / "no-such-dir" / "state.db").string());
  REQUIRE(absl::IsFailedPrecondition(db.status()));
  CHECK_THAT(std::string(db.status().message()), Catch::Contains("does not exist"));
}

TEST_CASE("SqliteDb::Open refuses an empty path") {
  CHECK(absl::IsInvalidArgument(SqliteDb::Open("").status()));
}

TEST_CASE("SqliteDb::Open reports a file that is not a database as DATA_LOSS") {
  TempDir dir;
  const std::string path =
      dir.Write("state.db", std::string(8192, 'x') + "this is not an SQLite database");
  CHECK(absl::IsDataLoss(SqliteDb::Open(path).status()));
}

TEST_CASE("SqliteStatus maps SQLite codes to status codes") {
  CHECK(absl::IsUnavailable(SqliteStatus(SQLITE_BUSY, "op", "d")));
  CHECK(absl::IsUnavailable(SqliteStatus(SQLITE_LOCKED, "op", "d")));
  CHECK(absl::IsDataLoss(SqliteStatus(SQLITE_CORRUPT, "op", "d")));
  CHECK(absl::IsDataLoss(SqliteStatus(SQLITE_NOTADB, "op", "d")));
  CHECK(absl::IsAlreadyExists(SqliteStatus(SQLITE_CONSTRAINT_UNIQUE, "op", "d")));
  CHECK(absl::IsAlreadyExists(SqliteStatus(SQLITE_CONSTRAINT_PRIMARYKEY, "op", "d")));
  CHECK(absl::IsFailedPrecondition(SqliteStatus(SQLITE_CONSTRAINT_NOTNULL, "op", "d")));
  CHECK(absl::IsFailedPrecondition(SqliteStatus(SQLITE_CONSTRAINT_FOREIGNKEY, "op", "d")));
  CHECK(absl::IsInternal(SqliteStatus(SQLITE_IOERR, "op", "d")));
  CHECK_THAT(std::string(SqliteStatus(SQLITE_IOERR, "writing node x", "disk").message()),
             Catch::Contains("writing node x"));
}

TEST_CASE("Statement binds and reads text, integers and NULL") {
  TempDir dir;
  auto db = OpenOrDie((dir.path() / "state.db").string());
  REQUIRE(db->Exec("CREATE TABLE t (s TEXT, i INTEGER, n INTEGER)", "create").ok());
  absl::StatusOr<Statement> insert = db->Prepare("INSERT INTO t VALUES (?, ?, ?)");
  REQUIRE(insert.ok());
  insert->Bind(1, std::string_view("a\0b", 3)).Bind(2, int64_t{-7}).Bind(3, std::nullopt);
  REQUIRE(insert->Run().ok());
  CHECK(db->ChangedRows() == 1);
  absl::StatusOr<Statement> select = db->Prepare("SELECT s, i, n FROM t");
  REQUIRE(select.ok());
  REQUIRE(*select->Step());
  CHECK(select->ColumnText(0) == std::string("a\0b", 3));
  CHECK(select->ColumnInt64(1) == -7);
  CHECK(select->ColumnOptionalInt64(1) == -7);
  CHECK_FALSE(select->ColumnOptionalInt64(2).has_value());
  CHECK_FALSE(*select->Step());
}

TEST_CASE("Statement binds an empty string_view as an empty string, not NULL") {
  TempDir dir;
  auto db = OpenOrDie((dir.path() / "state.db").string());
  REQUIRE(db->Exec("CREATE TABLE t (s TEXT NOT NULL)", "create").ok());
  absl::StatusOr<Statement> insert = db->Prepare("INSERT INTO t VALUES (?)");
  REQUIRE(insert.ok());
  insert->Bind(1, std::string_view());
  REQUIRE(insert->Run().ok());
  CHECK(QueryText(*db, "SELECT s FROM t").empty());
}

TEST_CASE("Statement::Reset runs the statement again with fresh binds") {
  TempDir dir;
  auto db = OpenOrDie((dir.path() / "state.db").string());
  REQUIRE(db->Exec("CREATE TABLE t (v INTEGER)", "create").ok());
  absl::StatusOr<Statement> insert = db->Prepare("INSERT INTO t VALUES (?)");
  REQUIRE(insert.ok());
  insert->Bind(1, int64_t{1});
  REQUIRE(insert->Run().ok());
  insert->Reset();
  REQUIRE(insert->Run().ok());  // The bind was cleared: inserts NULL.
  CHECK(QueryText(*db, "SELECT COUNT(*) FROM t WHERE v IS NULL") == "1");
  CHECK(CountRows(*db, "t") == 2);
}

TEST_CASE("Statement reports a bind to a parameter that does not exist when stepped") {
  TempDir dir;
  auto db = OpenOrDie((dir.path() / "state.db").string());
  absl::StatusOr<Statement> select = db->Prepare("SELECT ?");
  REQUIRE(select.ok());
  select->Bind(5, int64_t{1});
  CHECK(absl::IsInternal(select->Step().status()));
}

TEST_CASE("SqliteDb::Prepare reports bad SQL with the statement in the message") {
  TempDir dir;
  auto db = OpenOrDie((dir.path() / "state.db").string());
  absl::StatusOr<Statement> bad = db->Prepare("SELEKT 1");
  REQUIRE(absl::IsInternal(bad.status()));
  CHECK_THAT(std::string(bad.status().message()), Catch::Contains("SELEKT 1"));
}

TEST_CASE("A unique violation is ALREADY_EXISTS and a NOT NULL violation FAILED_PRECONDITION") {
  TempDir dir;
  auto db = OpenOrDie((dir.path() / "state.db").string());
  REQUIRE(db->Exec("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT NOT NULL)", "create").ok());
  REQUIRE(db->Exec("INSERT INTO t VALUES ('a', 'x')", "insert").ok());
  CHECK(absl::IsAlreadyExists(db->Exec("INSERT INTO t VALUES ('a', 'y')", "insert")));
  absl::StatusOr<Statement> insert = db->Prepare("INSERT INTO t VALUES ('b', NULL)");
  REQUIRE(insert.ok());
  CHECK(absl::IsFailedPrecondition(insert->Run()));
}

TEST_CASE("A transaction that is not committed is rolled back") {
  TempDir dir;
  auto db = OpenOrDie((dir.path() / "state.db").string());
  REQUIRE(db->Exec("CREATE TABLE t (v INTEGER)", "create").ok());
  {
    absl::StatusOr<Transaction> transaction = Transaction::Begin(*db);
    REQUIRE(transaction.ok());
    REQUIRE(db->Exec("INSERT INTO t VALUES (1)", "insert").ok());
  }
  CHECK(CountRows(*db, "t") == 0);
  {
    absl::StatusOr<Transaction> transaction = Transaction::Begin(*db);
    REQUIRE(transaction.ok());
    REQUIRE(db->Exec("INSERT INTO t VALUES (1)", "insert").ok());
    REQUIRE(transaction->Commit().ok());
    CHECK(absl::IsInternal(transaction->Commit()));
  }
  CHECK(CountRows(*db, "t") == 1);
}

TEST_CASE("A writer blocked past the busy timeout gets UNAVAILABLE") {
  TempDir dir;
  const std::string path = (dir.path() / "state.db").string();
  auto holder = OpenOrDie(path);
  auto waiter = OpenOrDie(path, {.busy_timeout = std::chrono::milliseconds(20)});
  absl::StatusOr<Transaction> held = Transaction::Begin(*holder);
  REQUIRE(held.ok());
  absl::StatusOr<Transaction> blocked = Transaction::Begin(*waiter);
  REQUIRE(absl::IsUnavailable(blocked.status()));
  CHECK_THAT(std::string(blocked.status().message()), Catch::Contains("starting a transaction"));
}

const Migration kThreeMigrations[] = {
    {1, "table a", "CREATE TABLE a (v INTEGER);"},
    {2, "table b", "CREATE TABLE b (v INTEGER);"},
    {3, "row in a", "INSERT INTO a VALUES (3);"},
};

TEST_CASE("ApplyMigrations brings a fresh database to the last version") {
  TempDir dir;
  auto db = OpenOrDie((dir.path() / "state.db").string());
  REQUIRE(*SchemaVersion(*db) == 0);
  REQUIRE(ApplyMigrations(*db, kThreeMigrations, kNow).ok());
  CHECK(*SchemaVersion(*db) == 3);
  CHECK(CountRows(*db, "a") == 1);
  CHECK(CountRows(*db, "b") == 0);
  CHECK(QueryText(*db, "SELECT description FROM schema_migrations WHERE version = 2") == "table b");
}

TEST_CASE("ApplyMigrations on a migrated database changes nothing") {
  TempDir dir;
  auto db = OpenOrDie((dir.path() / "state.db").string());
  REQUIRE(ApplyMigrations(*db, kThreeMigrations, kNow).ok());
  REQUIRE(ApplyMigrations(*db, kThreeMigrations, kNow).ok());
  CHECK(*SchemaVersion(*db) == 3);
  CHECK(CountRows(*db, "a") == 1);  // Migration 3 ran once.
  CHECK(CountRows(*db, "schema_migrations") == 3);
}

TEST_CASE("ApplyMigrations applies only the pending migrations of an older database") {
  TempDir dir;
  auto db = OpenOrDie((dir.path() / "state.db").string());
  REQUIRE(ApplyMigrations(*db, std::span(kThreeMigrations).first(2), kNow).ok());
  REQUIRE(*SchemaVersion(*db) == 2);
  REQUIRE(ApplyMigrations(*db, kThreeMigrations, kNow).ok());
  CHECK(*SchemaVersion(*db) == 3);
  CHECK(CountRows(*db, "a") == 1);
}

TEST_CASE("ApplyMigrations refuses a database created by a newer binary") {
  TempDir dir;
  auto db = OpenOrDie((dir.path() / "state.db").string());
  REQUIRE(ApplyMigrations(*db, kThreeMigrations, kNow).ok());
  absl::Status status = ApplyMigrations(*db, std::span(kThreeMigrations).first(2), kNow);
  REQUIRE(absl::IsFailedPrecondition(status));
  CHECK_THAT(std::string(status.message()), Catch::Contains("created by a newer pi-controller"));
  CHECK(*SchemaVersion(*db) == 3);
}

TEST_CASE("A failing migration is rolled back and leaves the version before it") {
  TempDir dir;
  auto db = OpenOrDie((dir.path() / "state.db").string());
  const Migration migrations[] = {
      {1, "table a", "CREATE TABLE a (v INTEGER);"},
      {2, "half done", "CREATE TABLE c (v INTEGER); INSERT INTO no_such_table VALUES (1);"},
      {3, "never reached", "CREATE TABLE d (v INTEGER);"},
  };
  absl::Status status = ApplyMigrations(*db, migrations, kNow);
  REQUIRE(absl::IsInternal(status));
  CHECK_THAT(std::string(status.message()), Catch::Contains("migration 2 (half done)"));
  CHECK(*SchemaVersion(*db) == 1);
  CHECK(QueryText(*db, "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('c', 'd')") == "0");
}

TEST_CASE("ApplyMigrations refuses a list that is not numbered from 1 without gaps") {
  TempDir dir;
  auto db = OpenOrDie((dir.path() / "state.db").string());
  const Migration migrations[] = {
      {1, "table a", "CREATE TABLE a (v INTEGER);"},
      {3, "gap", "CREATE TABLE b (v INTEGER);"},
  };
  CHECK(absl::IsInternal(ApplyMigrations(*db, migrations, kNow)));
  CHECK(*SchemaVersion(*db) == 0);
}

}  // namespace
}  // namespace pi::controlplane::store
