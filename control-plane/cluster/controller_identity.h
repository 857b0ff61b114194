#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "control-plane/cluster/certificate_authority.h"

// The certificates the controller makes from its CA: its own (identity `controller`) and admin
// bundles for pictl.
namespace pi::controlplane::cluster {

struct ControllerCertificateFiles {
  std::string cert_file;  // the leaf followed by the CA: a joining agent finds the CA in the chain
  std::string key_file;
};

// OK when `files` hold a certificate the controller can serve with: CN "controller", issued by
// `ca`, the key matching, followed by the CA in the same file, every name in `hosts` present and
// more than 30 days left. FAILED_PRECONDITION naming what is wrong otherwise.
absl::Status CheckControllerCertificate(const CertificateAuthority& ca,
                                        const ControllerCertificateFiles& files,
                                        const std::vector<std::string>& hosts,
                                        const common::Clock& clock);

// Keeps the controller certificate at `files` when it is ours (signed by `ca`, key matching,
// CN "controller", every name in `hosts` present, more than 30 days left); otherwise issues a new
// one for `hosts` and writes both files atomically (key 0600). Returns whether it issued.
absl::StatusOr<bool> EnsureControllerCertificate(const CertificateAuthority& ca,
                                                 const ControllerCertificateFiles& files,
                                                 const std::vector<std::string>& hosts,
                                                 const common::Clock& clock);

// Writes `dir`/ca.crt, admin.crt, admin.key (CN "admin:<name>", 0600) and config.json for pictl
// pointing at `controller_address`. Refuses to overwrite an existing admin.key (ALREADY_EXISTS).
absl::Status WriteAdminBundle(const CertificateAuthority& ca, const std::string& name,
                              const std::string& dir, const std::string& controller_address,
                              std::chrono::seconds validity);

}  // namespace pi::controlplane::cluster
