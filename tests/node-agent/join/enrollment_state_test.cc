#include "node-agent/join/enrollment_state.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "common/system/files.h"
#include "common/tls/x509.h"
#include "control-plane/cluster/certificate_authority.h"
#include "tests/common/test_dir.h"

namespace pi::agent::join {
namespace {

using controlplane::cluster::CertificateAuthority;
namespace fs = std::filesystem;

constexpr std::chrono::seconds kValidity{3600};

int ModeOf(const std::string& path) {
  struct stat info {};
  REQUIRE(stat(path.c_str(), &info) == 0);
  return static_cast<int>(info.st_mode & 0777);
}

CertificateAuthority MakeCa(const pi::testing::TempDir& dir) {
  auto ca = CertificateAuthority::LoadOrCreate(dir.path().string(), common::RealClock());
  REQUIRE(ca.ok());
  return *std::move(ca);
}

std::string SignFor(const CertificateAuthority& ca, const std::string& key_pem,
                    const std::string& identity) {
  auto csr = common::CreateCsr(key_pem, "pi-agent", {});
  REQUIRE(csr.ok());
  auto cert = ca.SignCsr(*csr, identity, {}, kValidity);
  REQUIRE(cert.ok());
  return *cert;
}

// A state directory holding a complete enrollment as node pi-1 of ctl.lan:9090.
struct Enrolled {
  pi::testing::TempDir ca_dir;
  pi::testing::TempDir dir;
  CertificateAuthority ca = MakeCa(ca_dir);
  StateDir state{(dir.path() / "state").string()};

  Enrolled() {
    auto key = state.LoadOrCreateKey();
    REQUIRE(key.ok());
    REQUIRE(state.Save({"ctl.lan:9090", "pi-1"}, SignFor(ca, *key, "node:pi-1"), ca.ca_pem()).ok());
  }
};

void Overwrite(const std::string& path, const std::string& contents) {
  REQUIRE(common::WriteFileAtomically(path, contents, 0644).ok());
}

absl::Status LoadError(const StateDir& state) {
  auto loaded = state.Load();
  REQUIRE_FALSE(loaded.ok());
  return loaded.status();
}

TEST_CASE("a state directory that does not exist is not joined", "[state]") {
  pi::testing::TempDir dir;
  StateDir state((dir.path() / "missing").string());
  auto loaded = state.Load();
  REQUIRE(loaded.ok());
  CHECK_FALSE(loaded->has_value());
  CHECK(state.CheckEnrollable().ok());
}

TEST_CASE("a complete enrollment loads with its address and node id", "[state]") {
  Enrolled enrolled;
  auto loaded = enrolled.state.Load();
  REQUIRE(loaded.ok());
  REQUIRE(loaded->has_value());
  CHECK(**loaded == Enrollment{"ctl.lan:9090", "pi-1"});
}

TEST_CASE("the files of an enrollment get their modes", "[state]") {
  Enrolled enrolled;
  CHECK(ModeOf(enrolled.state.dir()) == 0700);
  CHECK(ModeOf(enrolled.state.key_file()) == 0600);
  CHECK(ModeOf(enrolled.state.cert_file()) == 0644);
  CHECK(ModeOf(enrolled.state.ca_file()) == 0644);
  CHECK(ModeOf(enrolled.state.control_plane_file()) == 0644);
}

TEST_CASE("the node key is generated once and then reused", "[state]") {
  pi::testing::TempDir dir;
  StateDir state(dir.path().string());
  auto first = state.LoadOrCreateKey();
  REQUIRE(first.ok());
  auto second = state.LoadOrCreateKey();
  REQUIRE(second.ok());
  CHECK(*first == *second);
  CHECK(common::ParsePrivateKeyPem(*first).ok());
  CHECK(ModeOf(state.key_file()) == 0600);
}

TEST_CASE("an existing state directory keeps the mode its operator gave it", "[state]") {
  pi::testing::TempDir dir;
  REQUIRE(chmod(dir.path().c_str(), 0750) == 0);
  StateDir state(dir.path().string());
  REQUIRE(state.LoadOrCreateKey().ok());
  CHECK(ModeOf(dir.path().string()) == 0750);
}

TEST_CASE("a corrupt node key is refused, not replaced", "[state]") {
  pi::testing::TempDir dir;
  StateDir state(dir.path().string());
  Overwrite(state.key_file(), "not a key");
  auto key = state.LoadOrCreateKey();
  REQUIRE_FALSE(key.ok());
  CHECK(key.status().code() == absl::StatusCode::kDataLoss);
  CHECK_THAT(std::string(key.status().message()), Catch::Contains("delete it"));
}

TEST_CASE("a renewed certificate replaces node.crt", "[state]") {
  Enrolled enrolled;
  auto key = common::ReadFileToString(enrolled.state.key_file(), 1 << 20);
  REQUIRE(key.ok());
  const std::string renewed = SignFor(enrolled.ca, *key, "node:pi-1");
  REQUIRE(enrolled.state.SaveCertificate(renewed).ok());
  CHECK(*common::ReadFileToString(enrolled.state.cert_file(), 1 << 20) == renewed);
  CHECK(enrolled.state.Load().ok());
}

TEST_CASE("an enrollment without node.crt is refused naming what to delete", "[state]") {
  Enrolled enrolled;
  fs::remove(enrolled.state.cert_file());
  const auto status = LoadError(enrolled.state);
  CHECK(status.code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(status.message()),
             Catch::Contains(enrolled.state.cert_file() + " missing"));
  CHECK_THAT(std::string(status.message()), Catch::Contains("delete"));
  CHECK_THAT(std::string(status.message()), Catch::Contains(enrolled.state.control_plane_file()));
}

TEST_CASE("an enrollment without node.key is refused", "[state]") {
  Enrolled enrolled;
  fs::remove(enrolled.state.key_file());
  const auto status = LoadError(enrolled.state);
  CHECK(status.code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(status.message()),
             Catch::Contains(enrolled.state.key_file() + " missing"));
}

TEST_CASE("an enrollment without ca.crt is refused", "[state]") {
  Enrolled enrolled;
  fs::remove(enrolled.state.ca_file());
  const auto status = LoadError(enrolled.state);
  CHECK(status.code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(status.message()), Catch::Contains(enrolled.state.ca_file() + " missing"));
}

TEST_CASE("control_plane.json that is not JSON is corrupt", "[state]") {
  Enrolled enrolled;
  Overwrite(enrolled.state.control_plane_file(), "{\"address\": ");
  const auto status = LoadError(enrolled.state);
  CHECK(status.code() == absl::StatusCode::kDataLoss);
  CHECK_THAT(std::string(status.message()), Catch::Contains("invalid JSON"));
  CHECK_THAT(std::string(status.message()), Catch::Contains("to join again"));
}

TEST_CASE("control_plane.json without a node id is corrupt", "[state]") {
  Enrolled enrolled;
  Overwrite(enrolled.state.control_plane_file(), R"({"address": "ctl.lan:9090"})");
  const auto status = LoadError(enrolled.state);
  CHECK(status.code() == absl::StatusCode::kDataLoss);
  CHECK_THAT(std::string(status.message()), Catch::Contains("node_id"));
}

TEST_CASE("control_plane.json with an unknown key is corrupt", "[state]") {
  Enrolled enrolled;
  Overwrite(enrolled.state.control_plane_file(),
            R"({"address": "ctl.lan:9090", "node_id": "pi-1", "token": "x"})");
  const auto status = LoadError(enrolled.state);
  CHECK(status.code() == absl::StatusCode::kDataLoss);
  CHECK_THAT(std::string(status.message()), Catch::Contains("token: unknown key"));
}

TEST_CASE("control_plane.json with a wrongly typed value is corrupt", "[state]") {
  Enrolled enrolled;
  Overwrite(enrolled.state.control_plane_file(), R"({"address": 9090, "node_id": "pi-1"})");
  const auto status = LoadError(enrolled.state);
  CHECK(status.code() == absl::StatusCode::kDataLoss);
  CHECK_THAT(std::string(status.message()), Catch::Contains("address: expected a string"));
}

TEST_CASE("control_plane.json with an address without a port is corrupt", "[state]") {
  Enrolled enrolled;
  Overwrite(enrolled.state.control_plane_file(), R"({"address": "ctl.lan", "node_id": "pi-1"})");
  const auto status = LoadError(enrolled.state);
  CHECK(status.code() == absl::StatusCode::kDataLoss);
  CHECK_THAT(std::string(status.message()), Catch::Contains("address"));
}

TEST_CASE("control_plane.json with an invalid node id is corrupt", "[state]") {
  Enrolled enrolled;
  Overwrite(enrolled.state.control_plane_file(),
            R"({"address": "ctl.lan:9090", "node_id": "../pi 1"})");
  const auto status = LoadError(enrolled.state);
  CHECK(status.code() == absl::StatusCode::kDataLoss);
  CHECK_THAT(std::string(status.message()), Catch::Contains("is not a node id"));
}

TEST_CASE("a node certificate for another node id is corrupt", "[state]") {
  Enrolled enrolled;
  Overwrite(enrolled.state.control_plane_file(),
            R"({"address": "ctl.lan:9090", "node_id": "pi-2"})");
  const auto status = LoadError(enrolled.state);
  CHECK(status.code() == absl::StatusCode::kDataLoss);
  CHECK_THAT(std::string(status.message()), Catch::Contains("expected \"node:pi-2\""));
}

TEST_CASE("a node certificate for another key is corrupt", "[state]") {
  Enrolled enrolled;
  auto other_key = common::GenerateEcPrivateKeyPem();
  REQUIRE(other_key.ok());
  Overwrite(enrolled.state.cert_file(), SignFor(enrolled.ca, *other_key, "node:pi-1"));
  const auto status = LoadError(enrolled.state);
  CHECK(status.code() == absl::StatusCode::kDataLoss);
  CHECK_THAT(std::string(status.message()), Catch::Contains("does not match"));
}

TEST_CASE("a node certificate that is not PEM is corrupt", "[state]") {
  Enrolled enrolled;
  Overwrite(enrolled.state.cert_file(), "garbage");
  CHECK(LoadError(enrolled.state).code() == absl::StatusCode::kDataLoss);
}

TEST_CASE("a CA file that holds no certificate is corrupt", "[state]") {
  Enrolled enrolled;
  Overwrite(enrolled.state.ca_file(), "garbage");
  const auto status = LoadError(enrolled.state);
  CHECK(status.code() == absl::StatusCode::kDataLoss);
  CHECK_THAT(std::string(status.message()), Catch::Contains(enrolled.state.ca_file()));
}

TEST_CASE("a lone node key does not stop a join", "[state]") {
  pi::testing::TempDir dir;
  StateDir state(dir.path().string());
  REQUIRE(state.LoadOrCreateKey().ok());
  auto loaded = state.Load();
  REQUIRE(loaded.ok());
  CHECK_FALSE(loaded->has_value());
  CHECK(state.CheckEnrollable().ok());
}

TEST_CASE("a node certificate left without control_plane.json stops a join", "[state]") {
  Enrolled enrolled;
  fs::remove(enrolled.state.control_plane_file());
  auto loaded = enrolled.state.Load();
  REQUIRE(loaded.ok());
  CHECK_FALSE(loaded->has_value());
  const auto status = enrolled.state.CheckEnrollable();
  CHECK(status.code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(status.message()), Catch::Contains(enrolled.state.cert_file()));
  CHECK_THAT(std::string(status.message()), Catch::Contains("Delete them"));
}

TEST_CASE("a CA file alone stops a join", "[state]") {
  pi::testing::TempDir dir;
  StateDir state(dir.path().string());
  Overwrite(state.ca_file(), "anything");
  const auto status = state.CheckEnrollable();
  CHECK(status.code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(status.message()), Catch::Contains("Delete it"));
}

TEST_CASE("without an address or an enrollment the agent runs standalone", "[plan]") {
  pi::testing::TempDir dir;
  auto plan = PlanStartup(StateDir(dir.path().string()), std::nullopt, "", false);
  REQUIRE(plan.ok());
  CHECK(plan->action == StartupAction::kStandalone);
}

TEST_CASE("an address and a token make a first join", "[plan]") {
  pi::testing::TempDir dir;
  auto plan = PlanStartup(StateDir(dir.path().string()), std::nullopt, "ctl.lan:9090", true);
  REQUIRE(plan.ok());
  CHECK(plan->action == StartupAction::kEnroll);
  CHECK(plan->address == "ctl.lan:9090");
}

TEST_CASE("a stored enrollment re-registers with or without --join of the same address", "[plan]") {
  pi::testing::TempDir dir;
  const Enrollment stored{"ctl.lan:9090", "pi-1"};
  for (const char* requested : {"", "ctl.lan:9090"}) {
    for (const bool has_token : {false, true}) {
      auto plan = PlanStartup(StateDir(dir.path().string()), stored, requested, has_token);
      REQUIRE(plan.ok());
      CHECK(plan->action == StartupAction::kReregister);
      CHECK(plan->address == "ctl.lan:9090");
      CHECK(plan->enrollment == stored);
    }
  }
}

TEST_CASE("addresses are compared in one spelling", "[plan]") {
  pi::testing::TempDir dir;
  auto plan = PlanStartup(StateDir(dir.path().string()), Enrollment{"[::1]:9090", "pi-1"},
                          "[::1]:9090", false);
  REQUIRE(plan.ok());
  CHECK(plan->action == StartupAction::kReregister);
}

TEST_CASE("joining another controller than the stored one is refused", "[plan]") {
  pi::testing::TempDir dir;
  StateDir state(dir.path().string());
  auto plan = PlanStartup(state, Enrollment{"ctl.lan:9090", "pi-1"}, "other.lan:9090", true);
  REQUIRE_FALSE(plan.ok());
  CHECK(plan.status().code() == absl::StatusCode::kFailedPrecondition);
  const std::string message(plan.status().message());
  CHECK_THAT(message, Catch::Contains("joined to ctl.lan:9090 as node pi-1"));
  CHECK_THAT(message, Catch::Contains(state.control_plane_file()));
}

TEST_CASE("a first join without a token is refused", "[plan]") {
  pi::testing::TempDir dir;
  auto plan = PlanStartup(StateDir(dir.path().string()), std::nullopt, "ctl.lan:9090", false);
  REQUIRE_FALSE(plan.ok());
  CHECK(plan.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(plan.status().message()), Catch::Contains("--token-file"));
}

TEST_CASE("a token without an address is refused", "[plan]") {
  pi::testing::TempDir dir;
  auto plan = PlanStartup(StateDir(dir.path().string()), std::nullopt, "", true);
  REQUIRE_FALSE(plan.ok());
  CHECK(plan.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(plan.status().message()), Catch::Contains("--join HOST:PORT"));
}

TEST_CASE("a join address without a port is refused", "[plan]") {
  pi::testing::TempDir dir;
  for (const char* address : {"ctl.lan", ":9090", "ctl.lan:0", "ctl.lan:x"}) {
    INFO(address);
    auto plan = PlanStartup(StateDir(dir.path().string()), std::nullopt, address, true);
    REQUIRE_FALSE(plan.ok());
    CHECK(plan.status().code() == absl::StatusCode::kInvalidArgument);
  }
}

TEST_CASE("a first join over leftover certificates is refused", "[plan]") {
  pi::testing::TempDir dir;
  StateDir state(dir.path().string());
  Overwrite(state.cert_file(), "left over");
  auto plan = PlanStartup(state, std::nullopt, "ctl.lan:9090", true);
  REQUIRE_FALSE(plan.ok());
  CHECK(plan.status().code() == absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("a certificate that is not PEM is not a node certificate", "[state]") {
  auto key = common::GenerateEcPrivateKeyPem();
  REQUIRE(key.ok());
  CHECK(CheckNodeCertificate("garbage", *key, "pi-1").code() == absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pi::agent::join
