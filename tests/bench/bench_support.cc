#include "tests/bench/bench_support.h"

#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

namespace pi::bench {

absl::Status RunToCompletion(const std::vector<std::string>& argv) {
  using Clock = std::chrono::steady_clock;
  auto child = common::ChildProcess::Spawn({argv, "", {}, ""});
  if (!child.ok()) return child.status();
  std::string output;
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline) {
    auto event = (*child)->Read(deadline, &output, &output);
    if (!event.ok() || *event == common::ChildProcess::Event::kExited) break;
  }
  (*child)->KillGroup();
  auto status = (*child)->Wait();
  if (!status.ok() || status->exit_code != 0) {
    std::string command;
    for (const std::string& arg : argv) command += (command.empty() ? "" : " ") + arg;
    return absl::InternalError(command + " failed: " + output);
  }
  return absl::OkStatus();
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

double ProcessCpuSeconds(pid_t pid) {
  const std::string stat = ReadWholeFile("/proc/" + std::to_string(pid) + "/stat");
  // The command name may contain spaces and parentheses; the fields start after its last ')'.
  const size_t name_end = stat.rfind(')');
  if (name_end == std::string::npos || name_end + 2 > stat.size()) return 0;
  std::istringstream fields(stat.substr(name_end + 2));
  std::string field;
  unsigned long utime = 0;
  unsigned long stime = 0;
  for (int index = 3; index <= 15 && fields >> field; ++index) {
    if (index == 14) utime = std::stoul(field);
    if (index == 15) stime = std::stoul(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double SelfCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

long StatusField(pid_t pid, const std::string& key) {
  std::istringstream status(ReadWholeFile("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::atol(line.c_str() + key.size() + 1);
  }
  return 0;
}

double StatusMib(pid_t pid, const std::string& key) { return StatusField(pid, key) / 1024.0; }

int PortFromFile(const std::string& ports_file, const std::string& name) {
  const auto ports = nlohmann::json::parse(ReadWholeFile(ports_file), nullptr, false);
  if (!ports.is_object()) return 0;
  return ports.value(name, 0);
}

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(std::vector<std::string> argv,
                                                      std::vector<std::string> environment) {
  auto child = pi::common::ChildProcess::Spawn({std::move(argv), "", std::move(environment), ""});
  if (!child.ok()) return child.status();
  return std::unique_ptr<Daemon>(new Daemon(*std::move(child)));
}

Daemon::Daemon(std::unique_ptr<pi::common::ChildProcess> child)
    : child_(std::move(child)), drain_([this] { Drain(); }) {}

std::string Daemon::output() {
  std::lock_guard lock(mu_);
  return output_;
}

std::optional<pi::common::ExitStatus> Daemon::Stop(std::chrono::milliseconds grace) {
  if (stopped_) return std::nullopt;
  stopped_ = true;
  child_->KillGroup(grace);
  stop_drain_ = true;
  child_->Wake();
  drain_.join();
  auto status = child_->Wait();
  if (!status.ok()) return std::nullopt;
  return *status;
}

void Daemon::Drain() {
  while (!stop_drain_) {
    std::string out;
    std::string err;
    auto event =
        child_->Read(std::chrono::steady_clock::now() + std::chrono::seconds(1), &out, &err);
    {
      std::lock_guard lock(mu_);
      output_ += out + err;
      if (output_.size() > kKeep) output_.erase(0, output_.size() - kKeep);
    }
    if (!event.ok() || *event == pi::common::ChildProcess::Event::kExited) {
      exited_ = true;
      // Nothing more will come; wait for Stop() without spinning.
      while (!stop_drain_) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
}

}  // namespace pi::bench
