#include "common/tls/credentials.h"

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "spdlog/spdlog.h"

namespace pi::common {
namespace {

constexpr size_t kMaxPemBytes = 1024 * 1024;

absl::StatusOr<std::string> ReadPemFile(const std::string& path, std::string_view what) {
  if (path.empty()) return absl::InvalidArgumentError(fmt::format("no {} file configured", what));
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        fmt::format("cannot read {} file {}: {}", what, path, std::strerror(errno)));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  if (text.size() > kMaxPemBytes) {
    return absl::InvalidArgumentError(fmt::format("{} file {} is too large", what, path));
  }
  return text;
}

std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "no PEM data found";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Deleter {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

BioPtr MemoryBio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
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

  auto cert_bio = MemoryBio(*cert_pem);
  X509Ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    return absl::InvalidArgumentError(
        fmt::format("certificate file {} holds no PEM certificate: {}", cert_file, OpenSslError()));
  }
  auto key_bio = MemoryBio(*key_pem);
  PkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    return absl::InvalidArgumentError(fmt::format(
        "private key file {} holds no unencrypted PEM private key: {}", key_file, OpenSslError()));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
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
  auto bio = MemoryBio(*pem);
  int count = 0;
  while (X509Ptr cert{PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)}) ++count;
  ERR_clear_error();
  if (count == 0) {
    return absl::InvalidArgumentError(
        fmt::format("CA bundle {} holds no PEM certificate", ca_file));
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
