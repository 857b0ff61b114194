#include "control-plane/pictl/errors.h"

#include <catch2/catch.hpp>

namespace pi::controlplane::pictl {
namespace {

constexpr char kController[] = "10.0.0.1:9090";

Failure Describe(grpc::StatusCode code, const std::string& message) {
  return DescribeRpcFailure(grpc::Status(code, message), kController);
}

}  // namespace

TEST_CASE("a refused connection asks whether the controller runs at that address") {
  const Failure failure = Describe(
      grpc::StatusCode::UNAVAILABLE,
      "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.0.0.1:9090: Failed to "
      "connect to remote host: Connection refused");
  CHECK(failure.exit_code == kExitUnreachable);
  CHECK_THAT(failure.message, Catch::StartsWith("cannot reach the controller at 10.0.0.1:9090: "));
  CHECK_THAT(failure.message,
             Catch::EndsWith("; is pi-controller running and is --controller right?"));
}

TEST_CASE("a failed TLS handshake points at the CA and the certificates") {
  const Failure failure =
      Describe(grpc::StatusCode::UNAVAILABLE,
               "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.0.0.1:9090: Ssl "
               "handshake failed: SSL_ERROR_SSL: error:0A000086:SSL routines::certificate verify "
               "failed");
  CHECK(failure.exit_code == kExitUnreachable);
  CHECK_THAT(failure.message, Catch::StartsWith("TLS handshake with the controller at"));
  CHECK_THAT(failure.message, Catch::Contains("pi-controller issue-admin"));
}

TEST_CASE("a connection closed by the controller suggests a refused certificate") {
  const Failure failure = Describe(
      grpc::StatusCode::UNAVAILABLE,
      "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:10.0.0.1:9090: Socket "
      "closed");
  CHECK(failure.exit_code == kExitUnreachable);
  CHECK_THAT(failure.message, Catch::Contains("refused pictl's certificate"));
}

TEST_CASE("an UNAVAILABLE answer from the controller itself is a remote failure") {
  const Failure failure = Describe(grpc::StatusCode::UNAVAILABLE, "pi-controller is shutting down");
  CHECK(failure.exit_code == kExitRemoteFailure);
  CHECK(failure.message == "unavailable: pi-controller is shutting down; try again in a moment");
}

TEST_CASE("an answer about a node behind the controller is shown as is, whatever its code") {
  const std::string unreachable =
      "node pi-1 (10.0.0.7:9091) is unreachable: failed to connect to all addresses; "
      "Connection refused";
  Failure failure = Describe(grpc::StatusCode::UNAVAILABLE, unreachable);
  CHECK(failure.exit_code == kExitRemoteFailure);
  CHECK(failure.message == unreachable);
  failure = Describe(grpc::StatusCode::PERMISSION_DENIED,
                     "node pi-1: line 14 is a UART pin and is not in gpio.allowed_lines");
  CHECK(failure.exit_code == kExitRemoteFailure);
  CHECK_THAT(failure.message, !Catch::Contains("admin certificate"));
}

TEST_CASE("UNAUTHENTICATED names the certificate to use") {
  const Failure failure = Describe(grpc::StatusCode::UNAUTHENTICATED, "no client certificate");
  CHECK(failure.exit_code == kExitUnreachable);
  CHECK_THAT(failure.message, Catch::Contains("no client certificate"));
  CHECK_THAT(failure.message, Catch::Contains("needs an admin certificate"));
}

TEST_CASE("PERMISSION_DENIED says an admin certificate is needed") {
  const Failure failure =
      Describe(grpc::StatusCode::PERMISSION_DENIED, "node:pi-1 may not call Admin");
  CHECK(failure.exit_code == kExitUnreachable);
  CHECK_THAT(failure.message, Catch::StartsWith("permission denied: node:pi-1 may not call Admin"));
  CHECK_THAT(failure.message, Catch::Contains("needs an admin certificate"));
}

TEST_CASE("NOT_FOUND shows the server's message as is") {
  const Failure failure = Describe(grpc::StatusCode::NOT_FOUND, "node pi-9 not found");
  CHECK(failure.exit_code == kExitRemoteFailure);
  CHECK(failure.message == "node pi-9 not found");
}

TEST_CASE("INVALID_ARGUMENT shows the server's message as is") {
  CHECK(Describe(grpc::StatusCode::INVALID_ARGUMENT, "line 14 is a UART pin").message ==
        "line 14 is a UART pin");
}

TEST_CASE("DEADLINE_EXCEEDED suggests a longer --timeout") {
  const Failure failure = Describe(grpc::StatusCode::DEADLINE_EXCEEDED, "Deadline Exceeded");
  CHECK(failure.exit_code == kExitRemoteFailure);
  CHECK_THAT(failure.message, Catch::Contains("--timeout"));
}

TEST_CASE("FAILED_PRECONDITION explains a state conflict") {
  CHECK(Describe(grpc::StatusCode::FAILED_PRECONDITION, "node pi-1 is REMOVED").message ==
        "refused in the current state: node pi-1 is REMOVED");
}

TEST_CASE("UNIMPLEMENTED suggests a version mismatch") {
  CHECK_THAT(Describe(grpc::StatusCode::UNIMPLEMENTED, "").message,
             Catch::Contains("does not support this command"));
}

TEST_CASE("RESOURCE_EXHAUSTED suggests trying later") {
  CHECK_THAT(Describe(grpc::StatusCode::RESOURCE_EXHAUSTED, "too many log streams").message,
             Catch::Contains("try again later"));
}

TEST_CASE("INTERNAL points at the controller's log") {
  const Failure failure = Describe(grpc::StatusCode::INTERNAL, "boom");
  CHECK(failure.exit_code == kExitRemoteFailure);
  CHECK(failure.message == "the controller failed: boom (code 13); its log has the details");
}

TEST_CASE("local failures are usage errors with their message") {
  const Failure failure = DescribeLocalFailure(absl::InvalidArgumentError("--ttl: bad"));
  CHECK(failure.exit_code == kExitUsage);
  CHECK(failure.message == "--ttl: bad");
}

}  // namespace pi::controlplane::pictl
