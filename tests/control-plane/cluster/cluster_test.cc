#include "control-plane/cluster/cluster.h"

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/system/clock.h"
#include "common/tls/identity.h"
#include "common/tls/x509.h"
#include "control-plane/cluster/join_token.h"
#include "control-plane/store/sqlite_cluster_store.h"
#include "tests/common/test_dir.h"

namespace pi::controlplane::cluster {
namespace {

using pi::testing::TempDir;
using std::chrono::hours;
using std::chrono::seconds;
using store::AdminState;
using store::NodeState;

const common::Identity kAdmin{common::Role::kAdmin, "alice"};

CertificateAuthority LoadCa(const std::string& dir, const common::Clock& clock) {
  absl::StatusOr<CertificateAuthority> ca = CertificateAuthority::LoadOrCreate(dir, clock);
  REQUIRE(ca.ok());
  return *std::move(ca);
}

std::string NewCsr() {
  absl::StatusOr<std::string> key = common::GenerateEcPrivateKeyPem();
  REQUIRE(key.ok());
  // What the CSR asks for is ignored: the controller decides the identity.
  absl::StatusOr<std::string> csr = common::CreateCsr(*key, "node:whatever", {"evil.example"});
  REQUIRE(csr.ok());
  return *csr;
}

// A CSR that parses and verifies but whose key (Ed25519) the CA does not sign for; made once with
// `openssl genpkey -algorithm ed25519` and `openssl req -new -subj /CN=node:ed25519`.
constexpr char kEd25519Csr[] = R"(-----BEGIN CERTIFICATE REQUEST-----
MIGWMEoCAQAwFzEVMBMGA1UEAwwMbm9kZTplZDI1NTE5MCowBQYDK2VwAyEA9GEm
BYP2Rs0Iedq9g9MpbDstqIW+v/NEFdymmlRLHAOgADAFBgMrZXADQQASxmf4ocap
a6HGfQ0Du8U2hXEBj8VtU19SDtDBePBcfIYh+uv7IQ/mFuWqKNsjX0RMpqXPr9wI
ZcolgjzhsK0C
-----END CERTIFICATE REQUEST-----
)";

// Whether `cert_pem` was issued and signed by the CA in `ca_pem`.
bool IssuedBy(const std::string& cert_pem, const std::string& ca_pem) {
  absl::StatusOr<common::X509Ptr> cert = common::ParseCertificatePem(cert_pem);
  absl::StatusOr<common::X509Ptr> ca = common::ParseCertificatePem(ca_pem);
  REQUIRE(cert.ok());
  REQUIRE(ca.ok());
  return X509_check_issued(ca->get(), cert->get()) == X509_V_OK &&
         X509_verify(cert->get(), X509_get0_pubkey(ca->get())) == 1;
}

// A node's credentials as the transport would report them.
Caller NodeCaller(const RegistrationResult& result) {
  absl::StatusOr<common::CertificateInfo> info = common::ParseCertificate(result.certificate_pem);
  REQUIRE(info.ok());
  absl::StatusOr<common::Identity> identity = common::ParseIdentity(info->common_name);
  REQUIRE(identity.ok());
  return Caller{*identity, info->sha256_fingerprint};
}

std::unique_ptr<store::SqliteClusterStore> OpenStore(const std::string& path,
                                                     const common::Clock& clock) {
  absl::StatusOr<std::unique_ptr<store::SqliteClusterStore>> opened =
      store::SqliteClusterStore::Open(path, clock);
  REQUIRE(opened.ok());
  return *std::move(opened);
}

struct Fixture {
  explicit Fixture(ClusterOptions cluster_options = {}) : options(cluster_options) { Restart(); }

  // A new Cluster on the same store, as after a controller restart.
  void Restart() {
    cluster.reset();
    absl::StatusOr<std::unique_ptr<Cluster>> created = Cluster::Create(*store, ca, clock, options);
    REQUIRE(created.ok());
    cluster = *std::move(created);
  }

  int64_t Revision() {
    absl::StatusOr<int64_t> revision = store->CurrentRevision();
    REQUIRE(revision.ok());
    return *revision;
  }

  CreatedJoinToken NewToken(std::optional<int64_t> max_uses = std::nullopt,
                            std::optional<seconds> ttl = std::nullopt) {
    absl::StatusOr<CreatedJoinToken> token =
        cluster->CreateJoinToken(kAdmin, "test nodes", ttl, max_uses);
    REQUIRE(token.ok());
    return *std::move(token);
  }

  Registration Request(const std::string& hostname, const std::string& token) {
    Registration registration;
    registration.join_token = token;
    registration.hostname = hostname;
    registration.agent_address = "10.0.0.5:9091";
    registration.peer_host = "10.0.0.5";
    registration.labels = {{"role", "sensor"}};
    registration.facts = {{"arch", "aarch64"}};
    registration.csr_pem = NewCsr();
    return registration;
  }

  RegistrationResult Join(const std::string& hostname) {
    absl::StatusOr<RegistrationResult> result =
        cluster->RegisterNode(Request(hostname, NewToken().text), Caller{});
    INFO(result.status().ToString());
    REQUIRE(result.ok());
    return *std::move(result);
  }

  // Joins `hostname` and sends its first heartbeat.
  Caller JoinReady(const std::string& hostname) {
    const Caller caller = NodeCaller(Join(hostname));
    REQUIRE(cluster->ReportHealth(caller, caller.identity->name, "{}").ok());
    return caller;
  }

  NodeView Get(const std::string& id) {
    absl::StatusOr<NodeView> view = cluster->GetNode(id);
    INFO(view.status().ToString());
    REQUIRE(view.ok());
    return *std::move(view);
  }
  NodeState StateOf(const std::string& id) { return Get(id).node.state; }

  // Lets `by` pass and ticks once.
  void SilentFor(std::chrono::nanoseconds by) {
    clock.Advance(by);
    REQUIRE(cluster->Tick().ok());
  }

  std::vector<std::string> ListedIds(const std::string& selector,
                                     const std::set<NodeState>& states) {
    absl::StatusOr<std::vector<NodeView>> views = cluster->ListNodes(selector, states);
    INFO(views.status().ToString());
    REQUIRE(views.ok());
    std::vector<std::string> ids;
    for (const NodeView& view : *views) ids.push_back(view.node.id);
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  TempDir dir;
  common::ManualClock clock;
  std::unique_ptr<store::SqliteClusterStore> store =
      OpenStore((dir.path() / "cluster.db").string(), clock);
  CertificateAuthority ca = LoadCa((dir.path() / "ca").string(), clock);
  ClusterOptions options;
  std::unique_ptr<Cluster> cluster;
};

// The silence after which a node with default options is DOWN.
const seconds kDownAfter = ClusterOptions{}.heartbeat_ttl + ClusterOptions{}.down_grace;

// ---- Create ------------------------------------------------------------------------------------

TEST_CASE("Create refuses a heartbeat interval longer than the TTL") {
  Fixture f;
  ClusterOptions options;
  options.heartbeat_interval = seconds(30);
  options.heartbeat_ttl = seconds(10);
  CHECK(Cluster::Create(*f.store, f.ca, f.clock, options).status().code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Create refuses a default token TTL beyond the maximum") {
  Fixture f;
  ClusterOptions options;
  options.default_token_ttl = hours(24 * 31);
  CHECK(Cluster::Create(*f.store, f.ca, f.clock, options).status().code() ==
        absl::StatusCode::kInvalidArgument);
}

// A registration by a node that already joined: no token, no CSR.
Registration Reregistration(Fixture& f, const std::string& hostname) {
  Registration request = f.Request(hostname, "");
  request.csr_pem.clear();
  return request;
}

// ---- joining -----------------------------------------------------------------------------------

TEST_CASE("A join with a valid token creates a REGISTERED node named after the hostname") {
  Fixture f;
  const CreatedJoinToken token = f.NewToken();
  const int64_t before = f.Revision();
  absl::StatusOr<RegistrationResult> result =
      f.cluster->RegisterNode(f.Request("Pi-Kitchen", token.text), Caller{});
  INFO(result.status().ToString());
  REQUIRE(result.ok());
  CHECK(result->node_id == "pi-kitchen");
  CHECK(result->agent_address == "10.0.0.5:9091");
  CHECK(result->ca_pem == f.ca.ca_pem());
  CHECK(result->heartbeat_interval == f.options.heartbeat_interval);

  absl::StatusOr<common::CertificateInfo> info = common::ParseCertificate(result->certificate_pem);
  REQUIRE(info.ok());
  CHECK(info->common_name == "node:pi-kitchen");
  CHECK(std::count(info->sans.begin(), info->sans.end(), "pi-kitchen.node.pi-controller") == 1);
  CHECK(std::count(info->sans.begin(), info->sans.end(), "evil.example") == 0);
  CHECK(IssuedBy(result->certificate_pem, f.ca.ca_pem()));

  const NodeView view = f.Get("pi-kitchen");
  CHECK(view.node.hostname == "Pi-Kitchen");
  CHECK(view.node.state == NodeState::kRegistered);
  CHECK(view.node.admin_state == AdminState::kNone);
  CHECK(view.node.agent_address == "10.0.0.5:9091");
  CHECK(view.node.labels == std::map<std::string, std::string>{{"role", "sensor"}});
  CHECK(view.node.facts == std::map<std::string, std::string>{{"arch", "aarch64"}});
  CHECK(view.node.cert_sha256 == info->sha256_fingerprint);
  CHECK(view.node.cert_serial == info->serial_hex);
  CHECK(view.node.registered_at == f.clock.WallNow());
  CHECK_FALSE(view.node.last_heartbeat.has_value());

  absl::StatusOr<store::JoinToken> stored = f.store->GetJoinToken(token.token.id);
  REQUIRE(stored.ok());
  CHECK(stored->use_count == 1);
  CHECK(f.Revision() > before);
  CHECK(f.cluster->feed().Current() == f.Revision());
}

TEST_CASE("The node certificate does not verify against another CA") {
  Fixture f;
  TempDir other_dir;
  const CertificateAuthority other = LoadCa(other_dir.path().string(), f.clock);
  CHECK_FALSE(IssuedBy(f.Join("pi-1").certificate_pem, other.ca_pem()));
}

TEST_CASE("An unspecified agent host is replaced by the peer's address") {
  Fixture f;
  const std::string agent_address =
      GENERATE(as<std::string>{}, "0.0.0.0:9091", ":9091", "[::]:9091");
  Registration request = f.Request("pi-1", f.NewToken().text);
  request.agent_address = agent_address;
  request.peer_host = "192.168.1.20";
  absl::StatusOr<RegistrationResult> result = f.cluster->RegisterNode(request, Caller{});
  REQUIRE(result.ok());
  CHECK(result->agent_address == "192.168.1.20:9091");
  CHECK(f.Get("pi-1").node.agent_address == "192.168.1.20:9091");
}

TEST_CASE("An unspecified agent host without a peer address is INVALID_ARGUMENT") {
  Fixture f;
  Registration request = f.Request("pi-1", f.NewToken().text);
  request.agent_address = "0.0.0.0:9091";
  request.peer_host = "";
  const int64_t before = f.Revision();
  CHECK(f.cluster->RegisterNode(request, Caller{}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(f.Revision() == before);
}

TEST_CASE("A hostname that is already registered is ALREADY_EXISTS and keeps the token unused") {
  Fixture f;
  f.Join("pi-1");
  const CreatedJoinToken token = f.NewToken(1);
  const int64_t before = f.Revision();
  absl::StatusOr<RegistrationResult> again =
      f.cluster->RegisterNode(f.Request("pi-1", token.text), Caller{});
  CHECK(again.status().code() == absl::StatusCode::kAlreadyExists);
  CHECK(f.Revision() == before);
  CHECK(f.store->GetJoinToken(token.token.id)->use_count == 0);
  // The single use is still there for another node.
  CHECK(f.cluster->RegisterNode(f.Request("pi-2", token.text), Caller{}).ok());
}

TEST_CASE("A removed node's hostname joins again under a new id; the old certificate stays out") {
  Fixture f;
  const Caller old_caller = f.JoinReady("pi-1");
  REQUIRE(f.cluster->RemoveNode("pi-1").ok());

  const RegistrationResult rejoined = f.Join("pi-1");
  // Never the removed id: the old certificate names "pi-1.node.pi-controller".
  CHECK(rejoined.node_id == "pi-1-2");
  const Caller new_caller = NodeCaller(rejoined);
  CHECK(new_caller.cert_sha256 != old_caller.cert_sha256);
  CHECK(f.StateOf("pi-1") == NodeState::kRemoved);
  CHECK(f.StateOf("pi-1-2") == NodeState::kRegistered);

  CHECK(f.cluster->ReportHealth(old_caller, "pi-1", "{}").code() ==
        absl::StatusCode::kPermissionDenied);
  Registration reregistration = f.Request("pi-1", "");
  reregistration.csr_pem.clear();
  CHECK(f.cluster->RegisterNode(reregistration, old_caller).status().code() ==
        absl::StatusCode::kPermissionDenied);
  CHECK(f.cluster->ReportHealth(new_caller, "pi-1-2", "{}").ok());
  CHECK(f.StateOf("pi-1-2") == NodeState::kReady);
}

TEST_CASE("A node certificate names only the node's own TLS name, whatever the request says") {
  Fixture f;
  Registration request = f.Request("controller", f.NewToken().text);
  request.agent_address = "192.0.2.1:9091";
  absl::StatusOr<RegistrationResult> joined = f.cluster->RegisterNode(request, Caller{});
  REQUIRE(joined.ok());
  absl::StatusOr<common::CertificateInfo> info = common::ParseCertificate(joined->certificate_pem);
  REQUIRE(info.ok());
  CHECK(info->sans == std::vector<std::string>{"controller.node.pi-controller"});
}

TEST_CASE("A hostname that cannot become a TLS name is refused before the token is used") {
  Fixture f;
  const CreatedJoinToken token = f.NewToken(1);
  for (const std::string hostname : {"pi.", "pi..1", "pi-"}) {
    CAPTURE(hostname);
    CHECK(f.cluster->RegisterNode(f.Request(hostname, token.text), Caller{}).status().code() ==
          absl::StatusCode::kInvalidArgument);
  }
  CHECK(f.store->GetJoinToken(token.token.id)->use_count == 0);
}

TEST_CASE("Hostnames that map to the same id get numbered ids") {
  Fixture f;
  CHECK(f.Join("pi_1").node_id == "pi-1");
  CHECK(f.Join("pi-1").node_id == "pi-1-2");
  CHECK(f.Join("PI-1").node_id == "pi-1-3");
  CHECK(f.Get("pi-1-2").node.hostname == "pi-1");
}

// ---- join refusals
// -------------------------------------------------------------------------------

// Asserts that a join attempt failed with `code` and left the store as it was.
void CheckRefused(Fixture& f, const Registration& request, absl::StatusCode code) {
  const int64_t before = f.Revision();
  absl::StatusOr<RegistrationResult> result = f.cluster->RegisterNode(request, Caller{});
  INFO(result.status().ToString());
  CHECK(result.status().code() == code);
  CHECK(f.Revision() == before);
  CHECK_FALSE(f.store->FindNodeByHostname(request.hostname).ok());
}

TEST_CASE("A join with a wrong secret is UNAUTHENTICATED") {
  Fixture f;
  const CreatedJoinToken token = f.NewToken();
  std::string text = token.text;
  text.back() = text.back() == 'a' ? 'b' : 'a';
  CheckRefused(f, f.Request("pi-1", text), absl::StatusCode::kUnauthenticated);
  CHECK(f.store->GetJoinToken(token.token.id)->use_count == 0);
}

TEST_CASE("A join with an unknown token id is UNAUTHENTICATED") {
  Fixture f;
  absl::StatusOr<MintedJoinToken> minted = MintJoinToken(f.ca.pin());
  REQUIRE(minted.ok());
  CheckRefused(f, f.Request("pi-1", minted->text), absl::StatusCode::kUnauthenticated);
}

TEST_CASE("A join with an expired token is UNAUTHENTICATED") {
  Fixture f;
  const CreatedJoinToken token = f.NewToken(std::nullopt, seconds(60));
  f.clock.Advance(seconds(61));
  CheckRefused(f, f.Request("pi-1", token.text), absl::StatusCode::kUnauthenticated);
}

TEST_CASE("A join with a revoked token is UNAUTHENTICATED") {
  Fixture f;
  const CreatedJoinToken token = f.NewToken();
  REQUIRE(f.cluster->RevokeJoinToken(token.token.id).ok());
  CheckRefused(f, f.Request("pi-1", token.text), absl::StatusCode::kUnauthenticated);
}

TEST_CASE("A join with a used-up token is UNAUTHENTICATED") {
  Fixture f;
  const CreatedJoinToken token = f.NewToken(1);
  REQUIRE(f.cluster->RegisterNode(f.Request("pi-1", token.text), Caller{}).ok());
  CheckRefused(f, f.Request("pi-2", token.text), absl::StatusCode::kUnauthenticated);
  CHECK(f.store->GetJoinToken(token.token.id)->use_count == 1);
}

TEST_CASE("A token made for another CA is PERMISSION_DENIED and consumes nothing") {
  Fixture f;
  TempDir other_dir;
  const CertificateAuthority other = LoadCa(other_dir.path().string(), f.clock);
  absl::StatusOr<MintedJoinToken> minted = MintJoinToken(other.pin());
  REQUIRE(minted.ok());
  // The id and secret are valid here; only the CA pin is foreign.
  store::JoinToken record;
  record.id = minted->id;
  record.secret_hash = minted->secret_hash;
  record.created_by = kAdmin.ToString();
  record.created_at = f.clock.WallNow();
  record.expires_at = f.clock.WallNow() + hours(1);
  REQUIRE(f.store->CreateJoinToken(record).ok());
  CheckRefused(f, f.Request("pi-1", minted->text), absl::StatusCode::kPermissionDenied);
  CHECK(f.store->GetJoinToken(minted->id)->use_count == 0);
}

TEST_CASE("A malformed token is INVALID_ARGUMENT") {
  Fixture f;
  CheckRefused(f, f.Request("pi-1", "K10notatoken"), absl::StatusCode::kInvalidArgument);
}

TEST_CASE("A bad hostname is INVALID_ARGUMENT") {
  Fixture f;
  const std::string hostname =
      GENERATE(as<std::string>{}, "", "-pi", "pi 1", "pi/1", std::string(254, 'a'));
  CheckRefused(f, f.Request(hostname, f.NewToken().text), absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Bad labels in a join are INVALID_ARGUMENT") {
  Fixture f;
  Registration request = f.Request("pi-1", f.NewToken().text);
  request.labels = {{"-role", "x"}};
  CheckRefused(f, request, absl::StatusCode::kInvalidArgument);
}

TEST_CASE("A bad label value in a join is INVALID_ARGUMENT") {
  Fixture f;
  Registration request = f.Request("pi-1", f.NewToken().text);
  request.labels = {{"role", "a b"}};
  CheckRefused(f, request, absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Bad facts in a join are INVALID_ARGUMENT") {
  Fixture f;
  Registration request = f.Request("pi-1", f.NewToken().text);
  request.facts = {{"kernel", "6.1\n"}};
  CheckRefused(f, request, absl::StatusCode::kInvalidArgument);
}

TEST_CASE("A join without a CSR is INVALID_ARGUMENT") {
  Fixture f;
  const CreatedJoinToken token = f.NewToken();
  Registration request = f.Request("pi-1", token.text);
  request.csr_pem.clear();
  CheckRefused(f, request, absl::StatusCode::kInvalidArgument);
  CHECK(f.store->GetJoinToken(token.token.id)->use_count == 0);
}

TEST_CASE("A join with a CSR that does not parse is INVALID_ARGUMENT") {
  Fixture f;
  const CreatedJoinToken token = f.NewToken();
  Registration request = f.Request("pi-1", token.text);
  request.csr_pem =
      "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n";
  CheckRefused(f, request, absl::StatusCode::kInvalidArgument);
  CHECK(f.store->GetJoinToken(token.token.id)->use_count == 0);
}

TEST_CASE("A join with a CSR key the CA does not accept is INVALID_ARGUMENT and consumes nothing") {
  Fixture f;
  const CreatedJoinToken token = f.NewToken();
  Registration request = f.Request("pi-1", token.text);
  request.csr_pem = kEd25519Csr;
  CheckRefused(f, request, absl::StatusCode::kInvalidArgument);
  CHECK(f.store->GetJoinToken(token.token.id)->use_count == 0);
}

TEST_CASE("A refused CSR does not free a removed node's id record") {
  Fixture f;
  f.Join("pi-1");
  REQUIRE(f.cluster->RemoveNode("pi-1").ok());
  Registration request = f.Request("pi-1", f.NewToken().text);
  request.csr_pem = kEd25519Csr;
  const int64_t before = f.Revision();
  CHECK(f.cluster->RegisterNode(request, Caller{}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(f.Revision() == before);
  CHECK(f.StateOf("pi-1") == NodeState::kRemoved);
}

TEST_CASE("An agent address without a port is INVALID_ARGUMENT") {
  Fixture f;
  Registration request = f.Request("pi-1", f.NewToken().text);
  request.agent_address = "10.0.0.5";
  CheckRefused(f, request, absl::StatusCode::kInvalidArgument);
}

TEST_CASE("A join may give port 0 while the agent does not listen yet") {
  Fixture f;
  Registration request = f.Request("pi-1", f.NewToken().text);
  request.agent_address = "0.0.0.0:0";
  absl::StatusOr<RegistrationResult> joined = f.cluster->RegisterNode(request, Caller{});
  INFO(joined.status().ToString());
  REQUIRE(joined.ok());
  CHECK(f.Get("pi-1").node.agent_address == "10.0.0.5:0");
  // It registers again with its port once it listens.
  Registration again = Reregistration(f, "pi-1");
  again.agent_address = "0.0.0.0:9091";
  absl::StatusOr<RegistrationResult> registered =
      f.cluster->RegisterNode(again, NodeCaller(*joined));
  REQUIRE(registered.ok());
  CHECK(f.Get("pi-1").node.agent_address == "10.0.0.5:9091");
}

TEST_CASE("An agent address with an empty port is INVALID_ARGUMENT") {
  Fixture f;
  Registration request = f.Request("pi-1", f.NewToken().text);
  request.agent_address = "10.0.0.5:";
  CheckRefused(f, request, absl::StatusCode::kInvalidArgument);
}

TEST_CASE("An agent address with a port beyond 65535 is INVALID_ARGUMENT") {
  Fixture f;
  Registration request = f.Request("pi-1", f.NewToken().text);
  request.agent_address = "10.0.0.5:99999";
  CheckRefused(f, request, absl::StatusCode::kInvalidArgument);
}

TEST_CASE("A registration with neither token nor identity is UNAUTHENTICATED") {
  Fixture f;
  Registration request = f.Request("pi-1", "");
  CheckRefused(f, request, absl::StatusCode::kUnauthenticated);
}

// ---- re-registration
// -----------------------------------------------------------------------------

TEST_CASE("Re-registration with the node's certificate changes nothing when nothing changed") {
  Fixture f;
  const Caller caller = NodeCaller(f.Join("pi-1"));
  const int64_t before = f.Revision();
  absl::StatusOr<RegistrationResult> result =
      f.cluster->RegisterNode(Reregistration(f, "pi-1"), caller);
  INFO(result.status().ToString());
  REQUIRE(result.ok());
  CHECK(result->node_id == "pi-1");
  CHECK(result->certificate_pem.empty());
  CHECK(result->ca_pem == f.ca.ca_pem());
  CHECK(result->heartbeat_interval == f.options.heartbeat_interval);
  CHECK(f.Revision() == before);
}

TEST_CASE("Re-registration updates the address and facts and bumps the revision") {
  Fixture f;
  const Caller caller = NodeCaller(f.Join("pi-1"));
  const std::string fingerprint = f.Get("pi-1").node.cert_sha256;
  const int64_t before = f.Revision();
  Registration request = Reregistration(f, "pi-1");
  request.agent_address = ":9092";
  request.peer_host = "10.0.0.9";
  request.facts = {{"arch", "aarch64"}, {"kernel", "6.6"}};
  request.labels = {{"ignored", "yes"}};
  absl::StatusOr<RegistrationResult> result = f.cluster->RegisterNode(request, caller);
  REQUIRE(result.ok());
  CHECK(result->agent_address == "10.0.0.9:9092");
  CHECK(f.Revision() > before);
  CHECK(f.cluster->feed().Current() == f.Revision());
  const NodeView view = f.Get("pi-1");
  CHECK(view.node.agent_address == "10.0.0.9:9092");
  CHECK(view.node.facts == request.facts);
  // Labels belong to admins once the node joined, and the certificate stays the joined one.
  CHECK(view.node.labels == std::map<std::string, std::string>{{"role", "sensor"}});
  CHECK(view.node.cert_sha256 == fingerprint);
  std::vector<std::pair<std::string, std::string>> targets = f.cluster->PollTargets();
  REQUIRE(targets.size() == 1);
  CHECK(targets[0].second == "10.0.0.9:9092");
}

TEST_CASE("Re-registration with a hostname another node holds is ALREADY_EXISTS") {
  Fixture f;
  const Caller caller = NodeCaller(f.Join("pi-1"));
  f.Join("pi-2");
  const int64_t before = f.Revision();
  CHECK(f.cluster->RegisterNode(Reregistration(f, "pi-2"), caller).status().code() ==
        absl::StatusCode::kAlreadyExists);
  CHECK(f.Revision() == before);
  CHECK(f.Get("pi-1").node.hostname == "pi-1");
}

TEST_CASE("Re-registration with a new hostname keeps the node id") {
  Fixture f;
  const Caller caller = NodeCaller(f.Join("pi-1"));
  absl::StatusOr<RegistrationResult> result =
      f.cluster->RegisterNode(Reregistration(f, "pi-renamed"), caller);
  REQUIRE(result.ok());
  CHECK(result->node_id == "pi-1");
  CHECK(f.Get("pi-1").node.hostname == "pi-renamed");
}

TEST_CASE("Re-registration with port 0 is INVALID_ARGUMENT") {
  Fixture f;
  const Caller caller = NodeCaller(f.Join("pi-1"));
  Registration request = Reregistration(f, "pi-1");
  request.agent_address = "10.0.0.5:0";
  const int64_t before = f.Revision();
  CHECK(f.cluster->RegisterNode(request, caller).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(f.Revision() == before);
  CHECK(f.Get("pi-1").node.agent_address == "10.0.0.5:9091");
}

TEST_CASE("Re-registration with a wrong fingerprint is PERMISSION_DENIED") {
  Fixture f;
  Caller caller = NodeCaller(f.Join("pi-1"));
  caller.cert_sha256 = std::string(64, 'f');
  const int64_t before = f.Revision();
  Registration request = Reregistration(f, "pi-1");
  request.agent_address = "10.0.0.99:9091";
  CHECK(f.cluster->RegisterNode(request, caller).status().code() ==
        absl::StatusCode::kPermissionDenied);
  CHECK(f.Revision() == before);
  CHECK(f.Get("pi-1").node.agent_address == "10.0.0.5:9091");
}

TEST_CASE("Re-registration without a fingerprint is PERMISSION_DENIED") {
  Fixture f;
  Caller caller = NodeCaller(f.Join("pi-1"));
  caller.cert_sha256.clear();
  CHECK(f.cluster->RegisterNode(Reregistration(f, "pi-1"), caller).status().code() ==
        absl::StatusCode::kPermissionDenied);
}

TEST_CASE("Re-registration of a removed node is PERMISSION_DENIED") {
  Fixture f;
  const Caller caller = NodeCaller(f.Join("pi-1"));
  REQUIRE(f.cluster->RemoveNode("pi-1").ok());
  const int64_t before = f.Revision();
  CHECK(f.cluster->RegisterNode(Reregistration(f, "pi-1"), caller).status().code() ==
        absl::StatusCode::kPermissionDenied);
  CHECK(f.Revision() == before);
}

TEST_CASE("Re-registration by an admin identity is PERMISSION_DENIED") {
  Fixture f;
  f.Join("pi-1");
  CHECK(f.cluster->RegisterNode(Reregistration(f, "pi-1"), Caller{kAdmin, std::string(64, 'a')})
            .status()
            .code() == absl::StatusCode::kPermissionDenied);
}

// ---- heartbeats and liveness -------------------------------------------------------------------

TEST_CASE("A node may not report health for another node") {
  Fixture f;
  const Caller a = NodeCaller(f.Join("pi-a"));
  f.Join("pi-b");
  CHECK(f.cluster->ReportHealth(a, "pi-b", "{}").code() == absl::StatusCode::kPermissionDenied);
  CHECK(f.StateOf("pi-b") == NodeState::kRegistered);
}

TEST_CASE("An admin may not report health") {
  Fixture f;
  f.Join("pi-1");
  CHECK(f.cluster->ReportHealth(Caller{kAdmin, std::string(64, 'a')}, "pi-1", "{}").code() ==
        absl::StatusCode::kPermissionDenied);
}

TEST_CASE("An anonymous caller may not report health") {
  Fixture f;
  f.Join("pi-1");
  CHECK(f.cluster->ReportHealth(Caller{}, "pi-1", "{}").code() ==
        absl::StatusCode::kPermissionDenied);
}

TEST_CASE("A heartbeat with a wrong fingerprint is PERMISSION_DENIED") {
  Fixture f;
  Caller caller = NodeCaller(f.Join("pi-1"));
  caller.cert_sha256 = std::string(64, '0');
  CHECK(f.cluster->ReportHealth(caller, "pi-1", "{}").code() ==
        absl::StatusCode::kPermissionDenied);
  CHECK(f.StateOf("pi-1") == NodeState::kRegistered);
}

TEST_CASE("The first heartbeat makes a node READY and bumps the revision once") {
  Fixture f;
  const Caller caller = NodeCaller(f.Join("pi-1"));
  const int64_t before = f.Revision();
  REQUIRE(f.cluster->ReportHealth(caller, "pi-1", "summary-1").ok());
  CHECK(f.StateOf("pi-1") == NodeState::kReady);
  CHECK(f.Revision() == before + 1);
  CHECK(f.cluster->feed().Current() == before + 1);

  f.clock.Advance(seconds(5));
  REQUIRE(f.cluster->ReportHealth(caller, "pi-1", "summary-2").ok());
  REQUIRE(f.cluster->Tick().ok());
  CHECK(f.Revision() == before + 1);
  const NodeView view = f.Get("pi-1");
  CHECK(view.node.state == NodeState::kReady);
  CHECK(view.health_summary == "summary-2");
  CHECK(view.node.last_heartbeat == f.clock.WallNow());
}

TEST_CASE("Tick marks a silent node DOWN only after TTL plus grace") {
  Fixture f;
  f.JoinReady("pi-1");
  const int64_t before = f.Revision();
  f.SilentFor(kDownAfter);
  CHECK(f.StateOf("pi-1") == NodeState::kReady);
  CHECK(f.Revision() == before);
  f.SilentFor(std::chrono::milliseconds(1));
  CHECK(f.StateOf("pi-1") == NodeState::kDown);
  CHECK(f.Revision() == before + 1);
  CHECK(f.cluster->feed().Current() == f.Revision());
  // A second tick changes nothing more.
  f.SilentFor(seconds(60));
  CHECK(f.Revision() == before + 1);
}

TEST_CASE("A heartbeat resets the silence") {
  Fixture f;
  const Caller caller = f.JoinReady("pi-1");
  f.SilentFor(kDownAfter - seconds(1));
  REQUIRE(f.cluster->ReportHealth(caller, "pi-1", "{}").ok());
  f.SilentFor(kDownAfter - seconds(1));
  CHECK(f.StateOf("pi-1") == NodeState::kReady);
}

TEST_CASE("A node that never heartbeats goes DOWN too") {
  Fixture f;
  f.Join("pi-1");
  f.SilentFor(kDownAfter + seconds(1));
  CHECK(f.StateOf("pi-1") == NodeState::kDown);
}

TEST_CASE("A heartbeat after DOWN makes the node READY again") {
  Fixture f;
  const Caller caller = f.JoinReady("pi-1");
  f.SilentFor(kDownAfter + seconds(1));
  REQUIRE(f.StateOf("pi-1") == NodeState::kDown);
  const int64_t before = f.Revision();
  REQUIRE(f.cluster->ReportHealth(caller, "pi-1", "{}").ok());
  CHECK(f.StateOf("pi-1") == NodeState::kReady);
  CHECK(f.Revision() == before + 1);
}

TEST_CASE("Tick writes heartbeat times to the store without bumping the revision") {
  Fixture f;
  const Caller caller = f.JoinReady("pi-1");
  f.clock.Advance(seconds(3));
  REQUIRE(f.cluster->ReportHealth(caller, "pi-1", "{}").ok());
  const auto at = f.clock.WallNow();
  const int64_t before = f.Revision();
  // Buffered: GetNode shows it at once, the store only after the tick.
  CHECK(f.Get("pi-1").node.last_heartbeat == at);
  CHECK(f.store->GetNode("pi-1")->last_heartbeat != at);
  REQUIRE(f.cluster->Tick().ok());
  CHECK(f.store->GetNode("pi-1")->last_heartbeat == at);
  CHECK(f.Get("pi-1").node.last_heartbeat == at);
  CHECK(f.Revision() == before);
}

TEST_CASE("A cordoned node goes DOWN when silent and comes back CORDONED") {
  Fixture f;
  const Caller caller = f.JoinReady("pi-1");
  absl::StatusOr<NodeView> cordoned = f.cluster->SetAdminState("pi-1", AdminState::kCordoned);
  REQUIRE(cordoned.ok());
  CHECK(cordoned->node.state == NodeState::kCordoned);
  CHECK(cordoned->node.admin_state == AdminState::kCordoned);
  f.SilentFor(kDownAfter + seconds(1));
  CHECK(f.StateOf("pi-1") == NodeState::kDown);
  CHECK(f.Get("pi-1").node.admin_state == AdminState::kCordoned);
  REQUIRE(f.cluster->ReportHealth(caller, "pi-1", "{}").ok());
  CHECK(f.StateOf("pi-1") == NodeState::kCordoned);

  absl::StatusOr<NodeView> uncordoned = f.cluster->SetAdminState("pi-1", AdminState::kNone);
  REQUIRE(uncordoned.ok());
  CHECK(uncordoned->node.state == NodeState::kReady);
  CHECK(uncordoned->node.admin_state == AdminState::kNone);
}

TEST_CASE("Cordoning a node that never heartbeated keeps it not READY") {
  Fixture f;
  f.Join("pi-1");
  REQUIRE(f.cluster->SetAdminState("pi-1", AdminState::kCordoned).ok());
  CHECK(f.StateOf("pi-1") == NodeState::kCordoned);
  REQUIRE(f.cluster->SetAdminState("pi-1", AdminState::kNone).ok());
  CHECK(f.StateOf("pi-1") == NodeState::kRegistered);
}

TEST_CASE("A draining node goes DOWN when silent and comes back DRAINING") {
  Fixture f;
  const Caller caller = f.JoinReady("pi-1");
  REQUIRE(f.cluster->SetAdminState("pi-1", AdminState::kDraining).ok());
  CHECK(f.StateOf("pi-1") == NodeState::kDraining);
  f.SilentFor(kDownAfter + seconds(1));
  CHECK(f.StateOf("pi-1") == NodeState::kDown);
  REQUIRE(f.cluster->ReportHealth(caller, "pi-1", "{}").ok());
  CHECK(f.StateOf("pi-1") == NodeState::kDraining);
  REQUIRE(f.cluster->SetAdminState("pi-1", AdminState::kNone).ok());
  CHECK(f.StateOf("pi-1") == NodeState::kReady);
}

TEST_CASE("Cordoning a DOWN node keeps it DOWN until it returns") {
  Fixture f;
  const Caller caller = f.JoinReady("pi-1");
  f.SilentFor(kDownAfter + seconds(1));
  REQUIRE(f.cluster->SetAdminState("pi-1", AdminState::kCordoned).ok());
  CHECK(f.StateOf("pi-1") == NodeState::kDown);
  REQUIRE(f.cluster->ReportHealth(caller, "pi-1", "{}").ok());
  CHECK(f.StateOf("pi-1") == NodeState::kCordoned);
}

TEST_CASE("Setting the admin state a node already has bumps nothing") {
  Fixture f;
  f.JoinReady("pi-1");
  REQUIRE(f.cluster->SetAdminState("pi-1", AdminState::kCordoned).ok());
  const int64_t before = f.Revision();
  REQUIRE(f.cluster->SetAdminState("pi-1", AdminState::kCordoned).ok());
  CHECK(f.Revision() == before);
}

TEST_CASE("SetAdminState of an unknown node is NOT_FOUND") {
  Fixture f;
  CHECK(f.cluster->SetAdminState("nope", AdminState::kCordoned).status().code() ==
        absl::StatusCode::kNotFound);
}

TEST_CASE("SetAdminState of a removed node is FAILED_PRECONDITION") {
  Fixture f;
  f.Join("pi-1");
  REQUIRE(f.cluster->RemoveNode("pi-1").ok());
  CHECK(f.cluster->SetAdminState("pi-1", AdminState::kCordoned).status().code() ==
        absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("A successful health check revives a DOWN node and is recorded") {
  Fixture f;
  f.JoinReady("pi-1");
  f.SilentFor(kDownAfter + seconds(1));
  REQUIRE(f.StateOf("pi-1") == NodeState::kDown);
  f.cluster->RecordHealthCheck("pi-1", absl::OkStatus());
  const NodeView view = f.Get("pi-1");
  CHECK(view.node.state == NodeState::kReady);
  CHECK(view.last_health_check == f.clock.WallNow());
  CHECK(view.health_check_error.empty());
  // It counts as a sign of life: the node stays up for another TTL.
  f.SilentFor(kDownAfter);
  CHECK(f.StateOf("pi-1") == NodeState::kReady);
}

TEST_CASE("A successful health check makes a REGISTERED node READY") {
  Fixture f;
  f.Join("pi-1");
  f.cluster->RecordHealthCheck("pi-1", absl::OkStatus());
  CHECK(f.StateOf("pi-1") == NodeState::kReady);
  CHECK(f.cluster->feed().Current() == f.Revision());
}

TEST_CASE("A failed health check records the error and leaves the state") {
  Fixture f;
  f.JoinReady("pi-1");
  f.clock.Advance(seconds(2));
  f.cluster->RecordHealthCheck("pi-1", absl::UnavailableError("connection refused"));
  NodeView view = f.Get("pi-1");
  CHECK(view.node.state == NodeState::kReady);
  CHECK(view.last_health_check == f.clock.WallNow());
  CHECK(view.health_check_error == "connection refused");
  // Not a sign of life.
  f.SilentFor(kDownAfter - seconds(1));
  CHECK(f.StateOf("pi-1") == NodeState::kDown);

  f.cluster->RecordHealthCheck("pi-1", absl::UnavailableError("still refused"));
  CHECK(f.StateOf("pi-1") == NodeState::kDown);
  f.cluster->RecordHealthCheck("pi-1", absl::OkStatus());
  view = f.Get("pi-1");
  CHECK(view.node.state == NodeState::kReady);
  CHECK(view.health_check_error.empty());
}

TEST_CASE("Health checks of unknown or removed nodes are ignored") {
  Fixture f;
  f.Join("pi-1");
  REQUIRE(f.cluster->RemoveNode("pi-1").ok());
  const int64_t before = f.Revision();
  f.cluster->RecordHealthCheck("pi-1", absl::OkStatus());
  f.cluster->RecordHealthCheck("nope", absl::OkStatus());
  CHECK(f.StateOf("pi-1") == NodeState::kRemoved);
  CHECK(f.Revision() == before);
}

TEST_CASE("A removed node is not polled, not marked DOWN and may not heartbeat") {
  Fixture f;
  const Caller caller = f.JoinReady("pi-1");
  f.JoinReady("pi-2");
  REQUIRE(f.cluster->RemoveNode("pi-1").ok());
  std::vector<std::pair<std::string, std::string>> targets = f.cluster->PollTargets();
  REQUIRE(targets.size() == 1);
  CHECK(targets[0].first == "pi-2");
  f.SilentFor(kDownAfter + seconds(1));
  CHECK(f.StateOf("pi-1") == NodeState::kRemoved);
  CHECK(f.cluster->ReportHealth(caller, "pi-1", "{}").code() ==
        absl::StatusCode::kPermissionDenied);
}

TEST_CASE("A node that joined before listening is not polled until it tells its port") {
  Fixture f;
  Registration request = f.Request("pi-1", f.NewToken().text);
  request.agent_address = ":0";
  REQUIRE(f.cluster->RegisterNode(request, Caller{}).ok());
  f.Join("pi-2");
  std::vector<std::pair<std::string, std::string>> targets = f.cluster->PollTargets();
  REQUIRE(targets.size() == 1);
  CHECK(targets[0].first == "pi-2");
}

// ---- labels, listing, removal -----------------------------------------------------------------

TEST_CASE("LabelNode sets and removes labels") {
  Fixture f;
  f.Join("pi-1");
  const int64_t before = f.Revision();
  absl::StatusOr<NodeView> labeled =
      f.cluster->LabelNode("pi-1", {{"zone", "rack2"}, {"gpu", ""}}, {"role"});
  INFO(labeled.status().ToString());
  REQUIRE(labeled.ok());
  const std::map<std::string, std::string> wanted = {{"gpu", ""}, {"zone", "rack2"}};
  CHECK(labeled->node.labels == wanted);
  CHECK(f.Get("pi-1").node.labels == wanted);
  CHECK(f.Revision() == before + 1);
  CHECK(f.cluster->feed().Current() == f.Revision());
}

TEST_CASE("LabelNode that changes nothing bumps nothing") {
  Fixture f;
  f.Join("pi-1");
  const int64_t before = f.Revision();
  REQUIRE(f.cluster->LabelNode("pi-1", {{"role", "sensor"}}, {"absent"}).ok());
  CHECK(f.Revision() == before);
}

TEST_CASE("LabelNode with an invalid key to set is INVALID_ARGUMENT") {
  Fixture f;
  f.Join("pi-1");
  const int64_t before = f.Revision();
  CHECK(f.cluster->LabelNode("pi-1", {{"bad key", "x"}}, {}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(f.Revision() == before);
}

TEST_CASE("LabelNode with an invalid key to remove is INVALID_ARGUMENT") {
  Fixture f;
  f.Join("pi-1");
  CHECK(f.cluster->LabelNode("pi-1", {}, {""}).status().code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("LabelNode with an invalid value is INVALID_ARGUMENT") {
  Fixture f;
  f.Join("pi-1");
  CHECK(f.cluster->LabelNode("pi-1", {{"zone", "rack 2"}}, {}).status().code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("LabelNode setting and removing the same key is INVALID_ARGUMENT") {
  Fixture f;
  f.Join("pi-1");
  CHECK(f.cluster->LabelNode("pi-1", {{"zone", "a"}}, {"zone"}).status().code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("LabelNode with nothing to do is INVALID_ARGUMENT") {
  Fixture f;
  f.Join("pi-1");
  CHECK(f.cluster->LabelNode("pi-1", {}, {}).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("LabelNode of a removed node is FAILED_PRECONDITION") {
  Fixture f;
  f.Join("pi-1");
  REQUIRE(f.cluster->RemoveNode("pi-1").ok());
  CHECK(f.cluster->LabelNode("pi-1", {{"zone", "a"}}, {}).status().code() ==
        absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("LabelNode of an unknown node is NOT_FOUND") {
  Fixture f;
  CHECK(f.cluster->LabelNode("nope", {{"zone", "a"}}, {}).status().code() ==
        absl::StatusCode::kNotFound);
}

TEST_CASE("ListNodes filters by selector and by state, hiding REMOVED by default") {
  Fixture f;
  f.JoinReady("pi-1");
  f.Join("pi-2");
  f.JoinReady("pi-3");
  f.Join("pi-4");
  REQUIRE(f.cluster->LabelNode("pi-1", {{"zone", "a"}}, {}).ok());
  REQUIRE(f.cluster->LabelNode("pi-2", {{"zone", "a"}}, {}).ok());
  REQUIRE(f.cluster->LabelNode("pi-3", {{"zone", "b"}}, {}).ok());
  REQUIRE(f.cluster->RemoveNode("pi-4").ok());

  using Ids = std::vector<std::string>;
  CHECK(f.ListedIds("", {}) == Ids{"pi-1", "pi-2", "pi-3"});
  CHECK(f.ListedIds("zone=a", {}) == Ids{"pi-1", "pi-2"});
  CHECK(f.ListedIds("zone=a,role=sensor", {}) == Ids{"pi-1", "pi-2"});
  CHECK(f.ListedIds("zone=c", {}).empty());
  CHECK(f.ListedIds("", {NodeState::kReady}) == Ids{"pi-1", "pi-3"});
  CHECK(f.ListedIds("zone=a", {NodeState::kReady}) == Ids{"pi-1"});
  CHECK(f.ListedIds("", {NodeState::kRegistered, NodeState::kRemoved}) == Ids{"pi-2", "pi-4"});
  CHECK(f.ListedIds("", {NodeState::kRemoved}) == Ids{"pi-4"});
}

TEST_CASE("ListNodes with a bad selector is INVALID_ARGUMENT") {
  Fixture f;
  CHECK(f.cluster->ListNodes("zone", {}).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ListNodes shows buffered heartbeats and health summaries") {
  Fixture f;
  const Caller caller = NodeCaller(f.Join("pi-1"));
  REQUIRE(f.cluster->ReportHealth(caller, "pi-1", "cpu=3%").ok());
  absl::StatusOr<std::vector<NodeView>> views = f.cluster->ListNodes("", {});
  REQUIRE(views.ok());
  REQUIRE(views->size() == 1);
  CHECK(views->front().health_summary == "cpu=3%");
  CHECK(views->front().node.last_heartbeat == f.clock.WallNow());
}

TEST_CASE("RemoveNode marks the node REMOVED and is idempotent") {
  Fixture f;
  f.JoinReady("pi-1");
  REQUIRE(f.cluster->SetAdminState("pi-1", AdminState::kCordoned).ok());
  absl::StatusOr<NodeView> removed = f.cluster->RemoveNode("pi-1");
  REQUIRE(removed.ok());
  CHECK(removed->node.state == NodeState::kRemoved);
  CHECK(removed->node.admin_state == AdminState::kNone);
  const int64_t before = f.Revision();
  absl::StatusOr<NodeView> again = f.cluster->RemoveNode("pi-1");
  REQUIRE(again.ok());
  CHECK(again->node.state == NodeState::kRemoved);
  CHECK(f.Revision() == before);
}

TEST_CASE("RemoveNode of an unknown node is NOT_FOUND") {
  Fixture f;
  CHECK(f.cluster->RemoveNode("nope").status().code() == absl::StatusCode::kNotFound);
}

TEST_CASE("GetNode of an unknown node is NOT_FOUND") {
  Fixture f;
  CHECK(f.cluster->GetNode("nope").status().code() == absl::StatusCode::kNotFound);
}

// ---- join tokens -------------------------------------------------------------------------------

TEST_CASE("CreateJoinToken uses the default TTL and records who made it") {
  Fixture f;
  const int64_t before = f.Revision();
  const CreatedJoinToken token = f.NewToken();
  CHECK(token.token.expires_at == f.clock.WallNow() + f.options.default_token_ttl);
  CHECK(token.token.created_at == f.clock.WallNow());
  CHECK(token.token.created_by == "admin:alice");
  CHECK(token.token.description == "test nodes");
  CHECK_FALSE(token.token.max_uses.has_value());
  CHECK(token.token.use_count == 0);
  absl::StatusOr<JoinToken> parsed = ParseJoinToken(token.text);
  REQUIRE(parsed.ok());
  CHECK(parsed->ca_pin == f.ca.pin());
  CHECK(parsed->id == token.token.id);
  CHECK(token.token.secret_hash == HashJoinSecret(parsed->secret));
  CHECK(f.Revision() == before + 1);
  CHECK(f.cluster->feed().Current() == f.Revision());
}

TEST_CASE("CreateJoinToken accepts the maximum TTL and refuses one beyond it") {
  Fixture f;
  const CreatedJoinToken token = f.NewToken(3, f.options.max_token_ttl);
  CHECK(token.token.expires_at == f.clock.WallNow() + f.options.max_token_ttl);
  CHECK(token.token.max_uses == 3);
  CHECK(f.cluster->CreateJoinToken(kAdmin, "", f.options.max_token_ttl + seconds(1), std::nullopt)
            .status()
            .code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("CreateJoinToken refuses a TTL that is not positive") {
  Fixture f;
  const seconds ttl = GENERATE(seconds(0), seconds(-5));
  CHECK(f.cluster->CreateJoinToken(kAdmin, "", ttl, std::nullopt).status().code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("CreateJoinToken refuses max_uses that is not positive") {
  Fixture f;
  const int64_t max_uses = GENERATE(0, -1);
  const int64_t before = f.Revision();
  CHECK(f.cluster->CreateJoinToken(kAdmin, "", std::nullopt, max_uses).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(f.Revision() == before);
}

TEST_CASE("CreateJoinToken refuses a long description") {
  Fixture f;
  CHECK(f.cluster->CreateJoinToken(kAdmin, std::string(256, 'd'), std::nullopt, std::nullopt).ok());
  CHECK(f.cluster->CreateJoinToken(kAdmin, std::string(257, 'd'), std::nullopt, std::nullopt)
            .status()
            .code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("CreateJoinToken refuses a description with control characters") {
  Fixture f;
  CHECK(f.cluster->CreateJoinToken(kAdmin, "rack\n1", std::nullopt, std::nullopt).status().code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ListJoinTokens lists every token, and RevokeJoinToken revokes one") {
  Fixture f;
  const CreatedJoinToken a = f.NewToken();
  const CreatedJoinToken b = f.NewToken(2);
  absl::StatusOr<std::vector<store::JoinToken>> listed = f.cluster->ListJoinTokens();
  REQUIRE(listed.ok());
  std::vector<std::string> ids;
  for (const store::JoinToken& token : *listed) ids.push_back(token.id);
  std::sort(ids.begin(), ids.end());
  std::vector<std::string> wanted = {a.token.id, b.token.id};
  std::sort(wanted.begin(), wanted.end());
  CHECK(ids == wanted);
  for (const store::JoinToken& token : *listed) CHECK(token.secret_hash.size() == 64);

  f.clock.Advance(seconds(7));
  absl::StatusOr<store::JoinToken> revoked = f.cluster->RevokeJoinToken(a.token.id);
  REQUIRE(revoked.ok());
  CHECK(revoked->revoked_at == f.clock.WallNow());
  CHECK(f.cluster->feed().Current() == f.Revision());
  CHECK(f.cluster->RegisterNode(f.Request("pi-1", a.text), Caller{}).status().code() ==
        absl::StatusCode::kUnauthenticated);
  CHECK(f.cluster->RegisterNode(f.Request("pi-1", b.text), Caller{}).ok());
}

TEST_CASE("RevokeJoinToken of an unknown token is NOT_FOUND") {
  Fixture f;
  CHECK(f.cluster->RevokeJoinToken("abcdefgh").status().code() == absl::StatusCode::kNotFound);
}

// ---- change log --------------------------------------------------------------------------------

TEST_CASE("ChangesSince 0 is a full snapshot") {
  Fixture f;
  const Caller caller = NodeCaller(f.Join("pi-1"));
  REQUIRE(f.cluster->ReportHealth(caller, "pi-1", "{}").ok());
  absl::StatusOr<ClusterDelta> delta = f.cluster->ChangesSince(0, 0);
  REQUIRE(delta.ok());
  CHECK(delta->full_snapshot);
  CHECK_FALSE(delta->more);
  CHECK(delta->changes.empty());
  CHECK(delta->revision == f.Revision());
  CHECK(delta->snapshot.revision == f.Revision());
  REQUIRE(delta->snapshot.nodes.size() == 1);
  CHECK(delta->snapshot.nodes[0].id == "pi-1");
  CHECK(delta->snapshot.nodes[0].state == NodeState::kReady);
  // The buffered heartbeat is in the snapshot before Tick wrote it.
  CHECK(delta->snapshot.nodes[0].last_heartbeat == f.clock.WallNow());
  CHECK(delta->snapshot.join_tokens.size() == 1);
}

TEST_CASE("ChangesSince a revision gives exactly the changes after it") {
  Fixture f;
  f.Join("pi-1");
  const int64_t since = f.Revision();
  REQUIRE(f.cluster->LabelNode("pi-1", {{"zone", "a"}}, {}).ok());
  const CreatedJoinToken token = f.NewToken();
  REQUIRE(f.cluster->SetAdminState("pi-1", AdminState::kCordoned).ok());

  absl::StatusOr<ClusterDelta> delta = f.cluster->ChangesSince(since, 0);
  REQUIRE(delta.ok());
  CHECK_FALSE(delta->full_snapshot);
  CHECK_FALSE(delta->more);
  CHECK(delta->revision == f.Revision());
  REQUIRE(delta->changes.size() == 3);
  CHECK(delta->changes[0].revision == since + 1);
  CHECK(delta->changes[0].kind == store::Change::Kind::kNode);
  CHECK(delta->changes[0].key == "pi-1");
  CHECK(delta->changes[1].kind == store::Change::Kind::kJoinToken);
  CHECK(delta->changes[1].key == token.token.id);
  CHECK(delta->changes[2].key == "pi-1");
  CHECK(delta->changes[2].revision == f.Revision());
  absl::StatusOr<store::Node> last = store::NodeFromJson(delta->changes[2].record);
  REQUIRE(last.ok());
  CHECK(last->state == NodeState::kCordoned);
}

TEST_CASE("ChangesSince the current revision is empty") {
  Fixture f;
  f.Join("pi-1");
  absl::StatusOr<ClusterDelta> delta = f.cluster->ChangesSince(f.Revision(), 0);
  REQUIRE(delta.ok());
  CHECK_FALSE(delta->full_snapshot);
  CHECK_FALSE(delta->more);
  CHECK(delta->changes.empty());
  CHECK(delta->revision == f.Revision());
}

TEST_CASE("ChangesSince with a limit says there is more") {
  Fixture f;
  f.NewToken();
  const int64_t since = f.Revision();
  for (int i = 0; i < 5; ++i) f.NewToken();
  absl::StatusOr<ClusterDelta> delta = f.cluster->ChangesSince(since, 2);
  REQUIRE(delta.ok());
  REQUIRE(delta->changes.size() == 2);
  CHECK(delta->more);
  CHECK(delta->revision == since + 2);
  delta = f.cluster->ChangesSince(delta->revision, 3);
  REQUIRE(delta.ok());
  CHECK(delta->changes.size() == 3);
  CHECK_FALSE(delta->more);
  CHECK(delta->revision == f.Revision());
}

TEST_CASE("ChangesSince answers at most max_changes_per_sync changes") {
  ClusterOptions options;
  options.max_changes_per_sync = 2;
  Fixture f(options);
  f.NewToken();
  const int64_t since = f.Revision();
  for (int i = 0; i < 3; ++i) f.NewToken();
  absl::StatusOr<ClusterDelta> delta = f.cluster->ChangesSince(since, 100);
  REQUIRE(delta.ok());
  CHECK(delta->changes.size() == 2);
  CHECK(delta->more);
}

TEST_CASE("ChangesSince a compacted revision is a full snapshot") {
  ClusterOptions options;
  options.retained_changes = 2;
  Fixture f(options);
  f.Join("pi-1");
  const int64_t since = f.Revision();
  for (int i = 0; i < 4; ++i) f.NewToken();
  // Compaction runs once a minute of ticks.
  for (int i = 0; i < 60; ++i) REQUIRE(f.cluster->Tick().ok());
  absl::StatusOr<ClusterDelta> delta = f.cluster->ChangesSince(since, 0);
  REQUIRE(delta.ok());
  CHECK(delta->full_snapshot);
  CHECK(delta->revision == f.Revision());
  CHECK(delta->snapshot.nodes.size() == 1);
  CHECK(delta->snapshot.join_tokens.size() == 5);
  // The retained tail is still served as changes.
  delta = f.cluster->ChangesSince(f.Revision() - 2, 0);
  REQUIRE(delta.ok());
  CHECK_FALSE(delta->full_snapshot);
  CHECK(delta->changes.size() == 2);
}

TEST_CASE("ChangesSince a revision ahead of the store is a full snapshot") {
  Fixture f;
  f.Join("pi-1");
  absl::StatusOr<ClusterDelta> delta = f.cluster->ChangesSince(f.Revision() + 10, 0);
  REQUIRE(delta.ok());
  CHECK(delta->full_snapshot);
  CHECK(delta->revision == f.Revision());
}

TEST_CASE("ChangesSince a negative revision is INVALID_ARGUMENT") {
  Fixture f;
  CHECK(f.cluster->ChangesSince(-1, 0).status().code() == absl::StatusCode::kInvalidArgument);
}

// ---- restart -----------------------------------------------------------------------------------

TEST_CASE("A restarted cluster keeps node states and gives every node a fresh TTL") {
  Fixture f;
  const Caller ready = f.JoinReady("pi-ready");
  const Caller cordoned = f.JoinReady("pi-cordoned");
  REQUIRE(f.cluster->SetAdminState("pi-cordoned", AdminState::kCordoned).ok());
  f.JoinReady("pi-down");
  f.Join("pi-removed");
  REQUIRE(f.cluster->RemoveNode("pi-removed").ok());
  // pi-down falls silent; the others keep heartbeating.
  f.clock.Advance(kDownAfter);
  REQUIRE(f.cluster->ReportHealth(ready, "pi-ready", "{}").ok());
  REQUIRE(f.cluster->ReportHealth(cordoned, "pi-cordoned", "{}").ok());
  f.SilentFor(seconds(1));
  REQUIRE(f.StateOf("pi-ready") == NodeState::kReady);
  REQUIRE(f.StateOf("pi-cordoned") == NodeState::kCordoned);
  REQUIRE(f.StateOf("pi-down") == NodeState::kDown);

  // The controller is away far longer than the TTL.
  f.clock.Advance(hours(1));
  f.Restart();
  REQUIRE(f.cluster->Tick().ok());
  CHECK(f.StateOf("pi-ready") == NodeState::kReady);
  CHECK(f.StateOf("pi-cordoned") == NodeState::kCordoned);
  CHECK(f.Get("pi-cordoned").node.admin_state == AdminState::kCordoned);
  CHECK(f.StateOf("pi-down") == NodeState::kDown);
  CHECK(f.StateOf("pi-removed") == NodeState::kRemoved);
  CHECK(f.cluster->feed().Current() == f.Revision());
  // The heartbeat written before the restart is still known.
  CHECK(f.Get("pi-ready").node.last_heartbeat.has_value());

  f.SilentFor(kDownAfter);
  CHECK(f.StateOf("pi-ready") == NodeState::kReady);
  f.SilentFor(seconds(1));
  CHECK(f.StateOf("pi-ready") == NodeState::kDown);
  CHECK(f.StateOf("pi-cordoned") == NodeState::kDown);

  // Certificates stay valid across the restart.
  REQUIRE(f.cluster->ReportHealth(ready, "pi-ready", "{}").ok());
  CHECK(f.StateOf("pi-ready") == NodeState::kReady);
}

TEST_CASE("A restarted cluster keeps a REGISTERED node REGISTERED") {
  Fixture f;
  f.Join("pi-1");
  f.Restart();
  REQUIRE(f.cluster->Tick().ok());
  CHECK(f.StateOf("pi-1") == NodeState::kRegistered);
}

TEST_CASE("A restarted cluster keeps a cordoned node that never heartbeated from READY") {
  Fixture f;
  f.Join("pi-1");
  REQUIRE(f.cluster->SetAdminState("pi-1", AdminState::kCordoned).ok());
  f.Restart();
  CHECK(f.StateOf("pi-1") == NodeState::kCordoned);
  REQUIRE(f.cluster->SetAdminState("pi-1", AdminState::kNone).ok());
  CHECK(f.StateOf("pi-1") == NodeState::kRegistered);
}

TEST_CASE("A restarted cluster brings a DOWN node back on its next heartbeat") {
  Fixture f;
  const Caller caller = f.JoinReady("pi-1");
  f.SilentFor(kDownAfter + seconds(1));
  f.Restart();
  REQUIRE(f.cluster->Tick().ok());
  CHECK(f.StateOf("pi-1") == NodeState::kDown);
  REQUIRE(f.cluster->ReportHealth(caller, "pi-1", "{}").ok());
  CHECK(f.StateOf("pi-1") == NodeState::kReady);
}

}  // namespace
}  // namespace pi::controlplane::cluster
