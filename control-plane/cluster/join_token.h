#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace pi::controlplane::cluster {

// Join tokens as k3s shapes them: "K10<CA pin>::<id>.<secret>". The CA pin (64 lowercase hex,
// SHA-256 of the CA certificate's DER) lets a joining agent check the control plane before it
// sends the secret; the id names the token in listings and revocations; only a SHA-256 of the
// secret is stored.
inline constexpr std::string_view kJoinTokenPrefix = "K10";
inline constexpr size_t kJoinTokenIdLength = 8;
inline constexpr size_t kJoinTokenSecretLength = 32;
inline constexpr size_t kCaPinLength = 64;

struct MintedJoinToken {
  std::string text;  // shown to the admin once
  std::string id;
  std::string secret_hash;  // lowercase hex SHA-256 of the secret; what the store keeps
};

struct JoinToken {
  std::string ca_pin;
  std::string id;
  std::string secret;  // never log or echo it
};

// A new token with a random id and secret from the OpenSSL CSPRNG. INVALID_ARGUMENT when
// `ca_pin` is not 64 lowercase hex characters.
absl::StatusOr<MintedJoinToken> MintJoinToken(std::string_view ca_pin);

// Strict parser: INVALID_ARGUMENT for any deviation from the format; messages never contain the
// secret.
absl::StatusOr<JoinToken> ParseJoinToken(std::string_view text);

// Lowercase hex SHA-256 of a token secret.
std::string HashJoinSecret(std::string_view secret);

// Whether `secret` hashes to `stored_hash`, compared in constant time.
bool SecretMatches(std::string_view secret, std::string_view stored_hash);

}  // namespace pi::controlplane::cluster
