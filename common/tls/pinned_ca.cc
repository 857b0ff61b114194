#include "common/tls/pinned_ca.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "common/system/host_port.h"
#include "common/tls/x509.h"

namespace pi::common {
namespace {

using Clock = std::chrono::steady_clock;

struct SslCtxDeleter {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
struct SslDeleter {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};
struct StoreDeleter {
  void operator()(X509_STORE* store) const { X509_STORE_free(store); }
};
struct StoreCtxDeleter {
  void operator()(X509_STORE_CTX* ctx) const { X509_STORE_CTX_free(ctx); }
};
struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};

class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

bool IsIpLiteral(const std::string& host) {
  in6_addr v6{};
  in_addr v4{};
  return inet_pton(AF_INET, host.c_str(), &v4) == 1 || inet_pton(AF_INET6, host.c_str(), &v6) == 1;
}

int RemainingMs(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}

// Connects to the first address of `target` that answers before the deadline; the socket is
// left blocking with send/receive timeouts set to what remains.
absl::StatusOr<std::unique_ptr<Socket>> Connect(const HostPort& target,
                                                Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(target.port);
  if (int rc = getaddrinfo(target.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(
        fmt::format("cannot resolve {}: {}", target.host, gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> addresses(found, freeaddrinfo);
  std::string last_error = "no address";
  for (const addrinfo* ai = addresses.get(); ai != nullptr; ai = ai->ai_next) {
    auto sock = std::make_unique<Socket>(
        socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol));
    if (sock->fd() < 0) continue;
    int rc = connect(sock->fd(), ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd pfd{sock->fd(), POLLOUT, 0};
      const int ready = poll(&pfd, 1, RemainingMs(deadline));
      int error = ready == 0 ? ETIMEDOUT : errno;
      socklen_t length = sizeof(error);
      if (ready == 1) getsockopt(sock->fd(), SOL_SOCKET, SO_ERROR, &error, &length);
      rc = error == 0 ? 0 : -1;
      errno = error;
    }
    if (rc != 0) {
      last_error = std::strerror(errno);
      continue;
    }
    fcntl(sock->fd(), F_SETFL, fcntl(sock->fd(), F_GETFL) & ~O_NONBLOCK);
    const int ms = std::max(1, RemainingMs(deadline));
    const timeval tv{ms / 1000, (ms % 1000) * 1000};
    setsockopt(sock->fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(sock->fd(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return sock;
  }
  return absl::UnavailableError(
      fmt::format("cannot connect to {}:{}: {}", target.host, target.port, last_error));
}

std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "connection closed";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

}  // namespace

absl::StatusOr<std::string> FetchPinnedCa(std::string_view address, std::string_view pin,
                                          std::chrono::milliseconds timeout) {
  if (pin.size() != 64 || pin.find_first_not_of("0123456789abcdef") != std::string_view::npos) {
    return absl::InvalidArgumentError("the CA pin must be 64 lowercase hex characters");
  }
  auto target = SplitHostPort(address);
  if (!target.ok()) return target.status();
  if (target->host.empty()) {
    return absl::InvalidArgumentError(
        fmt::format("address \"{}\" must name the control plane's host", address));
  }
  const auto deadline = Clock::now() + timeout;
  auto sock = Connect(*target, deadline);
  if (!sock.ok()) return sock.status();

  std::unique_ptr<SSL_CTX, SslCtxDeleter> ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return absl::InternalError("SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  // Nothing is trusted yet: the chain is checked against the pin below instead.
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  // gRPC servers refuse TLS clients that do not offer HTTP/2.
  static constexpr unsigned char kAlpn[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(ctx.get(), kAlpn, sizeof(kAlpn));
  std::unique_ptr<SSL, SslDeleter> ssl(SSL_new(ctx.get()));
  if (!ssl) return absl::InternalError("SSL_new failed");
  SSL_set_fd(ssl.get(), (*sock)->fd());
  const bool ip_host = IsIpLiteral(target->host);
  if (!ip_host) SSL_set_tlsext_host_name(ssl.get(), target->host.c_str());
  if (SSL_connect(ssl.get()) != 1) {
    return absl::UnavailableError(
        fmt::format("TLS handshake with {} failed: {}", address, OpenSslError()));
  }

  X509* leaf = SSL_get0_peer_certificate(ssl.get());
  STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl.get());
  if (leaf == nullptr || chain == nullptr) {
    return absl::PermissionDeniedError(fmt::format("{} presented no certificate", address));
  }
  X509* ca = nullptr;
  for (int i = 0; i < sk_X509_num(chain) && ca == nullptr; ++i) {
    X509* candidate = sk_X509_value(chain, i);
    unsigned char* der = nullptr;
    const int length = i2d_X509(candidate, &der);
    if (length <= 0) continue;
    const std::string fingerprint =
        Sha256Hex(std::string_view(reinterpret_cast<const char*>(der), length));
    OPENSSL_free(der);
    if (fingerprint == pin) ca = candidate;
  }
  if (ca == nullptr) {
    return absl::PermissionDeniedError(fmt::format(
        "none of the {} certificate(s) presented by {} is the CA the join token pins; this is "
        "not the expected control plane (or it does not send its CA in its chain): the join "
        "secret was not sent",
        sk_X509_num(chain), address));
  }

  std::unique_ptr<X509_STORE, StoreDeleter> store(X509_STORE_new());
  std::unique_ptr<X509_STORE_CTX, StoreCtxDeleter> verify(X509_STORE_CTX_new());
  if (!store || !verify || X509_STORE_add_cert(store.get(), ca) != 1 ||
      X509_STORE_CTX_init(verify.get(), store.get(), leaf, chain) != 1) {
    return absl::InternalError("cannot set up certificate verification: " + OpenSslError());
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(verify.get());
  X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
  if (ip_host) {
    X509_VERIFY_PARAM_set1_ip_asc(param, target->host.c_str());
  } else {
    X509_VERIFY_PARAM_set1_host(param, target->host.c_str(), 0);
  }
  if (X509_verify_cert(verify.get()) != 1) {
    return absl::PermissionDeniedError(
        fmt::format("the certificate of {} does not verify against the pinned CA: {}", address,
                    X509_verify_cert_error_string(X509_STORE_CTX_get_error(verify.get()))));
  }
  SSL_shutdown(ssl.get());

  std::unique_ptr<BIO, BioDeleter> out(BIO_new(BIO_s_mem()));
  if (!out || PEM_write_bio_X509(out.get(), ca) != 1) {
    return absl::InternalError("cannot encode the CA certificate: " + OpenSslError());
  }
  char* data = nullptr;
  const long size = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

}  // namespace pi::common
