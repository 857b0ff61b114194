#include "common/tls/credentials.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include "common/system/files.h"
#include "common/tls/x509.h"
#include "spdlog/spdlog.h"

namespace pi::common {
namespace {

constexpr size_t kMaxPemBytes = 1024 * 1024;

absl::StatusOr<std::string> ReadPemFile(const std::string& path, std::string_view what) {
  if (path.empty()) return absl::InvalidArgumentError(fmt::format("no {} file configured", what));
  auto text = ReadFileToString(path, kMaxPemBytes);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        fmt::format("{} file: {}", what, std::string(text.status().message())));
  }
  return text;
}

}  // namespace

absl::StatusOr<ClientAuth> ParseClientAuth(std::string_view text) {
  if (text == "none") return ClientAuth::kNone;
  if (text == "request") return ClientAuth::kRequest;
  if (text == "require") return ClientAuth::kRequire;
  if (text == "require_and_verify") return ClientAuth::kRequireAndVerify;
  return absl::InvalidArgumentError(fmt::format(
      "client_auth must be one of none|request|require|require_and_verify, got \"{}\"", text));
}

std::string_view ClientAuthName(ClientAuth mode) {
  switch (mode) {
    case ClientAuth::kNone:
      return "none";
    case ClientAuth::kRequest:
      return "request";
    case ClientAuth::kRequire:
      return "require";
    case ClientAuth::kRequireAndVerify:
      return "require_and_verify";
  }
  return "unknown";
}

bool VerifiesClientCertificates(ClientAuth mode) {
  return mode == ClientAuth::kRequest || mode == ClientAuth::kRequireAndVerify;
}

absl::StatusOr<KeyPair> LoadKeyPair(const std::string& cert_file, const std::string& key_file) {
  auto cert_pem = ReadPemFile(cert_file, "certificate");
  if (!cert_pem.ok()) return cert_pem.status();
  auto key_pem = ReadPemFile(key_file, "private key");
  if (!key_pem.ok()) return key_pem.status();

  auto cert = ParseCertificatePem(*cert_pem);
  if (!cert.ok()) {
    return absl::InvalidArgumentError(
        fmt::format("certificate file {}: {}", cert_file, std::string(cert.status().message())));
  }
  auto key = ParsePrivateKeyPem(*key_pem);
  if (!key.ok()) {
    return absl::InvalidArgumentError(
        fmt::format("private key file {}: {}", key_file, std::string(key.status().message())));
  }
  if (!KeyMatchesCertificate(cert->get(), key->get())) {
    return absl::InvalidArgumentError(
        fmt::format("private key {} does not match certificate {}", key_file, cert_file));
  }
  struct stat info {};
  if (stat(key_file.c_str(), &info) == 0 && (info.st_mode & 0077) != 0) {
    spdlog::warn("private key {} is readable by group or others (mode {:o}); chmod 600 it",
                 key_file, info.st_mode & 0777);
  }
  return KeyPair{*std::move(cert_pem), *std::move(key_pem)};
}

absl::StatusOr<std::string> LoadCaBundle(const std::string& ca_file) {
  auto pem = ReadPemFile(ca_file, "CA bundle");
  if (!pem.ok()) return pem.status();
  if (auto first = ParseCertificatePem(*pem); !first.ok()) {
    return absl::InvalidArgumentError(fmt::format("CA bundle {} holds no PEM certificate: {}",
                                                  ca_file, std::string(first.status().message())));
  }
  return pem;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTlsConfig& config) {
  auto pair = LoadKeyPair(config.cert_file, config.key_file);
  if (!pair.ok()) return pair.status();
  grpc::SslServerCredentialsOptions options;
  if (config.client_auth != ClientAuth::kNone) {
    auto ca = LoadCaBundle(config.ca_file);
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *ca;
  }
  switch (config.client_auth) {
    case ClientAuth::kNone:
      options.client_certificate_request = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
      break;
    case ClientAuth::kRequest:
      options.client_certificate_request = GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
      break;
    case ClientAuth::kRequire:
      options.client_certificate_request =
          GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_BUT_DONT_VERIFY;
      break;
    case ClientAuth::kRequireAndVerify:
      options.client_certificate_request =
          GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
      break;
  }
  options.pem_key_cert_pairs.push_back({pair->key_pem, pair->cert_pem});
  return grpc::SslServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ClientTlsConfig& config) {
  grpc::SslCredentialsOptions options;
  auto ca = LoadCaBundle(config.ca_file);
  if (!ca.ok()) return ca.status();
  options.pem_root_certs = *ca;
  if (!config.cert_file.empty() || !config.key_file.empty()) {
    auto pair = LoadKeyPair(config.cert_file, config.key_file);
    if (!pair.ok()) return pair.status();
    options.pem_cert_chain = pair->cert_pem;
    options.pem_private_key = pair->key_pem;
  }
  return grpc::SslCredentials(options);
}

}  // namespace pi::common
