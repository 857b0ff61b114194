#pragma once

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "common/tls/x509.h"
#include "control-plane/cluster/certificate_authority.h"
#include "tests/common/test_dir.h"

// What the Admin service tests share: certificate files issued by the cluster CA.
namespace pi::controlplane::admin::testing {

struct CertFiles {
  std::string cert;
  std::string key;
};

// A certificate for `identity` signed by `ca`, written as `name`.crt and `name`.key in `dir`.
inline CertFiles IssueFiles(const pi::testing::TempDir& dir,
                            const cluster::CertificateAuthority& ca, const std::string& name,
                            const std::string& identity,
                            const std::vector<std::string>& sans = {}) {
  auto issued = ca.Issue(identity, sans, std::chrono::hours(1));
  REQUIRE(issued.ok());
  CertFiles files{dir.Write(name + ".crt", issued->cert_pem),
                  (dir.path() / (name + ".key")).string()};
  REQUIRE(common::WritePrivateKeyFile(files.key, issued->key_pem).ok());
  return files;
}

}  // namespace pi::controlplane::admin::testing
