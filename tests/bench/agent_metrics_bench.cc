// Benchmark: GetSystemMetrics throughput and cost on the real pi-agent over mTLS, and the agent's
// resident memory when idle. Prints one JSON object; it asserts nothing about timings (the build
// machines are shared), it only fails when the agent cannot be started or called.
//
//   agent_metrics_bench --agent PATH --source-dir DIR [--seconds 3] [--clients 1]
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "common/system/child_process.h"
#include "common/tls/credentials.h"
#include "picontroller/v1/agent.grpc.pb.h"
#include "tests/bench/bench_support.h"
#include "tests/common/test_dir.h"

namespace {

using Clock = std::chrono::steady_clock;

// Memory figures in MiB from /proc/<pid>/smaps_rollup. Rss counts every resident page, including
// clean pages of shared libraries (libgrpc, libcrypto, ...) that other processes share and the
// kernel can drop; Private_* is what this process alone holds; Pss splits shared pages fairly.
struct Memory {
  double rss_mib = 0;
  double private_mib = 0;
  double pss_mib = 0;
  double shared_clean_mib = 0;
};

Memory MemoryOf(pid_t pid) {
  std::istringstream rollup(
      pi::bench::ReadWholeFile("/proc/" + std::to_string(pid) + "/smaps_rollup"));
  Memory memory;
  std::string key;
  long kib = 0;
  std::string unit;
  while (rollup >> key) {
    if (key.back() != ':' || !(rollup >> kib >> unit)) {
      rollup.clear();
      rollup.ignore(1 << 20, '\n');
      continue;
    }
    const double mib = kib / 1024.0;
    if (key == "Rss:") memory.rss_mib = mib;
    if (key == "Pss:") memory.pss_mib = mib;
    if (key == "Private_Clean:" || key == "Private_Dirty:") memory.private_mib += mib;
    if (key == "Shared_Clean:") memory.shared_clean_mib = mib;
  }
  return memory;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "agent_metrics_bench: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string agent_path;
  std::string source_dir;
  double seconds = 3;
  int clients = 1;
  CLI::App app{"GetSystemMetrics benchmark against the real pi-agent"};
  app.add_option("--agent", agent_path, "pi-agent binary")->required();
  app.add_option("--source-dir", source_dir, "repository root (for deploy/pki.sh)")->required();
  app.add_option("--seconds", seconds, "measurement time")->capture_default_str();
  app.add_option("--clients", clients, "concurrent client threads")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  // ChildProcess never searches PATH; accept a path relative to the working directory too.
  agent_path = std::filesystem::absolute(agent_path).string();

  pi::testing::TempDir dir;
  const std::string pki = (dir.path() / "pki").string();
  const std::string pki_sh = source_dir + "/deploy/pki.sh";
  for (const std::string& args :
       {"init " + pki, "issue " + pki + " agent node:bench --ip 127.0.0.1",
        "issue " + pki + " controller controller"}) {
    if (std::system((pki_sh + " " + args + " 2>/dev/null").c_str()) != 0) {
      return Fail("deploy/pki.sh " + args + " failed");
    }
  }
  const std::string ports_file = (dir.path() / "ports.json").string();
  const std::string config =
      dir.Write("agent.json", nlohmann::json{{"listen", "127.0.0.1:0"},
                                             {"http_listen", "127.0.0.1:0"},
                                             {"log_level", "warn"},
                                             {"tls",
                                              {{"cert_file", pki + "/agent.crt"},
                                               {"key_file", pki + "/agent.key"},
                                               {"ca_file", pki + "/ca.crt"}}},
                                             {"gpio", {{"backend", "simulated"}}}}
                                  .dump());

  auto agent = pi::common::ChildProcess::Spawn(
      {{agent_path, "--config", config, "--ports-file", ports_file}, "", {}, ""});
  if (!agent.ok()) return Fail(std::string(agent.status().message()));
  const pid_t pid = (*agent)->pid();

  int port = 0;
  std::string out;
  std::string err;
  for (auto deadline = Clock::now() + std::chrono::seconds(20); port == 0;) {
    if (Clock::now() > deadline || (*agent)->LeaderExited()) {
      return Fail("pi-agent did not start: " + err);
    }
    (*agent)->Read(Clock::now() + std::chrono::milliseconds(20), &out, &err).IgnoreError();
    port = pi::bench::PortFromFile(ports_file, "grpc");
  }

  // Idle: let the sampler run a few rounds and startup allocations settle.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const Memory idle = MemoryOf(pid);

  auto credentials = pi::common::MakeChannelCredentials(
      {pki + "/ca.crt", pki + "/controller.crt", pki + "/controller.key"});
  if (!credentials.ok()) return Fail(std::string(credentials.status().message()));
  const std::string target = "127.0.0.1:" + std::to_string(port);

  auto call_once = [](picontroller::v1::NodeAgent::Stub& stub) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    picontroller::v1::SystemMetrics metrics;
    return stub.GetSystemMetrics(&context, google::protobuf::Empty(), &metrics);
  };

  std::vector<std::vector<double>> latencies(clients);
  std::vector<std::unique_ptr<picontroller::v1::NodeAgent::Stub>> stubs;
  for (int i = 0; i < clients; ++i) {
    // A channel per client, as separate controllers or admins would have.
    grpc::ChannelArguments arguments;
    arguments.SetInt("grpc.channel_id", i);
    stubs.push_back(picontroller::v1::NodeAgent::NewStub(
        grpc::CreateCustomChannel(target, *credentials, arguments)));
    for (int warm = 0; warm < 50; ++warm) {
      if (auto status = call_once(*stubs.back()); !status.ok()) {
        return Fail("GetSystemMetrics failed: " + status.error_message());
      }
    }
  }

  std::atomic<bool> failed{false};
  const double cpu_before = pi::bench::ProcessCpuSeconds(pid);
  const auto started = Clock::now();
  const auto until = started + std::chrono::duration<double>(seconds);
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      while (Clock::now() < until && !failed) {
        const auto begin = Clock::now();
        if (!call_once(*stubs[i]).ok()) failed = true;
        latencies[i].push_back(
            std::chrono::duration<double, std::micro>(Clock::now() - begin).count());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
  const double cpu_used = pi::bench::ProcessCpuSeconds(pid) - cpu_before;
  const Memory loaded = MemoryOf(pid);
  if (failed) return Fail("a GetSystemMetrics call failed during the run");

  std::vector<double> all;
  for (const auto& list : latencies) all.insert(all.end(), list.begin(), list.end());
  const double calls = static_cast<double>(all.size());
  (*agent)->KillGroup(std::chrono::milliseconds(2000));
  (*agent)->Wait().IgnoreError();

  const nlohmann::json result = {
      {"benchmark", "agent_get_system_metrics"},
      {"transport", "grpc+mtls loopback"},
      {"clients", clients},
      {"calls", all.size()},
      {"seconds", elapsed},
      {"calls_per_second", calls / elapsed},
      {"latency_us_p50", pi::bench::Percentile(all, 0.50)},
      {"latency_us_p99", pi::bench::Percentile(all, 0.99)},
      {"agent_cpu_us_per_call", cpu_used * 1e6 / calls},
      {"agent_idle_rss_mib", idle.rss_mib},
      {"agent_idle_private_mib", idle.private_mib},
      {"agent_idle_pss_mib", idle.pss_mib},
      {"agent_idle_shared_library_clean_mib", idle.shared_clean_mib},
      {"agent_rss_after_load_mib", loaded.rss_mib},
      {"agent_private_after_load_mib", loaded.private_mib},
      {"targets", {{"agent_cpu_us_per_call_max", 1000}, {"agent_idle_rss_mib_max", 15}}},
  };
  std::printf("%s\n", result.dump().c_str());
  return 0;
}
