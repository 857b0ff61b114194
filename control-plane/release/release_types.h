#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "common/provisioning/profile.h"

// Plain types of the release core (DESIGN 4.2): what admins create, what runners are given and
// what the store keeps. No gRPC here; the adapters convert wire messages to these.
namespace pi::controlplane::release {

using WallTime = std::chrono::system_clock::time_point;

enum class ReleaseState {
  kQueued = 1,
  kAssigned,
  kRunning,
  kSucceeded,
  kFailed,
  kCancelled,
  kTimedOut
};

bool IsFinal(ReleaseState state);
// "QUEUED", "ASSIGNED" …, as the wire enum names them without the prefix.
std::string_view StateName(ReleaseState state);

// A destination type (forest.v1.DestinationCapability): a runner qualifies for a release when
// one of its capabilities equals the release's type.
struct DestinationType {
  std::string organisation;
  std::string name;
  uint64_t version = 0;
  bool operator==(const DestinationType&) const = default;
  auto operator<=>(const DestinationType&) const = default;
};
// "organisation/name@version", e.g. "picontroller/provision@1".
std::string DestinationTypeText(const DestinationType& type);

// The capability every pi-agent advertises and every provisioning release asks for.
DestinationType ProvisionDestinationType();

// Destination metadata key that pins a release to one node's runner; shared with pi-agent.
using common::provisioning::kNodeIdMetadataKey;

enum class FileKind { kArtifact, kSpec };

struct ReleaseFile {
  std::string name;     // relative path, checked by ValidateFiles
  std::string content;  // UTF-8 text (Forest sends it as a proto3 string)
  bool operator==(const ReleaseFile&) const = default;
};

// Limits on the files of one release (both kinds together).
inline constexpr size_t kMaxReleaseFiles = 256;
inline constexpr size_t kMaxReleaseFileBytes = 1024 * 1024;
inline constexpr size_t kMaxReleaseTotalBytes = 3 * 1024 * 1024;
inline constexpr size_t kMaxFileNameBytes = 255;

// INVALID_ARGUMENT naming the file when a name is empty, absolute, has "..", "." or empty
// components, a backslash or a control character, is too long or repeated within its kind; or
// when a content is not UTF-8; or when the limits above are exceeded.
absl::Status ValidateFiles(const std::vector<ReleaseFile>& artifact_files,
                           const std::vector<ReleaseFile>& spec_files);

// forest.v1.ReleaseAnnotationResponse without created_at (the release's own creation time).
struct Annotation {
  std::string slug;
  std::string source_username;
  std::string source_email;
  std::string context_title;
  std::string context_description;
  std::string context_web;
  std::string reference_version;
  std::string reference_commit_sha;
  std::string reference_commit_branch;
  std::string reference_commit_message;
  bool operator==(const Annotation&) const = default;
};

// What an admin (or a provisioning request) asks for.
struct NewRelease {
  std::vector<ReleaseFile> artifact_files;
  std::vector<ReleaseFile> spec_files;
  DestinationType type;
  std::string destination_name;
  std::string environment;
  std::map<std::string, std::string> metadata;
  // Pins the release to this node's runner; also written to metadata[kNodeIdMetadataKey].
  std::string node_id;
  bool plan = false;
  Annotation annotation;
  std::string project_organisation;
  std::string project;
  // How many runners may be given the release; 0 = ReleaseOptions::default_max_attempts.
  int max_attempts = 0;
  // How long it may be ASSIGNED or RUNNING; 0 = ReleaseOptions::default_timeout.
  std::chrono::seconds timeout{0};
  std::string provisioning_id;
  // The admin identity that asked, for the history ("admin:alice").
  std::string created_by;
};

struct Transition {
  ReleaseState state = ReleaseState::kQueued;
  WallTime at;
  std::string reason;
  std::string runner_id;
  bool operator==(const Transition&) const = default;
};

// A release as stored (without its files and logs).
struct Release {
  std::string id;
  ReleaseState state = ReleaseState::kQueued;
  bool plan = false;
  DestinationType type;
  std::string destination_name;
  std::string environment;
  std::map<std::string, std::string> metadata;
  std::string node_id;
  std::string runner_id;
  int attempts = 0;
  int max_attempts = 0;
  std::chrono::seconds timeout{0};
  WallTime created_at;
  WallTime updated_at;
  std::optional<WallTime> finished_at;
  std::string error_message;
  std::optional<std::string> plan_output;
  std::vector<Transition> history;
  std::string provisioning_id;
  std::vector<std::string> artifact_file_names;
  std::vector<std::string> spec_file_names;
  int64_t log_lines = 0;
  Annotation annotation;
  std::string project_organisation;
  std::string project;
  std::string created_by;
  // Lowercase hex SHA-256 of the current release token and its expiry; empty when no token is
  // valid (QUEUED or ended). The token itself is never stored.
  std::string token_sha256;
  std::optional<WallTime> token_expires_at;
  bool operator==(const Release&) const = default;
};

// A release with its files, as inserted.
struct ReleaseWithFiles {
  Release release;
  std::vector<ReleaseFile> artifact_files;
  std::vector<ReleaseFile> spec_files;
};

struct LogLine {
  int64_t sequence = 0;  // 1, 2, 3 … per release
  std::string channel;   // "stdout" or "stderr"
  std::string line;
  uint64_t timestamp_ms = 0;  // as the runner sent it
  bool operator==(const LogLine&) const = default;
};

// A line longer than this is refused (INVALID_ARGUMENT); a release takes at most this many lines
// (RESOURCE_EXHAUSTED beyond).
using common::provisioning::kMaxLogLineBytes;
inline constexpr int64_t kMaxLogLinesPerRelease = 200000;

struct ReleaseFilter {
  std::set<ReleaseState> states;  // empty = any
  std::string node_id;
  std::string provisioning_id;
  int limit = 100;  // newest first
};

struct Provisioning {
  std::string id;
  std::string profile;
  bool plan = false;
  std::map<std::string, std::string> parameters;
  WallTime created_at;
  std::string target;  // "all", "node=<id>" or the label selector
  std::string created_by;
  std::vector<std::string> release_ids;  // in the order of the target nodes
  bool operator==(const Provisioning&) const = default;
};

}  // namespace pi::controlplane::release
