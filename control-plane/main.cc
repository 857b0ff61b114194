// pi-controller: the control plane. This file only wires things together: flags, config, the
// cluster CA, the store, the cores, the gRPC and HTTP listeners, systemd notifications and the
// run loop.
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/grpc/system_resolver.h"
#include "common/http/http_server.h"
#include "common/log/log.h"
#include "common/prometheus/text_writer.h"
#include "common/system/files.h"
#include "common/system/host_port.h"
#include "common/system/sd_notify.h"
#include "common/tls/credentials.h"
#include "control-plane/admin/admin_service.h"
#include "control-plane/cluster/agent_dialer.h"
#include "control-plane/cluster/cluster.h"
#include "control-plane/cluster/control_plane_service.h"
#include "control-plane/cluster/controller_identity.h"
#include "control-plane/cluster/health_poller.h"
#include "control-plane/controller_config.h"
#include "control-plane/provisioning/provisioner.h"
#include "control-plane/queue/http_ingress.h"
#include "control-plane/queue/http_pull_api.h"
#include "control-plane/queue/queue_engine.h"
#include "control-plane/queue/sqlite_queue_store.h"
#include "control-plane/queue/worker_service.h"
#include "control-plane/release/release_engine.h"
#include "control-plane/release/runner_service.h"
#include "control-plane/release/sqlite_release_store.h"
#include "control-plane/store/sqlite_cluster_store.h"

namespace pi::controlplane {
namespace {

constexpr char kDefaultConfigPath[] = "/etc/pi-controller/controller.json";
constexpr std::chrono::hours kAdminCertValidity{24 * 365};

struct Flags {
  std::string config_path = kDefaultConfigPath;
  std::string ports_file;
  std::string log_level;
  bool check_config = false;
  // issue-admin
  std::string admin_name;
  std::string admin_out;
  std::string admin_address;
};

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "pi-controller: %s\n", std::string(status.message()).c_str());
  return 2;
}

sigset_t ShutdownSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  return signals;
}

// Every node keeps a connection open to the controller; the usual soft limit of 1,024 open files
// would cap the fleet below a thousand nodes, while the hard limit is what the system allows.
void RaiseOpenFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
      spdlog::warn("cannot raise the open file limit to {}", limit.rlim_max);
    }
  }
}

std::string Hostname() {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  return host;
}

// The names in the controller's certificate: what the operator configured plus the names every
// controller answers to locally.
std::vector<std::string> CertificateHosts(const ControllerConfig& config) {
  std::vector<std::string> hosts = config.certificate_hosts;
  for (const std::string& host : {Hostname(), std::string("localhost"), std::string("127.0.0.1")}) {
    if (!host.empty() && common::ValidateSubjectAltNames({host}).ok() &&
        std::find(hosts.begin(), hosts.end(), host) == hosts.end()) {
      hosts.push_back(host);
    }
  }
  return hosts;
}

struct Pki {
  cluster::CertificateAuthority ca;
  bool issued_controller_certificate = false;
};

// The state directory (0700) and the cluster CA in it (or in ca_dir), created when absent.
absl::StatusOr<cluster::CertificateAuthority> LoadCa(const ControllerConfig& config) {
  std::error_code error;
  std::filesystem::create_directories(config.state_dir, error);
  if (error) {
    return absl::FailedPreconditionError(
        fmt::format("cannot create state_dir {}: {}", config.state_dir, error.message()));
  }
  if (chmod(config.state_dir.c_str(), 0700) != 0) {
    return absl::FailedPreconditionError(
        fmt::format("cannot restrict state_dir {} to its owner", config.state_dir));
  }
  return cluster::CertificateAuthority::LoadOrCreate(config.CaDir(), common::RealClock());
}

// The CA and a controller certificate to serve with.
absl::StatusOr<Pki> PreparePki(const ControllerConfig& config) {
  absl::StatusOr<cluster::CertificateAuthority> ca = LoadCa(config);
  if (!ca.ok()) return ca.status();
  if (config.CertificateConfigured()) {
    // The operator's certificate is theirs to renew; it only has to be usable.
    absl::Status usable = cluster::CheckControllerCertificate(
        *ca, {config.CertFile(), config.KeyFile()}, config.certificate_hosts, common::RealClock());
    if (!usable.ok()) return usable;
    return Pki{*std::move(ca), false};
  }
  absl::StatusOr<bool> issued = cluster::EnsureControllerCertificate(
      *ca, {config.CertFile(), config.KeyFile()}, CertificateHosts(config), common::RealClock());
  if (!issued.ok()) return issued.status();
  return Pki{*std::move(ca), *issued};
}

std::string DefaultControllerAddress(const ControllerConfig& config) {
  absl::StatusOr<common::HostPort> listen = common::ParseListenAddress(config.listen);
  common::HostPort address = *listen;
  if (address.host == "0.0.0.0" || address.host == "::") address.host = "127.0.0.1";
  return common::JoinHostPort(address);
}

int Init(const ControllerConfig& config) {
  absl::StatusOr<Pki> pki = PreparePki(config);
  if (!pki.ok()) return Fail(pki.status());
  std::printf(
      "cluster CA:        %s/ca.crt\n"
      "CA pin (sha256):   %s\n"
      "controller cert:   %s (%s)\n"
      "next: pi-controller issue-admin NAME --out ~/.config/pictl\n",
      config.CaDir().c_str(), pki->ca.pin().c_str(), config.CertFile().c_str(),
      config.CertificateConfigured()       ? "configured"
      : pki->issued_controller_certificate ? "issued"
                                           : "kept");
  return 0;
}

int IssueAdmin(const ControllerConfig& config, const Flags& flags) {
  absl::StatusOr<cluster::CertificateAuthority> ca = LoadCa(config);
  if (!ca.ok()) return Fail(ca.status());
  const std::string address =
      flags.admin_address.empty() ? DefaultControllerAddress(config) : flags.admin_address;
  if (absl::Status status = cluster::WriteAdminBundle(*ca, flags.admin_name, flags.admin_out,
                                                      address, kAdminCertValidity);
      !status.ok()) {
    return Fail(status);
  }
  std::printf("admin:%s: certificate and pictl config written to %s (controller %s)\n",
              flags.admin_name.c_str(), flags.admin_out.c_str(), address.c_str());
  return 0;
}

void WriteQueueMetrics(queue::QueueEngine& engine, common::PrometheusTextWriter& writer) {
  struct RouteFigures {
    std::string route;
    queue::QueueStats stats;
    queue::QueueCounters counters;
  };
  std::vector<RouteFigures> figures;
  for (const std::string& route : engine.RouteNames()) {
    absl::StatusOr<queue::QueueStats> stats = engine.Stats(route);
    absl::StatusOr<queue::QueueCounters> counters = engine.Counters(route);
    if (stats.ok() && counters.ok()) figures.push_back({route, *stats, *counters});
  }
  writer.Family("pi_controller_queue_depth", "Queue items by state", "gauge");
  for (const RouteFigures& f : figures) {
    const int64_t ready = f.stats.queued - f.stats.delayed;
    for (const auto& [state, count] : {std::pair<const char*, int64_t>{"ready", ready},
                                       {"delayed", f.stats.delayed},
                                       {"leased", f.stats.leased},
                                       {"dead", f.stats.dead}}) {
      writer.Sample("pi_controller_queue_depth", {{"route", f.route}, {"state", state}},
                    static_cast<double>(count));
    }
  }
  writer.Family("pi_controller_queue_waiting_dequeues", "Dequeues long-polling for an item",
                "gauge");
  for (const RouteFigures& f : figures) {
    writer.Sample("pi_controller_queue_waiting_dequeues", {{"route", f.route}},
                  static_cast<double>(f.stats.waiting));
  }
  writer.Family("pi_controller_queue_oldest_age_seconds",
                "Age of the oldest queued item (0 when empty)", "gauge");
  for (const RouteFigures& f : figures) {
    const double age = f.stats.oldest_queued_age
                           ? std::chrono::duration<double>(*f.stats.oldest_queued_age).count()
                           : 0.0;
    writer.Sample("pi_controller_queue_oldest_age_seconds", {{"route", f.route}}, age);
  }
  const std::pair<const char*, uint64_t queue::QueueCounters::*> counters[] = {
      {"pi_controller_queue_enqueued_total", &queue::QueueCounters::enqueued},
      {"pi_controller_queue_dequeued_total", &queue::QueueCounters::dequeued},
      {"pi_controller_queue_acks_total", &queue::QueueCounters::acked},
      {"pi_controller_queue_nacks_total", &queue::QueueCounters::nacked},
      {"pi_controller_queue_lease_conflicts_total", &queue::QueueCounters::conflicts},
      {"pi_controller_queue_lease_expiries_total", &queue::QueueCounters::lease_expiries},
      {"pi_controller_queue_dead_lettered_total", &queue::QueueCounters::dead_lettered},
  };
  for (const auto& [name, member] : counters) {
    writer.Family(name, "Queue operations since the controller started", "counter");
    for (const RouteFigures& f : figures) {
      writer.Sample(name, {{"route", f.route}}, static_cast<double>(f.counters.*member));
    }
  }
}

void WriteReleaseMetrics(release::ReleaseEngine& releases, common::PrometheusTextWriter& writer) {
  const release::ReleaseCounts counts = releases.Counts();
  writer.Family("pi_controller_releases", "Releases that have not ended, by state", "gauge");
  for (const auto& [state, count] : counts.unfinished) {
    writer.Sample("pi_controller_releases", {{"state", std::string(release::StateName(state))}},
                  static_cast<double>(count));
  }
  writer.Family("pi_controller_releases_finished_total",
                "Releases that ended since the controller started, by final state", "counter");
  for (release::ReleaseState state :
       {release::ReleaseState::kSucceeded, release::ReleaseState::kFailed,
        release::ReleaseState::kCancelled, release::ReleaseState::kTimedOut}) {
    const auto found = counts.finished_since_start.find(state);
    writer.Sample(
        "pi_controller_releases_finished_total",
        {{"state", std::string(release::StateName(state))}},
        found == counts.finished_since_start.end() ? 0.0 : static_cast<double>(found->second));
  }
  writer.Family("pi_controller_release_assignments_total",
                "Releases handed to runners since the controller started", "counter");
  writer.Sample("pi_controller_release_assignments_total",
                static_cast<double>(counts.assignments_since_start));
  writer.Family("pi_controller_runners_connected", "Runners connected now", "gauge");
  writer.Sample("pi_controller_runners_connected", static_cast<double>(counts.runners));
}

void WriteMetrics(cluster::Cluster& cluster, common::PrometheusTextWriter& writer) {
  std::map<store::NodeState, int> counts;
  for (store::NodeState state :
       {store::NodeState::kRegistered, store::NodeState::kReady, store::NodeState::kDown,
        store::NodeState::kDraining, store::NodeState::kCordoned, store::NodeState::kRemoved}) {
    counts[state] = 0;
  }
  absl::StatusOr<std::vector<cluster::NodeView>> nodes = cluster.ListNodes(
      "", {store::NodeState::kRegistered, store::NodeState::kReady, store::NodeState::kDown,
           store::NodeState::kDraining, store::NodeState::kCordoned, store::NodeState::kRemoved});
  if (nodes.ok()) {
    for (const cluster::NodeView& node : *nodes) ++counts[node.node.state];
  }
  writer.Family("pi_controller_nodes", "Nodes by state", "gauge");
  for (const auto& [state, count] : counts) {
    writer.Sample("pi_controller_nodes", {{"state", store::NodeStateName(state)}}, count);
  }
  writer.Family("pi_controller_cluster_revision", "The persisted cluster revision", "gauge");
  writer.Sample("pi_controller_cluster_revision", static_cast<double>(cluster.feed().Current()));
  writer.Family("pi_controller_build_info", "Version of this pi-controller", "gauge");
  writer.Sample("pi_controller_build_info", {{"version", PI_VERSION}}, 1);
}

int Serve(const ControllerConfig& config, const Flags& flags, const sigset_t& signals) {
  absl::StatusOr<Pki> pki = PreparePki(config);
  if (!pki.ok()) return Fail(pki.status());
  const common::ServerTlsConfig tls{config.CertFile(), config.KeyFile(), config.CaDir() + "/ca.crt",
                                    common::ClientAuth::kRequest};
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> server_credentials =
      common::MakeServerCredentials(tls);
  if (!server_credentials.ok()) return Fail(server_credentials.status());
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> agent_credentials =
      common::MakeChannelCredentials({tls.ca_file, tls.cert_file, tls.key_file});
  if (!agent_credentials.ok()) return Fail(agent_credentials.status());
  absl::StatusOr<std::unique_ptr<store::SqliteClusterStore>> store =
      store::SqliteClusterStore::Open(config.DatabasePath(), common::RealClock());
  if (!store.ok()) return Fail(store.status());
  absl::StatusOr<std::unique_ptr<cluster::Cluster>> cluster =
      cluster::Cluster::Create(**store, pki->ca, common::RealClock(), config.cluster);
  if (!cluster.ok()) return Fail(cluster.status());
  absl::StatusOr<std::unique_ptr<queue::SqliteQueueStore>> queue_store =
      queue::SqliteQueueStore::Open(config.QueueDatabasePath(), common::RealClock());
  if (!queue_store.ok()) return Fail(queue_store.status());
  absl::StatusOr<std::unique_ptr<queue::QueueEngine>> queues =
      queue::QueueEngine::Open(**queue_store, common::RealClock(), config.queues.Limits());
  if (!queues.ok()) return Fail(queues.status());
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> worker_credentials =
      queue::WorkerServerCredentials(config.queues.tls);
  if (!worker_credentials.ok()) return Fail(worker_credentials.status());
  absl::StatusOr<std::unique_ptr<release::SqliteReleaseStore>> release_store =
      release::SqliteReleaseStore::Open(config.ReleaseDatabasePath());
  if (!release_store.ok()) return Fail(release_store.status());
  if (flags.check_config) {
    std::printf("pi-controller: %s is valid\n", flags.config_path.c_str());
    return 0;
  }
  // Opened after the check: it settles releases whose runners were lost, which writes.
  absl::StatusOr<std::unique_ptr<release::ReleaseEngine>> releases =
      release::ReleaseEngine::Open(**release_store, common::RealClock(), config.releases);
  if (!releases.ok()) return Fail(releases.status());

  common::InitLogging("pi-controller", config.log_level);
  RaiseOpenFileLimit();
  if (pki->issued_controller_certificate) {
    spdlog::info("issued a new controller certificate {}", config.CertFile());
  }
  cluster::AgentDialer dialer(*agent_credentials);
  (*releases)->Start();
  provisioning::Provisioner provisioner(**releases, **cluster, config.profiles_dir);
  // A node's pi-agent may register as a runner only while it is a member of the cluster.
  release::RunnerService runner_service(
      **releases, [&cluster](const common::Identity& identity, const std::string& cert_sha256) {
        if (identity.role != common::Role::kNode) return absl::OkStatus();
        return (*cluster)->AuthenticateNode(cluster::Caller{identity, cert_sha256});
      });
  cluster::ControlPlaneService control_plane(**cluster, &provisioner);
  admin::AdminService admin_service(**cluster, dialer, {config.admin_max_streams}, **queues,
                                    **releases);
  const queue::RouteTable routes(config.queues);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(common::JoinHostPort(*common::ParseListenAddress(config.listen)),
                           *server_credentials, &grpc_port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.max_request_bytes));
  builder.RegisterService(&control_plane);
  builder.RegisterService(&admin_service);
  builder.RegisterService(&runner_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || grpc_port == 0) {
    return Fail(absl::UnavailableError(fmt::format("cannot listen on {} for gRPC", config.listen)));
  }

  // Queue listeners run only when routes are configured.
  const bool serve_queues = !config.queues.routes.empty();
  queue::WorkerService worker_service(**queues, routes);
  std::unique_ptr<grpc::Server> worker_server;
  int worker_port = 0;
  if (serve_queues && !config.queues.grpc_listen.empty()) {
    grpc::ServerBuilder worker_builder;
    worker_builder.AddListeningPort(
        common::JoinHostPort(*common::ParseListenAddress(config.queues.grpc_listen)),
        *worker_credentials, &worker_port);
    worker_builder.SetMaxReceiveMessageSize(static_cast<int>(config.max_request_bytes));
    worker_builder.RegisterService(&worker_service);
    worker_server = worker_builder.BuildAndStart();
    if (!worker_server || worker_port == 0) {
      server->Shutdown();
      return Fail(absl::UnavailableError(
          fmt::format("cannot listen on {} for worker gRPC (queues.pull_api.grpc_listen)",
                      config.queues.grpc_listen)));
    }
  }
  queue::HttpIngress ingress(**queues, routes, config.queues.ingress_max_body_bytes);
  queue::HttpPullApi pull_api(**queues, routes, config.queues.pull_prefix, config.queues.tls);
  int ingress_port = 0;
  int pull_port = 0;
  const auto start_http = [&](auto& listener, const std::string& address, int* port) {
    if (!serve_queues || address.empty()) return absl::OkStatus();
    absl::StatusOr<uint16_t> bound = listener.Start(address);
    if (!bound.ok()) return bound.status();
    *port = *bound;
    return absl::OkStatus();
  };
  absl::Status listening = start_http(ingress, config.queues.ingress_listen, &ingress_port);
  if (listening.ok()) listening = start_http(pull_api, config.queues.pull_listen, &pull_port);
  if (!listening.ok()) {
    if (worker_server) worker_server->Shutdown();
    server->Shutdown();
    return Fail(listening);
  }

  common::HttpServer http;
  http.Handle("GET", "/metrics", [&cluster, &queues, &releases](const common::HttpRequest&) {
    common::PrometheusTextWriter writer;
    WriteMetrics(**cluster, writer);
    WriteQueueMetrics(**queues, writer);
    WriteReleaseMetrics(**releases, writer);
    return common::HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", writer.text()};
  });
  http.Handle("GET", "/healthz", [](const common::HttpRequest&) {
    return common::HttpResponse{200, "text/plain; charset=utf-8", "ok\n"};
  });
  int http_port = 0;
  if (!config.http_listen.empty()) {
    absl::StatusOr<uint16_t> bound = http.Start(config.http_listen);
    if (!bound.ok()) {
      server->Shutdown();
      return Fail(bound.status());
    }
    http_port = *bound;
  }
  if (!flags.ports_file.empty()) {
    const std::string ports = nlohmann::json{
        {"grpc", grpc_port},
        {"http", http_port},
        {"ingress", ingress_port},
        {"pull", pull_port},
        {"worker_grpc",
         worker_port}}.dump();
    if (absl::Status status = common::WriteFileAtomically(flags.ports_file, ports, 0644);
        !status.ok()) {
      server->Shutdown();
      return Fail(status);
    }
  }

  cluster::HealthPoller poller(**cluster, dialer, config.health_poll_interval,
                               config.health_poll_timeout);
  poller.Start();
  spdlog::info(
      "pi-controller {} serving ControlPlane and Admin on {} (port {}), metrics on {} (port {}); "
      "CA pin {}",
      PI_VERSION, config.listen, grpc_port, config.http_listen, http_port, pki->ca.pin());
  if (serve_queues) {
    spdlog::info("queues: {} routes; ingress port {}, HTTP pull port {}, worker gRPC port {} ({})",
                 config.queues.routes.size(), ingress_port, pull_port, worker_port,
                 config.queues.tls.cert_file.empty()     ? "plaintext"
                 : config.queues.tls.require_client_cert ? "mTLS"
                                                         : "TLS");
  }
  if (absl::Status status = common::SdNotify("READY=1\nSTATUS=serving"); !status.ok()) {
    spdlog::warn("{}", std::string(status.message()));
  }

  // The run loop: wakes for a signal, the cluster's tick, or the watchdog.
  const auto watchdog = common::WatchdogPingInterval();
  const auto tick_interval = std::min<std::chrono::nanoseconds>(
      std::chrono::seconds(1), std::chrono::nanoseconds(config.cluster.heartbeat_interval) / 2);
  auto next_ping = std::chrono::steady_clock::now();
  auto next_tick = std::chrono::steady_clock::now() + tick_interval;
  int received = 0;
  while (received == 0) {
    auto now = std::chrono::steady_clock::now();
    if (now >= next_tick) {
      if (absl::Status status = (*cluster)->Tick(); !status.ok()) {
        spdlog::error("cluster tick: {}", std::string(status.message()));
      }
      next_tick = now + tick_interval;
    }
    auto wake = next_tick;
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
  }

  spdlog::info("received {}, shutting down", strsignal(received));
  common::SdNotify("STOPPING=1").IgnoreError();
  server->GetHealthCheckService()->SetServingStatus(false);
  // Answers every long-polling worker and commits what is pending before the listeners close.
  (*queues)->Shutdown();
  ingress.Stop();
  pull_api.Stop();
  admin_service.Shutdown();
  runner_service.Shutdown();
  // Ends runner streams and follows; unfinished releases are settled at the next start.
  (*releases)->Shutdown();
  poller.Stop();
  // One deadline for both servers: calls still running then are cancelled, and clients that keep
  // idle connections open (which gRPC waits for until the deadline) cannot hold the stop longer.
  const auto grpc_deadline = std::chrono::system_clock::now() + std::chrono::seconds(2);
  if (worker_server) worker_server->Shutdown(grpc_deadline);
  server->Shutdown(grpc_deadline);
  http.Stop();
  if (absl::Status status = (*cluster)->Tick(); !status.ok()) {
    spdlog::error("writing the last heartbeats: {}", std::string(status.message()));
  }
  spdlog::info("stopped");
  return 0;
}

}  // namespace
}  // namespace pi::controlplane

int main(int argc, char** argv) {
  pi::common::UseSystemResolver();
  // Before any thread exists, so every thread inherits the mask and only the run loop takes
  // shutdown signals.
  const sigset_t signals = pi::controlplane::ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  pi::controlplane::Flags flags;
  CLI::App app{"pi-controller: the Pi-Controller control plane"};
  app.add_option("-c,--config", flags.config_path, "Configuration file")->capture_default_str();
  app.add_option("--log-level", flags.log_level, "Override log_level: trace|debug|info|warn|error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app.add_option("--ports-file", flags.ports_file,
                 "Write the bound ports as JSON {\"grpc\":N,\"http\":N,\"ingress\":N,\"pull\":N,"
                 "\"worker_grpc\":N} here once listening (0 = off)");
  app.add_flag("--check-config", flags.check_config,
               "Validate the configuration, CA, certificates and store, then exit");
  auto* init = app.add_subcommand(
      "init", "Create the cluster CA and the controller certificate in state_dir, then exit");
  auto* issue_admin = app.add_subcommand(
      "issue-admin", "Issue an admin certificate and a pictl config into a directory");
  issue_admin->add_option("name", flags.admin_name, "Admin name (the identity is admin:NAME)")
      ->required();
  issue_admin
      ->add_option("--out", flags.admin_out, "Directory for ca.crt, admin.crt/key, config.json")
      ->required();
  issue_admin->add_option("--address", flags.admin_address,
                          "Controller address pictl should use (default: from listen)");
  app.set_version_flag("--version", std::string("pi-controller ") + PI_VERSION);
  CLI11_PARSE(app, argc, argv);

  const bool default_path = flags.config_path == pi::controlplane::kDefaultConfigPath;
  absl::StatusOr<pi::controlplane::ControllerConfig> config =
      pi::controlplane::LoadControllerConfig(flags.config_path, default_path);
  if (!config.ok()) return pi::controlplane::Fail(config.status());
  if (!flags.log_level.empty()) config->log_level = flags.log_level;
  if (*init) return pi::controlplane::Init(*config);
  if (*issue_admin) return pi::controlplane::IssueAdmin(*config, flags);
  return pi::controlplane::Serve(*config, flags, signals);
}
