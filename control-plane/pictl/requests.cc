#include "control-plane/pictl/requests.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <string_view>
#include <system_error>

#include "common/grpc/proto_time.h"
#include "common/system/duration.h"
#include "common/system/files.h"
#include "common/text/utf8.h"

namespace pi::controlplane::pictl {
namespace {

std::string Trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t");
  if (first == std::string_view::npos) return "";
  const auto last = text.find_last_not_of(" \t");
  return std::string(text.substr(first, last - first + 1));
}

std::string Upper(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return text;
}

std::vector<std::string> SplitCommas(const std::string& text) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    parts.push_back(Trim(std::string_view(text).substr(start, comma - start)));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return parts;
}

absl::StatusOr<std::chrono::nanoseconds> ParseNamedDuration(const std::string& text,
                                                            std::string_view flag) {
  auto duration = common::ParseDuration(text);
  if (!duration.ok()) {
    return absl::InvalidArgumentError(
        fmt::format("{} {:?}: {}", flag, text, std::string(duration.status().message())));
  }
  return *duration;
}

// Returns nullopt unless `text` is a decimal number that fits in T.
template <typename T>
std::optional<T> ParseNumber(std::string_view text) {
  T value{};
  const auto* end = text.data() + text.size();
  auto [ptr, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc() || ptr != end) return std::nullopt;
  return value;
}

absl::StatusOr<pb::GPIODirection> ParseDirection(const std::string& text) {
  if (text == "in" || text == "input") return pb::GPIO_DIRECTION_INPUT;
  if (text == "out" || text == "output") return pb::GPIO_DIRECTION_OUTPUT;
  return absl::InvalidArgumentError(fmt::format("--direction {:?}: expected in or out", text));
}

absl::StatusOr<pb::GPIOBias> ParseBias(const std::string& text) {
  if (text == "as-is") return pb::GPIO_BIAS_AS_IS;
  if (text == "disabled") return pb::GPIO_BIAS_DISABLED;
  if (text == "pull-up") return pb::GPIO_BIAS_PULL_UP;
  if (text == "pull-down") return pb::GPIO_BIAS_PULL_DOWN;
  return absl::InvalidArgumentError(
      fmt::format("--bias {:?}: expected as-is, disabled, pull-up or pull-down", text));
}

absl::StatusOr<pb::GPIODrive> ParseDrive(const std::string& text) {
  if (text == "push-pull") return pb::GPIO_DRIVE_PUSH_PULL;
  if (text == "open-drain") return pb::GPIO_DRIVE_OPEN_DRAIN;
  if (text == "open-source") return pb::GPIO_DRIVE_OPEN_SOURCE;
  return absl::InvalidArgumentError(
      fmt::format("--drive {:?}: expected push-pull, open-drain or open-source", text));
}

absl::StatusOr<int> ParseLevel(const std::string& text) {
  if (text == "0") return 0;
  if (text == "1") return 1;
  return absl::InvalidArgumentError(fmt::format("value {:?}: expected 0 or 1", text));
}

absl::StatusOr<int> ParsePriority(const std::string& text) {
  static constexpr std::array<std::string_view, 8> kNames = {"emerg",   "alert",  "crit", "err",
                                                             "warning", "notice", "info", "debug"};
  if (auto number = ParseNumber<int>(text); number && *number >= 0 && *number <= 7) return *number;
  for (size_t i = 0; i < kNames.size(); ++i) {
    if (text == kNames[i]) return static_cast<int>(i);
  }
  return absl::InvalidArgumentError(fmt::format(
      "--priority {:?}: expected 0-7 or emerg, alert, crit, err, warning, notice, info, debug",
      text));
}

// "key=value" pairs of a repeatable flag: non-empty keys without surrounding spaces, each once.
absl::StatusOr<std::map<std::string, std::string>> ParseKeyValues(
    const std::vector<std::string>& pairs, std::string_view flag) {
  std::map<std::string, std::string> out;
  for (const std::string& pair : pairs) {
    const size_t equals = pair.find('=');
    if (equals == std::string::npos) {
      return absl::InvalidArgumentError(fmt::format("{} {:?}: expected key=value", flag, pair));
    }
    const std::string key = pair.substr(0, equals);
    if (Trim(key).empty() || Trim(key) != key) {
      return absl::InvalidArgumentError(fmt::format(
          "{} {:?}: the key must be non-empty, without surrounding spaces", flag, pair));
    }
    if (!out.insert({key, pair.substr(equals + 1)}).second) {
      return absl::InvalidArgumentError(fmt::format("{} {:?} is given twice", flag, key));
    }
  }
  return out;
}

// A release file is sent whole in one message; the controller refuses larger ones.
constexpr size_t kMaxReleaseFileBytes = 1024 * 1024;

}  // namespace

absl::StatusOr<pb::NodeState> ParseNodeState(const std::string& text) {
  std::string name = Upper(Trim(text));
  if (!name.starts_with("NODE_STATE_")) name = "NODE_STATE_" + name;
  pb::NodeState state;
  if (!pb::NodeState_Parse(name, &state) || state == pb::NODE_STATE_UNSPECIFIED) {
    return absl::InvalidArgumentError(fmt::format(
        "--state {:?}: expected REGISTERED, READY, DOWN, DRAINING, CORDONED or REMOVED", text));
  }
  return state;
}

absl::StatusOr<pb::ListNodesRequest> BuildListNodesRequest(const std::string& selector,
                                                           const std::vector<std::string>& states) {
  pb::ListNodesRequest request;
  if (!Trim(selector).empty()) {
    std::vector<std::string> terms;
    for (const auto& term : SplitCommas(selector)) {
      const auto equals = term.find('=');
      if (equals == std::string::npos || Trim(term.substr(0, equals)).empty()) {
        return absl::InvalidArgumentError(
            fmt::format("--selector {:?}: {:?} is not key=value (example: role=worker,zone=rack2)",
                        selector, term));
      }
      terms.push_back(Trim(term.substr(0, equals)) + "=" + Trim(term.substr(equals + 1)));
    }
    request.set_label_selector(fmt::format("{}", fmt::join(terms, ",")));
  }
  for (const auto& text : states) {
    auto state = ParseNodeState(text);
    if (!state.ok()) return state.status();
    request.add_states(*state);
  }
  return request;
}

pb::NodeRef NodeRefOf(const std::string& node_id) {
  pb::NodeRef ref;
  ref.set_id(node_id);
  return ref;
}

absl::StatusOr<pb::LabelNodeRequest> BuildLabelNodeRequest(
    const std::string& node_id, const std::vector<std::string>& changes) {
  if (changes.empty()) {
    return absl::InvalidArgumentError("give at least one key=value to set or key- to remove");
  }
  pb::LabelNodeRequest request;
  *request.mutable_node() = NodeRefOf(node_id);
  std::set<std::string> keys;
  for (const auto& change : changes) {
    const auto equals = change.find('=');
    std::string key;
    if (equals != std::string::npos) {
      key = change.substr(0, equals);
      (*request.mutable_set())[key] = change.substr(equals + 1);
    } else if (change.size() > 1 && change.back() == '-') {
      key = change.substr(0, change.size() - 1);
      request.add_remove(key);
    } else {
      return absl::InvalidArgumentError(
          fmt::format("{:?}: expected key=value to set a label or key- to remove it", change));
    }
    if (key.empty()) {
      return absl::InvalidArgumentError(fmt::format("{:?}: the label key is empty", change));
    }
    if (!keys.insert(key).second) {
      return absl::InvalidArgumentError(fmt::format("label {:?} is given twice", key));
    }
  }
  return request;
}

absl::StatusOr<pb::NodeGPIORequest> BuildGpioRequest(const std::string& node_id,
                                                     const GpioOptions& options) {
  pb::NodeGPIORequest wrapper;
  *wrapper.mutable_node() = NodeRefOf(node_id);
  pb::GPIORequest& request = *wrapper.mutable_request();
  request.set_chip(options.chip);
  if (options.line.empty()) return absl::InvalidArgumentError("the GPIO line is empty");
  if (std::isdigit(static_cast<unsigned char>(options.line.front()))) {
    auto offset = ParseNumber<uint32_t>(options.line);
    if (!offset) {
      return absl::InvalidArgumentError(fmt::format(
          "line {:?}: expected an offset (a number such as 17) or a line name such as GPIO17",
          options.line));
    }
    request.set_offset(*offset);
  } else {
    request.set_line_name(options.line);
  }

  const bool drives = options.action == "write" || options.action == "configure";
  if (!drives && (!options.value.empty() || !options.hold.empty())) {
    return absl::InvalidArgumentError(fmt::format("{} takes no value or --hold", options.action));
  }
  if (options.action != "configure" && (!options.direction.empty() || !options.bias.empty() ||
                                        !options.drive.empty() || options.active_low)) {
    return absl::InvalidArgumentError(
        fmt::format("--direction, --bias, --drive and --active-low belong to configure, not {}",
                    options.action));
  }
  if (options.action == "read") {
    request.set_action(pb::GPIO_ACTION_READ);
  } else if (options.action == "release") {
    request.set_action(pb::GPIO_ACTION_RELEASE);
  } else if (options.action == "write") {
    request.set_action(pb::GPIO_ACTION_WRITE);
    if (options.value.empty()) return absl::InvalidArgumentError("write needs a value: 0 or 1");
  } else if (options.action == "configure") {
    request.set_action(pb::GPIO_ACTION_CONFIGURE);
    if (options.direction.empty()) {
      return absl::InvalidArgumentError("configure needs --direction in or --direction out");
    }
    auto direction = ParseDirection(options.direction);
    if (!direction.ok()) return direction.status();
    request.set_direction(*direction);
    if (!options.value.empty() && *direction != pb::GPIO_DIRECTION_OUTPUT) {
      return absl::InvalidArgumentError(
          "--value sets the level of an output; it needs --direction out");
    }
    if (!options.bias.empty()) {
      auto bias = ParseBias(options.bias);
      if (!bias.ok()) return bias.status();
      request.set_bias(*bias);
    }
    if (!options.drive.empty()) {
      auto drive = ParseDrive(options.drive);
      if (!drive.ok()) return drive.status();
      request.set_drive(*drive);
    }
    if (options.active_low) request.set_active_low(true);
  } else {
    return absl::InvalidArgumentError(fmt::format(
        "GPIO action {:?}: expected read, write, configure or release", options.action));
  }
  if (!options.value.empty()) {
    auto level = ParseLevel(options.value);
    if (!level.ok()) return level.status();
    request.set_value(*level);
  }
  if (!options.hold.empty()) {
    auto hold = ParseNamedDuration(options.hold, "--hold");
    if (!hold.ok()) return hold.status();
    *request.mutable_hold() = common::ToProtoDuration(*hold);
  }
  return wrapper;
}

absl::StatusOr<pb::NodeCommandRequest> BuildCommandRequest(const std::string& node_id,
                                                           const ExecOptions& options) {
  if (options.argv.empty()) {
    return absl::InvalidArgumentError(
        "no command given: pictl exec NODE -- /absolute/path ARGS...");
  }
  if (!options.argv.front().starts_with('/')) {
    return absl::InvalidArgumentError(fmt::format(
        "{:?}: the command must be an absolute path from the agent's exec.allowed_commands "
        "(it runs without a shell)",
        options.argv.front()));
  }
  pb::NodeCommandRequest wrapper;
  *wrapper.mutable_node() = NodeRefOf(node_id);
  pb::CommandRequest& request = *wrapper.mutable_request();
  for (const auto& arg : options.argv) request.add_argv(arg);
  if (!options.timeout.empty()) {
    auto timeout = ParseNamedDuration(options.timeout, "--timeout");
    if (!timeout.ok()) return timeout.status();
    if (timeout->count() == 0) {
      return absl::InvalidArgumentError("--timeout 0: give a positive duration such as 30s");
    }
    *request.mutable_timeout() = common::ToProtoDuration(*timeout);
  }
  if (!options.working_directory.empty() && !options.working_directory.starts_with('/')) {
    return absl::InvalidArgumentError(
        fmt::format("--cwd {:?}: must be an absolute path", options.working_directory));
  }
  request.set_working_directory(options.working_directory);
  for (const auto& pair : options.env) {
    const auto equals = pair.find('=');
    if (equals == std::string::npos || equals == 0) {
      return absl::InvalidArgumentError(fmt::format("--env {:?}: expected NAME=value", pair));
    }
    const std::string name = pair.substr(0, equals);
    if (request.env().contains(name)) {
      return absl::InvalidArgumentError(fmt::format("--env {} is given twice", name));
    }
    (*request.mutable_env())[name] = pair.substr(equals + 1);
  }
  return wrapper;
}

absl::StatusOr<pb::NodeLogRequest> BuildLogRequest(const std::string& node_id,
                                                   const LogsOptions& options,
                                                   std::chrono::system_clock::time_point now) {
  pb::NodeLogRequest wrapper;
  *wrapper.mutable_node() = NodeRefOf(node_id);
  pb::LogFilter& filter = *wrapper.mutable_filter();
  filter.set_source(options.source);
  filter.set_follow(options.follow);
  if (!options.since.empty()) {
    auto since = ParseNamedDuration(options.since, "--since");
    if (!since.ok()) return since.status();
    *filter.mutable_since() = common::ToProtoTimestamp(
        now - std::chrono::duration_cast<std::chrono::system_clock::duration>(*since));
  }
  filter.set_contains(options.grep);
  filter.set_regex(options.regex);
  filter.set_unit(options.unit);
  if (!options.priority.empty()) {
    auto priority = ParsePriority(options.priority);
    if (!priority.ok()) return priority.status();
    filter.set_max_priority(*priority);
  }
  if (options.limit < 0 || options.limit > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        fmt::format("--limit {}: expected 0 (no limit) or a positive number", options.limit));
  }
  filter.set_limit(static_cast<int32_t>(options.limit));
  return wrapper;
}

absl::StatusOr<pb::CreateJoinTokenRequest> BuildCreateTokenRequest(const TokenOptions& options) {
  pb::CreateJoinTokenRequest request;
  request.set_description(options.description);
  auto ttl = ParseNamedDuration(options.ttl, "--ttl");
  if (!ttl.ok()) return ttl.status();
  if (ttl->count() == 0) {
    return absl::InvalidArgumentError("--ttl 0: a token needs a positive lifetime such as 24h");
  }
  *request.mutable_ttl() = common::ToProtoDuration(*ttl);
  if (options.max_uses < 0 || options.max_uses > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        fmt::format("--max-uses {}: expected 0 (unlimited until expiry) or a positive number",
                    options.max_uses));
  }
  request.set_max_uses(static_cast<int32_t>(options.max_uses));
  return request;
}

absl::StatusOr<pb::WatchClusterRequest> BuildWatchRequest(int64_t since_revision) {
  if (since_revision < 0) {
    return absl::InvalidArgumentError(fmt::format(
        "--since {}: expected a revision (0 = start with the current state)", since_revision));
  }
  pb::WatchClusterRequest request;
  request.set_since_revision(since_revision);
  return request;
}

absl::StatusOr<std::chrono::nanoseconds> ParseTimeout(const std::string& text) {
  auto timeout = ParseNamedDuration(text, "--timeout");
  if (!timeout.ok()) return timeout.status();
  if (timeout->count() == 0) {
    return absl::InvalidArgumentError("--timeout 0: give a positive duration such as 10s");
  }
  return *timeout;
}

// ---- queues

namespace {

absl::Status CheckRouteArgument(const std::string& route) {
  if (route.empty()) return absl::InvalidArgumentError("ROUTE must not be empty");
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadPayloadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        fmt::format("--file {:?}: cannot open it: {}", path, std::strerror(errno)));
  }
  std::string payload((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) {
    return absl::InvalidArgumentError(
        fmt::format("--file {:?}: cannot read it: {}", path, std::strerror(errno)));
  }
  return payload;
}

}  // namespace

pb::GetQueueStatsRequest BuildQueueStatsRequest(const std::string& route) {
  pb::GetQueueStatsRequest request;
  request.set_route(route);
  return request;
}

absl::StatusOr<pb::ListDeadLettersRequest> BuildListDeadLettersRequest(const std::string& route,
                                                                       int64_t limit) {
  if (absl::Status valid = CheckRouteArgument(route); !valid.ok()) return valid;
  if (limit < 1 || limit > kMaxDeadLetterLimit) {
    return absl::InvalidArgumentError(
        fmt::format("--limit {}: expected 1..{}", limit, kMaxDeadLetterLimit));
  }
  pb::ListDeadLettersRequest request;
  request.set_route(route);
  request.set_limit(static_cast<int32_t>(limit));
  return request;
}

absl::StatusOr<pb::DeadLetterIds> BuildDeadLetterIds(const std::string& route,
                                                     const std::vector<std::string>& ids) {
  if (absl::Status valid = CheckRouteArgument(route); !valid.ok()) return valid;
  if (ids.empty()) return absl::InvalidArgumentError("give at least one message ID (or --all)");
  pb::DeadLetterIds request;
  request.set_route(route);
  std::set<std::string> seen;
  for (const std::string& id : ids) {
    if (id.empty()) return absl::InvalidArgumentError("a message ID must not be empty");
    if (seen.insert(id).second) request.add_ids(id);
  }
  if (request.ids_size() > kMaxDeadLetterIds) {
    return absl::InvalidArgumentError(
        fmt::format("{} message IDs: at most {} per call", request.ids_size(), kMaxDeadLetterIds));
  }
  return request;
}

absl::StatusOr<pb::PublishRequest> BuildPublishRequest(const std::string& route,
                                                       const PublishOptions& options) {
  if (absl::Status valid = CheckRouteArgument(route); !valid.ok()) return valid;
  if (options.data.has_value() == options.file.has_value()) {
    return absl::InvalidArgumentError("give the payload with exactly one of --data or --file");
  }
  pb::PublishRequest request;
  request.set_route(route);
  for (const std::string& header : options.headers) {
    const size_t equals = header.find('=');
    if (equals == std::string::npos) {
      return absl::InvalidArgumentError(fmt::format("--header {:?}: expected NAME=VALUE", header));
    }
    const std::string name = header.substr(0, equals);
    if (Trim(name).empty() || Trim(name) != name) {
      return absl::InvalidArgumentError(fmt::format(
          "--header {:?}: the name must be non-empty, without surrounding spaces", header));
    }
    if (!request.mutable_headers()->insert({name, header.substr(equals + 1)}).second) {
      return absl::InvalidArgumentError(fmt::format("--header {:?} is given twice", name));
    }
  }
  if (options.data.has_value()) {
    request.set_payload(*options.data);
  } else {
    absl::StatusOr<std::string> payload = ReadPayloadFile(*options.file);
    if (!payload.ok()) return payload.status();
    request.set_payload(*std::move(payload));
  }
  return request;
}

absl::StatusOr<pb::DestinationType> ParseDestinationType(const std::string& text) {
  const size_t slash = text.find('/');
  const size_t at = text.rfind('@');
  const auto bad = [&text] {
    return absl::InvalidArgumentError(fmt::format(
        "--type {:?}: expected ORGANISATION/NAME@VERSION, e.g. picontroller/provision@1", text));
  };
  if (slash == std::string::npos || at == std::string::npos || at < slash) return bad();
  const std::string organisation = text.substr(0, slash);
  const std::string name = text.substr(slash + 1, at - slash - 1);
  const std::optional<uint64_t> version = ParseNumber<uint64_t>(text.substr(at + 1));
  if (organisation.empty() || name.empty() || name.find('/') != std::string::npos ||
      !version.has_value() || *version == 0) {
    return bad();
  }
  pb::DestinationType type;
  type.set_organisation(organisation);
  type.set_name(name);
  type.set_version(*version);
  return type;
}

absl::StatusOr<std::vector<pb::ReleaseFileContent>> ReadReleaseFiles(const std::string& dir,
                                                                     std::string_view flag) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (!fs::is_directory(dir, error)) {
    return absl::InvalidArgumentError(fmt::format("{} {:?} is not a directory", flag, dir));
  }
  std::vector<pb::ReleaseFileContent> files;
  fs::recursive_directory_iterator it(dir, error), end;
  for (; !error && it != end; it.increment(error)) {
    if (!it->is_regular_file(error)) continue;
    const std::string relative = it->path().lexically_relative(dir).generic_string();
    absl::StatusOr<std::string> content =
        common::ReadFileToString(it->path().string(), kMaxReleaseFileBytes);
    if (!content.ok()) {
      return absl::InvalidArgumentError(
          fmt::format("{}: {}", flag, std::string(content.status().message())));
    }
    // Release files travel as protobuf strings, which must be UTF-8.
    if (!common::IsValidUtf8(*content)) {
      return absl::InvalidArgumentError(fmt::format(
          "{}: {} is not UTF-8 text; releases carry text files only", flag, it->path().string()));
    }
    pb::ReleaseFileContent file;
    file.set_name(relative);
    file.set_content(*std::move(content));
    files.push_back(std::move(file));
  }
  if (error) {
    return absl::InvalidArgumentError(
        fmt::format("{} {:?}: cannot read the directory: {}", flag, dir, error.message()));
  }
  std::sort(files.begin(), files.end(),
            [](const auto& a, const auto& b) { return a.name() < b.name(); });
  return files;
}

absl::StatusOr<pb::CreateReleaseRequest> BuildCreateReleaseRequest(
    const CreateReleaseOptions& options) {
  pb::CreateReleaseRequest request;
  absl::StatusOr<pb::DestinationType> type = ParseDestinationType(options.type);
  if (!type.ok()) return type.status();
  *request.mutable_destination_type() = *std::move(type);
  absl::StatusOr<std::map<std::string, std::string>> metadata =
      ParseKeyValues(options.metadata, "--meta");
  if (!metadata.ok()) return metadata.status();
  request.mutable_destination_metadata()->insert(metadata->begin(), metadata->end());
  if (options.max_attempts < 0 || options.max_attempts > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        fmt::format("--max-attempts {}: expected a positive number (0 = the controller's default)",
                    options.max_attempts));
  }
  request.set_max_attempts(static_cast<int32_t>(options.max_attempts));
  if (!options.timeout.empty()) {
    absl::StatusOr<std::chrono::nanoseconds> timeout =
        ParseNamedDuration(options.timeout, "--timeout");
    if (!timeout.ok()) return timeout.status();
    if (*timeout < std::chrono::seconds(1)) {
      return absl::InvalidArgumentError(
          fmt::format("--timeout {:?}: must be at least 1s", options.timeout));
    }
    *request.mutable_timeout() = common::ToProtoDuration(*timeout);
  }
  absl::StatusOr<std::vector<pb::ReleaseFileContent>> artifacts =
      ReadReleaseFiles(options.dir, "--dir");
  if (!artifacts.ok()) return artifacts.status();
  if (artifacts->empty()) {
    return absl::InvalidArgumentError(fmt::format("--dir {:?} holds no files", options.dir));
  }
  for (pb::ReleaseFileContent& file : *artifacts) *request.add_artifact_files() = std::move(file);
  if (!options.spec_dir.empty()) {
    absl::StatusOr<std::vector<pb::ReleaseFileContent>> specs =
        ReadReleaseFiles(options.spec_dir, "--spec-dir");
    if (!specs.ok()) return specs.status();
    for (pb::ReleaseFileContent& file : *specs) *request.add_spec_files() = std::move(file);
  }
  request.set_node_id(options.node);
  request.set_plan(options.plan);
  request.set_destination_name(options.name);
  request.set_environment(options.environment);
  return request;
}

absl::StatusOr<pb::ReleaseState> ParseReleaseState(const std::string& text) {
  std::string name = Upper(Trim(text));
  if (!name.starts_with("RELEASE_STATE_")) name = "RELEASE_STATE_" + name;
  pb::ReleaseState state;
  if (!pb::ReleaseState_Parse(name, &state) || state == pb::RELEASE_STATE_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        fmt::format("--state {:?}: expected QUEUED, ASSIGNED, RUNNING, SUCCEEDED, FAILED, "
                    "CANCELLED or TIMED_OUT",
                    text));
  }
  return state;
}

absl::StatusOr<pb::ListReleasesRequest> BuildListReleasesRequest(
    const std::vector<std::string>& states, const std::string& node_id,
    const std::string& provisioning_id, int64_t limit) {
  if (limit < 1 || limit > kMaxReleaseListLimit) {
    return absl::InvalidArgumentError(
        fmt::format("--limit {}: expected 1..{}", limit, kMaxReleaseListLimit));
  }
  pb::ListReleasesRequest request;
  for (const std::string& text : states) {
    absl::StatusOr<pb::ReleaseState> state = ParseReleaseState(text);
    if (!state.ok()) return state.status();
    request.add_states(*state);
  }
  request.set_node_id(node_id);
  request.set_provisioning_id(provisioning_id);
  request.set_limit(static_cast<int32_t>(limit));
  return request;
}

pb::ReleaseRef ReleaseRefOf(const std::string& id) {
  pb::ReleaseRef ref;
  ref.set_id(id);
  return ref;
}

absl::StatusOr<pb::ProvisioningRequest> BuildProvisioningRequest(const ProvisionOptions& options) {
  if (options.profile.empty()) return absl::InvalidArgumentError("name the profile");
  const int targets =
      (options.node.empty() ? 0 : 1) + (options.selector.empty() ? 0 : 1) + (options.all ? 1 : 0);
  if (targets != 1) {
    return absl::InvalidArgumentError("give exactly one target: --node ID, --selector S or --all");
  }
  pb::ProvisioningRequest request;
  request.set_profile(options.profile);
  if (!options.node.empty()) {
    request.set_node_id(options.node);
  } else if (!options.selector.empty()) {
    request.set_label_selector(options.selector);
  } else {
    request.set_all_nodes(true);
  }
  absl::StatusOr<std::map<std::string, std::string>> parameters =
      ParseKeyValues(options.parameters, "--param");
  if (!parameters.ok()) return parameters.status();
  request.mutable_parameters()->insert(parameters->begin(), parameters->end());
  request.set_mode(options.plan ? pb::ProvisioningRequest::MODE_PLAN
                                : pb::ProvisioningRequest::MODE_APPLY);
  return request;
}

}  // namespace pi::controlplane::pictl
