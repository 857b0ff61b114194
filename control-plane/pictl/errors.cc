#include "control-plane/pictl/errors.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <string_view>

namespace pi::controlplane::pictl {
namespace {

constexpr char kAdminHint[] =
    "pictl needs an admin certificate (CN admin:<name>) issued by this cluster's CA: "
    "`pi-controller issue-admin NAME --out ~/.config/pictl`";

bool ContainsAnyIgnoringCase(std::string_view text,
                             std::initializer_list<std::string_view> needles) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return std::any_of(needles.begin(), needles.end(), [&lower](std::string_view needle) {
    return lower.find(needle) != std::string::npos;
  });
}

// gRPC reports a failed TLS handshake as UNAVAILABLE with the SSL error in the message.
bool IsHandshakeFailure(std::string_view message) {
  return ContainsAnyIgnoringCase(message, {"handshake", "ssl", "certificate"});
}

// Messages gRPC itself writes when no connection could be made, as opposed to an UNAVAILABLE the
// controller returned (for example a node whose agent does not answer).
bool IsConnectionFailure(std::string_view message) {
  return ContainsAnyIgnoringCase(
      message, {"failed to connect", "connections to all backends failing", "connection refused",
                "dns resolution failed", "no route to host", "network is unreachable"});
}

// The controller prefixes what a node's agent answered (or why it could not be reached) with
// "node <id>"; such an answer says nothing about pictl's own connection or certificate.
bool IsFromNode(std::string_view message) { return message.starts_with("node "); }

}  // namespace

Failure DescribeRpcFailure(const grpc::Status& status, const std::string& controller) {
  const std::string& message = status.error_message();
  // Only these two codes would otherwise be read as trouble with pictl's own connection.
  if ((status.error_code() == grpc::StatusCode::UNAVAILABLE ||
       status.error_code() == grpc::StatusCode::PERMISSION_DENIED) &&
      IsFromNode(message)) {
    return {message, kExitRemoteFailure};
  }
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
      return {"", kExitOk};
    case grpc::StatusCode::UNAVAILABLE:
      if (IsHandshakeFailure(message)) {
        return {fmt::format("TLS handshake with the controller at {} failed: {}; check that --ca "
                            "is the cluster's ca.crt and that the controller's certificate names "
                            "the host in --controller; {}",
                            controller, message, kAdminHint),
                kExitUnreachable};
      }
      // With TLS 1.3 the client finishes its handshake before the server checks the client
      // certificate, so a refused certificate shows up as the server closing the connection.
      if (ContainsAnyIgnoringCase(message, {"socket closed", "connection reset"})) {
        return {fmt::format("the controller at {} closed the connection ({}); if it is running, "
                            "it most likely refused pictl's certificate: {}",
                            controller, message, kAdminHint),
                kExitUnreachable};
      }
      if (IsConnectionFailure(message)) {
        return {fmt::format("cannot reach the controller at {}: {}; is pi-controller running "
                            "and is --controller right?",
                            controller, message),
                kExitUnreachable};
      }
      return {fmt::format("unavailable: {}; try again in a moment", message), kExitRemoteFailure};
    case grpc::StatusCode::UNAUTHENTICATED:
      return {fmt::format("the controller at {} did not accept pictl's credentials: {}; {}",
                          controller, message, kAdminHint),
              kExitUnreachable};
    case grpc::StatusCode::PERMISSION_DENIED:
      return {fmt::format("permission denied: {}; {}", message, kAdminHint), kExitUnreachable};
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return {fmt::format("no answer from the controller at {} in time ({}); retry with a longer "
                          "--timeout",
                          controller, message),
              kExitRemoteFailure};
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return {message, kExitRemoteFailure};
    case grpc::StatusCode::FAILED_PRECONDITION:
      return {fmt::format("refused in the current state: {}", message), kExitRemoteFailure};
    case grpc::StatusCode::ABORTED:
      return {fmt::format("conflicting change: {}; try again", message), kExitRemoteFailure};
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return {fmt::format("the controller is at a limit: {}; try again later", message),
              kExitRemoteFailure};
    case grpc::StatusCode::UNIMPLEMENTED:
      return {fmt::format("the controller at {} does not support this command ({}); is it older "
                          "than this pictl?",
                          controller, message),
              kExitRemoteFailure};
    case grpc::StatusCode::CANCELLED:
      return {fmt::format("the call was cancelled: {}", message), kExitRemoteFailure};
    case grpc::StatusCode::DATA_LOSS:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNKNOWN:
    default:
      return {fmt::format("the controller failed: {} (code {}); its log has the details", message,
                          static_cast<int>(status.error_code())),
              kExitRemoteFailure};
  }
}

Failure DescribeLocalFailure(const absl::Status& status) {
  return {std::string(status.message()), kExitUsage};
}

}  // namespace pi::controlplane::pictl
