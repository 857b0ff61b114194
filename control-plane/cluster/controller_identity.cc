#include "control-plane/cluster/controller_identity.h"

#include <fmt/format.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/system/files.h"
#include "common/tls/x509.h"

namespace pi::controlplane::cluster {
namespace {

constexpr std::chrono::hours kRenewBefore{24 * 30};
constexpr std::chrono::hours kControllerValidity{24 * 365};
constexpr size_t kMaxCertificateFile = 64 * 1024;

bool IsIssuedBy(const std::string& cert_pem, const std::string& ca_pem) {
  absl::StatusOr<common::X509Ptr> cert = common::ParseCertificatePem(cert_pem);
  absl::StatusOr<common::X509Ptr> ca = common::ParseCertificatePem(ca_pem);
  if (!cert.ok() || !ca.ok()) return false;
  EVP_PKEY* ca_key = X509_get0_pubkey(ca->get());
  return ca_key != nullptr && X509_verify(cert->get(), ca_key) == 1;
}

// Whether the files hold a controller certificate that can stay.
bool Reusable(const CertificateAuthority& ca, const ControllerCertificateFiles& files,
              const std::vector<std::string>& hosts, const common::Clock& clock) {
  absl::StatusOr<std::string> chain =
      common::ReadFileToString(files.cert_file, kMaxCertificateFile);
  absl::StatusOr<std::string> key = common::ReadFileToString(files.key_file, kMaxCertificateFile);
  if (!chain.ok() || !key.ok()) return false;
  absl::StatusOr<common::CertificateInfo> info = common::ParseCertificate(*chain);
  absl::StatusOr<common::X509Ptr> cert = common::ParseCertificatePem(*chain);
  absl::StatusOr<common::EvpPkeyPtr> private_key = common::ParsePrivateKeyPem(*key);
  if (!info.ok() || !cert.ok() || !private_key.ok()) return false;
  return info->common_name == "controller" && IsIssuedBy(*chain, ca.ca_pem()) &&
         common::KeyMatchesCertificate(cert->get(), private_key->get()) &&
         chain->find(ca.ca_pem()) != std::string::npos &&
         info->not_after - kRenewBefore > clock.WallNow() &&
         std::all_of(hosts.begin(), hosts.end(), [&](const std::string& host) {
           return std::find(info->sans.begin(), info->sans.end(), host) != info->sans.end();
         });
}

}  // namespace

absl::StatusOr<bool> EnsureControllerCertificate(const CertificateAuthority& ca,
                                                 const ControllerCertificateFiles& files,
                                                 const std::vector<std::string>& hosts,
                                                 const common::Clock& clock) {
  if (absl::Status status = common::ValidateSubjectAltNames(hosts); !status.ok()) return status;
  if (Reusable(ca, files, hosts, clock)) return false;
  absl::StatusOr<IssuedKeyPair> issued = ca.Issue("controller", hosts, kControllerValidity);
  if (!issued.ok()) return issued.status();
  if (absl::Status status = common::WritePrivateKeyFile(files.key_file, issued->key_pem);
      !status.ok()) {
    return status;
  }
  if (absl::Status status =
          common::WriteFileAtomically(files.cert_file, issued->cert_pem + ca.ca_pem(), 0644);
      !status.ok()) {
    return status;
  }
  return true;
}

absl::Status WriteAdminBundle(const CertificateAuthority& ca, const std::string& name,
                              const std::string& dir, const std::string& controller_address,
                              std::chrono::seconds validity) {
  const std::filesystem::path out(dir);
  std::error_code error;
  std::filesystem::create_directories(out, error);
  if (error) {
    return absl::FailedPreconditionError(fmt::format("cannot create {}: {}", dir, error.message()));
  }
  if (std::filesystem::exists(out / "admin.key")) {
    return absl::AlreadyExistsError(
        fmt::format("{} already holds an admin key; choose another directory or delete it first",
                    (out / "admin.key").string()));
  }
  absl::StatusOr<IssuedKeyPair> issued = ca.Issue(fmt::format("admin:{}", name), {}, validity);
  if (!issued.ok()) return issued.status();
  const nlohmann::json config = {{"controller", controller_address},
                                 {"ca_file", "ca.crt"},
                                 {"cert_file", "admin.crt"},
                                 {"key_file", "admin.key"}};
  absl::Status status = common::WriteFileAtomically((out / "ca.crt").string(), ca.ca_pem(), 0644);
  if (status.ok()) {
    status = common::WriteFileAtomically((out / "admin.crt").string(), issued->cert_pem, 0644);
  }
  if (status.ok())
    status = common::WritePrivateKeyFile((out / "admin.key").string(), issued->key_pem);
  if (status.ok()) {
    status =
        common::WriteFileAtomically((out / "config.json").string(), config.dump(2) + "\n", 0600);
  }
  return status;
}

}  // namespace pi::controlplane::cluster
