#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "absl/status/statusor.h"
#include "common/system/host_port.h"

namespace pi::common {

struct HttpRequest {
  std::string method;
  // The path without the query string.
  std::string path;
  std::string query;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

struct HttpResponse {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

// A small HTTP/1.1 server (Boost.Beast) on its own I/O thread for operational endpoints such as
// /metrics and /healthz. Routes are exact paths per method; unknown paths get 404, a known path
// with another method 405, bodies over the limit 413. Handlers run on the I/O thread and must be
// quick.
class HttpServer {
 public:
  struct Options {
    size_t max_body_bytes = 1024 * 1024;
    // Connections open at once; more are closed as soon as they are accepted.
    int max_connections = 64;
  };

  HttpServer();
  explicit HttpServer(Options options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Register before Start().
  void Handle(std::string method, std::string path, HttpHandler handler);

  // Binds and starts serving; returns the bound port (useful with port 0).
  absl::StatusOr<uint16_t> Start(std::string_view listen_address);
  // Stops accepting, closes connections and joins the I/O thread. Idempotent.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pi::common
