#include "control-plane/cluster/certificate_authority.h"

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <array>
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/tls/x509.h"
#include "tests/common/test_dir.h"

namespace pi::controlplane::cluster {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

const seconds kDay = std::chrono::duration_cast<seconds>(hours(24));

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs a shell command; used to prove the openssl CLI accepts what the CA issues.
CommandResult Run(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) result.output.append(buf.data(), n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

int ModeOf(const std::filesystem::path& path) {
  struct stat info {};
  REQUIRE(stat(path.c_str(), &info) == 0);
  return static_cast<int>(info.st_mode & 0777);
}

CertificateAuthority MakeCa(const pi::testing::TempDir& dir, const common::Clock& clock) {
  auto ca = CertificateAuthority::LoadOrCreate(dir.path().string(), clock);
  REQUIRE(ca.ok());
  return *std::move(ca);
}

std::string Csr(std::string_view common_name, const std::vector<std::string>& sans = {}) {
  auto key = common::GenerateEcPrivateKeyPem();
  REQUIRE(key.ok());
  auto csr = common::CreateCsr(*key, common_name, sans);
  REQUIRE(csr.ok());
  return *csr;
}

std::string KeyToPem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  REQUIRE(PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr) == 1);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(size));
  BIO_free(bio);
  return out;
}

std::string RsaCsr(unsigned bits) {
  EVP_PKEY* key = EVP_RSA_gen(bits);
  REQUIRE(key != nullptr);
  auto csr = common::CreateCsr(KeyToPem(key), "node:rsa", {});
  EVP_PKEY_free(key);
  REQUIRE(csr.ok());
  return *csr;
}

common::CertificateInfo Info(const std::string& pem) {
  auto info = common::ParseCertificate(pem);
  REQUIRE(info.ok());
  return *std::move(info);
}

// Decodes a PEM object, flips a bit in the last DER byte (which belongs to the signature) and
// encodes it again: still well-formed, no longer genuine.
std::string FlipLastDerByte(const std::string& pem) {
  BIO* in = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  char* name = nullptr;
  char* header = nullptr;
  unsigned char* der = nullptr;
  long size = 0;
  REQUIRE(PEM_read_bio(in, &name, &header, &der, &size) == 1);
  BIO_free(in);
  der[size - 1] ^= 0x01;
  BIO* out = BIO_new(BIO_s_mem());
  PEM_write_bio(out, name, header, der, size);
  char* data = nullptr;
  const long length = BIO_get_mem_data(out, &data);
  std::string result(data, static_cast<size_t>(length));
  BIO_free(out);
  OPENSSL_free(name);
  OPENSSL_free(header);
  OPENSSL_free(der);
  return result;
}

// Whether `openssl verify` accepts `cert` against `ca_file` at the clock's time (the manual clock
// runs years behind the real one); `options` adds e.g. "-purpose sslserver".
CommandResult Verify(const std::string& ca_file, const std::string& cert,
                     const common::Clock& clock, const std::string& options = "") {
  const auto at = std::chrono::system_clock::to_time_t(clock.WallNow());
  return Run(fmt::format("openssl verify -attime {} {} -CAfile {} {}", at, options, ca_file, cert));
}

}  // namespace

TEST_CASE("LoadOrCreate creates a CA the openssl CLI accepts, key mode 0600") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  auto ca = MakeCa(dir, clock);
  const auto cert = dir.path() / "ca.crt";
  const auto key = dir.path() / "ca.key";
  CHECK(ModeOf(key) == 0600);
  CHECK(ReadAll(cert) == ca.ca_pem());
  auto verify = Verify(cert.string(), cert.string(), clock);
  INFO(verify.output);
  CHECK(verify.exit_code == 0);
  auto text = Run("openssl x509 -noout -text -in " + cert.string());
  CHECK(text.output.find("CA:TRUE, pathlen:0") != std::string::npos);
  CHECK(text.output.find("Certificate Sign, CRL Sign") != std::string::npos);
  CHECK(text.output.find("prime256v1") != std::string::npos);
  CHECK(text.output.find("ecdsa-with-SHA256") != std::string::npos);

  const auto info = Info(ca.ca_pem());
  CHECK(info.is_ca);
  CHECK(info.common_name == "Pi-Controller cluster CA");
  CHECK(info.not_after - info.not_before ==
        CertificateAuthority::kCaValidity + CertificateAuthority::kBackdate);
  auto pin = common::CaPin(ca.ca_pem());
  REQUIRE(pin.ok());
  CHECK(ca.pin() == *pin);
}

TEST_CASE("LoadOrCreate creates a missing state directory") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  const auto nested = dir.path() / "state" / "pki";
  REQUIRE(CertificateAuthority::LoadOrCreate(nested.string(), clock).ok());
  CHECK(std::filesystem::exists(nested / "ca.crt"));
}

TEST_CASE("LoadOrCreate loads the same CA on the next start") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  auto first = MakeCa(dir, clock);
  auto second = MakeCa(dir, clock);
  CHECK(second.pin() == first.pin());
  CHECK(second.ca_pem() == first.ca_pem());
  // The reloaded key still signs certificates chaining to the same CA.
  auto issued = second.Issue("controller", {}, kDay);
  REQUIRE(issued.ok());
  const auto path = dir.Write("controller.crt", issued->cert_pem);
  CHECK(Verify((dir.path() / "ca.crt").string(), path, clock).exit_code == 0);
}

TEST_CASE("LoadOrCreate refuses a key that does not belong to the certificate") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  pi::testing::TempDir other;
  MakeCa(dir, clock);
  MakeCa(other, clock);
  std::filesystem::copy_file(other.path() / "ca.key", dir.path() / "ca.key",
                             std::filesystem::copy_options::overwrite_existing);
  auto ca = CertificateAuthority::LoadOrCreate(dir.path().string(), clock);
  CHECK(ca.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(std::string(ca.status().message()).find("ca.key is not the private key") !=
        std::string::npos);
}

TEST_CASE("LoadOrCreate refuses a certificate without its key") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  MakeCa(dir, clock);
  std::filesystem::remove(dir.path() / "ca.key");
  auto ca = CertificateAuthority::LoadOrCreate(dir.path().string(), clock);
  CHECK(ca.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_FALSE(std::filesystem::exists(dir.path() / "ca.key"));
}

TEST_CASE("LoadOrCreate refuses a key without its certificate") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  MakeCa(dir, clock);
  const std::string key = ReadAll(dir.path() / "ca.key");
  std::filesystem::remove(dir.path() / "ca.crt");
  auto ca = CertificateAuthority::LoadOrCreate(dir.path().string(), clock);
  CHECK(ca.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(ReadAll(dir.path() / "ca.key") == key);
}

TEST_CASE("LoadOrCreate reports a malformed certificate file by name") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  MakeCa(dir, clock);
  dir.Write("ca.crt", "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n");
  auto ca = CertificateAuthority::LoadOrCreate(dir.path().string(), clock);
  CHECK(ca.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(ca.status().message()).find("ca.crt") != std::string::npos);
}

TEST_CASE("LoadOrCreate reports a malformed key file by name") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  MakeCa(dir, clock);
  dir.Write("ca.key", "not a key");
  auto ca = CertificateAuthority::LoadOrCreate(dir.path().string(), clock);
  CHECK(ca.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(ca.status().message()).find("ca.key") != std::string::npos);
}

TEST_CASE("LoadOrCreate refuses a CA certificate whose signature was tampered with") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  auto ca = MakeCa(dir, clock);
  dir.Write("ca.crt", FlipLastDerByte(ca.ca_pem()));

  auto loaded = CertificateAuthority::LoadOrCreate(dir.path().string(), clock);
  CHECK(loaded.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(std::string(loaded.status().message()).find("signature") != std::string::npos);
}

TEST_CASE("LoadOrCreate refuses a certificate that is not a CA") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  pi::testing::TempDir other;
  auto ca = MakeCa(other, clock);
  auto leaf = ca.Issue("controller", {}, kDay);
  REQUIRE(leaf.ok());
  dir.Write("ca.crt", leaf->cert_pem);
  dir.Write("ca.key", leaf->key_pem);
  auto loaded = CertificateAuthority::LoadOrCreate(dir.path().string(), clock);
  CHECK(loaded.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(std::string(loaded.status().message()).find("not a CA") != std::string::npos);
}

TEST_CASE("Issue makes a key pair the openssl CLI verifies, for server and client use") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  auto ca = MakeCa(dir, clock);
  auto issued = ca.Issue("controller", {"localhost", "127.0.0.1", "::1"}, kDay);
  REQUIRE(issued.ok());
  const auto cert = dir.Write("controller.crt", issued->cert_pem);
  const auto ca_file = (dir.path() / "ca.crt").string();

  auto verify = Verify(ca_file, cert, clock);
  INFO(verify.output);
  CHECK(verify.exit_code == 0);
  auto subject = Run("openssl x509 -noout -subject -in " + cert);
  CHECK(subject.output.find("CN = controller") != std::string::npos);
  auto text = Run("openssl x509 -noout -text -in " + cert);
  CHECK(text.output.find("TLS Web Server Authentication, TLS Web Client Authentication") !=
        std::string::npos);
  CHECK(text.output.find("DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1") !=
        std::string::npos);
  CHECK(text.output.find("CA:FALSE") != std::string::npos);
  CHECK(Verify(ca_file, cert, clock, "-purpose sslserver").exit_code == 0);
  CHECK(Verify(ca_file, cert, clock, "-purpose sslclient").exit_code == 0);

  auto key = common::ParsePrivateKeyPem(issued->key_pem);
  auto parsed = common::ParseCertificatePem(issued->cert_pem);
  REQUIRE(key.ok());
  REQUIRE(parsed.ok());
  CHECK(common::KeyMatchesCertificate(parsed->get(), key->get()));
  CHECK(Info(issued->cert_pem).sans == std::vector<std::string>{"localhost", "127.0.0.1", "::1"});
}

TEST_CASE("A certificate issued by another CA does not verify against ours") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  pi::testing::TempDir other_dir;
  MakeCa(dir, clock);
  auto other = MakeCa(other_dir, clock);
  auto issued = other.Issue("admin:mallory", {}, kDay);
  REQUIRE(issued.ok());
  const auto cert = dir.Write("mallory.crt", issued->cert_pem);
  CHECK(Verify((dir.path() / "ca.crt").string(), cert, clock).exit_code != 0);
}

TEST_CASE("Issue rejects a non-positive validity") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  auto ca = MakeCa(dir, clock);
  CHECK(ca.Issue("controller", {}, seconds(0)).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(ca.Issue("controller", {}, seconds(-5)).status().code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Issue rejects a malformed alternative name") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  auto ca = MakeCa(dir, clock);
  CHECK(ca.Issue("controller", {"bad,name"}, kDay).status().code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("SignCsr refuses to sign for a name that is not an identity") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  auto ca = MakeCa(dir, clock);
  for (const char* name : {"root", "node:", "node:a b", "Admin:x", ""}) {
    INFO(name);
    CHECK(ca.SignCsr(Csr("node:a"), name, {}, kDay).status().code() ==
          absl::StatusCode::kInvalidArgument);
  }
}

TEST_CASE("SignCsr puts our identity in the certificate, not the one the CSR asks for") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  auto ca = MakeCa(dir, clock);
  auto cert = ca.SignCsr(Csr("admin:evil", {"evil.example"}), "node:pi-7", {"pi-7.local"}, kDay);
  REQUIRE(cert.ok());
  const auto info = Info(*cert);
  CHECK(info.common_name == "node:pi-7");
  CHECK(info.sans == std::vector<std::string>{"pi-7.local"});
  const auto path = dir.Write("node.crt", *cert);
  auto subject = Run("openssl x509 -noout -subject -in " + path);
  CHECK(subject.output.find("CN = node:pi-7") != std::string::npos);
  CHECK(subject.output.find("evil") == std::string::npos);
  CHECK(Verify((dir.path() / "ca.crt").string(), path, clock).exit_code == 0);
}

TEST_CASE("SignCsr certifies the key in the CSR") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  auto ca = MakeCa(dir, clock);
  auto key_pem = common::GenerateEcPrivateKeyPem();
  REQUIRE(key_pem.ok());
  auto csr = common::CreateCsr(*key_pem, "node:x", {});
  REQUIRE(csr.ok());
  auto cert = ca.SignCsr(*csr, "node:pi-1", {}, kDay);
  REQUIRE(cert.ok());
  auto key = common::ParsePrivateKeyPem(*key_pem);
  auto parsed = common::ParseCertificatePem(*cert);
  REQUIRE(key.ok());
  REQUIRE(parsed.ok());
  CHECK(common::KeyMatchesCertificate(parsed->get(), key->get()));
}

TEST_CASE("SignCsr rejects a CSR that is not PEM") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  auto ca = MakeCa(dir, clock);
  CHECK(ca.SignCsr("hello", "node:a", {}, kDay).status().code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("SignCsr rejects a CSR with a bad signature") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  auto ca = MakeCa(dir, clock);
  // The last byte of the DER belongs to the signature.
  const std::string csr = FlipLastDerByte(Csr("node:a"));
  auto cert = ca.SignCsr(csr, "node:a", {}, kDay);
  CHECK(cert.status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("SignCsr rejects a 1024-bit RSA key") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  auto ca = MakeCa(dir, clock);
  auto cert = ca.SignCsr(RsaCsr(1024), "node:a", {}, kDay);
  CHECK(cert.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(cert.status().message()).find("RSA 1024") != std::string::npos);
}

TEST_CASE("SignCsr accepts a 2048-bit RSA key") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  auto ca = MakeCa(dir, clock);
  CHECK(ca.SignCsr(RsaCsr(2048), "node:a", {}, kDay).ok());
}

TEST_CASE("SignCsr rejects an EC key on a curve TLS does not use") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  auto ca = MakeCa(dir, clock);
  EVP_PKEY* key = EVP_EC_gen("secp256k1");
  REQUIRE(key != nullptr);
  auto csr = common::CreateCsr(KeyToPem(key), "node:a", {});
  EVP_PKEY_free(key);
  REQUIRE(csr.ok());
  auto cert = ca.SignCsr(*csr, "node:a", {}, kDay);
  CHECK(cert.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(cert.status().message()).find("secp256k1") != std::string::npos);
}

TEST_CASE("SignCsr accepts a P-384 key") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  auto ca = MakeCa(dir, clock);
  EVP_PKEY* key = EVP_EC_gen("P-384");
  REQUIRE(key != nullptr);
  auto csr = common::CreateCsr(KeyToPem(key), "node:a", {});
  EVP_PKEY_free(key);
  REQUIRE(csr.ok());
  CHECK(ca.SignCsr(*csr, "node:a", {}, kDay).ok());
}

TEST_CASE("SignCsr rejects an Ed25519 key") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  auto ca = MakeCa(dir, clock);
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  REQUIRE(key != nullptr);
  auto csr = common::CreateCsr(KeyToPem(key), "node:a", {});
  EVP_PKEY_free(key);
  REQUIRE(csr.ok());
  auto cert = ca.SignCsr(*csr, "node:a", {}, kDay);
  CHECK(cert.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(cert.status().message()).find("ED25519") != std::string::npos);
}

TEST_CASE("Issued certificates start five minutes early and last the validity asked for") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  auto ca = MakeCa(dir, clock);
  clock.Advance(hours(100));
  const auto now = std::chrono::time_point_cast<seconds>(clock.WallNow());
  auto cert = ca.SignCsr(Csr("node:a"), "node:a", {}, kDay * 30);
  REQUIRE(cert.ok());
  const auto info = Info(*cert);
  CHECK(info.not_before == now - minutes(5));
  CHECK(info.not_after == now + kDay * 30);

  clock.Advance(kDay);
  auto later = ca.Issue("controller", {}, kDay);
  REQUIRE(later.ok());
  CHECK(Info(later->cert_pem).not_before == now + kDay - minutes(5));
}

TEST_CASE("Issued certificates never outlive the CA") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  auto ca = MakeCa(dir, clock);
  auto cert = ca.Issue("controller", {}, std::chrono::duration_cast<seconds>(hours(24 * 365 * 20)));
  REQUIRE(cert.ok());
  CHECK(Info(cert->cert_pem).not_after == Info(ca.ca_pem()).not_after);
}

TEST_CASE("Serials are unique across many certificates") {
  common::ManualClock clock;
  pi::testing::TempDir dir;
  auto ca = MakeCa(dir, clock);
  const std::string csr = Csr("node:a");
  std::set<std::string> serials;
  for (int i = 0; i < 300; ++i) {
    auto cert = ca.SignCsr(csr, "node:a", {}, kDay);
    REQUIRE(cert.ok());
    serials.insert(Info(*cert).serial_hex);
  }
  CHECK(serials.size() == 300);
}

}  // namespace pi::controlplane::cluster
