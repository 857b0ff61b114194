#pragma once

#include <openssl/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pi::common {

// Owning handles for the OpenSSL objects this API hands out.
struct EvpPkeyDeleter {
  void operator()(EVP_PKEY* key) const;
};
struct X509Deleter {
  void operator()(X509* cert) const;
};
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

// Subject alternative names are plain strings: an IPv4/IPv6 literal becomes an IP SAN, anything
// else a DNS SAN (1–253 characters of [A-Za-z0-9.-], optionally starting with "*.").
absl::Status ValidateSubjectAltNames(const std::vector<std::string>& sans);

// Lowercase hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);

// A new ECDSA P-256 private key as unencrypted PKCS#8 PEM.
absl::StatusOr<std::string> GenerateEcPrivateKeyPem();

// Parsers: INVALID_ARGUMENT naming what was wrong when the text is not the expected PEM object.
absl::StatusOr<EvpPkeyPtr> ParsePrivateKeyPem(std::string_view pem);
absl::StatusOr<X509Ptr> ParseCertificatePem(std::string_view pem);

// A certificate signing request for `common_name` and `sans`, signed with `key_pem` (the key
// itself never leaves the caller).
absl::StatusOr<std::string> CreateCsr(std::string_view key_pem, std::string_view common_name,
                                      const std::vector<std::string>& sans);

enum class KeyType { kEc, kRsa, kOther };

// What a CSR asks for. Move-only because it owns the requester's public key.
struct CsrInfo {
  std::string common_name;  // empty when the subject has none
  std::vector<std::string> sans;
  KeyType key_type = KeyType::kOther;
  int key_bits = 0;      // RSA modulus or EC field size
  std::string key_name;  // for messages: "EC prime256v1", "RSA 2048", "ED25519"
  EvpPkeyPtr public_key;
};

// Parses a PEM CSR and verifies its self-signature (INVALID_ARGUMENT when it does not verify:
// the requester does not hold the key it asks a certificate for).
absl::StatusOr<CsrInfo> ParseCsr(std::string_view csr_pem);

struct CertificateInfo {
  std::string common_name;
  std::vector<std::string> sans;
  std::string serial_hex;  // lowercase, no leading zeros
  std::chrono::system_clock::time_point not_before;
  std::chrono::system_clock::time_point not_after;
  std::string sha256_fingerprint;  // of the DER, lowercase hex
  bool is_ca = false;
};

absl::StatusOr<CertificateInfo> ParseCertificate(std::string_view cert_pem);

// The CA pin carried in join tokens: lowercase hex SHA-256 of the CA certificate's DER.
absl::StatusOr<std::string> CaPin(std::string_view cert_pem);

// What SignCertificate puts in a certificate; the serial is always 128 random bits.
struct CertificateSpec {
  std::string common_name;  // 1–64 characters
  std::vector<std::string> sans;
  std::chrono::system_clock::time_point not_before;
  std::chrono::system_clock::time_point not_after;
  // A CA certificate (CA:TRUE, pathlen:0, keyCertSign/cRLSign) or a leaf usable as both TLS
  // server and client (CA:FALSE, digitalSignature/keyEncipherment, serverAuth+clientAuth).
  bool is_ca = false;
};

// Issues a certificate for `subject_key` (only its public half is used) signed by `issuer_key`
// with SHA-256. `issuer` is null for a self-signed certificate. Returns PEM.
absl::StatusOr<std::string> SignCertificate(const CertificateSpec& spec, EVP_PKEY* subject_key,
                                            X509* issuer, EVP_PKEY* issuer_key);

// True when `key` is the private key of `cert`.
bool KeyMatchesCertificate(X509* cert, EVP_PKEY* key);

// Writes a private key file with mode 0600, atomically.
absl::Status WritePrivateKeyFile(const std::string& path, std::string_view key_pem);

}  // namespace pi::common
