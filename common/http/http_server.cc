#include "common/http/http_server.h"

#include <fmt/format.h>
#include <sys/socket.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cerrno>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <type_traits>
#include <unordered_set>

#include "absl/strings/ascii.h"
#include "spdlog/spdlog.h"

namespace pi::common {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

HttpResponse JsonResponse(unsigned status, std::string json_text) {
  return HttpResponse(status, "application/json", std::move(json_text));
}

HttpResponse JsonError(unsigned status, std::string_view code, std::string_view detail) {
  const nlohmann::json body = {{"code", code}, {"detail", detail}};
  // Replace rather than throw on bytes that are not UTF-8 (a detail may quote client input).
  return JsonResponse(status, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

// Shared by a request's responder copies. `deliver` hands the answer to the I/O thread.
struct HttpResponder::State {
  explicit State(std::function<void(HttpResponse)> deliver_answer)
      : deliver(std::move(deliver_answer)) {}
  ~State() {
    if (!answered) deliver(HttpResponse(500, "text/plain; charset=utf-8", "no answer\n"));
  }

  // Called by the connection when it ends before the answer.
  void Disconnected() {
    std::vector<std::function<void()>> callbacks;
    {
      std::lock_guard lock(mu);
      if (answered || disconnected) return;
      disconnected = true;
      callbacks.swap(on_disconnect);
    }
    for (auto& callback : callbacks) callback();
  }

  std::mutex mu;
  bool answered = false;
  bool disconnected = false;
  std::vector<std::function<void()>> on_disconnect;
  const std::function<void(HttpResponse)> deliver;
};

HttpResponder::HttpResponder(std::shared_ptr<State> state) : state_(std::move(state)) {}

void HttpResponder::operator()(HttpResponse response) const {
  {
    std::lock_guard lock(state_->mu);
    if (state_->answered) return;
    state_->answered = true;
    state_->on_disconnect.clear();
  }
  state_->deliver(std::move(response));
}

void HttpResponder::OnDisconnect(std::function<void()> callback) const {
  {
    std::lock_guard lock(state_->mu);
    if (state_->answered) return;
    if (!state_->disconnected) {
      state_->on_disconnect.push_back(std::move(callback));
      return;
    }
  }
  callback();
}

namespace {

using RouteKey = std::pair<std::string, std::string>;
using Routes = std::map<RouteKey, AsyncHttpHandler>;

// How long a client may take to send one request: slow or idle clients must not hold
// connections (and file descriptors) for long.
constexpr auto kRequestTimeout = std::chrono::seconds(10);
// How long a client may take to receive an answer.
constexpr auto kWriteTimeout = std::chrono::seconds(30);
// After a failed accept (EMFILE, ENFILE...) the next try waits this long instead of spinning.
constexpr auto kAcceptBackoff = std::chrono::milliseconds(200);

// Lets responders post answers to the I/O thread from any thread, and only while the
// io_context exists.
class Gate {
 public:
  explicit Gate(asio::io_context& io) : io_(&io) {}
  void Post(std::function<void()> work) {
    std::lock_guard lock(mu_);
    if (io_ != nullptr) asio::post(*io_, std::move(work));
  }
  void Close() {
    std::lock_guard lock(mu_);
    io_ = nullptr;
  }

 private:
  std::mutex mu_;
  asio::io_context* io_;
};

// What the server needs of a connection, whatever its stream.
class Connection {
 public:
  virtual ~Connection() = default;
  // The server is stopping: the connection ends here.
  virtual void Shutdown() = 0;
};

struct ServerShared {
  const Routes& routes;
  const std::optional<AsyncHttpHandler>& unmatched;
  const HttpServer::Options& options;
  std::shared_ptr<Gate> gate;
  // Open connections; touched only on the I/O thread (or after it ended).
  std::unordered_set<Connection*>& sessions;
};

HttpResponse BuiltInError(const HttpServer::Options& options, unsigned status,
                          std::string_view code, std::string_view detail) {
  if (options.json_errors) return JsonError(status, code, detail);
  return HttpResponse(status, "text/plain; charset=utf-8", std::string(detail) + "\n");
}

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// One connection over a plain (beast::tcp_stream) or TLS (TlsStream) stream.
template <typename Stream>
class Session : public Connection, public std::enable_shared_from_this<Session<Stream>> {
 public:
  template <typename... StreamArgs>
  Session(ServerShared shared, StreamArgs&&... stream_args)
      : stream_(std::forward<StreamArgs>(stream_args)...), shared_(std::move(shared)) {
    shared_.sessions.insert(this);
  }
  ~Session() override {
    shared_.sessions.erase(this);
    NotifyDisconnected();
  }

  void Start() {
    beast::error_code error;
    const auto endpoint = Socket().remote_endpoint(error);
    if (!error) peer_ = fmt::format("{}:{}", endpoint.address().to_string(), endpoint.port());
    if constexpr (std::is_same_v<Stream, TlsStream>) {
      Tcp().expires_after(kRequestTimeout);
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code error) {
                                if (!error) self->ReadRequest();
                              });
    } else {
      ReadRequest();
    }
  }

  void Shutdown() override {
    NotifyDisconnected();
    beast::error_code ignored;
    Socket().close(ignored);
  }

 private:
  beast::tcp_stream& Tcp() { return beast::get_lowest_layer(stream_); }
  tcp::socket& Socket() { return Tcp().socket(); }

  void ReadRequest() {
    parser_.emplace();
    parser_->header_limit(16 * 1024);
    parser_->body_limit(shared_.options.max_body_bytes);
    Tcp().expires_after(kRequestTimeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code error, size_t) {
                       self->OnRead(error);
                     });
  }

  void OnRead(beast::error_code error) {
    if (error == http::error::end_of_stream) {
      beast::error_code ignored;
      Socket().shutdown(tcp::socket::shutdown_send, ignored);
      return;
    }
    if (error == http::error::body_limit) {
      ++sequence_;
      Write(BuiltInError(shared_.options, 413, "payload_too_large",
                         fmt::format("request body over {} bytes", shared_.options.max_body_bytes)),
            false, false);
      return;
    }
    if (error) return;
    // No timeout while the handler works on it; the answer's write gets its own.
    Tcp().expires_never();
    Dispatch(parser_->release());
  }

  HttpRequest ToRequest(http::request<http::string_body>& raw) const {
    HttpRequest request;
    request.method = std::string(raw.method_string());
    const std::string target(raw.target());
    const size_t question = target.find('?');
    request.path = target.substr(0, question);
    if (question != std::string::npos) request.query = target.substr(question + 1);
    for (const auto& field : raw) {
      std::string& value = request.headers[absl::AsciiStrToLower(std::string(field.name_string()))];
      if (!value.empty()) value += ", ";
      value += std::string(field.value());
    }
    request.body = std::move(raw.body());
    request.peer = peer_;
    return request;
  }

  // Finds the handler, or answers the built-in 404/405 when there is none.
  const AsyncHttpHandler* FindHandler(const HttpRequest& request, bool head) {
    auto route = shared_.routes.find({head ? "GET" : request.method, request.path});
    if (route != shared_.routes.end()) return &route->second;
    if (shared_.unmatched) return &*shared_.unmatched;
    std::string allowed;
    for (const auto& [key, handler] : shared_.routes) {
      if (key.second != request.path) continue;
      if (!allowed.empty()) allowed += ", ";
      allowed += key.first;
    }
    if (allowed.empty()) {
      Write(BuiltInError(shared_.options, 404, "not_found",
                         fmt::format("no such path: {}", request.path)),
            keep_alive_, head);
    } else {
      auto response =
          BuiltInError(shared_.options, 405, "method_not_allowed",
                       fmt::format("{} is not allowed on {}", request.method, request.path));
      response.headers.emplace_back("Allow", allowed);
      Write(std::move(response), keep_alive_, head);
    }
    return nullptr;
  }

  void Dispatch(http::request<http::string_body> raw) {
    const uint64_t sequence = ++sequence_;
    keep_alive_ = raw.keep_alive();
    HttpRequest request = ToRequest(raw);
    const bool head = request.method == "HEAD";
    const AsyncHttpHandler* handler = FindHandler(request, head);
    if (handler == nullptr) return;

    auto state = std::make_shared<HttpResponder::State>(
        [weak = this->weak_from_this(), gate = shared_.gate, sequence, keep_alive = keep_alive_,
         head](HttpResponse response) {
          gate->Post([weak, sequence, keep_alive, head, response = std::move(response)]() mutable {
            auto self = weak.lock();
            if (self && self->awaiting_ == sequence) {
              self->Write(std::move(response), keep_alive, head);
            }
          });
        });
    awaiting_ = sequence;
    awaiting_state_ = state;
    const std::string path = request.path;
    const HttpResponder respond(state);
    try {
      (*handler)(std::move(request), respond);
    } catch (const std::exception& error) {
      spdlog::error("http handler for {} failed: {}", path, error.what());
      respond(BuiltInError(shared_.options, 500, "internal", "internal error"));
    }
    WatchForDisconnect(sequence);
  }

  // While a handler works, a readable socket means the client closed the connection (or sent
  // its next request early, which is left for later).
  void WatchForDisconnect(uint64_t sequence) {
    if (awaiting_ != sequence) return;
    Socket().async_wait(tcp::socket::wait_read, [self = this->shared_from_this(),
                                                 sequence](beast::error_code error) {
      if (error || self->awaiting_ != sequence) return;
      char byte;
      const ssize_t n = ::recv(self->Socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n > 0) return;  // A pipelined request: it waits for this answer.
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        self->WatchForDisconnect(sequence);
        return;
      }
      self->NotifyDisconnected();
    });
  }

  void NotifyDisconnected() {
    if (auto state = awaiting_state_.lock()) {
      awaiting_state_.reset();
      state->Disconnected();
    }
  }

  void Write(HttpResponse response, bool keep_alive, bool head) {
    awaiting_ = 0;
    awaiting_state_.reset();
    beast::error_code ignored;
    Socket().cancel(ignored);  // The disconnect watch.
    auto message = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(response.status), 11);
    message->set(http::field::server, "pi-controller");
    message->set(http::field::content_type, response.content_type);
    for (const auto& [name, value] : response.headers) message->insert(name, value);
    message->keep_alive(keep_alive);
    message->body() = std::move(response.body);
    message->prepare_payload();
    // A HEAD answer keeps the Content-Length of the GET it mirrors, without the body.
    if (head) message->body().clear();
    Tcp().expires_after(kWriteTimeout);
    http::async_write(stream_, *message,
                      [self = this->shared_from_this(), message](beast::error_code error, size_t) {
                        if (error) return;
                        if (message->keep_alive()) {
                          self->ReadRequest();
                        } else {
                          beast::error_code ignored;
                          self->Socket().shutdown(tcp::socket::shutdown_send, ignored);
                        }
                      });
  }

  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  ServerShared shared_;
  std::string peer_;
  bool keep_alive_ = false;
  // Numbers the requests of this connection; awaiting_ is the one whose answer is due (0: none).
  uint64_t sequence_ = 0;
  uint64_t awaiting_ = 0;
  std::weak_ptr<HttpResponder::State> awaiting_state_;
};

absl::StatusOr<asio::ssl::context> MakeTlsContext(const HttpServer::TlsOptions& tls) {
  asio::ssl::context context(asio::ssl::context::tls_server);
  context.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                      asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                      asio::ssl::context::no_tlsv1_1);
  beast::error_code error;
  context.use_certificate_chain_file(tls.cert_file, error);
  if (error) {
    return absl::InvalidArgumentError(
        fmt::format("TLS certificate {}: {}", tls.cert_file, error.message()));
  }
  context.use_private_key_file(tls.key_file, asio::ssl::context::pem, error);
  if (error) {
    return absl::InvalidArgumentError(
        fmt::format("TLS private key {}: {}", tls.key_file, error.message()));
  }
  if (!tls.client_ca.empty()) {
    context.load_verify_file(tls.client_ca, error);
    if (error) {
      return absl::InvalidArgumentError(
          fmt::format("TLS client CA {}: {}", tls.client_ca, error.message()));
    }
    context.set_verify_mode(tls.require_client_cert
                                ? asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert
                                : asio::ssl::verify_peer);
  } else if (tls.require_client_cert) {
    return absl::InvalidArgumentError("TLS: requiring client certificates needs a client CA");
  }
  return context;
}

}  // namespace

struct HttpServer::Impl {
  explicit Impl(Options opts)
      : options(opts), acceptor(io), backoff(io), gate(std::make_shared<Gate>(io)) {}
  ~Impl() { gate->Close(); }

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
      if (static_cast<int>(sessions.size()) >= options.max_connections) {
        // Over the cap: close at once rather than let idle clients pile up.
        beast::error_code ignored;
        socket.close(ignored);
      } else {
        ServerShared shared{routes, unmatched, options, gate, sessions};
        if (tls) {
          std::make_shared<Session<TlsStream>>(std::move(shared), std::move(socket), *tls)->Start();
        } else {
          std::make_shared<Session<beast::tcp_stream>>(std::move(shared), std::move(socket))
              ->Start();
        }
      }
      Accept();
    });
  }

  Options options;
  Routes routes;
  std::optional<AsyncHttpHandler> unmatched;
  std::optional<asio::ssl::context> tls;
  std::unordered_set<Connection*> sessions;
  bool accept_failing = false;
  // Declared after what the sessions use: destroying it destroys the sessions.
  asio::io_context io;
  tcp::acceptor acceptor;
  asio::steady_timer backoff;
  std::shared_ptr<Gate> gate;
  std::thread thread;
};

HttpServer::HttpServer() : HttpServer(Options{}) {}
HttpServer::HttpServer(Options options) : impl_(std::make_unique<Impl>(options)) {}
HttpServer::~HttpServer() { Stop(); }

void HttpServer::Handle(std::string method, std::string path, HttpHandler handler) {
  HandleAsync(std::move(method), std::move(path),
              [handler = std::move(handler)](HttpRequest request, HttpResponder respond) {
                respond(handler(request));
              });
}

void HttpServer::HandleAsync(std::string method, std::string path, AsyncHttpHandler handler) {
  impl_->routes[{std::move(method), std::move(path)}] = std::move(handler);
}

void HttpServer::HandleUnmatched(AsyncHttpHandler handler) {
  impl_->unmatched = std::move(handler);
}

absl::StatusOr<uint16_t> HttpServer::Start(std::string_view listen_address) {
  auto address = ParseListenAddress(listen_address);
  if (!address.ok()) return address.status();
  if (impl_->options.tls) {
    auto context = MakeTlsContext(*impl_->options.tls);
    if (!context.ok()) return context.status();
    impl_->tls.emplace(*std::move(context));
  }
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
    // Copied: a session may end (and leave the set) while others shut down.
    const std::vector<Connection*> open(impl_->sessions.begin(), impl_->sessions.end());
    for (Connection* session : open) session->Shutdown();
    impl_->io.stop();
  });
  impl_->thread.join();
  impl_->gate->Close();
}

}  // namespace pi::common
