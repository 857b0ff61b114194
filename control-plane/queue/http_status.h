#pragma once

#include "absl/status/status.h"
#include "common/http/http_server.h"

namespace pi::controlplane::queue {

// The one mapping of a queue error to HTTP for ingress and the Pull API, as {"code","detail"}:
// 400 invalid_argument, 401 unauthenticated (with WWW-Authenticate: Bearer), 404 not_found,
// 409 lease_conflict, 503 queue_full or unavailable (with Retry-After: both pass), 500 internal.
common::HttpResponse HttpErrorFor(const absl::Status& status);

}  // namespace pi::controlplane::queue
