#include "control-plane/cluster/join_token.h"

#include <catch2/catch.hpp>
#include <cctype>
#include <regex>
#include <set>
#include <string>

namespace pi::controlplane::cluster {
namespace {

const std::string kPin(64, 'a');
const std::string kId = "abcd1234";
const std::string kSecret = "0123456789abcdefghijklmnopqrstuv";
const std::string kGood = "K10" + kPin + "::" + kId + "." + kSecret;

void ExpectRejected(const std::string& text) {
  INFO(text);
  auto parsed = ParseJoinToken(text);
  CHECK(parsed.status().code() == absl::StatusCode::kInvalidArgument);
  // The secret must never be echoed back: messages end up in logs.
  CHECK(std::string(parsed.status().message()).find(kSecret.substr(4, 20)) == std::string::npos);
}

}  // namespace

TEST_CASE("The reference token parses into its parts") {
  auto parsed = ParseJoinToken(kGood);
  REQUIRE(parsed.ok());
  CHECK(parsed->ca_pin == kPin);
  CHECK(parsed->id == kId);
  CHECK(parsed->secret == kSecret);
}

TEST_CASE("A minted token has the k3s shape and parses back") {
  const std::string pin = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  auto minted = MintJoinToken(pin);
  REQUIRE(minted.ok());
  CHECK(std::regex_match(minted->text, std::regex("K10[0-9a-f]{64}::[a-z0-9]{8}\\.[a-z0-9]{32}")));
  auto parsed = ParseJoinToken(minted->text);
  REQUIRE(parsed.ok());
  CHECK(parsed->ca_pin == pin);
  CHECK(parsed->id == minted->id);
  CHECK(minted->secret_hash == HashJoinSecret(parsed->secret));
  CHECK(SecretMatches(parsed->secret, minted->secret_hash));
  // Only the hash is handed out for storage; it must not be the secret itself.
  CHECK(minted->text.find(minted->secret_hash) == std::string::npos);
}

TEST_CASE("Minted tokens differ and use the whole alphabet") {
  std::set<std::string> ids;
  std::set<char> seen;
  for (int i = 0; i < 200; ++i) {
    auto minted = MintJoinToken(kPin);
    REQUIRE(minted.ok());
    ids.insert(minted->id);
    auto parsed = ParseJoinToken(minted->text);
    REQUIRE(parsed.ok());
    seen.insert(parsed->secret.begin(), parsed->secret.end());
  }
  CHECK(ids.size() == 200);
  CHECK(seen.size() == 36);
}

TEST_CASE("MintJoinToken rejects a short pin") {
  CHECK(MintJoinToken(std::string(63, 'a')).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("MintJoinToken rejects an uppercase pin") {
  CHECK(MintJoinToken(std::string(64, 'A')).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ParseJoinToken rejects an empty token") { ExpectRejected(""); }

TEST_CASE("ParseJoinToken rejects a wrong prefix") {
  ExpectRejected("K11" + kPin + "::" + kId + "." + kSecret);
  ExpectRejected("k10" + kPin + "::" + kId + "." + kSecret);
  ExpectRejected(kPin + "::" + kId + "." + kSecret);
}

TEST_CASE("ParseJoinToken rejects a short pin") {
  ExpectRejected("K10" + kPin.substr(1) + "::" + kId + "." + kSecret);
}

TEST_CASE("ParseJoinToken rejects a long pin") {
  ExpectRejected("K10" + kPin + "a::" + kId + "." + kSecret);
}

TEST_CASE("ParseJoinToken rejects an uppercase pin") {
  ExpectRejected("K10" + std::string(64, 'A') + "::" + kId + "." + kSecret);
}

TEST_CASE("ParseJoinToken rejects a pin that is not hex") {
  ExpectRejected("K10" + std::string(63, 'a') + "g::" + kId + "." + kSecret);
}

TEST_CASE("ParseJoinToken rejects a single colon") {
  ExpectRejected("K10" + kPin + ":" + kId + "." + kSecret);
  ExpectRejected("K10" + kPin + ":x" + kId + "." + kSecret);
}

TEST_CASE("ParseJoinToken rejects extra separators") {
  ExpectRejected("K10" + kPin + ":::" + kId + "." + kSecret);
  ExpectRejected("K10" + kPin + "::" + kId + ".." + kSecret);
  ExpectRejected("K10" + kPin + "::" + kId + "." + kSecret + ".");
  ExpectRejected("K10" + kPin + "::" + kId.substr(1) + ".." + kSecret);
  ExpectRejected("K10" + kPin + "::" + kId + "." + kSecret.substr(1) + ":");
}

TEST_CASE("ParseJoinToken rejects a missing id separator") {
  ExpectRejected("K10" + kPin + "::" + kId + "x" + kSecret);
}

TEST_CASE("ParseJoinToken rejects a short or long id") {
  ExpectRejected("K10" + kPin + "::" + kId.substr(1) + "." + kSecret);
  ExpectRejected("K10" + kPin + "::" + kId + "x." + kSecret);
  ExpectRejected("K10" + kPin + "::" + kId.substr(1) + "." + kSecret + "x");
}

TEST_CASE("ParseJoinToken rejects a short or long secret") {
  ExpectRejected("K10" + kPin + "::" + kId + "." + kSecret.substr(1));
  ExpectRejected("K10" + kPin + "::" + kId + "." + kSecret + "x");
}

TEST_CASE("ParseJoinToken rejects uppercase in the id or secret") {
  ExpectRejected("K10" + kPin + "::ABCD1234." + kSecret);
  ExpectRejected("K10" + kPin + "::" + kId + ".0123456789ABCDEFghijklmnopqrstuv");
}

TEST_CASE("ParseJoinToken rejects surrounding whitespace") {
  ExpectRejected(kGood + "\n");
  ExpectRejected(" " + kGood);
}

TEST_CASE("ParseJoinToken rejects symbols in the secret") {
  ExpectRejected("K10" + kPin + "::" + kId + ".0123456789abcdefghijklmnopqrst-_");
}

TEST_CASE("SecretMatches accepts the right secret only") {
  const std::string hash = HashJoinSecret(kSecret);
  CHECK(SecretMatches(kSecret, hash));
  CHECK_FALSE(SecretMatches(kSecret.substr(1) + "x", hash));
  CHECK_FALSE(SecretMatches("", hash));
}

TEST_CASE("SecretMatches refuses a stored hash of the wrong shape") {
  const std::string hash = HashJoinSecret(kSecret);
  CHECK_FALSE(SecretMatches(kSecret, hash.substr(1)));
  CHECK_FALSE(SecretMatches(kSecret, hash + "0"));
  CHECK_FALSE(SecretMatches(kSecret, ""));
  std::string upper = hash;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  CHECK_FALSE(SecretMatches(kSecret, upper));
  // The secret itself is not its hash.
  CHECK_FALSE(SecretMatches(kSecret, kSecret));
}

}  // namespace pi::controlplane::cluster
