#include "control-plane/release/sqlite_release_store.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <utility>

#include "common/text/hex.h"
#include "control-plane/store/cluster_store.h"

namespace pi::controlplane::release {
namespace {

using store::FromUnixNanos;
using store::Migration;
using store::Statement;
using store::UnixNanos;

constexpr std::array<Migration, 1> kMigrations = {{
    {1, "releases, their files and logs, provisioning requests", R"sql(
CREATE TABLE releases (
  id                   TEXT PRIMARY KEY NOT NULL,
  state                INTEGER NOT NULL CHECK (state BETWEEN 1 AND 7),
  plan                 INTEGER NOT NULL,
  type_organisation    TEXT NOT NULL,
  type_name            TEXT NOT NULL,
  -- uint64 stored bit for bit in SQLite's int64.
  type_version         INTEGER NOT NULL,
  destination_name     TEXT NOT NULL,
  environment          TEXT NOT NULL,
  metadata             TEXT NOT NULL,
  node_id              TEXT NOT NULL,
  runner_id            TEXT NOT NULL,
  attempts             INTEGER NOT NULL,
  max_attempts         INTEGER NOT NULL,
  timeout_s            INTEGER NOT NULL,
  created_at_ns        INTEGER NOT NULL,
  updated_at_ns        INTEGER NOT NULL,
  finished_at_ns       INTEGER,
  error_message        TEXT NOT NULL,
  plan_output          TEXT,
  history              TEXT NOT NULL,
  provisioning_id      TEXT NOT NULL,
  artifact_file_names  TEXT NOT NULL,
  spec_file_names      TEXT NOT NULL,
  log_lines            INTEGER NOT NULL,
  annotation           TEXT NOT NULL,
  project_organisation TEXT NOT NULL,
  project              TEXT NOT NULL,
  created_by           TEXT NOT NULL,
  token_sha256         TEXT NOT NULL,
  token_expires_at_ns  INTEGER
);
CREATE INDEX releases_by_created ON releases (created_at_ns, id);
CREATE INDEX releases_by_state ON releases (state, created_at_ns, id);
CREATE INDEX releases_by_node ON releases (node_id, created_at_ns, id);
CREATE INDEX releases_by_provisioning ON releases (provisioning_id, created_at_ns, id);

CREATE TABLE release_files (
  release_id TEXT NOT NULL REFERENCES releases (id),
  kind       TEXT NOT NULL CHECK (kind IN ('artifact', 'spec')),
  position   INTEGER NOT NULL,
  name       TEXT NOT NULL,
  content    BLOB NOT NULL,
  PRIMARY KEY (release_id, kind, position)
) WITHOUT ROWID;

CREATE TABLE release_logs (
  release_id   TEXT NOT NULL REFERENCES releases (id),
  sequence     INTEGER NOT NULL,
  channel      TEXT NOT NULL,
  line         TEXT NOT NULL,
  -- uint64 stored bit for bit in SQLite's int64.
  timestamp_ms INTEGER NOT NULL,
  PRIMARY KEY (release_id, sequence)
) WITHOUT ROWID;

CREATE TABLE provisionings (
  id            TEXT PRIMARY KEY NOT NULL,
  profile       TEXT NOT NULL,
  plan          INTEGER NOT NULL,
  parameters    TEXT NOT NULL,
  created_at_ns INTEGER NOT NULL,
  target        TEXT NOT NULL,
  created_by    TEXT NOT NULL,
  -- JSON array, in the order of the target nodes.
  release_ids   TEXT NOT NULL
);
)sql"},
}};

// Columns 0..29 in the order of the ?1..?30 parameters of the insert and update statements; a
// read adds column 30, telling a NULL plan output from an empty one.
constexpr char kReleaseColumns[] =
    "id, state, plan, type_organisation, type_name, type_version, destination_name, "
    "environment, metadata, node_id, runner_id, attempts, max_attempts, timeout_s, "
    "created_at_ns, updated_at_ns, finished_at_ns, error_message, plan_output, history, "
    "provisioning_id, artifact_file_names, spec_file_names, log_lines, annotation, "
    "project_organisation, project, created_by, token_sha256, token_expires_at_ns";
std::string ReleaseReadColumns() {
  return fmt::format("{}, plan_output IS NOT NULL", kReleaseColumns);
}
constexpr int kLogLinesParameter = 24;

// Resets a kept statement before use and again after, so no half-read statement holds a read
// snapshot open (which would stop WAL checkpoints) between calls.
class StatementUse {
 public:
  explicit StatementUse(Statement& statement) : statement_(statement) { statement_.Reset(); }
  ~StatementUse() { statement_.Reset(); }
  StatementUse(const StatementUse&) = delete;
  StatementUse& operator=(const StatementUse&) = delete;
  Statement* operator->() { return &statement_; }
  Statement& operator*() { return statement_; }

 private:
  Statement& statement_;
};

bool IsKnownState(ReleaseState state) { return StateName(state) != "UNKNOWN"; }

std::string_view KindName(FileKind kind) {
  return kind == FileKind::kArtifact ? "artifact" : "spec";
}

std::optional<int64_t> OptionalNanos(const std::optional<WallTime>& time) {
  if (!time.has_value()) return std::nullopt;
  return UnixNanos(*time);
}

absl::Status ValidateRelease(const Release& release) {
  if (release.id.empty()) return absl::InvalidArgumentError("release id is empty");
  if (!IsKnownState(release.state)) {
    return absl::InvalidArgumentError(fmt::format("release {}: state {} is not a known state",
                                                  release.id, static_cast<int>(release.state)));
  }
  for (const Transition& transition : release.history) {
    if (!IsKnownState(transition.state)) {
      return absl::InvalidArgumentError(fmt::format("release {}: history holds unknown state {}",
                                                    release.id,
                                                    static_cast<int>(transition.state)));
    }
  }
  if (!release.token_sha256.empty() && !common::IsSha256Hex(release.token_sha256)) {
    return absl::InvalidArgumentError(fmt::format(
        "release {}: token hash must be empty or 64 lower-case hex digits (SHA-256)", release.id));
  }
  if (release.attempts < 0 || release.max_attempts < 0 || release.timeout.count() < 0 ||
      release.log_lines < 0) {
    return absl::InvalidArgumentError(
        fmt::format("release {}: attempts, max_attempts, timeout and log_lines may not be negative",
                    release.id));
  }
  return absl::OkStatus();
}

absl::Status ValidateFileNames(const std::string& id, FileKind kind,
                               const std::vector<std::string>& names,
                               const std::vector<ReleaseFile>& files) {
  const bool same = std::equal(
      names.begin(), names.end(), files.begin(), files.end(),
      [](const std::string& name, const ReleaseFile& file) { return name == file.name; });
  if (!same) {
    return absl::InvalidArgumentError(
        fmt::format("release {}: {}_file_names do not match the names of its {} files", id,
                    KindName(kind), KindName(kind)));
  }
  return absl::OkStatus();
}

// Strings from the wire are UTF-8 by contract; one that is not is refused rather than altered,
// since the store must give back exactly what it was given.
absl::StatusOr<std::string> Dump(const nlohmann::json& value, std::string_view what) {
  try {
    return value.dump();
  } catch (const nlohmann::json::exception&) {
    return absl::InvalidArgumentError(fmt::format("{} is not valid UTF-8", what));
  }
}

nlohmann::json AnnotationJson(const Annotation& a) {
  return {
      {"slug", a.slug},
      {"source_username", a.source_username},
      {"source_email", a.source_email},
      {"context_title", a.context_title},
      {"context_description", a.context_description},
      {"context_web", a.context_web},
      {"reference_version", a.reference_version},
      {"reference_commit_sha", a.reference_commit_sha},
      {"reference_commit_branch", a.reference_commit_branch},
      {"reference_commit_message", a.reference_commit_message},
  };
}

Annotation AnnotationFromJson(const nlohmann::json& json) {
  Annotation a;
  a.slug = json.at("slug").get<std::string>();
  a.source_username = json.at("source_username").get<std::string>();
  a.source_email = json.at("source_email").get<std::string>();
  a.context_title = json.at("context_title").get<std::string>();
  a.context_description = json.at("context_description").get<std::string>();
  a.context_web = json.at("context_web").get<std::string>();
  a.reference_version = json.at("reference_version").get<std::string>();
  a.reference_commit_sha = json.at("reference_commit_sha").get<std::string>();
  a.reference_commit_branch = json.at("reference_commit_branch").get<std::string>();
  a.reference_commit_message = json.at("reference_commit_message").get<std::string>();
  return a;
}

nlohmann::json HistoryJson(const std::vector<Transition>& history) {
  nlohmann::json array = nlohmann::json::array();
  for (const Transition& t : history) {
    array.push_back({{"state", static_cast<int>(t.state)},
                     {"at_ns", UnixNanos(t.at)},
                     {"reason", t.reason},
                     {"runner_id", t.runner_id}});
  }
  return array;
}

std::vector<Transition> HistoryFromJson(const nlohmann::json& json) {
  std::vector<Transition> history;
  for (const nlohmann::json& item : json) {
    Transition t;
    t.state = static_cast<ReleaseState>(item.at("state").get<int>());
    t.at = FromUnixNanos(item.at("at_ns").get<int64_t>());
    t.reason = item.at("reason").get<std::string>();
    t.runner_id = item.at("runner_id").get<std::string>();
    history.push_back(std::move(t));
  }
  return history;
}

// The JSON columns of a release, encoded before any row is written.
struct ReleaseJson {
  std::string metadata;
  std::string history;
  std::string artifact_file_names;
  std::string spec_file_names;
  std::string annotation;
};

absl::StatusOr<ReleaseJson> EncodeJson(const Release& r) {
  ReleaseJson encoded;
  const std::array<std::pair<std::string*, absl::StatusOr<std::string>>, 5> columns = {{
      {&encoded.metadata, Dump(r.metadata, fmt::format("release {}: metadata", r.id))},
      {&encoded.history, Dump(HistoryJson(r.history), fmt::format("release {}: history", r.id))},
      {&encoded.artifact_file_names,
       Dump(r.artifact_file_names, fmt::format("release {}: artifact file names", r.id))},
      {&encoded.spec_file_names,
       Dump(r.spec_file_names, fmt::format("release {}: spec file names", r.id))},
      {&encoded.annotation,
       Dump(AnnotationJson(r.annotation), fmt::format("release {}: annotation", r.id))},
  }};
  for (const auto& [target, value] : columns) {
    if (!value.ok()) return value.status();
    *target = *value;
  }
  return encoded;
}

// Binds ?1..?30 of the insert or update statement.
void BindRelease(Statement& s, const Release& r, const ReleaseJson& json) {
  s.Bind(1, r.id)
      .Bind(2, static_cast<int64_t>(r.state))
      .Bind(3, int64_t{r.plan})
      .Bind(4, r.type.organisation)
      .Bind(5, r.type.name)
      .Bind(6, static_cast<int64_t>(r.type.version))
      .Bind(7, r.destination_name)
      .Bind(8, r.environment)
      .Bind(9, json.metadata)
      .Bind(10, r.node_id)
      .Bind(11, r.runner_id)
      .Bind(12, int64_t{r.attempts})
      .Bind(13, int64_t{r.max_attempts})
      .Bind(14, static_cast<int64_t>(r.timeout.count()))
      .Bind(15, UnixNanos(r.created_at))
      .Bind(16, UnixNanos(r.updated_at))
      .Bind(17, OptionalNanos(r.finished_at))
      .Bind(18, r.error_message);
  if (r.plan_output.has_value()) {
    s.Bind(19, *r.plan_output);
  } else {
    s.BindNull(19);
  }
  s.Bind(20, json.history)
      .Bind(21, r.provisioning_id)
      .Bind(22, json.artifact_file_names)
      .Bind(23, json.spec_file_names)
      .Bind(kLogLinesParameter, r.log_lines)
      .Bind(25, json.annotation)
      .Bind(26, r.project_organisation)
      .Bind(27, r.project)
      .Bind(28, r.created_by)
      .Bind(29, r.token_sha256)
      .Bind(30, OptionalNanos(r.token_expires_at));
}

// Reads a row selected with ReleaseReadColumns().
absl::StatusOr<Release> ReleaseFromRow(const Statement& row) {
  Release r;
  r.id = row.ColumnText(0);
  const int64_t state = row.ColumnInt64(1);
  r.state = static_cast<ReleaseState>(state);
  if (!IsKnownState(r.state)) {
    return absl::DataLossError(fmt::format("release {}: unknown stored state {}", r.id, state));
  }
  r.plan = row.ColumnInt64(2) != 0;
  r.type.organisation = row.ColumnText(3);
  r.type.name = row.ColumnText(4);
  r.type.version = static_cast<uint64_t>(row.ColumnInt64(5));
  r.destination_name = row.ColumnText(6);
  r.environment = row.ColumnText(7);
  r.node_id = row.ColumnText(9);
  r.runner_id = row.ColumnText(10);
  r.attempts = static_cast<int>(row.ColumnInt64(11));
  r.max_attempts = static_cast<int>(row.ColumnInt64(12));
  r.timeout = std::chrono::seconds(row.ColumnInt64(13));
  r.created_at = FromUnixNanos(row.ColumnInt64(14));
  r.updated_at = FromUnixNanos(row.ColumnInt64(15));
  if (std::optional<int64_t> at = row.ColumnOptionalInt64(16)) r.finished_at = FromUnixNanos(*at);
  r.error_message = row.ColumnText(17);
  if (row.ColumnInt64(30) != 0) r.plan_output = row.ColumnText(18);
  r.provisioning_id = row.ColumnText(20);
  r.log_lines = row.ColumnInt64(23);
  r.project_organisation = row.ColumnText(25);
  r.project = row.ColumnText(26);
  r.created_by = row.ColumnText(27);
  r.token_sha256 = row.ColumnText(28);
  if (std::optional<int64_t> at = row.ColumnOptionalInt64(29)) {
    r.token_expires_at = FromUnixNanos(*at);
  }
  try {
    r.metadata = nlohmann::json::parse(row.ColumnText(8)).get<std::map<std::string, std::string>>();
    r.history = HistoryFromJson(nlohmann::json::parse(row.ColumnText(19)));
    r.artifact_file_names =
        nlohmann::json::parse(row.ColumnText(21)).get<std::vector<std::string>>();
    r.spec_file_names = nlohmann::json::parse(row.ColumnText(22)).get<std::vector<std::string>>();
    r.annotation = AnnotationFromJson(nlohmann::json::parse(row.ColumnText(24)));
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(
        fmt::format("release {}: a stored JSON column is malformed: {}", r.id, e.what()));
  }
  for (const Transition& t : r.history) {
    if (!IsKnownState(t.state)) {
      return absl::DataLossError(fmt::format("release {}: history holds unknown state {}", r.id,
                                             static_cast<int>(t.state)));
    }
  }
  return r;
}

absl::StatusOr<std::vector<Release>> CollectReleases(Statement& query) {
  std::vector<Release> releases;
  while (true) {
    absl::StatusOr<bool> row = query.Step();
    if (!row.ok()) return row.status();
    if (!*row) return releases;
    absl::StatusOr<Release> release = ReleaseFromRow(query);
    if (!release.ok()) return release.status();
    releases.push_back(*std::move(release));
  }
}

absl::Status ValidateLogLine(const std::string& release_id, const LogLine& line) {
  if (release_id.empty()) return absl::InvalidArgumentError("log line for an empty release id");
  if (line.sequence < 1) {
    return absl::InvalidArgumentError(
        fmt::format("release {}: log sequence {} is not positive", release_id, line.sequence));
  }
  if (line.channel != "stdout" && line.channel != "stderr") {
    return absl::InvalidArgumentError(
        fmt::format("release {}: log channel must be stdout or stderr", release_id));
  }
  if (line.line.size() > kMaxLogLineBytes) {
    return absl::InvalidArgumentError(
        fmt::format("release {}: log line {} is {} bytes; at most {} are allowed", release_id,
                    line.sequence, line.line.size(), kMaxLogLineBytes));
  }
  return absl::OkStatus();
}

}  // namespace

struct SqliteReleaseStore::Statements {
  Statement insert_release;
  Statement update_release;
  Statement get_release;
  Statement release_exists;
  Statement load_unfinished;
  Statement insert_file;
  Statement files;
  Statement add_log_lines;
  Statement insert_log;
  Statement logs;
  Statement insert_provisioning;
  Statement get_provisioning;
};

SqliteReleaseStore::SqliteReleaseStore(std::unique_ptr<store::SqliteDb> db,
                                       std::unique_ptr<Statements> statements)
    : db_(std::move(db)), statements_(std::move(statements)) {}

SqliteReleaseStore::~SqliteReleaseStore() = default;

std::span<const Migration> SqliteReleaseStore::Migrations() { return kMigrations; }

absl::StatusOr<std::unique_ptr<SqliteReleaseStore>> SqliteReleaseStore::Open(
    const std::string& path) {
  absl::StatusOr<std::unique_ptr<store::SqliteDb>> db = store::SqliteDb::Open(path);
  if (!db.ok()) return db.status();
  if (absl::Status s = store::ApplyMigrations(**db, kMigrations, std::chrono::system_clock::now());
      !s.ok()) {
    return s;
  }
  const std::array<std::string, 12> sql = {
      fmt::format("INSERT INTO releases ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
                  "?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, "
                  "?26, ?27, ?28, ?29, ?30)",
                  kReleaseColumns),
      // Every column but id and log_lines (?24, which AppendLogs keeps).
      "UPDATE releases SET state = ?2, plan = ?3, type_organisation = ?4, type_name = ?5, "
      "type_version = ?6, destination_name = ?7, environment = ?8, metadata = ?9, node_id = ?10, "
      "runner_id = ?11, attempts = ?12, max_attempts = ?13, timeout_s = ?14, "
      "created_at_ns = ?15, updated_at_ns = ?16, finished_at_ns = ?17, error_message = ?18, "
      "plan_output = ?19, history = ?20, provisioning_id = ?21, artifact_file_names = ?22, "
      "spec_file_names = ?23, annotation = ?25, project_organisation = ?26, project = ?27, "
      "created_by = ?28, token_sha256 = ?29, token_expires_at_ns = ?30 WHERE id = ?1",
      fmt::format("SELECT {} FROM releases WHERE id = ?1", ReleaseReadColumns()),
      "SELECT 1 FROM releases WHERE id = ?1",
      fmt::format("SELECT {} FROM releases WHERE state IN (1, 2, 3) "
                  "ORDER BY created_at_ns, id",
                  ReleaseReadColumns()),
      "INSERT INTO release_files (release_id, kind, position, name, content) "
      "VALUES (?1, ?2, ?3, ?4, ?5)",
      "SELECT name, content FROM release_files WHERE release_id = ?1 AND kind = ?2 "
      "ORDER BY position",
      "UPDATE releases SET log_lines = log_lines + ?2 WHERE id = ?1",
      "INSERT INTO release_logs (release_id, sequence, channel, line, timestamp_ms) "
      "VALUES (?1, ?2, ?3, ?4, ?5)",
      "SELECT sequence, channel, line, timestamp_ms FROM release_logs "
      "WHERE release_id = ?1 AND sequence > ?2 ORDER BY sequence LIMIT ?3",
      "INSERT INTO provisionings (id, profile, plan, parameters, created_at_ns, target, "
      "created_by, release_ids) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
      "SELECT id, profile, plan, parameters, created_at_ns, target, created_by, release_ids "
      "FROM provisionings WHERE id = ?1",
  };
  std::vector<Statement> prepared;
  for (const std::string& text : sql) {
    absl::StatusOr<Statement> statement = (*db)->Prepare(text);
    if (!statement.ok()) return statement.status();
    prepared.push_back(*std::move(statement));
  }
  auto statements = std::make_unique<Statements>(Statements{
      .insert_release = std::move(prepared[0]),
      .update_release = std::move(prepared[1]),
      .get_release = std::move(prepared[2]),
      .release_exists = std::move(prepared[3]),
      .load_unfinished = std::move(prepared[4]),
      .insert_file = std::move(prepared[5]),
      .files = std::move(prepared[6]),
      .add_log_lines = std::move(prepared[7]),
      .insert_log = std::move(prepared[8]),
      .logs = std::move(prepared[9]),
      .insert_provisioning = std::move(prepared[10]),
      .get_provisioning = std::move(prepared[11]),
  });
  return std::unique_ptr<SqliteReleaseStore>(
      new SqliteReleaseStore(*std::move(db), std::move(statements)));
}

absl::StatusOr<std::vector<Release>> SqliteReleaseStore::LoadUnfinished() {
  std::lock_guard lock(mu_);
  StatementUse query(statements_->load_unfinished);
  return CollectReleases(*query);
}

absl::Status SqliteReleaseStore::InsertRelease(const ReleaseWithFiles& item) {
  const Release& release = item.release;
  absl::StatusOr<ReleaseJson> json = EncodeJson(release);
  if (!json.ok()) return json.status();
  {
    StatementUse insert(statements_->insert_release);
    BindRelease(*insert, release, *json);
    if (absl::Status s = insert->Run(); !s.ok()) {
      if (absl::IsAlreadyExists(s)) {
        return absl::AlreadyExistsError(fmt::format("release {} already exists", release.id));
      }
      return s;
    }
  }
  for (const auto& [kind, files] : {std::pair{FileKind::kArtifact, &item.artifact_files},
                                    std::pair{FileKind::kSpec, &item.spec_files}}) {
    for (size_t position = 0; position < files->size(); ++position) {
      const ReleaseFile& file = (*files)[position];
      StatementUse insert(statements_->insert_file);
      insert->Bind(1, release.id)
          .Bind(2, KindName(kind))
          .Bind(3, static_cast<int64_t>(position))
          .Bind(4, file.name)
          .BindBlob(5, file.content);
      if (absl::Status s = insert->Run(); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::Status SqliteReleaseStore::InsertProvisioning(const Provisioning& p) {
  absl::StatusOr<std::string> parameters =
      Dump(p.parameters, fmt::format("provisioning {}: parameters", p.id));
  if (!parameters.ok()) return parameters.status();
  absl::StatusOr<std::string> release_ids =
      Dump(p.release_ids, fmt::format("provisioning {}: release ids", p.id));
  if (!release_ids.ok()) return release_ids.status();
  StatementUse insert(statements_->insert_provisioning);
  insert->Bind(1, p.id)
      .Bind(2, p.profile)
      .Bind(3, int64_t{p.plan})
      .Bind(4, *parameters)
      .Bind(5, UnixNanos(p.created_at))
      .Bind(6, p.target)
      .Bind(7, p.created_by)
      .Bind(8, *release_ids);
  absl::Status s = insert->Run();
  if (absl::IsAlreadyExists(s)) {
    return absl::AlreadyExistsError(fmt::format("provisioning {} already exists", p.id));
  }
  return s;
}

absl::Status SqliteReleaseStore::Insert(std::span<const ReleaseWithFiles> releases,
                                        const Provisioning* provisioning) {
  for (const ReleaseWithFiles& item : releases) {
    if (absl::Status s = ValidateRelease(item.release); !s.ok()) return s;
    if (absl::Status s = ValidateFileNames(item.release.id, FileKind::kArtifact,
                                           item.release.artifact_file_names, item.artifact_files);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = ValidateFileNames(item.release.id, FileKind::kSpec,
                                           item.release.spec_file_names, item.spec_files);
        !s.ok()) {
      return s;
    }
  }
  if (provisioning != nullptr) {
    if (provisioning->id.empty()) return absl::InvalidArgumentError("provisioning id is empty");
    for (const std::string& id : provisioning->release_ids) {
      if (id.empty()) {
        return absl::InvalidArgumentError(
            fmt::format("provisioning {} lists an empty release id", provisioning->id));
      }
    }
  }
  if (releases.empty() && provisioning == nullptr) return absl::OkStatus();

  std::lock_guard lock(mu_);
  absl::StatusOr<store::Transaction> transaction = store::Transaction::Begin(*db_);
  if (!transaction.ok()) return transaction.status();
  for (const ReleaseWithFiles& item : releases) {
    if (absl::Status s = InsertRelease(item); !s.ok()) return s;
  }
  if (provisioning != nullptr) {
    if (absl::Status s = InsertProvisioning(*provisioning); !s.ok()) return s;
  }
  return transaction->Commit();
}

absl::Status SqliteReleaseStore::Update(const Release& release) {
  if (absl::Status s = ValidateRelease(release); !s.ok()) return s;
  absl::StatusOr<ReleaseJson> json = EncodeJson(release);
  if (!json.ok()) return json.status();
  std::lock_guard lock(mu_);
  StatementUse update(statements_->update_release);
  BindRelease(*update, release, *json);
  if (absl::Status s = update->Run(); !s.ok()) return s;
  if (db_->ChangedRows() == 0) {
    return absl::NotFoundError(fmt::format("release {} does not exist", release.id));
  }
  return absl::OkStatus();
}

absl::Status SqliteReleaseStore::AppendLogs(
    std::span<const std::pair<std::string, LogLine>> lines) {
  std::map<std::string, int64_t> added;
  for (const auto& [release_id, line] : lines) {
    if (absl::Status s = ValidateLogLine(release_id, line); !s.ok()) return s;
    ++added[release_id];
  }
  if (lines.empty()) return absl::OkStatus();

  std::lock_guard lock(mu_);
  absl::StatusOr<store::Transaction> transaction = store::Transaction::Begin(*db_);
  if (!transaction.ok()) return transaction.status();
  // Counting first turns an unknown release into NOT_FOUND instead of a foreign key failure.
  for (const auto& [release_id, count] : added) {
    StatementUse update(statements_->add_log_lines);
    update->Bind(1, release_id).Bind(2, count);
    if (absl::Status s = update->Run(); !s.ok()) return s;
    if (db_->ChangedRows() == 0) {
      return absl::NotFoundError(fmt::format("release {} does not exist", release_id));
    }
  }
  for (const auto& [release_id, line] : lines) {
    StatementUse insert(statements_->insert_log);
    insert->Bind(1, release_id)
        .Bind(2, line.sequence)
        .Bind(3, line.channel)
        .Bind(4, line.line)
        .Bind(5, static_cast<int64_t>(line.timestamp_ms));
    if (absl::Status s = insert->Run(); !s.ok()) {
      if (absl::IsAlreadyExists(s)) {
        return absl::AlreadyExistsError(
            fmt::format("release {} already has log line {}", release_id, line.sequence));
      }
      return s;
    }
  }
  return transaction->Commit();
}

absl::StatusOr<Release> SqliteReleaseStore::Get(const std::string& id) {
  std::lock_guard lock(mu_);
  StatementUse query(statements_->get_release);
  query->Bind(1, id);
  absl::StatusOr<bool> row = query->Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::NotFoundError(fmt::format("release {} does not exist", id));
  return ReleaseFromRow(*query);
}

absl::StatusOr<Statement*> SqliteReleaseStore::ListStatement(const std::string& sql) {
  auto it = list_statements_.find(sql);
  if (it == list_statements_.end()) {
    absl::StatusOr<Statement> statement = db_->Prepare(sql);
    if (!statement.ok()) return statement.status();
    it = list_statements_.emplace(sql, *std::move(statement)).first;
  }
  return &it->second;
}

absl::StatusOr<std::vector<Release>> SqliteReleaseStore::List(const ReleaseFilter& filter) {
  if (filter.limit < 0) {
    return absl::InvalidArgumentError(
        fmt::format("release list limit {} is negative", filter.limit));
  }
  for (ReleaseState state : filter.states) {
    if (!IsKnownState(state)) {
      return absl::InvalidArgumentError(
          fmt::format("release state {} is not a known state", static_cast<int>(state)));
    }
  }
  // Only the filters that are set appear in the SQL, so SQLite can pick the matching index.
  std::vector<std::string> conditions;
  if (!filter.states.empty()) {
    std::vector<std::string> values;
    for (ReleaseState state : filter.states)
      values.push_back(std::to_string(static_cast<int>(state)));
    conditions.push_back(fmt::format("state IN ({})", fmt::join(values, ", ")));
  }
  if (!filter.node_id.empty()) conditions.push_back("node_id = ?2");
  if (!filter.provisioning_id.empty()) conditions.push_back("provisioning_id = ?3");
  const std::string sql = fmt::format(
      "SELECT {} FROM releases {}{} ORDER BY created_at_ns DESC, id DESC LIMIT ?1",
      ReleaseReadColumns(), conditions.empty() ? "" : "WHERE ", fmt::join(conditions, " AND "));

  std::lock_guard lock(mu_);
  absl::StatusOr<Statement*> statement = ListStatement(sql);
  if (!statement.ok()) return statement.status();
  StatementUse query(**statement);
  query->Bind(1, int64_t{filter.limit});
  if (!filter.node_id.empty()) query->Bind(2, filter.node_id);
  if (!filter.provisioning_id.empty()) query->Bind(3, filter.provisioning_id);
  return CollectReleases(*query);
}

absl::StatusOr<bool> SqliteReleaseStore::ReleaseExists(const std::string& id) {
  StatementUse query(statements_->release_exists);
  query->Bind(1, id);
  return query->Step();
}

absl::StatusOr<std::vector<ReleaseFile>> SqliteReleaseStore::Files(const std::string& id,
                                                                   FileKind kind) {
  std::lock_guard lock(mu_);
  std::vector<ReleaseFile> files;
  {
    StatementUse query(statements_->files);
    query->Bind(1, id).Bind(2, KindName(kind));
    while (true) {
      absl::StatusOr<bool> row = query->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      files.push_back(ReleaseFile{.name = query->ColumnText(0), .content = query->ColumnBlob(1)});
    }
  }
  if (files.empty()) {
    absl::StatusOr<bool> exists = ReleaseExists(id);
    if (!exists.ok()) return exists.status();
    if (!*exists) return absl::NotFoundError(fmt::format("release {} does not exist", id));
  }
  return files;
}

absl::StatusOr<std::vector<LogLine>> SqliteReleaseStore::Logs(const std::string& id,
                                                              int64_t after_sequence, int limit) {
  if (limit < 0) {
    return absl::InvalidArgumentError(fmt::format("log line limit {} is negative", limit));
  }
  std::lock_guard lock(mu_);
  std::vector<LogLine> lines;
  {
    StatementUse query(statements_->logs);
    query->Bind(1, id).Bind(2, after_sequence).Bind(3, int64_t{limit});
    while (true) {
      absl::StatusOr<bool> row = query->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      lines.push_back(LogLine{.sequence = query->ColumnInt64(0),
                              .channel = query->ColumnText(1),
                              .line = query->ColumnText(2),
                              .timestamp_ms = static_cast<uint64_t>(query->ColumnInt64(3))});
    }
  }
  if (lines.empty()) {
    absl::StatusOr<bool> exists = ReleaseExists(id);
    if (!exists.ok()) return exists.status();
    if (!*exists) return absl::NotFoundError(fmt::format("release {} does not exist", id));
  }
  return lines;
}

absl::StatusOr<Provisioning> SqliteReleaseStore::GetProvisioning(const std::string& id) {
  std::lock_guard lock(mu_);
  StatementUse query(statements_->get_provisioning);
  query->Bind(1, id);
  absl::StatusOr<bool> row = query->Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::NotFoundError(fmt::format("provisioning {} does not exist", id));
  Provisioning p;
  p.id = query->ColumnText(0);
  p.profile = query->ColumnText(1);
  p.plan = query->ColumnInt64(2) != 0;
  p.created_at = FromUnixNanos(query->ColumnInt64(4));
  p.target = query->ColumnText(5);
  p.created_by = query->ColumnText(6);
  try {
    p.parameters =
        nlohmann::json::parse(query->ColumnText(3)).get<std::map<std::string, std::string>>();
    p.release_ids = nlohmann::json::parse(query->ColumnText(7)).get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(
        fmt::format("provisioning {}: a stored JSON column is malformed: {}", id, e.what()));
  }
  return p;
}

}  // namespace pi::controlplane::release
