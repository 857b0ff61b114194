#include "control-plane/pictl/format.h"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/grpc/proto_time.h"

namespace pi::controlplane::pictl {
namespace {

using Rows = std::vector<std::vector<std::string>>;

// Left-aligned columns two spaces apart; the last column is not padded.
std::string FormatTable(const Rows& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += i + 1 < row.size() ? fmt::format("{:<{}}  ", row[i], widths[i]) : row[i];
    }
    line.erase(line.find_last_not_of(' ') + 1);
    out += line + "\n";
  }
  return out;
}

std::string Percent(double value) { return fmt::format("{:.1f}%", value); }

std::string YesNo(bool value) { return value ? "yes" : "no"; }

std::string AgeOrNever(const google::protobuf::Timestamp* timestamp, WallTime now) {
  if (timestamp == nullptr) return "never";
  return fmt::format("{} ({})", FormatTimestamp(*timestamp), FormatAge(*timestamp, now));
}

std::chrono::nanoseconds SpanOf(const google::protobuf::Duration& duration) {
  auto span = common::FromProtoDuration(duration, "duration");
  return span.ok() ? *span : std::chrono::nanoseconds(0);
}

std::string HealthStateName(pb::HealthStatus::State state) {
  switch (state) {
    case pb::HealthStatus::OK:
      return "OK";
    case pb::HealthStatus::DEGRADED:
      return "DEGRADED";
    default:
      return "unknown";
  }
}

// "DOWN (cordoned)" when an admin state waits behind another state.
std::string ShownState(const pb::Node& node) {
  std::string state = StateName(node.state());
  if (node.admin_state() != pb::NODE_STATE_UNSPECIFIED && node.admin_state() != node.state()) {
    std::string admin = StateName(node.admin_state());
    std::transform(admin.begin(), admin.end(), admin.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    state += fmt::format(" ({})", admin);
  }
  return state;
}

std::string TokenStatus(const pb::JoinTokenInfo& token, WallTime now) {
  if (token.has_revoked_at()) return "revoked";
  if (token.has_expires_at()) {
    auto expires = common::FromProtoTimestamp(token.expires_at(), "expires_at");
    if (expires.ok() && *expires <= now) return "expired";
  }
  if (token.max_uses() > 0 && token.uses() >= token.max_uses()) return "used up";
  return "active";
}

std::string Uses(const pb::JoinTokenInfo& token) {
  return token.max_uses() > 0 ? fmt::format("{}/{}", token.uses(), token.max_uses())
                              : fmt::format("{}/unlimited", token.uses());
}

std::string PowerSummary(const pb::SystemMetrics& metrics) {
  if (!metrics.has_power()) return "unknown (no firmware power flags on this machine)";
  const pb::PowerState& power = metrics.power();
  std::vector<std::string> now_flags;
  std::vector<std::string> past_flags;
  const struct {
    bool now;
    bool occurred;
    const char* name;
  } flags[] = {
      {power.under_voltage_now(), power.under_voltage_occurred(), "under-voltage"},
      {power.frequency_capped_now(), power.frequency_capped_occurred(), "frequency capped"},
      {power.throttled_now(), power.throttled_occurred(), "throttled"},
      {power.soft_temperature_limit_now(), power.soft_temperature_limit_occurred(),
       "soft temperature limit"},
  };
  for (const auto& flag : flags) {
    if (flag.now) now_flags.push_back(flag.name);
    if (flag.occurred) past_flags.push_back(flag.name);
  }
  std::string text = now_flags.empty() ? std::string("none now")
                                       : fmt::format("NOW: {}", fmt::join(now_flags, ", "));
  if (!past_flags.empty()) {
    text += fmt::format("; since boot: {}", fmt::join(past_flags, ", "));
  }
  return text;
}

}  // namespace

std::string StateName(pb::NodeState state) {
  std::string name = pb::NodeState_Name(state);
  constexpr std::string_view kPrefix = "NODE_STATE_";
  if (name.starts_with(kPrefix)) name.erase(0, kPrefix.size());
  return name.empty() ? fmt::format("STATE_{}", static_cast<int>(state)) : name;
}

std::string FormatBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  return fmt::format("{:.1f} {}", value, kUnits[unit]);
}

std::string FormatSpan(std::chrono::nanoseconds span) {
  using std::chrono::duration_cast;
  if (span < std::chrono::seconds(1)) {
    return fmt::format("{}ms", duration_cast<std::chrono::milliseconds>(span).count());
  }
  const int64_t total = duration_cast<std::chrono::seconds>(span).count();
  const struct {
    int64_t seconds;
    const char* unit;
  } units[] = {{86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}};
  for (size_t i = 0; i < std::size(units); ++i) {
    if (total < units[i].seconds) continue;
    std::string text = fmt::format("{}{}", total / units[i].seconds, units[i].unit);
    const int64_t rest = total % units[i].seconds;
    if (i + 1 < std::size(units) && rest / units[i + 1].seconds > 0) {
      text += fmt::format("{}{}", rest / units[i + 1].seconds, units[i + 1].unit);
    }
    return text;
  }
  return "0s";
}

std::string FormatAge(const google::protobuf::Timestamp& timestamp, WallTime now) {
  if (timestamp.seconds() == 0 && timestamp.nanos() == 0) return "never";
  auto when = common::FromProtoTimestamp(timestamp, "timestamp");
  if (!when.ok()) return "invalid time";
  if (*when > now) return fmt::format("in {}", FormatSpan(*when - now));
  const auto age = now - *when;
  // Sub-second precision is noise for an age.
  if (age < std::chrono::seconds(1)) return "just now";
  return fmt::format("{} ago", FormatSpan(age));
}

std::string FormatTimestamp(const google::protobuf::Timestamp& timestamp) {
  if (timestamp.seconds() == 0 && timestamp.nanos() == 0) return "-";
  const std::time_t seconds = static_cast<std::time_t>(timestamp.seconds());
  return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(seconds));
}

std::string FormatLabels(const google::protobuf::Map<std::string, std::string>& labels) {
  if (labels.empty()) return "<none>";
  const std::map<std::string, std::string> sorted(labels.begin(), labels.end());
  std::vector<std::string> pairs;
  for (const auto& [key, value] : sorted) pairs.push_back(key + "=" + value);
  return fmt::format("{}", fmt::join(pairs, ","));
}

std::string FormatNodeTable(const pb::ListNodesResponse& response, WallTime now) {
  if (response.nodes().empty()) return "No nodes.\n";
  Rows rows = {{"ID", "HOSTNAME", "STATE", "ADDRESS", "LAST-HEARTBEAT", "LABELS"}};
  for (const auto& node : response.nodes()) {
    rows.push_back({node.id(), node.hostname(), ShownState(node), node.agent_address(),
                    FormatAge(node.last_heartbeat(), now), FormatLabels(node.labels())});
  }
  return FormatTable(rows);
}

std::string FormatNodeDetails(const pb::Node& node, WallTime now) {
  Rows rows = {
      {"ID:", node.id()},
      {"Hostname:", node.hostname()},
      {"State:", StateName(node.state())},
      {"Admin state:", node.admin_state() == pb::NODE_STATE_UNSPECIFIED
                           ? std::string("none")
                           : StateName(node.admin_state())},
      {"Agent address:", node.agent_address()},
      {"Registered:", AgeOrNever(node.has_registered_at() ? &node.registered_at() : nullptr, now)},
      {"Last heartbeat:",
       AgeOrNever(node.has_last_heartbeat() ? &node.last_heartbeat() : nullptr, now)},
      {"Revision:", std::to_string(node.revision())},
      {"Certificate SHA-256:", node.certificate_fingerprint()},
      {"Labels:", FormatLabels(node.labels())},
  };
  if (!node.has_last_health_check()) {
    rows.push_back({"Health check:", "not polled yet"});
  } else if (node.health_check_error().empty()) {
    rows.push_back({"Health check:", "ok, " + AgeOrNever(&node.last_health_check(), now)});
  } else {
    rows.push_back(
        {"Health check:", fmt::format("FAILED {}: {}", AgeOrNever(&node.last_health_check(), now),
                                      node.health_check_error())});
  }
  std::string out = FormatTable(rows);

  out += "Facts:\n";
  if (node.facts().empty()) out += "  <none>\n";
  const std::map<std::string, std::string> facts(node.facts().begin(), node.facts().end());
  Rows fact_rows;
  for (const auto& [key, value] : facts) fact_rows.push_back({"  " + key + ":", value});
  out += FormatTable(fact_rows);

  out += "Last health:\n";
  if (!node.has_last_health()) {
    out += "  <no heartbeat yet>\n";
    return out;
  }
  const pb::HealthSummary& health = node.last_health();
  out += FormatTable({
      {"  Status:", HealthStateName(health.status())},
      {"  CPU:", Percent(health.cpu_usage_percent())},
      {"  Memory:", fmt::format("{} available of {}", FormatBytes(health.memory_available_bytes()),
                                FormatBytes(health.memory_total_bytes()))},
      {"  Load (1m):", fmt::format("{:.2f}", health.load1())},
      {"  Temperature:", health.has_max_temperature_celsius()
                             ? fmt::format("{:.1f} °C", health.max_temperature_celsius())
                             : std::string("n/a")},
      {"  Under-voltage now:", YesNo(health.under_voltage_now())},
      {"  Throttled now:", YesNo(health.throttled_now())},
      {"  Root FS available:", FormatBytes(health.root_filesystem_available_bytes())},
      {"  Uptime:", FormatSpan(SpanOf(health.uptime()))},
      {"  Agent version:", health.agent_version()},
  });
  return out;
}

std::string FormatNodeUpdate(const pb::Node& node, std::string_view verb) {
  return fmt::format("node {} {}: state {}, labels {}\n", node.id(), verb, ShownState(node),
                     FormatLabels(node.labels()));
}

std::string FormatMetrics(const pb::SystemMetrics& metrics, WallTime now) {
  Rows rows;
  rows.push_back({"Host:", metrics.model().empty()
                               ? metrics.hostname()
                               : fmt::format("{} ({})", metrics.hostname(), metrics.model())});
  rows.push_back({"Collected:",
                  AgeOrNever(metrics.has_collected_at() ? &metrics.collected_at() : nullptr, now)});
  if (metrics.has_cpu()) {
    const pb::CpuUsage& total = metrics.cpu().total();
    rows.push_back(
        {"CPU:", fmt::format("{} of {} cores (user {}, system {}, iowait {})",
                             Percent(total.usage_percent()), metrics.cpu().count(),
                             Percent(total.user_percent()), Percent(total.system_percent()),
                             Percent(total.iowait_percent()))});
  }
  if (metrics.has_memory()) {
    const pb::MemoryMetrics& memory = metrics.memory();
    std::string text =
        fmt::format("{} used of {} ({} available)", FormatBytes(memory.used_bytes()),
                    FormatBytes(memory.total_bytes()), FormatBytes(memory.available_bytes()));
    if (memory.swap_total_bytes() > 0) {
      text += fmt::format("; swap {} used of {}", FormatBytes(memory.swap_used_bytes()),
                          FormatBytes(memory.swap_total_bytes()));
    }
    rows.push_back({"Memory:", text});
  }
  if (metrics.has_load()) {
    rows.push_back({"Load:", fmt::format("{:.2f} {:.2f} {:.2f}", metrics.load().load1(),
                                         metrics.load().load5(), metrics.load().load15())});
  }
  if (metrics.has_uptime()) rows.push_back({"Uptime:", FormatSpan(SpanOf(metrics.uptime()))});
  if (metrics.has_processes()) {
    rows.push_back(
        {"Processes:", fmt::format("{} ({} running, {} blocked)", metrics.processes().total(),
                                   metrics.processes().running(), metrics.processes().blocked())});
  }
  rows.push_back({"Throttling:", PowerSummary(metrics)});
  if (!metrics.absent().empty()) {
    rows.push_back({"Unavailable:", fmt::format("{}", fmt::join(metrics.absent(), ", "))});
  }
  std::string out = FormatTable(rows);

  if (!metrics.disks().empty()) {
    out += "Disks:\n";
    Rows disks;
    for (const auto& disk : metrics.disks()) {
      const double used = disk.total_bytes() > 0 ? 100.0 * static_cast<double>(disk.used_bytes()) /
                                                       static_cast<double>(disk.total_bytes())
                                                 : 0.0;
      disks.push_back({"  " + disk.mount_point(), disk.fs_type(), disk.device(),
                       fmt::format("{} of {} used ({:.0f}%), {} available",
                                   FormatBytes(disk.used_bytes()), FormatBytes(disk.total_bytes()),
                                   used, FormatBytes(disk.available_bytes()))});
    }
    out += FormatTable(disks);
  }
  if (!metrics.thermal_zones().empty()) {
    out += "Temperatures:\n";
    Rows zones;
    for (const auto& zone : metrics.thermal_zones()) {
      zones.push_back({fmt::format("  {} ({})", zone.type(), zone.zone()),
                       fmt::format("{:.1f} °C", zone.temperature_celsius())});
    }
    out += FormatTable(zones);
  }
  return out;
}

std::string FormatGpio(const pb::GPIOResponse& response, WallTime now) {
  std::string line = response.line_name().empty()
                         ? fmt::format("line {}", response.offset())
                         : fmt::format("{} (line {})", response.line_name(), response.offset());
  std::string chip = response.chip_name();
  if (!response.chip_label().empty()) chip += fmt::format(" [{}]", response.chip_label());
  std::vector<std::string> parts;
  if (response.has_value()) parts.push_back(fmt::format("value {}", response.value()));
  if (response.direction() == pb::GPIO_DIRECTION_INPUT) parts.push_back("input");
  if (response.direction() == pb::GPIO_DIRECTION_OUTPUT) parts.push_back("output");
  if (response.active_low()) parts.push_back("active-low");
  if (response.bias() == pb::GPIO_BIAS_DISABLED) parts.push_back("bias disabled");
  if (response.bias() == pb::GPIO_BIAS_PULL_UP) parts.push_back("pull-up");
  if (response.bias() == pb::GPIO_BIAS_PULL_DOWN) parts.push_back("pull-down");
  if (response.drive() == pb::GPIO_DRIVE_OPEN_DRAIN) parts.push_back("open-drain");
  if (response.drive() == pb::GPIO_DRIVE_OPEN_SOURCE) parts.push_back("open-source");
  if (response.held()) {
    parts.push_back(response.has_held_until()
                        ? fmt::format("held until {} ({})", FormatTimestamp(response.held_until()),
                                      FormatAge(response.held_until(), now))
                        : std::string("held until released"));
  } else {
    parts.push_back("not held");
  }
  return fmt::format("{} on {}: {}\n", line, chip, fmt::join(parts, ", "));
}

std::string FormatCommandNotes(const pb::CommandResponse& response) {
  std::string notes;
  if (response.stdout_truncated()) notes += "pictl: stdout was truncated by the agent\n";
  if (response.stderr_truncated()) notes += "pictl: stderr was truncated by the agent\n";
  if (response.timed_out()) {
    notes += fmt::format("pictl: the command timed out after {} and was killed\n",
                         FormatSpan(SpanOf(response.duration())));
  } else if (response.signal() != 0) {
    notes += fmt::format("pictl: the command was killed by signal {}\n", response.signal());
  }
  return notes;
}

int CommandExitCode(const pb::CommandResponse& response) {
  if (response.signal() != 0) return 128 + response.signal();
  return response.exit_code();
}

std::string FormatLogEntry(const pb::LogEntry& entry) {
  std::string program = !entry.identifier().empty() ? entry.identifier()
                        : !entry.unit().empty()     ? entry.unit()
                                                    : entry.source();
  if (entry.pid() > 0) program += fmt::format("[{}]", entry.pid());
  std::string line = FormatTimestamp(entry.timestamp());
  if (!entry.hostname().empty()) line += " " + entry.hostname();
  if (!program.empty()) line += " " + program + ":";
  return line + " " + entry.message();
}

std::string FormatCreatedToken(const pb::CreateJoinTokenResponse& response,
                               const std::string& controller, WallTime now) {
  const pb::JoinTokenInfo& info = response.info();
  return fmt::format(
      "Join token {} (shown only once; keep it secret):\n\n  {}\n\n"
      "Expires {} ({}); uses: {}.\n"
      "Join a Pi with:\n\n  pi-agent --join {} --token {}\n",
      info.id(), response.token(), FormatTimestamp(info.expires_at()),
      FormatAge(info.expires_at(), now), Uses(info), controller, response.token());
}

std::string FormatTokenTable(const pb::ListJoinTokensResponse& response, WallTime now) {
  if (response.tokens().empty()) return "No join tokens.\n";
  Rows rows = {{"ID", "STATUS", "EXPIRES", "USES", "CREATED-BY", "DESCRIPTION"}};
  for (const auto& token : response.tokens()) {
    rows.push_back({token.id(), TokenStatus(token, now), FormatAge(token.expires_at(), now),
                    Uses(token), token.created_by(), token.description()});
  }
  return FormatTable(rows);
}

std::string FormatRevokedToken(const pb::JoinTokenInfo& token) {
  return fmt::format("join token {} revoked at {}\n", token.id(),
                     FormatTimestamp(token.revoked_at()));
}

std::string FormatClusterChange(const pb::ClusterChange& change) {
  std::string line =
      fmt::format("{} rev {} ", FormatTimestamp(change.changed_at()), change.revision());
  if (change.operation() == pb::ClusterChange::OPERATION_DELETE) {
    return line + "delete " + change.deleted_id();
  }
  if (change.has_node()) {
    const pb::Node& node = change.node();
    return line + fmt::format("node {} {} {} labels {}", node.id(), ShownState(node),
                              node.agent_address(), FormatLabels(node.labels()));
  }
  if (change.has_join_token()) {
    const pb::JoinTokenInfo& token = change.join_token();
    return line + fmt::format("join-token {} uses {}{}", token.id(), Uses(token),
                              token.has_revoked_at() ? " revoked" : "");
  }
  return line + "unknown object";
}

std::string FormatQueueStatsTable(const pb::GetQueueStatsResponse& response) {
  if (response.routes().empty()) return "No queue routes.\n";
  Rows rows = {{"ROUTE", "QUEUED", "DELAYED", "LEASED", "DEAD", "OLDEST", "ENQUEUED", "DEQUEUED",
                "ACKED", "NACKED", "CONFLICTS", "EXPIRED", "DEAD-LETTERED"}};
  for (const auto& route : response.routes()) {
    rows.push_back(
        {route.route(), std::to_string(route.queued()), std::to_string(route.delayed()),
         std::to_string(route.leased()), std::to_string(route.dead()),
         route.has_oldest_queued_age() ? FormatSpan(SpanOf(route.oldest_queued_age())) : "-",
         std::to_string(route.enqueued()), std::to_string(route.dequeued()),
         std::to_string(route.acked()), std::to_string(route.nacked()),
         std::to_string(route.conflicts()), std::to_string(route.lease_expiries()),
         std::to_string(route.dead_lettered())});
  }
  return FormatTable(rows);
}

std::string FormatDeadLetterTable(const pb::ListDeadLettersResponse& response, WallTime now) {
  if (response.items().empty()) return "No dead letters.\n";
  Rows rows = {{"ID", "RECEIVED", "DIED", "ATTEMPTS", "REASON", "SIZE", "HEADERS"}};
  for (const auto& item : response.items()) {
    rows.push_back({item.id(), FormatAge(item.received_at(), now), FormatAge(item.dead_at(), now),
                    std::to_string(item.attempt()), item.reason().empty() ? "-" : item.reason(),
                    FormatBytes(item.payload().size()),
                    item.headers().empty() ? "-" : FormatLabels(item.headers())});
  }
  return FormatTable(rows);
}

std::string FormatDeadLetterCount(std::string_view verb, int64_t count, int64_t asked,
                                  const std::string& route) {
  std::string line = fmt::format("{} {} of {} dead letter{} of queue {}", verb, count, asked,
                                 asked == 1 ? "" : "s", route);
  if (count < asked) {
    const int64_t missed = asked - count;
    line += fmt::format(" ({} {} of it)", missed,
                        missed == 1 ? "was not a dead letter" : "were not dead letters");
  }
  return line + "\n";
}

std::string FormatPublished(const pb::PublishResponse& response, const std::string& route) {
  return fmt::format("published message {} to queue {}\n", response.id(), route);
}

// ---- releases and provisioning

std::string ReleaseStateName(pb::ReleaseState state) {
  std::string name = pb::ReleaseState_Name(state);
  constexpr std::string_view kPrefix = "RELEASE_STATE_";
  if (name.starts_with(kPrefix)) name.erase(0, kPrefix.size());
  return name.empty() ? fmt::format("STATE_{}", static_cast<int>(state)) : name;
}

bool ReleaseEnded(pb::ReleaseState state) {
  return state == pb::RELEASE_STATE_SUCCEEDED || state == pb::RELEASE_STATE_FAILED ||
         state == pb::RELEASE_STATE_CANCELLED || state == pb::RELEASE_STATE_TIMED_OUT;
}

std::string FormatDestinationType(const pb::DestinationType& type) {
  return fmt::format("{}/{}@{}", type.organisation(), type.name(), type.version());
}

namespace {

std::string ModeName(bool plan) { return plan ? "plan" : "apply"; }

std::string OrDash(const std::string& text) { return text.empty() ? "-" : text; }

// "FAILED: exit 2" / "RUNNING on runner pi-1" / "QUEUED".
std::string ReleaseStatus(const pb::Release& release) {
  std::string status = ReleaseStateName(release.state());
  if ((release.state() == pb::RELEASE_STATE_ASSIGNED ||
       release.state() == pb::RELEASE_STATE_RUNNING) &&
      !release.runner_id().empty()) {
    status += " on runner " + release.runner_id();
  }
  if (!release.error_message().empty()) status += ": " + release.error_message();
  return status;
}

}  // namespace

std::string FormatReleaseTable(const pb::ListReleasesResponse& response, WallTime now) {
  if (response.releases().empty()) return "No releases.\n";
  Rows rows = {{"ID", "STATE", "MODE", "TYPE", "NODE", "ATTEMPTS", "CREATED"}};
  for (const pb::Release& release : response.releases()) {
    rows.push_back({release.id(), ReleaseStateName(release.state()), ModeName(release.plan()),
                    FormatDestinationType(release.destination_type()), OrDash(release.node_id()),
                    fmt::format("{}/{}", release.attempts(), release.max_attempts()),
                    FormatAge(release.created_at(), now)});
  }
  return FormatTable(rows);
}

std::string FormatReleaseDetails(const pb::Release& release, WallTime now) {
  Rows rows = {
      {"ID:", release.id()},
      {"State:", ReleaseStateName(release.state())},
      {"Mode:", ModeName(release.plan())},
      {"Type:", FormatDestinationType(release.destination_type())},
      {"Destination:", OrDash(release.destination_name())},
      {"Environment:", OrDash(release.environment())},
      {"Node:", OrDash(release.node_id())},
      {"Metadata:", FormatLabels(release.destination_metadata())},
      {"Runner:", OrDash(release.runner_id())},
      {"Attempts:", fmt::format("{} of {}", release.attempts(), release.max_attempts())},
      {"Timeout:", FormatSpan(SpanOf(release.timeout()))},
      {"Created:", AgeOrNever(release.has_created_at() ? &release.created_at() : nullptr, now)},
      {"Updated:", AgeOrNever(release.has_updated_at() ? &release.updated_at() : nullptr, now)},
      {"Finished:", release.has_finished_at() ? AgeOrNever(&release.finished_at(), now) : "-"},
      {"Provisioning:", OrDash(release.provisioning_id())},
      {"Artifact files:",
       OrDash(fmt::format("{}", fmt::join(release.artifact_file_names(), ", ")))},
      {"Spec files:", OrDash(fmt::format("{}", fmt::join(release.spec_file_names(), ", ")))},
      {"Log lines:", std::to_string(release.log_lines())},
  };
  if (!release.error_message().empty()) rows.push_back({"Error:", release.error_message()});
  std::string out = FormatTable(rows);
  out += "History:\n";
  Rows history;
  for (const pb::ReleaseTransition& transition : release.history()) {
    history.push_back({"  " + FormatTimestamp(transition.at()),
                       ReleaseStateName(transition.state()),
                       transition.runner_id().empty() ? "" : "runner " + transition.runner_id(),
                       transition.reason()});
  }
  out += FormatTable(history);
  // Agents report a summary in apply mode too.
  if (release.has_plan_output()) {
    out += (release.plan() ? "Plan output:\n" : "Output:\n") + release.plan_output();
  }
  if (release.has_plan_output() && !release.plan_output().ends_with('\n')) out += "\n";
  return out;
}

std::string FormatReleaseUpdate(const pb::Release& release, std::string_view verb) {
  return fmt::format("release {} {}: {}\n", release.id(), verb, ReleaseStatus(release));
}

std::string FormatReleaseLogLine(const pb::ReleaseLogLine& line) {
  return line.channel() == "stderr" ? "stderr: " + line.line() : line.line();
}

std::string FormatReleaseEvent(const pb::ReleaseEvent& event) {
  if (event.has_log()) return FormatReleaseLogLine(event.log());
  return fmt::format("release {} {}", event.release().id(), ReleaseStatus(event.release()));
}

std::string FormatRunnerTable(const pb::ListRunnersResponse& response, WallTime now) {
  if (response.runners().empty()) return "No runners connected.\n";
  Rows rows = {{"ID", "IDENTITY", "NODE", "CAPABILITIES", "ACTIVE", "CONNECTED", "LAST-HEARTBEAT"}};
  for (const pb::RunnerInfo& runner : response.runners()) {
    std::vector<std::string> capabilities;
    for (const pb::DestinationType& type : runner.capabilities()) {
      capabilities.push_back(FormatDestinationType(type));
    }
    rows.push_back({runner.runner_id(), runner.identity(), OrDash(runner.node_id()),
                    fmt::format("{}", fmt::join(capabilities, ",")),
                    fmt::format("{}/{}", runner.active(), runner.max_concurrent()),
                    FormatAge(runner.connected_at(), now),
                    FormatAge(runner.last_heartbeat(), now)});
  }
  return FormatTable(rows);
}

std::string FormatProvisioningCreated(const pb::ProvisioningResponse& response,
                                      const pb::ProvisioningRequest& request) {
  std::string out =
      fmt::format("provisioning {}: {} {} on {} node{}\n", response.provisioning_id(),
                  ModeName(request.mode() == pb::ProvisioningRequest::MODE_PLAN), request.profile(),
                  response.node_ids_size(), response.node_ids_size() == 1 ? "" : "s");
  Rows rows = {{"NODE", "RELEASE"}};
  for (int i = 0; i < response.release_ids_size(); ++i) {
    rows.push_back(
        {i < response.node_ids_size() ? response.node_ids(i) : "-", response.release_ids(i)});
  }
  return out + FormatTable(rows);
}

std::string FormatProvisioningStatus(const pb::Provisioning& provisioning, WallTime now) {
  const std::map<std::string, std::string> parameters(provisioning.parameters().begin(),
                                                      provisioning.parameters().end());
  std::vector<std::string> shown;
  for (const auto& [name, value] : parameters) shown.push_back(name + "=" + value);
  std::string out = FormatTable({
      {"Provisioning:", provisioning.id()},
      {"Profile:", provisioning.profile()},
      {"Mode:", ModeName(provisioning.plan())},
      {"Target:", provisioning.target()},
      {"Parameters:", shown.empty() ? "<none>" : fmt::format("{}", fmt::join(shown, " "))},
      {"Created:",
       AgeOrNever(provisioning.has_created_at() ? &provisioning.created_at() : nullptr, now)},
  });
  std::map<std::string, int> counts;
  for (const pb::Release& release : provisioning.releases()) {
    ++counts[ReleaseStateName(release.state())];
  }
  std::vector<std::string> summary;
  for (const auto& [state, count] : counts) summary.push_back(fmt::format("{} {}", count, state));
  out += fmt::format("Releases: {}\n",
                     summary.empty() ? "none" : fmt::format("{}", fmt::join(summary, ", ")));
  Rows rows = {{"NODE", "RELEASE", "STATE", "ERROR"}};
  for (const pb::Release& release : provisioning.releases()) {
    rows.push_back({OrDash(release.node_id()), release.id(), ReleaseStateName(release.state()),
                    release.error_message()});
  }
  out += FormatTable(rows);
  for (const pb::Release& release : provisioning.releases()) out += FormatPlanOutput(release);
  return out;
}

std::string FormatProvisionProgress(const pb::Release& release) {
  std::string line = fmt::format("{}  {}  {}", OrDash(release.node_id()), release.id(),
                                 ReleaseStateName(release.state()));
  if (!release.error_message().empty()) line += ": " + release.error_message();
  return line;
}

std::string FormatPlanOutput(const pb::Release& release) {
  if (!release.plan() || !release.has_plan_output()) return "";
  std::string out = fmt::format("--- plan for node {} (release {}) ---\n",
                                OrDash(release.node_id()), release.id());
  out += release.plan_output();
  if (!release.plan_output().empty() && !release.plan_output().ends_with('\n')) out += "\n";
  return out;
}

std::string ToJsonLine(const google::protobuf::Message& message, bool include_defaults) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = include_defaults;
  std::string json;
  auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  // Only invalid UTF-8 in a string field can fail; show that instead of nothing.
  if (!status.ok()) {
    return nlohmann::json{{"pictl_error", std::string(status.message())}}.dump();
  }
  return json;
}

}  // namespace pi::controlplane::pictl
