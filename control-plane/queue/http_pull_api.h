#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/http/http_server.h"
#include "control-plane/queue/queue_config.h"
#include "control-plane/queue/queue_engine.h"

namespace pi::controlplane::queue {

// The HTTP Pull API (DESIGN 5.1): the JSON mirror of hookaido.worker.v1.WorkerService,
// POST {prefix}{pull_path}/{dequeue|ack|nack|extend}, on the same engine and route table.
//
// Bodies are JSON objects with the proto's field names, read strictly (unknown fields and wrong
// types are 400, over 1 MiB 413); durations are strings such as "30s", the payload travels as
// "payload_b64" and timestamps as RFC 3339 UTC. Checks run in DESIGN 4.1's order: malformed 400,
// then bearer token 401 (with WWW-Authenticate: Bearer), then unknown endpoint 404. Single
// ack/nack and extend answer 204, or 409 {"code":"lease_conflict"}; the batch forms answer 200
// {"acked"|"succeeded": n, "conflicts": [{"lease_id", "expired"}]}, or 409 with that body when
// there are conflicts. Other errors are {"code","detail"}. A long-poll dequeue never blocks the
// I/O thread, and is cancelled when its client disconnects.
class HttpPullApi {
 public:
  // Serves HTTPS when `tls` names a certificate (mTLS with client_ca and require_client_cert).
  HttpPullApi(QueueEngine& engine, const RouteTable& routes, std::string prefix,
              const PullTlsConfig& tls = {});
  absl::StatusOr<uint16_t> Start(std::string_view listen);
  void Stop();

 private:
  QueueEngine& engine_;
  const RouteTable& routes_;
  std::string prefix_;
  common::HttpServer server_;
};

}  // namespace pi::controlplane::queue
