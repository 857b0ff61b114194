#include "control-plane/cluster/node_names.h"

#include <fmt/format.h>

#include <algorithm>

namespace pi::controlplane::cluster {
namespace {

constexpr size_t kMaxHostnameLength = 253;
constexpr size_t kMaxLabelLength = 63;
constexpr size_t kMaxIdBaseLength = 60;

bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool AllOf(std::string_view text, std::string_view extra) {
  return std::all_of(text.begin(), text.end(), [extra](char c) {
    return IsAlnum(c) || extra.find(c) != std::string_view::npos;
  });
}

absl::Status ValidateKey(std::string_view what, std::string_view key) {
  if (key.empty() || key.size() > kMaxLabelLength || !IsAlnum(key.front()) || !AllOf(key, "._-/")) {
    return absl::InvalidArgumentError(
        fmt::format("{} key {:?} must be 1-{} characters of letters, digits, '.', '_', '-', '/' "
                    "starting with a letter or digit",
                    what, key, kMaxLabelLength));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateHostname(std::string_view hostname) {
  if (hostname.empty() || hostname.size() > kMaxHostnameLength || !IsAlnum(hostname.front()) ||
      !IsAlnum(hostname.back()) || !AllOf(hostname, "-._") ||
      hostname.find("..") != std::string_view::npos) {
    return absl::InvalidArgumentError(
        fmt::format("hostname {:?} must be 1-{} characters of letters, digits, '-', '.', '_', "
                    "starting and ending with a letter or digit, without \"..\"",
                    hostname, kMaxHostnameLength));
  }
  return absl::OkStatus();
}

std::string NodeIdFromHostname(std::string_view hostname) {
  std::string id;
  for (char c : hostname.substr(0, kMaxIdBaseLength)) {
    if (c >= 'A' && c <= 'Z') {
      id.push_back(static_cast<char>(c - 'A' + 'a'));
    } else if (IsAlnum(c) || c == '.' || c == '-') {
      id.push_back(c);
    } else {
      id.push_back('-');
    }
  }
  return id;
}

std::string NodeTlsName(std::string_view node_id) {
  return fmt::format("{}.node.pi-controller", node_id);
}

absl::Status ValidateLabels(const std::map<std::string, std::string>& labels) {
  if (labels.size() > kMaxLabels) {
    return absl::InvalidArgumentError(
        fmt::format("{} labels given; at most {} are allowed", labels.size(), kMaxLabels));
  }
  for (const auto& [key, value] : labels) {
    if (absl::Status status = ValidateKey("label", key); !status.ok()) return status;
    if (value.size() > kMaxLabelLength || !AllOf(value, "._-")) {
      return absl::InvalidArgumentError(
          fmt::format("label {} value {:?} must be 0-{} characters of letters, digits, '.', '_', "
                      "'-'",
                      key, value, kMaxLabelLength));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateFacts(const std::map<std::string, std::string>& facts) {
  if (facts.size() > kMaxFacts) {
    return absl::InvalidArgumentError(
        fmt::format("{} facts given; at most {} are allowed", facts.size(), kMaxFacts));
  }
  for (const auto& [key, value] : facts) {
    if (absl::Status status = ValidateKey("fact", key); !status.ok()) return status;
    const bool printable = std::all_of(value.begin(), value.end(), [](char c) {
      return static_cast<unsigned char>(c) >= 0x20 && c != 0x7f;
    });
    if (value.size() > kMaxFactValueLength || !printable) {
      return absl::InvalidArgumentError(fmt::format(
          "fact {} value must be at most {} printable characters", key, kMaxFactValueLength));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<LabelSelector> ParseLabelSelector(std::string_view text) {
  LabelSelector selector;
  while (!text.empty()) {
    const size_t comma = text.find(',');
    const std::string_view term = text.substr(0, comma);
    const size_t equals = term.find('=');
    if (equals == std::string_view::npos) {
      return absl::InvalidArgumentError(
          fmt::format("label selector term {:?} is not key=value", term));
    }
    std::string key(term.substr(0, equals));
    std::string value(term.substr(equals + 1));
    if (absl::Status status = ValidateLabels({{key, value}}); !status.ok()) return status;
    if (!selector.emplace(key, value).second) {
      return absl::InvalidArgumentError(fmt::format("label selector names {} more than once", key));
    }
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
    if (text.empty()) return absl::InvalidArgumentError("label selector ends with ','");
  }
  return selector;
}

bool MatchesSelector(const std::map<std::string, std::string>& labels,
                     const LabelSelector& selector) {
  return std::all_of(selector.begin(), selector.end(), [&labels](const auto& wanted) {
    auto found = labels.find(wanted.first);
    return found != labels.end() && found->second == wanted.second;
  });
}

}  // namespace pi::controlplane::cluster
