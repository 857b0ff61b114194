// hookaido.worker.v1.WorkerService end to end: a real gRPC server on 127.0.0.1:0 in front of the
// real queue engine over a real SQLite file, called through the generated stub.
#include "control-plane/queue/worker_service.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/grpc/proto_time.h"
#include "common/system/clock.h"
#include "common/tls/credentials.h"
#include "control-plane/queue/queue_config.h"
#include "control-plane/queue/queue_engine.h"
#include "control-plane/queue/sqlite_queue_store.h"
#include "tests/common/test_dir.h"
#include "tests/common/test_pki.h"
#include "tests/control-plane/queue/waiting_dequeues.h"

namespace pi::controlplane::queue {
namespace {

namespace wire = hookaido::worker::v1;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kGlobalToken[] = "global-token";
constexpr char kPrivateToken[] = "private-token";
constexpr char kGithub[] = "/pull/github";    // Route "github", global tokens, default limits.
constexpr char kPrivate[] = "/pull/private";  // Route "private", its own token.
constexpr char kSmall[] = "/pull/small";      // Route "small": max_batch 3, max_lease_ttl 1m.

QueuesConfig TestConfig() {
  QueuesConfig config;
  config.auth_tokens = {kGlobalToken};
  RouteConfig github;
  github.name = "github";
  github.ingress_path = "/webhooks/github";
  github.pull_path = kGithub;
  RouteConfig private_route;
  private_route.name = "private";
  private_route.pull_path = kPrivate;
  private_route.auth_tokens = {kPrivateToken};
  RouteConfig small;
  small.name = "small";
  small.pull_path = kSmall;
  small.limits.max_batch = 3;
  small.limits.max_lease_ttl = std::chrono::minutes(1);
  config.routes = {github, private_route, small};
  return config;
}

std::string Bearer(const std::string& token) { return "Bearer " + token; }

google::protobuf::Duration Millis(int64_t value) {
  return common::ToProtoDuration(milliseconds(value));
}

// How far a wire timestamp lies from `now`.
std::chrono::nanoseconds Since(const google::protobuf::Timestamp& timestamp,
                               std::chrono::system_clock::time_point now) {
  auto value = common::FromProtoTimestamp(timestamp, "timestamp");
  REQUIRE(value.ok());
  return *value - now;
}

// The engine, its store, the route table and the service behind a listening gRPC server.
class Harness {
 public:
  explicit Harness(const common::Clock& clock, const PullTlsConfig& tls = {})
      : clock_(clock), config_(TestConfig()), routes_(config_) {
    auto store = SqliteQueueStore::Open((dir_.path() / "queue.db").string(), clock_);
    REQUIRE(store.ok());
    store_ = *std::move(store);
    auto engine = QueueEngine::Open(*store_, clock_, config_.Limits());
    REQUIRE(engine.ok());
    engine_ = *std::move(engine);
    service_ = std::make_unique<WorkerService>(*engine_, routes_);

    auto credentials = WorkerServerCredentials(tls);
    REQUIRE(credentials.ok());
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", *credentials, &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    REQUIRE(server_ != nullptr);
    REQUIRE(port_ > 0);
    if (tls.cert_file.empty()) stub_ = NewStub(grpc::InsecureChannelCredentials());
  }

  ~Harness() {
    // Cancels calls still waiting (long-polls) instead of waiting for them.
    server_->Shutdown(std::chrono::system_clock::now() + milliseconds(100));
    server_.reset();
  }

  std::unique_ptr<wire::WorkerService::Stub> NewStub(
      const std::shared_ptr<grpc::ChannelCredentials>& credentials) const {
    grpc::ChannelArguments arguments;
    // A fresh connection per stub, so a TLS test's handshake is not shared with another stub.
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return wire::WorkerService::NewStub(
        grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port_), credentials, arguments));
  }

  wire::WorkerService::Stub& stub() { return *stub_; }
  QueueEngine& engine() { return *engine_; }

  std::string Enqueue(const std::string& route, const std::string& payload,
                      const Headers& headers = {}, const Headers& trace = {}) {
    NewMessage message{payload, headers, trace};
    auto id = AwaitEngine<absl::StatusOr<std::string>>(
        [&](std::function<void(absl::StatusOr<std::string>)> done) {
          engine_->Enqueue(route, message, std::move(done));
        });
    REQUIRE(id.ok());
    return *id;
  }

  // Enqueues `count` messages at once, so the engine commits them in groups.
  void EnqueueMany(const std::string& route, int count) {
    std::mutex mu;
    std::condition_variable all_done;
    int remaining = count;
    std::atomic<int> failures{0};
    for (int i = 0; i < count; ++i) {
      engine_->Enqueue(route, NewMessage{"message " + std::to_string(i), {}, {}},
                       [&](absl::StatusOr<std::string> id) {
                         if (!id.ok()) ++failures;
                         std::lock_guard lock(mu);
                         if (--remaining == 0) all_done.notify_one();
                       });
    }
    std::unique_lock lock(mu);
    all_done.wait(lock, [&] { return remaining == 0; });
    REQUIRE(failures == 0);
  }

  bool AwaitWaiting(const std::string& route, int64_t count) {
    return AwaitWaitingDequeues(*engine_, route, count);
  }

  QueueStats Stats(const std::string& route) {
    auto stats = engine_->Stats(route);
    REQUIRE(stats.ok());
    return *stats;
  }

 private:
  const common::Clock& clock_;
  pi::testing::TempDir dir_;
  QueuesConfig config_;
  RouteTable routes_;
  std::unique_ptr<SqliteQueueStore> store_;
  std::unique_ptr<QueueEngine> engine_;
  std::unique_ptr<WorkerService> service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<wire::WorkerService::Stub> stub_;
};

// A client context with the token (unless empty) and, on the real clock, a deadline so a broken
// server fails the test instead of hanging it. Tests on a ManualClock pass no deadline: the
// service measures deadlines on the real steady clock, which the manual one does not follow.
struct Call {
  explicit Call(const std::string& authorization = Bearer(kGlobalToken),
                std::optional<std::chrono::milliseconds> deadline = seconds(10)) {
    if (!authorization.empty()) context.AddMetadata("authorization", authorization);
    if (deadline) context.set_deadline(std::chrono::system_clock::now() + *deadline);
  }
  grpc::ClientContext context;
};

constexpr std::optional<std::chrono::milliseconds> kNoDeadline = std::nullopt;

struct DequeueResult {
  grpc::Status status;
  wire::DequeueResponse response;
};

DequeueResult Dequeue(wire::WorkerService::Stub& stub, const std::string& endpoint,
                      uint32_t batch = 1, const std::string& authorization = Bearer(kGlobalToken),
                      std::optional<std::chrono::milliseconds> deadline = seconds(10)) {
  Call call(authorization, deadline);
  wire::DequeueRequest request;
  request.set_endpoint(endpoint);
  request.set_batch(batch);
  DequeueResult result;
  result.status = stub.Dequeue(&call.context, request, &result.response);
  return result;
}

// The single lease of a one-item dequeue.
wire::DequeueItem DequeueOne(wire::WorkerService::Stub& stub, const std::string& endpoint,
                             const std::string& authorization = Bearer(kGlobalToken),
                             std::optional<std::chrono::milliseconds> deadline = seconds(10)) {
  auto result = Dequeue(stub, endpoint, 1, authorization, deadline);
  INFO(result.status.error_message());
  REQUIRE(result.status.ok());
  REQUIRE(result.response.items_size() == 1);
  return result.response.items(0);
}

// The status and response of one settling call (Ack or Nack).
template <typename Response>
struct SettleResult {
  grpc::Status status;
  Response response;
};
using AckResult = SettleResult<wire::AckResponse>;
using NackResult = SettleResult<wire::NackResponse>;

template <typename Request, typename Response>
SettleResult<Response> Settle(grpc::Status (wire::WorkerService::Stub::*method)(
                                  grpc::ClientContext*, const Request&, Response*),
                              wire::WorkerService::Stub& stub, const Request& request,
                              const std::string& authorization,
                              std::optional<std::chrono::milliseconds> deadline) {
  Call call(authorization, deadline);
  SettleResult<Response> result;
  result.status = (stub.*method)(&call.context, request, &result.response);
  return result;
}

AckResult Ack(wire::WorkerService::Stub& stub, const wire::AckRequest& request,
              const std::string& authorization = Bearer(kGlobalToken),
              std::optional<std::chrono::milliseconds> deadline = seconds(10)) {
  return Settle(&wire::WorkerService::Stub::Ack, stub, request, authorization, deadline);
}

wire::AckRequest AckOf(const std::string& endpoint, const std::string& lease_id) {
  wire::AckRequest request;
  request.set_endpoint(endpoint);
  request.set_lease_id(lease_id);
  return request;
}

wire::AckRequest AckBatch(const std::string& endpoint, const std::vector<std::string>& lease_ids) {
  wire::AckRequest request;
  request.set_endpoint(endpoint);
  for (const auto& id : lease_ids) request.add_lease_ids(id);
  return request;
}

NackResult Nack(wire::WorkerService::Stub& stub, const wire::NackRequest& request,
                const std::string& authorization = Bearer(kGlobalToken),
                std::optional<std::chrono::milliseconds> deadline = seconds(10)) {
  return Settle(&wire::WorkerService::Stub::Nack, stub, request, authorization, deadline);
}

wire::NackRequest NackOf(const std::string& endpoint, const std::string& lease_id) {
  wire::NackRequest request;
  request.set_endpoint(endpoint);
  request.set_lease_id(lease_id);
  return request;
}

grpc::Status Extend(wire::WorkerService::Stub& stub, const std::string& endpoint,
                    const std::string& lease_id, google::protobuf::Duration extend_by,
                    const std::string& authorization = Bearer(kGlobalToken),
                    std::optional<std::chrono::milliseconds> deadline = seconds(10)) {
  Call call(authorization, deadline);
  wire::ExtendRequest request;
  request.set_endpoint(endpoint);
  request.set_lease_id(lease_id);
  *request.mutable_extend_by() = extend_by;
  google::protobuf::Empty response;
  return stub.Extend(&call.context, request, &response);
}

// ---------------------------------------------------------------------------------------------
// Authentication and the order of checks

TEST_CASE("the bearer scheme is case-insensitive and the token is trimmed", "[worker_grpc]") {
  Harness harness(common::RealClock());
  for (const std::string authorization :
       {"Bearer global-token", "bearer global-token", "BEARER global-token",
        "Bearer   global-token  ", "bEaReR global-token"}) {
    INFO(authorization);
    auto result = Dequeue(harness.stub(), kGithub, 1, authorization);
    CHECK(result.status.error_code() == grpc::StatusCode::OK);
  }
}

TEST_CASE("a missing, wrong or non-bearer token is UNAUTHENTICATED", "[worker_grpc]") {
  Harness harness(common::RealClock());
  for (const std::string authorization :
       {"", "Bearer", "Bearer ", "Bearer wrong-token", "Bearer global-token-and-more",
        "Bearer global", "Basic global-token", "global-token", "Bearerglobal-token"}) {
    INFO("authorization: '" << authorization << "'");
    auto result = Dequeue(harness.stub(), kGithub, 1, authorization);
    CHECK(result.status.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  }
}

TEST_CASE("every method checks the token", "[worker_grpc]") {
  Harness harness(common::RealClock());
  harness.Enqueue("github", "x");
  const auto item = DequeueOne(harness.stub(), kGithub);
  const std::string wrong = Bearer("wrong");

  CHECK(Ack(harness.stub(), AckOf(kGithub, item.lease_id()), wrong).status.error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);
  CHECK(Nack(harness.stub(), NackOf(kGithub, item.lease_id()), wrong).status.error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);
  CHECK(Extend(harness.stub(), kGithub, item.lease_id(), Millis(1000), wrong).error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);
  // None of the refused calls touched the lease.
  CHECK(harness.Stats("github").leased == 1);
  CHECK(Ack(harness.stub(), AckOf(kGithub, item.lease_id())).response.acked() == 1);
}

TEST_CASE("a route's own tokens replace the global list for that route only", "[worker_grpc]") {
  Harness harness(common::RealClock());
  CHECK(Dequeue(harness.stub(), kPrivate, 1, Bearer(kGlobalToken)).status.error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);
  CHECK(Dequeue(harness.stub(), kPrivate, 1, Bearer(kPrivateToken)).status.ok());
  // The private route's token is not a global one.
  CHECK(Dequeue(harness.stub(), kGithub, 1, Bearer(kPrivateToken)).status.error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);
  CHECK(Dequeue(harness.stub(), kGithub, 1, Bearer(kGlobalToken)).status.ok());
}

TEST_CASE("a malformed request is INVALID_ARGUMENT before the token is looked at",
          "[worker_grpc]") {
  Harness harness(common::RealClock());
  const std::string wrong = Bearer("wrong");
  auto& stub = harness.stub();

  SECTION("dequeue without endpoint") {
    CHECK(Dequeue(stub, "", 1, wrong).status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(Dequeue(stub, "", 1, "").status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  }
  SECTION("dequeue with negative or malformed durations") {
    for (int field = 0; field < 4; ++field) {
      INFO("case " << field);
      Call call(wrong);
      wire::DequeueRequest request;
      request.set_endpoint(kGithub);
      if (field == 0) *request.mutable_max_wait() = Millis(-1);
      if (field == 1) *request.mutable_lease_ttl() = Millis(-1000);
      if (field == 2) request.mutable_max_wait()->set_nanos(2'000'000'000);  // Out of range.
      if (field == 3) {                                                      // Signs disagree.
        request.mutable_lease_ttl()->set_seconds(1);
        request.mutable_lease_ttl()->set_nanos(-1);
      }
      wire::DequeueResponse response;
      const auto status = stub.Dequeue(&call.context, request, &response);
      CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    }
  }
  SECTION("ack and nack need exactly one of lease_id and lease_ids") {
    wire::AckRequest neither;
    neither.set_endpoint(kGithub);
    wire::AckRequest both = AckOf(kGithub, "a");
    both.add_lease_ids("b");
    for (const auto& request : {neither, both}) {
      const auto result = Ack(stub, request, wrong);
      CHECK(result.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
      CHECK_THAT(result.status.error_message(), Catch::Contains("exactly one"));
    }
    wire::NackRequest nack_neither;
    nack_neither.set_endpoint(kGithub);
    wire::NackRequest nack_both = NackOf(kGithub, "a");
    nack_both.add_lease_ids("b");
    for (const auto& request : {nack_neither, nack_both}) {
      CHECK(Nack(stub, request, wrong).status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    }
  }
  SECTION("empty lease ids, empty endpoints and oversized batches") {
    CHECK(Ack(stub, AckBatch(kGithub, {"a", ""}), wrong).status.error_code() ==
          grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(Ack(stub, AckOf("", "a"), wrong).status.error_code() ==
          grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(Nack(stub, NackOf("", "a"), wrong).status.error_code() ==
          grpc::StatusCode::INVALID_ARGUMENT);
    std::vector<std::string> too_many;
    for (int i = 0; i <= kMaxLeaseBatch; ++i) too_many.push_back("lease-" + std::to_string(i));
    const auto result = Ack(stub, AckBatch(kGithub, too_many), wrong);
    CHECK(result.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(result.status.error_message(), Catch::Contains("101"));
  }
  SECTION("nack with a negative delay, even when dead") {
    auto request = NackOf(kGithub, "a");
    *request.mutable_delay() = Millis(-5);
    CHECK(Nack(stub, request, wrong).status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    request.set_dead(true);
    CHECK(Nack(stub, request, wrong).status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  }
  SECTION("extend without endpoint or lease id, or with a malformed duration") {
    CHECK(Extend(stub, "", "a", Millis(1), wrong).error_code() ==
          grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(Extend(stub, kGithub, "", Millis(1), wrong).error_code() ==
          grpc::StatusCode::INVALID_ARGUMENT);
    google::protobuf::Duration malformed;
    malformed.set_seconds(-1);
    malformed.set_nanos(5);
    CHECK(Extend(stub, kGithub, "a", malformed, wrong).error_code() ==
          grpc::StatusCode::INVALID_ARGUMENT);
  }
}

TEST_CASE("a bad token wins over an unknown endpoint, which is NOT_FOUND", "[worker_grpc]") {
  Harness harness(common::RealClock());
  auto& stub = harness.stub();
  const std::string wrong = Bearer("wrong");
  CHECK(Dequeue(stub, "/pull/nowhere", 1, wrong).status.error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);
  CHECK(Dequeue(stub, "/pull/nowhere", 1, "").status.error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);
  CHECK(Dequeue(stub, "/pull/nowhere").status.error_code() == grpc::StatusCode::NOT_FOUND);
  // The endpoint is the pull path, not the route name nor the ingress path.
  CHECK(Dequeue(stub, "github").status.error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(Dequeue(stub, "/webhooks/github").status.error_code() == grpc::StatusCode::NOT_FOUND);

  CHECK(Ack(stub, AckOf("/pull/nowhere", "a"), wrong).status.error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);
  CHECK(Ack(stub, AckOf("/pull/nowhere", "a")).status.error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(Nack(stub, NackOf("/pull/nowhere", "a")).status.error_code() ==
        grpc::StatusCode::NOT_FOUND);
  CHECK(Extend(stub, "/pull/nowhere", "a", Millis(1000)).error_code() ==
        grpc::StatusCode::NOT_FOUND);
  CHECK(Extend(stub, "/pull/nowhere", "a", Millis(1000), wrong).error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);
}

// ---------------------------------------------------------------------------------------------
// Dequeue

TEST_CASE("a dequeued item carries every field of the message and its lease", "[worker_grpc]") {
  common::ManualClock clock;
  Harness harness(clock);
  const std::string payload("binary\0payload\xff", 15);
  const std::string id = harness.Enqueue("github", payload, {{"X-GitHub-Event", "push"}},
                                         {{"traceparent", "00-abc-def-01"}});
  clock.Advance(seconds(3));

  const auto item = DequeueOne(harness.stub(), kGithub, Bearer(kGlobalToken), kNoDeadline);
  CHECK(item.id() == id);
  CHECK(item.lease_id().size() >= 16);
  CHECK(item.attempt() == 1);
  CHECK(item.route() == "github");
  CHECK(item.payload() == payload);
  REQUIRE(item.headers().count("X-GitHub-Event") == 1);
  CHECK(item.headers().at("X-GitHub-Event") == "push");
  CHECK(item.headers_size() == 1);
  REQUIRE(item.trace().count("traceparent") == 1);
  CHECK(item.trace().at("traceparent") == "00-abc-def-01");
  CHECK(item.trace_size() == 1);
  CHECK(Since(item.received_at(), clock.WallNow()) == -seconds(3));
  // The default lease is 30 seconds; next_run_at is its expiry.
  CHECK(Since(item.next_run_at(), clock.WallNow()) == kDefaultLeaseTtl);
}

TEST_CASE("lease_ttl is honoured and capped at the route's max_lease_ttl", "[worker_grpc]") {
  common::ManualClock clock;
  Harness harness(clock);
  for (int i = 0; i < 3; ++i) harness.Enqueue("small", "x");
  for (const auto& [requested, expected] :
       std::vector<std::pair<std::chrono::nanoseconds, std::chrono::nanoseconds>>{
           {seconds(5), seconds(5)},
           {std::chrono::hours(1), std::chrono::minutes(1)},
           {std::chrono::nanoseconds(0), kDefaultLeaseTtl}}) {
    Call call(Bearer(kGlobalToken), kNoDeadline);
    wire::DequeueRequest request;
    request.set_endpoint(kSmall);
    *request.mutable_lease_ttl() = common::ToProtoDuration(requested);
    wire::DequeueResponse response;
    REQUIRE(harness.stub().Dequeue(&call.context, request, &response).ok());
    REQUIRE(response.items_size() == 1);
    CHECK(Since(response.items(0).next_run_at(), clock.WallNow()) == expected);
  }
}

TEST_CASE("batch 0 means 1 and batches are clamped to the route's max_batch and 100",
          "[worker_grpc]") {
  Harness harness(common::RealClock());
  harness.EnqueueMany("small", 6);
  harness.EnqueueMany("github", 120);

  CHECK(Dequeue(harness.stub(), kSmall, 0).response.items_size() == 1);
  CHECK(Dequeue(harness.stub(), kSmall, 10).response.items_size() == 3);
  CHECK(Dequeue(harness.stub(), kSmall, 2).response.items_size() == 2);
  CHECK(Dequeue(harness.stub(), kGithub, 4'294'967'295u).response.items_size() == kMaxDequeueBatch);
  CHECK(Dequeue(harness.stub(), kGithub, 1000).response.items_size() == 20);
}

TEST_CASE("items come out by next_run_at, then received_at", "[worker_grpc]") {
  common::ManualClock clock;
  Harness harness(clock);
  const std::string first = harness.Enqueue("github", "1");
  clock.Advance(milliseconds(1));
  const std::string second = harness.Enqueue("github", "2");
  clock.Advance(milliseconds(1));
  const std::string third = harness.Enqueue("github", "3");
  clock.Advance(milliseconds(1));

  // The first one goes back to the queue now, so it is due after the other two.
  const auto leased = DequeueOne(harness.stub(), kGithub, Bearer(kGlobalToken), kNoDeadline);
  REQUIRE(leased.id() == first);
  REQUIRE(
      Nack(harness.stub(), NackOf(kGithub, leased.lease_id()), Bearer(kGlobalToken), kNoDeadline)
          .status.ok());

  auto result = Dequeue(harness.stub(), kGithub, 10, Bearer(kGlobalToken), kNoDeadline);
  REQUIRE(result.status.ok());
  REQUIRE(result.response.items_size() == 3);
  CHECK(result.response.items(0).id() == second);
  CHECK(result.response.items(1).id() == third);
  CHECK(result.response.items(2).id() == first);
  CHECK(result.response.items(2).attempt() == 2);
  std::set<std::string> lease_ids;
  for (const auto& item : result.response.items()) lease_ids.insert(item.lease_id());
  lease_ids.insert(leased.lease_id());
  CHECK(lease_ids.size() == 4);
}

TEST_CASE("an empty queue answers at once without max_wait", "[worker_grpc]") {
  Harness harness(common::RealClock());
  const auto started = std::chrono::steady_clock::now();
  auto result = Dequeue(harness.stub(), kGithub);
  CHECK(result.status.ok());
  CHECK(result.response.items_size() == 0);
  CHECK(std::chrono::steady_clock::now() - started < seconds(2));
}

TEST_CASE("a long-poll is answered as soon as an item is enqueued", "[worker_grpc]") {
  Harness harness(common::RealClock());
  auto poll = std::async(std::launch::async, [&] {
    Call call;
    wire::DequeueRequest request;
    request.set_endpoint(kGithub);
    *request.mutable_max_wait() = Millis(8000);
    DequeueResult result;
    result.status = harness.stub().Dequeue(&call.context, request, &result.response);
    return std::make_pair(result, std::chrono::steady_clock::now());
  });
  REQUIRE(harness.AwaitWaiting("github", 1));
  REQUIRE(poll.wait_for(std::chrono::seconds(0)) == std::future_status::timeout);

  const auto enqueued_at = std::chrono::steady_clock::now();
  const std::string id = harness.Enqueue("github", "wake up");
  const auto [result, answered_at] = poll.get();
  REQUIRE(result.status.ok());
  REQUIRE(result.response.items_size() == 1);
  CHECK(result.response.items(0).id() == id);
  // Well below max_wait; typically a few milliseconds.
  CHECK(answered_at - enqueued_at < milliseconds(1000));
}

TEST_CASE("a long-poll is answered as soon as another worker nacks", "[worker_grpc]") {
  Harness harness(common::RealClock());
  const std::string id = harness.Enqueue("github", "x");
  const auto item = DequeueOne(harness.stub(), kGithub);
  auto poll = std::async(std::launch::async, [&] {
    Call call;
    wire::DequeueRequest request;
    request.set_endpoint(kGithub);
    *request.mutable_max_wait() = Millis(8000);
    DequeueResult result;
    result.status = harness.stub().Dequeue(&call.context, request, &result.response);
    return result;
  });
  REQUIRE(harness.AwaitWaiting("github", 1));
  REQUIRE(poll.wait_for(std::chrono::seconds(0)) == std::future_status::timeout);

  const auto nacked_at = std::chrono::steady_clock::now();
  REQUIRE(Nack(harness.stub(), NackOf(kGithub, item.lease_id())).status.ok());
  REQUIRE(poll.wait_for(std::chrono::seconds(1)) == std::future_status::ready);
  CHECK(std::chrono::steady_clock::now() - nacked_at < milliseconds(1000));
  const auto result = poll.get();
  REQUIRE(result.status.ok());
  REQUIRE(result.response.items_size() == 1);
  CHECK(result.response.items(0).id() == id);
  CHECK(result.response.items(0).attempt() == 2);
}

TEST_CASE("stopping the server ends waiting long-polls and leases nothing", "[worker_grpc]") {
  auto harness = std::make_unique<Harness>(common::RealClock());
  auto stub = harness->NewStub(grpc::InsecureChannelCredentials());
  Call call;
  wire::DequeueRequest request;
  request.set_endpoint(kGithub);
  *request.mutable_max_wait() = Millis(8000);
  wire::DequeueResponse response;
  std::promise<grpc::Status> done;
  stub->async()->Dequeue(&call.context, &request, &response,
                         [&done](grpc::Status status) { done.set_value(status); });
  REQUIRE(harness->AwaitWaiting("github", 1));

  const auto stopping = std::chrono::steady_clock::now();
  harness.reset();
  CHECK(std::chrono::steady_clock::now() - stopping < seconds(3));
  const grpc::Status status = done.get_future().get();
  CHECK_FALSE(status.ok());
  CHECK(response.items_size() == 0);
}

TEST_CASE("a long-poll ends empty after max_wait", "[worker_grpc]") {
  Harness harness(common::RealClock());
  Call call;
  wire::DequeueRequest request;
  request.set_endpoint(kGithub);
  *request.mutable_max_wait() = Millis(300);
  wire::DequeueResponse response;
  const auto started = std::chrono::steady_clock::now();
  const auto status = harness.stub().Dequeue(&call.context, request, &response);
  const auto waited = std::chrono::steady_clock::now() - started;
  CHECK(status.ok());
  CHECK(response.items_size() == 0);
  CHECK(waited >= milliseconds(290));
  CHECK(waited < seconds(5));
}

TEST_CASE("many long-polls wait at once without holding threads", "[worker_grpc]") {
  // More waiting calls than gRPC's callback executor has threads: they all must be parked.
  Harness harness(common::RealClock());
  constexpr int kPollers = 64;
  auto channel_stub = harness.NewStub(grpc::InsecureChannelCredentials());
  std::vector<std::unique_ptr<Call>> calls;
  std::vector<wire::DequeueResponse> responses(kPollers);
  std::vector<std::promise<grpc::Status>> done(kPollers);
  wire::DequeueRequest request;
  request.set_endpoint(kGithub);
  *request.mutable_max_wait() = Millis(8000);
  for (int i = 0; i < kPollers; ++i) {
    calls.push_back(std::make_unique<Call>());
    channel_stub->async()->Dequeue(&calls.back()->context, &request, &responses[i],
                                   [&done, i](grpc::Status status) { done[i].set_value(status); });
  }
  std::this_thread::sleep_for(milliseconds(300));
  // Other calls are still served while the pollers wait.
  CHECK(Dequeue(harness.stub(), kSmall).status.ok());
  harness.EnqueueMany("github", kPollers);
  std::set<std::string> ids;
  for (int i = 0; i < kPollers; ++i) {
    auto future = done[i].get_future();
    const bool answered = future.wait_for(seconds(10)) == std::future_status::ready;
    CHECK(answered);
    // Every call must end before its context and response go out of scope.
    if (!answered) calls[i]->context.TryCancel();
    CHECK(future.get().ok());
    if (responses[i].items_size() == 1) ids.insert(responses[i].items(0).id());
  }
  CHECK(ids.size() == kPollers);
}

TEST_CASE("nothing is leased to a caller whose deadline passed", "[worker_grpc]") {
  Harness harness(common::RealClock());
  Call call(Bearer(kGlobalToken), milliseconds(300));
  wire::DequeueRequest request;
  request.set_endpoint(kGithub);
  *request.mutable_max_wait() = Millis(8000);
  wire::DequeueResponse response;
  const auto started = std::chrono::steady_clock::now();
  const auto status = harness.stub().Dequeue(&call.context, request, &response);
  CHECK(status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
  CHECK(std::chrono::steady_clock::now() - started < seconds(5));

  // The expired waiter is gone: an item enqueued now stays queued for the next caller.
  harness.Enqueue("github", "after the deadline");
  std::this_thread::sleep_for(milliseconds(100));
  CHECK(harness.Stats("github").leased == 0);
  const auto item = DequeueOne(harness.stub(), kGithub);
  CHECK(item.attempt() == 1);
}

TEST_CASE("a cancelled long-poll leases nothing", "[worker_grpc]") {
  Harness harness(common::RealClock());
  Call call;
  wire::DequeueRequest request;
  request.set_endpoint(kGithub);
  *request.mutable_max_wait() = Millis(8000);
  wire::DequeueResponse response;
  std::promise<grpc::Status> done;
  harness.stub().async()->Dequeue(&call.context, &request, &response,
                                  [&done](grpc::Status status) { done.set_value(status); });
  REQUIRE(harness.AwaitWaiting("github", 1));
  call.context.TryCancel();
  CHECK(done.get_future().get().error_code() == grpc::StatusCode::CANCELLED);

  // Once the server has dropped the poll, enqueue: nobody is waiting.
  REQUIRE(harness.AwaitWaiting("github", 0));
  harness.Enqueue("github", "after the cancel");
  std::this_thread::sleep_for(milliseconds(100));
  CHECK(harness.Stats("github").leased == 0);
  CHECK(DequeueOne(harness.stub(), kGithub).attempt() == 1);
}

// ---------------------------------------------------------------------------------------------
// Ack, Nack, Extend

TEST_CASE("a single ack settles the lease and a retry succeeds again", "[worker_grpc]") {
  Harness harness(common::RealClock());
  harness.Enqueue("github", "x");
  const auto item = DequeueOne(harness.stub(), kGithub);

  auto first = Ack(harness.stub(), AckOf(kGithub, item.lease_id()));
  REQUIRE(first.status.ok());
  CHECK(first.response.acked() == 1);
  CHECK(first.response.conflicts_size() == 0);
  const auto stats = harness.Stats("github");
  CHECK(stats.queued == 0);
  CHECK(stats.leased == 0);

  // A worker that lost the first answer retries within the idempotency window.
  auto retry = Ack(harness.stub(), AckOf(kGithub, item.lease_id()));
  CHECK(retry.status.ok());
  CHECK(retry.response.acked() == 1);
  auto batch_retry = Ack(harness.stub(), AckBatch(kGithub, {item.lease_id()}));
  CHECK(batch_retry.status.ok());
  CHECK(batch_retry.response.acked() == 1);
  CHECK(batch_retry.response.conflicts_size() == 0);
}

TEST_CASE("a single ack or nack of an unknown lease is FAILED_PRECONDITION", "[worker_grpc]") {
  Harness harness(common::RealClock());
  auto ack = Ack(harness.stub(), AckOf(kGithub, "no-such-lease"));
  CHECK(ack.status.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  CHECK(ack.status.error_message() == "lease is invalid or expired");
  auto nack = Nack(harness.stub(), NackOf(kGithub, "no-such-lease"));
  CHECK(nack.status.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  CHECK(nack.status.error_message() == "lease is invalid or expired");
}

TEST_CASE("a batch ack applies the valid leases and lists the conflicts", "[worker_grpc]") {
  Harness harness(common::RealClock());
  for (int i = 0; i < 3; ++i) harness.Enqueue("github", "x");
  auto leased = Dequeue(harness.stub(), kGithub, 3);
  REQUIRE(leased.response.items_size() == 3);
  const std::string a = leased.response.items(0).lease_id();
  const std::string b = leased.response.items(1).lease_id();

  // Duplicates count once.
  auto result = Ack(harness.stub(), AckBatch(kGithub, {a, "bogus", b, a}));
  REQUIRE(result.status.ok());
  CHECK(result.response.acked() == 2);
  REQUIRE(result.response.conflicts_size() == 1);
  CHECK(result.response.conflicts(0).lease_id() == "bogus");
  CHECK_FALSE(result.response.conflicts(0).expired());
  CHECK(harness.Stats("github").leased == 1);

  // 101 ids with one duplicate are 100 distinct leases: allowed.
  std::vector<std::string> ids;
  for (int i = 0; i < kMaxLeaseBatch; ++i) ids.push_back("unknown-" + std::to_string(i));
  ids.push_back(ids.front());
  auto many = Ack(harness.stub(), AckBatch(kGithub, ids));
  REQUIRE(many.status.ok());
  CHECK(many.response.acked() == 0);
  CHECK(many.response.conflicts_size() == kMaxLeaseBatch);
}

TEST_CASE("a nack requeues at once or after its delay", "[worker_grpc]") {
  common::ManualClock clock;
  Harness harness(clock);
  const std::string id = harness.Enqueue("github", "x");
  auto& stub = harness.stub();
  const auto token = Bearer(kGlobalToken);

  auto item = DequeueOne(stub, kGithub, token, kNoDeadline);
  auto nack = Nack(stub, NackOf(kGithub, item.lease_id()), token, kNoDeadline);
  REQUIRE(nack.status.ok());
  CHECK(nack.response.succeeded() == 1);
  item = DequeueOne(stub, kGithub, token, kNoDeadline);
  CHECK(item.id() == id);
  CHECK(item.attempt() == 2);

  auto delayed = NackOf(kGithub, item.lease_id());
  *delayed.mutable_delay() = Millis(60'000);
  REQUIRE(Nack(stub, delayed, token, kNoDeadline).status.ok());
  CHECK(Dequeue(stub, kGithub, 1, token, kNoDeadline).response.items_size() == 0);
  CHECK(harness.Stats("github").delayed == 1);
  clock.Advance(seconds(59));
  harness.engine().RunTimers();
  CHECK(Dequeue(stub, kGithub, 1, token, kNoDeadline).response.items_size() == 0);
  clock.Advance(seconds(1));
  harness.engine().RunTimers();
  item = DequeueOne(stub, kGithub, token, kNoDeadline);
  CHECK(item.id() == id);
  CHECK(item.attempt() == 3);
}

TEST_CASE("a dead nack moves the item to the dead letters with its reason", "[worker_grpc]") {
  Harness harness(common::RealClock());
  const std::string id = harness.Enqueue("github", "poison");
  const auto item = DequeueOne(harness.stub(), kGithub);
  auto request = NackOf(kGithub, item.lease_id());
  request.set_dead(true);
  request.set_reason("payload does not parse");
  *request.mutable_delay() = Millis(60'000);  // Ignored when dead.
  auto result = Nack(harness.stub(), request);
  REQUIRE(result.status.ok());
  CHECK(result.response.succeeded() == 1);

  CHECK(Dequeue(harness.stub(), kGithub).response.items_size() == 0);
  const auto stats = harness.Stats("github");
  CHECK(stats.dead == 1);
  CHECK(stats.queued == 0);
  auto dead = harness.engine().ListDeadLetters("github", 10);
  REQUIRE(dead.ok());
  REQUIRE(dead->size() == 1);
  CHECK(dead->front().id == id);
  CHECK(dead->front().dead_reason == "payload does not parse");
}

TEST_CASE("a batch nack applies the valid leases and lists the conflicts", "[worker_grpc]") {
  Harness harness(common::RealClock());
  for (int i = 0; i < 2; ++i) harness.Enqueue("github", "x");
  auto leased = Dequeue(harness.stub(), kGithub, 2);
  REQUIRE(leased.response.items_size() == 2);
  wire::NackRequest request;
  request.set_endpoint(kGithub);
  request.add_lease_ids(leased.response.items(0).lease_id());
  request.add_lease_ids("bogus");
  request.add_lease_ids(leased.response.items(1).lease_id());
  request.set_dead(true);
  request.set_reason("batch");
  auto result = Nack(harness.stub(), request);
  REQUIRE(result.status.ok());
  CHECK(result.response.succeeded() == 2);
  REQUIRE(result.response.conflicts_size() == 1);
  CHECK(result.response.conflicts(0).lease_id() == "bogus");
  CHECK_FALSE(result.response.conflicts(0).expired());
  CHECK(harness.Stats("github").dead == 2);
}

TEST_CASE("an expired lease returns its item, and settling it is a conflict", "[worker_grpc]") {
  common::ManualClock clock;
  Harness harness(clock);
  auto& stub = harness.stub();
  const auto token = Bearer(kGlobalToken);
  const std::string id = harness.Enqueue("github", "x");
  const auto first = DequeueOne(stub, kGithub, token, kNoDeadline);
  CHECK(first.attempt() == 1);

  clock.Advance(kDefaultLeaseTtl + seconds(1));
  harness.engine().RunTimers();
  CHECK(harness.Stats("github").leased == 0);
  CHECK(harness.Stats("github").queued == 1);

  auto single = Ack(stub, AckOf(kGithub, first.lease_id()), token, kNoDeadline);
  CHECK(single.status.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  auto batch = Ack(stub, AckBatch(kGithub, {first.lease_id()}), token, kNoDeadline);
  REQUIRE(batch.status.ok());
  CHECK(batch.response.acked() == 0);
  REQUIRE(batch.response.conflicts_size() == 1);
  CHECK(batch.response.conflicts(0).expired());
  wire::NackRequest nack;
  nack.set_endpoint(kGithub);
  nack.add_lease_ids(first.lease_id());
  auto nacked = Nack(stub, nack, token, kNoDeadline);
  REQUIRE(nacked.status.ok());
  REQUIRE(nacked.response.conflicts_size() == 1);
  CHECK(nacked.response.conflicts(0).expired());
  CHECK(Extend(stub, kGithub, first.lease_id(), Millis(1000), token, kNoDeadline).error_code() ==
        grpc::StatusCode::FAILED_PRECONDITION);

  // The expiry kept the attempt count; the next lease is attempt 2 with a new lease id.
  const auto second = DequeueOne(stub, kGithub, token, kNoDeadline);
  CHECK(second.id() == id);
  CHECK(second.attempt() == 2);
  CHECK(second.lease_id() != first.lease_id());
}

TEST_CASE("extend keeps a lease alive past its original expiry", "[worker_grpc]") {
  common::ManualClock clock;
  Harness harness(clock);
  auto& stub = harness.stub();
  const auto token = Bearer(kGlobalToken);
  harness.Enqueue("github", "x");
  const auto item = DequeueOne(stub, kGithub, token, kNoDeadline);

  clock.Advance(seconds(20));
  REQUIRE(Extend(stub, kGithub, item.lease_id(), Millis(20'000), token, kNoDeadline).ok());
  clock.Advance(seconds(20));  // 40s after the lease began, 10s before the extended expiry.
  harness.engine().RunTimers();
  CHECK(harness.Stats("github").leased == 1);
  auto ack = Ack(stub, AckOf(kGithub, item.lease_id()), token, kNoDeadline);
  CHECK(ack.status.ok());
  CHECK(ack.response.acked() == 1);
}

TEST_CASE("extend by zero or less succeeds without looking at the lease", "[worker_grpc]") {
  Harness harness(common::RealClock());
  auto& stub = harness.stub();
  CHECK(Extend(stub, kGithub, "no-such-lease", Millis(0)).ok());
  CHECK(Extend(stub, kGithub, "no-such-lease", Millis(-1000)).ok());
  const auto unknown = Extend(stub, kGithub, "no-such-lease", Millis(1000));
  CHECK(unknown.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  CHECK(unknown.error_message() == "lease is invalid or expired");
}

TEST_CASE("a lease of another route is treated like an unknown lease", "[worker_grpc]") {
  Harness harness(common::RealClock());
  auto& stub = harness.stub();
  harness.Enqueue("github", "x");
  const auto item = DequeueOne(stub, kGithub);
  const auto token = Bearer(kPrivateToken);

  auto single = Ack(stub, AckOf(kPrivate, item.lease_id()), token);
  CHECK(single.status.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  CHECK(single.status.error_message() == "lease is invalid or expired");
  auto batch = Ack(stub, AckBatch(kPrivate, {item.lease_id()}), token);
  REQUIRE(batch.status.ok());
  REQUIRE(batch.response.conflicts_size() == 1);
  CHECK_FALSE(batch.response.conflicts(0).expired());
  CHECK(Nack(stub, NackOf(kPrivate, item.lease_id()), token).status.error_code() ==
        grpc::StatusCode::FAILED_PRECONDITION);
  CHECK(Extend(stub, kPrivate, item.lease_id(), Millis(1000), token).error_code() ==
        grpc::StatusCode::FAILED_PRECONDITION);

  // Still valid on its own route.
  CHECK(Ack(stub, AckOf(kGithub, item.lease_id())).response.acked() == 1);
}

TEST_CASE("concurrent workers never share a lease", "[worker_grpc]") {
  Harness harness(common::RealClock());
  constexpr int kItems = 2000;
  constexpr int kWorkers = 8;
  harness.EnqueueMany("github", kItems);

  std::mutex mu;
  std::vector<std::string> ids;
  std::atomic<int> failures{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&] {
      auto stub = harness.NewStub(grpc::InsecureChannelCredentials());
      for (;;) {
        auto leased = Dequeue(*stub, kGithub, 7);
        if (!leased.status.ok()) {
          ++failures;
          return;
        }
        if (leased.response.items_size() == 0) return;
        std::vector<std::string> lease_ids;
        {
          std::lock_guard lock(mu);
          for (const auto& item : leased.response.items()) {
            ids.push_back(item.id());
            lease_ids.push_back(item.lease_id());
          }
        }
        auto acked = Ack(*stub, AckBatch(kGithub, lease_ids));
        if (!acked.status.ok() || acked.response.acked() != lease_ids.size()) ++failures;
      }
    });
  }
  for (auto& worker : workers) worker.join();

  CHECK(failures == 0);
  CHECK(ids.size() == kItems);
  CHECK(std::set<std::string>(ids.begin(), ids.end()).size() == kItems);
  const auto stats = harness.Stats("github");
  CHECK(stats.queued == 0);
  CHECK(stats.leased == 0);
}

// ---------------------------------------------------------------------------------------------
// Listener credentials

struct WorkerPki : pi::testing::TestPki {
  WorkerPki() {
    Issue("server", "controller", "--dns localhost --ip 127.0.0.1");
    Issue("worker", "runner:worker-1");
  }
};

std::shared_ptr<grpc::ChannelCredentials> ClientCredentials(const common::ClientTlsConfig& tls) {
  auto credentials = common::MakeChannelCredentials(tls);
  REQUIRE(credentials.ok());
  return *credentials;
}

TEST_CASE("the worker listener serves TLS with a certificate", "[worker_grpc][tls]") {
  WorkerPki pki;
  PullTlsConfig tls{pki.File("server.crt"), pki.File("server.key"), "", false};
  Harness harness(common::RealClock(), tls);

  auto tls_stub = harness.NewStub(ClientCredentials({pki.File("ca.crt"), "", ""}));
  CHECK(Dequeue(*tls_stub, kGithub).status.ok());
  CHECK(Dequeue(*tls_stub, kGithub, 1, Bearer("wrong")).status.error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);

  auto plaintext_stub = harness.NewStub(grpc::InsecureChannelCredentials());
  CHECK(
      Dequeue(*plaintext_stub, kGithub, 1, Bearer(kGlobalToken), seconds(3)).status.error_code() ==
      grpc::StatusCode::UNAVAILABLE);
}

TEST_CASE("the worker listener requires a client certificate from the CA with mTLS",
          "[worker_grpc][tls]") {
  WorkerPki pki;
  pi::testing::TestPki stranger_pki;
  stranger_pki.Issue("stranger", "runner:stranger");
  PullTlsConfig tls{pki.File("server.crt"), pki.File("server.key"), pki.File("ca.crt"), true};
  Harness harness(common::RealClock(), tls);

  auto with_certificate = harness.NewStub(
      ClientCredentials({pki.File("ca.crt"), pki.File("worker.crt"), pki.File("worker.key")}));
  CHECK(Dequeue(*with_certificate, kGithub).status.ok());

  auto without_certificate = harness.NewStub(ClientCredentials({pki.File("ca.crt"), "", ""}));
  CHECK(Dequeue(*without_certificate, kGithub, 1, Bearer(kGlobalToken), seconds(3))
            .status.error_code() == grpc::StatusCode::UNAVAILABLE);

  auto foreign_certificate = harness.NewStub(ClientCredentials(
      {pki.File("ca.crt"), stranger_pki.File("stranger.crt"), stranger_pki.File("stranger.key")}));
  CHECK(Dequeue(*foreign_certificate, kGithub, 1, Bearer(kGlobalToken), seconds(3))
            .status.error_code() == grpc::StatusCode::UNAVAILABLE);
}

TEST_CASE("worker listener credentials refuse incomplete TLS settings", "[worker_grpc][tls]") {
  WorkerPki pki;
  CHECK(WorkerServerCredentials({}).ok());
  // Client settings without a certificate would silently serve plaintext.
  CHECK(WorkerServerCredentials({"", pki.File("server.key"), "", false}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(WorkerServerCredentials({"", "", pki.File("ca.crt"), true}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  // mTLS needs the CA to verify clients against.
  CHECK(WorkerServerCredentials({pki.File("server.crt"), pki.File("server.key"), "", true})
            .status()
            .code() == absl::StatusCode::kInvalidArgument);
  CHECK_FALSE(
      WorkerServerCredentials({pki.File("missing.crt"), pki.File("server.key"), "", false}).ok());
  CHECK_FALSE(
      WorkerServerCredentials({pki.File("server.crt"), pki.File("worker.key"), "", false}).ok());
}

}  // namespace
}  // namespace pi::controlplane::queue
