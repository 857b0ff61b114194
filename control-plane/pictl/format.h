#pragma once

// Human-readable renderings of Admin answers. Pure functions of the message and the current wall
// time, so tests pin both.
#include <google/protobuf/message.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "picontroller/v1/admin.pb.h"

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

// The message as one line of JSON with the proto field names ("last_heartbeat"). With
// `include_defaults`, zero counts and empty strings are printed too rather than left out, so a
// script reading `queued` finds 0 instead of nothing.
std::string ToJsonLine(const google::protobuf::Message& message, bool include_defaults = false);

}  // namespace pi::controlplane::pictl
