#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/system/clock.h"
#include "common/tls/x509.h"

namespace pi::controlplane::cluster {

// A certificate and the private key generated for it, both PEM.
struct IssuedKeyPair {
  std::string cert_pem;
  std::string key_pem;
};

// The cluster CA (DESIGN 5.4): issues the controller's and admins' certificates and signs the
// CSRs of joining nodes. The subject common name of every certificate it issues is the identity
// the caller decided, never what a requester asked for. Immutable after loading, so safe to use
// from many threads.
class CertificateAuthority {
 public:
  static constexpr std::string_view kCertFile = "ca.crt";
  static constexpr std::string_view kKeyFile = "ca.key";
  static constexpr std::string_view kCommonName = "Pi-Controller cluster CA";
  static constexpr std::chrono::hours kCaValidity{24 * 3650};
  // Issued certificates start this much before "now" so peers with a slow clock accept them.
  static constexpr std::chrono::minutes kBackdate{5};

  // Loads `dir`/ca.crt and `dir`/ca.key, checking that the certificate is a CA, that its
  // self-signature verifies and that the key belongs to it (FAILED_PRECONDITION otherwise). When
  // neither file exists, creates a 10-year ECDSA P-256 CA there (the key with mode 0600). When
  // only one exists, FAILED_PRECONDITION: a half-present CA is restored by an operator, never
  // silently replaced. `clock` must outlive the CA.
  static absl::StatusOr<CertificateAuthority> LoadOrCreate(const std::string& dir,
                                                           const common::Clock& clock);

  // Generates an ECDSA P-256 key and a certificate for it (controller and admin certificates).
  // Validity is capped at the CA's own expiry.
  absl::StatusOr<IssuedKeyPair> Issue(std::string_view common_name,
                                      const std::vector<std::string>& sans,
                                      std::chrono::seconds validity) const;

  // Signs a joining node's CSR with `identity` (e.g. "node:<id>") as the common name and `sans`
  // as its alternative names, ignoring both in the CSR. INVALID_ARGUMENT when `identity` is not
  // one (common/tls/identity.h), when the CSR does not parse or verify, or its key is neither ECDSA
  // on P-256/P-384/P-521 nor RSA of at least 2048 bits.
  // What SignCsr checks of a CSR before signing: that it parses, verifies and has a key it
  // accepts. Lets a caller refuse a CSR before it spends anything (a join token use) on it.
  static absl::StatusOr<common::CsrInfo> CheckCsr(std::string_view csr_pem);

  absl::StatusOr<std::string> SignCsr(std::string_view csr_pem, std::string_view identity,
                                      const std::vector<std::string>& sans,
                                      std::chrono::seconds validity) const;

  const std::string& ca_pem() const { return ca_pem_; }
  // Lowercase hex SHA-256 of the CA certificate's DER, as carried in join tokens.
  const std::string& pin() const { return pin_; }

 private:
  CertificateAuthority(const common::Clock& clock, std::string ca_pem, std::string pin,
                       std::chrono::system_clock::time_point not_after, common::X509Ptr cert,
                       common::EvpPkeyPtr key);

  absl::StatusOr<std::string> SignFor(EVP_PKEY* subject_key, std::string_view common_name,
                                      const std::vector<std::string>& sans,
                                      std::chrono::seconds validity) const;

  const common::Clock* clock_;
  std::string ca_pem_;
  std::string pin_;
  std::chrono::system_clock::time_point not_after_;
  common::X509Ptr cert_;
  common::EvpPkeyPtr key_;
};

}  // namespace pi::controlplane::cluster
