#include "node-agent/exec/command_executor.h"

#include <signal.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <thread>

#include "tests/common/test_dir.h"
#include "tests/common/test_process.h"

namespace pi::agent::exec {
namespace {

using pi::testing::ProcessDead;
using pi::testing::WaitUntil;

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using pi::testing::TempDir;

ExecPolicy TestPolicy() {
  ExecPolicy policy;
  policy.allowed_commands = {"/bin/sh", "/usr/bin/env", "/bin/pwd", "/bin/true"};
  policy.allowed_env = {"FOO", "LANG"};
  return policy;
}

CommandRequest Req(std::vector<std::string> argv, std::chrono::milliseconds timeout = 0ms) {
  CommandRequest request;
  request.argv = std::move(argv);
  request.timeout = timeout;
  return request;
}

CommandRequest InDir(std::vector<std::string> argv, std::string dir) {
  CommandRequest request = Req(std::move(argv));
  request.working_directory = std::move(dir);
  return request;
}

CommandRequest WithEnv(std::vector<std::string> argv, std::map<std::string, std::string> env) {
  CommandRequest request = Req(std::move(argv));
  request.env = std::move(env);
  return request;
}

CommandRequest Shell(const std::string& script) { return Req({"/bin/sh", "-c", script}); }

CommandResult MustRun(CommandExecutor& executor, const CommandRequest& request) {
  auto result = executor.Execute(request, "admin:test");
  INFO(result.status().ToString());
  REQUIRE(result.ok());
  return *result;
}

absl::StatusCode CodeOf(const ExecPolicy& policy, const CommandRequest& request) {
  CommandExecutor executor(policy);
  return executor.Execute(request, "admin:test").status().code();
}

void WriteScript(const fs::path& path, const std::string& body) {
  std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
  fs::permissions(path, fs::perms::owner_all);
}

TEST_CASE("an allowed command runs and its output and exit code are returned", "[exec]") {
  CommandExecutor executor(TestPolicy());
  CommandResult r = MustRun(executor, Shell("echo out; echo err >&2; exit 3"));
  CHECK(r.exit_code == 3);
  CHECK(r.signal == 0);
  CHECK(r.stdout_data == "out\n");
  CHECK(r.stderr_data == "err\n");
  CHECK_FALSE(r.stdout_truncated);
  CHECK_FALSE(r.stderr_truncated);
  CHECK_FALSE(r.timed_out);
}

TEST_CASE("the duration covers the command's run time", "[exec]") {
  CommandExecutor executor(TestPolicy());
  CommandResult r = MustRun(executor, Shell("sleep 0.2"));
  CHECK(r.duration >= 200ms);
  CHECK(r.duration < 10s);
}

TEST_CASE("a command killed by a signal reports the signal", "[exec]") {
  CommandExecutor executor(TestPolicy());
  CommandResult r = MustRun(executor, Shell("kill -9 $$"));
  CHECK(r.exit_code == -1);
  CHECK(r.signal == SIGKILL);
  CHECK_FALSE(r.timed_out);
}

TEST_CASE("an executable outside the allowlist is PERMISSION_DENIED", "[exec]") {
  CommandExecutor executor(TestPolicy());
  auto result = executor.Execute(Req({"/usr/bin/rm", "-rf", "/tmp/x"}), "a");
  CHECK(result.status().code() == absl::StatusCode::kPermissionDenied);
  CHECK(result.status().message() == "/usr/bin/rm is not in exec.allowed_commands");
}

TEST_CASE("allowlist entries match through directory symlinks on both sides", "[exec]") {
  TempDir dir;
  fs::create_directory(dir.path() / "real");
  fs::create_directory_symlink(dir.path() / "real", dir.path() / "link");
  WriteScript(dir.path() / "real" / "tool", "echo tool");

  ExecPolicy via_real;
  via_real.allowed_commands = {(dir.path() / "real" / "tool").string()};
  CommandExecutor real_executor(via_real);
  CHECK(MustRun(real_executor, Req({(dir.path() / "link" / "tool").string()})).stdout_data ==
        "tool\n");

  ExecPolicy via_link;
  via_link.allowed_commands = {(dir.path() / "link" / "tool").string()};
  CommandExecutor link_executor(via_link);
  CHECK(MustRun(link_executor, Req({(dir.path() / "real" / "tool").string()})).stdout_data ==
        "tool\n");
}

TEST_CASE("/bin/sh and /usr/bin/sh are the same allowlist entry on merged-/usr systems", "[exec]") {
  std::error_code ec;
  if (fs::canonical("/bin", ec) != fs::path("/usr/bin")) return;  // not merged-/usr here
  ExecPolicy policy;
  policy.allowed_commands = {"/usr/bin/sh"};
  CommandExecutor executor(policy);
  CHECK(MustRun(executor, Req({"/bin/sh", "-c", "echo ok"})).stdout_data == "ok\n");
}

TEST_CASE("a file symlink to an allowed binary is not allowed by that entry", "[exec]") {
  TempDir dir;
  WriteScript(dir.path() / "busybox", "echo $0");
  fs::create_symlink(dir.path() / "busybox", dir.path() / "ls");
  fs::create_symlink(dir.path() / "busybox", dir.path() / "rm");
  ExecPolicy policy;
  policy.allowed_commands = {(dir.path() / "ls").string()};
  CommandExecutor executor(policy);
  CHECK(MustRun(executor, Req({(dir.path() / "ls").string()})).exit_code == 0);
  auto denied = executor.Execute(Req({(dir.path() / "rm").string()}), "a");
  CHECK(denied.status().code() == absl::StatusCode::kPermissionDenied);
}

TEST_CASE("an allowed executable that does not exist is NOT_FOUND", "[exec]") {
  ExecPolicy policy;
  policy.allowed_commands = {"/nonexistent/tool"};
  CHECK(CodeOf(policy, Req({"/nonexistent/tool"})) == absl::StatusCode::kNotFound);
}

TEST_CASE("an empty argv is INVALID_ARGUMENT", "[exec]") {
  CHECK(CodeOf(TestPolicy(), CommandRequest()) == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("a relative argv[0] is INVALID_ARGUMENT", "[exec]") {
  CHECK(CodeOf(TestPolicy(), Req({"sh", "-c", "true"})) == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("\"..\" in argv[0] is INVALID_ARGUMENT even when it leads to an allowed file", "[exec]") {
  CHECK(CodeOf(TestPolicy(), Req({"/usr/../bin/sh", "-c", "true"})) ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("an argv[0] naming a directory is INVALID_ARGUMENT", "[exec]") {
  CHECK(CodeOf(TestPolicy(), Req({"/bin/"})) == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("a NUL byte in an argument is INVALID_ARGUMENT", "[exec]") {
  CHECK(CodeOf(TestPolicy(), Req({"/bin/sh", "-c", std::string("echo a\0b", 8)})) ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("too many arguments are INVALID_ARGUMENT", "[exec]") {
  ExecPolicy policy = TestPolicy();
  policy.max_argv_count = 3;
  CHECK(CodeOf(policy, Req({"/bin/true", "a", "b", "c"})) == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("oversize arguments are INVALID_ARGUMENT", "[exec]") {
  ExecPolicy policy = TestPolicy();
  policy.max_argv_bytes = 100;
  CHECK(CodeOf(policy, Req({"/bin/true", std::string(200, 'x')})) ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("oversize environment values count against the argv byte limit", "[exec]") {
  ExecPolicy policy = TestPolicy();
  policy.max_argv_bytes = 100;
  CHECK(CodeOf(policy, WithEnv({"/bin/true"}, {{"FOO", std::string(200, 'x')}})) ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("a negative timeout is INVALID_ARGUMENT", "[exec]") {
  CHECK(CodeOf(TestPolicy(), Req({"/bin/true"}, -1ms)) == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("a timeout over the maximum is INVALID_ARGUMENT and names the maximum", "[exec]") {
  CommandExecutor executor(TestPolicy());
  auto result = executor.Execute(Req({"/bin/true"}, 301s), "a");
  CHECK(result.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(result.status().message()), Catch::Contains("exec.max_timeout (5m)"));
}

TEST_CASE("a relative working directory is INVALID_ARGUMENT", "[exec]") {
  CHECK(CodeOf(TestPolicy(), InDir({"/bin/pwd"}, "tmp")) == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("\"..\" in the working directory is INVALID_ARGUMENT", "[exec]") {
  CHECK(CodeOf(TestPolicy(), InDir({"/bin/pwd"}, "/tmp/../etc")) ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("a missing working directory is INVALID_ARGUMENT", "[exec]") {
  CHECK(CodeOf(TestPolicy(), InDir({"/bin/pwd"}, "/nonexistent/dir")) ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("the working directory is applied, and defaults to /", "[exec]") {
  CommandExecutor executor(TestPolicy());
  CHECK(MustRun(executor, InDir({"/bin/pwd"}, "/proc")).stdout_data == "/proc\n");
  CHECK(MustRun(executor, Req({"/bin/pwd"})).stdout_data == "/\n");
}

TEST_CASE("an environment variable outside the allowlist is PERMISSION_DENIED", "[exec]") {
  CHECK(CodeOf(TestPolicy(), WithEnv({"/usr/bin/env"}, {{"LD_PRELOAD", "/x.so"}})) ==
        absl::StatusCode::kPermissionDenied);
}

TEST_CASE("a malformed environment variable name is INVALID_ARGUMENT", "[exec]") {
  CHECK(CodeOf(TestPolicy(), WithEnv({"/usr/bin/env"}, {{"FOO=X", "1"}})) ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("the child gets the base environment plus allowed variables and nothing inherited",
          "[exec]") {
  setenv("EXEC_TEST_SECRET", "leak", 1);
  CommandExecutor executor(TestPolicy());
  CommandResult r = MustRun(executor, WithEnv({"/usr/bin/env"}, {{"FOO", "bar"}}));
  unsetenv("EXEC_TEST_SECRET");
  std::istringstream lines(r.stdout_data);
  std::set<std::string> vars;
  for (std::string line; std::getline(lines, line);) vars.insert(line);
  CHECK(vars ==
        std::set<std::string>{"FOO=bar", "LANG=C.UTF-8", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"});
}

TEST_CASE("an allowed variable replaces the base value", "[exec]") {
  CommandExecutor executor(TestPolicy());
  CommandResult r = MustRun(executor, WithEnv({"/usr/bin/env"}, {{"LANG", "de_DE.UTF-8"}}));
  CHECK_THAT(r.stdout_data, Catch::Contains("LANG=de_DE.UTF-8\n"));
  CHECK_THAT(r.stdout_data, !Catch::Contains("C.UTF-8"));
}

TEST_CASE("a timeout kills the whole process group and returns promptly", "[exec]") {
  CommandExecutor executor(TestPolicy());
  auto start = std::chrono::steady_clock::now();
  CommandResult r =
      MustRun(executor, Req({"/bin/sh", "-c", "sleep 100 & echo $!; sleep 100"}, 300ms));
  CHECK(std::chrono::steady_clock::now() - start < 10s);
  CHECK(r.timed_out);
  CHECK(r.signal == SIGKILL);
  CHECK(r.duration >= 300ms);
  REQUIRE_FALSE(r.stdout_data.empty());
  pid_t grandchild = std::stoi(r.stdout_data);
  CHECK(WaitUntil([&] { return ProcessDead(grandchild); }, 5s));
}

TEST_CASE("cancelling kills the command's process group and returns CANCELLED", "[exec]") {
  CommandExecutor executor(TestPolicy());
  TempDir dir;
  const std::string pid_file = (dir.path() / "pid").string();
  common::CancelToken cancel;
  std::thread canceller([&] {
    // Cancel once the grandchild is running, so there is a whole group to kill.
    WaitUntil([&] { return fs::exists(pid_file) && fs::file_size(pid_file) > 0; }, 10s);
    cancel.Cancel();
  });
  const auto start = std::chrono::steady_clock::now();
  auto result = executor.Execute(
      Req({"/bin/sh", "-c", "sleep 100 & echo $! > " + pid_file + "; sleep 100"}, 60s),
      "admin:test", &cancel);
  canceller.join();
  CHECK(std::chrono::steady_clock::now() - start < 10s);
  CHECK(result.status().code() == absl::StatusCode::kCancelled);
  std::ifstream in(pid_file);
  pid_t grandchild = 0;
  in >> grandchild;
  REQUIRE(grandchild > 0);
  CHECK(WaitUntil([&] { return ProcessDead(grandchild); }, 5s));
}

TEST_CASE("a token cancelled before the call stops the command at once", "[exec]") {
  CommandExecutor executor(TestPolicy());
  common::CancelToken cancel;
  cancel.Cancel();
  const auto start = std::chrono::steady_clock::now();
  auto result = executor.Execute(Shell("sleep 100"), "admin:test", &cancel);
  CHECK(result.status().code() == absl::StatusCode::kCancelled);
  CHECK(std::chrono::steady_clock::now() - start < 10s);
}

TEST_CASE("a zero timeout uses the policy default", "[exec]") {
  ExecPolicy policy = TestPolicy();
  policy.default_timeout = 200ms;
  CommandExecutor executor(policy);
  CommandResult r = MustRun(executor, Shell("sleep 100"));
  CHECK(r.timed_out);
  CHECK(r.duration < 10s);
}

TEST_CASE("a kill grace lets a timed-out command handle SIGTERM", "[exec]") {
  ExecPolicy policy = TestPolicy();
  policy.kill_grace = 5s;
  CommandExecutor executor(policy);
  CommandResult r =
      MustRun(executor, Req({"/bin/sh", "-c", "trap 'exit 5' TERM; sleep 100 & wait"}, 300ms));
  CHECK(r.timed_out);
  CHECK(r.exit_code == 5);
}

TEST_CASE("a grandchild holding the pipes open does not hang the call and is killed", "[exec]") {
  CommandExecutor executor(TestPolicy());
  auto start = std::chrono::steady_clock::now();
  CommandResult r = MustRun(executor, Req({"/bin/sh", "-c", "sleep 100 & echo $!"}, 60s));
  CHECK(std::chrono::steady_clock::now() - start < 10s);
  CHECK_FALSE(r.timed_out);
  CHECK(r.exit_code == 0);
  REQUIRE_FALSE(r.stdout_data.empty());
  pid_t grandchild = std::stoi(r.stdout_data);
  CHECK(WaitUntil([&] { return ProcessDead(grandchild); }, 5s));
}

TEST_CASE("a grandchild writing forever after the leader exits does not hang the call", "[exec]") {
  CommandExecutor executor(TestPolicy());
  auto start = std::chrono::steady_clock::now();
  CommandResult r = MustRun(executor, Req({"/bin/sh", "-c", "yes & exit 0"}, 60s));
  CHECK(std::chrono::steady_clock::now() - start < 10s);
  CHECK_FALSE(r.timed_out);
  CHECK(r.exit_code == 0);
}

TEST_CASE("output beyond the cap is discarded and flagged without blocking the child", "[exec]") {
  ExecPolicy policy = TestPolicy();
  policy.max_output_bytes = 1000;
  CommandExecutor executor(policy);
  CommandResult r =
      MustRun(executor, Shell("head -c 3000000 /dev/zero; head -c 2000000 /dev/zero >&2; exit 4"));
  CHECK_FALSE(r.timed_out);
  CHECK(r.exit_code == 4);
  CHECK(r.stdout_data.size() == 1000);
  CHECK(r.stderr_data.size() == 1000);
  CHECK(r.stdout_truncated);
  CHECK(r.stderr_truncated);
}

TEST_CASE("output of exactly the cap is not flagged as truncated", "[exec]") {
  ExecPolicy policy = TestPolicy();
  policy.max_output_bytes = 1000;
  CommandExecutor executor(policy);
  CommandResult r = MustRun(executor, Shell("head -c 1000 /dev/zero"));
  CHECK(r.stdout_data.size() == 1000);
  CHECK_FALSE(r.stdout_truncated);
}

TEST_CASE("commands over the concurrency limit are RESOURCE_EXHAUSTED", "[exec]") {
  TempDir dir;
  const std::string started = (dir.path() / "started").string();
  const std::string release = (dir.path() / "release").string();
  ExecPolicy policy = TestPolicy();
  policy.max_concurrent = 1;
  CommandExecutor executor(policy);

  absl::StatusOr<CommandResult> first;
  std::thread runner([&] {
    first = executor.Execute(
        Shell("touch " + started + "; while [ ! -e " + release + " ]; do sleep 0.01; done"), "a");
  });
  REQUIRE(WaitUntil([&] { return fs::exists(started); }, 10s));
  auto second = executor.Execute(Req({"/bin/true"}), "b");
  CHECK(second.status().code() == absl::StatusCode::kResourceExhausted);
  std::ofstream(release).close();
  runner.join();
  REQUIRE(first.ok());
  CHECK(first->exit_code == 0);
  // The slot is free again.
  CHECK(executor.Execute(Req({"/bin/true"}), "b").ok());
}

TEST_CASE("each execution writes one audit line with caller, argv and exit code", "[exec]") {
  std::ostringstream captured;
  auto previous = spdlog::default_logger();
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(captured);
  auto logger = std::make_shared<spdlog::logger>("audit_test", sink);
  logger->set_pattern("%v");
  spdlog::set_default_logger(logger);

  CommandExecutor executor(TestPolicy());
  auto result = executor.Execute(Shell("exit 2"), "admin:alice");
  auto denied = executor.Execute(Req({"/usr/bin/rm"}), "admin:mallory");
  spdlog::set_default_logger(previous);

  REQUIRE(result.ok());
  std::istringstream lines(captured.str());
  std::vector<std::string> all;
  for (std::string line; std::getline(lines, line);) all.push_back(line);
  REQUIRE(all.size() == 2);
  CHECK_THAT(all[0], Catch::Contains("caller=admin:alice"));
  CHECK_THAT(all[0], Catch::Contains(R"(argv=["/bin/sh","-c","exit 2"])"));
  CHECK_THAT(all[0], Catch::Contains("exit_code=2"));
  CHECK_THAT(all[0], Catch::Contains("duration_ms="));
  CHECK_THAT(all[1], Catch::Contains("caller=admin:mallory"));
  CHECK_THAT(all[1], Catch::Contains("not in exec.allowed_commands"));
}

TEST_CASE("a newline in an argument cannot forge a second audit line", "[exec]") {
  std::ostringstream captured;
  auto previous = spdlog::default_logger();
  auto logger = std::make_shared<spdlog::logger>(
      "audit_test", std::make_shared<spdlog::sinks::ostream_sink_mt>(captured));
  logger->set_pattern("%v");
  spdlog::set_default_logger(logger);
  CommandExecutor executor(TestPolicy());
  auto result = executor.Execute(Shell("true\nexec: caller=admin:root"), "admin:alice");
  spdlog::set_default_logger(previous);
  REQUIRE(result.ok());
  std::string text = captured.str();
  CHECK(std::count(text.begin(), text.end(), '\n') == 1);
}

}  // namespace
}  // namespace pi::agent::exec
