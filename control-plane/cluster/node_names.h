#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// The names a node carries (hostname, id, labels, facts) and the checks on them. A node id becomes
// part of an identity ("node:<id>") and of a DNS name in the node's certificate, so ids are kept
// to lowercase letters, digits, '.' and '-'.
namespace pi::controlplane::cluster {

inline constexpr size_t kMaxLabels = 64;
inline constexpr size_t kMaxFacts = 64;
inline constexpr size_t kMaxFactValueLength = 256;

// 1–253 characters of letters, digits, '-', '.', '_', starting and ending with a letter or digit,
// without "..".
absl::Status ValidateHostname(std::string_view hostname);

// The id a new node with this (valid) hostname gets: lowercase, other characters turned into '-',
// at most 60 characters so that a "-NN" suffix still fits an identity.
std::string NodeIdFromHostname(std::string_view hostname);

// The DNS name every node certificate carries and the controller checks when it dials the agent,
// independent of addresses that DHCP may change: "<id>.node.pi-controller".
std::string NodeTlsName(std::string_view node_id);

// Label keys: 1–63 characters of letters, digits, '.', '_', '-', '/', starting with a letter or
// digit. Values: 0–63 characters of letters, digits, '.', '_', '-'. At most kMaxLabels labels.
absl::Status ValidateLabels(const std::map<std::string, std::string>& labels);
// Facts: keys as label keys; values up to kMaxFactValueLength printable characters.
absl::Status ValidateFacts(const std::map<std::string, std::string>& facts);

// "role=worker,zone=rack2": every pair must match. Empty text selects everything.
using LabelSelector = std::map<std::string, std::string>;
absl::StatusOr<LabelSelector> ParseLabelSelector(std::string_view text);
bool MatchesSelector(const std::map<std::string, std::string>& labels,
                     const LabelSelector& selector);

}  // namespace pi::controlplane::cluster
