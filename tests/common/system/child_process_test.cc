#include "common/system/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/common/test_process.h"

namespace pi::common {
namespace {

using pi::testing::ProcessDead;
using pi::testing::WaitUntil;

using namespace std::chrono_literals;
using Event = ChildProcess::Event;

ChildProcess::Deadline In(std::chrono::milliseconds d) {
  return std::chrono::steady_clock::now() + d;
}

SpawnOptions Argv(std::vector<std::string> argv, std::vector<std::string> environment = {}) {
  SpawnOptions options;
  options.argv = std::move(argv);
  options.environment = std::move(environment);
  return options;
}

SpawnOptions InDir(std::vector<std::string> argv, std::string dir) {
  SpawnOptions options = Argv(std::move(argv));
  options.working_directory = std::move(dir);
  return options;
}

// Runs `executable` with argv[0] set to something else.
SpawnOptions Named(std::vector<std::string> argv, std::string executable) {
  SpawnOptions options = Argv(std::move(argv));
  options.executable = std::move(executable);
  return options;
}

std::unique_ptr<ChildProcess> MustSpawn(SpawnOptions options) {
  auto child = ChildProcess::Spawn(options);
  INFO(child.status().ToString());
  REQUIRE(child.ok());
  return std::move(*child);
}

SpawnOptions Shell(const std::string& script) {
  return Argv({"/bin/sh", "-c", script}, {"PATH=/usr/bin:/bin"});
}

struct Collected {
  std::string out;
  std::string err;
  Event last = Event::kDeadline;
};

// Reads until the leader exits or the deadline passes.
Collected ReadAll(ChildProcess& child, ChildProcess::Deadline deadline) {
  Collected c;
  while (true) {
    auto event = child.Read(deadline, &c.out, &c.err);
    REQUIRE(event.ok());
    c.last = *event;
    if (*event != Event::kOutput) return c;
  }
}

std::set<int> OpenFds() {
  std::set<int> fds;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    fds.insert(std::stoi(entry.path().filename().string()));
  }
  return fds;
}

TEST_CASE("captures stdout and stderr separately and reports the exit code", "[child_process]") {
  auto child = MustSpawn(Shell("echo out; echo err >&2; exit 7"));
  Collected c = ReadAll(*child, In(10s));
  CHECK(c.last == Event::kExited);
  CHECK(c.out == "out\n");
  CHECK(c.err == "err\n");
  auto status = child->Wait();
  REQUIRE(status.ok());
  CHECK(status->exit_code == 7);
  CHECK(status->signal == 0);
}

TEST_CASE("the child sees exactly the environment it was given", "[child_process]") {
  auto child = MustSpawn(Argv({"/usr/bin/env"}, {"A=1", "PATH=/nowhere"}));
  Collected c = ReadAll(*child, In(10s));
  CHECK(c.out == "A=1\nPATH=/nowhere\n");
}

TEST_CASE("argv[0] is passed as given while the executable path is run", "[child_process]") {
  auto child = MustSpawn(Named({"custom-name", "-c", "echo $0"}, "/bin/sh"));
  CHECK(ReadAll(*child, In(10s)).out == "custom-name\n");
}

TEST_CASE("the working directory is applied", "[child_process]") {
  auto child = MustSpawn(InDir({"/bin/pwd"}, "/proc"));
  CHECK(ReadAll(*child, In(10s)).out == "/proc\n");
}

TEST_CASE("stdin is /dev/null so readers see end of file at once", "[child_process]") {
  auto child = MustSpawn(Argv({"/bin/cat"}));
  Collected c = ReadAll(*child, In(10s));
  CHECK(c.last == Event::kExited);
  CHECK(c.out.empty());
}

TEST_CASE("the child inherits no descriptors beyond stdin, stdout and stderr", "[child_process]") {
  // An fd opened without O_CLOEXEC would leak into a plain fork+exec.
  // A high number, so it cannot be confused with the descriptor ls opens for the directory.
  int leaky = fcntl(STDERR_FILENO, F_DUPFD, 100);
  REQUIRE(leaky >= 100);
  auto child = MustSpawn(Argv({"/bin/ls", "/proc/self/fd"}));
  Collected c = ReadAll(*child, In(10s));
  close(leaky);
  std::istringstream lines(c.out);
  std::set<std::string> fds;
  for (std::string line; std::getline(lines, line);) fds.insert(line);
  // ls itself holds one descriptor open for the directory it lists.
  fds.erase("0");
  fds.erase("1");
  fds.erase("2");
  CHECK(fds.size() == 1);
  CHECK_FALSE(fds.count(std::to_string(leaky)));
}

TEST_CASE("the child leads a new process group", "[child_process]") {
  auto child = MustSpawn(Shell("sleep 100"));
  CHECK(getpgid(child->pid()) == child->pid());
  CHECK(getpgid(child->pid()) != getpgrp());
  child->KillGroup();
  auto status = child->Wait();
  REQUIRE(status.ok());
  CHECK(status->signal == SIGKILL);
  CHECK_FALSE(status->exit_code.has_value());
}

TEST_CASE("KillGroup also kills grandchildren", "[child_process]") {
  auto child = MustSpawn(Shell("sleep 100 & echo $!; wait"));
  std::string out;
  std::string err;
  while (out.find('\n') == std::string::npos) {
    auto event = child->Read(In(10s), &out, &err);
    REQUIRE(event.ok());
    REQUIRE(*event == Event::kOutput);
  }
  pid_t grandchild = std::stoi(out);
  REQUIRE_FALSE(ProcessDead(grandchild));
  child->KillGroup();
  REQUIRE(child->Wait().ok());
  CHECK(WaitUntil([&] { return ProcessDead(grandchild); }, 5s));
}

TEST_CASE("a grandchild holding the pipes open does not hide the leader's exit",
          "[child_process]") {
  auto child = MustSpawn(Shell("sleep 100 & echo done"));
  auto start = std::chrono::steady_clock::now();
  Collected c = ReadAll(*child, In(20s));
  CHECK(c.last == Event::kExited);
  CHECK(c.out == "done\n");
  CHECK(std::chrono::steady_clock::now() - start < 10s);
  child->KillGroup();
  auto status = child->Wait();
  REQUIRE(status.ok());
  CHECK(status->exit_code == 0);
}

TEST_CASE("Read returns at the deadline while the child keeps running", "[child_process]") {
  auto child = MustSpawn(Shell("sleep 100"));
  std::string out;
  std::string err;
  auto event = child->Read(In(50ms), &out, &err);
  REQUIRE(event.ok());
  CHECK(*event == Event::kDeadline);
}

TEST_CASE("Wake from another thread interrupts a blocked Read", "[child_process]") {
  auto child = MustSpawn(Shell("sleep 100"));
  std::thread waker([&] {
    std::this_thread::sleep_for(50ms);
    child->Wake();
  });
  std::string out;
  std::string err;
  auto start = std::chrono::steady_clock::now();
  auto event = child->Read(In(30s), &out, &err);
  waker.join();
  REQUIRE(event.ok());
  CHECK(*event == Event::kWoken);
  CHECK(std::chrono::steady_clock::now() - start < 10s);
}

TEST_CASE("KillGroup with a grace period lets the child handle SIGTERM", "[child_process]") {
  auto child = MustSpawn(Shell("trap 'exit 3' TERM; echo ready; sleep 100 & wait"));
  std::string out;
  std::string err;
  while (out.empty()) REQUIRE(*child->Read(In(10s), &out, &err) == Event::kOutput);
  child->KillGroup(5s);
  auto status = child->Wait();
  REQUIRE(status.ok());
  CHECK(status->exit_code == 3);
}

TEST_CASE("KillGroup with a grace period still kills a child that ignores SIGTERM",
          "[child_process]") {
  auto child = MustSpawn(Shell("trap '' TERM; echo ready; while :; do sleep 1; done"));
  std::string out;
  std::string err;
  while (out.empty()) REQUIRE(*child->Read(In(10s), &out, &err) == Event::kOutput);
  child->KillGroup(100ms);
  auto status = child->Wait();
  REQUIRE(status.ok());
  CHECK(status->signal == SIGKILL);
}

TEST_CASE("signals ignored by the parent are reset in the child", "[child_process]") {
  struct sigaction ignore {};
  struct sigaction previous {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGTERM, &ignore, &previous);
  auto child = MustSpawn(Shell("sleep 100"));
  sigaction(SIGTERM, &previous, nullptr);
  kill(child->pid(), SIGTERM);
  auto status = child->Wait();
  REQUIRE(status.ok());
  CHECK(status->signal == SIGTERM);
}

TEST_CASE("large output is delivered in bounded chunks", "[child_process]") {
  auto child = MustSpawn(Shell("head -c 1000000 /dev/zero"));
  std::string out;
  std::string err;
  size_t total = 0;
  size_t largest = 0;
  while (true) {
    auto event = child->Read(In(10s), &out, &err);
    REQUIRE(event.ok());
    if (*event != Event::kOutput) break;
    largest = std::max(largest, out.size());
    total += out.size();
    out.clear();
  }
  CHECK(total == 1000000);
  CHECK(largest <= 64 * 1024);
}

TEST_CASE("an empty argv is rejected", "[child_process]") {
  auto child = ChildProcess::Spawn(SpawnOptions());
  CHECK(child.status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("a relative executable is rejected", "[child_process]") {
  auto child = ChildProcess::Spawn(Argv({"sh"}));
  CHECK(child.status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("a missing executable is NOT_FOUND", "[child_process]") {
  auto child = ChildProcess::Spawn(Argv({"/nonexistent/tool"}));
  CHECK(child.status().code() == absl::StatusCode::kNotFound);
}

TEST_CASE("a missing working directory is NOT_FOUND", "[child_process]") {
  auto child = ChildProcess::Spawn(InDir({"/bin/true"}, "/nonexistent"));
  CHECK(child.status().code() == absl::StatusCode::kNotFound);
}

TEST_CASE("a file without execute permission is FAILED_PRECONDITION", "[child_process]") {
  auto path =
      std::filesystem::temp_directory_path() / ("child_process_noexec_" + std::to_string(getpid()));
  std::ofstream(path) << "#!/bin/sh\n";
  chmod(path.c_str(), 0644);
  auto child = ChildProcess::Spawn(Argv({path.string()}));
  std::filesystem::remove(path);
  CHECK(child.status().code() == absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("concurrent spawns from many threads leak no descriptors", "[child_process]") {
  const std::set<int> before = OpenFds();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        auto child = ChildProcess::Spawn(Argv({"/bin/ls", "/proc/self/fd"}));
        if (!child.ok()) {
          ++failures;
          continue;
        }
        std::string out;
        std::string err;
        while (true) {
          auto event = (*child)->Read(In(10s), &out, &err);
          if (!event.ok() || *event != Event::kOutput) break;
        }
        auto status = (*child)->Wait();
        // 0, 1, 2, the directory ls reads and nothing from the other threads' pipes.
        if (!status.ok() || status->exit_code != 0 ||
            std::count(out.begin(), out.end(), '\n') != 4) {
          ++failures;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(failures == 0);
  CHECK(OpenFds() == before);
}

TEST_CASE("destroying a running child kills and reaps it", "[child_process]") {
  pid_t pid;
  {
    auto child = MustSpawn(Shell("sleep 100"));
    pid = child->pid();
  }
  // Reaped means the pid is no longer our child.
  CHECK(waitpid(pid, nullptr, WNOHANG) == -1);
  CHECK(errno == ECHILD);
  CHECK(ProcessDead(pid));
}

}  // namespace
}  // namespace pi::common
