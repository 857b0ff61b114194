#include "control-plane/cluster/node_names.h"

#include <catch2/catch.hpp>
#include <map>
#include <string>

namespace pi::controlplane::cluster {
namespace {

using Labels = std::map<std::string, std::string>;

// ---- hostnames and ids -------------------------------------------------------------------------

TEST_CASE("ValidateHostname accepts ordinary hostnames") {
  const std::string hostname = GENERATE(as<std::string>{}, "pi", "Pi-Kitchen", "pi_1",
                                        "rack2.lab.example", "9pi", std::string(253, 'a'));
  CHECK(ValidateHostname(hostname).ok());
}

TEST_CASE("ValidateHostname refuses an empty hostname") {
  CHECK(ValidateHostname("").code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ValidateHostname refuses a hostname longer than 253 characters") {
  CHECK(ValidateHostname(std::string(254, 'a')).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ValidateHostname refuses a hostname not starting with a letter or digit") {
  const std::string hostname = GENERATE(as<std::string>{}, "-pi", ".pi", "_pi");
  CHECK(ValidateHostname(hostname).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ValidateHostname refuses characters outside letters, digits, '-', '.', '_'") {
  const std::string hostname = GENERATE(as<std::string>{}, "pi 1", "pi/1", "pi:1", "pi\n",
                                        "pi\xc3\xa9", std::string("pi\0x", 4));
  CHECK(ValidateHostname(hostname).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("NodeIdFromHostname lowercases") {
  CHECK(NodeIdFromHostname("Pi-KITCHEN") == "pi-kitchen");
}

TEST_CASE("NodeIdFromHostname keeps letters, digits, '.' and '-'") {
  CHECK(NodeIdFromHostname("pi-1.rack2") == "pi-1.rack2");
}

TEST_CASE("NodeIdFromHostname turns other characters into '-'") {
  CHECK(NodeIdFromHostname("pi_1") == "pi-1");
  CHECK(NodeIdFromHostname("a_b_C") == "a-b-c");
}

TEST_CASE("NodeIdFromHostname caps the id at 60 characters") {
  CHECK(NodeIdFromHostname(std::string(60, 'A')) == std::string(60, 'a'));
  CHECK(NodeIdFromHostname(std::string(61, 'b')) == std::string(60, 'b'));
  CHECK(NodeIdFromHostname(std::string(253, 'c')).size() == 60);
}

TEST_CASE("NodeIdFromHostname leaves room for a numbered suffix in an identity") {
  // Identity names are at most 63 characters; "-99" is the longest suffix.
  CHECK(NodeIdFromHostname(std::string(253, 'c')).size() + 3 <= 63);
}

TEST_CASE("NodeTlsName") { CHECK(NodeTlsName("pi-1") == "pi-1.node.pi-controller"); }

// ---- labels and facts --------------------------------------------------------------------------

TEST_CASE("ValidateLabels accepts ordinary labels") {
  CHECK(ValidateLabels({}).ok());
  CHECK(ValidateLabels({{"role", "sensor"},
                        {"example.com/zone", "rack_2.a-b"},
                        {"empty", ""},
                        {std::string(63, 'k'), std::string(63, 'v')}})
            .ok());
}

TEST_CASE("ValidateLabels refuses an empty key") {
  CHECK(ValidateLabels({{"", "x"}}).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ValidateLabels refuses a key longer than 63 characters") {
  CHECK(ValidateLabels({{std::string(64, 'k'), "x"}}).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ValidateLabels refuses a key not starting with a letter or digit") {
  const std::string key = GENERATE(as<std::string>{}, "-a", ".a", "_a", "/a");
  CHECK(ValidateLabels({{key, "x"}}).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ValidateLabels refuses a key with other characters") {
  const std::string key = GENERATE(as<std::string>{}, "a b", "a=b", "a,b", "a:b");
  CHECK(ValidateLabels({{key, "x"}}).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ValidateLabels refuses a value longer than 63 characters") {
  CHECK(ValidateLabels({{"k", std::string(64, 'v')}}).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ValidateLabels refuses a value with other characters") {
  const std::string value = GENERATE(as<std::string>{}, "a b", "a/b", "a=b", "a,b");
  CHECK(ValidateLabels({{"k", value}}).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ValidateLabels allows at most kMaxLabels labels") {
  Labels labels;
  for (size_t i = 0; i < kMaxLabels; ++i) labels["k" + std::to_string(i)] = "v";
  CHECK(ValidateLabels(labels).ok());
  labels["one-more"] = "v";
  CHECK(ValidateLabels(labels).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ValidateFacts accepts printable values up to the limit") {
  CHECK(ValidateFacts({{"model", "Raspberry Pi 5 Model B Rev 1.0"},
                       {"kernel", "6.6.31+rpt-rpi-2712 #1 SMP PREEMPT"},
                       {"long", std::string(kMaxFactValueLength, 'x')},
                       {"empty", ""}})
            .ok());
}

TEST_CASE("ValidateFacts refuses a value longer than the limit") {
  CHECK(ValidateFacts({{"k", std::string(kMaxFactValueLength + 1, 'x')}}).code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ValidateFacts refuses control characters in a value") {
  const std::string value =
      GENERATE(as<std::string>{}, "a\nb", "a\tb", "\x7f", std::string("a\0b", 3));
  CHECK(ValidateFacts({{"k", value}}).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ValidateFacts refuses a bad key") {
  const std::string key = GENERATE(as<std::string>{}, "", "-k", "k k", std::string(64, 'k'));
  CHECK(ValidateFacts({{key, "v"}}).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ValidateFacts allows at most kMaxFacts facts") {
  Labels facts;
  for (size_t i = 0; i < kMaxFacts; ++i) facts["k" + std::to_string(i)] = "v";
  CHECK(ValidateFacts(facts).ok());
  facts["one-more"] = "v";
  CHECK(ValidateFacts(facts).code() == absl::StatusCode::kInvalidArgument);
}

// ---- selectors ---------------------------------------------------------------------------------

TEST_CASE("ParseLabelSelector parses key=value pairs") {
  absl::StatusOr<LabelSelector> selector = ParseLabelSelector("role=worker,zone=rack2");
  REQUIRE(selector.ok());
  CHECK(*selector == LabelSelector{{"role", "worker"}, {"zone", "rack2"}});
}

TEST_CASE("ParseLabelSelector accepts an empty value") {
  absl::StatusOr<LabelSelector> selector = ParseLabelSelector("gpu=");
  REQUIRE(selector.ok());
  CHECK(*selector == LabelSelector{{"gpu", ""}});
}

TEST_CASE("ParseLabelSelector of empty text selects everything") {
  absl::StatusOr<LabelSelector> selector = ParseLabelSelector("");
  REQUIRE(selector.ok());
  CHECK(selector->empty());
}

TEST_CASE("ParseLabelSelector refuses a term without '='") {
  const std::string text = GENERATE(as<std::string>{}, "role", "role=a,zone");
  CHECK(ParseLabelSelector(text).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ParseLabelSelector refuses a key named twice") {
  CHECK(ParseLabelSelector("role=a,role=b").status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(ParseLabelSelector("role=a,role=a").status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ParseLabelSelector refuses a trailing comma") {
  CHECK(ParseLabelSelector("role=a,").status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ParseLabelSelector refuses an empty term") {
  const std::string text = GENERATE(as<std::string>{}, ",", ",role=a", "role=a,,zone=b");
  CHECK(ParseLabelSelector(text).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ParseLabelSelector refuses an invalid key or value") {
  const std::string text = GENERATE(as<std::string>{}, "=a", "bad key=a", "role=a b", "role=a=b");
  CHECK(ParseLabelSelector(text).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("MatchesSelector needs every pair to match") {
  const Labels labels = {{"role", "worker"}, {"zone", "rack2"}, {"gpu", ""}};
  CHECK(MatchesSelector(labels, {}));
  CHECK(MatchesSelector({}, {}));
  CHECK(MatchesSelector(labels, {{"role", "worker"}}));
  CHECK(MatchesSelector(labels, {{"role", "worker"}, {"zone", "rack2"}}));
  CHECK(MatchesSelector(labels, {{"gpu", ""}}));
  CHECK_FALSE(MatchesSelector(labels, {{"role", "sensor"}}));
  CHECK_FALSE(MatchesSelector(labels, {{"role", "worker"}, {"zone", "rack3"}}));
  CHECK_FALSE(MatchesSelector(labels, {{"arch", "arm64"}}));
  // A label that is absent does not match an empty value.
  CHECK_FALSE(MatchesSelector(labels, {{"arch", ""}}));
  CHECK_FALSE(MatchesSelector({}, {{"role", "worker"}}));
}

}  // namespace
}  // namespace pi::controlplane::cluster
