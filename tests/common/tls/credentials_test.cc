#include "common/tls/credentials.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>

#include "tests/common/test_dir.h"
#include "tests/common/test_pki.h"

namespace pi::common {
namespace {

// An agent's and an admin's certificates from a fresh CA.
struct Pki : pi::testing::TestPki {
  Pki() {
    Issue("agent", "node:pi-01", "--ip 127.0.0.1");
    Issue("admin", "admin:alice");
  }
};

TEST_CASE("a matching certificate and key load", "[tls]") {
  Pki pki;
  auto pair = LoadKeyPair(pki.File("agent.crt"), pki.File("agent.key"));
  REQUIRE(pair.ok());
  CHECK_THAT(pair->cert_pem, Catch::StartsWith("-----BEGIN CERTIFICATE-----"));
  CHECK(LoadCaBundle(pki.File("ca.crt")).ok());
}

TEST_CASE("a key that belongs to another certificate is refused", "[tls]") {
  Pki pki;
  const auto status = LoadKeyPair(pki.File("agent.crt"), pki.File("admin.key")).status();
  CHECK(status.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(status.message()), Catch::Contains("does not match certificate"));
}

TEST_CASE("missing and malformed PEM files name the file at fault", "[tls]") {
  Pki pki;
  const auto missing = LoadKeyPair(pki.File("nope.crt"), pki.File("agent.key")).status();
  CHECK(missing.code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(missing.message()), Catch::Contains("nope.crt"));

  const auto garbage = pki.dir().Write("garbage.pem", "not a certificate\n");
  CHECK(LoadKeyPair(garbage, pki.File("agent.key")).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(LoadKeyPair(pki.File("agent.crt"), garbage).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(LoadCaBundle(garbage).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("server credentials need a CA unless client certificates are not asked for", "[tls]") {
  Pki pki;
  ServerTlsConfig config{pki.File("agent.crt"), pki.File("agent.key"), "",
                         ClientAuth::kRequireAndVerify};
  CHECK(MakeServerCredentials(config).status().code() == absl::StatusCode::kInvalidArgument);
  config.client_auth = ClientAuth::kNone;
  CHECK(MakeServerCredentials(config).ok());
  config.client_auth = ClientAuth::kRequireAndVerify;
  config.ca_file = pki.File("ca.crt");
  CHECK(MakeServerCredentials(config).ok());
}

TEST_CASE("client credentials load with and without a client certificate", "[tls]") {
  Pki pki;
  CHECK(MakeChannelCredentials({pki.File("ca.crt"), "", ""}).ok());
  CHECK(MakeChannelCredentials({pki.File("ca.crt"), pki.File("admin.crt"), pki.File("admin.key")})
            .ok());
  CHECK(MakeChannelCredentials({pki.File("ca.crt"), pki.File("admin.crt"), ""}).status().code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("client_auth modes parse and only verifying modes trust identities", "[tls]") {
  CHECK(*ParseClientAuth("require_and_verify") == ClientAuth::kRequireAndVerify);
  CHECK(*ParseClientAuth("none") == ClientAuth::kNone);
  CHECK(ParseClientAuth("always").status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(VerifiesClientCertificates(ClientAuth::kRequest));
  CHECK_FALSE(VerifiesClientCertificates(ClientAuth::kRequire));
  CHECK_FALSE(VerifiesClientCertificates(ClientAuth::kNone));
  for (auto mode : {ClientAuth::kNone, ClientAuth::kRequest, ClientAuth::kRequire,
                    ClientAuth::kRequireAndVerify}) {
    CHECK(*ParseClientAuth(ClientAuthName(mode)) == mode);
  }
}

}  // namespace
}  // namespace pi::common
