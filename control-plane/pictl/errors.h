#pragma once

// How pictl reports a failed call: one line an operator can act on, and an exit code by cause.
#include <grpcpp/support/status.h>

#include <string>

#include "absl/status/status.h"

namespace pi::controlplane::pictl {

// Process exit codes (also listed in `pictl --help`). `exec` exits with the remote command's
// code instead when the call itself succeeds.
enum ExitCode : int {
  kExitOk = 0,
  // The controller answered with an error, or the command failed on the node.
  kExitRemoteFailure = 1,
  // Bad flags or arguments, or a missing or invalid config file or credential.
  kExitUsage = 2,
  // The controller cannot be reached, or refused pictl's certificate or identity.
  kExitUnreachable = 3,
  // Interrupted (Ctrl-C) before the answer came.
  kExitInterrupted = 130,
};

struct Failure {
  std::string message;  // without "pictl: " and without a newline
  int exit_code;
};

// A failed RPC to the controller at `controller`, classified by code and, for UNAVAILABLE, by
// whether the connection itself failed (the TLS handshake included) or the controller reported
// something unavailable behind it (a node's agent).
Failure DescribeRpcFailure(const grpc::Status& status, const std::string& controller);

// A local problem (bad argument, config, credentials): kExitUsage with the message as is.
Failure DescribeLocalFailure(const absl::Status& status);

}  // namespace pi::controlplane::pictl
