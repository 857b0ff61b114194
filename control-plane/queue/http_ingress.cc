#include "control-plane/queue/http_ingress.h"

#include <fmt/format.h>

#include <array>
#include <nlohmann/json.hpp>
#include <utility>

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

bool IsValidUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto byte = static_cast<unsigned char>(text[i]);
    int length;
    uint32_t code_point;
    if (byte < 0x80) {
      ++i;
      continue;
    } else if ((byte & 0xE0) == 0xC0) {
      length = 2;
      code_point = byte & 0x1F;
    } else if ((byte & 0xF0) == 0xE0) {
      length = 3;
      code_point = byte & 0x0F;
    } else if ((byte & 0xF8) == 0xF0) {
      length = 4;
      code_point = byte & 0x07;
    } else {
      return false;
    }
    if (i + length > text.size()) return false;
    for (int k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      code_point = (code_point << 6) | (next & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    constexpr std::array<uint32_t, 5> kSmallest = {0, 0, 0x80, 0x800, 0x10000};
    if (code_point < kSmallest[length] || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF)) {
      return false;
    }
    i += length;
  }
  return true;
}

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
    if (IsDropped(name) || !IsValidUtf8(name) || !IsValidUtf8(value)) continue;
    for (const char* trace : kTraceHeaders) {
      if (name == trace) message.trace.emplace(name, value);
    }
    message.headers.emplace(name, std::move(value));
  }
  return message;
}

common::HttpResponse EnqueueAnswer(const absl::StatusOr<std::string>& id) {
  if (id.ok())
    return common::JsonResponse(202, nlohmann::json{{"id", *id}}.dump(
                                         -1, ' ', false, nlohmann::json::error_handler_t::replace));
  const std::string detail(id.status().message());
  common::HttpResponse response;
  switch (id.status().code()) {
    case absl::StatusCode::kResourceExhausted:
      response = common::JsonError(503, "queue_full", detail);
      break;
    case absl::StatusCode::kUnavailable:
      response = common::JsonError(503, "unavailable", detail);
      break;
    default:
      return common::JsonError(500, "internal", detail);
  }
  // Both are transient: a sender may try again shortly.
  response.headers.emplace_back("Retry-After", "1");
  return response;
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
