// Certificates from the cluster CA work for gRPC mutual TLS: a server with the controller's
// certificate accepts clients holding admin or node certificates from the same CA (including one
// signed from a CSR), and refuses certificates from another CA.
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <catch2/catch.hpp>
#include <future>
#include <memory>
#include <string>

#include "common/tls/credentials.h"
#include "common/tls/x509.h"
#include "control-plane/cluster/certificate_authority.h"
#include "tests/common/test_dir.h"

namespace pi::controlplane::cluster {
namespace {

constexpr std::chrono::seconds kValidity{3600};

struct Files {
  std::string cert;
  std::string key;
};

// Writes a certificate and key beside the CA, the key with mode 0600 as the product does.
Files Save(const pi::testing::TempDir& dir, const std::string& name, const std::string& cert_pem,
           const std::string& key_pem) {
  Files files{dir.Write(name + ".crt", cert_pem), (dir.path() / (name + ".key")).string()};
  REQUIRE(common::WritePrivateKeyFile(files.key, key_pem).ok());
  return files;
}

Files IssueFiles(const pi::testing::TempDir& dir, const CertificateAuthority& ca,
                 const std::string& name, const std::string& identity,
                 const std::vector<std::string>& sans = {}) {
  auto issued = ca.Issue(identity, sans, kValidity);
  REQUIRE(issued.ok());
  return Save(dir, name, issued->cert_pem, issued->key_pem);
}

// A node the way the agent joins: its key stays local, the CA signs its CSR.
Files NodeFiles(const pi::testing::TempDir& dir, const CertificateAuthority& ca) {
  auto key = common::GenerateEcPrivateKeyPem();
  REQUIRE(key.ok());
  auto csr = common::CreateCsr(*key, "node:whatever", {});
  REQUIRE(csr.ok());
  auto cert = ca.SignCsr(*csr, "node:pi-1", {}, kValidity);
  REQUIRE(cert.ok());
  return Save(dir, "node", *cert, *key);
}

class HealthServer {
 public:
  HealthServer(const std::string& ca_file, const Files& files) {
    grpc::EnableDefaultHealthCheckService(true);
    auto credentials = common::MakeServerCredentials(
        {files.cert, files.key, ca_file, common::ClientAuth::kRequireAndVerify});
    REQUIRE(credentials.ok());
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", *credentials, &port_);
    // A server needs one service of its own before it starts; the health service is the one
    // the test calls.
    builder.RegisterCallbackGenericService(&unused_);
    server_ = builder.BuildAndStart();
    REQUIRE(server_ != nullptr);
    REQUIRE(port_ > 0);
  }
  ~HealthServer() { server_->Shutdown(); }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int port_ = 0;
  grpc::CallbackGenericService unused_;
  std::unique_ptr<grpc::Server> server_;
};

// Calls grpc.health.v1.Health/Check with an empty request; on success the reply must be
// {status: SERVING}, encoded as field 1 varint 1.
grpc::StatusCode CheckHealth(const std::string& address, const std::string& ca_file,
                             const Files& client) {
  auto credentials = common::MakeChannelCredentials({ca_file, client.cert, client.key});
  REQUIRE(credentials.ok());
  auto channel = grpc::CreateChannel(address, *credentials);
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice empty{std::string()};
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status status) { done.set_value(status); });
  const grpc::Status status = done.get_future().get();
  if (status.ok()) {
    std::vector<grpc::Slice> slices;
    REQUIRE(response.Dump(&slices).ok());
    std::string bytes;
    for (const auto& slice : slices) {
      bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
    CHECK(bytes == std::string("\x08\x01", 2));
  }
  return status.error_code();
}

CertificateAuthority LoadCa(const pi::testing::TempDir& dir) {
  auto ca = CertificateAuthority::LoadOrCreate(dir.path().string(), common::RealClock());
  REQUIRE(ca.ok());
  return *std::move(ca);
}

struct Cluster {
  pi::testing::TempDir dir;
  CertificateAuthority ca;
  std::string ca_file;
  Files controller;

  Cluster()
      : ca(LoadCa(dir)),
        ca_file((dir.path() / "ca.crt").string()),
        controller(IssueFiles(dir, ca, "controller", "controller", {"localhost", "127.0.0.1"})) {}
};

}  // namespace

TEST_CASE("An admin certificate from the CA passes mTLS with the controller's certificate") {
  Cluster cluster;
  HealthServer server(cluster.ca_file, cluster.controller);
  const Files admin = IssueFiles(cluster.dir, cluster.ca, "admin", "admin:alice");
  CHECK(CheckHealth(server.address(), cluster.ca_file, admin) == grpc::StatusCode::OK);
}

TEST_CASE("A node certificate signed from a CSR passes mTLS") {
  Cluster cluster;
  HealthServer server(cluster.ca_file, cluster.controller);
  CHECK(CheckHealth(server.address(), cluster.ca_file, NodeFiles(cluster.dir, cluster.ca)) ==
        grpc::StatusCode::OK);
}

TEST_CASE("A client certificate from another CA is refused") {
  Cluster cluster;
  Cluster other;
  HealthServer server(cluster.ca_file, cluster.controller);
  const Files stranger = IssueFiles(other.dir, other.ca, "admin", "admin:mallory");
  CHECK(CheckHealth(server.address(), cluster.ca_file, stranger) == grpc::StatusCode::UNAVAILABLE);
}

TEST_CASE("A client trusting another CA refuses the controller") {
  Cluster cluster;
  Cluster other;
  HealthServer server(cluster.ca_file, cluster.controller);
  const Files admin = IssueFiles(other.dir, other.ca, "admin", "admin:alice");
  CHECK(CheckHealth(server.address(), other.ca_file, admin) == grpc::StatusCode::UNAVAILABLE);
}

}  // namespace pi::controlplane::cluster
