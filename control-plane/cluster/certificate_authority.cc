#include "control-plane/cluster/certificate_authority.h"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "common/system/files.h"
#include "common/tls/identity.h"

namespace pi::controlplane::cluster {
namespace {

// The curves TLS stacks negotiate for certificates; others (e.g. secp256k1) would be signed but
// fail every handshake.
constexpr std::array<std::string_view, 3> kAcceptedEcKeys = {"EC prime256v1", "EC secp384r1",
                                                             "EC secp521r1"};
constexpr int kMinRsaBits = 2048;

constexpr size_t kMaxPemBytes = 1024 * 1024;

// The CA's files exist when this runs (LoadOrCreate checked): any failure to read them is a
// state problem an operator must fix, never a reason to create a new CA.
absl::StatusOr<std::string> ReadCaFile(const std::string& path) {
  auto contents = common::ReadFileToString(path, kMaxPemBytes);
  if (!contents.ok())
    return absl::FailedPreconditionError(std::string(contents.status().message()));
  return contents;
}

absl::Status WithFile(const absl::Status& status, const std::string& path) {
  return absl::Status(status.code(), fmt::format("{}: {}", path, std::string(status.message())));
}

}  // namespace

CertificateAuthority::CertificateAuthority(const common::Clock& clock, std::string ca_pem,
                                           std::string pin,
                                           std::chrono::system_clock::time_point not_after,
                                           common::X509Ptr cert, common::EvpPkeyPtr key)
    : clock_(&clock),
      ca_pem_(std::move(ca_pem)),
      pin_(std::move(pin)),
      not_after_(not_after),
      cert_(std::move(cert)),
      key_(std::move(key)) {}

absl::StatusOr<CertificateAuthority> CertificateAuthority::LoadOrCreate(
    const std::string& dir, const common::Clock& clock) {
  const std::string cert_path = (std::filesystem::path(dir) / kCertFile).string();
  const std::string key_path = (std::filesystem::path(dir) / kKeyFile).string();
  std::error_code error;
  const bool has_cert = std::filesystem::exists(cert_path, error);
  const bool has_key = std::filesystem::exists(key_path, error);
  if (has_cert != has_key) {
    return absl::FailedPreconditionError(fmt::format(
        "{} exists but {} does not; restore the missing file or remove both to create a new "
        "cluster CA (every issued certificate and join token then stops working)",
        has_cert ? cert_path : key_path, has_cert ? key_path : cert_path));
  }

  std::string cert_pem;
  std::string key_pem;
  if (has_cert) {
    auto cert_text = ReadCaFile(cert_path);
    if (!cert_text.ok()) return cert_text.status();
    auto key_text = ReadCaFile(key_path);
    if (!key_text.ok()) return key_text.status();
    cert_pem = *std::move(cert_text);
    key_pem = *std::move(key_text);
  } else {
    std::filesystem::create_directories(dir, error);
    if (error) {
      return absl::InternalError(
          fmt::format("cannot create CA directory {}: {}", dir, error.message()));
    }
    auto generated = common::GenerateEcPrivateKeyPem();
    if (!generated.ok()) return generated.status();
    auto key = common::ParsePrivateKeyPem(*generated);
    if (!key.ok()) return key.status();
    const auto now = clock.WallNow();
    auto self_signed = common::SignCertificate({.common_name = std::string(kCommonName),
                                                .sans = {},
                                                .not_before = now - kBackdate,
                                                .not_after = now + kCaValidity,
                                                .is_ca = true},
                                               key->get(), nullptr, key->get());
    if (!self_signed.ok()) return self_signed.status();
    // The key goes first: a crash in between leaves a key without a certificate, which the next
    // start reports instead of overwriting.
    if (auto status = common::WritePrivateKeyFile(key_path, *generated); !status.ok()) {
      return status;
    }
    if (auto status = common::WriteFileAtomically(cert_path, *self_signed, 0644); !status.ok()) {
      return status;
    }
    cert_pem = *std::move(self_signed);
    key_pem = *std::move(generated);
  }

  auto cert = common::ParseCertificatePem(cert_pem);
  if (!cert.ok()) return WithFile(cert.status(), cert_path);
  auto key = common::ParsePrivateKeyPem(key_pem);
  if (!key.ok()) return WithFile(key.status(), key_path);
  auto info = common::ParseCertificate(cert_pem);
  if (!info.ok()) return WithFile(info.status(), cert_path);
  if (!info->is_ca) {
    return absl::FailedPreconditionError(
        fmt::format("{} (\"{}\") is not a CA certificate", cert_path, info->common_name));
  }
  if (!common::KeyMatchesCertificate(cert->get(), key->get())) {
    return absl::FailedPreconditionError(
        fmt::format("{} is not the private key of {}", key_path, cert_path));
  }
  // A certificate edited on disk can still parse and match the key; its signature cannot.
  EVP_PKEY* public_key = X509_get0_pubkey(cert->get());
  if (public_key == nullptr || X509_verify(cert->get(), public_key) != 1) {
    ERR_clear_error();
    return absl::FailedPreconditionError(fmt::format(
        "{} is not a valid self-signed CA certificate (its signature does not verify)", cert_path));
  }
  return CertificateAuthority(clock, std::move(cert_pem), info->sha256_fingerprint, info->not_after,
                              *std::move(cert), *std::move(key));
}

absl::StatusOr<std::string> CertificateAuthority::SignFor(EVP_PKEY* subject_key,
                                                          std::string_view common_name,
                                                          const std::vector<std::string>& sans,
                                                          std::chrono::seconds validity) const {
  if (validity <= std::chrono::seconds::zero()) {
    return absl::InvalidArgumentError(
        fmt::format("certificate validity must be positive, got {}s", validity.count()));
  }
  const auto now = clock_->WallNow();
  // A certificate outliving its CA would fail verification after the CA expires anyway.
  const auto not_after =
      std::min<std::chrono::system_clock::time_point>(now + validity, not_after_);
  return common::SignCertificate({.common_name = std::string(common_name),
                                  .sans = sans,
                                  .not_before = now - kBackdate,
                                  .not_after = not_after,
                                  .is_ca = false},
                                 subject_key, cert_.get(), key_.get());
}

absl::StatusOr<IssuedKeyPair> CertificateAuthority::Issue(std::string_view common_name,
                                                          const std::vector<std::string>& sans,
                                                          std::chrono::seconds validity) const {
  auto key_pem = common::GenerateEcPrivateKeyPem();
  if (!key_pem.ok()) return key_pem.status();
  auto key = common::ParsePrivateKeyPem(*key_pem);
  if (!key.ok()) return key.status();
  auto cert_pem = SignFor(key->get(), common_name, sans, validity);
  if (!cert_pem.ok()) return cert_pem.status();
  return IssuedKeyPair{*std::move(cert_pem), *std::move(key_pem)};
}

absl::StatusOr<common::CsrInfo> CertificateAuthority::CheckCsr(std::string_view csr_pem) {
  auto csr = common::ParseCsr(csr_pem);
  if (!csr.ok()) return csr.status();
  const bool strong_ec = csr->key_type == common::KeyType::kEc &&
                         std::find(kAcceptedEcKeys.begin(), kAcceptedEcKeys.end(), csr->key_name) !=
                             kAcceptedEcKeys.end();
  const bool strong_rsa = csr->key_type == common::KeyType::kRsa && csr->key_bits >= kMinRsaBits;
  if (!strong_ec && !strong_rsa) {
    return absl::InvalidArgumentError(fmt::format(
        "CSR key {} is not accepted; use ECDSA P-256, P-384 or P-521, or RSA of at least {} bits",
        csr->key_name, kMinRsaBits));
  }
  return csr;
}

absl::StatusOr<std::string> CertificateAuthority::SignCsr(std::string_view csr_pem,
                                                          std::string_view identity,
                                                          const std::vector<std::string>& sans,
                                                          std::chrono::seconds validity) const {
  if (auto parsed = common::ParseIdentity(identity); !parsed.ok()) {
    return absl::InvalidArgumentError(std::string(parsed.status().message()));
  }
  auto csr = CheckCsr(csr_pem);
  if (!csr.ok()) return csr.status();
  return SignFor(csr->public_key.get(), identity, sans, validity);
}

}  // namespace pi::controlplane::cluster
