#include "control-plane/cluster/controller_identity.h"

#include <fmt/format.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/system/files.h"
#include "common/tls/identity.h"
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

}  // namespace

absl::Status CheckControllerCertificate(const CertificateAuthority& ca,
                                        const ControllerCertificateFiles& files,
                                        const std::vector<std::string>& hosts,
                                        const common::Clock& clock) {
  absl::StatusOr<std::string> chain =
      common::ReadFileToString(files.cert_file, kMaxCertificateFile);
  if (!chain.ok()) return chain.status();
  absl::StatusOr<std::string> key = common::ReadFileToString(files.key_file, kMaxCertificateFile);
  if (!key.ok()) return key.status();
  absl::StatusOr<common::CertificateInfo> info = common::ParseCertificate(*chain);
  if (!info.ok()) return info.status();
  absl::StatusOr<common::X509Ptr> cert = common::ParseCertificatePem(*chain);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<common::EvpPkeyPtr> private_key = common::ParsePrivateKeyPem(*key);
  if (!private_key.ok()) return private_key.status();
  const auto fail = [&files](std::string_view why) {
    return absl::FailedPreconditionError(fmt::format("{}: {}", files.cert_file, why));
  };
  if (info->common_name != "controller") {
    return fail(fmt::format("the subject CN is {:?}, not \"controller\"", info->common_name));
  }
  if (!IsIssuedBy(*chain, ca.ca_pem())) return fail("not issued by the cluster CA");
  if (!common::KeyMatchesCertificate(cert->get(), private_key->get())) {
    return fail(fmt::format("{} is not the key of this certificate", files.key_file));
  }
  if (chain->find(ca.ca_pem()) == std::string::npos) {
    return fail(
        "the file must hold the certificate followed by the cluster CA (ca.crt), so that joining "
        "agents find the CA their token pins");
  }
  if (info->not_after <= clock.WallNow() + kRenewBefore) {
    return fail("expires within 30 days");
  }
  for (const std::string& host : hosts) {
    if (std::find(info->sans.begin(), info->sans.end(), host) == info->sans.end()) {
      return fail(fmt::format("does not name {}", host));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> EnsureControllerCertificate(const CertificateAuthority& ca,
                                                 const ControllerCertificateFiles& files,
                                                 const std::vector<std::string>& hosts,
                                                 const common::Clock& clock) {
  if (absl::Status status = common::ValidateSubjectAltNames(hosts); !status.ok()) return status;
  if (CheckControllerCertificate(ca, files, hosts, clock).ok()) return false;
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
  const std::string identity = fmt::format("admin:{}", name);
  if (absl::StatusOr<common::Identity> parsed = common::ParseIdentity(identity); !parsed.ok()) {
    return absl::InvalidArgumentError(std::string(parsed.status().message()));
  }
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
  absl::StatusOr<IssuedKeyPair> issued = ca.Issue(identity, {}, validity);
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
