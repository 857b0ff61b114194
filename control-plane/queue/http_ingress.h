#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/http/http_server.h"
#include "control-plane/queue/queue_config.h"
#include "control-plane/queue/queue_engine.h"

namespace pi::controlplane::queue {

// HTTP ingress (DESIGN 5.1): POST to a route's ingress_path stores the body, the request's headers
// except credentials and hop-by-hop ones, and its trace headers, and answers 202 with the message
// id only after the durable commit. 404 unknown path, 405 another method, 413 body over the limit,
// 503 queue full.
class HttpIngress {
 public:
  HttpIngress(QueueEngine& engine, const RouteTable& routes, size_t max_body_bytes);
  // Binds `listen` ("host:port"; port 0 picks one) and serves; returns the bound port.
  absl::StatusOr<uint16_t> Start(std::string_view listen);
  void Stop();

 private:
  QueueEngine& engine_;
  const RouteTable& routes_;
  common::HttpServer server_;
};

}  // namespace pi::controlplane::queue
