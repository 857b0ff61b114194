#include "common/http/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <stdexcept>
#include <string>

namespace pi::common {
namespace {

// Sends one raw request over a fresh connection and returns everything the server answered.
std::string RawExchange(uint16_t port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  REQUIRE(send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size()));
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

}  // namespace
}  // namespace pi::common
