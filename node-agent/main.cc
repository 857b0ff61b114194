// pi-agent: the NodeAgent daemon that runs on every Pi. This file only wires things together:
// flags, config, the cores, the gRPC and HTTP listeners, systemd notifications and the run loop.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stop_token>
#include <thread>

#include "common/config/secret.h"
#include "common/grpc/system_resolver.h"
#include "common/http/http_server.h"
#include "common/log/log.h"
#include "common/prometheus/text_writer.h"
#include "common/system/duration.h"
#include "common/system/files.h"
#include "common/system/host_port.h"
#include "common/system/sd_notify.h"
#include "common/tls/credentials.h"
#include "node-agent/agent_config.h"
#include "node-agent/agent_service.h"
#include "node-agent/gpio/in_memory_backend.h"
#include "node-agent/gpio/libgpiod_backend.h"
#include "node-agent/join/backoff.h"
#include "node-agent/join/control_plane_client.h"
#include "node-agent/join/enrollment_state.h"
#include "node-agent/join/health_summary.h"
#include "node-agent/join/port_reservation.h"
#include "node-agent/metrics/node_exporter_text.h"
#include "node-agent/runner/profile_executor.h"
#include "node-agent/runner/runner_client.h"

namespace pi::agent {
namespace {

constexpr char kDefaultConfigPath[] = "/etc/pi-agent/agent.json";

struct Flags {
  std::string config_path = kDefaultConfigPath;
  std::string ports_file;
  std::string log_level;
  bool insecure = false;
  bool gpio_sim = false;
  bool check_config = false;
  // Joining a cluster: the controller's address and the join token (never logged).
  std::string join;
  std::string token;
  std::string token_file;
};

std::vector<SubsystemHealth> CheckHealth(const AgentConfig& config,
                                         const metrics::CpuSampler& sampler,
                                         gpio::GpioController& gpio) {
  std::vector<SubsystemHealth> checks;
  const bool sampled = sampler.Usage().has_value();
  checks.push_back({"metrics", sampled,
                    sampled ? fmt::format("{} CPU samples taken", sampler.samples_taken())
                            : fmt::format("no CPU sample yet; is {}/proc/stat readable?",
                                          config.cpu_sampler.root.string())});

  const auto probe = gpio.Probe();
  checks.push_back({"gpio", probe.ok(),
                    probe.ok() ? fmt::format("{} backend, {} line(s) held", config.gpio_backend,
                                             gpio.HeldLines().size())
                               : std::string(probe.message())});

  std::vector<std::string> unusable;
  for (const auto& command : config.exec.allowed_commands) {
    if (access(command.c_str(), X_OK) != 0) unusable.push_back(command);
  }
  checks.push_back({"exec", unusable.empty(),
                    unusable.empty()
                        ? fmt::format("{} allowed command(s)", config.exec.allowed_commands.size())
                        : fmt::format("not executable: {}", fmt::join(unusable, ", "))});

  std::vector<std::string> unreadable;
  for (const auto& [name, path] : config.logs.files) {
    if (access(path.c_str(), R_OK) != 0) unreadable.push_back(fmt::format("{} ({})", name, path));
  }
  if (config.logs.journald && access(config.logs.journalctl_path.c_str(), X_OK) != 0) {
    unreadable.push_back(fmt::format("journal ({} missing)", config.logs.journalctl_path));
  }
  checks.push_back({"logs", unreadable.empty(),
                    unreadable.empty()
                        ? fmt::format("{} file source(s), journal {}", config.logs.files.size(),
                                      config.logs.journald ? "on" : "off")
                        : fmt::format("unreadable: {}", fmt::join(unreadable, ", "))});
  return checks;
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "pi-agent: %s\n", std::string(status.message()).c_str());
  return 2;
}

// The join token from --token or --token-file (one of them is given: PlanStartup checked).
absl::StatusOr<std::string> ReadJoinToken(const Flags& flags) {
  if (!flags.token.empty()) return flags.token;
  return common::ResolveSecret("file:" + std::filesystem::absolute(flags.token_file).string());
}

// Where the controller reaches this agent's NodeAgent listener.
std::string AgentAddress(const AgentConfig& config) {
  return config.control_plane.advertise_address.empty() ? config.listen
                                                        : config.control_plane.advertise_address;
}

// SIGTERM and SIGINT are taken synchronously by the run loop.
sigset_t ShutdownSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  return signals;
}

// Pings the systemd watchdog from a thread of its own while the main thread waits in the first
// join, whose calls may each take a minute.
class JoinWatchdog {
 public:
  JoinWatchdog() {
    const auto interval = common::WatchdogPingInterval();
    if (!interval) return;
    pinger_ = std::jthread([interval = *interval](std::stop_token stop) {
      std::mutex mutex;
      std::condition_variable_any wakeup;
      std::unique_lock lock(mutex);
      while (!stop.stop_requested()) {
        common::SdNotify("WATCHDOG=1").IgnoreError();
        wakeup.wait_for(lock, stop, interval, [] { return false; });
      }
    });
  }

 private:
  std::jthread pinger_;
};

// The first join, retried while the controller cannot be reached (a Pi may boot before its
// network); SIGTERM or SIGINT meanwhile ends it with CANCELLED. A refusal returns at once.
// Under systemd the agent reports itself started first: boot (multi-user.target waits for
// READY=1) must not wait for a controller that may be down, and the watchdog must not kill a join.
absl::StatusOr<join::Registration> EnrollWithRetries(const join::StateDir& state,
                                                     const std::string& address,
                                                     const std::string& token,
                                                     const join::NodeDescription& node,
                                                     const sigset_t& signals) {
  join::Backoff backoff(std::chrono::seconds(1), std::chrono::seconds(30));
  // A join the controller completed after the agent gave up on it cannot be retried (the hostname
  // is then taken), so the agent waits long: a controller takes joins one at a time.
  join::ClientOptions options;
  options.rpc_timeout = std::chrono::seconds(60);
  spdlog::info("joining the controller at {} as {}", address, node.hostname);
  common::SdNotify(fmt::format("READY=1\nSTATUS=joining the controller at {}", address))
      .IgnoreError();
  const JoinWatchdog watchdog;
  while (true) {
    auto registration = join::Enroll(state, address, token, node, options);
    if (registration.ok() || !join::IsTransient(registration.status())) return registration;
    const auto delay = backoff.Failure();
    spdlog::warn("{}; retrying in {}", std::string(registration.status().message()),
                 common::FormatDuration(delay));
    const timespec timeout{static_cast<time_t>(delay.count() / 1'000'000'000),
                           static_cast<long>(delay.count() % 1'000'000'000)};
    if (sigtimedwait(&signals, nullptr, &timeout) > 0) {
      return absl::CancelledError("stopped before the join completed");
    }
  }
}

int Run(const Flags& flags) {
  const sigset_t signals = ShutdownSignals();
  auto loaded = LoadAgentConfig(flags.config_path);
  if (!loaded.ok()) return Fail(loaded.status());
  AgentConfig config = *std::move(loaded);
  if (flags.gpio_sim) config.gpio_backend = "simulated";
  if (!flags.log_level.empty()) config.log_level = flags.log_level;
  if (config.node_name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    config.node_name = host;
  }

  const bool token_given = !flags.token.empty() || !flags.token_file.empty();
  const join::StateDir state(config.control_plane.state_dir);
  auto stored = state.Load();
  if (!stored.ok()) return Fail(stored.status());
  auto plan = join::PlanStartup(
      state, *stored, flags.join.empty() ? config.control_plane.address : flags.join, token_given);
  if (!plan.ok()) return Fail(plan.status());
  // Only a first join reads the token: the systemd unit may keep naming a token file that the
  // operator deleted after the join.
  std::string token;
  if (plan->action == join::StartupAction::kEnroll) {
    auto read = ReadJoinToken(flags);
    if (!read.ok()) return Fail(read.status());
    token = *std::move(read);
  }
  if (plan->action != join::StartupAction::kStandalone && !config.tls_files_configured) {
    config.tls.cert_file = state.cert_file();
    config.tls.key_file = state.key_file();
    config.tls.ca_file = state.ca_file();
  }
  // The controller must learn the NodeAgent port before the listener exists (the join brings its
  // certificate), so a port 0 is picked and held now.
  std::optional<join::PortReservation> reserved_port;
  if (plan->action != join::StartupAction::kStandalone && !flags.check_config) {
    auto listen = *common::ParseListenAddress(config.listen);
    if (listen.port == 0) {
      auto reservation = join::PortReservation::Reserve(listen);
      if (!reservation.ok()) return Fail(reservation.status());
      listen.port = reservation->port();
      config.listen = common::JoinHostPort(listen);
      reserved_port.emplace(*std::move(reservation));
    }
  }

  // A first join has no certificate yet: its credentials are made once the join is done.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  const auto make_credentials = [&flags, &config, &credentials]() -> absl::Status {
    if (flags.insecure) {
      credentials = grpc::InsecureServerCredentials();
      return absl::OkStatus();
    }
    auto tls = common::MakeServerCredentials(config.tls);
    if (!tls.ok()) return tls.status();
    credentials = *tls;
    return absl::OkStatus();
  };
  // The packaged unit is enabled at install, so it may start before the Pi has joined: say what to
  // do instead of naming the missing certificate file.
  if (plan->action == join::StartupAction::kStandalone && !config.tls_files_configured &&
      !flags.insecure && !std::filesystem::exists(config.tls.cert_file)) {
    return Fail(absl::FailedPreconditionError(fmt::format(
        "this agent has not joined a cluster and has no certificate ({} does not exist): join "
        "with --join HOST:PORT --token-file FILE (under systemd: PI_AGENT_OPTS in "
        "/etc/default/pi-agent, then systemctl restart pi-agent), or set tls.cert_file, "
        "tls.key_file and tls.ca_file for an agent outside a cluster",
        config.tls.cert_file)));
  }
  if (plan->action != join::StartupAction::kEnroll) {
    if (auto status = make_credentials(); !status.ok()) return Fail(status);
  }
  // The cores validate their own sections; do it before anything starts, also for --check-config.
  // Neither GPIO backend touches hardware until a line is used.
  auto log_streamer = logs::LogStreamer::Create(config.logs);
  if (!log_streamer.ok()) return Fail(log_streamer.status());
  std::unique_ptr<gpio::GpioBackend> gpio_backend;
  if (config.gpio_backend == "simulated") {
    gpio_backend = std::make_unique<gpio::InMemoryGpioBackend>();
  } else {
    gpio_backend = std::make_unique<gpio::LibgpiodBackend>();
  }
  auto gpio = gpio::GpioController::Create(config.gpio, *gpio_backend, common::RealClock());
  if (!gpio.ok()) return Fail(gpio.status());
  if (flags.check_config) {
    std::printf("pi-agent: %s is valid\n", flags.config_path.c_str());
    if (plan->action == join::StartupAction::kEnroll) {
      std::printf("pi-agent: will join %s on start\n", plan->address.c_str());
    }
    return 0;
  }

  common::InitLogging("pi-agent", config.log_level);
  if (flags.insecure) {
    spdlog::warn(
        "*** --insecure: NodeAgent serves PLAINTEXT gRPC with NO authentication. Anyone "
        "who can reach {} can run commands and drive GPIO. Never use this on a "
        "network. ***",
        config.listen);
  }

  metrics::CpuSampler sampler(config.cpu_sampler);
  if (auto status = sampler.Start(); !status.ok()) return Fail(status);
  metrics::SystemMetricsCollector collector(config.collector, sampler);

  join::NodeDescription node{
      config.node_name, AgentAddress(config), config.control_plane.labels,
      join::BuildFacts(join::ReadHostInfo(config.collector.root), collector.Collect(), PI_VERSION)};
  std::optional<join::Enrollment> enrollment = plan->enrollment;
  if (plan->action == join::StartupAction::kEnroll) {
    auto joined = EnrollWithRetries(state, plan->address, token, node, signals);
    if (!joined.ok()) {
      if (joined.status().code() == absl::StatusCode::kCancelled) {
        spdlog::info("{}", std::string(joined.status().message()));
        return 0;
      }
      return Fail(joined.status());
    }
    enrollment = join::Enrollment{plan->address, joined->node_id};
    spdlog::info("joined the controller at {} as node {}; enrollment stored in {}", plan->address,
                 joined->node_id, state.dir());
    if (auto status = make_credentials(); !status.ok()) return Fail(status);
  } else if (enrollment && token_given) {
    spdlog::info("already joined to {} as node {}; the join token was not used",
                 enrollment->address, enrollment->node_id);
  }

  if (config.gpio_backend == "simulated") {
    spdlog::warn("GPIO is simulated in memory: no hardware line is touched");
  }
  if (auto probe = (*gpio)->Probe(); !probe.ok()) {
    spdlog::warn("GPIO unavailable: {}", std::string(probe.message()));
  }

  exec::CommandExecutor executor(config.exec);

  AgentService::Options service_options;
  service_options.version = PI_VERSION;
  service_options.node_name = config.node_name;
  service_options.insecure = flags.insecure;
  service_options.peer_verified = common::VerifiesClientCertificates(config.tls.client_auth);
  service_options.max_log_streams = config.max_log_streams;
  service_options.max_commands = config.exec.max_concurrent;
  service_options.health_checks = [&config, &sampler, &gpio] {
    return CheckHealth(config, sampler, **gpio);
  };
  AgentService service(service_options, collector, **gpio, executor, *log_streamer);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(common::JoinHostPort(*common::ParseListenAddress(config.listen)),
                           credentials, &grpc_port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.max_request_bytes));
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || grpc_port == 0) {
    return Fail(absl::UnavailableError(fmt::format("cannot listen on {} for gRPC", config.listen)));
  }
  reserved_port.reset();

  common::HttpServer http;
  http.Handle("GET", "/metrics", [&collector](const common::HttpRequest&) {
    common::PrometheusTextWriter writer;
    metrics::WriteNodeExporterMetrics(collector.Collect(), writer);
    return common::HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", writer.text()};
  });
  // Unauthenticated, so it names failing subsystems but no details (paths, commands): those are
  // in the authenticated HealthCheck RPC.
  http.Handle("GET", "/healthz", [&service_options](const common::HttpRequest&) {
    std::vector<std::string> failing;
    for (const auto& check : service_options.health_checks()) {
      if (!check.ok) failing.push_back(check.name);
    }
    // Degraded subsystems are reported, but the process is alive and serving: 200 either way.
    return common::HttpResponse{
        200, "text/plain; charset=utf-8",
        failing.empty() ? "ok\n" : fmt::format("degraded: {}\n", fmt::join(failing, ", "))};
  });
  int http_port = 0;
  if (!config.http_listen.empty()) {
    auto bound = http.Start(config.http_listen);
    if (!bound.ok()) {
      server->Shutdown();
      return Fail(bound.status());
    }
    http_port = *bound;
  }

  if (!flags.ports_file.empty()) {
    const auto ports = nlohmann::json{{"grpc", grpc_port}, {"http", http_port}}.dump();
    if (auto status = common::WriteFileAtomically(flags.ports_file, ports, 0644); !status.ok()) {
      server->Shutdown();
      return Fail(status);
    }
  }
  spdlog::info("pi-agent {} serving NodeAgent on {} (port {}), metrics on {} (port {}), node {}",
               PI_VERSION, config.listen, grpc_port, config.http_listen, http_port,
               config.node_name);

  // Registers again (with the current address and facts) and heartbeats in the background,
  // so an unreachable controller never holds up the NodeAgent service.
  std::unique_ptr<join::Heartbeater> heartbeater;
  if (enrollment) {
    join::Heartbeater::Options options;
    // Right after a join the certificate is fresh; a restarted agent renews its own.
    options.renew_certificate = plan->action == join::StartupAction::kReregister;
    heartbeater = std::make_unique<join::Heartbeater>(
        state, *enrollment, node,
        [&collector, &service_options] {
          bool healthy = true;
          for (const auto& check : service_options.health_checks()) healthy &= check.ok;
          return join::BuildHealthSummary(collector.Collect(), healthy, PI_VERSION);
        },
        options);
    heartbeater->Start();
  }
  // A joined agent is the Forest runner of the provisioning releases pinned to its node.
  std::unique_ptr<runner::ProfileExecutor> provisioner;
  std::unique_ptr<runner::RunnerClient> runner_client;
  if (enrollment && config.runner.enabled) {
    provisioner =
        std::make_unique<runner::ProfileExecutor>(config.runner.provision, executor, gpio->get());
    runner::RunnerClientOptions options;
    options.address = enrollment->address;
    options.node_id = enrollment->node_id;
    options.tls = {state.ca_file(), state.cert_file(), state.key_file()};
    options.max_concurrent = config.runner.max_concurrent;
    options.heartbeat_interval = config.runner.heartbeat_interval;
    options.max_backoff = config.runner.reconnect_max_backoff;
    runner_client = std::make_unique<runner::RunnerClient>(std::move(options), *provisioner);
    runner_client->Start();
  }
  if (auto status = common::SdNotify("READY=1\nSTATUS=serving"); !status.ok()) {
    spdlog::warn("{}", std::string(status.message()));
  }

  // The run loop: wakes for a signal, the next GPIO hold expiry, or the watchdog.
  const auto watchdog = common::WatchdogPingInterval();
  auto next_ping = std::chrono::steady_clock::now();
  int received = 0;
  while (received == 0) {
    const auto now = std::chrono::steady_clock::now();
    auto wake = now + std::chrono::seconds(1);
    if (auto expiry = (*gpio)->NextExpiry()) wake = std::min(wake, *expiry);
    if (watchdog) {
      if (now >= next_ping) {
        common::SdNotify("WATCHDOG=1").IgnoreError();
        next_ping = now + *watchdog;
      }
      wake = std::min(wake, next_ping);
    }
    const auto wait = std::max(std::chrono::nanoseconds(0), wake - now);
    const timespec timeout{static_cast<time_t>(wait.count() / 1'000'000'000),
                           static_cast<long>(wait.count() % 1'000'000'000)};
    const int signal_number = sigtimedwait(&signals, nullptr, &timeout);
    if (signal_number > 0) received = signal_number;
    if (const size_t released = (*gpio)->ReleaseExpired(); released > 0) {
      spdlog::info("released {} GPIO line(s) whose hold ended", released);
    }
  }

  spdlog::info("received {}, shutting down", strsignal(received));
  common::SdNotify("STOPPING=1").IgnoreError();
  // Running steps are cancelled; the controller requeues their releases when the stream ends.
  if (runner_client) runner_client->Stop();
  if (heartbeater) heartbeater->Stop();
  server->GetHealthCheckService()->SetServingStatus(false);
  service.CancelAll();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  http.Stop();
  const size_t released = (*gpio)->ReleaseAll();
  sampler.Stop();
  spdlog::info("stopped; released {} GPIO line(s)", released);
  return 0;
}

}  // namespace
}  // namespace pi::agent

int main(int argc, char** argv) {
  pi::common::UseSystemResolver();
  // Before any thread exists (gRPC starts some as soon as credentials are made), so every thread
  // inherits the mask and a shutdown signal can only reach the run loop.
  const sigset_t signals = pi::agent::ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  pi::agent::Flags flags;
  CLI::App app{"pi-agent: the Pi-Controller node agent (NodeAgent gRPC service)"};
  app.add_option("-c,--config", flags.config_path, "Configuration file")->capture_default_str();
  app.add_option("--ports-file", flags.ports_file,
                 "Write the bound ports as JSON {\"grpc\":N,\"http\":M} here once listening");
  app.add_option("--log-level", flags.log_level, "Override log_level: trace|debug|info|warn|error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app.add_flag("--insecure", flags.insecure,
               "Serve plaintext gRPC without authentication (development only)");
  app.add_flag("--gpio-sim", flags.gpio_sim, "Use an in-memory simulated GPIO chip");
  app.add_flag("--check-config", flags.check_config,
               "Validate the configuration and certificates, then exit");
  app.add_option("--join", flags.join,
                 "Join the Pi-Controller cluster at HOST:PORT (first run; needs a join token)");
  auto* token = app.add_option("--token", flags.token,
                               "Join token K10<pin>::<id>.<secret> (visible in the process "
                               "list; prefer --token-file)");
  app.add_option("--token-file", flags.token_file, "Read the join token from this file")
      ->excludes(token);
  app.set_version_flag("--version", std::string("pi-agent ") + PI_VERSION);
  CLI11_PARSE(app, argc, argv);
  return pi::agent::Run(flags);
}
