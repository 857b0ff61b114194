#include "common/http/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/common/test_pki.h"

namespace pi::common {
namespace {

int Connect(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  return fd;
}

void SendAll(int fd, const std::string& data) {
  REQUIRE(send(fd, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size()));
}

// Sends one raw request over a fresh connection and returns everything the server answered.
std::string RawExchange(uint16_t port, const std::string& request) {
  const int fd = Connect(port);
  SendAll(fd, request);
  std::string reply;
  char buffer[4096];
  ssize_t n;
  while ((n = recv(fd, buffer, sizeof(buffer), 0)) > 0) reply.append(buffer, n);
  close(fd);
  return reply;
}

std::string Get(uint16_t port, const std::string& method, const std::string& path) {
  return RawExchange(port,
                     method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
}

TEST_CASE("routes answer, unknown paths 404, wrong methods 405", "[http]") {
  HttpServer server;
  server.Handle("GET", "/healthz", [](const HttpRequest& request) {
    return HttpResponse{200, "text/plain", "ok query=" + request.query};
  });
  auto port = server.Start("127.0.0.1:0");
  REQUIRE(port.ok());
  REQUIRE(*port != 0);

  const auto ok = Get(*port, "GET", "/healthz?verbose=1");
  CHECK_THAT(ok, Catch::StartsWith("HTTP/1.1 200"));
  CHECK_THAT(ok, Catch::EndsWith("ok query=verbose=1"));
  const auto head = Get(*port, "HEAD", "/healthz");
  CHECK_THAT(head, Catch::StartsWith("HTTP/1.1 200"));
  CHECK_THAT(head, !Catch::Contains("ok query"));
  CHECK_THAT(Get(*port, "GET", "/nope"), Catch::StartsWith("HTTP/1.1 404"));
  CHECK_THAT(Get(*port, "POST", "/healthz"), Catch::StartsWith("HTTP/1.1 405"));
  server.Stop();
}

TEST_CASE("bodies over the limit get 413", "[http]") {
  HttpServer server(HttpServer::Options{16});
  server.Handle("POST", "/in", [](const HttpRequest& request) {
    return HttpResponse{202, "text/plain", std::to_string(request.body.size())};
  });
  auto port = server.Start("127.0.0.1:0");
  REQUIRE(port.ok());
  const auto small = RawExchange(
      *port, "POST /in HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello");
  CHECK_THAT(small, Catch::StartsWith("HTTP/1.1 202"));
  const std::string body(64, 'x');
  const auto big = RawExchange(*port,
                               "POST /in HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                               "Content-Length: 64\r\n\r\n" +
                                   body);
  CHECK_THAT(big, Catch::StartsWith("HTTP/1.1 413"));
}

TEST_CASE("a handler that throws gets 500 and the server keeps serving", "[http]") {
  HttpServer server;
  server.Handle("GET", "/boom",
                [](const HttpRequest&) -> HttpResponse { throw std::runtime_error("kaboom"); });
  server.Handle("GET", "/ok", [](const HttpRequest&) {
    return HttpResponse{200, "text/plain", "ok"};
  });
  auto port = server.Start("127.0.0.1:0");
  REQUIRE(port.ok());
  CHECK_THAT(Get(*port, "GET", "/boom"), Catch::StartsWith("HTTP/1.1 500"));
  CHECK_THAT(Get(*port, "GET", "/ok"), Catch::StartsWith("HTTP/1.1 200"));
}

TEST_CASE("connections over the cap are closed without an answer", "[http]") {
  HttpServer server(HttpServer::Options{1024, 1});
  server.Handle("GET", "/ok", [](const HttpRequest&) {
    return HttpResponse{200, "text/plain", "ok"};
  });
  auto port = server.Start("127.0.0.1:0");
  REQUIRE(port.ok());
  const int idle = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(*port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(idle, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  // Once the server has accepted the idle connection, every other one is refused.
  bool refused = false;
  for (int i = 0; i < 200 && !refused; ++i) {
    refused = Get(*port, "GET", "/ok").empty();
    if (!refused) usleep(10'000);
  }
  CHECK(refused);
  close(idle);
  std::string reply;
  for (int i = 0; i < 200 && reply.empty(); ++i) {
    usleep(10'000);
    reply = Get(*port, "GET", "/ok");
  }
  CHECK_THAT(reply, Catch::StartsWith("HTTP/1.1 200"));
}

TEST_CASE("a port already in use is reported as unavailable", "[http]") {
  HttpServer first;
  auto port = first.Start("127.0.0.1:0");
  REQUIRE(port.ok());
  HttpServer second;
  const auto status = second.Start("127.0.0.1:" + std::to_string(*port)).status();
  CHECK(status.code() == absl::StatusCode::kUnavailable);
  CHECK(second.Start("localhost:0").status().code() == absl::StatusCode::kInvalidArgument);
}

size_t Count(const std::string& text, const std::string& part) {
  size_t count = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++count;
  return count;
}

TEST_CASE("an async handler answers later from another thread", "[http]") {
  HttpServer server;
  std::vector<std::thread> workers;
  server.HandleAsync("POST", "/later", [&workers](HttpRequest request, HttpResponder respond) {
    workers.emplace_back([request = std::move(request), respond] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      HttpResponse response(201, "text/plain",
                            "got " + request.body + " from " + request.peer.substr(0, 10));
      response.headers.emplace_back("X-Extra", "yes");
      respond(response);
      respond(HttpResponse(500, "text/plain", "a second answer is ignored"));
    });
  });
  auto port = server.Start("127.0.0.1:0");
  REQUIRE(port.ok());
  const auto reply = RawExchange(
      *port, "POST /later HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi");
  CHECK_THAT(reply, Catch::StartsWith("HTTP/1.1 201"));
  CHECK_THAT(reply, Catch::Contains("X-Extra: yes"));
  CHECK_THAT(reply, Catch::EndsWith("got hi from 127.0.0.1:"));
  CHECK_THAT(reply, !Catch::Contains("second"));
  server.Stop();
  for (auto& worker : workers) worker.join();
}

TEST_CASE("a client that disconnects before the answer is noticed and its answer dropped",
          "[http]") {
  HttpServer server;
  std::promise<void> disconnected;
  std::promise<HttpResponder> pending;
  server.HandleAsync("GET", "/wait", [&](HttpRequest, HttpResponder respond) {
    respond.OnDisconnect([&disconnected] { disconnected.set_value(); });
    pending.set_value(respond);
  });
  server.Handle("GET", "/ok",
                [](const HttpRequest&) { return HttpResponse(200, "text/plain", "ok"); });
  auto port = server.Start("127.0.0.1:0");
  REQUIRE(port.ok());
  const int fd = Connect(*port);
  SendAll(fd, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n");
  auto responder_future = pending.get_future();
  REQUIRE(responder_future.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
  close(fd);
  REQUIRE(disconnected.get_future().wait_for(std::chrono::seconds(5)) == std::future_status::ready);
  // Answering a connection that is gone is harmless.
  responder_future.get()(HttpResponse(200, "text/plain", "too late"));
  CHECK_THAT(Get(*port, "GET", "/ok"), Catch::StartsWith("HTTP/1.1 200"));
}

TEST_CASE("pipelined requests on a keep-alive connection are answered in order", "[http]") {
  HttpServer server;
  std::vector<std::thread> workers;
  server.HandleAsync("GET", "/sleep", [&workers](HttpRequest request, HttpResponder respond) {
    // The first request answers last in time; the order on the wire must still be first, second.
    const int delay_ms = std::stoi(request.query);
    workers.emplace_back([delay_ms, respond] {
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      respond(HttpResponse(200, "text/plain", "slept " + std::to_string(delay_ms)));
    });
  });
  auto port = server.Start("127.0.0.1:0");
  REQUIRE(port.ok());
  const int fd = Connect(*port);
  SendAll(fd,
          "GET /sleep?200 HTTP/1.1\r\nHost: x\r\n\r\n"
          "GET /sleep?0 HTTP/1.1\r\nHost: x\r\n\r\n"
          "GET /sleep?1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string reply;
  char buffer[4096];
  ssize_t n;
  while ((n = recv(fd, buffer, sizeof(buffer), 0)) > 0) reply.append(buffer, n);
  close(fd);
  CHECK(Count(reply, "HTTP/1.1 200") == 3);
  const size_t first = reply.find("slept 200");
  const size_t second = reply.find("slept 0");
  const size_t third = reply.find("slept 1");
  REQUIRE(first != std::string::npos);
  REQUIRE(second != std::string::npos);
  REQUIRE(third != std::string::npos);
  CHECK(first < second);
  CHECK(second < third);
  server.Stop();
  for (auto& worker : workers) worker.join();
}

TEST_CASE("a responder dropped without an answer sends 500", "[http]") {
  HttpServer server;
  server.HandleAsync("GET", "/forget", [](HttpRequest, HttpResponder) {});
  auto port = server.Start("127.0.0.1:0");
  REQUIRE(port.ok());
  CHECK_THAT(Get(*port, "GET", "/forget"), Catch::StartsWith("HTTP/1.1 500"));
}

TEST_CASE("stopping the server tells waiting handlers their connection ended", "[http]") {
  HttpServer server;
  std::promise<void> disconnected;
  std::promise<void> arrived;
  std::optional<HttpResponder> kept;
  server.HandleAsync("GET", "/wait", [&](HttpRequest, HttpResponder respond) {
    respond.OnDisconnect([&disconnected] { disconnected.set_value(); });
    kept = respond;
    arrived.set_value();
  });
  auto port = server.Start("127.0.0.1:0");
  REQUIRE(port.ok());
  const int fd = Connect(*port);
  SendAll(fd, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n");
  REQUIRE(arrived.get_future().wait_for(std::chrono::seconds(5)) == std::future_status::ready);
  server.Stop();
  CHECK(disconnected.get_future().wait_for(std::chrono::seconds(0)) == std::future_status::ready);
  close(fd);
}

TEST_CASE("JSON errors, Allow on 405, repeated headers joined, and the unmatched handler",
          "[http]") {
  HttpServer::Options options;
  options.json_errors = true;
  options.max_body_bytes = 4;
  HttpServer server(options);
  server.Handle("POST", "/echo", [](const HttpRequest& request) {
    return HttpResponse(200, "text/plain", "[" + request.headers.at("x-twice") + "]");
  });
  auto port = server.Start("127.0.0.1:0");
  REQUIRE(port.ok());
  const auto not_found = Get(*port, "GET", "/nope");
  CHECK_THAT(not_found, Catch::StartsWith("HTTP/1.1 404"));
  CHECK_THAT(not_found, Catch::Contains("application/json"));
  CHECK_THAT(not_found, Catch::Contains(R"({"code":"not_found","detail":"no such path: /nope"})"));
  const auto wrong_method = Get(*port, "GET", "/echo");
  CHECK_THAT(wrong_method, Catch::StartsWith("HTTP/1.1 405"));
  CHECK_THAT(wrong_method, Catch::Contains("Allow: POST"));
  CHECK_THAT(wrong_method, Catch::Contains(R"("code":"method_not_allowed")"));
  const auto too_big = RawExchange(
      *port,
      "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello");
  CHECK_THAT(too_big, Catch::StartsWith("HTTP/1.1 413"));
  CHECK_THAT(too_big, Catch::Contains(R"("code":"payload_too_large")"));
  const auto joined = RawExchange(*port,
                                  "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                  "X-Twice: a\r\nx-twice: b\r\nContent-Length: 0\r\n\r\n");
  CHECK_THAT(joined, Catch::EndsWith("[a, b]"));
  server.Stop();

  HttpServer fallback;
  fallback.HandleUnmatched([](HttpRequest request, HttpResponder respond) {
    respond(HttpResponse(299, "text/plain", request.method + " " + request.path));
  });
  auto fallback_port = fallback.Start("127.0.0.1:0");
  REQUIRE(fallback_port.ok());
  CHECK_THAT(Get(*fallback_port, "DELETE", "/any/thing"), Catch::EndsWith("DELETE /any/thing"));
}

// One GET /ok over TLS, trusting `ca_file`, optionally with a client certificate; returns the
// status, or 0 when the connection failed (a refused handshake).
unsigned TlsGet(uint16_t port, const std::string& ca_file, const std::string& cert = "",
                const std::string& key = "") {
  namespace asio = boost::asio;
  namespace beast = boost::beast;
  namespace http = boost::beast::http;
  asio::io_context io;
  asio::ssl::context context(asio::ssl::context::tls_client);
  context.load_verify_file(ca_file);
  context.set_verify_mode(asio::ssl::verify_peer);
  if (!cert.empty()) {
    context.use_certificate_chain_file(cert);
    context.use_private_key_file(key, asio::ssl::context::pem);
  }
  beast::ssl_stream<beast::tcp_stream> stream(io, context);
  beast::get_lowest_layer(stream).connect(
      asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  beast::error_code error;
  stream.handshake(asio::ssl::stream_base::client, error);
  if (error) return 0;
  http::request<http::empty_body> request(http::verb::get, "/ok", 11);
  request.set(http::field::host, "127.0.0.1");
  http::write(stream, request, error);
  if (error) return 0;
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  http::read(stream, buffer, response, error);
  if (error) return 0;
  return response.result_int();
}

TEST_CASE("a TLS server answers TLS clients and not plaintext ones", "[http][tls]") {
  pi::testing::TestPki pki;
  pki.Issue("server", "controller", "--ip 127.0.0.1");
  HttpServer::Options options;
  options.tls = HttpServer::TlsOptions{pki.File("server.crt"), pki.File("server.key"), "", false};
  HttpServer server(options);
  server.Handle("GET", "/ok",
                [](const HttpRequest&) { return HttpResponse(200, "text/plain", "ok"); });
  auto port = server.Start("127.0.0.1:0");
  REQUIRE(port.ok());
  CHECK(TlsGet(*port, pki.File("ca.crt")) == 200);
  CHECK_THAT(Get(*port, "GET", "/ok"), !Catch::StartsWith("HTTP/1.1"));
  CHECK(TlsGet(*port, pki.File("ca.crt")) == 200);
}

TEST_CASE("a TLS server that requires client certificates refuses clients without one",
          "[http][tls]") {
  pi::testing::TestPki pki;
  pki.Issue("server", "controller", "--ip 127.0.0.1");
  pki.Issue("worker", "admin:worker");
  HttpServer::Options options;
  options.tls = HttpServer::TlsOptions{pki.File("server.crt"), pki.File("server.key"),
                                       pki.File("ca.crt"), true};
  HttpServer server(options);
  server.Handle("GET", "/ok",
                [](const HttpRequest&) { return HttpResponse(200, "text/plain", "ok"); });
  auto port = server.Start("127.0.0.1:0");
  REQUIRE(port.ok());
  CHECK(TlsGet(*port, pki.File("ca.crt")) == 0);
  CHECK(TlsGet(*port, pki.File("ca.crt"), pki.File("worker.crt"), pki.File("worker.key")) == 200);

  // Requiring client certificates without a CA to check them against is a configuration error.
  options.tls->client_ca.clear();
  HttpServer no_ca(options);
  CHECK(no_ca.Start("127.0.0.1:0").status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("unreadable TLS files are refused at start", "[http][tls]") {
  pi::testing::TempDir dir;
  HttpServer::Options options;
  options.tls = HttpServer::TlsOptions{(dir.path() / "missing.crt").string(),
                                       (dir.path() / "missing.key").string(), "", false};
  HttpServer server(options);
  CHECK(server.Start("127.0.0.1:0").status().code() == absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pi::common
