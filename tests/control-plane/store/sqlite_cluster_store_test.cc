#include "control-plane/store/sqlite_cluster_store.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/system/clock.h"
#include "tests/common/test_dir.h"

namespace pi::controlplane::store {
namespace {

using pi::testing::TempDir;
using std::chrono::hours;
using std::chrono::minutes;

const std::string kHashA(64, 'a');
const std::string kHashB(64, 'b');

struct Fixture {
  TempDir dir;
  pi::common::ManualClock clock;
  std::string path = (dir.path() / "cluster.db").string();
  std::unique_ptr<SqliteClusterStore> store = Open();

  std::unique_ptr<SqliteClusterStore> Open() {
    absl::StatusOr<std::unique_ptr<SqliteClusterStore>> opened =
        SqliteClusterStore::Open(path, clock);
    REQUIRE(opened.ok());
    return *std::move(opened);
  }
  TimePoint Now() const { return clock.WallNow(); }
  int64_t Revision() { return *store->CurrentRevision(); }
};

Node MakeNode(const std::string& id, const std::string& hostname) {
  Node node;
  node.id = id;
  node.hostname = hostname;
  node.agent_address = hostname + ":9091";
  node.labels = {{"rack", "1"}, {"role", "sensor"}};
  node.facts = {{"arch", "aarch64"}, {"model", "Raspberry Pi 5"}};
  node.state = NodeState::kRegistered;
  node.registered_at = TimePoint(hours(24 * 365 * 50));
  node.cert_serial = "0a1b";
  node.cert_sha256 = std::string(64, 'c');
  return node;
}

JoinToken MakeToken(const std::string& id, TimePoint now) {
  JoinToken token;
  token.id = id;
  token.secret_hash = kHashA;
  token.description = "rack 1";
  token.created_by = "admin:alice";
  token.created_at = now;
  token.expires_at = now + hours(1);
  return token;
}

TEST_CASE("A fresh store is at revision 0 with the current schema") {
  Fixture f;
  CHECK(f.Revision() == 0);
  auto db = SqliteDb::Open(f.path);
  REQUIRE(db.ok());
  CHECK(*SchemaVersion(**db) == static_cast<int>(SqliteClusterStore::Migrations().size()));
}

TEST_CASE("SqliteClusterStore::Open refuses a database from a newer pi-controller") {
  Fixture f;
  f.store.reset();
  {
    auto db = SqliteDb::Open(f.path);
    REQUIRE(db.ok());
    REQUIRE((*db)->Exec("INSERT INTO schema_migrations VALUES (999, 'future', 0)", "insert").ok());
  }
  auto opened = SqliteClusterStore::Open(f.path, f.clock);
  REQUIRE(absl::IsFailedPrecondition(opened.status()));
  CHECK_THAT(std::string(opened.status().message()),
             Catch::Contains("created by a newer pi-controller"));
}

TEST_CASE("CreateNode stores every field and stamps the new revision") {
  Fixture f;
  Node node = MakeNode("n1", "pi-1");
  node.last_heartbeat = node.registered_at + std::chrono::nanoseconds(123);
  absl::StatusOr<Node> created = f.store->CreateNode(node);
  REQUIRE(created.ok());
  CHECK(created->revision == 1);
  node.revision = 1;
  CHECK(*created == node);
  CHECK(*f.store->GetNode("n1") == node);
  CHECK(f.Revision() == 1);
}

TEST_CASE("CreateNode refuses a duplicate id") {
  Fixture f;
  REQUIRE(f.store->CreateNode(MakeNode("n1", "pi-1")).ok());
  CHECK(absl::IsAlreadyExists(f.store->CreateNode(MakeNode("n1", "pi-2")).status()));
  CHECK(f.Revision() == 1);
}

TEST_CASE("CreateNode refuses a hostname held by a live node") {
  Fixture f;
  REQUIRE(f.store->CreateNode(MakeNode("n1", "pi-1")).ok());
  absl::StatusOr<Node> duplicate = f.store->CreateNode(MakeNode("n2", "pi-1"));
  REQUIRE(absl::IsAlreadyExists(duplicate.status()));
  CHECK_THAT(std::string(duplicate.status().message()), Catch::Contains("node n1"));
  CHECK(f.Revision() == 1);
}

TEST_CASE("A REMOVED node's hostname can be registered again, and not re-activated then") {
  Fixture f;
  REQUIRE(f.store->CreateNode(MakeNode("n1", "pi-1")).ok());
  REQUIRE(f.store->SetNodeState("n1", NodeState::kRemoved).ok());
  REQUIRE(f.store->CreateNode(MakeNode("n2", "pi-1")).ok());
  CHECK(f.store->FindNodeByHostname("pi-1")->id == "n2");
  CHECK(absl::IsAlreadyExists(f.store->SetNodeState("n1", NodeState::kReady).status()));
}

TEST_CASE("CreateNode refuses an empty id") {
  Fixture f;
  CHECK(absl::IsInvalidArgument(f.store->CreateNode(MakeNode("", "pi-1")).status()));
}

TEST_CASE("CreateNode refuses an empty hostname") {
  Fixture f;
  CHECK(absl::IsInvalidArgument(f.store->CreateNode(MakeNode("n1", "")).status()));
}

TEST_CASE("CreateNode refuses a state outside the enum") {
  Fixture f;
  Node node = MakeNode("n1", "pi-1");
  node.state = static_cast<NodeState>(42);
  CHECK(absl::IsInvalidArgument(f.store->CreateNode(node).status()));
}

TEST_CASE("CreateNode refuses a certificate fingerprint that is not SHA-256 hex") {
  Fixture f;
  Node node = MakeNode("n1", "pi-1");
  node.cert_sha256 = "ABCDEF";
  CHECK(absl::IsInvalidArgument(f.store->CreateNode(node).status()));
}

TEST_CASE("UpdateNode replaces the node and bumps the revision") {
  Fixture f;
  REQUIRE(f.store->CreateNode(MakeNode("n1", "pi-1")).ok());
  Node changed = MakeNode("n1", "pi-1-renamed");
  changed.labels = {{"rack", "2"}};
  changed.state = NodeState::kCordoned;
  absl::StatusOr<Node> updated = f.store->UpdateNode(changed);
  REQUIRE(updated.ok());
  CHECK(updated->revision == 2);
  changed.revision = 2;
  CHECK(*f.store->GetNode("n1") == changed);
  CHECK(absl::IsNotFound(f.store->FindNodeByHostname("pi-1").status()));
}

TEST_CASE("UpdateNode from a stale read keeps the newer stored heartbeat") {
  Fixture f;
  REQUIRE(f.store->CreateNode(MakeNode("n1", "pi-1")).ok());
  Node stale = *f.store->GetNode("n1");
  const TimePoint beat = f.Now() + minutes(2);
  REQUIRE(f.store->RecordHeartbeat("n1", beat).ok());
  stale.labels["zone"] = "b";
  absl::StatusOr<Node> updated = f.store->UpdateNode(stale);
  REQUIRE(updated.ok());
  CHECK(updated->last_heartbeat == beat);
  CHECK(f.store->GetNode("n1")->last_heartbeat == beat);
  CHECK(f.store->GetNode("n1")->labels.at("zone") == "b");
}

TEST_CASE("UpdateNode of an unknown node is NOT_FOUND") {
  Fixture f;
  CHECK(absl::IsNotFound(f.store->UpdateNode(MakeNode("nope", "pi-1")).status()));
  CHECK(f.Revision() == 0);
}

TEST_CASE("UpdateNode refuses another live node's hostname") {
  Fixture f;
  REQUIRE(f.store->CreateNode(MakeNode("n1", "pi-1")).ok());
  REQUIRE(f.store->CreateNode(MakeNode("n2", "pi-2")).ok());
  CHECK(absl::IsAlreadyExists(f.store->UpdateNode(MakeNode("n2", "pi-1")).status()));
  CHECK(f.store->GetNode("n2")->hostname == "pi-2");
}

TEST_CASE("UpdateNode refuses a state outside the enum") {
  Fixture f;
  REQUIRE(f.store->CreateNode(MakeNode("n1", "pi-1")).ok());
  Node node = MakeNode("n1", "pi-1");
  node.state = static_cast<NodeState>(-1);
  CHECK(absl::IsInvalidArgument(f.store->UpdateNode(node).status()));
}

TEST_CASE("SetNodeState stores any transition it is told and bumps once per change") {
  Fixture f;
  REQUIRE(f.store->CreateNode(MakeNode("n1", "pi-1")).ok());
  // DOWN straight from REGISTERED: judging transitions is the cluster layer's business.
  absl::StatusOr<Node> down = f.store->SetNodeState("n1", NodeState::kDown);
  REQUIRE(down.ok());
  CHECK(down->state == NodeState::kDown);
  CHECK(down->revision == 2);
  absl::StatusOr<Node> again = f.store->SetNodeState("n1", NodeState::kDown);
  REQUIRE(again.ok());
  CHECK(again->revision == 2);
  CHECK(f.Revision() == 2);
}

TEST_CASE("SetNodeState of an unknown node is NOT_FOUND") {
  Fixture f;
  CHECK(absl::IsNotFound(f.store->SetNodeState("nope", NodeState::kReady).status()));
}

TEST_CASE("SetNodeState refuses a state outside the enum") {
  Fixture f;
  REQUIRE(f.store->CreateNode(MakeNode("n1", "pi-1")).ok());
  CHECK(absl::IsInvalidArgument(f.store->SetNodeState("n1", static_cast<NodeState>(6)).status()));
}

TEST_CASE("SetNodeState refuses an empty id") {
  Fixture f;
  CHECK(absl::IsInvalidArgument(f.store->SetNodeState("", NodeState::kReady).status()));
}

TEST_CASE("RecordHeartbeat stores the time without bumping the revision or logging a change") {
  Fixture f;
  REQUIRE(f.store->CreateNode(MakeNode("n1", "pi-1")).ok());
  const TimePoint at = f.Now() + minutes(3);
  REQUIRE(f.store->RecordHeartbeat("n1", at).ok());
  CHECK(f.store->GetNode("n1")->last_heartbeat == at);
  CHECK(f.store->GetNode("n1")->revision == 1);
  CHECK(f.Revision() == 1);
  CHECK(f.store->ChangesSince(1, 10)->empty());
}

TEST_CASE("RecordHeartbeat of an unknown node is NOT_FOUND") {
  Fixture f;
  CHECK(absl::IsNotFound(f.store->RecordHeartbeat("nope", f.Now())));
}

TEST_CASE("RecordHeartbeat refuses an empty id") {
  Fixture f;
  CHECK(absl::IsInvalidArgument(f.store->RecordHeartbeat("", f.Now())));
}

TEST_CASE("RecordHeartbeats stores every time in one go without bumping the revision") {
  Fixture f;
  REQUIRE(f.store->CreateNode(MakeNode("n1", "pi-1")).ok());
  REQUIRE(f.store->CreateNode(MakeNode("n2", "pi-2")).ok());
  const TimePoint at = f.Now() + minutes(1);
  auto unknown = f.store->RecordHeartbeats({{"n1", at}, {"n2", at + minutes(1)}});
  REQUIRE(unknown.ok());
  CHECK(unknown->empty());
  CHECK(f.store->GetNode("n1")->last_heartbeat == at);
  CHECK(f.store->GetNode("n2")->last_heartbeat == at + minutes(1));
  CHECK(f.Revision() == 2);
}

TEST_CASE("RecordHeartbeats skips and returns unknown nodes and records the others") {
  Fixture f;
  REQUIRE(f.store->CreateNode(MakeNode("n1", "pi-1")).ok());
  auto unknown = f.store->RecordHeartbeats({{"gone", f.Now()}, {"n1", f.Now()}});
  REQUIRE(unknown.ok());
  CHECK(*unknown == std::vector<std::string>{"gone"});
  CHECK(f.store->GetNode("n1")->last_heartbeat == f.Now());
}

TEST_CASE("RecordHeartbeats refuses an empty id and records nothing") {
  Fixture f;
  REQUIRE(f.store->CreateNode(MakeNode("n1", "pi-1")).ok());
  CHECK(absl::IsInvalidArgument(
      f.store->RecordHeartbeats({{"n1", f.Now()}, {"", f.Now()}}).status()));
  CHECK_FALSE(f.store->GetNode("n1")->last_heartbeat.has_value());
}

TEST_CASE("DeleteNode removes the row and logs a delete with the last record") {
  Fixture f;
  REQUIRE(f.store->CreateNode(MakeNode("n1", "pi-1")).ok());
  REQUIRE(f.store->DeleteNode("n1").ok());
  CHECK(absl::IsNotFound(f.store->GetNode("n1").status()));
  auto changes = f.store->ChangesSince(1, 10);
  REQUIRE(changes.ok());
  REQUIRE(changes->size() == 1);
  CHECK((*changes)[0].op == Change::Op::kDelete);
  CHECK((*changes)[0].key == "n1");
  CHECK(NodeFromJson((*changes)[0].record)->hostname == "pi-1");
}

TEST_CASE("DeleteNode of an unknown node is NOT_FOUND") {
  Fixture f;
  CHECK(absl::IsNotFound(f.store->DeleteNode("nope")));
  CHECK(f.Revision() == 0);
}

TEST_CASE("GetNode of an unknown node is NOT_FOUND and of an empty id INVALID_ARGUMENT") {
  Fixture f;
  CHECK(absl::IsNotFound(f.store->GetNode("nope").status()));
  CHECK(absl::IsInvalidArgument(f.store->GetNode("").status()));
}

TEST_CASE("FindNodeByHostname ignores REMOVED nodes and refuses an empty hostname") {
  Fixture f;
  REQUIRE(f.store->CreateNode(MakeNode("n1", "pi-1")).ok());
  CHECK(f.store->FindNodeByHostname("pi-1")->id == "n1");
  REQUIRE(f.store->SetNodeState("n1", NodeState::kRemoved).ok());
  CHECK(absl::IsNotFound(f.store->FindNodeByHostname("pi-1").status()));
  CHECK(absl::IsInvalidArgument(f.store->FindNodeByHostname("").status()));
}

TEST_CASE("ListNodes returns every node ordered by id") {
  Fixture f;
  REQUIRE(f.store->CreateNode(MakeNode("n2", "pi-2")).ok());
  REQUIRE(f.store->CreateNode(MakeNode("n1", "pi-1")).ok());
  auto nodes = f.store->ListNodes();
  REQUIRE(nodes.ok());
  REQUIRE(nodes->size() == 2);
  CHECK((*nodes)[0].id == "n1");
  CHECK((*nodes)[1].id == "n2");
}

TEST_CASE("CreateJoinToken stores the token and GetJoinToken/ListJoinTokens return it") {
  Fixture f;
  JoinToken token = MakeToken("t1", f.Now());
  token.max_uses = 3;
  absl::StatusOr<JoinToken> created = f.store->CreateJoinToken(token);
  REQUIRE(created.ok());
  token.revision = 1;
  CHECK(*created == token);
  CHECK(*f.store->GetJoinToken("t1") == token);
  auto tokens = f.store->ListJoinTokens();
  REQUIRE(tokens.ok());
  REQUIRE(tokens->size() == 1);
  CHECK((*tokens)[0] == token);
}

TEST_CASE("CreateJoinToken refuses a duplicate id") {
  Fixture f;
  REQUIRE(f.store->CreateJoinToken(MakeToken("t1", f.Now())).ok());
  CHECK(absl::IsAlreadyExists(f.store->CreateJoinToken(MakeToken("t1", f.Now())).status()));
}

TEST_CASE("CreateJoinToken refuses an empty id") {
  Fixture f;
  CHECK(absl::IsInvalidArgument(f.store->CreateJoinToken(MakeToken("", f.Now())).status()));
}

TEST_CASE("CreateJoinToken refuses a secret hash that is not SHA-256 hex") {
  Fixture f;
  JoinToken token = MakeToken("t1", f.Now());
  token.secret_hash = "the-secret-itself";
  CHECK(absl::IsInvalidArgument(f.store->CreateJoinToken(token).status()));
}

TEST_CASE("CreateJoinToken refuses an expiry not after creation") {
  Fixture f;
  JoinToken token = MakeToken("t1", f.Now());
  token.expires_at = token.created_at;
  CHECK(absl::IsInvalidArgument(f.store->CreateJoinToken(token).status()));
}

TEST_CASE("CreateJoinToken refuses max uses of zero") {
  Fixture f;
  JoinToken token = MakeToken("t1", f.Now());
  token.max_uses = 0;
  CHECK(absl::IsInvalidArgument(f.store->CreateJoinToken(token).status()));
}

TEST_CASE("CreateJoinToken refuses a negative use count") {
  Fixture f;
  JoinToken token = MakeToken("t1", f.Now());
  token.use_count = -1;
  CHECK(absl::IsInvalidArgument(f.store->CreateJoinToken(token).status()));
}

TEST_CASE("GetJoinToken of an unknown token is NOT_FOUND") {
  Fixture f;
  CHECK(absl::IsNotFound(f.store->GetJoinToken("nope").status()));
}

TEST_CASE("RevokeJoinToken stamps the time once") {
  Fixture f;
  REQUIRE(f.store->CreateJoinToken(MakeToken("t1", f.Now())).ok());
  const TimePoint first = f.Now() + minutes(1);
  absl::StatusOr<JoinToken> revoked = f.store->RevokeJoinToken("t1", first);
  REQUIRE(revoked.ok());
  CHECK(revoked->revoked_at == first);
  CHECK(revoked->revision == 2);
  absl::StatusOr<JoinToken> again = f.store->RevokeJoinToken("t1", first + minutes(1));
  REQUIRE(again.ok());
  CHECK(again->revoked_at == first);
  CHECK(f.Revision() == 2);
}

TEST_CASE("RevokeJoinToken of an unknown token is NOT_FOUND") {
  Fixture f;
  CHECK(absl::IsNotFound(f.store->RevokeJoinToken("nope", f.Now()).status()));
}

TEST_CASE("DeleteJoinToken removes the token; an unknown one is NOT_FOUND") {
  Fixture f;
  REQUIRE(f.store->CreateJoinToken(MakeToken("t1", f.Now())).ok());
  REQUIRE(f.store->DeleteJoinToken("t1").ok());
  CHECK(absl::IsNotFound(f.store->GetJoinToken("t1").status()));
  CHECK(absl::IsNotFound(f.store->DeleteJoinToken("t1")));
}

TEST_CASE("ConsumeJoinToken counts a use of a valid token") {
  Fixture f;
  REQUIRE(f.store->CreateJoinToken(MakeToken("t1", f.Now())).ok());
  absl::StatusOr<JoinToken> used = f.store->ConsumeJoinToken("t1", kHashA, f.Now());
  REQUIRE(used.ok());
  CHECK(used->use_count == 1);
  CHECK(used->revision == 2);
  CHECK(f.store->GetJoinToken("t1")->use_count == 1);
}

TEST_CASE("ConsumeJoinToken gives an unknown id and a wrong secret the same answer") {
  Fixture f;
  REQUIRE(f.store->CreateJoinToken(MakeToken("t1", f.Now())).ok());
  absl::Status unknown = f.store->ConsumeJoinToken("nope", kHashA, f.Now()).status();
  absl::Status wrong = f.store->ConsumeJoinToken("t1", kHashB, f.Now()).status();
  CHECK(absl::IsUnauthenticated(unknown));
  CHECK(unknown == wrong);
  CHECK(f.store->GetJoinToken("t1")->use_count == 0);
}

TEST_CASE("ConsumeJoinToken refuses an expired token") {
  Fixture f;
  REQUIRE(f.store->CreateJoinToken(MakeToken("t1", f.Now())).ok());
  f.clock.Advance(hours(1));
  absl::Status status = f.store->ConsumeJoinToken("t1", kHashA, f.Now()).status();
  REQUIRE(absl::IsUnauthenticated(status));
  CHECK_THAT(std::string(status.message()), Catch::Contains("expired"));
  CHECK(f.store->GetJoinToken("t1")->use_count == 0);
}

TEST_CASE("ConsumeJoinToken refuses a revoked token") {
  Fixture f;
  REQUIRE(f.store->CreateJoinToken(MakeToken("t1", f.Now())).ok());
  REQUIRE(f.store->RevokeJoinToken("t1", f.Now()).ok());
  absl::Status status = f.store->ConsumeJoinToken("t1", kHashA, f.Now()).status();
  REQUIRE(absl::IsUnauthenticated(status));
  CHECK_THAT(std::string(status.message()), Catch::Contains("revoked"));
}

TEST_CASE("ConsumeJoinToken refuses a token that has no uses left") {
  Fixture f;
  JoinToken token = MakeToken("t1", f.Now());
  token.max_uses = 2;
  REQUIRE(f.store->CreateJoinToken(token).ok());
  REQUIRE(f.store->ConsumeJoinToken("t1", kHashA, f.Now()).ok());
  REQUIRE(f.store->ConsumeJoinToken("t1", kHashA, f.Now()).ok());
  absl::Status status = f.store->ConsumeJoinToken("t1", kHashA, f.Now()).status();
  REQUIRE(absl::IsUnauthenticated(status));
  CHECK_THAT(std::string(status.message()), Catch::Contains("used 2 of 2"));
  CHECK(f.store->GetJoinToken("t1")->use_count == 2);
}

TEST_CASE("ConsumeJoinToken refuses a malformed secret hash") {
  Fixture f;
  CHECK(absl::IsInvalidArgument(f.store->ConsumeJoinToken("t1", "abc", f.Now()).status()));
}

TEST_CASE("ConsumeJoinToken refuses an empty id") {
  Fixture f;
  CHECK(absl::IsInvalidArgument(f.store->ConsumeJoinToken("", kHashA, f.Now()).status()));
}

TEST_CASE("Concurrent consumption through separate connections never exceeds max uses") {
  Fixture f;
  JoinToken token = MakeToken("t1", f.Now());
  token.max_uses = 5;
  REQUIRE(f.store->CreateJoinToken(token).ok());
  constexpr int kThreads = 6;
  constexpr int kAttemptsEach = 5;
  std::vector<std::unique_ptr<SqliteClusterStore>> stores;
  for (int i = 0; i < kThreads; ++i) stores.push_back(f.Open());
  std::vector<int> successes(kThreads, 0);
  std::vector<int> unexpected(kThreads, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int attempt = 0; attempt < kAttemptsEach; ++attempt) {
        absl::StatusOr<JoinToken> used = stores[i]->ConsumeJoinToken("t1", kHashA, f.Now());
        if (used.ok()) {
          ++successes[i];
        } else if (!absl::IsUnauthenticated(used.status())) {
          ++unexpected[i];
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  int total = 0;
  for (int i = 0; i < kThreads; ++i) {
    total += successes[i];
    CHECK(unexpected[i] == 0);
  }
  CHECK(total == 5);
  CHECK(f.store->GetJoinToken("t1")->use_count == 5);
  CHECK(f.Revision() == 6);
}

TEST_CASE("Concurrent consumption through one store never exceeds max uses") {
  Fixture f;
  JoinToken token = MakeToken("t1", f.Now());
  token.max_uses = 7;
  REQUIRE(f.store->CreateJoinToken(token).ok());
  std::atomic<int> successes{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      for (int attempt = 0; attempt < 5; ++attempt) {
        if (f.store->ConsumeJoinToken("t1", kHashA, f.Now()).ok()) ++successes;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CHECK(successes == 7);
  CHECK(f.store->GetJoinToken("t1")->use_count == 7);
}

TEST_CASE("Every mutation bumps the revision by one and logs its change in order") {
  Fixture f;
  REQUIRE(f.store->CreateNode(MakeNode("n1", "pi-1")).ok());         // 1
  REQUIRE(f.store->CreateJoinToken(MakeToken("t1", f.Now())).ok());  // 2
  REQUIRE(f.store->SetNodeState("n1", NodeState::kReady).ok());      // 3
  REQUIRE(f.store->ConsumeJoinToken("t1", kHashA, f.Now()).ok());    // 4
  REQUIRE(f.store->RevokeJoinToken("t1", f.Now()).ok());             // 5
  REQUIRE(f.store->DeleteNode("n1").ok());                           // 6
  CHECK(f.Revision() == 6);
  auto changes = f.store->ChangesSince(0, 100);
  REQUIRE(changes.ok());
  REQUIRE(changes->size() == 6);
  for (size_t i = 0; i < changes->size(); ++i) CHECK((*changes)[i].revision == int64_t(i) + 1);
  CHECK((*changes)[1].kind == Change::Kind::kJoinToken);
  CHECK((*changes)[1].key == "t1");
  CHECK((*changes)[1].at == f.Now());
  CHECK(JoinTokenFromJson((*changes)[3].record)->use_count == 1);
  CHECK(NodeFromJson((*changes)[2].record)->state == NodeState::kReady);
  CHECK(NodeFromJson((*changes)[2].record)->revision == 3);
  CHECK((*changes)[5].op == Change::Op::kDelete);
}

TEST_CASE("ChangesSince honours the limit and returns only later changes") {
  Fixture f;
  for (int i = 1; i <= 5; ++i) {
    REQUIRE(f.store->CreateNode(MakeNode("n" + std::to_string(i), "pi-" + std::to_string(i))).ok());
  }
  auto page = f.store->ChangesSince(1, 2);
  REQUIRE(page.ok());
  REQUIRE(page->size() == 2);
  CHECK((*page)[0].revision == 2);
  CHECK((*page)[1].revision == 3);
  CHECK(f.store->ChangesSince(5, 10)->empty());
}

TEST_CASE("ChangesSince refuses a negative revision and a non-positive limit") {
  Fixture f;
  CHECK(absl::IsInvalidArgument(f.store->ChangesSince(-1, 10).status()));
  CHECK(absl::IsInvalidArgument(f.store->ChangesSince(0, 0).status()));
}

TEST_CASE("ChangesSince a revision ahead of the store is OUT_OF_RANGE") {
  Fixture f;
  REQUIRE(f.store->CreateNode(MakeNode("n1", "pi-1")).ok());
  CHECK(absl::IsOutOfRange(f.store->ChangesSince(2, 10).status()));
}

TEST_CASE("After compaction, ChangesSince a compacted point is OUT_OF_RANGE") {
  Fixture f;
  for (int i = 1; i <= 5; ++i) {
    REQUIRE(f.store->CreateNode(MakeNode("n" + std::to_string(i), "pi-" + std::to_string(i))).ok());
  }
  REQUIRE(f.store->CompactChangesBefore(4).ok());  // Drops 1..3.
  CHECK(absl::IsOutOfRange(f.store->ChangesSince(0, 10).status()));
  CHECK(absl::IsOutOfRange(f.store->ChangesSince(2, 10).status()));
  auto rest = f.store->ChangesSince(3, 10);
  REQUIRE(rest.ok());
  REQUIRE(rest->size() == 2);
  CHECK((*rest)[0].revision == 4);
  // Compacting to an earlier point does not make the lost changes available again.
  REQUIRE(f.store->CompactChangesBefore(2).ok());
  CHECK(absl::IsOutOfRange(f.store->ChangesSince(2, 10).status()));
}

TEST_CASE("Compacting beyond the current revision empties the log but keeps the revision") {
  Fixture f;
  REQUIRE(f.store->CreateNode(MakeNode("n1", "pi-1")).ok());
  REQUIRE(f.store->CreateNode(MakeNode("n2", "pi-2")).ok());
  REQUIRE(f.store->CompactChangesBefore(100).ok());
  CHECK(f.Revision() == 2);
  CHECK(f.store->ChangesSince(2, 10)->empty());
  CHECK(absl::IsOutOfRange(f.store->ChangesSince(1, 10).status()));
  REQUIRE(f.store->CreateNode(MakeNode("n3", "pi-3")).ok());
  auto next = f.store->ChangesSince(2, 10);
  REQUIRE(next.ok());
  REQUIRE(next->size() == 1);
  CHECK((*next)[0].revision == 3);
}

TEST_CASE("CompactChangesBefore refuses a negative revision") {
  Fixture f;
  CHECK(absl::IsInvalidArgument(f.store->CompactChangesBefore(-1)));
}

TEST_CASE("Snapshot returns every node and token with the revision they reflect") {
  Fixture f;
  REQUIRE(f.store->CreateNode(MakeNode("n1", "pi-1")).ok());
  REQUIRE(f.store->CreateNode(MakeNode("n2", "pi-2")).ok());
  REQUIRE(f.store->CreateJoinToken(MakeToken("t1", f.Now())).ok());
  auto snapshot = f.store->Snapshot();
  REQUIRE(snapshot.ok());
  CHECK(snapshot->revision == 3);
  CHECK(snapshot->nodes == *f.store->ListNodes());
  CHECK(snapshot->join_tokens == *f.store->ListJoinTokens());
  CHECK(snapshot->nodes.size() == 2);
  CHECK(snapshot->join_tokens.size() == 1);
}

TEST_CASE("Snapshots taken while another connection writes are internally consistent") {
  Fixture f;
  auto writer_store = f.Open();
  std::atomic<bool> done{false};
  std::atomic<int> write_failures{0};
  // Catch2 assertions are not thread-safe, so the writer only counts its failures.
  std::thread writer([&] {
    for (int i = 0; i < 40; ++i) {
      if (!writer_store->CreateNode(MakeNode("n" + std::to_string(i), "pi-" + std::to_string(i)))
               .ok()) {
        ++write_failures;
      }
    }
    done = true;
  });
  int inconsistent = 0;
  int taken = 0;
  while (!done || taken == 0) {
    auto snapshot = f.store->Snapshot();
    REQUIRE(snapshot.ok());
    ++taken;
    // Each write adds one node and one revision, so the two must agree.
    if (static_cast<int64_t>(snapshot->nodes.size()) != snapshot->revision) ++inconsistent;
  }
  writer.join();
  CHECK(write_failures == 0);
  CHECK(inconsistent == 0);
}

TEST_CASE("Reopening the file keeps nodes, tokens, revision and change log") {
  Fixture f;
  Node node = MakeNode("n1", "pi-1");
  REQUIRE(f.store->CreateNode(node).ok());
  REQUIRE(f.store->RecordHeartbeat("n1", f.Now()).ok());
  REQUIRE(f.store->CreateJoinToken(MakeToken("t1", f.Now())).ok());
  REQUIRE(f.store->ConsumeJoinToken("t1", kHashA, f.Now()).ok());
  auto before = f.store->Snapshot();
  REQUIRE(before.ok());
  f.store.reset();
  f.store = f.Open();
  auto after = f.store->Snapshot();
  REQUIRE(after.ok());
  CHECK(after->revision == before->revision);
  CHECK(after->nodes == before->nodes);
  CHECK(after->join_tokens == before->join_tokens);
  CHECK(after->nodes[0].last_heartbeat == f.Now());
  CHECK(f.store->ChangesSince(0, 10)->size() == 3);
  REQUIRE(f.store->CreateNode(MakeNode("n2", "pi-2")).ok());
  CHECK(f.Revision() == 4);
}

TEST_CASE("A node survives a JSON round trip") {
  Node node = MakeNode("n1", "pi-1");
  node.last_heartbeat = node.registered_at + std::chrono::seconds(5);
  node.revision = 9;
  CHECK(*NodeFromJson(NodeToJson(node)) == node);
}

TEST_CASE("A join token survives a JSON round trip") {
  JoinToken token = MakeToken("t1", TimePoint(hours(1000)));
  token.revoked_at = token.created_at + minutes(5);
  token.max_uses = 4;
  token.use_count = 2;
  CHECK(*JoinTokenFromJson(JoinTokenToJson(token)) == token);
}

TEST_CASE("Malformed JSON records are INVALID_ARGUMENT") {
  CHECK(absl::IsInvalidArgument(NodeFromJson("{").status()));
  CHECK(absl::IsInvalidArgument(NodeFromJson("{\"id\": 3}").status()));
  CHECK(absl::IsInvalidArgument(JoinTokenFromJson("[]").status()));
}

TEST_CASE("ParseNodeState accepts every name NodeStateName produces and nothing else") {
  for (NodeState state : {NodeState::kRegistered, NodeState::kReady, NodeState::kDown,
                          NodeState::kDraining, NodeState::kCordoned, NodeState::kRemoved}) {
    CHECK(*ParseNodeState(NodeStateName(state)) == state);
  }
  CHECK(absl::IsInvalidArgument(ParseNodeState("ready").status()));
  CHECK(NodeStateName(static_cast<NodeState>(99)) == "UNKNOWN");
}

TEST_CASE("ParseAdminState accepts every name AdminStateName produces and nothing else") {
  for (AdminState state : {AdminState::kNone, AdminState::kCordoned, AdminState::kDraining}) {
    CHECK(*ParseAdminState(AdminStateName(state)) == state);
  }
  CHECK(absl::IsInvalidArgument(ParseAdminState("cordoned").status()));
  CHECK(AdminStateName(static_cast<AdminState>(7)) == "UNKNOWN");
}

TEST_CASE("A node's admin state is stored, logged and survives a JSON round trip") {
  Fixture f;
  Node node = MakeNode("n1", "pi-1");
  node.admin_state = AdminState::kDraining;
  REQUIRE(f.store->CreateNode(node).ok());
  CHECK(f.store->GetNode("n1")->admin_state == AdminState::kDraining);
  auto changes = f.store->ChangesSince(0, 10);
  REQUIRE(changes.ok());
  REQUIRE(changes->size() == 1);
  CHECK(NodeFromJson(changes->front().record)->admin_state == AdminState::kDraining);
}

TEST_CASE("CreateNode refuses an admin state outside the enum and stores nothing") {
  Fixture f;
  Node node = MakeNode("n1", "pi-1");
  node.admin_state = static_cast<AdminState>(7);
  CHECK(absl::IsInvalidArgument(f.store->CreateNode(node).status()));
  CHECK(f.Revision() == 0);
}

TEST_CASE("A node record written before schema version 2 reads with no admin state") {
  Node node = MakeNode("n1", "pi-1");
  node.admin_state = AdminState::kCordoned;
  nlohmann::json old_record = nlohmann::json::parse(NodeToJson(node));
  old_record.erase("admin_state");
  absl::StatusOr<Node> read = NodeFromJson(old_record.dump());
  REQUIRE(read.ok());
  CHECK(read->admin_state == AdminState::kNone);
}

TEST_CASE("Migrating a version 1 database keeps its nodes and gives them no admin state") {
  Fixture f;
  f.store.reset();
  std::filesystem::remove(f.path);
  {
    auto db = SqliteDb::Open(f.path);
    REQUIRE(db.ok());
    REQUIRE(ApplyMigrations(**db, SqliteClusterStore::Migrations().first(1), f.Now()).ok());
    REQUIRE((*db)
                ->Exec("INSERT INTO nodes VALUES ('n1', 'pi-1', 'pi-1:9091', '{}', '{}', "
                       "'CORDONED', 0, NULL, '', '', 1)",
                       "insert a version 1 node")
                .ok());
  }
  f.store = f.Open();
  absl::StatusOr<Node> node = f.store->GetNode("n1");
  REQUIRE(node.ok());
  CHECK(node->state == NodeState::kCordoned);
  CHECK(node->admin_state == AdminState::kNone);
}

}  // namespace
}  // namespace pi::controlplane::store
