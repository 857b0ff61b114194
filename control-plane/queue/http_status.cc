#include "control-plane/queue/http_status.h"

#include <string>

namespace pi::controlplane::queue {

common::HttpResponse HttpErrorFor(const absl::Status& status) {
  const std::string detail(status.message());
  common::HttpResponse response;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
      return common::JsonError(400, "invalid_argument", detail);
    case absl::StatusCode::kUnauthenticated:
      response = common::JsonError(401, "unauthenticated", detail);
      response.headers.emplace_back("WWW-Authenticate", "Bearer");
      return response;
    case absl::StatusCode::kNotFound:
      return common::JsonError(404, "not_found", detail);
    case absl::StatusCode::kFailedPrecondition:
      return common::JsonError(409, "lease_conflict", detail);
    case absl::StatusCode::kResourceExhausted:
      response = common::JsonError(503, "queue_full", detail);
      break;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kDeadlineExceeded:
      response = common::JsonError(503, "unavailable", detail);
      break;
    default:
      return common::JsonError(500, "internal", detail);
  }
  response.headers.emplace_back("Retry-After", "1");
  return response;
}

}  // namespace pi::controlplane::queue
