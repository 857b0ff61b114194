// The provisioner over a real cluster (SQLite store, ManualClock) and a real release engine over
// SQLite in a temporary directory, with profiles in a temporary profiles directory.
#include "control-plane/provisioning/provisioner.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "common/provisioning/profile.h"
#include "common/system/clock.h"
#include "common/tls/x509.h"
#include "control-plane/release/sqlite_release_store.h"
#include "control-plane/store/sqlite_cluster_store.h"
#include "tests/common/require.h"
#include "tests/common/test_dir.h"

namespace pi::controlplane::provisioning {
namespace {

using pi::testing::Require;
using pi::testing::TempDir;
using release::ReleaseState;

const common::Identity kAdmin{common::Role::kAdmin, "alice"};
constexpr char kCreatedBy[] = "admin:alice";

// A profile with one required hostname parameter, one defaulted integer and a read-only step.
constexpr char kHostnameProfile[] = R"({
  "name": "hostname",
  "description": "Sets the hostname",
  "parameters": {
    "hostname": {"type": "hostname", "description": "the new hostname"},
    "retries": {"type": "integer", "default": "3"}
  },
  "steps": [
    {"name": "hostname is set", "check": {"path": "/etc/hostname", "contains": "{{hostname}}"}}
  ]
})";

constexpr char kNoParametersProfile[] = R"({
  "name": "base",
  "steps": [{"name": "os-release exists", "check": {"path": "/etc/os-release"}}]
})";

std::string NewCsr() {
  std::string key = Require(common::GenerateEcPrivateKeyPem());
  return Require(common::CreateCsr(key, "node:whatever", {}));
}

struct Fixture {
  Fixture() {
    dir.Write("profiles/hostname.json", kHostnameProfile);
    dir.Write("profiles/base.json", kNoParametersProfile);
    dir.Write("profiles/broken.json", R"({"name": "broken", "steps": [{"name": "x"}]})");
    dir.Write("profiles/notes.txt", "not a profile");
  }

  // Joins `hostname` with `labels`; READY after its first heartbeat when `ready`.
  std::string Join(const std::string& hostname, std::map<std::string, std::string> labels,
                   bool ready = true) {
    cluster::Registration registration;
    registration.join_token =
        Require(cluster->CreateJoinToken(kAdmin, "test", std::nullopt, std::nullopt)).text;
    registration.hostname = hostname;
    registration.agent_address = "10.0.0.5:9091";
    registration.peer_host = "10.0.0.5";
    registration.labels = std::move(labels);
    registration.csr_pem = NewCsr();
    cluster::RegistrationResult joined =
        Require(cluster->RegisterNode(registration, cluster::Caller{}));
    if (ready) {
      common::CertificateInfo info = Require(common::ParseCertificate(joined.certificate_pem));
      common::Identity identity = Require(common::ParseIdentity(info.common_name));
      REQUIRE(cluster
                  ->ReportHealth(cluster::Caller{identity, info.sha256_fingerprint}, joined.node_id,
                                 "{}")
                  .ok());
    }
    return joined.node_id;
  }

  std::vector<release::Release> AllReleases() {
    return Require(engine->List(release::ReleaseFilter{}));
  }

  std::string ArtifactContent(const std::string& release_id, const std::string& name) {
    for (const release::ReleaseFile& file :
         Require(release_store->Files(release_id, release::FileKind::kArtifact))) {
      if (file.name == name) return file.content;
    }
    FAIL("release " << release_id << " has no artifact " << name);
    return "";
  }

  TempDir dir;
  common::ManualClock clock;
  std::unique_ptr<store::SqliteClusterStore> cluster_store =
      Require(store::SqliteClusterStore::Open((dir.path() / "cluster.db").string(), clock));
  cluster::CertificateAuthority ca =
      Require(cluster::CertificateAuthority::LoadOrCreate((dir.path() / "ca").string(), clock));
  std::unique_ptr<cluster::Cluster> cluster =
      Require(cluster::Cluster::Create(*cluster_store, ca, clock, cluster::ClusterOptions{}));
  std::unique_ptr<release::SqliteReleaseStore> release_store =
      Require(release::SqliteReleaseStore::Open((dir.path() / "releases.db").string()));
  std::unique_ptr<release::ReleaseEngine> engine =
      Require(release::ReleaseEngine::Open(*release_store, clock, release::ReleaseOptions{}));
  Provisioner provisioner{*engine, *cluster, (dir.path() / "profiles").string()};
};

ProvisioningSpec NodeSpec(const std::string& node_id, const std::string& profile,
                          std::map<std::string, std::string> parameters = {}) {
  ProvisioningSpec spec;
  spec.target = TargetKind::kNode;
  spec.node_id = node_id;
  spec.profile = profile;
  spec.parameters = std::move(parameters);
  return spec;
}

// ---- profile names -----------------------------------------------------------------------------

TEST_CASE("Profile names are lowercase file names without paths") {
  CHECK(IsValidProfileName("hostname"));
  CHECK(IsValidProfileName("0-base_v2"));
  CHECK(IsValidProfileName(std::string(64, 'a')));
  CHECK_FALSE(IsValidProfileName(""));
  CHECK_FALSE(IsValidProfileName(std::string(65, 'a')));
  CHECK_FALSE(IsValidProfileName("../x"));
  CHECK_FALSE(IsValidProfileName("a/b"));
  CHECK_FALSE(IsValidProfileName("-x"));
  CHECK_FALSE(IsValidProfileName("_x"));
  CHECK_FALSE(IsValidProfileName("Hostname"));
  CHECK_FALSE(IsValidProfileName("base.json"));
  CHECK_FALSE(IsValidProfileName("a b"));
}

// ---- requests that create releases
// ---------------------------------------------------------------

TEST_CASE("A node request creates one pinned release carrying the profile and its parameters") {
  Fixture f;
  const std::string node = f.Join("pi-1", {{"role", "sensor"}});

  Requested requested = Require(
      f.provisioner.Request(NodeSpec(node, "hostname", {{"hostname", "pi-kitchen"}}), kCreatedBy));
  const release::Provisioning& created = requested.provisioning;
  CHECK(requested.node_ids == std::vector<std::string>{node});

  CHECK_FALSE(created.id.empty());
  CHECK(created.profile == "hostname");
  CHECK_FALSE(created.plan);
  CHECK(created.target == "node=" + node);
  CHECK(created.created_by == kCreatedBy);
  CHECK(created.parameters ==
        std::map<std::string, std::string>{{"hostname", "pi-kitchen"}, {"retries", "3"}});
  REQUIRE(created.release_ids.size() == 1);

  release::Release made = Require(f.engine->Get(created.release_ids[0]));
  CHECK(made.state == ReleaseState::kQueued);
  CHECK(made.type == release::ProvisionDestinationType());
  CHECK(made.node_id == node);
  CHECK(made.metadata.at(std::string(release::kNodeIdMetadataKey)) == node);
  CHECK(made.destination_name == "provision/hostname");
  CHECK(made.annotation.slug == "hostname");
  CHECK(made.provisioning_id == created.id);
  CHECK(made.created_by == kCreatedBy);
  CHECK_FALSE(made.plan);
  CHECK(made.artifact_file_names ==
        std::vector<std::string>{std::string(common::provisioning::kProfileFileName),
                                 std::string(common::provisioning::kParametersFileName)});

  // The agent gets the profile's bytes as they are on disk and the resolved parameters.
  CHECK(f.ArtifactContent(made.id, "profile.json") == kHostnameProfile);
  CHECK(Require(common::provisioning::ParseParametersJson(
            f.ArtifactContent(made.id, "parameters.json"))) == created.parameters);

  release::Provisioning stored = Require(f.engine->GetProvisioning(created.id));
  CHECK(stored.release_ids == created.release_ids);
  CHECK(stored.target == created.target);
}

TEST_CASE("A plan request makes plan releases") {
  Fixture f;
  const std::string node = f.Join("pi-1", {});
  ProvisioningSpec spec = NodeSpec(node, "base");
  spec.plan = true;

  release::Provisioning created = Require(f.provisioner.Request(spec, kCreatedBy)).provisioning;

  CHECK(created.plan);
  REQUIRE(created.release_ids.size() == 1);
  CHECK(Require(f.engine->Get(created.release_ids[0])).plan);
}

TEST_CASE("A selector request creates a release for every READY node that matches") {
  Fixture f;
  const std::string a = f.Join("pi-a", {{"role", "sensor"}, {"zone", "1"}});
  const std::string b = f.Join("pi-b", {{"role", "sensor"}, {"zone", "2"}});
  f.Join("pi-c", {{"role", "gateway"}});
  f.Join("pi-d", {{"role", "sensor"}}, /*ready=*/false);
  const std::string cordoned = f.Join("pi-e", {{"role", "sensor"}});
  Require(f.cluster->SetAdminState(cordoned, store::AdminState::kCordoned));

  ProvisioningSpec spec;
  spec.target = TargetKind::kSelector;
  spec.label_selector = "role=sensor";
  spec.profile = "base";
  Requested requested = Require(f.provisioner.Request(spec, kCreatedBy));
  const release::Provisioning& created = requested.provisioning;

  CHECK(created.target == "role=sensor");
  std::vector<std::string> expected{a, b};
  std::sort(expected.begin(), expected.end());
  std::vector<std::string> nodes;
  for (const std::string& id : created.release_ids) {
    nodes.push_back(Require(f.engine->Get(id)).node_id);
  }
  CHECK(nodes == expected);
  CHECK(requested.node_ids == expected);
}

TEST_CASE("An all-nodes request targets every READY node") {
  Fixture f;
  const std::string a = f.Join("pi-a", {{"role", "sensor"}});
  const std::string b = f.Join("pi-b", {{"role", "gateway"}});
  f.Join("pi-c", {}, /*ready=*/false);

  ProvisioningSpec spec;
  spec.target = TargetKind::kAll;
  spec.profile = "base";
  release::Provisioning created = Require(f.provisioner.Request(spec, kCreatedBy)).provisioning;

  CHECK(created.target == "all");
  CHECK(created.release_ids.size() == 2);
  CHECK(f.AllReleases().size() == 2);
}

// ---- refusals -----------------------------------------------------------------------------------

TEST_CASE("Refused requests create nothing") {
  Fixture f;
  const std::string ready = f.Join("pi-1", {{"role", "sensor"}});
  const std::string joined = f.Join("pi-2", {{"role", "sensor"}}, /*ready=*/false);

  struct Refusal {
    const char* what;
    ProvisioningSpec spec;
    absl::StatusCode code;
    const char* message_part;
  };
  ProvisioningSpec no_match;
  no_match.target = TargetKind::kSelector;
  no_match.label_selector = "role=camera";
  no_match.profile = "base";
  ProvisioningSpec empty_selector = no_match;
  empty_selector.label_selector = "";
  ProvisioningSpec bad_selector = no_match;
  bad_selector.label_selector = "role==";

  const std::vector<Refusal> refusals = {
      {"unknown profile", NodeSpec(ready, "camera"), absl::StatusCode::kNotFound,
       "available: base, broken, hostname"},
      {"path as profile name", NodeSpec(ready, "../x"), absl::StatusCode::kInvalidArgument,
       "not valid"},
      {"empty profile name", NodeSpec(ready, ""), absl::StatusCode::kInvalidArgument, "not valid"},
      {"profile that does not parse", NodeSpec(ready, "broken"), absl::StatusCode::kInvalidArgument,
       "broken"},
      {"missing required parameter", NodeSpec(ready, "hostname"),
       absl::StatusCode::kInvalidArgument, "hostname"},
      {"unknown parameter", NodeSpec(ready, "hostname", {{"hostname", "pi"}, {"colour", "red"}}),
       absl::StatusCode::kInvalidArgument, "colour"},
      {"parameter of the wrong type", NodeSpec(ready, "hostname", {{"hostname", "not a host!"}}),
       absl::StatusCode::kInvalidArgument, "hostname"},
      {"node not READY", NodeSpec(joined, "base"), absl::StatusCode::kFailedPrecondition,
       "not READY"},
      {"unknown node", NodeSpec("pi-404", "base"), absl::StatusCode::kNotFound, ""},
      {"no node named", NodeSpec("", "base"), absl::StatusCode::kInvalidArgument, "node"},
      {"selector matching no READY node", no_match, absl::StatusCode::kFailedPrecondition,
       "no READY node matches"},
      {"empty selector", empty_selector, absl::StatusCode::kInvalidArgument, "selector"},
      {"malformed selector", bad_selector, absl::StatusCode::kInvalidArgument, ""},
  };
  for (const Refusal& refusal : refusals) {
    INFO(refusal.what);
    absl::StatusOr<Requested> result = f.provisioner.Request(refusal.spec, kCreatedBy);
    INFO(result.status().ToString());
    CHECK(result.status().code() == refusal.code);
    CHECK_THAT(std::string(result.status().message()),
               Catch::Matchers::Contains(refusal.message_part));
  }
  CHECK(f.AllReleases().empty());
}

TEST_CASE("An all-nodes request with no READY node is refused") {
  Fixture f;
  f.Join("pi-1", {}, /*ready=*/false);
  ProvisioningSpec spec;
  spec.target = TargetKind::kAll;
  spec.profile = "base";

  absl::StatusOr<Requested> result = f.provisioner.Request(spec, kCreatedBy);

  CHECK(result.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(f.AllReleases().empty());
}

TEST_CASE("An unknown profile in an empty profiles directory says there are none") {
  TempDir empty;
  Fixture f;
  const std::string node = f.Join("pi-1", {});
  Provisioner provisioner{*f.engine, *f.cluster, (empty.path() / "missing").string()};

  absl::StatusOr<Requested> result = provisioner.Request(NodeSpec(node, "base"), kCreatedBy);

  CHECK(result.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(result.status().message()), Catch::Matchers::Contains("no profiles"));
}

}  // namespace
}  // namespace pi::controlplane::provisioning
