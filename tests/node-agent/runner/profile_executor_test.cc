#include "node-agent/runner/profile_executor.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "common/system/clock.h"
#include "node-agent/gpio/in_memory_backend.h"
#include "tests/common/test_dir.h"

namespace pi::agent::runner {
namespace {

namespace fs = std::filesystem;
namespace profile = common::provisioning;

using Files = std::vector<std::pair<std::string, std::string>>;

exec::ExecPolicy TestExecPolicy() {
  exec::ExecPolicy policy;
  policy.allowed_commands = {"/bin/true", "/bin/false", "/bin/echo", "/bin/sh"};
  policy.default_timeout = std::chrono::seconds(10);
  return policy;
}

gpio::GpioConfig TestGpioConfig() { return gpio::GpioConfig{.allowed_lines = {{.line = "4-27"}}}; }

struct LogLine {
  std::string channel;
  std::string text;
};

struct Fixture {
  Fixture() : commands(TestExecPolicy()) {
    auto created = gpio::GpioController::Create(TestGpioConfig(), backend, clock);
    REQUIRE(created.ok());
    gpio_controller = *std::move(created);
    fs::create_directories(root.path() / "etc");
    policy.filesystem_root = root.path().string();
    policy.allowed_write_roots = {"/etc", "/opt/app"};
  }

  absl::StatusOr<ProvisionResult> Run(const std::string& profile_json,
                                      const std::map<std::string, std::string>& parameters,
                                      bool plan, common::CancelToken* cancel = nullptr) {
    Files files = {
        {std::string(profile::kProfileFileName), profile_json},
        {std::string(profile::kParametersFileName), profile::ParametersJson(parameters)}};
    return RunFiles(files, plan, cancel);
  }

  absl::StatusOr<ProvisionResult> RunFiles(const Files& files, bool plan,
                                           common::CancelToken* cancel = nullptr) {
    ProfileExecutor executor(policy, commands, gpio_controller.get());
    logs.clear();
    absl::StatusOr<ProvisionResult> result = executor.Run(
        files, plan,
        [&](std::string_view channel, std::string_view line) {
          logs.push_back(LogLine{std::string(channel), std::string(line)});
        },
        cancel);
    if (result.ok()) {
      UNSCOPED_INFO("plan_output:\n"
                    << result->plan_output << "\nerror: " << result->error_message);
    }
    return result;
  }

  // Runs and requires a result (not a refusal to start).
  ProvisionResult MustRun(const std::string& profile_json,
                          const std::map<std::string, std::string>& parameters, bool plan) {
    absl::StatusOr<ProvisionResult> result = Run(profile_json, parameters, plan);
    INFO(result.status().ToString());
    REQUIRE(result.ok());
    return *std::move(result);
  }

  fs::path Host(const std::string& path) const {
    return root.path() / fs::path(path).relative_path();
  }

  std::string ReadHost(const std::string& path) const {
    std::ifstream in(Host(path), std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
  }

  int ModeOf(const std::string& path) const {
    struct stat info {};
    REQUIRE(stat(Host(path).c_str(), &info) == 0);
    return static_cast<int>(info.st_mode & 07777);
  }

  // Whether a command printed exactly this line on `channel`.
  bool Printed(std::string_view channel, std::string_view line) const {
    for (const LogLine& logged : logs) {
      if (logged.channel == channel && logged.text == line) return true;
    }
    return false;
  }

  bool Logged(std::string_view channel, std::string_view text) const {
    for (const LogLine& line : logs) {
      if (line.channel == channel && line.text.find(text) != std::string::npos) return true;
    }
    return false;
  }

  testing::TempDir root;
  ProvisionPolicy policy;
  exec::CommandExecutor commands;
  common::ManualClock clock;
  gpio::InMemoryGpioBackend backend;
  std::unique_ptr<gpio::GpioController> gpio_controller;
  std::vector<LogLine> logs;
};

std::string LastLine(const std::string& text) {
  const size_t newline = text.rfind('\n');
  return newline == std::string::npos ? text : text.substr(newline + 1);
}

// A profile around `steps` (JSON array elements) with parameters "p" (default "v") and
// "name" (default "node-1").
std::string Profile(const std::string& steps) {
  return R"({"name": "test", "parameters": {"p": {"default": "v"}, "name": {"type": "hostname", "default": "node-1"}}, "steps": [)" +
         steps + "]}";
}

const std::string kMotdStep =
    R"({"name": "motd", "write_file": {"path": "/etc/motd", "content": "Welcome to {{name}}\n", "mode": "0640"}})";

TEST_CASE("plan mode reports a new file and writes nothing", "[provision]") {
  Fixture f;
  const ProvisionResult result = f.MustRun(Profile(kMotdStep), {}, /*plan=*/true);
  CHECK(result.success);
  CHECK(result.changed == 1);
  CHECK(result.unchanged == 0);
  CHECK(result.plan_output ==
        "+ write /etc/motd (new file, mode 0640)\nPlan: 1 to change, 0 unchanged.");
  CHECK_FALSE(fs::exists(f.Host("/etc/motd")));
  CHECK(f.Logged("stdout", "step 1/1 motd: + write /etc/motd (new file, mode 0640)"));
  CHECK(f.Logged("stdout", "Plan: 1 to change, 0 unchanged."));
}

TEST_CASE("apply writes content and mode; a second apply and a plan find nothing to do",
          "[provision]") {
  Fixture f;
  const ProvisionResult first = f.MustRun(Profile(kMotdStep), {{"name", "pi-7"}}, false);
  CHECK(first.success);
  CHECK(first.changed == 1);
  CHECK(LastLine(first.plan_output) == "Applied: 1 changed, 0 unchanged.");
  CHECK(f.ReadHost("/etc/motd") == "Welcome to pi-7\n");
  CHECK(f.ModeOf("/etc/motd") == 0640);

  const ProvisionResult second = f.MustRun(Profile(kMotdStep), {{"name", "pi-7"}}, false);
  CHECK(second.success);
  CHECK(second.changed == 0);
  CHECK(second.plan_output == "= write /etc/motd (unchanged)\nApplied: 0 changed, 1 unchanged.");

  const ProvisionResult plan = f.MustRun(Profile(kMotdStep), {{"name", "pi-7"}}, true);
  CHECK(LastLine(plan.plan_output) == "Plan: 0 to change, 1 unchanged.");

  const ProvisionResult other = f.MustRun(Profile(kMotdStep), {{"name", "pi-8"}}, true);
  CHECK(other.plan_output ==
        "~ write /etc/motd (content changed)\nPlan: 1 to change, 0 unchanged.");
  CHECK(f.ReadHost("/etc/motd") == "Welcome to pi-7\n");
}

// Restores the process umask even when a REQUIRE throws, so later tests see the usual one.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : previous_(umask(mask)) {}
  ~ScopedUmask() { umask(previous_); }
  ScopedUmask(const ScopedUmask&) = delete;
  ScopedUmask& operator=(const ScopedUmask&) = delete;

 private:
  mode_t previous_;
};

TEST_CASE("a mode the umask would narrow is still applied exactly", "[provision]") {
  Fixture f;
  const ProvisionResult result = [&] {
    const ScopedUmask narrow(077);
    return f.MustRun(
        Profile(
            R"({"name": "w", "write_file": {"path": "/etc/shared", "content": "x", "mode": "0664"}})"),
        {}, false);
  }();
  CHECK(result.success);
  CHECK(f.ModeOf("/etc/shared") == 0664);
}

TEST_CASE("directories a write creates are 0755 whatever the umask (systemd's UMask=0077)",
          "[provision]") {
  Fixture f;
  fs::create_directories(f.Host("/opt"));
  const ProvisionResult result = [&] {
    const ScopedUmask narrow(077);
    return f.MustRun(
        Profile(
            R"({"name": "w", "write_file": {"path": "/opt/app/conf.d/app.conf", "content": ""}})"),
        {}, false);
  }();
  CHECK(result.success);
  CHECK(f.ModeOf("/opt/app") == 0755);
  CHECK(f.ModeOf("/opt/app/conf.d") == 0755);
}

TEST_CASE("a mode-only difference is reported and fixed without rewriting", "[provision]") {
  Fixture f;
  f.root.Write("etc/motd", "Welcome to node-1\n");
  REQUIRE(chmod(f.Host("/etc/motd").c_str(), 0600) == 0);
  const ProvisionResult plan = f.MustRun(Profile(kMotdStep), {}, true);
  CHECK(plan.plan_output ==
        "~ write /etc/motd (mode 0600 -> 0640)\nPlan: 1 to change, 0 unchanged.");
  CHECK(f.ModeOf("/etc/motd") == 0600);
  const ProvisionResult apply = f.MustRun(Profile(kMotdStep), {}, false);
  CHECK(apply.changed == 1);
  CHECK(f.ModeOf("/etc/motd") == 0640);
  CHECK(f.MustRun(Profile(kMotdStep), {}, false).changed == 0);
}

TEST_CASE("missing parent directories are created inside an allowed root only", "[provision]") {
  Fixture f;
  fs::create_directories(f.Host("/opt"));
  const std::string step =
      R"({"name": "conf", "write_file": {"path": "/opt/app/conf.d/app.conf", "content": "a=1\n"}})";
  const ProvisionResult plan = f.MustRun(Profile(step), {}, true);
  CHECK(plan.plan_output.find("+ write /opt/app/conf.d/app.conf (new file, mode 0644, creating its "
                              "directories)") == 0);
  CHECK_FALSE(fs::exists(f.Host("/opt/app")));
  const ProvisionResult apply = f.MustRun(Profile(step), {}, false);
  CHECK(apply.success);
  CHECK(f.ReadHost("/opt/app/conf.d/app.conf") == "a=1\n");

  // /srv does not exist and is not an allowed root: nothing is created above /srv/app.
  f.policy.allowed_write_roots = {"/srv/app"};
  const ProvisionResult refused =
      f.MustRun(Profile(R"({"name": "srv", "write_file": {"path": "/srv/app/x", "content": ""}})"),
                {}, false);
  CHECK_FALSE(refused.success);
  CHECK(refused.error_message.find("directory /srv does not exist and is outside") !=
        std::string::npos);
  CHECK_FALSE(fs::exists(f.Host("/srv")));
}

TEST_CASE("a write outside the allowed roots fails the step and writes nothing", "[provision]") {
  Fixture f;
  fs::create_directories(f.Host("/root"));
  for (const std::string path : {"/root/.ssh/authorized_keys", "/etcetera/x", "/etc"}) {
    const ProvisionResult result =
        f.MustRun(Profile(R"({"name": "evil", "write_file": {"path": ")" + path +
                          R"(", "content": "x"}}, )" + kMotdStep),
                  {}, false);
    INFO(path);
    CHECK_FALSE(result.success);
    CHECK(result.changed == 0);
    CHECK(result.error_message.find("step 1/2 evil: ") == 0);
    CHECK(LastLine(result.plan_output) == "Applied: 0 changed, 0 unchanged.");
    CHECK(f.Logged("stdout", "step 1/2 evil: failed:"));
  }
  CHECK(f.MustRun(Profile(R"({"name": "evil", "write_file": {"path": "/root/x", "content": "x"}})"),
                  {}, false)
            .error_message.find("/root/x is outside runner.allowed_write_roots (/etc, /opt/app)") !=
        std::string::npos);
  CHECK_FALSE(fs::exists(f.Host("/root/.ssh")));
  CHECK_FALSE(fs::exists(f.Host("/etcetera")));
  CHECK_FALSE(fs::exists(f.Host("/etc/motd")));
}

TEST_CASE("symbolic links cannot lead a write out of the root or the allowed roots",
          "[provision]") {
  Fixture f;
  testing::TempDir outside;
  fs::create_symlink(outside.path(), f.Host("/etc/escape"));
  fs::create_directories(f.Host("/var/lib"));
  fs::create_symlink(f.Host("/var/lib"), f.Host("/etc/inside"));
  fs::create_symlink(outside.path() / "target", f.Host("/etc/motd"));

  const auto error_for = [&](const std::string& path) {
    const ProvisionResult result = f.MustRun(
        Profile(R"({"name": "w", "write_file": {"path": ")" + path + R"(", "content": "x"}})"), {},
        false);
    CHECK_FALSE(result.success);
    return result.error_message;
  };
  CHECK(error_for("/etc/escape/x").find("outside the filesystem root") != std::string::npos);
  CHECK(error_for("/etc/escape/sub/x").find("outside the filesystem root") != std::string::npos);
  CHECK(error_for("/etc/inside/x").find("leads through a symbolic link to /var/lib/x") !=
        std::string::npos);
  CHECK(error_for("/etc/motd").find("is a symbolic link") != std::string::npos);
  CHECK(fs::is_empty(outside.path()));
  CHECK(fs::is_empty(f.Host("/var/lib")));

  // A link that stays inside the allowed roots is followed.
  fs::create_directories(f.Host("/etc/real"));
  fs::create_symlink(f.Host("/etc/real"), f.Host("/etc/alias"));
  CHECK(
      f.MustRun(Profile(R"({"name": "w", "write_file": {"path": "/etc/alias/x", "content": "y"}})"),
                {}, false)
          .success);
  CHECK(f.ReadHost("/etc/real/x") == "y");
}

TEST_CASE("a parameter that makes a path climb with .. refuses the run", "[provision]") {
  Fixture f;
  absl::StatusOr<ProvisionResult> result = f.Run(
      Profile(R"({"name": "w", "write_file": {"path": "/etc/{{p}}/passwd", "content": "x"}})"),
      {{"p", ".."}}, false);
  REQUIRE(result.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(result.status().message()).find("..") != std::string::npos);
  CHECK_FALSE(fs::exists(f.root.path().parent_path() / "passwd"));
}

TEST_CASE("commands run only in apply mode and their output is logged", "[provision]") {
  Fixture f;
  const std::string marker = f.Host("/etc/ran").string();
  const std::string step =
      R"({"name": "touch", "run": {"argv": ["/bin/sh", "-c", "echo first; echo second >&2; echo yes > )" +
      marker + R"("]}})";
  const ProvisionResult plan = f.MustRun(Profile(step), {}, true);
  CHECK(plan.changed == 1);
  CHECK(plan.plan_output.find("~ run /bin/sh -c ") == 0);
  CHECK_FALSE(fs::exists(marker));

  const ProvisionResult apply = f.MustRun(Profile(step), {}, false);
  CHECK(apply.success);
  CHECK(apply.changed == 1);
  CHECK(fs::exists(marker));
  CHECK(f.Printed("stdout", "first"));
  CHECK(f.Printed("stderr", "second"));
  CHECK(f.Logged("stdout", "step 1/1 touch: ~ run /bin/sh -c"));
}

TEST_CASE("a command outside the exec allowlist fails its step with a clear error", "[provision]") {
  Fixture f;
  const ProvisionResult result = f.MustRun(
      Profile(R"({"name": "wipe", "run": {"argv": ["/usr/bin/env", "rm", "-rf", "/"]}}, )" +
              kMotdStep),
      {}, false);
  CHECK_FALSE(result.success);
  CHECK(result.error_message.find("step 1/2 wipe:") == 0);
  CHECK(result.error_message.find("/usr/bin/env") != std::string::npos);
  CHECK(result.error_message.find("allowed") != std::string::npos);
  CHECK_FALSE(fs::exists(f.Host("/etc/motd")));
}

TEST_CASE("a failing command fails the run with its exit code", "[provision]") {
  Fixture f;
  const ProvisionResult result = f.MustRun(
      Profile(R"({"name": "fail", "run": {"argv": ["/bin/sh", "-c", "exit 3"]}})"), {}, false);
  CHECK_FALSE(result.success);
  CHECK(result.error_message.find("exited with code 3") != std::string::npos);
  CHECK(result.plan_output.find("! fail failed:") == 0);
}

TEST_CASE("a command that outlives its timeout fails the run", "[provision]") {
  Fixture f;
  const ProvisionResult result = f.MustRun(
      Profile(
          R"({"name": "slow", "run": {"argv": ["/bin/sh", "-c", "sleep 5"], "timeout": "100ms"}})"),
      {}, false);
  CHECK_FALSE(result.success);
  CHECK(result.error_message.find("timed out") != std::string::npos);
}

TEST_CASE("unless skips a command whose change is in place, also in plan mode", "[provision]") {
  Fixture f;
  const std::string skipped =
      R"({"name": "s", "run": {"argv": ["/bin/false"], "unless": ["/bin/sh", "-c", "echo probing; exit 0"]}})";
  for (const bool plan : {true, false}) {
    const ProvisionResult result = f.MustRun(Profile(skipped), {}, plan);
    CHECK(result.success);
    CHECK(result.changed == 0);
    CHECK(result.plan_output.find("= run /bin/false (skipped: /bin/sh -c \"echo probing; exit 0\" "
                                  "succeeded)") == 0);
    CHECK(f.Printed("stdout", "probing"));
  }
  const std::string runs =
      R"({"name": "r", "run": {"argv": ["/bin/echo", "did it"], "unless": ["/bin/false"]}})";
  CHECK(f.MustRun(Profile(runs), {}, true).plan_output.find("~ run /bin/echo \"did it\"") == 0);
  const ProvisionResult applied = f.MustRun(Profile(runs), {}, false);
  CHECK(applied.changed == 1);
  CHECK(f.Printed("stdout", "did it"));
  const ProvisionResult refused = f.MustRun(
      Profile(
          R"({"name": "u", "run": {"argv": ["/bin/true"], "unless": ["/usr/bin/test", "-e", "/"]}})"),
      {}, true);
  CHECK_FALSE(refused.success);
  CHECK(refused.error_message.find("unless command /usr/bin/test") != std::string::npos);
}

TEST_CASE("only_if_changed runs a command after a change and skips it otherwise", "[provision]") {
  Fixture f;
  const std::string steps =
      kMotdStep +
      R"(, {"name": "reload", "run": {"argv": ["/bin/echo", "reloading"], "only_if_changed": true}})";
  const ProvisionResult plan = f.MustRun(Profile(steps), {}, true);
  CHECK(plan.changed == 2);
  const ProvisionResult first = f.MustRun(Profile(steps), {}, false);
  CHECK(first.changed == 2);
  CHECK(f.Printed("stdout", "reloading"));
  const ProvisionResult second = f.MustRun(Profile(steps), {}, false);
  CHECK(second.changed == 0);
  CHECK(second.unchanged == 2);
  CHECK(second.plan_output.find("= run /bin/echo reloading (skipped: no earlier step changed "
                                "anything)") != std::string::npos);
  CHECK_FALSE(f.Printed("stdout", "reloading"));
}

TEST_CASE("a failing check stops the steps after it, in both modes", "[provision]") {
  Fixture f;
  const std::string steps =
      R"({"name": "precondition", "check": {"argv": ["/bin/false"]}}, )" + kMotdStep;
  for (const bool plan : {true, false}) {
    const ProvisionResult result = f.MustRun(Profile(steps), {}, plan);
    CHECK_FALSE(result.success);
    CHECK(result.error_message.find("step 1/2 precondition: check failed: /bin/false exited with "
                                    "code 1") == 0);
    CHECK(result.changed == 0);
    CHECK_FALSE(f.Logged("stdout", "step 2/2"));
  }
  CHECK_FALSE(fs::exists(f.Host("/etc/motd")));
  const ProvisionResult passing = f.MustRun(
      Profile(R"({"name": "precondition", "check": {"argv": ["/bin/true"]}}, )" + kMotdStep), {},
      false);
  CHECK(passing.success);
  CHECK(passing.unchanged == 1);
  CHECK(passing.changed == 1);
}

TEST_CASE("path checks look for a file and its text; a plan checks what it would write",
          "[provision]") {
  Fixture f;
  const std::string check =
      R"({"name": "has-name", "check": {"path": "/etc/motd", "contains": "{{name}}"}})";
  const ProvisionResult missing = f.MustRun(Profile(check), {}, false);
  CHECK_FALSE(missing.success);
  CHECK(missing.error_message.find("check failed: /etc/motd does not exist") != std::string::npos);

  const ProvisionResult planned = f.MustRun(Profile(kMotdStep + ", " + check), {}, true);
  CHECK(planned.success);
  CHECK(planned.plan_output ==
        "+ write /etc/motd (new file, mode 0640)\n= check /etc/motd contains \"node-1\" "
        "(passed)\nPlan: 1 to change, 1 unchanged.");

  f.root.Write("etc/motd", "something else\n");
  const ProvisionResult wrong = f.MustRun(Profile(check), {}, true);
  CHECK_FALSE(wrong.success);
  CHECK(wrong.error_message.find("/etc/motd does not contain \"node-1\"") != std::string::npos);
  CHECK(f.MustRun(Profile(R"({"name": "exists", "check": {"path": "/etc/motd"}})"), {}, true)
            .success);

  testing::TempDir outside;
  fs::create_symlink(outside.path(), f.Host("/etc/out"));
  const ProvisionResult escaped =
      f.MustRun(Profile(R"({"name": "peek", "check": {"path": "/etc/out"}})"), {}, true);
  CHECK_FALSE(escaped.success);
  CHECK(escaped.error_message.find("outside the filesystem root") != std::string::npos);
}

TEST_CASE("path checks look only where a profile may write", "[provision]") {
  Fixture f;
  fs::create_directories(f.Host("/var/lib/pi-agent"));
  f.root.Write("var/lib/pi-agent/node.key", "-----BEGIN PRIVATE KEY-----\n");
  const auto check = [&](const std::string& fields) {
    return f.MustRun(Profile(R"({"name": "peek", "check": {)" + fields + "}}"), {}, false);
  };
  for (const std::string fields :
       {R"("path": "/var/lib/pi-agent/node.key", "contains": "-----BEGIN")",
        R"("path": "/var/lib/pi-agent/node.key")", R"("path": "/var/lib/pi-agent/missing")"}) {
    INFO(fields);
    const ProvisionResult result = check(fields);
    CHECK_FALSE(result.success);
    CHECK(result.error_message.find("is outside runner.allowed_write_roots (/etc, /opt/app); a "
                                    "profile checks only files it may write") != std::string::npos);
  }
  // /etc2 is not inside /etc.
  f.root.Write("etc2/secret", "x");
  CHECK(check(R"("path": "/etc2/secret")").error_message.find("is outside") != std::string::npos);

  // Links inside an allowed root lead nowhere else.
  fs::create_symlink(f.Host("/var/lib/pi-agent/node.key"), f.Host("/etc/key"));
  fs::create_symlink(f.Host("/var/lib/pi-agent"), f.Host("/etc/agent"));
  const ProvisionResult linked = check(R"("path": "/etc/key", "contains": "-----BEGIN")");
  CHECK_FALSE(linked.success);
  CHECK(linked.error_message.find("/etc/key is a symbolic link to /var/lib/pi-agent/node.key, "
                                  "which is outside runner.allowed_write_roots") !=
        std::string::npos);
  const ProvisionResult through = check(R"("path": "/etc/agent/node.key")");
  CHECK_FALSE(through.success);
  CHECK(through.error_message.find("leads through a symbolic link to /var/lib/pi-agent/node.key") !=
        std::string::npos);

  // A link that stays inside the allowed roots is followed.
  f.root.Write("opt/app/version", "2.1\n");
  fs::create_symlink(f.Host("/opt/app/version"), f.Host("/etc/app-version"));
  CHECK(check(R"("path": "/etc/app-version", "contains": "2.1")").success);
  CHECK(check(R"("path": "/opt/app/version")").success);
  CHECK(check(R"("path": "/opt/app/missing/version")")
            .error_message.find("/opt/app/missing/version does not exist") != std::string::npos);
}

TEST_CASE("gpio steps drive a held line; a plan compares without touching it", "[provision]") {
  Fixture f;
  const std::string step = R"({"name": "led", "gpio": {"line": 17, "value": 1}})";
  const ProvisionResult plan = f.MustRun(Profile(step), {}, true);
  CHECK(plan.plan_output ==
        "~ gpio line 17 = 1 (not held by pi-agent)\nPlan: 1 to change, 0 unchanged.");
  CHECK(f.gpio_controller->HeldLines().empty());

  const ProvisionResult apply = f.MustRun(Profile(step), {}, false);
  CHECK(apply.success);
  CHECK(apply.changed == 1);
  absl::StatusOr<int> level = f.backend.PhysicalLevel("gpiochip0", 17);
  REQUIRE(level.ok());
  CHECK(*level == 1);
  REQUIRE(f.gpio_controller->HeldLines().size() == 1);
  CHECK(f.gpio_controller->HeldLines()[0].held_until == std::nullopt);

  CHECK(f.MustRun(Profile(step), {}, false).changed == 0);
  CHECK(LastLine(f.MustRun(Profile(step), {}, true).plan_output) ==
        "Plan: 0 to change, 1 unchanged.");
  const ProvisionResult low = f.MustRun(
      Profile(R"({"name": "led", "gpio": {"chip": "pinctrl-bcm2835", "line": 17, "value": 0}})"),
      {}, true);
  CHECK(low.plan_output.find("~ gpio pinctrl-bcm2835 line 17 = 0 (now 1)") == 0);
  CHECK(*f.backend.PhysicalLevel("gpiochip0", 17) == 1);
}

TEST_CASE("gpio steps fail on a forbidden line or without GPIO", "[provision]") {
  Fixture f;
  const ProvisionResult forbidden =
      f.MustRun(Profile(R"({"name": "uart", "gpio": {"line": 14, "value": 1}})"), {}, false);
  CHECK_FALSE(forbidden.success);
  CHECK(forbidden.error_message.find("step 1/1 uart:") == 0);
  CHECK(f.gpio_controller->HeldLines().empty());

  f.gpio_controller.reset();
  const ProvisionResult missing =
      f.MustRun(Profile(R"({"name": "led", "gpio": {"line": 17, "value": 1}})"), {}, true);
  CHECK_FALSE(missing.success);
  CHECK(missing.error_message.find("GPIO is not available") != std::string::npos);
}

TEST_CASE("a missing or malformed profile.json refuses the run", "[provision]") {
  Fixture f;
  absl::StatusOr<ProvisionResult> none = f.RunFiles({{"parameters.json", "{}"}}, false);
  CHECK(none.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(none.status().message()).find("no profile.json (it has: parameters.json)") !=
        std::string::npos);
  CHECK(f.RunFiles({}, true).status().code() == absl::StatusCode::kInvalidArgument);

  absl::StatusOr<ProvisionResult> broken = f.RunFiles({{"profile.json", "{\"name\": "}}, false);
  CHECK(broken.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(broken.status().message()).find("profile.json: invalid JSON") == 0);

  absl::StatusOr<ProvisionResult> twice = f.RunFiles(
      {{"profile.json", Profile(kMotdStep)}, {"profile.json", Profile(kMotdStep)}}, false);
  CHECK(twice.status().code() == absl::StatusCode::kInvalidArgument);

  absl::StatusOr<ProvisionResult> bad_parameters =
      f.RunFiles({{"profile.json", Profile(kMotdStep)}, {"parameters.json", "[1]"}}, false);
  CHECK(bad_parameters.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_FALSE(fs::exists(f.Host("/etc/motd")));

  // Without parameters.json every parameter takes its default.
  absl::StatusOr<ProvisionResult> defaults =
      f.RunFiles({{"profile.json", Profile(kMotdStep)}}, false);
  REQUIRE(defaults.ok());
  CHECK(f.ReadHost("/etc/motd") == "Welcome to node-1\n");
}

TEST_CASE("unknown and mistyped parameters refuse the run", "[provision]") {
  Fixture f;
  absl::StatusOr<ProvisionResult> unknown = f.Run(Profile(kMotdStep), {{"colour", "red"}}, false);
  CHECK(unknown.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(unknown.status().message()).find("\"colour\"") != std::string::npos);
  absl::StatusOr<ProvisionResult> mistyped =
      f.Run(Profile(kMotdStep), {{"name", "not a hostname"}}, false);
  CHECK(mistyped.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(mistyped.status().message()).find("is not a hostname") != std::string::npos);
  CHECK_FALSE(fs::exists(f.Host("/etc/motd")));
}

TEST_CASE("a cancelled run stops before its next step", "[provision]") {
  Fixture f;
  common::CancelToken cancel;
  cancel.Cancel();
  absl::StatusOr<ProvisionResult> result = f.Run(Profile(kMotdStep), {}, false, &cancel);
  REQUIRE(result.ok());
  CHECK_FALSE(result->success);
  CHECK(result->error_message.find("cancelled") != std::string::npos);
  CHECK_FALSE(fs::exists(f.Host("/etc/motd")));
}

TEST_CASE("the motd example profile is idempotent", "[provision]") {
  Fixture f;
  std::ifstream in(std::string(PI_SOURCE_DIR) + "/deploy/profiles/motd.json");
  std::stringstream text;
  text << in.rdbuf();
  const ProvisionResult apply = f.MustRun(text.str(), {{"message", "Hello from the test"}}, false);
  CHECK(apply.success);
  CHECK(LastLine(apply.plan_output) == "Applied: 1 changed, 1 unchanged.");
  CHECK(f.ReadHost("/etc/motd").find("Hello from the test\n") == 0);
  const ProvisionResult plan = f.MustRun(text.str(), {{"message", "Hello from the test"}}, true);
  CHECK(plan.success);
  CHECK(LastLine(plan.plan_output) == "Plan: 0 to change, 2 unchanged.");
}

}  // namespace
}  // namespace pi::agent::runner
