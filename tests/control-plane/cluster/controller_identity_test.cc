#include "control-plane/cluster/controller_identity.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/system/files.h"
#include "common/tls/x509.h"
#include "tests/common/test_dir.h"

namespace pi::controlplane::cluster {
namespace {

using std::chrono::hours;

struct Fixture {
  pi::testing::TempDir dir;
  common::ManualClock clock;
  CertificateAuthority ca = Load("ca");
  ControllerCertificateFiles files{(dir.path() / "controller.crt").string(),
                                   (dir.path() / "controller.key").string()};

  CertificateAuthority Load(const std::string& name) {
    std::filesystem::create_directories(dir.path() / name);
    absl::StatusOr<CertificateAuthority> loaded =
        CertificateAuthority::LoadOrCreate((dir.path() / name).string(), clock);
    REQUIRE(loaded.ok());
    return *std::move(loaded);
  }
  std::string Read(const std::string& path) {
    absl::StatusOr<std::string> text = common::ReadFileToString(path, 1 << 20);
    REQUIRE(text.ok());
    return *text;
  }
  // Writes a certificate issued for `common_name` by `issuer` into `files`.
  void WriteIssued(const CertificateAuthority& issuer, const std::string& common_name,
                   bool with_chain, hours validity = hours(24 * 365)) {
    absl::StatusOr<IssuedKeyPair> pair = issuer.Issue(common_name, {"localhost"}, validity);
    REQUIRE(pair.ok());
    REQUIRE(common::WriteFileAtomically(files.cert_file,
                                        pair->cert_pem + (with_chain ? issuer.ca_pem() : ""), 0644)
                .ok());
    REQUIRE(common::WritePrivateKeyFile(files.key_file, pair->key_pem).ok());
  }
  std::string CheckError(const std::vector<std::string>& hosts = {"localhost"}) {
    absl::Status status = CheckControllerCertificate(ca, files, hosts, clock);
    REQUIRE_FALSE(status.ok());
    return std::string(status.message());
  }
};

int ModeOf(const std::filesystem::path& path) {
  struct stat info {};
  REQUIRE(stat(path.c_str(), &info) == 0);
  return static_cast<int>(info.st_mode & 0777);
}

TEST_CASE("EnsureControllerCertificate issues a chained certificate once and keeps it") {
  Fixture f;
  absl::StatusOr<bool> issued =
      EnsureControllerCertificate(f.ca, f.files, {"localhost", "10.0.0.1"}, f.clock);
  REQUIRE(issued.ok());
  CHECK(*issued);
  const std::string first = f.Read(f.files.cert_file);
  CHECK(first.find(f.ca.ca_pem()) != std::string::npos);
  CHECK(ModeOf(f.files.key_file) == 0600);
  absl::StatusOr<common::CertificateInfo> info = common::ParseCertificate(first);
  REQUIRE(info.ok());
  CHECK(info->common_name == "controller");
  CHECK(CheckControllerCertificate(f.ca, f.files, {"localhost", "10.0.0.1"}, f.clock).ok());

  issued = EnsureControllerCertificate(f.ca, f.files, {"localhost", "10.0.0.1"}, f.clock);
  REQUIRE(issued.ok());
  CHECK_FALSE(*issued);
  CHECK(f.Read(f.files.cert_file) == first);
}

TEST_CASE("EnsureControllerCertificate reissues for a new name and before expiry") {
  Fixture f;
  REQUIRE(EnsureControllerCertificate(f.ca, f.files, {"localhost"}, f.clock).ok());
  absl::StatusOr<bool> issued =
      EnsureControllerCertificate(f.ca, f.files, {"localhost", "pi-head.lan"}, f.clock);
  REQUIRE(issued.ok());
  CHECK(*issued);
  f.clock.Advance(hours(24 * 340));
  issued = EnsureControllerCertificate(f.ca, f.files, {"localhost", "pi-head.lan"}, f.clock);
  REQUIRE(issued.ok());
  CHECK(*issued);
}

TEST_CASE("EnsureControllerCertificate refuses names that are not DNS names or addresses") {
  Fixture f;
  CHECK(absl::IsInvalidArgument(
      EnsureControllerCertificate(f.ca, f.files, {"bad name!"}, f.clock).status()));
  CHECK_FALSE(std::filesystem::exists(f.files.cert_file));
}

TEST_CASE("CheckControllerCertificate says what is wrong with an operator's certificate") {
  Fixture f;
  f.WriteIssued(f.ca, "admin:alice", true);
  CHECK_THAT(f.CheckError(), Catch::Contains("not \"controller\""));

  const CertificateAuthority other = f.Load("other-ca");
  f.WriteIssued(other, "controller", true);
  CHECK_THAT(f.CheckError(), Catch::Contains("not issued by the cluster CA"));

  f.WriteIssued(f.ca, "controller", false);
  CHECK_THAT(f.CheckError(), Catch::Contains("followed by the cluster CA"));

  f.WriteIssued(f.ca, "controller", true, hours(24 * 10));
  CHECK_THAT(f.CheckError(), Catch::Contains("expires within 30 days"));

  f.WriteIssued(f.ca, "controller", true);
  CHECK_THAT(f.CheckError({"localhost", "pi-head.lan"}), Catch::Contains("pi-head.lan"));
  CHECK(CheckControllerCertificate(f.ca, f.files, {"localhost"}, f.clock).ok());

  absl::StatusOr<std::string> foreign_key = common::GenerateEcPrivateKeyPem();
  REQUIRE(foreign_key.ok());
  REQUIRE(common::WritePrivateKeyFile(f.files.key_file, *foreign_key).ok());
  CHECK_THAT(f.CheckError(), Catch::Contains("is not the key of this certificate"));

  std::filesystem::remove(f.files.cert_file);
  const absl::Status missing = CheckControllerCertificate(f.ca, f.files, {}, f.clock);
  CHECK_FALSE(missing.ok());
  CHECK_THAT(std::string(missing.message()), Catch::Contains("controller.crt"));
}

TEST_CASE("WriteAdminBundle writes a pictl config and an admin certificate, once") {
  Fixture f;
  const std::filesystem::path out = f.dir.path() / "pictl";
  REQUIRE(WriteAdminBundle(f.ca, "alice", out.string(), "10.0.0.1:9090", hours(24)).ok());
  absl::StatusOr<common::CertificateInfo> info =
      common::ParseCertificate(f.Read((out / "admin.crt").string()));
  REQUIRE(info.ok());
  CHECK(info->common_name == "admin:alice");
  CHECK(ModeOf(out / "admin.key") == 0600);
  CHECK(f.Read((out / "ca.crt").string()) == f.ca.ca_pem());
  const nlohmann::json config = nlohmann::json::parse(f.Read((out / "config.json").string()));
  CHECK(config["controller"] == "10.0.0.1:9090");
  CHECK(config["cert_file"] == "admin.crt");

  const std::string key_before = f.Read((out / "admin.key").string());
  CHECK(absl::IsAlreadyExists(
      WriteAdminBundle(f.ca, "bob", out.string(), "10.0.0.1:9090", hours(24))));
  CHECK(f.Read((out / "admin.key").string()) == key_before);
}

TEST_CASE("WriteAdminBundle refuses a name that is not an identity") {
  Fixture f;
  const std::filesystem::path out = f.dir.path() / "pictl";
  CHECK_FALSE(WriteAdminBundle(f.ca, "bad name", out.string(), "h:1", hours(24)).ok());
  CHECK_FALSE(std::filesystem::exists(out / "admin.key"));
}

}  // namespace
}  // namespace pi::controlplane::cluster
