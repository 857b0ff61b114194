#pragma once

// Human-readable renderings of Admin answers. Pure functions of the message and the current wall
// time, so tests pin both.
#include <google/protobuf/message.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "picontroller/v1/admin.pb.h"
#include "picontroller/v1/control_plane.pb.h"

namespace pi::controlplane::pictl {

namespace pb = ::picontroller::v1;
using WallTime = std::chrono::system_clock::time_point;

// "READY"; "UNSPECIFIED" for 0.
std::string StateName(pb::NodeState state);
// "1.5 GiB", "512 B".
std::string FormatBytes(uint64_t bytes);
// "3d4h", "5m12s", "42s": the two largest units.
std::string FormatSpan(std::chrono::nanoseconds span);
// "3s ago", "in 5m"; "never" when the timestamp is unset.
std::string FormatAge(const google::protobuf::Timestamp& timestamp, WallTime now);
// "2026-11-22T07:31:47Z"; "-" when unset.
std::string FormatTimestamp(const google::protobuf::Timestamp& timestamp);
// "role=worker,zone=a" sorted by key; "<none>" when empty.
std::string FormatLabels(const google::protobuf::Map<std::string, std::string>& labels);

// The `nodes list` table: ID HOSTNAME STATE ADDRESS LAST-HEARTBEAT LABELS.
std::string FormatNodeTable(const pb::ListNodesResponse& response, WallTime now);
// `nodes show`: one "Key: value" per line.
std::string FormatNodeDetails(const pb::Node& node, WallTime now);
// The one-line answer of label/drain/cordon/uncordon/remove.
std::string FormatNodeUpdate(const pb::Node& node, std::string_view verb);

std::string FormatMetrics(const pb::SystemMetrics& metrics, WallTime now);
std::string FormatGpio(const pb::GPIOResponse& response, WallTime now);
// What pictl adds on stderr after a command's own output: truncation, timeout, signal.
std::string FormatCommandNotes(const pb::CommandResponse& response);
// The process exit code pictl mirrors: the command's, or 128 + signal.
int CommandExitCode(const pb::CommandResponse& response);

// "2026-11-22T07:31:47Z pi-1 sshd[42]: message" (no newline).
std::string FormatLogEntry(const pb::LogEntry& entry);

// The token, shown once, and how an agent joins with it.
std::string FormatCreatedToken(const pb::CreateJoinTokenResponse& response,
                               const std::string& controller, WallTime now);
std::string FormatTokenTable(const pb::ListJoinTokensResponse& response, WallTime now);
std::string FormatRevokedToken(const pb::JoinTokenInfo& token);

// One line per change (no newline).
std::string FormatClusterChange(const pb::ClusterChange& change);

// `queue stats`: one row per route with depths, the oldest queued item's age and the counters.
std::string FormatQueueStatsTable(const pb::GetQueueStatsResponse& response);
// `queue dead list`: ID RECEIVED DIED ATTEMPTS REASON SIZE HEADERS.
std::string FormatDeadLetterTable(const pb::ListDeadLettersResponse& response, WallTime now);
// "requeued 2 of 3 dead letters of queue github (1 was not a dead letter of it)".
std::string FormatDeadLetterCount(std::string_view verb, int64_t count, int64_t asked,
                                  const std::string& route);
std::string FormatPublished(const pb::PublishResponse& response, const std::string& route);

// ---- releases and provisioning

// "RUNNING"; "UNSPECIFIED" for 0.
std::string ReleaseStateName(pb::ReleaseState state);
// SUCCEEDED, FAILED, CANCELLED or TIMED_OUT.
bool ReleaseEnded(pb::ReleaseState state);
// "picontroller/provision@1".
std::string FormatDestinationType(const pb::DestinationType& type);
// `releases list`: ID STATE MODE TYPE NODE ATTEMPTS CREATED.
std::string FormatReleaseTable(const pb::ListReleasesResponse& response, WallTime now);
// `releases show`: "Key: value" lines, the history, the error and the plan output.
std::string FormatReleaseDetails(const pb::Release& release, WallTime now);
// "release r-1 created: QUEUED" (verb "created", "cancelled").
std::string FormatReleaseUpdate(const pb::Release& release, std::string_view verb);
// A log line as the runner wrote it; stderr lines are prefixed "stderr: " (no newline).
std::string FormatReleaseLogLine(const pb::ReleaseLogLine& line);
// A followed event (no newline): a log line, or "release r-1 RUNNING on runner pi-1".
std::string FormatReleaseEvent(const pb::ReleaseEvent& event);
// `runners`: ID IDENTITY NODE CAPABILITIES ACTIVE CONNECTED LAST-HEARTBEAT.
std::string FormatRunnerTable(const pb::ListRunnersResponse& response, WallTime now);
// The answer of `provision`: its id and a NODE RELEASE table.
std::string FormatProvisioningCreated(const pb::ProvisioningResponse& response,
                                      const pb::ProvisioningRequest& request);
// `provision status`: the request, then NODE RELEASE STATE ERROR, then plan outputs.
std::string FormatProvisioningStatus(const pb::Provisioning& provisioning, WallTime now);
// One progress line of `provision` (no newline): "pi-1  r-1  RUNNING".
std::string FormatProvisionProgress(const pb::Release& release);
// A plan release's output under a heading naming its node; "" for apply releases (whose agents
// report a summary too) and releases without output.
std::string FormatPlanOutput(const pb::Release& release);

// The message as one line of JSON with the proto field names ("last_heartbeat"). With
// `include_defaults`, zero counts and empty strings are printed too rather than left out, so a
// script reading `queued` finds 0 instead of nothing.
std::string ToJsonLine(const google::protobuf::Message& message, bool include_defaults = false);

}  // namespace pi::controlplane::pictl
