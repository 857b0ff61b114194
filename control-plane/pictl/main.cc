// pictl: the Pi-Controller admin CLI. This file only wires the process to the library: the
// environment, the real clock and Ctrl-C.
#include <grpc/support/log.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <thread>

#include "common/grpc/system_resolver.h"
#include "common/system/cancel_token.h"
#include "common/system/clock.h"
#include "control-plane/pictl/cli.h"

namespace {

std::string Getenv(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}

}  // namespace

int main(int argc, char** argv) {
  pi::common::UseSystemResolver();
  // SIGINT and SIGTERM are taken by a thread (blocked everywhere else, including gRPC's threads):
  // the first cancels the call in flight so a stream ends cleanly, a second one exits at once.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  static pi::common::CancelToken interrupt;
  std::thread([signals] {
    int signal = 0;
    sigwait(&signals, &signal);
    interrupt.Cancel();
    sigwait(&signals, &signal);
    _exit(128 + signal);
  }).detach();

  // gRPC's own log lines (a failed handshake, say) would repeat what pictl explains in one line;
  // GRPC_VERBOSITY brings them back for debugging.
  if (std::getenv("GRPC_VERBOSITY") == nullptr) gpr_set_log_function([](gpr_log_func_args*) {});

  pi::controlplane::pictl::RunContext context;
  context.env = {Getenv("PICTL_CONFIG"), Getenv("HOME"), Getenv("XDG_CONFIG_HOME")};
  context.version = PI_VERSION;
  context.clock = &pi::common::RealClock();
  context.interrupt = &interrupt;
  const int code = pi::controlplane::pictl::RunPictl(argc, argv, context, std::cout, std::cerr);
  std::cout.flush();
  // The signal thread may still wait; leave without joining it.
  std::_Exit(code);
}
