// Benchmark: heartbeats per second the real pi-controller absorbs from 1,000 simulated agents, and
// its CPU and memory while doing so. One process simulates every node: each joins with a token and
// its own CSR, then heartbeats over its own mTLS connection (its certificate is bound to
// node:<id>), using gRPC's callback API so a few threads drive every connection.
//
// Phases: idle (the controller with no node), join (every node registers), first heartbeat (every
// node opens its connection), "paced" (each node heartbeats once per interval, staggered as agents
// that joined at different times are: 1,000 heartbeats/s offered by default) and "saturated"
// (every node keeps exactly one heartbeat in flight). Prints one JSON object. It asserts nothing
// about timings (the build machines are shared); it fails only when the controller cannot be run,
// a node cannot join, nodes share a connection, a heartbeat is refused, a node is not READY at
// the end, or the controller does not exit cleanly on SIGTERM.
//
//   controller_heartbeat_bench --controller PATH [--nodes 1000] [--paced-seconds 10]
//       [--saturated-seconds 10] [--paced-interval 1] [--controller-heartbeat 1]
//       [--join-concurrency 16]
// Defaults can also come from the environment, for quick local runs: PI_BENCH_NODES,
// PI_BENCH_PACED_SECONDS, PI_BENCH_SATURATED_SECONDS, PI_BENCH_PACED_INTERVAL_SECONDS,
// PI_BENCH_CONTROLLER_HEARTBEAT_SECONDS, PI_BENCH_JOIN_CONCURRENCY.
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>

#include "absl/status/statusor.h"
#include "common/system/child_process.h"
#include "common/tls/credentials.h"
#include "common/tls/x509.h"
#include "picontroller/v1/admin.grpc.pb.h"
#include "picontroller/v1/control_plane.grpc.pb.h"
#include "tests/bench/bench_support.h"
#include "tests/common/test_dir.h"

namespace {

namespace pb = picontroller::v1;
using Clock = std::chrono::steady_clock;

// A heartbeat slower than this is counted as an error; generous, so that only a stuck
// controller, never a busy machine, produces one.
constexpr auto kCallDeadline = std::chrono::seconds(20);

double Seconds(Clock::duration duration) { return std::chrono::duration<double>(duration).count(); }

long OpenFiles(pid_t pid) {
  std::error_code error;
  long count = 0;
  for (std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", error), end;
       !error && it != end; it.increment(error)) {
    ++count;
  }
  return count;
}

// ESTABLISHED connections whose remote port is `port`: the client ends of connections to the
// controller, which tells whether every simulated node really has a connection of its own. gRPC
// dials 127.0.0.1 from IPv6 sockets with v4-mapped addresses where it can, hence both tables.
int EstablishedTo(int port) {
  int count = 0;
  for (const char* path : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::istringstream table(pi::bench::ReadWholeFile(path));
    std::string line;
    std::getline(table, line);  // header
    while (std::getline(table, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state;
      fields >> slot >> local >> remote >> state;
      const size_t colon = remote.find(':');
      if (state == "01" && colon != std::string::npos &&
          std::stoi(remote.substr(colon + 1), nullptr, 16) == port) {
        ++count;
      }
    }
  }
  return count;
}

struct SimNode {
  std::string hostname;
  std::string key_pem;
  std::string csr_pem;
  std::string node_id;
  std::unique_ptr<pb::ControlPlane::Stub> stub;
  pb::HealthReport report;
  // The next paced heartbeat; only the pacing thread touches it.
  Clock::time_point next_due;
  std::atomic<bool> in_flight{false};
};

enum class Mode { kOnce, kPaced, kSaturated };

// One phase of heartbeats: counts, latencies and errors, and when to send the next call.
class Phase {
 public:
  explicit Phase(Mode mode) : mode_(mode) {}

  void Send(SimNode& node);

  void Completed(SimNode& node, const grpc::Status& status, Clock::duration latency) {
    {
      std::lock_guard lock(mu_);
      if (status.ok()) {
        latencies_us_.push_back(
            static_cast<float>(std::chrono::duration<double, std::micro>(latency).count()));
        if (measuring_) ++completed_in_window_;
      } else {
        ++errors_[status.error_code()];
        if (first_error_.empty()) {
          first_error_ = node.node_id + ": " + status.error_message() + " (code " +
                         std::to_string(static_cast<int>(status.error_code())) + ")";
        }
      }
    }
    node.in_flight = false;
    if (mode_ == Mode::kSaturated && accepting_) {
      Send(node);
      return;
    }
    std::lock_guard lock(mu_);
    if (--outstanding_ == 0) idle_.notify_all();
  }

  void BeginWindow() {
    std::lock_guard lock(mu_);
    measuring_ = true;
  }
  // Ends the measured window and stops further sends.
  void EndWindow() {
    accepting_ = false;
    std::lock_guard lock(mu_);
    measuring_ = false;
  }
  bool WaitIdle(Clock::duration limit) {
    std::unique_lock lock(mu_);
    return idle_.wait_for(lock, limit, [this] { return outstanding_ == 0; });
  }
  void AddOutstanding() {
    std::lock_guard lock(mu_);
    ++outstanding_;
  }

  void Skipped() { ++skipped_; }
  int64_t skipped() const { return skipped_; }
  int64_t sent() const { return sent_; }
  int64_t completed_in_window() const { return completed_in_window_; }
  std::vector<float>& latencies_us() { return latencies_us_; }
  int64_t error_count() const {
    int64_t total = 0;
    for (const auto& [code, count] : errors_) total += count;
    return total;
  }
  // Errors other than running out of the (generous) deadline mean the controller refused a
  // heartbeat it should have taken.
  int64_t refusals() const {
    int64_t total = 0;
    for (const auto& [code, count] : errors_) {
      if (code != grpc::StatusCode::DEADLINE_EXCEEDED) total += count;
    }
    return total;
  }
  nlohmann::json ErrorsJson() const {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [code, count] : errors_) out[std::to_string(static_cast<int>(code))] = count;
    return out;
  }
  const std::string& first_error() const { return first_error_; }

 private:
  const Mode mode_;
  std::atomic<bool> accepting_{true};
  std::atomic<int64_t> sent_{0};
  std::atomic<int64_t> skipped_{0};
  std::mutex mu_;
  std::condition_variable idle_;
  int64_t outstanding_ = 0;
  bool measuring_ = false;
  int64_t completed_in_window_ = 0;
  std::vector<float> latencies_us_;
  std::map<grpc::StatusCode, int64_t> errors_;
  std::string first_error_;
};

// One ReportHealth call; deletes itself when gRPC is done with it.
class Heartbeat final : public grpc::ClientUnaryReactor {
 public:
  Heartbeat(SimNode& node, Phase& phase) : node_(node), phase_(phase) {
    context_.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
  }

  void Start() {
    started_ = Clock::now();
    node_.stub->async()->ReportHealth(&context_, &node_.report, &response_, this);
    StartCall();
  }

  void OnDone(const grpc::Status& status) override {
    const Clock::duration latency = Clock::now() - started_;
    SimNode& node = node_;
    Phase& phase = phase_;
    delete this;
    phase.Completed(node, status, latency);
  }

 private:
  SimNode& node_;
  Phase& phase_;
  grpc::ClientContext context_;
  google::protobuf::Empty response_;
  Clock::time_point started_;
};

void Phase::Send(SimNode& node) {
  node.in_flight = true;
  ++sent_;
  (new Heartbeat(node, *this))->Start();
}

// What a Raspberry Pi 4 agent would report, varied a little per node.
pb::HealthSummary Summary(int index) {
  pb::HealthSummary summary;
  summary.set_status(pb::HealthStatus::OK);
  summary.set_cpu_usage_percent(5.0 + index % 40);
  summary.set_memory_total_bytes(4ull << 30);
  summary.set_memory_available_bytes((3ull << 30) - static_cast<uint64_t>(index) * 4096);
  summary.set_load1(0.1 * (index % 20));
  summary.set_max_temperature_celsius(45.0 + index % 15);
  summary.set_root_filesystem_available_bytes(20ull << 30);
  summary.mutable_uptime()->set_seconds(3600 + index);
  summary.set_agent_version("bench");
  return summary;
}

// Call only once the phase has drained: it reads the latencies the callbacks write.
nlohmann::json PhaseJson(Phase& phase, double window_seconds, double controller_cpu_seconds,
                         double client_cpu_seconds, double controller_rss_mib, pid_t controller) {
  auto& latencies = phase.latencies_us();
  return {
      {"seconds", window_seconds},
      {"sent", phase.sent()},
      {"heartbeats_per_second", phase.completed_in_window() / window_seconds},
      {"latency_ms_p50", pi::bench::Percentile(latencies, 0.50) / 1000},
      {"latency_ms_p99", pi::bench::Percentile(latencies, 0.99) / 1000},
      {"latency_ms_max",
       latencies.empty() ? 0.0 : *std::max_element(latencies.begin(), latencies.end()) / 1000},
      {"errors", phase.error_count()},
      {"errors_by_code", phase.ErrorsJson()},
      {"controller_cpu_percent", 100 * controller_cpu_seconds / window_seconds},
      {"controller_cpu_us_per_heartbeat",
       phase.completed_in_window() > 0 ? 1e6 * controller_cpu_seconds / phase.completed_in_window()
                                       : 0.0},
      {"controller_rss_mib", controller_rss_mib},
      {"controller_threads", pi::bench::StatusField(controller, "Threads")},
      {"bench_client_cpu_percent", 100 * client_cpu_seconds / window_seconds},
  };
}

struct Options {
  std::string controller_path;
  int nodes = pi::bench::FromEnv("PI_BENCH_NODES", 1000);
  double paced_seconds = pi::bench::FromEnv("PI_BENCH_PACED_SECONDS", 10.0);
  double saturated_seconds = pi::bench::FromEnv("PI_BENCH_SATURATED_SECONDS", 10.0);
  int join_concurrency = pi::bench::FromEnv("PI_BENCH_JOIN_CONCURRENCY", 16);
  // How often each node heartbeats in the paced phase.
  double paced_interval_seconds = pi::bench::FromEnv("PI_BENCH_PACED_INTERVAL_SECONDS", 1.0);
  // The controller's cluster.heartbeat_interval (what it tells agents); whole seconds, at least 1.
  int controller_heartbeat_seconds = pi::bench::FromEnv("PI_BENCH_CONTROLLER_HEARTBEAT_SECONDS", 1);
};

// Every call has a deadline, so this returns once gRPC works at all; the phase must outlive its
// calls, which is why a phase that does not drain ends the process.
void Drain(Phase& phase, const char* name) {
  if (!phase.WaitIdle(kCallDeadline + std::chrono::seconds(40))) {
    std::fprintf(stderr, "controller_heartbeat_bench: heartbeats of the %s phase never finished\n",
                 name);
    std::abort();
  }
}

absl::Status CheckRefusals(Phase& phase, const char* name) {
  if (phase.refusals() == 0) return absl::OkStatus();
  return absl::InternalError(std::string("the controller refused heartbeats in the ") + name +
                             " phase: " + phase.first_error());
}

absl::StatusOr<nlohmann::json> Run(const Options& options) {
  // Every simulated node holds a socket here and the controller one more each.
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = std::min<rlim_t>(files.rlim_max, 1 << 16);
    setrlimit(RLIMIT_NOFILE, &files);
  }

  pi::testing::TempDir dir;
  const std::string state_dir = (dir.path() / "state").string();
  const std::string admin_dir = (dir.path() / "admin").string();
  const std::string ports_file = (dir.path() / "ports.json").string();
  // The heartbeat interval agents are told (1 s, the minimum, by default), and no HealthCheck
  // polls of the simulated agents (they have no listener) during the run, so what is measured is
  // the heartbeat path.
  const std::string config = dir.Write(
      "controller.json",
      nlohmann::json{
          {"state_dir", state_dir},
          {"listen", "127.0.0.1:0"},
          {"http_listen", "127.0.0.1:0"},
          {"log_level", "warn"},
          {"cluster",
           {{"heartbeat_interval", std::to_string(options.controller_heartbeat_seconds) + "s"},
            {"heartbeat_ttl",
             std::to_string(std::max(15, 3 * options.controller_heartbeat_seconds)) + "s"},
            {"down_grace", "5s"},
            {"health_poll_interval", "1h"}}}}
          .dump());

  if (absl::Status status =
          pi::bench::RunToCompletion({options.controller_path, "--config", config, "issue-admin",
                                      "bench", "--out", admin_dir});
      !status.ok()) {
    return status;
  }
  absl::StatusOr<std::unique_ptr<pi::bench::Daemon>> started = pi::bench::Daemon::Start(
      {options.controller_path, "--config", config, "--ports-file", ports_file});
  if (!started.ok()) return started.status();
  std::unique_ptr<pi::bench::Daemon> controller = *std::move(started);
  const pid_t pid = controller->pid();
  int port = 0;
  for (auto deadline = Clock::now() + std::chrono::seconds(30); port == 0;) {
    if (Clock::now() > deadline || controller->exited()) {
      return absl::FailedPreconditionError("pi-controller did not start: " + controller->output());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    port = pi::bench::PortFromFile(ports_file, "grpc");
  }
  const std::string target = "127.0.0.1:" + std::to_string(port);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const double idle_rss = pi::bench::StatusMib(pid, "VmRSS");
  // What the controller costs with no node at all, for comparison with the phases.
  const double idle_cpu_before = pi::bench::ProcessCpuSeconds(pid);
  const auto idle_started = Clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const double idle_cpu_percent = 100 * (pi::bench::ProcessCpuSeconds(pid) - idle_cpu_before) /
                                  Seconds(Clock::now() - idle_started);

  auto admin_credentials = pi::common::MakeChannelCredentials(
      {admin_dir + "/ca.crt", admin_dir + "/admin.crt", admin_dir + "/admin.key"});
  if (!admin_credentials.ok())
    return absl::FailedPreconditionError(std::string(admin_credentials.status().message()));
  auto admin = pb::Admin::NewStub(grpc::CreateChannel(target, *admin_credentials));
  pb::CreateJoinTokenResponse token;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    pb::CreateJoinTokenRequest request;
    request.set_description("controller_heartbeat_bench");
    if (auto status = admin->CreateJoinToken(&context, request, &token); !status.ok()) {
      return absl::FailedPreconditionError("CreateJoinToken failed: " + status.error_message());
    }
  }

  // Keys and CSRs are the agents' work, not the controller's: made before the clock starts.
  std::vector<std::unique_ptr<SimNode>> nodes;
  for (int i = 0; i < options.nodes; ++i) {
    auto node = std::make_unique<SimNode>();
    char hostname[32];
    std::snprintf(hostname, sizeof(hostname), "bench-%04d", i + 1);
    node->hostname = hostname;
    auto key = pi::common::GenerateEcPrivateKeyPem();
    if (!key.ok()) return absl::FailedPreconditionError(std::string(key.status().message()));
    node->key_pem = *key;
    auto csr = pi::common::CreateCsr(node->key_pem, node->hostname, {});
    if (!csr.ok()) return absl::FailedPreconditionError(std::string(csr.status().message()));
    node->csr_pem = *csr;
    nodes.push_back(std::move(node));
  }

  // Join: a few agents at a time, each over its own connection without a client certificate.
  auto join_credentials = pi::common::MakeChannelCredentials({admin_dir + "/ca.crt", "", ""});
  if (!join_credentials.ok())
    return absl::FailedPreconditionError(std::string(join_credentials.status().message()));
  std::atomic<int> next{0};
  std::mutex join_mu;
  std::string join_error;
  std::chrono::seconds heartbeat_interval{0};
  const auto join_started = Clock::now();
  {
    std::vector<std::thread> workers;
    for (int w = 0; w < options.join_concurrency; ++w) {
      workers.emplace_back([&, w] {
        grpc::ChannelArguments arguments;
        arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
        arguments.SetInt("pi.bench_join_worker", w);
        auto stub = pb::ControlPlane::NewStub(
            grpc::CreateCustomChannel(target, *join_credentials, arguments));
        for (int i = next++; i < options.nodes; i = next++) {
          SimNode& node = *nodes[i];
          grpc::ClientContext context;
          context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
          pb::NodeRegistration request;
          request.set_join_token(token.token());
          request.set_hostname(node.hostname);
          request.set_agent_address("127.0.0.1:1");
          request.set_csr_pem(node.csr_pem);
          (*request.mutable_facts())["arch"] = "aarch64";
          (*request.mutable_facts())["model"] = "Raspberry Pi 4 Model B";
          pb::RegistrationResponse response;
          grpc::Status status = stub->RegisterNode(&context, request, &response);
          std::lock_guard lock(join_mu);
          if (!status.ok() || !response.accepted()) {
            if (join_error.empty()) {
              join_error = node.hostname + ": " +
                           (status.ok() ? "refused: " + response.reason()
                                        : status.error_message() + " (code " +
                                              std::to_string(status.error_code()) + ")");
            }
            next = options.nodes;
            return;
          }
          heartbeat_interval = std::chrono::seconds(response.heartbeat_interval().seconds());
          node.node_id = response.node_id();
          auto credentials = grpc::SslCredentials(
              {response.ca_bundle_pem(), node.key_pem, response.certificate_pem()});
          // A subchannel pool of its own: each simulated node gets its own TLS connection, as
          // separate Pis would, instead of channels with equal arguments sharing one.
          grpc::ChannelArguments node_arguments;
          node_arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
          node.stub = pb::ControlPlane::NewStub(
              grpc::CreateCustomChannel(target, credentials, node_arguments));
          node.report.set_node_id(node.node_id);
          *node.report.mutable_summary() = Summary(i);
        }
      });
    }
    for (auto& worker : workers) worker.join();
  }
  const double join_seconds = Seconds(Clock::now() - join_started);
  if (!join_error.empty())
    return absl::FailedPreconditionError("RegisterNode failed: " + join_error);
  if (heartbeat_interval <= std::chrono::seconds(0)) {
    return absl::FailedPreconditionError("RegisterNode returned no heartbeat_interval");
  }
  const double joined_rss = pi::bench::StatusMib(pid, "VmRSS");

  // First heartbeat of every node at once: each opens its mTLS connection.
  const auto connect_started = Clock::now();
  Phase first(Mode::kOnce);
  for (auto& node : nodes) {
    first.AddOutstanding();
    first.Send(*node);
  }
  Drain(first, "first-heartbeat");
  const double first_heartbeat_seconds = Seconds(Clock::now() - connect_started);
  if (absl::Status status = CheckRefusals(first, "first-heartbeat"); !status.ok()) return status;
  const int connections = EstablishedTo(port);
  if (connections < options.nodes) {
    return absl::FailedPreconditionError("only " + std::to_string(connections) +
                                         " connections for " + std::to_string(options.nodes) +
                                         " nodes: channels share connections");
  }

  // Paced: node i heartbeats at offset i/N of the interval, then every interval, as agents that
  // joined at different times do. A node whose last heartbeat is still in flight skips its turn.
  const auto paced_interval = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(options.paced_interval_seconds));
  Phase paced(Mode::kPaced);
  double paced_cpu = 0;
  double paced_client_cpu = 0;
  double paced_window = 0;
  {
    const auto start = Clock::now();
    for (size_t i = 0; i < nodes.size(); ++i) {
      nodes[i]->next_due =
          start + paced_interval * static_cast<long>(i) / static_cast<long>(nodes.size());
    }
    const auto end = start + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(options.paced_seconds));
    const double cpu_before = pi::bench::ProcessCpuSeconds(pid);
    const double client_before = pi::bench::SelfCpuSeconds();
    paced.BeginWindow();
    while (Clock::now() < end) {
      const auto now = Clock::now();
      for (auto& node : nodes) {
        if (node->next_due > now) continue;
        node->next_due += paced_interval;
        if (node->in_flight) {
          paced.Skipped();
          continue;
        }
        paced.AddOutstanding();
        paced.Send(*node);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    paced.EndWindow();
    paced_window = Seconds(Clock::now() - start);
    paced_cpu = pi::bench::ProcessCpuSeconds(pid) - cpu_before;
    paced_client_cpu = pi::bench::SelfCpuSeconds() - client_before;
  }
  const double paced_rss = pi::bench::StatusMib(pid, "VmRSS");
  Drain(paced, "paced");
  nlohmann::json paced_json =
      PhaseJson(paced, paced_window, paced_cpu, paced_client_cpu, paced_rss, pid);
  paced_json["offered_per_second"] = paced.sent() / paced_window;
  paced_json["skipped_in_flight"] = paced.skipped();
  if (absl::Status status = CheckRefusals(paced, "paced"); !status.ok()) return status;

  // Saturated: every node keeps one heartbeat in flight.
  Phase saturated(Mode::kSaturated);
  double saturated_window = 0;
  double saturated_cpu = 0;
  double saturated_client_cpu = 0;
  {
    const double cpu_before = pi::bench::ProcessCpuSeconds(pid);
    const double client_before = pi::bench::SelfCpuSeconds();
    const auto start = Clock::now();
    saturated.BeginWindow();
    for (auto& node : nodes) {
      saturated.AddOutstanding();
      saturated.Send(*node);
    }
    std::this_thread::sleep_until(start +
                                  std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(options.saturated_seconds)));
    saturated.EndWindow();
    saturated_window = Seconds(Clock::now() - start);
    saturated_cpu = pi::bench::ProcessCpuSeconds(pid) - cpu_before;
    saturated_client_cpu = pi::bench::SelfCpuSeconds() - client_before;
  }
  const double saturated_rss = pi::bench::StatusMib(pid, "VmRSS");
  const long open_files = OpenFiles(pid);
  Drain(saturated, "saturated");
  nlohmann::json saturated_json = PhaseJson(saturated, saturated_window, saturated_cpu,
                                            saturated_client_cpu, saturated_rss, pid);
  saturated_json["controller_open_files"] = open_files;
  if (absl::Status status = CheckRefusals(saturated, "saturated"); !status.ok()) return status;

  // Every node must have been taken in: all READY, none lost.
  pb::ListNodesResponse listed;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    if (auto status = admin->ListNodes(&context, pb::ListNodesRequest(), &listed); !status.ok()) {
      return absl::FailedPreconditionError("ListNodes failed: " + status.error_message());
    }
  }
  int ready = 0;
  std::map<std::string, int> states;
  for (const pb::Node& node : listed.nodes()) {
    ++states[pb::NodeState_Name(node.state())];
    if (node.state() == pb::NODE_STATE_READY) ++ready;
  }
  const double peak_rss = pi::bench::StatusMib(pid, "VmHWM");

  // Close every node's connection, then stop the controller the way systemd does.
  nodes.clear();
  admin.reset();
  const auto stop_started = Clock::now();
  std::optional<pi::common::ExitStatus> exit = controller->Stop(std::chrono::seconds(10));
  const double stop_seconds = Seconds(Clock::now() - stop_started);
  const bool clean_exit = exit.has_value() && exit->exit_code == 0;

  nlohmann::json result = {
      {"benchmark", "controller_heartbeats"},
      {"transport", "grpc+mtls loopback, one connection per node"},
      {"nodes", options.nodes},
      {"controller_heartbeat_interval_seconds", heartbeat_interval.count()},
      {"paced_interval_seconds", options.paced_interval_seconds},
      {"controller_idle_cpu_percent", idle_cpu_percent},
      {"join_concurrency", options.join_concurrency},
      {"join_seconds", join_seconds},
      {"joins_per_second", options.nodes / join_seconds},
      {"first_heartbeat_seconds", first_heartbeat_seconds},
      {"connections", connections},
      {"paced", paced_json},
      {"saturated", saturated_json},
      {"ready_nodes", ready},
      {"listed_nodes", listed.nodes_size()},
      {"node_states", states},
      {"controller_idle_rss_mib", idle_rss},
      {"controller_rss_after_join_mib", joined_rss},
      {"controller_peak_rss_mib", peak_rss},
      {"controller_stop_seconds", stop_seconds},
      {"controller_clean_exit", clean_exit},
  };
  if (ready != options.nodes) {
    return absl::FailedPreconditionError(std::to_string(ready) + " of " +
                                         std::to_string(options.nodes) +
                                         " nodes READY after the run: " + result.dump());
  }
  if (!clean_exit) {
    return absl::FailedPreconditionError("pi-controller did not exit cleanly on SIGTERM: " +
                                         controller->output() + "\n" + result.dump());
  }
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app{"Heartbeats the real pi-controller absorbs from many simulated agents"};
  app.add_option("--controller", options.controller_path, "pi-controller binary")->required();
  app.add_option("--nodes", options.nodes, "simulated agents ($PI_BENCH_NODES)")
      ->capture_default_str()
      ->check(CLI::Range(1, 9999));
  app.add_option("--paced-seconds", options.paced_seconds,
                 "paced phase length ($PI_BENCH_PACED_SECONDS)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 600.0));
  app.add_option("--saturated-seconds", options.saturated_seconds,
                 "saturated phase length ($PI_BENCH_SATURATED_SECONDS)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 600.0));
  app.add_option("--paced-interval", options.paced_interval_seconds,
                 "seconds between a node's heartbeats in the paced phase "
                 "($PI_BENCH_PACED_INTERVAL_SECONDS)")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 60.0));
  app.add_option("--controller-heartbeat", options.controller_heartbeat_seconds,
                 "the controller's cluster.heartbeat_interval in seconds "
                 "($PI_BENCH_CONTROLLER_HEARTBEAT_SECONDS)")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  app.add_option("--join-concurrency", options.join_concurrency,
                 "registrations in flight at once ($PI_BENCH_JOIN_CONCURRENCY)")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  CLI11_PARSE(app, argc, argv);
  // ChildProcess never searches PATH; accept a path relative to the working directory too.
  options.controller_path = std::filesystem::absolute(options.controller_path).string();
  const absl::StatusOr<nlohmann::json> result = Run(options);
  if (!result.ok()) {
    std::fprintf(stderr, "controller_heartbeat_bench: %s\n",
                 std::string(result.status().message()).c_str());
    return 1;
  }
  std::printf("%s\n", result->dump().c_str());
  return 0;
}
