#include "control-plane/queue/http_ingress.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>

#include "common/system/clock.h"
#include "control-plane/queue/sqlite_queue_store.h"
#include "tests/common/test_dir.h"
#include "tests/control-plane/queue/http_test_client.h"

namespace pi::controlplane::queue::http_test {

namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

namespace {

QueuesConfig IngressConfig() {
  QueuesConfig config;
  RouteConfig github;
  github.name = "github";
  github.ingress_path = "/webhooks/github";
  github.pull_path = "/pull/github";
  config.routes.push_back(github);
  RouteConfig small;
  small.name = "small";
  small.ingress_path = "/webhooks/small";
  small.limits.max_depth = 1;
  config.routes.push_back(small);
  config.auth_tokens = {"global-token"};
  return config;
}

// A real engine on a real SQLite file behind a real ingress listener.
struct IngressFixture {
  IngressFixture() {
    auto opened = OpenTestEngine(dir.path().string(), config, store);
    REQUIRE(opened.ok());
    engine = *std::move(opened);
    ingress = std::make_unique<HttpIngress>(*engine, routes, 64);
    auto bound = ingress->Start("127.0.0.1:0");
    REQUIRE(bound.ok());
    port = *bound;
  }
  ~IngressFixture() { ingress->Stop(); }

  http::response<http::string_body> Post(
      const std::string& path, const std::string& body,
      std::vector<std::pair<std::string, std::string>> headers = {}) {
    http::request<http::string_body> request(http::verb::post, path, 11);
    for (const auto& [name, value] : headers) request.insert(name, value);
    request.body() = body;
    return HttpCall(port, std::move(request));
  }

  int64_t Queued(const std::string& route) {
    auto stats = engine->Stats(route);
    REQUIRE(stats.ok());
    return stats->queued;
  }

  // Leases everything queued on the route, to look at what was stored.
  std::vector<LeasedItem> LeaseAll(const std::string& route) {
    auto items = AwaitEngine<absl::StatusOr<std::vector<LeasedItem>>>([&](auto done) {
      DequeueRequest request;
      request.route = route;
      request.batch = kMaxDequeueBatch;
      engine->Dequeue(std::move(request), std::move(done));
    });
    REQUIRE(items.ok());
    return *items;
  }

  pi::testing::TempDir dir;
  QueuesConfig config = IngressConfig();
  RouteTable routes{config};
  std::unique_ptr<SqliteQueueStore> store;
  std::unique_ptr<QueueEngine> engine;
  std::unique_ptr<HttpIngress> ingress;
  uint16_t port = 0;
};

TEST_CASE("ingress stores the body and answers 202 with the id of the committed message",
          "[ingress]") {
  IngressFixture fixture;
  const std::string payload("binary\0\xff payload", 17);
  const auto response = fixture.Post("/webhooks/github", payload, {{"Content-Type", "x/y"}});
  REQUIRE(response.result_int() == 202);
  CHECK(response[http::field::content_type] == "application/json");
  const auto body = nlohmann::json::parse(response.body());
  const std::string id = body.at("id").get<std::string>();
  CHECK_FALSE(id.empty());
  CHECK(body.size() == 1);

  // 202 came after the commit: a fresh engine on the same file sees the message.
  const auto items = fixture.LeaseAll("github");
  REQUIRE(items.size() == 1);
  CHECK(items[0].id == id);
  CHECK(items[0].payload == payload);
  CHECK(items[0].headers.at("content-type") == "x/y");
  fixture.ingress->Stop();
  fixture.engine.reset();
  std::unique_ptr<SqliteQueueStore> reopened_store;
  auto reopened = OpenTestEngine(fixture.dir.path().string(), fixture.config, reopened_store);
  REQUIRE(reopened.ok());
  auto stats = (*reopened)->Stats("github");
  REQUIRE(stats.ok());
  // Leased before the restart; the lease survives, so the message is there.
  CHECK(stats->queued + stats->leased == 1);
}

TEST_CASE("ingress never stores credentials or hop-by-hop headers, and keeps trace headers",
          "[ingress]") {
  IngressFixture fixture;
  const auto response =
      fixture.Post("/webhooks/github", "{}",
                   {{"Authorization", "Bearer secret"},
                    {"Proxy-Authorization", "Basic c2VjcmV0"},
                    {"Cookie", "session=secret"},
                    {"Set-Cookie", "a=b"},
                    {"Proxy-Connection", "keep-alive"},
                    {"TE", "trailers"},
                    {"Upgrade", "h2c"},
                    {"X-GitHub-Event", "push"},
                    {"X-Not-Utf8", "caf\xe9"},
                    {"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
                    {"tracestate", "vendor=1"},
                    {"baggage", "user=1"},
                    {"X-Request-Id", "req-7"}});
  REQUIRE(response.result_int() == 202);
  const auto items = fixture.LeaseAll("github");
  REQUIRE(items.size() == 1);
  const Headers& headers = items[0].headers;
  for (const char* dropped :
       {"authorization", "proxy-authorization", "cookie", "set-cookie", "proxy-connection", "te",
        "upgrade", "host", "content-length", "connection", "x-not-utf8"}) {
    INFO(dropped);
    CHECK(headers.count(dropped) == 0);
  }
  CHECK(headers.at("x-github-event") == "push");
  for (const auto& [name, value] : headers) CHECK_THAT(value, !Catch::Contains("secret"));
  const Headers expected_trace = {
      {"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
      {"tracestate", "vendor=1"},
      {"baggage", "user=1"},
      {"x-request-id", "req-7"}};
  CHECK(items[0].trace == expected_trace);
}

TEST_CASE("ingress answers 404, 405 and 413 as JSON errors without storing anything", "[ingress]") {
  IngressFixture fixture;
  const auto unknown = fixture.Post("/webhooks/nope", "x");
  CHECK(unknown.result_int() == 404);
  CHECK(nlohmann::json::parse(unknown.body()).at("code") == "not_found");

  http::request<http::string_body> get(http::verb::get, "/webhooks/github", 11);
  const auto wrong_method = HttpCall(fixture.port, std::move(get));
  CHECK(wrong_method.result_int() == 405);
  CHECK(wrong_method[http::field::allow] == "POST");
  CHECK(nlohmann::json::parse(wrong_method.body()).at("code") == "method_not_allowed");

  const auto too_big = fixture.Post("/webhooks/github", std::string(65, 'x'));
  CHECK(too_big.result_int() == 413);
  CHECK(nlohmann::json::parse(too_big.body()).at("code") == "payload_too_large");
  CHECK(fixture.Post("/webhooks/github", std::string(64, 'x')).result_int() == 202);
  CHECK(fixture.Queued("github") == 1);
}

TEST_CASE("ingress answers 503 when the queue is full", "[ingress]") {
  IngressFixture fixture;
  CHECK(fixture.Post("/webhooks/small", "one").result_int() == 202);
  const auto full = fixture.Post("/webhooks/small", "two");
  CHECK(full.result_int() == 503);
  CHECK(full[http::field::retry_after] == "1");
  const auto body = nlohmann::json::parse(full.body());
  CHECK(body.at("code") == "queue_full");
  CHECK_FALSE(body.at("detail").get<std::string>().empty());
  CHECK(fixture.Queued("small") == 1);
}

TEST_CASE("ingress answers concurrent senders, each with its own id", "[ingress]") {
  IngressFixture fixture;
  std::vector<std::future<std::string>> sends;
  for (int i = 0; i < 16; ++i) {
    sends.push_back(std::async(std::launch::async, [&fixture, i] {
      const auto response = fixture.Post("/webhooks/github", std::to_string(i));
      return response.result_int() == 202
                 ? nlohmann::json::parse(response.body()).at("id").get<std::string>()
                 : std::string();
    }));
  }
  std::set<std::string> ids;
  for (auto& send : sends) ids.insert(send.get());
  CHECK(ids.size() == 16);
  CHECK(ids.count("") == 0);
  CHECK(fixture.Queued("github") == 16);
}

// The real store, with commits held until released, or failing.
class GatedStore : public QueueStore {
 public:
  explicit GatedStore(QueueStore& inner) : inner_(inner) {}
  absl::StatusOr<std::vector<StoredMessage>> LoadAll() override { return inner_.LoadAll(); }
  absl::Status Commit(std::span<const QueueMutation> mutations) override {
    std::unique_lock lock(mu_);
    ++commits_waiting_;
    released_.wait(lock, [this] { return open_; });
    --commits_waiting_;
    if (fail_) return absl::InternalError("disk on fire");
    return inner_.Commit(mutations);
  }
  void Open(bool fail) {
    std::lock_guard lock(mu_);
    open_ = true;
    fail_ = fail;
    released_.notify_all();
  }
  int commits_waiting() {
    std::lock_guard lock(mu_);
    return commits_waiting_;
  }

 private:
  QueueStore& inner_;
  std::mutex mu_;
  std::condition_variable released_;
  bool open_ = false;
  bool fail_ = false;
  int commits_waiting_ = 0;
};

TEST_CASE("ingress answers only after the commit, and 503 when the store fails", "[ingress]") {
  const bool fail = GENERATE(false, true);
  pi::testing::TempDir dir;
  auto sqlite = SqliteQueueStore::Open(dir.path().string() + "/queue.db", common::RealClock());
  REQUIRE(sqlite.ok());
  GatedStore store(**sqlite);
  const QueuesConfig config = IngressConfig();
  const RouteTable routes(config);
  auto engine = QueueEngine::Open(store, common::RealClock(), config.Limits());
  REQUIRE(engine.ok());
  HttpIngress ingress(**engine, routes, 1024);
  auto port = ingress.Start("127.0.0.1:0");
  REQUIRE(port.ok());

  auto answer = std::async(std::launch::async, [&] {
    http::request<http::string_body> request(http::verb::post, "/webhooks/github", 11);
    request.body() = "held";
    return HttpCall(*port, std::move(request));
  });
  for (int i = 0; i < 500 && store.commits_waiting() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  REQUIRE(store.commits_waiting() == 1);
  CHECK(answer.wait_for(std::chrono::milliseconds(200)) == std::future_status::timeout);
  store.Open(fail);
  const auto response = answer.get();
  if (fail) {
    CHECK(response.result_int() == 503);
    CHECK(nlohmann::json::parse(response.body()).at("code") == "unavailable");
  } else {
    CHECK(response.result_int() == 202);
  }
  ingress.Stop();
  engine->reset();
  auto stored = (*sqlite)->LoadAll();
  REQUIRE(stored.ok());
  CHECK(stored->size() == (fail ? 0u : 1u));
}

}  // namespace
}  // namespace pi::controlplane::queue::http_test
