#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/system/host_port.h"

namespace pi::common {

struct HttpRequest {
  std::string method;
  // The path without the query string.
  std::string path;
  std::string query;
  // Lower-case names; a header sent several times has its values joined with ", ".
  std::map<std::string, std::string> headers;
  std::string body;
  // The client's address, "ip:port".
  std::string peer;
};

struct HttpResponse {
  HttpResponse() = default;
  HttpResponse(unsigned status_code, std::string type, std::string text)
      : status(status_code), content_type(std::move(type)), body(std::move(text)) {}

  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  // Sent in addition to Server, Content-Type and Content-Length.
  std::vector<std::pair<std::string, std::string>> headers;
};

// A JSON answer; `json_text` is already serialized.
HttpResponse JsonResponse(unsigned status, std::string json_text);
// The error body of the JSON APIs: {"code": code, "detail": detail}.
HttpResponse JsonError(unsigned status, std::string_view code, std::string_view detail);

// Answers one request of an asynchronous handler. Copyable; the first call answers and later
// calls are ignored. Callable from any thread: the answer is written by the server's I/O thread,
// and is dropped if the connection closed (or the server stopped) in the meantime. When the last
// copy goes away unanswered, the client gets a 500.
class HttpResponder {
 public:
  struct State;
  explicit HttpResponder(std::shared_ptr<State> state);

  void operator()(HttpResponse response) const;
  // Runs `callback` once if the connection ends before the answer is sent (the client went away
  // or the server stopped), so the handler can abandon slow work such as a long poll. Runs at
  // once when that already happened; never runs after the answer. The callback runs on the I/O
  // thread (or the thread stopping the server) and must be quick.
  void OnDisconnect(std::function<void()> callback) const;

 private:
  std::shared_ptr<State> state_;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;
// Runs on the I/O thread; it must return quickly and answer later through the responder, from
// any thread.
using AsyncHttpHandler = std::function<void(HttpRequest, HttpResponder)>;

// A small HTTP/1.1 server (Boost.Beast) on its own I/O thread, for operational endpoints such as
// /metrics and for the queue transports. Routes are exact paths per method; unknown paths get
// 404, a known path with another method 405, bodies over the limit 413. Handlers run on the I/O
// thread and must be quick; asynchronous handlers answer later from any thread. Requests on one
// connection are answered in order (a pipelined request is read after the previous answer).
class HttpServer {
 public:
  struct TlsOptions {
    std::string cert_file;
    std::string key_file;
    // Client certificates must chain to this CA; empty = no client certificates asked for.
    std::string client_ca;
    bool require_client_cert = false;
  };

  struct Options {
    size_t max_body_bytes = 1024 * 1024;
    // Connections open at once; more are closed as soon as they are accepted.
    int max_connections = 64;
    // The server's own errors (404, 405, 413, 500) as JsonError bodies instead of plain text.
    bool json_errors = false;
    // HTTPS (TLS 1.2 or later) with these files; unset = plaintext.
    std::optional<TlsOptions> tls = std::nullopt;
  };

  HttpServer();
  explicit HttpServer(Options options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Register before Start().
  void Handle(std::string method, std::string path, HttpHandler handler);
  void HandleAsync(std::string method, std::string path, AsyncHttpHandler handler);
  // Receives every request that no route matches, instead of the built-in 404 and 405.
  void HandleUnmatched(AsyncHttpHandler handler);

  // Binds and starts serving; returns the bound port (useful with port 0). INVALID_ARGUMENT for
  // unreadable TLS files.
  absl::StatusOr<uint16_t> Start(std::string_view listen_address);
  // Stops accepting, closes connections and joins the I/O thread. Idempotent.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pi::common
