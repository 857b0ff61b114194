#include "common/tls/pinned_ca.h"

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "common/tls/x509.h"
#include "tests/common/test_dir.h"
#include "tests/common/test_pki.h"

namespace pi::common {
namespace {

using std::chrono::seconds;

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// A CA whose leaf certificates are the controller's.
struct TestCa : pi::testing::TestPki {
  std::string Issue(const std::string& name, const std::string& options) const {
    return TestPki::Issue(name, "controller", options);
  }
  std::string Pin() const { return *CaPin(ReadFile(File("ca.crt"))); }
};

// A real gRPC TLS server presenting `chain_pem` (leaf first) for `key_file`.
class TlsServer {
 public:
  TlsServer(const std::string& chain_pem, const std::string& key_file) {
    grpc::SslServerCredentialsOptions options;
    options.pem_key_cert_pairs.push_back({ReadFile(key_file), chain_pem});
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(options), &port_);
    // Only the TLS handshake matters here; a callback service spares a completion queue.
    builder.RegisterCallbackGenericService(&service_);
    server_ = builder.BuildAndStart();
    REQUIRE(server_ != nullptr);
    REQUIRE(port_ != 0);
  }
  ~TlsServer() { server_->Shutdown(); }
  std::string Address(const std::string& host = "127.0.0.1") const {
    return host + ":" + std::to_string(port_);
  }

 private:
  int port_ = 0;
  grpc::CallbackGenericService service_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_CASE("the pinned CA is returned when the server's chain verifies against it", "[pinned_ca]") {
  TestCa ca;
  const auto leaf = ca.Issue("controller", "--ip 127.0.0.1 --dns localhost");
  TlsServer server(ReadFile(leaf) + ReadFile(ca.File("ca.crt")), ca.File("controller.key"));
  for (const char* host : {"127.0.0.1", "localhost"}) {
    INFO(host);
    auto fetched = FetchPinnedCa(server.Address(host), ca.Pin(), seconds(10));
    REQUIRE(fetched.ok());
    CHECK(*CaPin(*fetched) == ca.Pin());
  }
}

TEST_CASE("another CA's pin is refused before anything secret is sent", "[pinned_ca]") {
  TestCa ca;
  TestCa other;
  const auto leaf = ca.Issue("controller", "--ip 127.0.0.1");
  TlsServer server(ReadFile(leaf) + ReadFile(ca.File("ca.crt")), ca.File("controller.key"));
  const auto status = FetchPinnedCa(server.Address(), other.Pin(), seconds(10)).status();
  CHECK(status.code() == absl::StatusCode::kPermissionDenied);
  CHECK_THAT(std::string(status.message()), Catch::Contains("join secret was not sent"));
}

TEST_CASE("a server that presents the real CA but a leaf from another CA is refused",
          "[pinned_ca]") {
  // The CA certificate is public: a man in the middle can present it, but cannot sign with it.
  TestCa real;
  TestCa attacker;
  const auto forged = attacker.Issue("controller", "--ip 127.0.0.1");
  TlsServer server(ReadFile(forged) + ReadFile(real.File("ca.crt")),
                   attacker.File("controller.key"));
  const auto status = FetchPinnedCa(server.Address(), real.Pin(), seconds(10)).status();
  CHECK(status.code() == absl::StatusCode::kPermissionDenied);
  CHECK_THAT(std::string(status.message()), Catch::Contains("does not verify"));
}

TEST_CASE("a server certificate for another host is refused", "[pinned_ca]") {
  TestCa ca;
  const auto leaf = ca.Issue("controller", "--dns controller.example");
  TlsServer server(ReadFile(leaf) + ReadFile(ca.File("ca.crt")), ca.File("controller.key"));
  CHECK(FetchPinnedCa(server.Address(), ca.Pin(), seconds(10)).status().code() ==
        absl::StatusCode::kPermissionDenied);
}

TEST_CASE("a chain without the CA cannot be checked against the pin", "[pinned_ca]") {
  TestCa ca;
  const auto leaf = ca.Issue("controller", "--ip 127.0.0.1");
  TlsServer server(ReadFile(leaf), ca.File("controller.key"));
  CHECK(FetchPinnedCa(server.Address(), ca.Pin(), seconds(10)).status().code() ==
        absl::StatusCode::kPermissionDenied);
}

TEST_CASE("nobody listening is unavailable", "[pinned_ca]") {
  TestCa ca;
  int port = 0;
  {
    // Bind and release a port so that nothing listens on it.
    TlsServer server(ReadFile(ca.Issue("gone", "--ip 127.0.0.1")) + ReadFile(ca.File("ca.crt")),
                     ca.File("gone.key"));
    port = std::stoi(server.Address().substr(10));
  }
  CHECK(FetchPinnedCa("127.0.0.1:" + std::to_string(port), ca.Pin(), seconds(5)).status().code() ==
        absl::StatusCode::kUnavailable);
}

TEST_CASE("malformed pins and addresses are invalid arguments", "[pinned_ca]") {
  const std::string pin(64, 'a');
  for (const char* address : {"no-port", "host:", "host:99x", "[::1]", ":443"}) {
    INFO(address);
    CHECK(FetchPinnedCa(address, pin, seconds(1)).status().code() ==
          absl::StatusCode::kInvalidArgument);
  }
  for (const std::string& bad :
       {std::string(63, 'a'), std::string(64, 'A'), std::string(64, 'g')}) {
    CHECK(FetchPinnedCa("127.0.0.1:1", bad, seconds(1)).status().code() ==
          absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace pi::common
