#include "node-agent/agent_service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <condition_variable>

#include "common/grpc/proto_time.h"
#include "common/grpc/status.h"
#include "common/tls/peer_identity.h"

namespace pi::agent {
namespace {

namespace pb = picontroller::v1;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

// Longer holds are refused rather than risk overflowing "now + hold"; 0 means "until RELEASE".
constexpr milliseconds kMaxHold = std::chrono::hours(24 * 366);

void SetTimestamp(std::chrono::system_clock::time_point when, google::protobuf::Timestamp* out) {
  *out = common::ToProtoTimestamp(when);
}

// Rounds away from zero so that a tiny negative duration stays negative (and is refused) and a
// tiny positive one does not become "unset".
absl::StatusOr<milliseconds> ToMilliseconds(const google::protobuf::Duration& duration,
                                            std::string_view field) {
  auto nanos = common::FromProtoDuration(duration, field);
  if (!nanos.ok()) return nanos.status();
  if (*nanos == nanoseconds::max() || *nanos == nanoseconds::min()) {
    return absl::InvalidArgumentError(fmt::format("{} is out of range", field));
  }
  return *nanos < nanoseconds(0) ? std::chrono::floor<milliseconds>(*nanos)
                                 : std::chrono::ceil<milliseconds>(*nanos);
}

// ---- GetSystemMetrics ---------------------------------------------------------------------

void ToProto(const metrics::CpuPercentages& in, pb::CpuUsage* out) {
  out->set_core(in.cpu);
  out->set_usage_percent(in.usage);
  out->set_user_percent(in.user);
  out->set_system_percent(in.system);
  out->set_idle_percent(in.idle);
  out->set_iowait_percent(in.iowait);
}

void ToProto(const metrics::SystemMetrics& in, pb::SystemMetrics* out) {
  SetTimestamp(in.collected_at, out->mutable_collected_at());
  auto absent = [out](const char* part) { out->add_absent(part); };

  if (in.cpu_usage) {
    auto* cpu = out->mutable_cpu();
    cpu->set_count(static_cast<uint32_t>(in.cpu_usage->cores.size()));
    ToProto(in.cpu_usage->total, cpu->mutable_total());
    for (const auto& core : in.cpu_usage->cores) ToProto(core, cpu->add_cores());
  } else {
    absent("cpu");
  }
  if (in.memory) {
    auto* memory = out->mutable_memory();
    memory->set_total_bytes(in.memory->total_bytes);
    memory->set_available_bytes(in.memory->available_bytes);
    memory->set_used_bytes(in.memory->used_bytes());
    memory->set_free_bytes(in.memory->free_bytes);
    memory->set_cached_bytes(in.memory->cached_bytes);
    memory->set_buffers_bytes(in.memory->buffers_bytes);
    memory->set_swap_total_bytes(in.memory->swap_total_bytes);
    memory->set_swap_free_bytes(in.memory->swap_free_bytes);
    memory->set_swap_used_bytes(in.memory->swap_used_bytes());
  } else {
    absent("memory");
  }
  if (in.load) {
    out->mutable_load()->set_load1(in.load->load1);
    out->mutable_load()->set_load5(in.load->load5);
    out->mutable_load()->set_load15(in.load->load15);
  } else {
    absent("load");
  }
  if (in.uptime) {
    *out->mutable_uptime() =
        common::ToProtoDuration(nanoseconds(static_cast<int64_t>(in.uptime->uptime_seconds * 1e9)));
  } else {
    absent("uptime");
  }
  if (in.filesystems) {
    for (const auto& fs : *in.filesystems) {
      if (!fs.error.empty()) continue;
      auto* disk = out->add_disks();
      disk->set_mount_point(fs.mount_point);
      disk->set_device(fs.device);
      disk->set_fs_type(fs.fs_type);
      disk->set_total_bytes(fs.usage.size_bytes);
      disk->set_used_bytes(fs.used_bytes());
      disk->set_free_bytes(fs.usage.free_bytes);
      disk->set_available_bytes(fs.usage.avail_bytes);
      disk->set_inodes_total(fs.usage.files);
      disk->set_inodes_free(fs.usage.files_free);
      disk->set_inodes_used(
          fs.usage.files > fs.usage.files_free ? fs.usage.files - fs.usage.files_free : 0);
    }
  } else {
    absent("disks");
  }
  if (in.network) {
    for (const auto& dev : *in.network) {
      auto* net = out->add_network_interfaces();
      net->set_name(dev.device);
      net->set_rx_bytes(dev.receive_bytes);
      net->set_tx_bytes(dev.transmit_bytes);
      net->set_rx_packets(dev.receive_packets);
      net->set_tx_packets(dev.transmit_packets);
      net->set_rx_errors(dev.receive_errs);
      net->set_tx_errors(dev.transmit_errs);
      net->set_rx_dropped(dev.receive_drop);
      net->set_tx_dropped(dev.transmit_drop);
    }
  } else {
    absent("network");
  }
  if (in.thermal_zones) {
    for (const auto& zone : *in.thermal_zones) {
      auto* thermal = out->add_thermal_zones();
      thermal->set_zone(fmt::format("thermal_zone{}", zone.zone));
      thermal->set_type(zone.type);
      thermal->set_temperature_celsius(zone.celsius);
    }
  } else {
    absent("thermal");
  }
  if (in.power) {
    auto* power = out->mutable_power();
    power->set_raw_flags(in.power->raw);
    power->set_under_voltage_now(in.power->now.under_voltage);
    power->set_frequency_capped_now(in.power->now.arm_frequency_capped);
    power->set_throttled_now(in.power->now.throttled);
    power->set_soft_temperature_limit_now(in.power->now.soft_temperature_limit);
    power->set_under_voltage_occurred(in.power->since_boot.under_voltage);
    power->set_frequency_capped_occurred(in.power->since_boot.arm_frequency_capped);
    power->set_throttled_occurred(in.power->since_boot.throttled);
    power->set_soft_temperature_limit_occurred(in.power->since_boot.soft_temperature_limit);
  } else {
    absent("power");
  }
  if (in.processes) {
    out->mutable_processes()->set_total(static_cast<uint32_t>(in.processes->total));
    out->mutable_processes()->set_running(static_cast<uint32_t>(in.processes->running));
    out->mutable_processes()->set_blocked(static_cast<uint32_t>(in.processes->blocked));
  } else {
    absent("processes");
  }
  if (in.device_model) {
    out->set_model(*in.device_model);
  } else {
    absent("model");
  }
}

std::string Hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "";
  return name;
}

// ---- ControlGPIO --------------------------------------------------------------------------

absl::StatusOr<gpio::GpioCommand> FromProto(const pb::GPIORequest& request) {
  gpio::GpioCommand command;
  command.chip = request.chip();
  switch (request.action()) {
    case pb::GPIO_ACTION_READ:
      command.action = gpio::GpioAction::kRead;
      break;
    case pb::GPIO_ACTION_WRITE:
      command.action = gpio::GpioAction::kWrite;
      break;
    case pb::GPIO_ACTION_CONFIGURE:
      command.action = gpio::GpioAction::kConfigure;
      break;
    case pb::GPIO_ACTION_RELEASE:
      command.action = gpio::GpioAction::kRelease;
      break;
    default:
      return absl::InvalidArgumentError(
          "action must be one of GPIO_ACTION_READ, GPIO_ACTION_WRITE, GPIO_ACTION_CONFIGURE, "
          "GPIO_ACTION_RELEASE");
  }
  switch (request.line_case()) {
    case pb::GPIORequest::kOffset:
      command.offset = request.offset();
      break;
    case pb::GPIORequest::kLineName:
      command.line_name = request.line_name();
      break;
    default:
      return absl::InvalidArgumentError("name the line by offset or by line_name");
  }
  if (request.has_value()) command.value = request.value();
  switch (request.direction()) {
    case pb::GPIO_DIRECTION_INPUT:
      command.direction = gpio::Direction::kInput;
      break;
    case pb::GPIO_DIRECTION_OUTPUT:
      command.direction = gpio::Direction::kOutput;
      break;
    case pb::GPIO_DIRECTION_UNSPECIFIED:
      break;
    default:
      return absl::InvalidArgumentError("direction is not a known GPIODirection");
  }
  if (request.has_active_low()) command.active_low = request.active_low();
  if (request.has_bias()) {
    switch (request.bias()) {
      case pb::GPIO_BIAS_AS_IS:
        command.bias = gpio::Bias::kAsIs;
        break;
      case pb::GPIO_BIAS_DISABLED:
        command.bias = gpio::Bias::kDisabled;
        break;
      case pb::GPIO_BIAS_PULL_UP:
        command.bias = gpio::Bias::kPullUp;
        break;
      case pb::GPIO_BIAS_PULL_DOWN:
        command.bias = gpio::Bias::kPullDown;
        break;
      default:
        return absl::InvalidArgumentError("bias is not a known GPIOBias");
    }
  }
  if (request.has_drive()) {
    switch (request.drive()) {
      case pb::GPIO_DRIVE_PUSH_PULL:
        command.drive = gpio::Drive::kPushPull;
        break;
      case pb::GPIO_DRIVE_OPEN_DRAIN:
        command.drive = gpio::Drive::kOpenDrain;
        break;
      case pb::GPIO_DRIVE_OPEN_SOURCE:
        command.drive = gpio::Drive::kOpenSource;
        break;
      default:
        return absl::InvalidArgumentError("drive is not a known GPIODrive");
    }
  }
  if (request.has_hold()) {
    auto hold = ToMilliseconds(request.hold(), "hold");
    if (!hold.ok()) return hold.status();
    command.hold = *hold;
    if (command.hold < milliseconds(0)) {
      return absl::InvalidArgumentError("hold must not be negative");
    }
    if (command.hold > kMaxHold) {
      return absl::InvalidArgumentError(
          "hold must be at most 366 days; use 0 to hold the line until RELEASE");
    }
  }
  return command;
}

void ToProto(const gpio::GpioResult& result, pb::GPIOResponse* out) {
  out->set_success(true);
  out->set_chip_name(result.chip_name);
  out->set_chip_label(result.chip_label);
  out->set_offset(result.offset);
  out->set_line_name(result.line_name);
  if (result.value) out->set_value(*result.value);
  out->set_direction(result.direction == gpio::Direction::kOutput ? pb::GPIO_DIRECTION_OUTPUT
                                                                  : pb::GPIO_DIRECTION_INPUT);
  out->set_held(result.held);
  if (result.held_until) SetTimestamp(*result.held_until, out->mutable_held_until());
  out->set_active_low(result.active_low);
  static constexpr pb::GPIOBias kBias[] = {pb::GPIO_BIAS_AS_IS, pb::GPIO_BIAS_DISABLED,
                                           pb::GPIO_BIAS_PULL_UP, pb::GPIO_BIAS_PULL_DOWN};
  static constexpr pb::GPIODrive kDrive[] = {pb::GPIO_DRIVE_PUSH_PULL, pb::GPIO_DRIVE_OPEN_DRAIN,
                                             pb::GPIO_DRIVE_OPEN_SOURCE};
  out->set_bias(kBias[static_cast<int>(result.bias)]);
  out->set_drive(kDrive[static_cast<int>(result.drive)]);
}

// ---- ExecuteCommand -----------------------------------------------------------------------

absl::StatusOr<exec::CommandRequest> FromProto(const pb::CommandRequest& request) {
  exec::CommandRequest command;
  command.argv.assign(request.argv().begin(), request.argv().end());
  if (request.has_timeout()) {
    auto timeout = ToMilliseconds(request.timeout(), "timeout");
    if (!timeout.ok()) return timeout.status();
    command.timeout = *timeout;
  }
  command.working_directory = request.working_directory();
  command.env.insert(request.env().begin(), request.env().end());
  return command;
}

// ---- StreamLogs ---------------------------------------------------------------------------

absl::StatusOr<logs::LogFilter> FromProto(const pb::LogFilter& request) {
  logs::LogFilter filter;
  filter.source = request.source();
  if (request.has_since()) {
    auto since = common::FromProtoTimestamp(request.since(), "since");
    if (!since.ok()) return since.status();
    filter.since = *since;
  }
  filter.unit = request.unit();
  if (request.has_max_priority()) filter.max_priority = request.max_priority();
  filter.substring = request.contains();
  filter.regex = request.regex();
  filter.limit = request.limit();
  filter.follow = request.follow();
  return filter;
}

void ToProto(const logs::LogEntry& entry, pb::LogEntry* out) {
  SetTimestamp(entry.timestamp, out->mutable_timestamp());
  out->set_source(entry.source);
  out->set_unit(entry.unit);
  out->set_priority(entry.priority.value_or(-1));
  out->set_message(entry.message);
  out->set_hostname(entry.hostname);
  out->set_pid(entry.pid);
  out->set_identifier(entry.identifier);
}

// A unary call refused before it started.
class RefusedUnary : public grpc::ServerUnaryReactor {
 public:
  explicit RefusedUnary(const absl::Status& status) { Finish(common::ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

// A stream refused before it started.
class RefusedStream : public grpc::ServerWriteReactor<pb::LogEntry> {
 public:
  explicit RefusedStream(const absl::Status& status) { Finish(common::ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

// Runs the log core on a thread of its own and feeds its entries to gRPC one write at a time.
class AgentService::LogStreamReactor : public grpc::ServerWriteReactor<pb::LogEntry>,
                                       public CancellableCall {
 public:
  LogStreamReactor(AgentService* service, grpc::CallbackServerContext* context,
                   logs::LogFilter filter)
      : service_(service), context_(context), filter_(std::move(filter)) {}

  absl::Status Begin() {
    return service_->blocking_.Run([this] { Pump(); });
  }

  // Called under the service's lock, so before OnDone: the context is still valid.
  void Shutdown() override {
    shutting_down_ = true;
    Cancel();
    // A write stuck behind a client that stopped reading would hold the stream until the server's
    // shutdown deadline; cancel the RPC instead. Otherwise the stream ends with UNAVAILABLE.
    std::lock_guard lock(mu_);
    if (writing_) context_->TryCancel();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    writing_ = false;
    if (!ok) broken_ = true;
    changed_.notify_all();
  }

  void OnCancel() override { Cancel(); }

  void OnDone() override {
    service_->Unregister(this, service_->running_streams_);
    delete this;
  }

 private:
  void Cancel() {
    cancel_.Cancel();
    std::lock_guard lock(mu_);
    changed_.notify_all();
  }

  void Pump() {
    absl::Status status = service_->logs_.Stream(
        filter_, [this](const logs::LogEntry& entry) { return Emit(entry); }, cancel_);
    {
      std::unique_lock lock(mu_);
      changed_.wait(lock, [this] { return !writing_; });
    }
    if (shutting_down_ && status.code() == absl::StatusCode::kCancelled) {
      status = absl::UnavailableError("pi-agent is shutting down");
    }
    // Nothing may touch `this` after Finish: OnDone can delete it at once.
    Finish(common::ToGrpcStatus(status));
  }

  bool Emit(const logs::LogEntry& entry) {
    std::unique_lock lock(mu_);
    changed_.wait(lock, [this] { return !writing_ || cancel_.cancelled(); });
    if (cancel_.cancelled() || broken_) return false;
    ToProto(entry, &message_);
    writing_ = true;
    lock.unlock();
    StartWrite(&message_);
    return true;
  }

  AgentService* const service_;
  grpc::CallbackServerContext* const context_;
  const logs::LogFilter filter_;
  common::CancelToken cancel_;
  std::atomic<bool> shutting_down_{false};
  std::mutex mu_;
  std::condition_variable changed_;
  bool writing_ = false;
  bool broken_ = false;
  pb::LogEntry message_;
};

// Runs one command on a thread of its own; a client that cancels (or a deadline that passes)
// kills the command's process group.
class AgentService::CommandReactor : public grpc::ServerUnaryReactor, public CancellableCall {
 public:
  CommandReactor(AgentService* service, exec::CommandRequest command, std::string caller,
                 pb::CommandResponse* response)
      : service_(service),
        command_(std::move(command)),
        caller_(std::move(caller)),
        response_(response) {}

  absl::Status Begin() {
    return service_->blocking_.Run([this] { Run(); });
  }

  void Shutdown() override { cancel_.Cancel(); }
  void OnCancel() override { cancel_.Cancel(); }

  void OnDone() override {
    service_->Unregister(this, service_->running_commands_);
    delete this;
  }

 private:
  void Run() {
    auto result = service_->executor_.Execute(command_, caller_, &cancel_);
    if (result.ok()) {
      response_->set_exit_code(result->exit_code);
      response_->set_signal(result->signal);
      response_->set_stdout(std::move(result->stdout_data));
      response_->set_stderr(std::move(result->stderr_data));
      response_->set_stdout_truncated(result->stdout_truncated);
      response_->set_stderr_truncated(result->stderr_truncated);
      *response_->mutable_duration() = common::ToProtoDuration(result->duration);
      response_->set_timed_out(result->timed_out);
    }
    // Nothing may touch `this` after Finish: OnDone can delete it at once.
    Finish(common::ToGrpcStatus(result.status()));
  }

  AgentService* const service_;
  const exec::CommandRequest command_;
  const std::string caller_;
  pb::CommandResponse* const response_;
  common::CancelToken cancel_;
};

AgentService::AgentService(Options options, metrics::SystemMetricsCollector& collector,
                           gpio::GpioController& gpio, exec::CommandExecutor& executor,
                           logs::LogStreamer& logs)
    : options_(std::move(options)),
      collector_(collector),
      gpio_(gpio),
      executor_(executor),
      logs_(logs) {}

AgentService::~AgentService() {
  CancelAll();
  blocking_.WaitIdle();
}

void AgentService::CancelAll() {
  std::lock_guard lock(calls_mu_);
  closed_ = true;
  for (auto* call : calls_) call->Shutdown();
}

absl::Status AgentService::Register(CancellableCall* call, int& running, int limit,
                                    std::string_view kind) {
  std::lock_guard lock(calls_mu_);
  if (closed_) return absl::UnavailableError("pi-agent is shutting down");
  if (running >= limit) {
    return absl::ResourceExhaustedError(
        fmt::format("{} {} already running; retry later", running, kind));
  }
  ++running;
  calls_.insert(call);
  return absl::OkStatus();
}

void AgentService::Unregister(CancellableCall* call, int& running) {
  std::lock_guard lock(calls_mu_);
  if (calls_.erase(call) > 0) --running;
}

absl::StatusOr<std::string> AgentService::Authorize(grpc::CallbackServerContext* context,
                                                    std::string_view method) const {
  if (options_.insecure) return std::string("insecure-client");
  auto identity = common::IdentityFromAuthContext(*context->auth_context(), options_.peer_verified);
  if (!identity.ok()) return identity.status();
  auto allowed = common::RequireRole(*identity, {common::Role::kController, common::Role::kAdmin},
                                     fmt::format("NodeAgent.{}", method));
  if (!allowed.ok()) {
    spdlog::warn("refused {} from {}: {}", method, identity->ToString(),
                 std::string(allowed.message()));
    return allowed;
  }
  return common::AuditName(*identity, *context);
}

grpc::ServerUnaryReactor* AgentService::GetSystemMetrics(grpc::CallbackServerContext* context,
                                                         const google::protobuf::Empty*,
                                                         pb::SystemMetrics* response) {
  auto* reactor = context->DefaultReactor();
  auto caller = Authorize(context, "GetSystemMetrics");
  if (!caller.ok()) {
    reactor->Finish(common::ToGrpcStatus(caller.status()));
    return reactor;
  }
  ToProto(collector_.Collect(), response);
  response->set_hostname(options_.node_name.empty() ? Hostname() : options_.node_name);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::ControlGPIO(grpc::CallbackServerContext* context,
                                                    const pb::GPIORequest* request,
                                                    pb::GPIOResponse* response) {
  auto* reactor = context->DefaultReactor();
  auto status = [&]() -> absl::Status {
    auto caller = Authorize(context, "ControlGPIO");
    if (!caller.ok()) return caller.status();
    auto command = FromProto(*request);
    if (!command.ok()) return command.status();
    auto result = gpio_.Execute(*command);
    // {:?} escapes client-supplied text so it cannot forge audit lines.
    spdlog::info("gpio {} chip={:?} line={:?} by {}: {}", gpio::GpioActionName(command->action),
                 command->chip,
                 command->offset ? std::to_string(*command->offset) : command->line_name, *caller,
                 result.ok() ? "ok" : std::string(result.status().message()));
    if (!result.ok()) return result.status();
    ToProto(*result, response);
    return absl::OkStatus();
  }();
  reactor->Finish(common::ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::ExecuteCommand(grpc::CallbackServerContext* context,
                                                       const pb::CommandRequest* request,
                                                       pb::CommandResponse* response) {
  auto caller = Authorize(context, "ExecuteCommand");
  if (!caller.ok()) return new RefusedUnary(caller.status());
  auto command = FromProto(*request);
  if (!command.ok()) return new RefusedUnary(command.status());
  auto* reactor = new CommandReactor(this, *std::move(command), *std::move(caller), response);
  auto started =
      Register(reactor, running_commands_, options_.max_commands, "commands (exec.max_concurrent)");
  if (started.ok()) {
    started = reactor->Begin();
    if (!started.ok()) Unregister(reactor, running_commands_);
  }
  if (!started.ok()) {
    delete reactor;
    return new RefusedUnary(started);
  }
  return reactor;
}

grpc::ServerWriteReactor<pb::LogEntry>* AgentService::StreamLogs(
    grpc::CallbackServerContext* context, const pb::LogFilter* request) {
  auto caller = Authorize(context, "StreamLogs");
  if (!caller.ok()) return new RefusedStream(caller.status());
  auto filter = FromProto(*request);
  if (!filter.ok()) return new RefusedStream(filter.status());
  auto* stream = new LogStreamReactor(this, context, *std::move(filter));
  auto started = Register(stream, running_streams_, options_.max_log_streams,
                          "log streams (grpc.max_log_streams)");
  if (started.ok()) {
    spdlog::info("log stream source={:?} follow={} opened by {}", request->source(),
                 request->follow(), *caller);
    started = stream->Begin();
    if (!started.ok()) Unregister(stream, running_streams_);
  }
  if (!started.ok()) {
    delete stream;
    return new RefusedStream(started);
  }
  return stream;
}

grpc::ServerUnaryReactor* AgentService::HealthCheck(grpc::CallbackServerContext* context,
                                                    const google::protobuf::Empty*,
                                                    pb::HealthStatus* response) {
  auto* reactor = context->DefaultReactor();
  auto caller = Authorize(context, "HealthCheck");
  if (!caller.ok()) {
    reactor->Finish(common::ToGrpcStatus(caller.status()));
    return reactor;
  }
  bool all_ok = true;
  const auto checks =
      options_.health_checks ? options_.health_checks() : std::vector<SubsystemHealth>{};
  for (const auto& check : checks) {
    auto* out = response->add_checks();
    out->set_name(check.name);
    out->set_ok(check.ok);
    out->set_detail(check.detail);
    all_ok &= check.ok;
  }
  response->set_status(all_ok ? pb::HealthStatus::OK : pb::HealthStatus::DEGRADED);
  response->set_version(options_.version);
  *response->mutable_uptime() =
      common::ToProtoDuration(std::chrono::steady_clock::now() - started_);
  response->set_hostname(options_.node_name.empty() ? Hostname() : options_.node_name);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace pi::agent
