#include "common/tls/x509.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <array>
#include <cctype>
#include <ctime>
#include <utility>

#include "common/system/files.h"

namespace pi::common {
namespace {

constexpr std::string_view kOrganization = "Pi-Controller";
constexpr size_t kMaxCommonName = 64;  // ub-common-name of RFC 5280
constexpr size_t kMaxDnsName = 253;
constexpr size_t kSerialBytes = 16;

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509ReqDeleter {
  void operator()(X509_REQ* req) const { X509_REQ_free(req); }
};
struct GeneralNamesDeleter {
  void operator()(GENERAL_NAMES* names) const { GENERAL_NAMES_free(names); }
};
struct BignumDeleter {
  void operator()(BIGNUM* bn) const { BN_free(bn); }
};
struct ExtensionsDeleter {
  void operator()(STACK_OF(X509_EXTENSION) * exts) const {
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using X509ReqPtr = std::unique_ptr<X509_REQ, X509ReqDeleter>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, GeneralNamesDeleter>;
using BignumPtr = std::unique_ptr<BIGNUM, BignumDeleter>;
using ExtensionsPtr = std::unique_ptr<STACK_OF(X509_EXTENSION), ExtensionsDeleter>;

// The oldest queued OpenSSL error as text; clears the queue so later calls start clean.
std::string TakeOpenSslError(std::string_view fallback) {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return std::string(fallback);
  std::array<char, 256> buf{};
  ERR_error_string_n(code, buf.data(), buf.size());
  return buf.data();
}

BioPtr ReadBio(std::string_view text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

std::string BioContents(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(size));
}

std::string LowerHex(const unsigned char* data, size_t size) {
  std::string out;
  out.reserve(size * 2);
  for (size_t i = 0; i < size; ++i) out += fmt::format("{:02x}", data[i]);
  return out;
}

absl::Status ValidateCommonName(std::string_view common_name) {
  if (common_name.empty() || common_name.size() > kMaxCommonName) {
    return absl::InvalidArgumentError(fmt::format("common name must be 1-{} characters, got {}",
                                                  kMaxCommonName, common_name.size()));
  }
  for (const char c : common_name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError("common name contains a control character");
    }
  }
  return absl::OkStatus();
}

bool IsDnsName(std::string_view name) {
  if (name.substr(0, 2) == "*.") name.remove_prefix(2);
  if (name.empty() || name.size() > kMaxDnsName) return false;
  if (name.front() == '.' || name.back() == '.' || name.find("..") != std::string_view::npos) {
    return false;
  }
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

// Fills `out` with the binary address when `text` is an IPv4 or IPv6 literal; returns its size
// (4 or 16), or 0 when it is not an address.
size_t ParseIpAddress(const std::string& text, std::array<unsigned char, 16>& out) {
  if (inet_pton(AF_INET, text.c_str(), out.data()) == 1) return 4;
  if (inet_pton(AF_INET6, text.c_str(), out.data()) == 1) return 16;
  return 0;
}

absl::StatusOr<GeneralNamesPtr> MakeGeneralNames(const std::vector<std::string>& sans) {
  if (auto status = ValidateSubjectAltNames(sans); !status.ok()) return status;
  GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
  for (const std::string& san : sans) {
    GENERAL_NAME* name = GENERAL_NAME_new();
    std::array<unsigned char, 16> address{};
    const size_t address_size = ParseIpAddress(san, address);
    ASN1_STRING* value = address_size > 0 ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
    if (address_size > 0) {
      ASN1_STRING_set(value, address.data(), static_cast<int>(address_size));
    } else {
      ASN1_STRING_set(value, san.data(), static_cast<int>(san.size()));
    }
    GENERAL_NAME_set0_value(name, address_size > 0 ? GEN_IPADD : GEN_DNS, value);
    sk_GENERAL_NAME_push(names.get(), name);
  }
  return names;
}

// DNS and IP entries as strings; other kinds (e-mail, URI) are not used by this project and
// are left out.
std::vector<std::string> GeneralNamesToStrings(const GENERAL_NAMES* names) {
  std::vector<std::string> out;
  if (names == nullptr) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type == GEN_DNS) {
      const ASN1_IA5STRING* dns = name->d.dNSName;
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)),
                       static_cast<size_t>(ASN1_STRING_length(dns)));
    } else if (name->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* ip = name->d.iPAddress;
      const int length = ASN1_STRING_length(ip);
      std::array<char, INET6_ADDRSTRLEN> text{};
      if ((length == 4 || length == 16) &&
          inet_ntop(length == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(ip), text.data(),
                    text.size()) != nullptr) {
        out.emplace_back(text.data());
      }
    }
  }
  return out;
}

std::string CommonNameOf(const X509_NAME* subject) {
  const int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index < 0) return "";
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
  unsigned char* utf8 = nullptr;
  const int length = ASN1_STRING_to_UTF8(&utf8, data);
  if (length < 0) {
    ERR_clear_error();
    return "";
  }
  std::string out(reinterpret_cast<char*>(utf8), static_cast<size_t>(length));
  OPENSSL_free(utf8);
  return out;
}

absl::Status SetSubject(X509_NAME* name, std::string_view common_name) {
  const std::string cn(common_name);
  if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(kOrganization.data()),
                                 static_cast<int>(kOrganization.size()), -1, 0) != 1 ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(cn.data()),
                                 static_cast<int>(cn.size()), -1, 0) != 1) {
    return absl::InternalError(
        fmt::format("cannot set subject: {}", TakeOpenSslError("unknown error")));
  }
  return absl::OkStatus();
}

std::chrono::system_clock::time_point ToTimePoint(const ASN1_TIME* time) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(time, &tm) != 1) return {};
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

// Ed25519/Ed448 sign the message itself; everything else signs a SHA-256 digest.
const EVP_MD* DigestFor(EVP_PKEY* key) {
  const int id = EVP_PKEY_get_base_id(key);
  return id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448 ? nullptr : EVP_sha256();
}

std::string DescribeKey(EVP_PKEY* key, KeyType type) {
  if (type == KeyType::kEc) {
    std::array<char, 64> group{};
    size_t length = 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group.data(), group.size(),
                                       &length) == 1) {
      return fmt::format("EC {}", group.data());
    }
    ERR_clear_error();
    return "EC";
  }
  if (type == KeyType::kRsa) return fmt::format("RSA {}", EVP_PKEY_get_bits(key));
  const char* name = EVP_PKEY_get0_type_name(key);
  return name != nullptr ? name : "unknown key type";
}

absl::Status AddExtension(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, ctx, nid, value);
  if (ext == nullptr) {
    return absl::InternalError(fmt::format("cannot build {} extension: {}", OBJ_nid2sn(nid),
                                           TakeOpenSslError("unknown error")));
  }
  const int added = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (added != 1) {
    return absl::InternalError(fmt::format("cannot add {} extension: {}", OBJ_nid2sn(nid),
                                           TakeOpenSslError("unknown error")));
  }
  return absl::OkStatus();
}

absl::Status SetRandomSerial(X509* cert) {
  std::array<unsigned char, kSerialBytes> bytes{};
  BignumPtr serial;
  // A zero serial is not allowed (RFC 5280 4.1.2.2); with 128 random bits this loop runs once.
  while (!serial || BN_is_zero(serial.get())) {
    if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
      return absl::InternalError(
          fmt::format("random serial: {}", TakeOpenSslError("RAND_bytes failed")));
    }
    serial.reset(BN_bin2bn(bytes.data(), static_cast<int>(bytes.size()), nullptr));
    if (!serial) return absl::InternalError("cannot allocate a serial number");
  }
  if (BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert)) == nullptr) {
    return absl::InternalError(
        fmt::format("cannot set serial: {}", TakeOpenSslError("unknown error")));
  }
  return absl::OkStatus();
}

}  // namespace

void EvpPkeyDeleter::operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
void X509Deleter::operator()(X509* cert) const { X509_free(cert); }

absl::Status ValidateSubjectAltNames(const std::vector<std::string>& sans) {
  for (const std::string& san : sans) {
    std::array<unsigned char, 16> address{};
    if (ParseIpAddress(san, address) == 0 && !IsDnsName(san)) {
      return absl::InvalidArgumentError(fmt::format(
          "subject alternative name \"{}\" is neither an IP address nor a DNS name", san));
    }
  }
  return absl::OkStatus();
}

std::string Sha256Hex(std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  EVP_Digest(data.data(), data.size(), digest.data(), &size, EVP_sha256(), nullptr);
  return LowerHex(digest.data(), size);
}

absl::StatusOr<std::string> GenerateEcPrivateKeyPem() {
  EvpPkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) {
    return absl::InternalError(
        fmt::format("cannot generate an EC P-256 key: {}", TakeOpenSslError("unknown error")));
  }
  BioPtr out(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PrivateKey(out.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return absl::InternalError(
        fmt::format("cannot encode private key: {}", TakeOpenSslError("unknown error")));
  }
  return BioContents(out.get());
}

absl::StatusOr<EvpPkeyPtr> ParsePrivateKeyPem(std::string_view pem) {
  auto bio = ReadBio(pem);
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    return absl::InvalidArgumentError(fmt::format("not an unencrypted PEM private key: {}",
                                                  TakeOpenSslError("no PEM private key found")));
  }
  return key;
}

absl::StatusOr<X509Ptr> ParseCertificatePem(std::string_view pem) {
  auto bio = ReadBio(pem);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    return absl::InvalidArgumentError(
        fmt::format("not a PEM certificate: {}", TakeOpenSslError("no PEM certificate found")));
  }
  return cert;
}

absl::StatusOr<std::string> CreateCsr(std::string_view key_pem, std::string_view common_name,
                                      const std::vector<std::string>& sans) {
  if (auto status = ValidateCommonName(common_name); !status.ok()) return status;
  auto key = ParsePrivateKeyPem(key_pem);
  if (!key.ok()) return key.status();
  X509ReqPtr req(X509_REQ_new());
  if (X509_REQ_set_version(req.get(), X509_REQ_VERSION_1) != 1 ||
      X509_REQ_set_pubkey(req.get(), key->get()) != 1) {
    return absl::InternalError(
        fmt::format("cannot build CSR: {}", TakeOpenSslError("unknown error")));
  }
  if (auto status = SetSubject(X509_REQ_get_subject_name(req.get()), common_name); !status.ok()) {
    return status;
  }
  if (!sans.empty()) {
    auto names = MakeGeneralNames(sans);
    if (!names.ok()) return names.status();
    ExtensionsPtr exts(sk_X509_EXTENSION_new_null());
    X509_EXTENSION* ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, names->get());
    if (ext == nullptr || sk_X509_EXTENSION_push(exts.get(), ext) == 0 ||
        X509_REQ_add_extensions(req.get(), exts.get()) != 1) {
      return absl::InternalError(fmt::format("cannot add subject alternative names to CSR: {}",
                                             TakeOpenSslError("unknown error")));
    }
  }
  if (X509_REQ_sign(req.get(), key->get(), DigestFor(key->get())) <= 0) {
    return absl::InternalError(
        fmt::format("cannot sign CSR: {}", TakeOpenSslError("unknown error")));
  }
  BioPtr out(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_X509_REQ(out.get(), req.get()) != 1) {
    return absl::InternalError(
        fmt::format("cannot encode CSR: {}", TakeOpenSslError("unknown error")));
  }
  return BioContents(out.get());
}

absl::StatusOr<CsrInfo> ParseCsr(std::string_view csr_pem) {
  auto bio = ReadBio(csr_pem);
  X509ReqPtr req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (!req) {
    return absl::InvalidArgumentError(fmt::format("not a PEM certificate signing request: {}",
                                                  TakeOpenSslError("no PEM CSR found")));
  }
  CsrInfo info;
  info.public_key.reset(X509_REQ_get_pubkey(req.get()));
  if (!info.public_key) {
    return absl::InvalidArgumentError(
        fmt::format("CSR carries no usable public key: {}", TakeOpenSslError("unknown key")));
  }
  if (X509_REQ_verify(req.get(), info.public_key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "CSR signature does not verify with its public key; the requester must sign it with the "
        "private key it asks a certificate for");
  }
  info.common_name = CommonNameOf(X509_REQ_get_subject_name(req.get()));
  ExtensionsPtr exts(X509_REQ_get_extensions(req.get()));
  if (exts) {
    const int index = X509v3_get_ext_by_NID(exts.get(), NID_subject_alt_name, -1);
    if (index >= 0) {
      GeneralNamesPtr names(
          static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(sk_X509_EXTENSION_value(exts.get(), index))));
      info.sans = GeneralNamesToStrings(names.get());
    }
  }
  ERR_clear_error();
  switch (EVP_PKEY_get_base_id(info.public_key.get())) {
    case EVP_PKEY_EC:
      info.key_type = KeyType::kEc;
      break;
    case EVP_PKEY_RSA:
      info.key_type = KeyType::kRsa;
      break;
    default:
      info.key_type = KeyType::kOther;
  }
  info.key_bits = EVP_PKEY_get_bits(info.public_key.get());
  info.key_name = DescribeKey(info.public_key.get(), info.key_type);
  return info;
}

absl::StatusOr<CertificateInfo> ParseCertificate(std::string_view cert_pem) {
  auto cert = ParseCertificatePem(cert_pem);
  if (!cert.ok()) return cert.status();
  X509* x = cert->get();
  CertificateInfo info;
  info.common_name = CommonNameOf(X509_get_subject_name(x));
  GeneralNamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr)));
  info.sans = GeneralNamesToStrings(names.get());
  BignumPtr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), nullptr));
  if (serial) {
    char* hex = BN_bn2hex(serial.get());
    info.serial_hex = hex;
    OPENSSL_free(hex);
    for (char& c : info.serial_hex) c = static_cast<char>(std::tolower(c));
  }
  info.not_before = ToTimePoint(X509_get0_notBefore(x));
  info.not_after = ToTimePoint(X509_get0_notAfter(x));
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  X509_digest(x, EVP_sha256(), digest.data(), &size);
  info.sha256_fingerprint = LowerHex(digest.data(), size);
  info.is_ca = (X509_get_extension_flags(x) & EXFLAG_CA) != 0;
  ERR_clear_error();
  return info;
}

absl::StatusOr<std::string> CaPin(std::string_view cert_pem) {
  auto info = ParseCertificate(cert_pem);
  if (!info.ok()) return info.status();
  if (!info->is_ca) {
    return absl::InvalidArgumentError(
        fmt::format("certificate \"{}\" is not a CA certificate; a join token pins the cluster CA",
                    info->common_name));
  }
  return info->sha256_fingerprint;
}

absl::StatusOr<std::string> SignCertificate(const CertificateSpec& spec, EVP_PKEY* subject_key,
                                            X509* issuer, EVP_PKEY* issuer_key) {
  if (auto status = ValidateCommonName(spec.common_name); !status.ok()) return status;
  if (spec.not_after <= spec.not_before) {
    return absl::InvalidArgumentError("certificate must end after it starts");
  }
  if (subject_key == nullptr || issuer_key == nullptr) {
    return absl::InvalidArgumentError("subject and issuer keys are required");
  }
  if (issuer != nullptr && !KeyMatchesCertificate(issuer, issuer_key)) {
    return absl::InvalidArgumentError("issuer key does not belong to the issuer certificate");
  }
  X509Ptr cert(X509_new());
  X509* x = cert.get();
  if (X509_set_version(x, X509_VERSION_3) != 1 || X509_set_pubkey(x, subject_key) != 1 ||
      ASN1_TIME_set(X509_getm_notBefore(x),
                    std::chrono::system_clock::to_time_t(spec.not_before)) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(x), std::chrono::system_clock::to_time_t(spec.not_after)) ==
          nullptr) {
    return absl::InternalError(
        fmt::format("cannot build certificate: {}", TakeOpenSslError("unknown error")));
  }
  if (auto status = SetRandomSerial(x); !status.ok()) return status;
  if (auto status = SetSubject(X509_get_subject_name(x), spec.common_name); !status.ok()) {
    return status;
  }
  X509* signer = issuer != nullptr ? issuer : x;
  if (X509_set_issuer_name(x, X509_get_subject_name(signer)) != 1) {
    return absl::InternalError(
        fmt::format("cannot set issuer: {}", TakeOpenSslError("unknown error")));
  }

  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, signer, x, nullptr, nullptr, 0);
  std::vector<std::pair<int, const char*>> extensions;
  if (spec.is_ca) {
    extensions = {{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                  {NID_key_usage, "critical,keyCertSign,cRLSign"},
                  {NID_subject_key_identifier, "hash"}};
  } else {
    extensions = {{NID_basic_constraints, "critical,CA:FALSE"},
                  {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
                  {NID_ext_key_usage, "serverAuth,clientAuth"},
                  {NID_subject_key_identifier, "hash"}};
  }
  // A self-signed certificate needs no authority key identifier (RFC 5280 4.2.1.1).
  if (issuer != nullptr) extensions.emplace_back(NID_authority_key_identifier, "keyid:always");
  for (const auto& [nid, value] : extensions) {
    if (auto status = AddExtension(x, &ctx, nid, value); !status.ok()) return status;
  }
  if (!spec.sans.empty()) {
    auto names = MakeGeneralNames(spec.sans);
    if (!names.ok()) return names.status();
    if (X509_add1_ext_i2d(x, NID_subject_alt_name, names->get(), 0, X509V3_ADD_DEFAULT) != 1) {
      return absl::InternalError(fmt::format("cannot add subject alternative names: {}",
                                             TakeOpenSslError("unknown error")));
    }
  }
  if (X509_sign(x, issuer_key, DigestFor(issuer_key)) <= 0) {
    return absl::InternalError(
        fmt::format("cannot sign certificate: {}", TakeOpenSslError("unknown error")));
  }
  BioPtr out(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_X509(out.get(), x) != 1) {
    return absl::InternalError(
        fmt::format("cannot encode certificate: {}", TakeOpenSslError("unknown error")));
  }
  return BioContents(out.get());
}

bool KeyMatchesCertificate(X509* cert, EVP_PKEY* key) {
  const bool matches = X509_check_private_key(cert, key) == 1;
  ERR_clear_error();
  return matches;
}

absl::Status WritePrivateKeyFile(const std::string& path, std::string_view key_pem) {
  return WriteFileAtomically(path, key_pem, 0600);
}

}  // namespace pi::common
