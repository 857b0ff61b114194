#pragma once

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace pi::common {

// How a TLS server treats client certificates.
enum class ClientAuth {
  kNone,              // never asks for one
  kRequest,           // asks; a presented certificate must verify against the CA
  kRequire,           // must be presented but is not verified: identities are NOT trusted
  kRequireAndVerify,  // must be presented and verify against the CA (mTLS; the default)
};

absl::StatusOr<ClientAuth> ParseClientAuth(std::string_view text);
std::string_view ClientAuthName(ClientAuth mode);
// Whether a certificate accepted under `mode` has been verified against the CA.
bool VerifiesClientCertificates(ClientAuth mode);

struct ServerTlsConfig {
  std::string cert_file;
  std::string key_file;
  // CA bundle client certificates are verified against; required unless client_auth is kNone.
  std::string ca_file;
  ClientAuth client_auth = ClientAuth::kRequireAndVerify;
};

struct ClientTlsConfig {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
};

// PEM contents of a certificate and its key, checked to belong together.
struct KeyPair {
  std::string cert_pem;
  std::string key_pem;
};

// Reads a certificate and private key, checking both parse and that the key matches the
// certificate. Errors name the file at fault.
absl::StatusOr<KeyPair> LoadKeyPair(const std::string& cert_file, const std::string& key_file);
// Reads a PEM bundle of one or more CA certificates.
absl::StatusOr<std::string> LoadCaBundle(const std::string& ca_file);

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTlsConfig& config);
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ClientTlsConfig& config);

}  // namespace pi::common
