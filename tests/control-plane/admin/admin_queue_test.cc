// The Admin service's queue RPCs on a real gRPC server with mutual TLS, backed by a real queue
// engine over SQLite in a temporary directory: stats, dead letters (list, requeue, delete) and
// publish, their argument checks, and that only admin certificates may call them.
#include <grpcpp/grpcpp.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/grpc/proto_time.h"
#include "common/system/clock.h"
#include "common/tls/credentials.h"
#include "common/tls/x509.h"
#include "control-plane/admin/admin_service.h"
#include "control-plane/cluster/certificate_authority.h"
#include "control-plane/queue/queue_engine.h"
#include "control-plane/queue/sqlite_queue_store.h"
#include "control-plane/release/release_engine.h"
#include "control-plane/release/sqlite_release_store.h"
#include "control-plane/store/sqlite_cluster_store.h"
#include "picontroller/v1/admin.grpc.pb.h"
#include "tests/common/require.h"
#include "tests/common/test_dir.h"
#include "tests/control-plane/admin/admin_test_support.h"

namespace pi::controlplane::admin {
namespace {

namespace pb = ::picontroller::v1;
using std::chrono_literals::operator""s;

// A route that holds at most two messages, and one without limits.
constexpr char kSmallRoute[] = "github";
constexpr char kOtherRoute[] = "jobs";

using pi::testing::Require;
using testing::CertFiles;
using testing::IssueFiles;

// The controller's parts that AdminService needs, the queue engine over SQLite, and the Admin
// service on 127.0.0.1 with mTLS.
struct Controller {
  pi::testing::TempDir dir;
  const common::Clock& clock = common::RealClock();
  cluster::CertificateAuthority ca =
      Require(cluster::CertificateAuthority::LoadOrCreate(dir.path().string(), clock));
  std::string ca_file = (dir.path() / "ca.crt").string();
  CertFiles server_files =
      IssueFiles(dir, ca, "controller", "controller", {"localhost", "127.0.0.1"});
  CertFiles admin_files = IssueFiles(dir, ca, "admin", "admin:alice");
  CertFiles node_files = IssueFiles(dir, ca, "node", "node:pi-1");

  std::unique_ptr<store::SqliteClusterStore> cluster_store =
      Require(store::SqliteClusterStore::Open((dir.path() / "cluster.db").string(), clock));
  std::unique_ptr<cluster::Cluster> cluster =
      Require(cluster::Cluster::Create(*cluster_store, ca, clock, cluster::ClusterOptions{}));
  cluster::AgentDialer dialer{grpc::InsecureChannelCredentials()};

  std::string queue_path = (dir.path() / "queue.db").string();
  std::unique_ptr<queue::SqliteQueueStore> queue_store =
      Require(queue::SqliteQueueStore::Open(queue_path, clock));
  std::unique_ptr<queue::QueueEngine> engine =
      Require(queue::QueueEngine::Open(*queue_store, clock, Routes()));

  std::unique_ptr<release::SqliteReleaseStore> release_store =
      Require(release::SqliteReleaseStore::Open((dir.path() / "releases.db").string()));
  std::unique_ptr<release::ReleaseEngine> releases =
      Require(release::ReleaseEngine::Open(*release_store, clock, release::ReleaseOptions{}));

  AdminService service{*cluster, dialer, AdminService::Options{}, *engine, *releases};
  int port = 0;
  std::unique_ptr<grpc::Server> server = Start();

  ~Controller() {
    service.Shutdown();
    server->Shutdown(std::chrono::system_clock::now() + 5s);
  }

  static std::map<std::string, queue::QueueLimits> Routes() {
    queue::QueueLimits small;
    small.max_depth = 2;
    return {{kSmallRoute, small}, {kOtherRoute, queue::QueueLimits{}}};
  }

  std::unique_ptr<grpc::Server> Start() {
    auto credentials = common::MakeServerCredentials(
        {server_files.cert, server_files.key, ca_file, common::ClientAuth::kRequireAndVerify});
    REQUIRE(credentials.ok());
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", *credentials, &port);
    builder.RegisterService(&service);
    std::unique_ptr<grpc::Server> started = builder.BuildAndStart();
    REQUIRE(started != nullptr);
    REQUIRE(port > 0);
    return started;
  }

  std::unique_ptr<pb::Admin::Stub> Stub(const CertFiles& client) const {
    auto credentials = common::MakeChannelCredentials({ca_file, client.cert, client.key});
    REQUIRE(credentials.ok());
    return pb::Admin::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port), *credentials));
  }

  // Leases every due message of `route` and nacks it dead with `reason`.
  void KillAll(const std::string& route, const std::string& reason) {
    queue::DequeueRequest request;
    request.route = route;
    request.batch = 100;
    std::vector<queue::LeasedItem> leased =
        Require(queue::AwaitEngine<absl::StatusOr<std::vector<queue::LeasedItem>>>(
            [&](auto done) { engine->Dequeue(request, std::move(done)); }));
    REQUIRE_FALSE(leased.empty());
    std::vector<std::string> lease_ids;
    for (const queue::LeasedItem& item : leased) lease_ids.push_back(item.lease_id);
    queue::NackOptions options;
    options.dead = true;
    options.reason = reason;
    std::vector<queue::LeaseResult> results =
        Require(queue::AwaitEngine<absl::StatusOr<std::vector<queue::LeaseResult>>>(
            [&](auto done) { engine->Nack(route, lease_ids, options, std::move(done)); }));
    for (const queue::LeaseResult& result : results) {
      REQUIRE(result.outcome == queue::LeaseOutcome::kApplied);
    }
  }
};

grpc::ClientContext* WithDeadline(grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() + 10s);
  return context;
}

struct Published {
  grpc::Status status;
  std::string id;
};

Published Publish(pb::Admin::Stub& stub, const std::string& route, const std::string& payload,
                  const std::map<std::string, std::string>& headers = {}) {
  pb::PublishRequest request;
  request.set_route(route);
  request.set_payload(payload);
  request.mutable_headers()->insert(headers.begin(), headers.end());
  pb::PublishResponse response;
  grpc::ClientContext context;
  grpc::Status status = stub.Publish(WithDeadline(&context), request, &response);
  return {status, response.id()};
}

std::string MustPublish(pb::Admin::Stub& stub, const std::string& route, const std::string& payload,
                        const std::map<std::string, std::string>& headers = {}) {
  Published published = Publish(stub, route, payload, headers);
  INFO(published.status.error_message());
  REQUIRE(published.status.ok());
  REQUIRE_FALSE(published.id.empty());
  return published.id;
}

grpc::Status GetStats(pb::Admin::Stub& stub, const std::string& route,
                      pb::GetQueueStatsResponse* response) {
  pb::GetQueueStatsRequest request;
  request.set_route(route);
  grpc::ClientContext context;
  return stub.GetQueueStats(WithDeadline(&context), request, response);
}

pb::QueueStats StatsOf(pb::Admin::Stub& stub, const std::string& route) {
  pb::GetQueueStatsResponse response;
  grpc::Status status = GetStats(stub, route, &response);
  INFO(status.error_message());
  REQUIRE(status.ok());
  REQUIRE(response.routes_size() == 1);
  return response.routes(0);
}

grpc::Status ListDead(pb::Admin::Stub& stub, const std::string& route, int limit,
                      pb::ListDeadLettersResponse* response) {
  pb::ListDeadLettersRequest request;
  request.set_route(route);
  request.set_limit(limit);
  grpc::ClientContext context;
  return stub.ListDeadLetters(WithDeadline(&context), request, response);
}

pb::DeadLetterIds Ids(const std::string& route, const std::vector<std::string>& ids) {
  pb::DeadLetterIds request;
  request.set_route(route);
  for (const std::string& id : ids) request.add_ids(id);
  return request;
}

grpc::Status Requeue(pb::Admin::Stub& stub, const pb::DeadLetterIds& request,
                     pb::DeadLetterCount* response) {
  grpc::ClientContext context;
  return stub.RequeueDeadLetters(WithDeadline(&context), request, response);
}

grpc::Status Delete(pb::Admin::Stub& stub, const pb::DeadLetterIds& request,
                    pb::DeadLetterCount* response) {
  grpc::ClientContext context;
  return stub.DeleteDeadLetters(WithDeadline(&context), request, response);
}

}  // namespace

TEST_CASE("Publish stores a message durably and GetQueueStats counts it") {
  Controller controller;
  auto admin = controller.Stub(controller.admin_files);
  const std::string id = MustPublish(*admin, kOtherRoute, "hello", {{"X-Kind", "test"}});

  const pb::QueueStats stats = StatsOf(*admin, kOtherRoute);
  CHECK(stats.route() == kOtherRoute);
  CHECK(stats.queued() == 1);
  CHECK(stats.delayed() == 0);
  CHECK(stats.leased() == 0);
  CHECK(stats.dead() == 0);
  CHECK(stats.enqueued() == 1);
  CHECK(stats.dequeued() == 0);
  REQUIRE(stats.has_oldest_queued_age());
  auto age = common::FromProtoDuration(stats.oldest_queued_age(), "age");
  REQUIRE(age.ok());
  CHECK(*age >= std::chrono::nanoseconds(0));
  CHECK(*age < std::chrono::seconds(60));

  // The answer came after the commit: another connection to the database sees the message.
  auto reader = Require(queue::SqliteQueueStore::Open(controller.queue_path, controller.clock));
  std::vector<queue::StoredMessage> stored = Require(reader->LoadAll());
  REQUIRE(stored.size() == 1);
  CHECK(stored[0].id == id);
  CHECK(stored[0].route == kOtherRoute);
  CHECK(stored[0].payload == "hello");
  CHECK(stored[0].headers == queue::Headers{{"X-Kind", "test"}});
}

TEST_CASE("GetQueueStats without a route answers every configured route, sorted") {
  Controller controller;
  auto admin = controller.Stub(controller.admin_files);
  MustPublish(*admin, kSmallRoute, "a");
  pb::GetQueueStatsResponse response;
  grpc::Status status = GetStats(*admin, "", &response);
  INFO(status.error_message());
  REQUIRE(status.ok());
  REQUIRE(response.routes_size() == 2);
  CHECK(response.routes(0).route() == kSmallRoute);
  CHECK(response.routes(0).queued() == 1);
  CHECK(response.routes(0).has_oldest_queued_age());
  CHECK(response.routes(1).route() == kOtherRoute);
  CHECK(response.routes(1).queued() == 0);
  // Nothing queued: no age at all rather than zero.
  CHECK_FALSE(response.routes(1).has_oldest_queued_age());
}

TEST_CASE("queue RPCs answer NOT_FOUND for an unknown route, naming the configured ones") {
  Controller controller;
  auto admin = controller.Stub(controller.admin_files);

  pb::GetQueueStatsResponse stats;
  grpc::Status status = GetStats(*admin, "nope", &stats);
  CHECK(status.error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK_THAT(status.error_message(), Catch::Contains("github, jobs"));

  CHECK(Publish(*admin, "nope", "x").status.error_code() == grpc::StatusCode::NOT_FOUND);
  pb::ListDeadLettersResponse listed;
  CHECK(ListDead(*admin, "nope", 0, &listed).error_code() == grpc::StatusCode::NOT_FOUND);
  pb::DeadLetterCount count;
  CHECK(Requeue(*admin, Ids("nope", {"a"}), &count).error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(Delete(*admin, Ids("nope", {"a"}), &count).error_code() == grpc::StatusCode::NOT_FOUND);
}

TEST_CASE("queue RPCs refuse a missing route, bad ids and limits with INVALID_ARGUMENT") {
  Controller controller;
  auto admin = controller.Stub(controller.admin_files);
  pb::DeadLetterCount count;
  pb::ListDeadLettersResponse listed;

  CHECK(Publish(*admin, "", "x").status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(ListDead(*admin, "", 0, &listed).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(ListDead(*admin, kSmallRoute, -1, &listed).error_code() ==
        grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(ListDead(*admin, kSmallRoute, 1001, &listed).error_code() ==
        grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(ListDead(*admin, kSmallRoute, 1000, &listed).ok());

  for (auto* rpc : {&Requeue, &Delete}) {
    CHECK(rpc(*admin, Ids(kSmallRoute, {}), &count).error_code() ==
          grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(rpc(*admin, Ids(kSmallRoute, {"a", ""}), &count).error_code() ==
          grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(rpc(*admin, Ids("", {"a"}), &count).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(rpc(*admin, Ids(kSmallRoute, std::vector<std::string>(1001, "a")), &count).error_code() ==
          grpc::StatusCode::INVALID_ARGUMENT);
    grpc::Status at_cap =
        rpc(*admin, Ids(kSmallRoute, std::vector<std::string>(1000, "a")), &count);
    INFO(at_cap.error_message());
    CHECK(at_cap.ok());
    CHECK(count.count() == 0);
  }
}

TEST_CASE("Publish to a full route is RESOURCE_EXHAUSTED") {
  Controller controller;
  auto admin = controller.Stub(controller.admin_files);
  MustPublish(*admin, kSmallRoute, "1");
  MustPublish(*admin, kSmallRoute, "2");
  const Published third = Publish(*admin, kSmallRoute, "3");
  CHECK(third.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK(third.id.empty());
  CHECK(StatsOf(*admin, kSmallRoute).queued() == 2);
}

TEST_CASE("dead letters are listed with their details, then requeued and deleted") {
  Controller controller;
  auto admin = controller.Stub(controller.admin_files);
  const std::string first = MustPublish(*admin, kOtherRoute, std::string("one\0bin", 7),
                                        {{"Content-Type", "application/octet-stream"}});
  const std::string second = MustPublish(*admin, kOtherRoute, "two");
  controller.KillAll(kOtherRoute, "poison");

  pb::QueueStats stats = StatsOf(*admin, kOtherRoute);
  CHECK(stats.dead() == 2);
  CHECK(stats.queued() == 0);
  CHECK(stats.dead_lettered() == 2);
  CHECK(stats.dequeued() == 2);

  pb::ListDeadLettersResponse listed;
  grpc::Status status = ListDead(*admin, kOtherRoute, 0, &listed);
  INFO(status.error_message());
  REQUIRE(status.ok());
  REQUIRE(listed.items_size() == 2);
  std::map<std::string, pb::DeadLetter> by_id;
  for (const pb::DeadLetter& item : listed.items()) by_id[item.id()] = item;
  REQUIRE(by_id.count(first) == 1);
  REQUIRE(by_id.count(second) == 1);
  const pb::DeadLetter& dead = by_id[first];
  CHECK(dead.payload() == std::string("one\0bin", 7));
  CHECK(dead.headers().at("Content-Type") == "application/octet-stream");
  CHECK(dead.reason() == "poison");
  CHECK(dead.attempt() == 1);
  CHECK(dead.has_received_at());
  CHECK(dead.has_dead_at());
  auto received = common::FromProtoTimestamp(dead.received_at(), "received_at");
  auto died = common::FromProtoTimestamp(dead.dead_at(), "dead_at");
  REQUIRE(received.ok());
  REQUIRE(died.ok());
  CHECK(*received <= *died);

  listed.Clear();
  REQUIRE(ListDead(*admin, kOtherRoute, 1, &listed).ok());
  CHECK(listed.items_size() == 1);

  // Only ids that are dead letters of this route count.
  pb::DeadLetterCount count;
  status = Requeue(*admin, Ids(kOtherRoute, {first, "unknown-id"}), &count);
  INFO(status.error_message());
  REQUIRE(status.ok());
  CHECK(count.count() == 1);
  stats = StatsOf(*admin, kOtherRoute);
  CHECK(stats.dead() == 1);
  CHECK(stats.queued() == 1);

  // A dead letter of another route is not touched.
  REQUIRE(Delete(*admin, Ids(kSmallRoute, {second}), &count).ok());
  CHECK(count.count() == 0);
  CHECK(StatsOf(*admin, kOtherRoute).dead() == 1);

  REQUIRE(Delete(*admin, Ids(kOtherRoute, {second}), &count).ok());
  CHECK(count.count() == 1);
  stats = StatsOf(*admin, kOtherRoute);
  CHECK(stats.dead() == 0);
  CHECK(stats.queued() == 1);
  listed.Clear();
  REQUIRE(ListDead(*admin, kOtherRoute, 0, &listed).ok());
  CHECK(listed.items().empty());

  // The requeued message is due again, with its payload.
  queue::DequeueRequest request;
  request.route = kOtherRoute;
  std::vector<queue::LeasedItem> leased =
      Require(queue::AwaitEngine<absl::StatusOr<std::vector<queue::LeasedItem>>>(
          [&](auto done) { controller.engine->Dequeue(request, std::move(done)); }));
  REQUIRE(leased.size() == 1);
  CHECK(leased[0].id == first);
  CHECK(leased[0].attempt == 1);
}

TEST_CASE("a node certificate is refused every queue RPC with PERMISSION_DENIED") {
  Controller controller;
  auto admin = controller.Stub(controller.admin_files);
  const std::string id = MustPublish(*admin, kOtherRoute, "x");
  auto node = controller.Stub(controller.node_files);

  pb::GetQueueStatsResponse stats;
  CHECK(GetStats(*node, "", &stats).error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(stats.routes().empty());
  CHECK(Publish(*node, kOtherRoute, "y").status.error_code() ==
        grpc::StatusCode::PERMISSION_DENIED);
  pb::ListDeadLettersResponse listed;
  CHECK(ListDead(*node, kOtherRoute, 0, &listed).error_code() ==
        grpc::StatusCode::PERMISSION_DENIED);
  pb::DeadLetterCount count;
  CHECK(Requeue(*node, Ids(kOtherRoute, {id}), &count).error_code() ==
        grpc::StatusCode::PERMISSION_DENIED);
  CHECK(Delete(*node, Ids(kOtherRoute, {id}), &count).error_code() ==
        grpc::StatusCode::PERMISSION_DENIED);
  // The refused publish left nothing behind.
  CHECK(StatsOf(*admin, kOtherRoute).enqueued() == 1);
}

}  // namespace pi::controlplane::admin
