#include "control-plane/release/release_types.h"

#include <fmt/format.h>

#include <array>
#include <utility>

#include "common/text/utf8.h"

namespace pi::controlplane::release {
namespace {

constexpr std::array<std::pair<ReleaseState, std::string_view>, 7> kStateNames = {{
    {ReleaseState::kQueued, "QUEUED"},
    {ReleaseState::kAssigned, "ASSIGNED"},
    {ReleaseState::kRunning, "RUNNING"},
    {ReleaseState::kSucceeded, "SUCCEEDED"},
    {ReleaseState::kFailed, "FAILED"},
    {ReleaseState::kCancelled, "CANCELLED"},
    {ReleaseState::kTimedOut, "TIMED_OUT"},
}};

// Enough of a file name to recognise it in an error message, without echoing control characters
// or an arbitrarily long name back to the caller.
std::string Printable(std::string_view name) {
  constexpr size_t kShown = 80;
  std::string shown;
  for (size_t i = 0; i < name.size() && i < kShown; ++i) {
    const auto byte = static_cast<unsigned char>(name[i]);
    if (byte < 0x20 || byte == 0x7f) {
      shown += fmt::format("\\x{:02x}", byte);
    } else {
      shown += name[i];
    }
  }
  if (name.size() > kShown) shown += "...";
  return pi::common::ToValidUtf8(shown);
}

// Empty when `name` is a safe relative path, else why it is not. The runner writes files under
// its work directory by these names, so nothing may point outside it or be read two ways.
std::string NameProblem(std::string_view name) {
  if (name.empty()) return "is empty";
  if (name.size() > kMaxFileNameBytes) {
    return fmt::format("is {} bytes long; at most {} are allowed", name.size(), kMaxFileNameBytes);
  }
  if (!pi::common::IsValidUtf8(name)) return "is not valid UTF-8";
  for (char c : name) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) return "contains a control character";
    if (c == '\\') return "contains a backslash; use '/' between directories";
  }
  if (name.front() == '/') return "is absolute; names are relative to the release directory";
  size_t start = 0;
  while (true) {
    const size_t end = name.find('/', start);
    const std::string_view component =
        name.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (component.empty()) return "has an empty path component";
    if (component == "." || component == "..") {
      return fmt::format("has a \"{}\" path component", component);
    }
    if (end == std::string_view::npos) return "";
    start = end + 1;
  }
}

absl::Status ValidateKind(std::string_view kind, const std::vector<ReleaseFile>& files,
                          size_t& total_bytes) {
  std::set<std::string_view> seen;
  for (const ReleaseFile& file : files) {
    if (const std::string problem = NameProblem(file.name); !problem.empty()) {
      return absl::InvalidArgumentError(
          fmt::format("{} file name \"{}\" {}", kind, Printable(file.name), problem));
    }
    if (!seen.insert(file.name).second) {
      return absl::InvalidArgumentError(
          fmt::format("{} file \"{}\" is given twice", kind, Printable(file.name)));
    }
    if (file.content.size() > kMaxReleaseFileBytes) {
      return absl::InvalidArgumentError(
          fmt::format("{} file \"{}\" is {} bytes; at most {} are allowed per file", kind,
                      Printable(file.name), file.content.size(), kMaxReleaseFileBytes));
    }
    if (!pi::common::IsValidUtf8(file.content)) {
      return absl::InvalidArgumentError(
          fmt::format("{} file \"{}\" is not valid UTF-8 text", kind, Printable(file.name)));
    }
    total_bytes += file.content.size();
    if (total_bytes > kMaxReleaseTotalBytes) {
      return absl::InvalidArgumentError(
          fmt::format("the files of a release may hold at most {} bytes together; {} file \"{}\" "
                      "goes past that",
                      kMaxReleaseTotalBytes, kind, Printable(file.name)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool IsFinal(ReleaseState state) {
  return state == ReleaseState::kSucceeded || state == ReleaseState::kFailed ||
         state == ReleaseState::kCancelled || state == ReleaseState::kTimedOut;
}

std::string_view StateName(ReleaseState state) {
  for (const auto& [value, name] : kStateNames) {
    if (value == state) return name;
  }
  return "UNKNOWN";
}

std::string DestinationTypeText(const DestinationType& type) {
  return fmt::format("{}/{}@{}", type.organisation, type.name, type.version);
}

DestinationType ProvisionDestinationType() {
  return DestinationType{.organisation = std::string(common::provisioning::kProvisionOrganisation),
                         .name = std::string(common::provisioning::kProvisionName),
                         .version = common::provisioning::kProvisionVersion};
}

absl::Status ValidateFiles(const std::vector<ReleaseFile>& artifact_files,
                           const std::vector<ReleaseFile>& spec_files) {
  if (artifact_files.size() + spec_files.size() > kMaxReleaseFiles) {
    return absl::InvalidArgumentError(
        fmt::format("a release may have at most {} files; {} were given", kMaxReleaseFiles,
                    artifact_files.size() + spec_files.size()));
  }
  size_t total_bytes = 0;
  if (absl::Status s = ValidateKind("artifact", artifact_files, total_bytes); !s.ok()) return s;
  return ValidateKind("spec", spec_files, total_bytes);
}

}  // namespace pi::controlplane::release
