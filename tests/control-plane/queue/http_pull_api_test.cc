#include "control-plane/queue/http_pull_api.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <tuple>

#include "absl/strings/escaping.h"
#include "control-plane/queue/http_ingress.h"
#include "control-plane/queue/sqlite_queue_store.h"
#include "tests/common/test_dir.h"
#include "tests/common/test_pki.h"
#include "tests/control-plane/queue/http_test_client.h"
#include "tests/control-plane/queue/waiting_dequeues.h"

namespace pi::controlplane::queue::http_test {

namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using nlohmann::json;

namespace {

constexpr auto kGithubToken = "gh-token";
constexpr auto kGlobalToken = "global-token";

QueuesConfig PullConfig() {
  QueuesConfig config;
  config.pull_prefix = "/api";
  config.auth_tokens = {kGlobalToken};
  RouteConfig github;
  github.name = "github";
  github.ingress_path = "/webhooks/github";
  github.pull_path = "/pull/github";
  github.auth_tokens = {kGithubToken};
  config.routes.push_back(github);
  RouteConfig jobs;
  jobs.name = "jobs";
  jobs.ingress_path = "/in/jobs";
  jobs.pull_path = "/pull/jobs";
  config.routes.push_back(jobs);
  return config;
}

using Snapshot = std::tuple<int64_t, int64_t, int64_t, int64_t>;  // queued, delayed, leased, dead

// A real engine on a real SQLite file, with the ingress and the Pull API listening.
struct PullFixture {
  PullFixture() {
    auto opened = OpenTestEngine(dir.path().string(), config, store);
    REQUIRE(opened.ok());
    engine = *std::move(opened);
    ingress = std::make_unique<HttpIngress>(*engine, routes, 1024 * 1024);
    pull = std::make_unique<HttpPullApi>(*engine, routes, config.pull_prefix);
    auto ingress_bound = ingress->Start("127.0.0.1:0");
    REQUIRE(ingress_bound.ok());
    ingress_port = *ingress_bound;
    auto pull_bound = pull->Start("127.0.0.1:0");
    REQUIRE(pull_bound.ok());
    pull_port = *pull_bound;
  }
  ~PullFixture() {
    pull->Stop();
    ingress->Stop();
  }

  std::string Enqueue(const std::string& ingress_path, const std::string& payload) {
    http::request<http::string_body> request(http::verb::post, ingress_path, 11);
    request.set("X-Event", "push");
    request.set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    request.body() = payload;
    const auto response = HttpCall(ingress_port, std::move(request));
    REQUIRE(response.result_int() == 202);
    return json::parse(response.body()).at("id").get<std::string>();
  }

  // POST {prefix}{endpoint}/{operation} with `body` and, unless empty, a bearer token.
  http::response<http::string_body> Call(const std::string& endpoint, const std::string& operation,
                                         const std::string& body,
                                         const std::string& token = kGithubToken,
                                         http::verb method = http::verb::post) {
    http::request<http::string_body> request(method, "/api" + endpoint + "/" + operation, 11);
    if (!token.empty()) request.set(http::field::authorization, "Bearer " + token);
    request.set(http::field::content_type, "application/json");
    request.body() = body;
    return HttpCall(pull_port, std::move(request));
  }

  // Leases up to `batch` github items at once and returns their lease ids.
  std::vector<std::string> Lease(int batch, const std::string& lease_ttl = "30s") {
    const auto response =
        Call("/pull/github", "dequeue", json{{"batch", batch}, {"lease_ttl", lease_ttl}}.dump());
    REQUIRE(response.result_int() == 200);
    const json body = json::parse(response.body());
    std::vector<std::string> lease_ids;
    for (const auto& item : body.at("items")) {
      lease_ids.push_back(item.at("lease_id").get<std::string>());
    }
    return lease_ids;
  }

  Snapshot Stats(const std::string& route) {
    auto stats = engine->Stats(route);
    REQUIRE(stats.ok());
    return {stats->queued, stats->delayed, stats->leased, stats->dead};
  }

  pi::testing::TempDir dir;
  QueuesConfig config = PullConfig();
  RouteTable routes{config};
  std::unique_ptr<SqliteQueueStore> store;
  std::unique_ptr<QueueEngine> engine;
  std::unique_ptr<HttpIngress> ingress;
  std::unique_ptr<HttpPullApi> pull;
  uint16_t ingress_port = 0;
  uint16_t pull_port = 0;
};

json ErrorBody(const http::response<http::string_body>& response) {
  INFO(response.body());
  REQUIRE(response[http::field::content_type] == "application/json");
  const json body = json::parse(response.body());
  CHECK(body.size() == 2);
  CHECK_FALSE(body.at("detail").get<std::string>().empty());
  return body;
}

TEST_CASE("dequeue returns the items with every DequeueItem field", "[pull]") {
  PullFixture fixture;
  const std::string payload("\x00\xff{binary}", 10);
  const std::string id = fixture.Enqueue("/webhooks/github", payload);
  const auto response =
      fixture.Call("/pull/github", "dequeue", R"({"batch":5,"lease_ttl":"45s","max_wait":"0s"})");
  REQUIRE(response.result_int() == 200);
  const json body = json::parse(response.body());
  REQUIRE(body.at("items").size() == 1);
  const json& item = body["items"][0];
  CHECK(item.at("id") == id);
  CHECK_FALSE(item.at("lease_id").get<std::string>().empty());
  CHECK(item.at("attempt") == 1);
  CHECK(item.at("route") == "github");
  std::string decoded;
  REQUIRE(absl::Base64Unescape(item.at("payload_b64").get<std::string>(), &decoded));
  CHECK(decoded == payload);
  CHECK(item.at("headers").at("x-event") == "push");
  CHECK(item.at("trace").at("traceparent") ==
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  const std::regex rfc3339(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3,9})?Z)");
  CHECK(std::regex_match(item.at("received_at").get<std::string>(), rfc3339));
  CHECK(std::regex_match(item.at("next_run_at").get<std::string>(), rfc3339));
  CHECK(item.at("next_run_at").get<std::string>() > item.at("received_at").get<std::string>());
  CHECK(item.size() == 9);
  CHECK(fixture.Stats("github") == Snapshot{0, 0, 1, 0});

  const auto empty = fixture.Call("/pull/github", "dequeue", R"({})");
  CHECK(empty.result_int() == 200);
  CHECK(json::parse(empty.body()) == json{{"items", json::array()}});
}

TEST_CASE("a long-poll dequeue is woken by an ingress POST without blocking other calls",
          "[pull]") {
  PullFixture fixture;
  const auto started = std::chrono::steady_clock::now();
  auto waiting = std::async(std::launch::async, [&fixture] {
    return fixture.Call("/pull/github", "dequeue", R"({"max_wait":"20s"})");
  });
  CHECK(waiting.wait_for(std::chrono::milliseconds(300)) == std::future_status::timeout);
  // The Pull API still answers other requests while the poll waits.
  CHECK(fixture.Call("/pull/jobs", "dequeue", "{}", kGlobalToken).result_int() == 200);
  const std::string id = fixture.Enqueue("/webhooks/github", "wake up");
  REQUIRE(waiting.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
  const auto response = waiting.get();
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(10));
  REQUIRE(response.result_int() == 200);
  const json items = json::parse(response.body()).at("items");
  REQUIRE(items.size() == 1);
  CHECK(items[0].at("id") == id);
}

TEST_CASE("a long poll with nothing to lease answers an empty list after max_wait", "[pull]") {
  PullFixture fixture;
  const auto started = std::chrono::steady_clock::now();
  const auto response = fixture.Call("/pull/github", "dequeue", R"({"max_wait":"300ms"})");
  CHECK(std::chrono::steady_clock::now() - started >= std::chrono::milliseconds(300));
  CHECK(response.result_int() == 200);
  CHECK(json::parse(response.body()).at("items").empty());
}

TEST_CASE("a long poll whose client went away leases nothing", "[pull]") {
  PullFixture fixture;
  {
    boost::asio::io_context io;
    beast::tcp_stream stream(io);
    stream.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), fixture.pull_port));
    http::request<http::string_body> request(http::verb::post, "/api/pull/github/dequeue", 11);
    request.set(http::field::host, "x");
    request.set(http::field::authorization, std::string("Bearer ") + kGithubToken);
    request.body() = R"({"max_wait":"20s"})";
    request.prepare_payload();
    http::write(stream, request);
    REQUIRE(AwaitWaitingDequeues(*fixture.engine, "github", 1));
  }
  // Hung up: the server notices and drops the poll.
  REQUIRE(AwaitWaitingDequeues(*fixture.engine, "github", 0));
  fixture.Enqueue("/webhooks/github", "for a live worker");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(fixture.Stats("github") == Snapshot{1, 0, 0, 0});
  CHECK(fixture.Lease(1).size() == 1);
}

TEST_CASE("single ack answers 204, again 204 as an idempotent retry, 409 for a bad lease",
          "[pull]") {
  PullFixture fixture;
  fixture.Enqueue("/webhooks/github", "a");
  const auto leases = fixture.Lease(1);
  REQUIRE(leases.size() == 1);
  const std::string ack = json{{"lease_id", leases[0]}}.dump();
  const auto first = fixture.Call("/pull/github", "ack", ack);
  CHECK(first.result_int() == 204);
  CHECK(first.body().empty());
  CHECK(fixture.Stats("github") == Snapshot{0, 0, 0, 0});
  CHECK(fixture.Call("/pull/github", "ack", ack).result_int() == 204);

  const auto unknown = fixture.Call("/pull/github", "ack", R"({"lease_id":"no-such-lease"})");
  CHECK(unknown.result_int() == 409);
  CHECK(ErrorBody(unknown) ==
        json{{"code", "lease_conflict"}, {"detail", "lease is invalid or expired"}});
}

TEST_CASE("batch ack answers 200 with the count, or 409 with the conflicts", "[pull]") {
  PullFixture fixture;
  for (int i = 0; i < 3; ++i) fixture.Enqueue("/webhooks/github", std::to_string(i));
  const auto leases = fixture.Lease(3);
  REQUIRE(leases.size() == 3);

  const auto clean =
      fixture.Call("/pull/github", "ack", json{{"lease_ids", {leases[0], leases[0]}}}.dump());
  CHECK(clean.result_int() == 200);
  CHECK(json::parse(clean.body()) == json{{"acked", 1}, {"conflicts", json::array()}});

  const auto mixed = fixture.Call("/pull/github", "ack",
                                  json{{"lease_ids", {leases[1], "bogus", leases[2]}}}.dump());
  CHECK(mixed.result_int() == 409);
  CHECK(json::parse(mixed.body()) ==
        json{{"acked", 2}, {"conflicts", {{{"lease_id", "bogus"}, {"expired", false}}}}});
  CHECK(fixture.Stats("github") == Snapshot{0, 0, 0, 0});
}

TEST_CASE("an expired lease is a conflict marked expired", "[pull]") {
  PullFixture fixture;
  fixture.Enqueue("/webhooks/github", "slow");
  const auto leases = fixture.Lease(1, "100ms");
  REQUIRE(leases.size() == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  const auto batch = fixture.Call("/pull/github", "nack", json{{"lease_ids", {leases[0]}}}.dump());
  CHECK(batch.result_int() == 409);
  CHECK(json::parse(batch.body()) ==
        json{{"succeeded", 0}, {"conflicts", {{{"lease_id", leases[0]}, {"expired", true}}}}});
  CHECK(fixture.Call("/pull/github", "ack", json{{"lease_id", leases[0]}}.dump()).result_int() ==
        409);
  CHECK(fixture.Stats("github") == Snapshot{1, 0, 0, 0});
}

TEST_CASE("nack requeues with a delay, or dead-letters with the reason", "[pull]") {
  PullFixture fixture;
  fixture.Enqueue("/webhooks/github", "retry me");
  fixture.Enqueue("/webhooks/github", "poison");
  const auto leases = fixture.Lease(2);
  REQUIRE(leases.size() == 2);
  const auto delayed =
      fixture.Call("/pull/github", "nack", json{{"lease_id", leases[0]}, {"delay", "1h"}}.dump());
  CHECK(delayed.result_int() == 204);
  const auto dead = fixture.Call(
      "/pull/github", "nack",
      json{{"lease_ids", {leases[1]}}, {"dead", true}, {"reason", "cannot parse"}}.dump());
  CHECK(dead.result_int() == 200);
  CHECK(json::parse(dead.body()) == json{{"succeeded", 1}, {"conflicts", json::array()}});
  CHECK(fixture.Stats("github") == Snapshot{1, 1, 0, 1});
  auto letters = fixture.engine->ListDeadLetters("github", 10);
  REQUIRE(letters.ok());
  REQUIRE(letters->size() == 1);
  CHECK(letters->at(0).dead_reason == "cannot parse");
  CHECK(letters->at(0).payload == "poison");
  // Delayed: not leased now.
  CHECK(fixture.Lease(1).empty());
}

TEST_CASE("extend answers 204 for a live lease and 409 for an unknown one", "[pull]") {
  PullFixture fixture;
  fixture.Enqueue("/webhooks/github", "long job");
  const auto leases = fixture.Lease(1, "300ms");
  REQUIRE(leases.size() == 1);
  const auto extended = fixture.Call("/pull/github", "extend",
                                     json{{"lease_id", leases[0]}, {"extend_by", "30s"}}.dump());
  CHECK(extended.result_int() == 204);
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  // Still leased thanks to the extension.
  CHECK(fixture.Stats("github") == Snapshot{0, 0, 1, 0});
  CHECK(fixture.Call("/pull/github", "ack", json{{"lease_id", leases[0]}}.dump()).result_int() ==
        204);

  const auto unknown =
      fixture.Call("/pull/github", "extend", R"({"lease_id":"no-such-lease","extend_by":"30s"})");
  CHECK(unknown.result_int() == 409);
  CHECK(ErrorBody(unknown).at("code") == "lease_conflict");
  CHECK(fixture.Call("/pull/github", "extend", R"({"lease_id":"no-such-lease","extend_by":"0s"})")
            .result_int() == 204);
}

TEST_CASE("bad requests get their status and change nothing", "[pull]") {
  PullFixture fixture;
  fixture.Enqueue("/webhooks/github", "queued");
  fixture.Enqueue("/webhooks/github", "leased");
  fixture.Enqueue("/in/jobs", "job");
  const auto leases = fixture.Lease(1);
  REQUIRE(leases.size() == 1);
  const std::string lease = leases[0];
  const Snapshot github_before = fixture.Stats("github");
  const Snapshot jobs_before = fixture.Stats("jobs");
  REQUIRE(github_before == Snapshot{1, 0, 1, 0});

  json too_many = json::array();
  for (int i = 0; i < 101; ++i) too_many.push_back("lease-" + std::to_string(i));

  struct BadCase {
    std::string name;
    std::string endpoint;
    std::string operation;
    std::string body;
    std::string token;
    unsigned status;
    std::string code;
  };
  const std::vector<BadCase> cases = {
      {"malformed JSON", "/pull/github", "dequeue", "{", kGithubToken, 400, "invalid_argument"},
      {"empty body", "/pull/github", "dequeue", "", kGithubToken, 400, "invalid_argument"},
      {"not an object", "/pull/github", "ack", "[]", kGithubToken, 400, "invalid_argument"},
      {"unknown field", "/pull/github", "dequeue", R"({"batch":1,"bogus":true})", kGithubToken, 400,
       "invalid_argument"},
      {"endpoint is the path, not a field", "/pull/github", "dequeue",
       R"({"endpoint":"/pull/github"})", kGithubToken, 400, "invalid_argument"},
      {"batch of the wrong type", "/pull/github", "dequeue", R"({"batch":"2"})", kGithubToken, 400,
       "invalid_argument"},
      {"negative batch", "/pull/github", "dequeue", R"({"batch":-1})", kGithubToken, 400,
       "invalid_argument"},
      {"bad duration", "/pull/github", "dequeue", R"({"max_wait":"soon"})", kGithubToken, 400,
       "invalid_argument"},
      {"negative duration", "/pull/github", "dequeue", R"({"lease_ttl":"-1s"})", kGithubToken, 400,
       "invalid_argument"},
      {"duration as a number", "/pull/github", "dequeue", R"({"max_wait":5})", kGithubToken, 400,
       "invalid_argument"},
      {"lease_id of the wrong type", "/pull/github", "ack", R"({"lease_id":5})", kGithubToken, 400,
       "invalid_argument"},
      {"both lease_id and lease_ids", "/pull/github", "ack",
       json{{"lease_id", lease}, {"lease_ids", {lease}}}.dump(), kGithubToken, 400,
       "invalid_argument"},
      {"neither lease_id nor lease_ids", "/pull/github", "nack", R"({"dead":true})", kGithubToken,
       400, "invalid_argument"},
      {"empty lease_ids", "/pull/github", "ack", R"({"lease_ids":[]})", kGithubToken, 400,
       "invalid_argument"},
      {"batch over the cap", "/pull/github", "ack", json{{"lease_ids", too_many}}.dump(),
       kGithubToken, 400, "invalid_argument"},
      {"negative nack delay", "/pull/github", "nack",
       json{{"lease_id", lease}, {"delay", "-5s"}}.dump(), kGithubToken, 400, "invalid_argument"},
      {"nack field on ack", "/pull/github", "ack", json{{"lease_id", lease}, {"dead", true}}.dump(),
       kGithubToken, 400, "invalid_argument"},
      {"extend without lease_id", "/pull/github", "extend", R"({"extend_by":"1s"})", kGithubToken,
       400, "invalid_argument"},
      {"malformed beats a bad token", "/pull/github", "ack", "{", "wrong", 400, "invalid_argument"},
      {"missing token", "/pull/github", "ack", json{{"lease_id", lease}}.dump(), "", 401,
       "unauthenticated"},
      {"wrong token", "/pull/github", "ack", json{{"lease_id", lease}}.dump(), "wrong", 401,
       "unauthenticated"},
      {"the global token on a route with its own", "/pull/github", "ack",
       json{{"lease_id", lease}}.dump(), kGlobalToken, 401, "unauthenticated"},
      {"unknown endpoint without a token", "/pull/nope", "dequeue", "{}", "", 401,
       "unauthenticated"},
      {"unknown endpoint", "/pull/nope", "dequeue", "{}", kGlobalToken, 404, "not_found"},
      {"unknown operation", "/pull/github", "peek", "{}", kGithubToken, 404, "not_found"},
      {"foreign route's lease", "/pull/jobs", "ack", json{{"lease_id", lease}}.dump(), kGlobalToken,
       409, "lease_conflict"},
      {"foreign route's lease in a batch", "/pull/jobs", "nack",
       json{{"lease_ids", {lease}}, {"dead", true}}.dump(), kGlobalToken, 409, ""},
      {"foreign route's lease extended", "/pull/jobs", "extend",
       json{{"lease_id", lease}, {"extend_by", "1s"}}.dump(), kGlobalToken, 409, "lease_conflict"},
  };
  for (const BadCase& bad : cases) {
    INFO(bad.name);
    const auto response = fixture.Call(bad.endpoint, bad.operation, bad.body, bad.token);
    INFO(response.body());
    CHECK(response.result_int() == bad.status);
    if (!bad.code.empty()) CHECK(ErrorBody(response).at("code") == bad.code);
    if (bad.status == 401) CHECK(response[http::field::www_authenticate] == "Bearer");
  }

  const auto get = fixture.Call("/pull/github", "dequeue", "", kGithubToken, http::verb::get);
  CHECK(get.result_int() == 405);
  CHECK(get[http::field::allow] == "POST");
  CHECK(ErrorBody(get).at("code") == "method_not_allowed");
  const auto huge = fixture.Call("/pull/github", "ack",
                                 R"({"lease_id":")" + std::string(1024 * 1024, 'x') + R"("})");
  CHECK(huge.result_int() == 413);
  CHECK(ErrorBody(huge).at("code") == "payload_too_large");

  CHECK(fixture.Stats("github") == github_before);
  CHECK(fixture.Stats("jobs") == jobs_before);
  // The lease survived every bad request.
  CHECK(fixture.Call("/pull/github", "ack", json{{"lease_id", lease}}.dump()).result_int() == 204);
}

TEST_CASE("the Pull API serves HTTPS when configured with a certificate", "[pull][tls]") {
  pi::testing::TestPki pki;
  pki.Issue("pull", "controller", "--ip 127.0.0.1");
  PullFixture fixture;
  fixture.Enqueue("/webhooks/github", "over tls");
  PullTlsConfig tls;
  tls.cert_file = pki.File("pull.crt");
  tls.key_file = pki.File("pull.key");
  HttpPullApi secure(*fixture.engine, fixture.routes, "/api", tls);
  auto port = secure.Start("127.0.0.1:0");
  REQUIRE(port.ok());

  boost::asio::io_context io;
  boost::asio::ssl::context context(boost::asio::ssl::context::tls_client);
  context.load_verify_file(pki.File("ca.crt"));
  context.set_verify_mode(boost::asio::ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> stream(io, context);
  beast::get_lowest_layer(stream).connect(
      tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), *port));
  stream.handshake(boost::asio::ssl::stream_base::client);
  http::request<http::string_body> request(http::verb::post, "/api/pull/github/dequeue", 11);
  request.set(http::field::host, "127.0.0.1");
  request.set(http::field::authorization, std::string("Bearer ") + kGithubToken);
  request.body() = "{}";
  request.prepare_payload();
  http::write(stream, request);
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  http::read(stream, buffer, response);
  REQUIRE(response.result_int() == 200);
  const json items = json::parse(response.body()).at("items");
  REQUIRE(items.size() == 1);
  std::string payload;
  REQUIRE(absl::Base64Unescape(items[0].at("payload_b64").get<std::string>(), &payload));
  CHECK(payload == "over tls");
  secure.Stop();
}

}  // namespace
}  // namespace pi::controlplane::queue::http_test
