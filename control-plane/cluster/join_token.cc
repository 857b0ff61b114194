#include "control-plane/cluster/join_token.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include <array>

#include "common/text/hex.h"
#include "common/tls/x509.h"

namespace pi::controlplane::cluster {
namespace {

constexpr std::string_view kAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
constexpr std::string_view kSeparator = "::";
constexpr char kIdSeparator = '.';
// Bytes at or above this are rejected so every character of kAlphabet is equally likely.
constexpr unsigned kUnbiasedLimit = 256 - 256 % kAlphabet.size();

bool IsTokenAlphabet(std::string_view text) {
  for (const char c : text) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  }
  return true;
}

absl::Status CheckPin(std::string_view pin) {
  if (pin.size() != kCaPinLength || !common::IsLowerHex(pin)) {
    return absl::InvalidArgumentError(
        fmt::format("CA pin must be {} lowercase hex characters (SHA-256 of the CA certificate)",
                    kCaPinLength));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RandomText(size_t length) {
  std::string out;
  out.reserve(length);
  std::array<unsigned char, 64> bytes{};
  while (out.size() < length) {
    if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
      ERR_clear_error();
      return absl::InternalError("the random number generator failed; cannot mint a join token");
    }
    for (const unsigned char byte : bytes) {
      if (byte >= kUnbiasedLimit) continue;
      out += kAlphabet[byte % kAlphabet.size()];
      if (out.size() == length) break;
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<MintedJoinToken> MintJoinToken(std::string_view ca_pin) {
  if (auto status = CheckPin(ca_pin); !status.ok()) return status;
  auto id = RandomText(kJoinTokenIdLength);
  if (!id.ok()) return id.status();
  auto secret = RandomText(kJoinTokenSecretLength);
  if (!secret.ok()) return secret.status();
  return MintedJoinToken{.text = fmt::format("{}{}{}{}{}{}", kJoinTokenPrefix, ca_pin, kSeparator,
                                             *id, kIdSeparator, *secret),
                         .id = *id,
                         .secret_hash = HashJoinSecret(*secret)};
}

absl::StatusOr<JoinToken> ParseJoinToken(std::string_view text) {
  constexpr size_t kLength = kJoinTokenPrefix.size() + kCaPinLength + kSeparator.size() +
                             kJoinTokenIdLength + 1 + kJoinTokenSecretLength;
  constexpr std::string_view kShape = "K10<64 hex CA pin>::<8-character id>.<32-character secret>";
  if (text.substr(0, kJoinTokenPrefix.size()) != kJoinTokenPrefix) {
    return absl::InvalidArgumentError(
        fmt::format("join token must start with {} (format {})", kJoinTokenPrefix, kShape));
  }
  if (text.size() != kLength) {
    return absl::InvalidArgumentError(fmt::format(
        "join token must be {} characters, got {} (format {})", kLength, text.size(), kShape));
  }
  text.remove_prefix(kJoinTokenPrefix.size());
  const std::string_view pin = text.substr(0, kCaPinLength);
  if (auto status = CheckPin(pin); !status.ok()) {
    return absl::InvalidArgumentError(fmt::format("join token: {}", std::string(status.message())));
  }
  text.remove_prefix(kCaPinLength);
  if (text.substr(0, kSeparator.size()) != kSeparator) {
    return absl::InvalidArgumentError(
        fmt::format("join token must have \"::\" after the CA pin (format {})", kShape));
  }
  text.remove_prefix(kSeparator.size());
  const std::string_view id = text.substr(0, kJoinTokenIdLength);
  const std::string_view secret = text.substr(kJoinTokenIdLength + 1);
  if (text[kJoinTokenIdLength] != kIdSeparator) {
    return absl::InvalidArgumentError(
        fmt::format("join token id must be {} characters followed by '.' (format {})",
                    kJoinTokenIdLength, kShape));
  }
  if (!IsTokenAlphabet(id)) {
    return absl::InvalidArgumentError("join token id may only contain a-z and 0-9");
  }
  if (!IsTokenAlphabet(secret)) {
    return absl::InvalidArgumentError("join token secret may only contain a-z and 0-9");
  }
  return JoinToken{
      .ca_pin = std::string(pin), .id = std::string(id), .secret = std::string(secret)};
}

std::string HashJoinSecret(std::string_view secret) { return common::Sha256Hex(secret); }

bool SecretMatches(std::string_view secret, std::string_view stored_hash) {
  const std::string hash = HashJoinSecret(secret);
  // The length of a well-formed hash is public; only its contents need a constant-time compare.
  if (stored_hash.size() != hash.size()) return false;
  return CRYPTO_memcmp(hash.data(), stored_hash.data(), hash.size()) == 0;
}

}  // namespace pi::controlplane::cluster
