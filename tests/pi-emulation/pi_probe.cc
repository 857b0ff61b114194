// pi-probe: runs inside the emulated Raspberry Pi 3 and checks the real pi-agent over loopback and
// mTLS, as an admin would: the Pi header chip found by its label, GPIO17 written and read back
// through the kernel's bcm2835 driver, a line held by another process reported busy, and the
// board's CPUs, memory and model. Prints one line per check, then "PI-EMULATION PASS" or
// "PI-EMULATION FAIL"; exits 0 only on PASS.
#include <grpcpp/grpcpp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <gpiod.hpp>
#include <string>
#include <thread>

#include "common/tls/credentials.h"
#include "picontroller/v1/agent.grpc.pb.h"

namespace {

namespace v1 = picontroller::v1;

constexpr char kHeaderChipLabel[] = "pinctrl-bcm2835";
constexpr unsigned kLine = 17;
constexpr char kPassLine[] = "PI-EMULATION PASS";

struct Flags {
  std::string address = "127.0.0.1:9091";
  std::string server_name = "pi-guest";
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  int connect_timeout_seconds = 60;
  int expected_cpus = 4;
  double min_memory_mib = 850;
  double max_memory_mib = 1024;
  std::string expected_model = "Raspberry Pi 3 Model B";
};

class Checks {
 public:
  void Record(const std::string& name, bool ok, const std::string& detail) {
    std::printf("check %-34s %s  %s\n", name.c_str(), ok ? "ok  " : "FAIL", detail.c_str());
    std::fflush(stdout);
    if (!ok) ++failures_;
  }
  int failures() const { return failures_; }

 private:
  int failures_ = 0;
};

std::string Describe(const grpc::Status& status) {
  return status.ok() ? "OK" : std::to_string(status.error_code()) + " " + status.error_message();
}

// A process of its own that holds line 17 while the agent is asked for it, the way another
// program on a real Pi would. Forked before any gRPC state exists; it never touches gRPC.
class LineHolder {
 public:
  // Returns false when the process could not be started.
  bool Start() {
    int go[2];
    int held[2];
    if (pipe(go) != 0 || pipe(held) != 0) return false;
    pid_ = fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      close(go[1]);
      close(held[0]);
      RunChild(go[0], held[1]);
    }
    close(go[0]);
    close(held[1]);
    go_fd_ = go[1];
    held_fd_ = held[0];
    return true;
  }

  // Asks the holder to take the line; returns what it reported ("held" or its error).
  std::string Take() {
    if (write(go_fd_, "g", 1) != 1) return "cannot reach the holder process";
    char buffer[256] = {};
    const ssize_t got = read(held_fd_, buffer, sizeof(buffer) - 1);
    return got > 0 ? std::string(buffer, static_cast<size_t>(got)) : "the holder process died";
  }

  // Closing its pipe ends the holder, which lets the line go as it exits.
  void Stop() {
    if (pid_ <= 0) return;
    close(go_fd_);
    close(held_fd_);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  [[noreturn]] static void RunChild(int go_fd, int held_fd) {
    char byte;
    if (read(go_fd, &byte, 1) != 1) _exit(0);
    std::string reply = "held";
    try {
      gpiod::chip chip(kHeaderChipLabel, gpiod::chip::OPEN_BY_LABEL);
      gpiod::line line = chip.get_line(kLine);
      line.request({"pi-probe-holder", gpiod::line_request::DIRECTION_OUTPUT, 0}, 1);
      (void)!write(held_fd, reply.data(), reply.size());
      while (read(go_fd, &byte, 1) > 0) {
      }
      line.release();
    } catch (const std::exception& error) {
      reply = std::string("holder: ") + error.what();
      (void)!write(held_fd, reply.data(), reply.size());
    }
    _exit(0);
  }

  pid_t pid_ = -1;
  int go_fd_ = -1;
  int held_fd_ = -1;
};

grpc::Status Gpio(v1::NodeAgent::Stub& stub, v1::GPIORequest request, v1::GPIOResponse* response) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  return stub.ControlGPIO(&context, request, response);
}

v1::GPIORequest LineRequest(v1::GPIOAction action, const std::string& chip) {
  v1::GPIORequest request;
  request.set_chip(chip);
  request.set_offset(kLine);
  request.set_action(action);
  return request;
}

void CheckChipAndRoundTrip(v1::NodeAgent::Stub& stub, Checks& checks) {
  // No chip named: the agent must pick the Pi header chip by its label on its own.
  v1::GPIOResponse read;
  auto status = Gpio(stub, LineRequest(v1::GPIO_ACTION_READ, ""), &read);
  checks.Record("chip found by label", status.ok() && read.chip_label() == kHeaderChipLabel,
                status.ok()
                    ? read.chip_name() + " [" + read.chip_label() + "] line " + read.line_name()
                    : Describe(status));

  for (const int value : {1, 0, 1, 0}) {
    auto write = LineRequest(v1::GPIO_ACTION_WRITE, kHeaderChipLabel);
    write.clear_offset();
    write.set_line_name("GPIO17");
    write.set_value(value);
    v1::GPIOResponse written;
    status = Gpio(stub, write, &written);
    const std::string name = "GPIO17 write " + std::to_string(value);
    checks.Record(name, status.ok() && written.success() && written.held(),
                  status.ok() ? "held by the agent" : Describe(status));

    v1::GPIOResponse again;
    status = Gpio(stub, LineRequest(v1::GPIO_ACTION_READ, kHeaderChipLabel), &again);
    checks.Record("GPIO17 read back " + std::to_string(value),
                  status.ok() && again.has_value() && again.value() == value,
                  status.ok()
                      ? "read " + (again.has_value() ? std::to_string(again.value()) : "none")
                      : Describe(status));
  }

  v1::GPIOResponse released;
  status = Gpio(stub, LineRequest(v1::GPIO_ACTION_RELEASE, kHeaderChipLabel), &released);
  checks.Record("GPIO17 released", status.ok() && !released.held(), Describe(status));
}

void CheckBusyLine(v1::NodeAgent::Stub& stub, LineHolder& holder, Checks& checks) {
  const std::string taken = holder.Take();
  checks.Record("another process holds GPIO17", taken == "held", taken);
  if (taken != "held") return;

  auto write = LineRequest(v1::GPIO_ACTION_WRITE, kHeaderChipLabel);
  write.set_value(1);
  v1::GPIOResponse response;
  const auto status = Gpio(stub, write, &response);
  checks.Record("busy line is FAILED_PRECONDITION",
                status.error_code() == grpc::StatusCode::FAILED_PRECONDITION &&
                    status.error_message().find("pi-probe-holder") != std::string::npos,
                Describe(status));
  holder.Stop();

  // Once the other process is gone the agent can use the line again.
  v1::GPIOResponse after;
  const auto again = Gpio(stub, write, &after);
  checks.Record("line usable after the holder exits", again.ok() && after.success(),
                Describe(again));
  Gpio(stub, LineRequest(v1::GPIO_ACTION_RELEASE, kHeaderChipLabel), &after);
}

void CheckBoard(v1::NodeAgent::Stub& stub, const Flags& flags, Checks& checks) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  v1::SystemMetrics metrics;
  const auto status = stub.GetSystemMetrics(&context, {}, &metrics);
  if (!status.ok()) {
    checks.Record("GetSystemMetrics", false, Describe(status));
    return;
  }
  checks.Record("CPU count", static_cast<int>(metrics.cpu().count()) == flags.expected_cpus,
                std::to_string(metrics.cpu().count()) + " CPUs");
  const double memory_mib = static_cast<double>(metrics.memory().total_bytes()) / (1024.0 * 1024.0);
  char memory[64];
  std::snprintf(memory, sizeof(memory), "%.0f MiB total", memory_mib);
  checks.Record("memory about 1 GiB",
                memory_mib >= flags.min_memory_mib && memory_mib <= flags.max_memory_mib, memory);
  checks.Record("device-tree model", metrics.model().rfind(flags.expected_model, 0) == 0,
                "\"" + metrics.model() + "\"");
}

int Run(const Flags& flags) {
  // The holder is forked first, while this process has no gRPC threads.
  LineHolder holder;
  Checks checks;
  checks.Record("holder process started", holder.Start(), "");

  pi::common::ClientTlsConfig tls{flags.ca_file, flags.cert_file, flags.key_file};
  auto credentials = pi::common::MakeChannelCredentials(tls);
  if (!credentials.ok()) {
    checks.Record("client credentials", false, std::string(credentials.status().message()));
    std::printf("PI-EMULATION FAIL\n");
    return 1;
  }
  grpc::ChannelArguments arguments;
  arguments.SetSslTargetNameOverride(flags.server_name);
  auto channel = grpc::CreateCustomChannel(flags.address, *credentials, arguments);
  const bool connected = channel->WaitForConnected(
      std::chrono::system_clock::now() + std::chrono::seconds(flags.connect_timeout_seconds));
  checks.Record("mTLS connection to pi-agent", connected, flags.address);
  if (connected) {
    auto stub = v1::NodeAgent::NewStub(channel);
    CheckChipAndRoundTrip(*stub, checks);
    CheckBusyLine(*stub, holder, checks);
    CheckBoard(*stub, flags, checks);
  }
  holder.Stop();

  if (checks.failures() == 0) {
    std::printf("%s\n", kPassLine);
    return 0;
  }
  std::printf("PI-EMULATION FAIL: %d check(s) failed\n", checks.failures());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  CLI::App app{"Checks a pi-agent on an emulated Raspberry Pi 3"};
  app.add_option("--address", flags.address, "pi-agent NodeAgent address")->capture_default_str();
  app.add_option("--server-name", flags.server_name, "name in the agent's certificate")
      ->capture_default_str();
  app.add_option("--ca", flags.ca_file, "cluster CA")->required();
  app.add_option("--cert", flags.cert_file, "admin certificate")->required();
  app.add_option("--key", flags.key_file, "admin key")->required();
  app.add_option("--connect-timeout", flags.connect_timeout_seconds,
                 "seconds to wait for the agent")
      ->capture_default_str();
  app.add_option("--cpus", flags.expected_cpus, "expected CPU count")->capture_default_str();
  app.add_option("--model", flags.expected_model, "expected device-tree model prefix")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return Run(flags);
}
