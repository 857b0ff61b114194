#include "common/tls/x509.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>

#include "tests/common/test_dir.h"

namespace pi::common {
namespace {

using std::chrono::hours;
using std::chrono::system_clock;

// A fixed, whole-second instant: certificates store seconds.
const system_clock::time_point kStart = system_clock::from_time_t(1'700'000'000);

std::string KeyPem() {
  auto key = GenerateEcPrivateKeyPem();
  REQUIRE(key.ok());
  return *key;
}

EvpPkeyPtr Key(const std::string& pem) {
  auto key = ParsePrivateKeyPem(pem);
  REQUIRE(key.ok());
  return *std::move(key);
}

std::string SelfSignedCa(EVP_PKEY* key) {
  auto pem = SignCertificate({.common_name = "test CA",
                              .sans = {},
                              .not_before = kStart,
                              .not_after = kStart + hours(24),
                              .is_ca = true},
                             key, nullptr, key);
  REQUIRE(pem.ok());
  return *pem;
}

std::string DerOf(const std::string& cert_pem) {
  auto cert = ParseCertificatePem(cert_pem);
  REQUIRE(cert.ok());
  unsigned char* der = nullptr;
  const int size = i2d_X509(cert->get(), &der);
  REQUIRE(size > 0);
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(size));
  OPENSSL_free(der);
  return out;
}

std::string PemOf(std::string_view type, const std::string& der) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio(bio, std::string(type).c_str(), "",
                reinterpret_cast<const unsigned char*>(der.data()), static_cast<long>(der.size()));
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(size));
  BIO_free(bio);
  return out;
}

}  // namespace

TEST_CASE("Sha256Hex matches the FIPS 180-2 test vector") {
  CHECK(Sha256Hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("GenerateEcPrivateKeyPem makes distinct P-256 keys") {
  const std::string a = KeyPem();
  CHECK(a.find("-----BEGIN PRIVATE KEY-----") == 0);
  CHECK(a != KeyPem());
  auto key = Key(a);
  CHECK(EVP_PKEY_get_base_id(key.get()) == EVP_PKEY_EC);
  CHECK(EVP_PKEY_get_bits(key.get()) == 256);
}

TEST_CASE("A CSR round-trips its common name, names and key") {
  auto csr = CreateCsr(KeyPem(), "node:pi-1", {"pi-1.local", "10.0.0.7", "fd00::7"});
  REQUIRE(csr.ok());
  auto info = ParseCsr(*csr);
  REQUIRE(info.ok());
  CHECK(info->common_name == "node:pi-1");
  CHECK(info->sans == std::vector<std::string>{"pi-1.local", "10.0.0.7", "fd00::7"});
  CHECK(info->key_type == KeyType::kEc);
  CHECK(info->key_bits == 256);
  CHECK(info->key_name == "EC prime256v1");
  CHECK(info->public_key != nullptr);
}

TEST_CASE("A CSR without names has none") {
  auto csr = CreateCsr(KeyPem(), "node:pi-1", {});
  REQUIRE(csr.ok());
  auto info = ParseCsr(*csr);
  REQUIRE(info.ok());
  CHECK(info->sans.empty());
}

TEST_CASE("CreateCsr rejects a malformed key") {
  auto csr = CreateCsr("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n", "x", {});
  CHECK(csr.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(csr.status().message()).find("private key") != std::string::npos);
}

TEST_CASE("CreateCsr rejects an empty common name") {
  CHECK(CreateCsr(KeyPem(), "", {}).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("CreateCsr rejects a common name over 64 characters") {
  CHECK(CreateCsr(KeyPem(), std::string(65, 'a'), {}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(CreateCsr(KeyPem(), std::string(64, 'a'), {}).ok());
}

TEST_CASE("CreateCsr rejects a common name with a control character") {
  CHECK(CreateCsr(KeyPem(), "node:a\nb", {}).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("CreateCsr rejects a name that is neither DNS nor IP") {
  auto csr = CreateCsr(KeyPem(), "node:a", {"ok.example", "bad name"});
  CHECK(csr.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(csr.status().message()).find("bad name") != std::string::npos);
}

TEST_CASE("ValidateSubjectAltNames accepts DNS names, wildcards and addresses") {
  CHECK(ValidateSubjectAltNames({"localhost", "*.pis.example", "127.0.0.1", "::1"}).ok());
}

TEST_CASE("ValidateSubjectAltNames rejects malformed DNS names") {
  for (const std::string bad : {"", "a..b", ".a", "a.", "under_score", "a b", "*.", "x*.a"}) {
    INFO(bad);
    CHECK(ValidateSubjectAltNames({bad}).code() == absl::StatusCode::kInvalidArgument);
  }
  CHECK(ValidateSubjectAltNames({std::string(254, 'a')}).code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ParseCsr rejects text that is not PEM") {
  auto info = ParseCsr("hello");
  CHECK(info.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(info.status().message()).find("certificate signing request") !=
        std::string::npos);
}

TEST_CASE("ParseCsr rejects a certificate") {
  auto key = Key(KeyPem());
  CHECK(ParseCsr(SelfSignedCa(key.get())).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ParseCsr rejects a CSR whose signature does not match its key") {
  auto csr = CreateCsr(KeyPem(), "node:pi-1", {});
  REQUIRE(csr.ok());
  // Swap in another public key without re-signing: what a requester without the key would send.
  BIO* in = BIO_new_mem_buf(csr->data(), static_cast<int>(csr->size()));
  X509_REQ* req = PEM_read_bio_X509_REQ(in, nullptr, nullptr, nullptr);
  BIO_free(in);
  REQUIRE(req != nullptr);
  auto other = Key(KeyPem());
  REQUIRE(X509_REQ_set_pubkey(req, other.get()) == 1);
  unsigned char* der = nullptr;
  const int size = i2d_X509_REQ(req, &der);
  X509_REQ_free(req);
  REQUIRE(size > 0);
  const std::string forged =
      PemOf("CERTIFICATE REQUEST", std::string(reinterpret_cast<char*>(der), size));
  OPENSSL_free(der);

  auto info = ParseCsr(forged);
  CHECK(info.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(info.status().message()).find("signature") != std::string::npos);
}

TEST_CASE("ParseCertificate reads what SignCertificate wrote") {
  auto ca_key = Key(KeyPem());
  const std::string ca_pem = SelfSignedCa(ca_key.get());
  auto ca = ParseCertificatePem(ca_pem);
  REQUIRE(ca.ok());
  auto leaf_key = Key(KeyPem());
  auto leaf = SignCertificate({.common_name = "controller",
                               .sans = {"localhost", "127.0.0.1"},
                               .not_before = kStart,
                               .not_after = kStart + hours(48),
                               .is_ca = false},
                              leaf_key.get(), ca->get(), ca_key.get());
  REQUIRE(leaf.ok());

  auto info = ParseCertificate(*leaf);
  REQUIRE(info.ok());
  CHECK(info->common_name == "controller");
  CHECK(info->sans == std::vector<std::string>{"localhost", "127.0.0.1"});
  CHECK(info->not_before == kStart);
  CHECK(info->not_after == kStart + hours(48));
  CHECK_FALSE(info->is_ca);
  CHECK(info->sha256_fingerprint == Sha256Hex(DerOf(*leaf)));
  CHECK(info->serial_hex.size() >= 16);
  CHECK(info->serial_hex.size() <= 32);
  CHECK(info->serial_hex.find_first_not_of("0123456789abcdef") == std::string::npos);

  auto parsed_leaf = ParseCertificatePem(*leaf);
  REQUIRE(parsed_leaf.ok());
  CHECK(X509_verify(parsed_leaf->get(), ca_key.get()) == 1);
  CHECK(KeyMatchesCertificate(parsed_leaf->get(), leaf_key.get()));
  CHECK_FALSE(KeyMatchesCertificate(parsed_leaf->get(), ca_key.get()));
}

TEST_CASE("SignCertificate marks a CA certificate as a CA") {
  auto key = Key(KeyPem());
  auto info = ParseCertificate(SelfSignedCa(key.get()));
  REQUIRE(info.ok());
  CHECK(info->is_ca);
  CHECK(info->common_name == "test CA");
}

TEST_CASE("SignCertificate rejects a window that ends before it starts") {
  auto key = Key(KeyPem());
  auto pem = SignCertificate(
      {.common_name = "x", .sans = {}, .not_before = kStart, .not_after = kStart, .is_ca = false},
      key.get(), nullptr, key.get());
  CHECK(pem.status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("SignCertificate rejects an issuer key that is not the issuer's") {
  auto ca_key = Key(KeyPem());
  auto ca = ParseCertificatePem(SelfSignedCa(ca_key.get()));
  REQUIRE(ca.ok());
  auto other = Key(KeyPem());
  auto pem = SignCertificate({.common_name = "x",
                              .sans = {},
                              .not_before = kStart,
                              .not_after = kStart + hours(1),
                              .is_ca = false},
                             other.get(), ca->get(), other.get());
  CHECK(pem.status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("CaPin is the SHA-256 of the CA certificate's DER") {
  auto key = Key(KeyPem());
  const std::string ca = SelfSignedCa(key.get());
  auto pin = CaPin(ca);
  REQUIRE(pin.ok());
  CHECK(*pin == Sha256Hex(DerOf(ca)));
  CHECK(pin->size() == 64);
}

TEST_CASE("CaPin refuses a certificate that is not a CA") {
  auto ca_key = Key(KeyPem());
  auto ca = ParseCertificatePem(SelfSignedCa(ca_key.get()));
  REQUIRE(ca.ok());
  auto leaf = SignCertificate({.common_name = "node:a",
                               .sans = {},
                               .not_before = kStart,
                               .not_after = kStart + hours(1),
                               .is_ca = false},
                              ca_key.get(), ca->get(), ca_key.get());
  REQUIRE(leaf.ok());
  CHECK(CaPin(*leaf).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ParseCertificate rejects text without a certificate") {
  auto info = ParseCertificate("not a certificate");
  CHECK(info.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(info.status().message()).find("certificate") != std::string::npos);
}

TEST_CASE("ParseCertificate rejects a truncated certificate") {
  auto key = Key(KeyPem());
  const std::string der = DerOf(SelfSignedCa(key.get()));
  const std::string truncated = PemOf("CERTIFICATE", der.substr(0, der.size() / 2));
  CHECK(ParseCertificate(truncated).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ParseCertificate rejects corrupted base64") {
  auto key = Key(KeyPem());
  std::string pem = SelfSignedCa(key.get());
  pem[pem.find('\n') + 10] = '!';
  CHECK(ParseCertificate(pem).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ParsePrivateKeyPem rejects a certificate") {
  auto key = Key(KeyPem());
  CHECK(ParsePrivateKeyPem(SelfSignedCa(key.get())).status().code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("WritePrivateKeyFile writes mode 0600 even over a readable file") {
  pi::testing::TempDir dir;
  const std::string path = dir.Write("node.key", "old");
  chmod(path.c_str(), 0644);
  const std::string pem = KeyPem();
  REQUIRE(WritePrivateKeyFile(path, pem).ok());
  struct stat info {};
  REQUIRE(stat(path.c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0600);
  CHECK(ParsePrivateKeyPem(pem).ok());
}

}  // namespace pi::common
