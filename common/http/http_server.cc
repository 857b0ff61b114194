#include "common/http/http_server.h"

#include <fmt/format.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <optional>

#include "absl/strings/ascii.h"
#include "spdlog/spdlog.h"

namespace pi::common {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

using Routes = std::map<std::pair<std::string, std::string>, HttpHandler>;

// How long a client may take to send one request: slow or idle clients must not hold
// connections (and file descriptors) for long.
constexpr auto kRequestTimeout = std::chrono::seconds(10);
// After a failed accept (EMFILE, ENFILE...) the next try waits this long instead of spinning.
constexpr auto kAcceptBackoff = std::chrono::milliseconds(200);

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const Routes& routes, size_t max_body_bytes,
          std::atomic<int>& open_sessions)
      : stream_(std::move(socket)),
        routes_(routes),
        max_body_bytes_(max_body_bytes),
        open_sessions_(open_sessions) {
    ++open_sessions_;
  }
  ~Session() { --open_sessions_; }

  void Start() { ReadRequest(); }

 private:
  void ReadRequest() {
    parser_.emplace();
    parser_->header_limit(16 * 1024);
    parser_->body_limit(max_body_bytes_);
    stream_.expires_after(kRequestTimeout);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code error, size_t) { self->OnRead(error); });
  }

  void OnRead(beast::error_code error) {
    if (error == http::error::end_of_stream) {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
      return;
    }
    if (error == http::error::body_limit) {
      Reply(Respond(413, "request body too large"), false);
      return;
    }
    if (error) return;
    auto& request = parser_->get();
    const bool keep_alive = request.keep_alive();
    Reply(Dispatch(request), keep_alive);
  }

  static HttpResponse Respond(unsigned status, std::string body) {
    HttpResponse response;
    response.status = status;
    response.body = std::move(body) + "\n";
    return response;
  }

  HttpResponse Dispatch(const http::request<http::string_body>& raw) {
    HttpRequest request;
    request.method = std::string(raw.method_string());
    const std::string target(raw.target());
    const size_t question = target.find('?');
    request.path = target.substr(0, question);
    if (question != std::string_view::npos)
      request.query = std::string(target.substr(question + 1));
    for (const auto& field : raw) {
      request.headers[absl::AsciiStrToLower(std::string(field.name_string()))] =
          std::string(field.value());
    }
    request.body = raw.body();
    const bool head = request.method == "HEAD";
    auto route = routes_.find({head ? "GET" : request.method, request.path});
    if (route == routes_.end()) {
      for (const auto& [key, handler] : routes_) {
        if (key.second == request.path) return Respond(405, "method not allowed");
      }
      return Respond(404, "not found");
    }
    HttpResponse response;
    try {
      response = route->second(request);
    } catch (const std::exception& error) {
      spdlog::error("http handler for {} failed: {}", request.path, error.what());
      return Respond(500, "internal error");
    }
    if (head) response.body.clear();
    return response;
  }

  void Reply(HttpResponse response, bool keep_alive) {
    auto message = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(response.status), 11);
    message->set(http::field::server, "pi-controller");
    message->set(http::field::content_type, response.content_type);
    message->keep_alive(keep_alive);
    message->body() = std::move(response.body);
    message->prepare_payload();
    http::async_write(stream_, *message,
                      [self = shared_from_this(), message](beast::error_code error, size_t) {
                        if (error) return;
                        if (message->keep_alive()) {
                          self->ReadRequest();
                        } else {
                          beast::error_code ignored;
                          self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
                        }
                      });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  const Routes& routes_;
  size_t max_body_bytes_;
  std::atomic<int>& open_sessions_;
};

}  // namespace

struct HttpServer::Impl {
  explicit Impl(Options opts) : options(opts), acceptor(io), backoff(io) {}

  void Accept() {
    acceptor.async_accept([this](beast::error_code error, tcp::socket socket) {
      if (error == asio::error::operation_aborted) return;
      if (error) {
        // Typically out of file descriptors: log once per streak and retry later, not at once.
        if (!accept_failing) spdlog::warn("http accept failed: {}; retrying", error.message());
        accept_failing = true;
        backoff.expires_after(kAcceptBackoff);
        backoff.async_wait([this](beast::error_code wait_error) {
          if (!wait_error) Accept();
        });
        return;
      }
      accept_failing = false;
      if (open_sessions.load() >= options.max_connections) {
        // Over the cap: close at once rather than let idle clients pile up.
        beast::error_code ignored;
        socket.close(ignored);
      } else {
        std::make_shared<Session>(std::move(socket), routes, options.max_body_bytes, open_sessions)
            ->Start();
      }
      Accept();
    });
  }

  Options options;
  Routes routes;
  std::atomic<int> open_sessions{0};
  bool accept_failing = false;
  asio::io_context io;
  tcp::acceptor acceptor;
  asio::steady_timer backoff;
  std::thread thread;
};

HttpServer::HttpServer() : HttpServer(Options{}) {}
HttpServer::HttpServer(Options options) : impl_(std::make_unique<Impl>(options)) {}
HttpServer::~HttpServer() { Stop(); }

void HttpServer::Handle(std::string method, std::string path, HttpHandler handler) {
  impl_->routes[{std::move(method), std::move(path)}] = std::move(handler);
}

absl::StatusOr<uint16_t> HttpServer::Start(std::string_view listen_address) {
  auto address = ParseListenAddress(listen_address);
  if (!address.ok()) return address.status();
  beast::error_code error;
  const auto ip = asio::ip::make_address(address->host, error);
  if (error) {
    return absl::InvalidArgumentError(fmt::format(
        "listen address \"{}\": \"{}\" is not an IP address", listen_address, address->host));
  }
  const tcp::endpoint endpoint(ip, address->port);
  auto& acceptor = impl_->acceptor;
  acceptor.open(endpoint.protocol(), error);
  if (!error) acceptor.set_option(asio::socket_base::reuse_address(true), error);
  if (!error) acceptor.bind(endpoint, error);
  if (!error) acceptor.listen(asio::socket_base::max_listen_connections, error);
  if (error) {
    return absl::UnavailableError(
        fmt::format("cannot listen on {}: {}", listen_address, error.message()));
  }
  const uint16_t port = acceptor.local_endpoint().port();
  impl_->Accept();
  impl_->thread = std::thread([this] { impl_->io.run(); });
  return port;
}

void HttpServer::Stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  asio::post(impl_->io, [this] {
    beast::error_code ignored;
    impl_->acceptor.close(ignored);
    impl_->backoff.cancel();
    impl_->io.stop();
  });
  impl_->thread.join();
}

}  // namespace pi::common
