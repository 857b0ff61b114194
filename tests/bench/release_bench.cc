// Benchmark: release dispatch of the real pi-controller (DESIGN 4.2). Ten Forest runners (the
// forest.v1 C++ stubs, each with its own runner:<name> certificate and mTLS connection) register
// for one destination type; every runner acks each WorkAssignment at once and completes it with
// SUCCESS on a thread of its own. An admin creates releases with Admin.CreateRelease.
//
// Phases:
//   sequential: one release at a time; for each, the time from just before the CreateRelease
//     call until its WorkAssignment arrives at a runner (the dispatch latency, p50/p99), the
//     CreateRelease round trip, and the time until the runner's CompleteRelease returned.
//   concurrent: --creators admins each keep one release in flight (create, wait until a runner
//     has completed it, repeat) through the ten runners: releases per second end to end.
//
// Prints one JSON object. It asserts nothing about timings (the build machines are shared); it
// fails only when the controller cannot be run, a runner is refused, a release is refused, lost
// or not SUCCEEDED, or the controller does not exit cleanly on SIGTERM. Target (issue 5): p50
// dispatch latency under 5 ms.
//
//   release_bench --controller PATH [--runners 10] [--sequential 500] [--releases 2000]
//       [--creators 20] [--max-concurrent 4] [--max-seconds 20]
// Defaults can also come from the environment, for quick local runs: PI_BENCH_RELEASE_RUNNERS,
// PI_BENCH_RELEASE_SEQUENTIAL, PI_BENCH_RELEASE_RELEASES, PI_BENCH_RELEASE_CREATORS,
// PI_BENCH_RELEASE_MAX_CONCURRENT, PI_BENCH_RELEASE_MAX_SECONDS.
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/system/child_process.h"
#include "common/tls/credentials.h"
#include "common/tls/x509.h"
#include "forest/v1/runner.grpc.pb.h"
#include "picontroller/v1/admin.grpc.pb.h"
#include "tests/bench/bench_support.h"
#include "tests/common/test_dir.h"

namespace {

namespace pb = picontroller::v1;
namespace runner_pb = forest::v1;
using Clock = std::chrono::steady_clock;

constexpr char kOrganisation[] = "bench";
constexpr char kTypeName[] = "deploy";
constexpr uint64_t kTypeVersion = 1;
// Generous limits: only a stuck server, never a busy machine, runs into them.
constexpr auto kCallDeadline = std::chrono::seconds(30);
constexpr auto kReleaseDeadline = std::chrono::seconds(60);
// Runners heartbeat this often while idle, well inside the controller's silence limit.
constexpr auto kHeartbeatInterval = std::chrono::seconds(5);
constexpr int kWarmupReleases = 20;

double Seconds(Clock::duration duration) { return std::chrono::duration<double>(duration).count(); }
double Millis(Clock::duration duration) {
  return std::chrono::duration<double, std::milli>(duration).count();
}

std::chrono::system_clock::time_point CallDeadline() {
  return std::chrono::system_clock::now() + kCallDeadline;
}

// What happened to each release, as the runners saw it: when its WorkAssignment arrived and
// whether its CompleteRelease succeeded. An assignment can arrive before CreateRelease returns,
// so entries are made by whichever side comes first.
class Tracker {
 public:
  void Assigned(const std::string& id, Clock::time_point at) {
    std::lock_guard lock(mu_);
    Entry& entry = entries_[id];
    if (!entry.assigned_at) entry.assigned_at = at;
    ++entry.assignments;
    changed_.notify_all();
  }

  void Completed(const std::string& id, const grpc::Status& status, Clock::time_point at) {
    std::lock_guard lock(mu_);
    Entry& entry = entries_[id];
    entry.completed_at = at;
    if (!status.ok()) {
      entry.error = "CompleteRelease: " + status.error_message() + " (code " +
                    std::to_string(static_cast<int>(status.error_code())) + ")";
    }
    changed_.notify_all();
  }

  struct Times {
    Clock::time_point assigned_at;
    Clock::time_point completed_at;
  };

  // Waits until the release was completed; an error for a refused completion, a second
  // assignment (nothing is rejected or lost in this bench) or a timeout.
  absl::StatusOr<Times> WaitCompleted(const std::string& id) {
    std::unique_lock lock(mu_);
    const bool done = changed_.wait_for(lock, kReleaseDeadline, [&] {
      auto it = entries_.find(id);
      return it != entries_.end() && it->second.completed_at.has_value();
    });
    if (!done) return absl::DeadlineExceededError("release " + id + " was not completed in time");
    Entry entry = entries_[id];
    entries_.erase(id);
    if (!entry.error.empty()) return absl::InternalError("release " + id + ": " + entry.error);
    if (entry.assignments != 1) {
      return absl::InternalError("release " + id + " was assigned " +
                                 std::to_string(entry.assignments) + " times");
    }
    return Times{*entry.assigned_at, *entry.completed_at};
  }

 private:
  struct Entry {
    std::optional<Clock::time_point> assigned_at;
    std::optional<Clock::time_point> completed_at;
    int assignments = 0;
    std::string error;
  };
  std::mutex mu_;
  std::condition_variable changed_;
  std::unordered_map<std::string, Entry> entries_;
};

// One runner: a RegisterRunner stream read on one thread (which acks each assignment at once)
// and a thread that completes the assigned releases and heartbeats while idle.
class Runner {
 public:
  Runner(std::string name, const std::shared_ptr<grpc::ChannelCredentials>& credentials,
         const std::string& target, int max_concurrent, Tracker& tracker)
      : name_(std::move(name)), max_concurrent_(max_concurrent), tracker_(tracker) {
    // A subchannel pool of its own: each runner gets its own TLS connection, as separate
    // machines would.
    grpc::ChannelArguments arguments;
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    stub_ = runner_pb::RunnerService::NewStub(
        grpc::CreateCustomChannel(target, credentials, arguments));
  }

  ~Runner() { Stop(); }

  // Registers and waits for the RegisterAck.
  absl::Status Start() {
    stream_ = stub_->RegisterRunner(&context_);
    runner_pb::RunnerMessage hello;
    runner_pb::RunnerRegister* registration = hello.mutable_register_();
    registration->set_runner_id(name_);
    registration->set_max_concurrent(max_concurrent_);
    runner_pb::DestinationCapability* capability = registration->add_capabilities();
    capability->set_organisation(kOrganisation);
    capability->set_name(kTypeName);
    capability->set_version(kTypeVersion);
    if (!stream_->Write(hello)) return absl::UnavailableError(name_ + ": cannot send register");
    runner_pb::ServerMessage reply;
    if (!stream_->Read(&reply)) {
      const grpc::Status status = stream_->Finish();
      stream_.reset();
      return absl::UnavailableError(name_ +
                                    ": stream ended before RegisterAck: " + status.error_message());
    }
    if (!reply.has_register_ack() || !reply.register_ack().accepted()) {
      return absl::PermissionDeniedError(
          name_ + ": registration refused: " + reply.register_ack().reason());
    }
    reader_ = std::thread([this] { Read(); });
    completer_ = std::thread([this] { Complete(); });
    return absl::OkStatus();
  }

  void Stop() {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      stopping_ = true;
      wake_.notify_all();
    }
    if (completer_.joinable()) completer_.join();
    context_.TryCancel();
    if (reader_.joinable()) reader_.join();
    if (stream_) stream_->Finish();
  }

  int64_t assignments() const { return assignments_; }

 private:
  void Read() {
    runner_pb::ServerMessage message;
    while (stream_->Read(&message)) {
      if (!message.has_work_assignment()) continue;
      const runner_pb::WorkAssignment& work = message.work_assignment();
      tracker_.Assigned(work.release_id(), Clock::now());
      ++assignments_;
      runner_pb::RunnerMessage ack;
      ack.mutable_work_ack()->set_release_token(work.release_token());
      ack.mutable_work_ack()->set_accepted(true);
      Write(ack);
      std::lock_guard lock(mu_);
      pending_.emplace_back(work.release_id(), work.release_token());
      wake_.notify_all();
    }
  }

  void Complete() {
    for (;;) {
      std::pair<std::string, std::string> work;
      {
        std::unique_lock lock(mu_);
        if (!wake_.wait_for(lock, kHeartbeatInterval,
                            [this] { return stopping_ || !pending_.empty(); })) {
          lock.unlock();
          runner_pb::RunnerMessage heartbeat;
          heartbeat.mutable_heartbeat()->set_active_releases(0);
          Write(heartbeat);
          continue;
        }
        if (stopping_) return;
        work = std::move(pending_.front());
        pending_.pop_front();
      }
      grpc::ClientContext context;
      context.set_deadline(CallDeadline());
      runner_pb::CompleteReleaseRequest request;
      request.set_release_token(work.second);
      request.set_outcome(runner_pb::RELEASE_OUTCOME_SUCCESS);
      runner_pb::CompleteReleaseResponse response;
      const grpc::Status status = stub_->CompleteRelease(&context, request, &response);
      tracker_.Completed(work.first, status, Clock::now());
    }
  }

  // The reader (acks) and the completer (heartbeats) both write to the stream.
  void Write(const runner_pb::RunnerMessage& message) {
    std::lock_guard lock(write_mu_);
    stream_->Write(message);
  }

  const std::string name_;
  const int max_concurrent_;
  Tracker& tracker_;
  std::unique_ptr<runner_pb::RunnerService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<runner_pb::RunnerMessage, runner_pb::ServerMessage>>
      stream_;
  std::mutex write_mu_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::deque<std::pair<std::string, std::string>> pending_;
  std::atomic<int64_t> assignments_{0};
  std::thread reader_;
  std::thread completer_;
};

pb::CreateReleaseRequest ReleaseRequest(int64_t sequence) {
  pb::CreateReleaseRequest request;
  pb::DestinationType* type = request.mutable_destination_type();
  type->set_organisation(kOrganisation);
  type->set_name(kTypeName);
  type->set_version(kTypeVersion);
  request.set_destination_name("bench-" + std::to_string(sequence % 16));
  request.set_environment("bench");
  pb::ReleaseFileContent* file = request.add_artifact_files();
  file->set_name("main.tf");
  file->set_content("resource \"null_resource\" \"bench\" { triggers = { seq = \"" +
                    std::to_string(sequence) + "\" } }\n");
  request.set_project_organisation("bench");
  request.set_project("release-bench");
  return request;
}

// Latencies of one phase, in milliseconds.
struct Latencies {
  std::mutex mu;
  std::vector<double> dispatch;    // CreateRelease call -> WorkAssignment at the runner
  std::vector<double> create;      // CreateRelease round trip
  std::vector<double> end_to_end;  // CreateRelease call -> CompleteRelease returned

  nlohmann::json Json() {
    auto summary = [](std::vector<double>& values) {
      return nlohmann::json{
          {"p50", pi::bench::Percentile(values, 0.50)},
          {"p99", pi::bench::Percentile(values, 0.99)},
          {"max", values.empty() ? 0.0 : *std::max_element(values.begin(), values.end())},
      };
    };
    return {{"dispatch_ms", summary(dispatch)},
            {"create_call_ms", summary(create)},
            {"end_to_end_ms", summary(end_to_end)}};
  }
};

// Creates one release and waits until a runner has completed it.
absl::Status OneRelease(pb::Admin::Stub& admin, Tracker& tracker, int64_t sequence,
                        Latencies* latencies) {
  const pb::CreateReleaseRequest request = ReleaseRequest(sequence);
  grpc::ClientContext context;
  context.set_deadline(CallDeadline());
  pb::Release release;
  const auto started = Clock::now();
  const grpc::Status status = admin.CreateRelease(&context, request, &release);
  const auto created = Clock::now();
  if (!status.ok()) {
    return absl::InternalError("CreateRelease: " + status.error_message() + " (code " +
                               std::to_string(static_cast<int>(status.error_code())) + ")");
  }
  absl::StatusOr<Tracker::Times> times = tracker.WaitCompleted(release.id());
  if (!times.ok()) return times.status();
  if (latencies != nullptr) {
    std::lock_guard lock(latencies->mu);
    latencies->dispatch.push_back(Millis(times->assigned_at - started));
    latencies->create.push_back(Millis(created - started));
    latencies->end_to_end.push_back(Millis(times->completed_at - started));
  }
  return absl::OkStatus();
}

struct Options {
  std::string controller_path;
  int runners = pi::bench::FromEnv("PI_BENCH_RELEASE_RUNNERS", 10);
  int sequential = pi::bench::FromEnv("PI_BENCH_RELEASE_SEQUENTIAL", 500);
  int releases = pi::bench::FromEnv("PI_BENCH_RELEASE_RELEASES", 2000);
  int creators = pi::bench::FromEnv("PI_BENCH_RELEASE_CREATORS", 20);
  int max_concurrent = pi::bench::FromEnv("PI_BENCH_RELEASE_MAX_CONCURRENT", 4);
  double max_seconds = pi::bench::FromEnv("PI_BENCH_RELEASE_MAX_SECONDS", 20.0);
};

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::string text = pi::bench::ReadWholeFile(path);
  if (text.empty()) return absl::FailedPreconditionError("cannot read " + path);
  return text;
}

// A certificate for runner:<name> signed by the controller's CA: (cert, key) PEM.
absl::StatusOr<std::pair<std::string, std::string>> IssueRunnerCertificate(
    const std::string& ca_cert_pem, const std::string& ca_key_pem, const std::string& name) {
  auto ca_cert = pi::common::ParseCertificatePem(ca_cert_pem);
  if (!ca_cert.ok()) return ca_cert.status();
  auto ca_key = pi::common::ParsePrivateKeyPem(ca_key_pem);
  if (!ca_key.ok()) return ca_key.status();
  auto key_pem = pi::common::GenerateEcPrivateKeyPem();
  if (!key_pem.ok()) return key_pem.status();
  auto key = pi::common::ParsePrivateKeyPem(*key_pem);
  if (!key.ok()) return key.status();
  pi::common::CertificateSpec spec;
  spec.common_name = "runner:" + name;
  spec.not_before = std::chrono::system_clock::now() - std::chrono::minutes(5);
  spec.not_after = std::chrono::system_clock::now() + std::chrono::hours(24);
  auto cert = pi::common::SignCertificate(spec, key->get(), ca_cert->get(), ca_key->get());
  if (!cert.ok()) return cert.status();
  return std::make_pair(*cert, *key_pem);
}

absl::StatusOr<nlohmann::json> Run(const Options& options) {
  pi::testing::TempDir dir;
  const std::string state_dir = (dir.path() / "state").string();
  const std::string admin_dir = (dir.path() / "admin").string();
  const std::string ports_file = (dir.path() / "ports.json").string();
  const std::string config =
      dir.Write("controller.json", nlohmann::json{{"state_dir", state_dir},
                                                  {"listen", "127.0.0.1:0"},
                                                  {"http_listen", "127.0.0.1:0"},
                                                  {"log_level", "warn"},
                                                  {"cluster", {{"health_poll_interval", "1h"}}},
                                                  {"releases",
                                                   {{"token_ttl", "1h"},
                                                    {"default_timeout", "30m"},
                                                    {"runner_silence_limit", "90s"},
                                                    {"default_max_attempts", 3}}}}
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

  auto admin_credentials = pi::common::MakeChannelCredentials(
      {admin_dir + "/ca.crt", admin_dir + "/admin.crt", admin_dir + "/admin.key"});
  if (!admin_credentials.ok()) {
    return absl::FailedPreconditionError(std::string(admin_credentials.status().message()));
  }
  // Each creator has a connection of its own, as separate admins would.
  auto admin_stub = [&] {
    grpc::ChannelArguments arguments;
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return pb::Admin::NewStub(grpc::CreateCustomChannel(target, *admin_credentials, arguments));
  };
  auto admin = admin_stub();

  // Runner certificates come from the controller's own CA, as deploy/pki.sh would issue them.
  auto ca_cert = ReadFile(state_dir + "/ca.crt");
  if (!ca_cert.ok()) return ca_cert.status();
  auto ca_key = ReadFile(state_dir + "/ca.key");
  if (!ca_key.ok()) return ca_key.status();
  Tracker tracker;
  std::vector<std::unique_ptr<Runner>> runners;
  const auto connect_started = Clock::now();
  for (int i = 0; i < options.runners; ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "bench-%02d", i + 1);
    auto pair = IssueRunnerCertificate(*ca_cert, *ca_key, name);
    if (!pair.ok()) return pair.status();
    auto credentials = grpc::SslCredentials({*ca_cert, pair->second, pair->first});
    runners.push_back(
        std::make_unique<Runner>(name, credentials, target, options.max_concurrent, tracker));
    if (absl::Status status = runners.back()->Start(); !status.ok()) return status;
  }
  const double connect_seconds = Seconds(Clock::now() - connect_started);
  pb::ListRunnersResponse listed;
  {
    grpc::ClientContext context;
    context.set_deadline(CallDeadline());
    if (auto status = admin->ListRunners(&context, google::protobuf::Empty(), &listed);
        !status.ok()) {
      return absl::FailedPreconditionError("ListRunners: " + status.error_message());
    }
  }
  if (listed.runners_size() != options.runners) {
    return absl::FailedPreconditionError("ListRunners lists " +
                                         std::to_string(listed.runners_size()) + " runners, not " +
                                         std::to_string(options.runners));
  }

  int64_t sequence = 0;
  for (int i = 0; i < kWarmupReleases; ++i) {
    if (absl::Status status = OneRelease(*admin, tracker, ++sequence, nullptr); !status.ok()) {
      return status;
    }
  }

  // Sequential: one release in flight.
  Latencies sequential;
  const double sequential_cpu_before = pi::bench::ProcessCpuSeconds(pid);
  const auto sequential_started = Clock::now();
  for (int i = 0; i < options.sequential; ++i) {
    if (absl::Status status = OneRelease(*admin, tracker, ++sequence, &sequential); !status.ok()) {
      return status;
    }
  }
  const double sequential_seconds = Seconds(Clock::now() - sequential_started);
  const double sequential_cpu = pi::bench::ProcessCpuSeconds(pid) - sequential_cpu_before;
  nlohmann::json sequential_json = sequential.Json();
  sequential_json["releases"] = options.sequential;
  sequential_json["seconds"] = sequential_seconds;
  sequential_json["releases_per_second"] = options.sequential / sequential_seconds;
  sequential_json["controller_cpu_ms_per_release"] =
      options.sequential > 0 ? 1000 * sequential_cpu / options.sequential : 0.0;

  // Concurrent: every creator keeps one release in flight until --releases are done or time is up.
  Latencies concurrent;
  std::atomic<int64_t> next{sequence};
  const int64_t last = sequence + options.releases;
  std::atomic<int64_t> completed{0};
  std::mutex error_mu;
  std::string first_error;
  const auto stop_at = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(options.max_seconds));
  const double concurrent_cpu_before = pi::bench::ProcessCpuSeconds(pid);
  const double client_cpu_before = pi::bench::SelfCpuSeconds();
  const auto concurrent_started = Clock::now();
  {
    std::vector<std::thread> creators;
    for (int c = 0; c < options.creators; ++c) {
      creators.emplace_back([&] {
        auto stub = admin_stub();
        for (int64_t n = ++next; n <= last && Clock::now() < stop_at; n = ++next) {
          if (absl::Status status = OneRelease(*stub, tracker, n, &concurrent); !status.ok()) {
            std::lock_guard lock(error_mu);
            if (first_error.empty()) first_error = std::string(status.message());
            next = last;
            return;
          }
          ++completed;
        }
      });
    }
    for (auto& creator : creators) creator.join();
  }
  const double concurrent_seconds = Seconds(Clock::now() - concurrent_started);
  const double concurrent_cpu = pi::bench::ProcessCpuSeconds(pid) - concurrent_cpu_before;
  const double client_cpu = pi::bench::SelfCpuSeconds() - client_cpu_before;
  if (!first_error.empty()) return absl::InternalError(first_error);
  nlohmann::json concurrent_json = concurrent.Json();
  concurrent_json["creators"] = options.creators;
  concurrent_json["releases"] = completed.load();
  concurrent_json["seconds"] = concurrent_seconds;
  concurrent_json["releases_per_second"] = completed / concurrent_seconds;
  concurrent_json["controller_cpu_percent"] = 100 * concurrent_cpu / concurrent_seconds;
  concurrent_json["controller_cpu_ms_per_release"] =
      completed > 0 ? 1000 * concurrent_cpu / static_cast<double>(completed) : 0.0;
  concurrent_json["bench_client_cpu_percent"] = 100 * client_cpu / concurrent_seconds;

  // Every release must have ended SUCCEEDED: none left unfinished, none failed.
  std::map<std::string, int> states;
  {
    grpc::ClientContext context;
    context.set_deadline(CallDeadline());
    pb::ListReleasesRequest request;
    for (pb::ReleaseState state :
         {pb::RELEASE_STATE_QUEUED, pb::RELEASE_STATE_ASSIGNED, pb::RELEASE_STATE_RUNNING,
          pb::RELEASE_STATE_FAILED, pb::RELEASE_STATE_TIMED_OUT, pb::RELEASE_STATE_CANCELLED}) {
      request.add_states(state);
    }
    request.set_limit(1000);
    pb::ListReleasesResponse unsuccessful;
    if (auto status = admin->ListReleases(&context, request, &unsuccessful); !status.ok()) {
      return absl::FailedPreconditionError("ListReleases: " + status.error_message());
    }
    for (const pb::Release& release : unsuccessful.releases()) {
      ++states[pb::ReleaseState_Name(release.state())];
    }
  }
  int64_t assignments = 0;
  std::vector<int64_t> per_runner;
  for (const auto& runner : runners) {
    assignments += runner->assignments();
    per_runner.push_back(runner->assignments());
  }
  const double peak_rss = pi::bench::StatusMib(pid, "VmHWM");

  runners.clear();
  admin.reset();
  const auto stop_started = Clock::now();
  std::optional<pi::common::ExitStatus> exit = controller->Stop(std::chrono::seconds(10));
  const double stop_seconds = Seconds(Clock::now() - stop_started);
  const bool clean_exit = exit.has_value() && exit->exit_code == 0;

  nlohmann::json result = {
      {"benchmark", "release_dispatch"},
      {"transport", "grpc+mtls loopback, one connection per runner and per creator"},
      {"runners", options.runners},
      {"runner_max_concurrent", options.max_concurrent},
      {"runners_connect_seconds", connect_seconds},
      {"sequential", sequential_json},
      {"concurrent", concurrent_json},
      {"assignments", assignments},
      {"assignments_per_runner", per_runner},
      {"unsuccessful_releases", states},
      {"target_dispatch_p50_ms", 5},
      {"controller_peak_rss_mib", peak_rss},
      {"controller_stop_seconds", stop_seconds},
      {"controller_clean_exit", clean_exit},
  };
  if (!states.empty()) {
    return absl::FailedPreconditionError("releases did not all succeed: " + result.dump());
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
  CLI::App app{"Release dispatch latency and throughput of the real pi-controller"};
  app.add_option("--controller", options.controller_path, "pi-controller binary")->required();
  app.add_option("--runners", options.runners, "runners ($PI_BENCH_RELEASE_RUNNERS)")
      ->capture_default_str()
      ->check(CLI::Range(1, 200));
  app.add_option("--sequential", options.sequential,
                 "releases created one at a time ($PI_BENCH_RELEASE_SEQUENTIAL)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--releases", options.releases,
                 "releases in the concurrent phase at most ($PI_BENCH_RELEASE_RELEASES)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  app.add_option("--creators", options.creators,
                 "admins creating releases at once ($PI_BENCH_RELEASE_CREATORS)")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  app.add_option("--max-concurrent", options.max_concurrent,
                 "each runner's max_concurrent ($PI_BENCH_RELEASE_MAX_CONCURRENT)")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--max-seconds", options.max_seconds,
                 "the concurrent phase stops starting releases after this long "
                 "($PI_BENCH_RELEASE_MAX_SECONDS)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 600.0));
  CLI11_PARSE(app, argc, argv);
  // ChildProcess never searches PATH; accept a path relative to the working directory too.
  options.controller_path = std::filesystem::absolute(options.controller_path).string();
  const absl::StatusOr<nlohmann::json> result = Run(options);
  if (!result.ok()) {
    std::fprintf(stderr, "release_bench: %s\n", std::string(result.status().message()).c_str());
    return 1;
  }
  std::printf("%s\n", result->dump().c_str());
  return 0;
}
