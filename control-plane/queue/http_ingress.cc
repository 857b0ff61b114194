#include "control-plane/queue/http_ingress.h"

#include <fmt/format.h>

#include <array>
#include <nlohmann/json.hpp>
#include <utility>

#include "common/text/utf8.h"
#include "control-plane/queue/http_status.h"

namespace pi::controlplane::queue {
namespace {

// Credentials must never reach workers; transport headers describe this hop, not the message.
constexpr std::array kDroppedHeaders = {
    "authorization", "proxy-authorization", "cookie", "set-cookie", "connection",
    "keep-alive",    "transfer-encoding",   "te",     "trailer",    "upgrade",
    "host",          "content-length",      "expect",
};
constexpr std::array kTraceHeaders = {"traceparent", "tracestate", "baggage", "x-request-id"};

// Connections from many webhook senders at once; each request is short.
constexpr int kMaxIngressConnections = 1024;

bool IsDropped(const std::string& name) {
  if (name.starts_with("proxy-")) return true;
  for (const char* dropped : kDroppedHeaders) {
    if (name == dropped) return true;
  }
  return false;
}

NewMessage ToMessage(common::HttpRequest& request) {
  NewMessage message;
  message.payload = std::move(request.body);
  for (auto& [name, value] : request.headers) {
    if (IsDropped(name) || !common::IsValidUtf8(name) || !common::IsValidUtf8(value)) continue;
    for (const char* trace : kTraceHeaders) {
      if (name == trace) message.trace.emplace(name, value);
    }
    message.headers.emplace(name, std::move(value));
  }
  return message;
}

common::HttpResponse EnqueueAnswer(const absl::StatusOr<std::string>& id) {
  if (!id.ok()) return HttpErrorFor(id.status());
  return common::JsonResponse(202, nlohmann::json{{"id", *id}}.dump());
}

common::HttpServer::Options ServerOptions(size_t max_body_bytes) {
  common::HttpServer::Options options;
  options.max_body_bytes = max_body_bytes;
  options.max_connections = kMaxIngressConnections;
  options.json_errors = true;
  return options;
}

}  // namespace

HttpIngress::HttpIngress(QueueEngine& engine, const RouteTable& routes, size_t max_body_bytes)
    : engine_(engine), routes_(routes), server_(ServerOptions(max_body_bytes)) {
  for (const RouteConfig& route : routes_.routes()) {
    if (route.ingress_path.empty()) continue;
    server_.HandleAsync(
        "POST", route.ingress_path,
        [this, name = route.name](common::HttpRequest request, common::HttpResponder respond) {
          // The answer waits for the durable commit; the engine calls back from its thread.
          engine_.Enqueue(name, ToMessage(request), [respond](absl::StatusOr<std::string> id) {
            respond(EnqueueAnswer(id));
          });
        });
  }
}

absl::StatusOr<uint16_t> HttpIngress::Start(std::string_view listen) {
  return server_.Start(listen);
}

void HttpIngress::Stop() { server_.Stop(); }

}  // namespace pi::controlplane::queue
