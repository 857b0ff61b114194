#include "control-plane/release/sqlite_release_store.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "tests/common/test_dir.h"

namespace pi::controlplane::release {
namespace {

using std::chrono::nanoseconds;
using std::chrono::seconds;

// Nanosecond precision, so a store that rounds times fails the round trip.
WallTime At(int64_t second, int64_t nanos = 123'456'789) {
  return WallTime(
      std::chrono::duration_cast<WallTime::duration>(seconds(second) + nanoseconds(nanos)));
}

ReleaseWithFiles NewQueued(const std::string& id, WallTime created_at) {
  ReleaseWithFiles item;
  Release& r = item.release;
  r.id = id;
  r.type = ProvisionDestinationType();
  r.created_at = created_at;
  r.updated_at = created_at;
  r.max_attempts = 3;
  r.timeout = seconds(1800);
  r.history = {Transition{
      .state = ReleaseState::kQueued, .at = created_at, .reason = "created", .runner_id = ""}};
  return item;
}

// Every field set to something that is not its default.
ReleaseWithFiles FullRelease(const std::string& id) {
  ReleaseWithFiles item = NewQueued(id, At(1'700'000'000));
  Release& r = item.release;
  r.state = ReleaseState::kRunning;
  r.plan = true;
  r.type = DestinationType{
      .organisation = "acme", .name = "terraform", .version = std::numeric_limits<uint64_t>::max()};
  r.destination_name = "prod-eu";
  r.environment = "production";
  r.metadata = {{"node_id", "pi-1"}, {"région", "ëu \"west\"\n"}};
  r.node_id = "pi-1";
  r.runner_id = "runner-7";
  r.attempts = 2;
  r.max_attempts = 5;
  r.timeout = seconds(600);
  r.updated_at = At(1'700'000'010, 987'654'321);
  r.finished_at = At(1'700'000'020, 1);
  r.error_message = "exit status 2";
  r.plan_output = "Plan: 1 to change, 2 unchanged.";
  r.history.push_back(Transition{.state = ReleaseState::kAssigned,
                                 .at = At(1'700'000'005, 5),
                                 .reason = "matched",
                                 .runner_id = "runner-7"});
  r.history.push_back(Transition{.state = ReleaseState::kRunning,
                                 .at = At(1'700'000'006, 6),
                                 .reason = "acknowledged",
                                 .runner_id = "runner-7"});
  r.provisioning_id = "prov-1";
  r.artifact_file_names = {"profile.json", "dir/parameters.json"};
  r.spec_file_names = {"main.tf"};
  r.log_lines = 0;
  r.annotation = Annotation{.slug = "deploy-42",
                            .source_username = "alice",
                            .source_email = "alice@example.com",
                            .context_title = "Deploy",
                            .context_description = "Roll out ✓",
                            .context_web = "https://ci.example.com/42",
                            .reference_version = "v1.2.3",
                            .reference_commit_sha = "0123abcd",
                            .reference_commit_branch = "main",
                            .reference_commit_message = "fix: things\n\nbody"};
  r.project_organisation = "acme";
  r.project = "infra";
  r.created_by = "admin:alice";
  r.token_sha256 = std::string(64, 'a');
  r.token_expires_at = At(1'700'003'600, 42);
  item.artifact_files = {{.name = "profile.json", .content = "{\"steps\": []}"},
                         {.name = "dir/parameters.json", .content = ""}};
  item.spec_files = {{.name = "main.tf", .content = "résumé ✓\n"}};
  return item;
}

std::unique_ptr<SqliteReleaseStore> OpenStore(const pi::testing::TempDir& dir) {
  auto store = SqliteReleaseStore::Open((dir.path() / "release.db").string());
  REQUIRE(store.ok());
  return *std::move(store);
}

absl::Status InsertOne(ReleaseStore& store, const ReleaseWithFiles& item) {
  return store.Insert(std::span(&item, 1), nullptr);
}

std::vector<std::string> Ids(const std::vector<Release>& releases) {
  std::vector<std::string> ids;
  for (const Release& r : releases) ids.push_back(r.id);
  return ids;
}

std::vector<std::string> ListIds(ReleaseStore& store, const ReleaseFilter& filter) {
  absl::StatusOr<std::vector<Release>> releases = store.List(filter);
  REQUIRE(releases.ok());
  return Ids(*releases);
}

LogLine Line(int64_t sequence, std::string text, std::string channel = "stdout") {
  return LogLine{.sequence = sequence,
                 .channel = std::move(channel),
                 .line = std::move(text),
                 .timestamp_ms = 1'700'000'000'000 + static_cast<uint64_t>(sequence)};
}

Provisioning SampleProvisioning(std::vector<std::string> release_ids) {
  return Provisioning{.id = "prov-1",
                      .profile = "base",
                      .plan = true,
                      .parameters = {{"hostname", "pi-1"}, {"timezone", "Europe/Zürich"}},
                      .created_at = At(1'700'000'000, 77),
                      .target = "role=worker",
                      .created_by = "admin:alice",
                      .release_ids = std::move(release_ids)};
}

TEST_CASE("A release comes back from the store exactly as it was inserted") {
  pi::testing::TempDir dir;
  auto store = OpenStore(dir);
  const ReleaseWithFiles full = FullRelease("r-full");
  REQUIRE(InsertOne(*store, full).ok());
  absl::StatusOr<Release> loaded = store->Get("r-full");
  REQUIRE(loaded.ok());
  CHECK(*loaded == full.release);

  SECTION("absent optionals stay absent and an empty plan output stays present") {
    ReleaseWithFiles bare = NewQueued("r-bare", At(1'700'000'100));
    REQUIRE(InsertOne(*store, bare).ok());
    absl::StatusOr<Release> loaded_bare = store->Get("r-bare");
    REQUIRE(loaded_bare.ok());
    CHECK(*loaded_bare == bare.release);
    CHECK_FALSE(loaded_bare->plan_output.has_value());
    CHECK_FALSE(loaded_bare->finished_at.has_value());
    CHECK_FALSE(loaded_bare->token_expires_at.has_value());

    ReleaseWithFiles empty_plan = NewQueued("r-empty-plan", At(1'700'000'200));
    empty_plan.release.plan_output = "";
    REQUIRE(InsertOne(*store, empty_plan).ok());
    absl::StatusOr<Release> loaded_empty = store->Get("r-empty-plan");
    REQUIRE(loaded_empty.ok());
    CHECK(loaded_empty->plan_output == std::optional<std::string>(""));
  }
  SECTION("an unknown id is NOT_FOUND") {
    CHECK(store->Get("nope").status().code() == absl::StatusCode::kNotFound);
  }
}

TEST_CASE("Files come back per kind in the order they were given") {
  pi::testing::TempDir dir;
  auto store = OpenStore(dir);
  ReleaseWithFiles item = NewQueued("r1", At(1'700'000'000));
  for (const char* name : {"z.txt", "a.txt", "m/n.txt"}) {
    item.artifact_files.push_back({.name = name, .content = std::string("artifact ") + name});
    item.release.artifact_file_names.push_back(name);
  }
  // The same name in the other kind is a different file.
  for (const char* name : {"b.tf", "z.txt"}) {
    item.spec_files.push_back({.name = name, .content = std::string("spec ") + name});
    item.release.spec_file_names.push_back(name);
  }
  REQUIRE(InsertOne(*store, item).ok());
  absl::StatusOr<std::vector<ReleaseFile>> artifacts = store->Files("r1", FileKind::kArtifact);
  REQUIRE(artifacts.ok());
  CHECK(*artifacts == item.artifact_files);
  absl::StatusOr<std::vector<ReleaseFile>> specs = store->Files("r1", FileKind::kSpec);
  REQUIRE(specs.ok());
  CHECK(*specs == item.spec_files);

  REQUIRE(InsertOne(*store, NewQueued("no-files", At(1'700'000'001))).ok());
  absl::StatusOr<std::vector<ReleaseFile>> none = store->Files("no-files", FileKind::kArtifact);
  REQUIRE(none.ok());
  CHECK(none->empty());
  CHECK(store->Files("unknown", FileKind::kSpec).status().code() == absl::StatusCode::kNotFound);
}

TEST_CASE("An insert with a taken id stores none of its releases, files or provisioning") {
  pi::testing::TempDir dir;
  auto store = OpenStore(dir);
  REQUIRE(InsertOne(*store, NewQueued("taken", At(1'700'000'000))).ok());

  std::vector<ReleaseWithFiles> batch = {FullRelease("fresh"), NewQueued("taken", At(5))};
  Provisioning provisioning = SampleProvisioning({"fresh", "taken"});
  absl::Status status = store->Insert(batch, &provisioning);
  CHECK(status.code() == absl::StatusCode::kAlreadyExists);
  CHECK_THAT(std::string(status.message()), Catch::Contains("taken"));
  CHECK(store->Get("fresh").status().code() == absl::StatusCode::kNotFound);
  CHECK(store->Files("fresh", FileKind::kArtifact).status().code() == absl::StatusCode::kNotFound);
  CHECK(store->GetProvisioning("prov-1").status().code() == absl::StatusCode::kNotFound);
  CHECK(store->Get("taken")->created_at == At(1'700'000'000));

  SECTION("the same id twice in one batch") {
    std::vector<ReleaseWithFiles> twice = {NewQueued("dup", At(1)), NewQueued("dup", At(2))};
    CHECK(store->Insert(twice, nullptr).code() == absl::StatusCode::kAlreadyExists);
    CHECK(store->Get("dup").status().code() == absl::StatusCode::kNotFound);
  }
  SECTION("a taken provisioning id") {
    std::vector<ReleaseWithFiles> first = {NewQueued("p1", At(1))};
    Provisioning one = SampleProvisioning({"p1"});
    REQUIRE(store->Insert(first, &one).ok());
    std::vector<ReleaseWithFiles> second = {NewQueued("p2", At(2))};
    Provisioning again = SampleProvisioning({"p2"});
    CHECK(store->Insert(second, &again).code() == absl::StatusCode::kAlreadyExists);
    CHECK(store->Get("p2").status().code() == absl::StatusCode::kNotFound);
  }
  SECTION("the store keeps working after a failed insert") {
    std::vector<ReleaseWithFiles> retry = {FullRelease("fresh")};
    CHECK(store->Insert(retry, &provisioning).ok());
    CHECK(store->Get("fresh").ok());
    CHECK(store->GetProvisioning("prov-1").ok());
  }
}

TEST_CASE("Releases the store cannot keep faithfully are refused with INVALID_ARGUMENT") {
  pi::testing::TempDir dir;
  auto store = OpenStore(dir);
  auto refused = [&](ReleaseWithFiles item) {
    // A good release in the same batch is not stored either.
    std::vector<ReleaseWithFiles> batch = {NewQueued("good", At(1)), std::move(item)};
    absl::Status status = store->Insert(batch, nullptr);
    CHECK(store->Get("good").status().code() == absl::StatusCode::kNotFound);
    return status.code();
  };
  ReleaseWithFiles item = NewQueued("r", At(1'700'000'000));
  SECTION("empty id") {
    item.release.id = "";
    CHECK(refused(item) == absl::StatusCode::kInvalidArgument);
  }
  SECTION("token hash in upper case") {
    item.release.token_sha256 = std::string(64, 'A');
    CHECK(refused(item) == absl::StatusCode::kInvalidArgument);
  }
  SECTION("token hash too short") {
    item.release.token_sha256 = std::string(63, 'a');
    CHECK(refused(item) == absl::StatusCode::kInvalidArgument);
  }
  SECTION("token hash not hex") {
    item.release.token_sha256 = std::string(63, 'a') + "g";
    CHECK(refused(item) == absl::StatusCode::kInvalidArgument);
  }
  SECTION("unknown state") {
    item.release.state = static_cast<ReleaseState>(0);
    CHECK(refused(item) == absl::StatusCode::kInvalidArgument);
  }
  SECTION("unknown state in the history") {
    item.release.history.back().state = static_cast<ReleaseState>(99);
    CHECK(refused(item) == absl::StatusCode::kInvalidArgument);
  }
  SECTION("negative attempts") {
    item.release.attempts = -1;
    CHECK(refused(item) == absl::StatusCode::kInvalidArgument);
  }
  SECTION("file names that do not match the files") {
    item.artifact_files = {{.name = "a", .content = ""}};
    CHECK(refused(item) == absl::StatusCode::kInvalidArgument);
    item.release.artifact_file_names = {"b"};
    CHECK(refused(item) == absl::StatusCode::kInvalidArgument);
  }
  SECTION("metadata that is not UTF-8") {
    item.release.metadata = {{"key", "\xff"}};
    CHECK(refused(item) == absl::StatusCode::kInvalidArgument);
  }
  SECTION("empty provisioning id") {
    std::vector<ReleaseWithFiles> batch = {item};
    Provisioning provisioning = SampleProvisioning({"r"});
    provisioning.id = "";
    CHECK(store->Insert(batch, &provisioning).code() == absl::StatusCode::kInvalidArgument);
    CHECK(store->Get("r").status().code() == absl::StatusCode::kNotFound);
  }
}

TEST_CASE("List filters by state, node and provisioning, newest first, up to the limit") {
  pi::testing::TempDir dir;
  auto store = OpenStore(dir);
  std::vector<ReleaseWithFiles> batch;
  auto add = [&](const std::string& id, int64_t second, ReleaseState state, std::string node,
                 std::string provisioning) {
    ReleaseWithFiles item = NewQueued(id, At(second));
    item.release.state = state;
    item.release.node_id = std::move(node);
    item.release.provisioning_id = std::move(provisioning);
    batch.push_back(std::move(item));
  };
  add("a", 100, ReleaseState::kQueued, "pi-1", "p1");
  add("b", 200, ReleaseState::kSucceeded, "pi-2", "p1");
  add("c", 300, ReleaseState::kRunning, "pi-1", "");
  add("d", 300, ReleaseState::kFailed, "", "");  // same time as c: id breaks the tie
  add("e", 50, ReleaseState::kQueued, "pi-2", "p2");
  REQUIRE(store->Insert(batch, nullptr).ok());

  CHECK(ListIds(*store, {}) == std::vector<std::string>{"d", "c", "b", "a", "e"});
  CHECK(ListIds(*store, {.states = {}, .node_id = "", .provisioning_id = "", .limit = 2}) ==
        std::vector<std::string>{"d", "c"});
  CHECK(ListIds(*store, {.states = {}, .node_id = "", .provisioning_id = "", .limit = 0}).empty());
  CHECK(ListIds(*store, {.states = {ReleaseState::kQueued},
                         .node_id = "",
                         .provisioning_id = "",
                         .limit = 100}) == std::vector<std::string>{"a", "e"});
  CHECK(ListIds(*store, {.states = {ReleaseState::kQueued, ReleaseState::kRunning},
                         .node_id = "",
                         .provisioning_id = "",
                         .limit = 100}) == std::vector<std::string>{"c", "a", "e"});
  CHECK(ListIds(*store, {.states = {}, .node_id = "pi-1", .provisioning_id = "", .limit = 100}) ==
        std::vector<std::string>{"c", "a"});
  CHECK(ListIds(*store, {.states = {}, .node_id = "", .provisioning_id = "p1", .limit = 100}) ==
        std::vector<std::string>{"b", "a"});
  CHECK(ListIds(*store, {.states = {ReleaseState::kQueued},
                         .node_id = "pi-2",
                         .provisioning_id = "p2",
                         .limit = 100}) == std::vector<std::string>{"e"});
  CHECK(ListIds(*store, {.states = {ReleaseState::kCancelled},
                         .node_id = "",
                         .provisioning_id = "",
                         .limit = 100})
            .empty());
  // A repeated shape of filter reuses its statement with new values.
  CHECK(ListIds(*store, {.states = {}, .node_id = "pi-2", .provisioning_id = "", .limit = 100}) ==
        std::vector<std::string>{"b", "e"});

  CHECK(store->List({.states = {}, .node_id = "", .provisioning_id = "", .limit = -1})
            .status()
            .code() == absl::StatusCode::kInvalidArgument);
  CHECK(store
            ->List({.states = {static_cast<ReleaseState>(9)},
                    .node_id = "",
                    .provisioning_id = "",
                    .limit = 10})
            .status()
            .code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("LoadUnfinished returns only queued, assigned and running releases, oldest first") {
  pi::testing::TempDir dir;
  auto store = OpenStore(dir);
  std::vector<ReleaseWithFiles> batch;
  const std::vector<std::pair<std::string, ReleaseState>> states = {
      {"queued-late", ReleaseState::kQueued},  {"succeeded", ReleaseState::kSucceeded},
      {"running", ReleaseState::kRunning},     {"failed", ReleaseState::kFailed},
      {"assigned", ReleaseState::kAssigned},   {"cancelled", ReleaseState::kCancelled},
      {"queued-early", ReleaseState::kQueued}, {"timed-out", ReleaseState::kTimedOut},
  };
  const std::map<std::string, int64_t> created = {
      {"queued-late", 900}, {"succeeded", 100}, {"running", 300},     {"failed", 50},
      {"assigned", 200},    {"cancelled", 10},  {"queued-early", 20}, {"timed-out", 5},
  };
  for (const auto& [id, state] : states) {
    ReleaseWithFiles item = NewQueued(id, At(created.at(id)));
    item.release.state = state;
    batch.push_back(std::move(item));
  }
  REQUIRE(store->Insert(batch, nullptr).ok());
  absl::StatusOr<std::vector<Release>> unfinished = store->LoadUnfinished();
  REQUIRE(unfinished.ok());
  CHECK(Ids(*unfinished) ==
        std::vector<std::string>{"queued-early", "assigned", "running", "queued-late"});
}

TEST_CASE("Update rewrites a release but leaves its log line count alone") {
  pi::testing::TempDir dir;
  auto store = OpenStore(dir);
  REQUIRE(InsertOne(*store, NewQueued("r1", At(1'700'000'000))).ok());
  std::vector<std::pair<std::string, LogLine>> lines = {{"r1", Line(1, "one")},
                                                        {"r1", Line(2, "two")}};
  REQUIRE(store->AppendLogs(lines).ok());

  Release changed = FullRelease("r1").release;
  changed.state = ReleaseState::kSucceeded;
  changed.log_lines = 999;  // what the engine thinks; the store keeps its own count
  REQUIRE(store->Update(changed).ok());
  absl::StatusOr<Release> loaded = store->Get("r1");
  REQUIRE(loaded.ok());
  CHECK(loaded->log_lines == 2);
  changed.log_lines = 2;
  CHECK(*loaded == changed);

  // Back to no token, no plan output, no finish time.
  Release cleared = changed;
  cleared.token_sha256.clear();
  cleared.token_expires_at.reset();
  cleared.plan_output.reset();
  cleared.finished_at.reset();
  REQUIRE(store->Update(cleared).ok());
  CHECK(*store->Get("r1") == cleared);

  Release unknown = changed;
  unknown.id = "ghost";
  CHECK(store->Update(unknown).code() == absl::StatusCode::kNotFound);
  Release bad = changed;
  bad.token_sha256 = "not-a-hash";
  CHECK(store->Update(bad).code() == absl::StatusCode::kInvalidArgument);
  Release empty_id = changed;
  empty_id.id = "";
  CHECK(store->Update(empty_id).code() == absl::StatusCode::kInvalidArgument);
  CHECK(*store->Get("r1") == cleared);
}

TEST_CASE("Log lines are appended atomically, counted and read back by sequence") {
  pi::testing::TempDir dir;
  auto store = OpenStore(dir);
  std::vector<ReleaseWithFiles> batch = {NewQueued("r1", At(1)), NewQueued("r2", At(2))};
  REQUIRE(store->Insert(batch, nullptr).ok());

  std::vector<std::pair<std::string, LogLine>> lines;
  for (int64_t sequence = 1; sequence <= 5; ++sequence) {
    lines.emplace_back("r1", Line(sequence, "line " + std::to_string(sequence),
                                  sequence % 2 == 0 ? "stderr" : "stdout"));
  }
  lines.emplace_back("r2", Line(1, ""));
  REQUIRE(store->AppendLogs(lines).ok());
  CHECK(store->Get("r1")->log_lines == 5);
  CHECK(store->Get("r2")->log_lines == 1);

  absl::StatusOr<std::vector<LogLine>> all = store->Logs("r1", 0, 100);
  REQUIRE(all.ok());
  REQUIRE(all->size() == 5);
  for (size_t i = 0; i < all->size(); ++i) CHECK((*all)[i] == lines[i].second);

  absl::StatusOr<std::vector<LogLine>> page = store->Logs("r1", 2, 2);
  REQUIRE(page.ok());
  CHECK(*page == std::vector<LogLine>{lines[2].second, lines[3].second});
  absl::StatusOr<std::vector<LogLine>> past_end = store->Logs("r1", 5, 10);
  REQUIRE(past_end.ok());
  CHECK(past_end->empty());
  CHECK(store->Logs("r2", 0, 10)->front().line.empty());
  CHECK(store->Logs("ghost", 0, 10).status().code() == absl::StatusCode::kNotFound);
  CHECK(store->Logs("r1", 0, -1).status().code() == absl::StatusCode::kInvalidArgument);

  SECTION("a batch naming an unknown release writes nothing") {
    std::vector<std::pair<std::string, LogLine>> mixed = {{"r1", Line(6, "six")},
                                                          {"ghost", Line(1, "boo")}};
    CHECK(store->AppendLogs(mixed).code() == absl::StatusCode::kNotFound);
    CHECK(store->Get("r1")->log_lines == 5);
    CHECK(store->Logs("r1", 5, 10)->empty());
  }
  SECTION("a repeated sequence writes nothing") {
    std::vector<std::pair<std::string, LogLine>> repeat = {{"r2", Line(2, "new")},
                                                           {"r1", Line(3, "again")}};
    CHECK(store->AppendLogs(repeat).code() == absl::StatusCode::kAlreadyExists);
    CHECK(store->Get("r2")->log_lines == 1);
    CHECK(store->Logs("r2", 1, 10)->empty());
  }
  SECTION("bad lines are refused before anything is written") {
    for (const LogLine& bad : {Line(6, "x", "stdin"), Line(0, "x"), Line(-3, "x"),
                               Line(6, std::string(kMaxLogLineBytes + 1, 'x'))}) {
      std::vector<std::pair<std::string, LogLine>> one = {{"r1", Line(6, "fine")}, {"r1", bad}};
      CHECK(store->AppendLogs(one).code() == absl::StatusCode::kInvalidArgument);
    }
    std::vector<std::pair<std::string, LogLine>> no_id = {{"", Line(6, "x")}};
    CHECK(store->AppendLogs(no_id).code() == absl::StatusCode::kInvalidArgument);
    CHECK(store->Get("r1")->log_lines == 5);
  }
  SECTION("an empty batch is a no-op") { CHECK(store->AppendLogs({}).ok()); }
}

TEST_CASE("A provisioning request is stored with its releases and read back") {
  pi::testing::TempDir dir;
  auto store = OpenStore(dir);
  std::vector<ReleaseWithFiles> batch = {NewQueued("r-b", At(1)), NewQueued("r-a", At(1))};
  batch[0].release.provisioning_id = "prov-1";
  batch[1].release.provisioning_id = "prov-1";
  const Provisioning provisioning = SampleProvisioning({"r-b", "r-a"});
  REQUIRE(store->Insert(batch, &provisioning).ok());
  absl::StatusOr<Provisioning> loaded = store->GetProvisioning("prov-1");
  REQUIRE(loaded.ok());
  CHECK(*loaded == provisioning);
  CHECK(ListIds(*store, {.states = {}, .node_id = "", .provisioning_id = "prov-1", .limit = 10})
            .size() == 2);
  CHECK(store->GetProvisioning("prov-2").status().code() == absl::StatusCode::kNotFound);
}

TEST_CASE("Everything survives closing and reopening the database file, which is private") {
  pi::testing::TempDir dir;
  const std::string path = (dir.path() / "release.db").string();
  const ReleaseWithFiles full = FullRelease("r1");
  const Provisioning provisioning = SampleProvisioning({"r1"});
  std::vector<std::pair<std::string, LogLine>> lines = {{"r1", Line(1, "hello")},
                                                        {"r1", Line(2, "world", "stderr")}};
  Release updated = full.release;
  {
    auto store = SqliteReleaseStore::Open(path);
    REQUIRE(store.ok());
    std::vector<ReleaseWithFiles> batch = {full, NewQueued("done", At(1))};
    batch[1].release.state = ReleaseState::kCancelled;
    REQUIRE((*store)->Insert(batch, &provisioning).ok());
    REQUIRE((*store)->AppendLogs(lines).ok());
    updated.state = ReleaseState::kAssigned;
    updated.error_message = "requeued";
    REQUIRE((*store)->Update(updated).ok());
  }
  struct stat info {};
  REQUIRE(stat(path.c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0600);

  auto store = SqliteReleaseStore::Open(path);
  REQUIRE(store.ok());
  updated.log_lines = 2;
  CHECK(*(*store)->Get("r1") == updated);
  CHECK(*(*store)->Files("r1", FileKind::kArtifact) == full.artifact_files);
  CHECK(*(*store)->Files("r1", FileKind::kSpec) == full.spec_files);
  CHECK(*(*store)->Logs("r1", 0, 10) == std::vector<LogLine>{lines[0].second, lines[1].second});
  CHECK(*(*store)->GetProvisioning("prov-1") == provisioning);
  absl::StatusOr<std::vector<Release>> unfinished = (*store)->LoadUnfinished();
  REQUIRE(unfinished.ok());
  CHECK(Ids(*unfinished) == std::vector<std::string>{"r1"});
}

TEST_CASE("The release store refuses a directory that does not exist") {
  pi::testing::TempDir dir;
  auto store = SqliteReleaseStore::Open((dir.path() / "missing" / "release.db").string());
  CHECK(store.status().code() == absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("Readers and writers on several threads share one store safely") {
  pi::testing::TempDir dir;
  auto store = OpenStore(dir);
  constexpr int kThreads = 4;
  constexpr int kBatches = 25;
  std::vector<ReleaseWithFiles> batch;
  for (int t = 0; t < kThreads; ++t) batch.push_back(NewQueued("r" + std::to_string(t), At(t)));
  REQUIRE(store->Insert(batch, nullptr).ok());

  std::vector<std::thread> threads;
  std::vector<int> failures(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string id = "r" + std::to_string(t);
      for (int b = 0; b < kBatches; ++b) {
        std::vector<std::pair<std::string, LogLine>> lines = {{id, Line(2 * b + 1, "a")},
                                                              {id, Line(2 * b + 2, "b")}};
        if (!store->AppendLogs(lines).ok()) ++failures[t];
        if (!store->Get(id).ok()) ++failures[t];
        if (!store->List({}).ok()) ++failures[t];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) {
    CHECK(failures[t] == 0);
    CHECK(store->Get("r" + std::to_string(t))->log_lines == 2 * kBatches);
    CHECK(store->Logs("r" + std::to_string(t), 0, 1000)->size() == 2 * kBatches);
  }
}

}  // namespace
}  // namespace pi::controlplane::release
