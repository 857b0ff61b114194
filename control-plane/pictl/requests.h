#pragma once

// Turns command-line arguments into Admin requests. Every function checks its input and returns
// INVALID_ARGUMENT with a message naming the argument at fault.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "picontroller/v1/admin.pb.h"
#include "picontroller/v1/control_plane.pb.h"

namespace pi::controlplane::pictl {

namespace pb = ::picontroller::v1;

// "READY", "ready" or "NODE_STATE_READY".
absl::StatusOr<pb::NodeState> ParseNodeState(const std::string& text);

// `nodes list`: "role=worker,zone=a" (each part k=v with a non-empty key) and state names.
absl::StatusOr<pb::ListNodesRequest> BuildListNodesRequest(const std::string& selector,
                                                           const std::vector<std::string>& states);

pb::NodeRef NodeRefOf(const std::string& node_id);

// `nodes label NODE key=value ... key-`, kubectl style: a trailing '-' removes the label.
absl::StatusOr<pb::LabelNodeRequest> BuildLabelNodeRequest(const std::string& node_id,
                                                           const std::vector<std::string>& changes);

struct GpioOptions {
  std::string chip;
  // An offset ("17") or a kernel line name ("GPIO17").
  std::string line;
  // "read", "write", "configure" or "release".
  std::string action;
  // For write: "0" or "1"; for configure: the optional level of an output.
  std::string value;
  // For write and configure: "" (until release) or a duration such as "30s".
  std::string hold;
  // For configure: "in" / "out" ("input" / "output" too).
  std::string direction;
  // "as-is", "disabled", "pull-up" or "pull-down"; empty keeps the line's setting.
  std::string bias;
  // "push-pull", "open-drain" or "open-source"; empty keeps the line's setting.
  std::string drive;
  bool active_low = false;
};

absl::StatusOr<pb::NodeGPIORequest> BuildGpioRequest(const std::string& node_id,
                                                     const GpioOptions& options);

struct ExecOptions {
  std::vector<std::string> argv;
  // Empty = the agent's default.
  std::string timeout;
  std::string working_directory;
  // "NAME=value" each.
  std::vector<std::string> env;
};

absl::StatusOr<pb::NodeCommandRequest> BuildCommandRequest(const std::string& node_id,
                                                           const ExecOptions& options);

struct LogsOptions {
  std::string source;
  bool follow = false;
  // A duration back from now ("10m"); empty = from the beginning.
  std::string since;
  std::string grep;
  std::string regex;
  std::string unit;
  // 0-7 or a syslog name ("err", "warning", ...); empty = all.
  std::string priority;
  int64_t limit = 0;
};

absl::StatusOr<pb::NodeLogRequest> BuildLogRequest(const std::string& node_id,
                                                   const LogsOptions& options,
                                                   std::chrono::system_clock::time_point now);

struct TokenOptions {
  std::string ttl = "24h";
  int64_t max_uses = 0;
  std::string description;
};

absl::StatusOr<pb::CreateJoinTokenRequest> BuildCreateTokenRequest(const TokenOptions& options);

absl::StatusOr<pb::WatchClusterRequest> BuildWatchRequest(int64_t since_revision);

// ---- queues

// Dead letters per `queue dead list` (the server's cap) and ids per requeue or delete call.
inline constexpr int kMaxDeadLetterLimit = 1000;
inline constexpr int kMaxDeadLetterIds = 1000;

// `queue stats [ROUTE]`: empty = every route.
pb::GetQueueStatsRequest BuildQueueStatsRequest(const std::string& route);

// `queue dead list ROUTE --limit N`: N in 1..kMaxDeadLetterLimit.
absl::StatusOr<pb::ListDeadLettersRequest> BuildListDeadLettersRequest(const std::string& route,
                                                                       int64_t limit);

// `queue dead requeue|delete ROUTE ID...`: 1..kMaxDeadLetterIds non-empty ids; repeats dropped.
absl::StatusOr<pb::DeadLetterIds> BuildDeadLetterIds(const std::string& route,
                                                     const std::vector<std::string>& ids);

struct PublishOptions {
  // Exactly one of the two: the payload as given, or the path of a file holding it.
  std::optional<std::string> data;
  std::optional<std::string> file;
  // "Name=value" each; the value may be empty and may contain '='.
  std::vector<std::string> headers;
};

// `queue publish ROUTE (--data TEXT | --file PATH) [--header K=V ...]`; reads the file.
absl::StatusOr<pb::PublishRequest> BuildPublishRequest(const std::string& route,
                                                       const PublishOptions& options);

// ---- releases and provisioning

// "ORG/NAME@VERSION", e.g. "picontroller/provision@1"; VERSION a positive integer.
absl::StatusOr<pb::DestinationType> ParseDestinationType(const std::string& text);

// Every regular file under `dir` (recursively, symlinks to files followed), named by its path
// relative to `dir` with '/' separators, sorted by name. `flag` names the option in messages.
// INVALID_ARGUMENT for a missing directory, an unreadable file or a file over 1 MiB.
absl::StatusOr<std::vector<pb::ReleaseFileContent>> ReadReleaseFiles(const std::string& dir,
                                                                     std::string_view flag);

struct CreateReleaseOptions {
  std::string type;      // ORG/NAME@VERSION
  std::string dir;       // artifact files
  std::string spec_dir;  // optional: spec files
  std::string node;
  bool plan = false;
  std::string name;
  std::string environment;
  std::vector<std::string> metadata;  // "key=value" each
  int64_t max_attempts = 0;
  std::string timeout;  // empty = the controller's default
};

// `releases create`; reads the files.
absl::StatusOr<pb::CreateReleaseRequest> BuildCreateReleaseRequest(
    const CreateReleaseOptions& options);

// "RUNNING", "running" or "RELEASE_STATE_RUNNING".
absl::StatusOr<pb::ReleaseState> ParseReleaseState(const std::string& text);

// Releases per `releases list` (the server's cap).
inline constexpr int kMaxReleaseListLimit = 1000;

// `releases list [--state S]... [--node ID] [--provisioning ID] [--limit N]`.
absl::StatusOr<pb::ListReleasesRequest> BuildListReleasesRequest(
    const std::vector<std::string>& states, const std::string& node_id,
    const std::string& provisioning_id, int64_t limit);

pb::ReleaseRef ReleaseRefOf(const std::string& id);

struct ProvisionOptions {
  std::string profile;
  // Exactly one target.
  std::string node;
  std::string selector;
  bool all = false;
  std::vector<std::string> parameters;  // "name=value" each
  bool plan = false;
};

// `provision PROFILE (--node ID | --selector S | --all) [--param k=v]... [--plan]`.
absl::StatusOr<pb::ProvisioningRequest> BuildProvisioningRequest(const ProvisionOptions& options);

// The --timeout flag: a positive duration.
absl::StatusOr<std::chrono::nanoseconds> ParseTimeout(const std::string& text);

}  // namespace pi::controlplane::pictl
