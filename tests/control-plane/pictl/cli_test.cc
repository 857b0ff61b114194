// pictl end to end against an in-process Admin server over real mTLS on 127.0.0.1: the table and
// JSON output, error statuses turned into messages and exit codes, and log streams (Ctrl-C).
#include "control-plane/pictl/cli.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <streambuf>
#include <string>
#include <thread>
#include <vector>

#include "common/grpc/proto_time.h"
#include "common/tls/credentials.h"
#include "picontroller/v1/admin.grpc.pb.h"
#include "tests/common/test_dir.h"
#include "tests/common/test_pki.h"
#include "tests/common/test_process.h"
#include "tests/control-plane/pictl/stream_writer.h"

namespace pi::controlplane::pictl {
namespace {

namespace pb = ::picontroller::v1;
using std::chrono_literals::operator""s;

// A cluster CA with the controller's and an admin's certificates.
struct Pki : pi::testing::TestPki {
  Pki() {
    Issue("controller", "controller", "--dns localhost --ip 127.0.0.1");
    Issue("admin", "admin:alice");
  }
};

// Answers with canned messages and records what it was asked.
class FakeAdmin : public pb::Admin::CallbackService {
 public:
  pb::ListNodesResponse nodes;
  grpc::Status get_node_status = grpc::Status::OK;
  std::vector<pb::LogEntry> log_entries;
  std::vector<pb::ClusterChange> changes;

  pb::CommandResponse command_response;
  pb::GPIOResponse gpio_response;

  pb::NodeCommandRequest last_command_request() const {
    std::lock_guard lock(mu_);
    return last_command_request_;
  }
  pb::NodeGPIORequest last_gpio_request() const {
    std::lock_guard lock(mu_);
    return last_gpio_request_;
  }
  pb::CreateJoinTokenRequest last_token_request() const {
    std::lock_guard lock(mu_);
    return last_token_request_;
  }
  pb::WatchClusterRequest last_watch_request() const {
    std::lock_guard lock(mu_);
    return last_watch_request_;
  }
  pb::ListNodesRequest last_list_request() const {
    std::lock_guard lock(mu_);
    return last_list_request_;
  }
  pb::NodeLogRequest last_log_request() const {
    std::lock_guard lock(mu_);
    return last_log_request_;
  }

  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* context,
                                      const pb::ListNodesRequest* request,
                                      pb::ListNodesResponse* response) override {
    {
      std::lock_guard lock(mu_);
      last_list_request_ = *request;
    }
    *response = nodes;
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* GetNode(grpc::CallbackServerContext* context, const pb::NodeRef*,
                                    pb::Node* response) override {
    if (get_node_status.ok()) *response = nodes.nodes(0);
    auto* reactor = context->DefaultReactor();
    reactor->Finish(get_node_status);
    return reactor;
  }

  grpc::ServerUnaryReactor* ExecuteNodeCommand(grpc::CallbackServerContext* context,
                                               const pb::NodeCommandRequest* request,
                                               pb::CommandResponse* response) override {
    {
      std::lock_guard lock(mu_);
      last_command_request_ = *request;
    }
    *response = command_response;
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* ControlNodeGPIO(grpc::CallbackServerContext* context,
                                            const pb::NodeGPIORequest* request,
                                            pb::GPIOResponse* response) override {
    {
      std::lock_guard lock(mu_);
      last_gpio_request_ = *request;
    }
    *response = gpio_response;
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* CreateJoinToken(grpc::CallbackServerContext* context,
                                            const pb::CreateJoinTokenRequest* request,
                                            pb::CreateJoinTokenResponse* response) override {
    {
      std::lock_guard lock(mu_);
      last_token_request_ = *request;
    }
    response->set_token("K10pin::t1.secret");
    response->mutable_info()->set_id("t1");
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerWriteReactor<pb::LogEntry>* StreamNodeLogs(
      grpc::CallbackServerContext*, const pb::NodeLogRequest* request) override {
    {
      std::lock_guard lock(mu_);
      last_log_request_ = *request;
    }
    return new StreamWriter<pb::LogEntry>(log_entries, request->filter().follow());
  }

  grpc::ServerWriteReactor<pb::ClusterChange>* WatchCluster(
      grpc::CallbackServerContext*, const pb::WatchClusterRequest* request) override {
    {
      std::lock_guard lock(mu_);
      last_watch_request_ = *request;
    }
    return new StreamWriter<pb::ClusterChange>(changes, /*follow=*/true);
  }

  // ---- queues: a fake dead letter queue the requeue and delete calls empty.
  pb::GetQueueStatsResponse queue_stats;
  grpc::Status queue_status = grpc::Status::OK;

  void AddDeadLetters(int count) {
    std::lock_guard lock(mu_);
    for (int i = 0; i < count; ++i) dead_ids_.push_back(fmt::format("m{}", dead_ids_.size()));
  }
  std::vector<std::string> dead_ids() const {
    std::lock_guard lock(mu_);
    return dead_ids_;
  }
  std::vector<pb::DeadLetterIds> requeue_requests() const {
    std::lock_guard lock(mu_);
    return requeue_requests_;
  }
  pb::PublishRequest last_publish_request() const {
    std::lock_guard lock(mu_);
    return last_publish_request_;
  }
  pb::GetQueueStatsRequest last_stats_request() const {
    std::lock_guard lock(mu_);
    return last_stats_request_;
  }
  pb::ListDeadLettersRequest last_dead_list_request() const {
    std::lock_guard lock(mu_);
    return last_dead_list_request_;
  }

  grpc::ServerUnaryReactor* GetQueueStats(grpc::CallbackServerContext* context,
                                          const pb::GetQueueStatsRequest* request,
                                          pb::GetQueueStatsResponse* response) override {
    {
      std::lock_guard lock(mu_);
      last_stats_request_ = *request;
    }
    *response = queue_stats;
    return Answer(context);
  }

  grpc::ServerUnaryReactor* ListDeadLetters(grpc::CallbackServerContext* context,
                                            const pb::ListDeadLettersRequest* request,
                                            pb::ListDeadLettersResponse* response) override {
    std::lock_guard lock(mu_);
    last_dead_list_request_ = *request;
    for (const std::string& id : dead_ids_) {
      if (response->items_size() >= request->limit()) break;
      pb::DeadLetter* item = response->add_items();
      item->set_id(id);
      item->set_attempt(5);
      item->set_reason("max_attempts");
    }
    return Answer(context);
  }

  grpc::ServerUnaryReactor* RequeueDeadLetters(grpc::CallbackServerContext* context,
                                               const pb::DeadLetterIds* request,
                                               pb::DeadLetterCount* response) override {
    {
      std::lock_guard lock(mu_);
      requeue_requests_.push_back(*request);
    }
    response->set_count(Remove(*request));
    return Answer(context);
  }

  grpc::ServerUnaryReactor* DeleteDeadLetters(grpc::CallbackServerContext* context,
                                              const pb::DeadLetterIds* request,
                                              pb::DeadLetterCount* response) override {
    response->set_count(Remove(*request));
    return Answer(context);
  }

  grpc::ServerUnaryReactor* Publish(grpc::CallbackServerContext* context,
                                    const pb::PublishRequest* request,
                                    pb::PublishResponse* response) override {
    {
      std::lock_guard lock(mu_);
      last_publish_request_ = *request;
    }
    response->set_id("01JPUBLISHED");
    return Answer(context);
  }

 private:
  grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* context) {
    auto* reactor = context->DefaultReactor();
    reactor->Finish(queue_status);
    return reactor;
  }

  int64_t Remove(const pb::DeadLetterIds& request) {
    std::lock_guard lock(mu_);
    if (!queue_status.ok()) return 0;
    int64_t removed = 0;
    for (const std::string& id : request.ids()) {
      auto found = std::find(dead_ids_.begin(), dead_ids_.end(), id);
      if (found == dead_ids_.end()) continue;
      dead_ids_.erase(found);
      ++removed;
    }
    return removed;
  }

  mutable std::mutex mu_;
  std::vector<std::string> dead_ids_;
  std::vector<pb::DeadLetterIds> requeue_requests_;
  pb::PublishRequest last_publish_request_;
  pb::GetQueueStatsRequest last_stats_request_;
  pb::ListDeadLettersRequest last_dead_list_request_;
  pb::ListNodesRequest last_list_request_;
  pb::WatchClusterRequest last_watch_request_;
  pb::NodeCommandRequest last_command_request_;
  pb::NodeGPIORequest last_gpio_request_;
  pb::CreateJoinTokenRequest last_token_request_;
  pb::NodeLogRequest last_log_request_;
};

class AdminServer {
 public:
  AdminServer(const Pki& pki, FakeAdmin* service) {
    auto credentials =
        common::MakeServerCredentials({pki.File("controller.crt"), pki.File("controller.key"),
                                       pki.File("ca.crt"), common::ClientAuth::kRequireAndVerify});
    REQUIRE(credentials.ok());
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", *credentials, &port_);
    builder.RegisterService(service);
    server_ = builder.BuildAndStart();
    REQUIRE(server_ != nullptr);
    REQUIRE(port_ > 0);
  }
  ~AdminServer() { server_->Shutdown(std::chrono::system_clock::now() + 5s); }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

// An unbuffered stream buffer another thread may read while pictl writes.
class SharedBuffer : public std::streambuf {
 public:
  std::string contents() const {
    std::lock_guard lock(mu_);
    return data_;
  }

 protected:
  int_type overflow(int_type c) override {
    std::lock_guard lock(mu_);
    if (c != traits_type::eof()) data_.push_back(static_cast<char>(c));
    return c;
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    std::lock_guard lock(mu_);
    data_.append(s, static_cast<size_t>(n));
    return n;
  }

 private:
  mutable std::mutex mu_;
  std::string data_;
};

struct Result {
  int code;
  std::string out;
  std::string err;
};

struct Fixture {
  Pki pki;
  FakeAdmin admin;
  AdminServer server{pki, &admin};
  common::ManualClock clock;
  common::CancelToken interrupt;
  std::string config;

  Fixture() {
    // Relative paths: the config resolves them against its own directory.
    config = pki.dir().Write("config.json", nlohmann::json{{"controller", server.address()},
                                                           {"ca_file", "ca.crt"},
                                                           {"cert_file", "admin.crt"},
                                                           {"key_file", "admin.key"}}
                                                .dump());
  }

  RunContext Context() { return RunContext{Environment{}, "9.9.9", &clock, &interrupt}; }

  Result Run(std::vector<std::string> args, std::ostream* out_stream = nullptr) {
    args.insert(args.begin(), {"pictl", "--config", config});
    std::vector<const char*> argv;
    for (const auto& arg : args) argv.push_back(arg.c_str());
    std::ostringstream out;
    std::ostringstream err;
    const int code = RunPictl(static_cast<int>(argv.size()), argv.data(), Context(),
                              out_stream != nullptr ? *out_stream : out, err);
    return {code, out.str(), err.str()};
  }

  pb::Node AddNode(const std::string& id, pb::NodeState state) {
    pb::Node* node = admin.nodes.add_nodes();
    node->set_id(id);
    node->set_hostname(id);
    node->set_state(state);
    node->set_agent_address("10.0.0.7:9091");
    (*node->mutable_labels())["role"] = "worker";
    *node->mutable_last_heartbeat() = common::ToProtoTimestamp(clock.WallNow() - 3s);
    return *node;
  }
};

pb::LogEntry Entry(const std::string& message) {
  pb::LogEntry entry;
  entry.set_hostname("pi-1");
  entry.set_identifier("sshd");
  entry.set_pid(42);
  entry.set_message(message);
  return entry;
}

}  // namespace

TEST_CASE("nodes list prints a table over mTLS and sends the selector and states") {
  Fixture fixture;
  fixture.AddNode("pi-1", pb::NODE_STATE_READY);
  const Result result =
      fixture.Run({"nodes", "list", "--selector", "role=worker", "--state", "READY,down"});
  INFO(result.err);
  REQUIRE(result.code == 0);
  CHECK(result.out ==
        "ID    HOSTNAME  STATE  ADDRESS        LAST-HEARTBEAT  LABELS\n"
        "pi-1  pi-1      READY  10.0.0.7:9091  3s ago          role=worker\n");
  const auto request = fixture.admin.last_list_request();
  CHECK(request.label_selector() == "role=worker");
  REQUIRE(request.states_size() == 2);
  CHECK(request.states(0) == pb::NODE_STATE_READY);
  CHECK(request.states(1) == pb::NODE_STATE_DOWN);
}

TEST_CASE("--json prints the response message as one JSON object") {
  Fixture fixture;
  fixture.AddNode("pi-1", pb::NODE_STATE_READY);
  fixture.admin.nodes.set_revision(7);
  const Result result = fixture.Run({"nodes", "list", "--json"});
  INFO(result.err);
  REQUIRE(result.code == 0);
  REQUIRE(result.out.back() == '\n');
  const auto json = nlohmann::json::parse(result.out);
  CHECK(json["revision"] == "7");
  CHECK(json["nodes"][0]["id"] == "pi-1");
  CHECK(json["nodes"][0]["state"] == "NODE_STATE_READY");
  CHECK(json["nodes"][0]["agent_address"] == "10.0.0.7:9091");
}

TEST_CASE("a NOT_FOUND answer becomes the server's message and exit code 1") {
  Fixture fixture;
  fixture.admin.get_node_status = grpc::Status(grpc::StatusCode::NOT_FOUND, "node pi-9 not found");
  const Result result = fixture.Run({"nodes", "show", "pi-9"});
  CHECK(result.code == 1);
  CHECK(result.out.empty());
  CHECK(result.err == "pictl: node pi-9 not found\n");
}

TEST_CASE("a PERMISSION_DENIED answer says an admin certificate is needed, exit code 3") {
  Fixture fixture;
  fixture.admin.get_node_status =
      grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "node:pi-1 may not call Admin");
  const Result result = fixture.Run({"nodes", "show", "pi-1"});
  CHECK(result.code == 3);
  CHECK_THAT(result.err,
             Catch::StartsWith("pictl: permission denied: node:pi-1 may not call Admin"));
  CHECK_THAT(result.err, Catch::Contains("needs an admin certificate"));
}

TEST_CASE("nodes show prints the node's details") {
  Fixture fixture;
  fixture.AddNode("pi-1", pb::NODE_STATE_READY);
  const Result result = fixture.Run({"nodes", "show", "pi-1"});
  INFO(result.err);
  REQUIRE(result.code == 0);
  CHECK_THAT(result.out, Catch::Contains("ID:                   pi-1\n"));
  CHECK_THAT(result.out, Catch::Contains("(3s ago)"));
}

TEST_CASE("a controller that is not listening is unreachable, exit code 3") {
  Fixture fixture;
  const Result result = fixture.Run({"--controller", "127.0.0.1:1", "nodes", "list"});
  CHECK(result.code == 3);
  CHECK_THAT(result.err, Catch::StartsWith("pictl: cannot reach the controller at 127.0.0.1:1: "));
  CHECK_THAT(result.err, Catch::Contains("is pi-controller running and is --controller right?"));
}

TEST_CASE("a CA that did not sign the controller's certificate fails the handshake, exit code 3") {
  Fixture fixture;
  Pki other;
  const Result result =
      fixture.Run({"--ca", other.File("ca.crt"), "--cert", other.File("admin.crt"), "--key",
                   other.File("admin.key"), "nodes", "list"});
  CHECK(result.code == 3);
  CHECK_THAT(result.err, Catch::StartsWith("pictl: TLS handshake with the controller at"));
  CHECK_THAT(result.err, Catch::Contains("--ca is the cluster's ca.crt"));
}

TEST_CASE("an admin certificate from another CA is refused by the controller, exit code 3") {
  Fixture fixture;
  Pki other;
  const Result result = fixture.Run(
      {"--cert", other.File("admin.crt"), "--key", other.File("admin.key"), "nodes", "list"});
  CHECK(result.code == 3);
  CHECK_THAT(result.err, Catch::Contains("closed the connection"));
  CHECK_THAT(result.err, Catch::Contains("needs an admin certificate"));
}

TEST_CASE("logs prints each entry and sends the filter") {
  Fixture fixture;
  fixture.admin.log_entries = {Entry("one"), Entry("two")};
  const Result result = fixture.Run(
      {"logs", "pi-1", "--grep", "o", "--since", "10m", "--priority", "err", "-n", "5"});
  INFO(result.err);
  REQUIRE(result.code == 0);
  CHECK(result.out == "- pi-1 sshd[42]: one\n- pi-1 sshd[42]: two\n");
  const auto request = fixture.admin.last_log_request();
  CHECK(request.node().id() == "pi-1");
  CHECK(request.filter().contains() == "o");
  CHECK(request.filter().max_priority() == 3);
  CHECK(request.filter().limit() == 5);
  CHECK_FALSE(request.filter().follow());
  CHECK(*common::FromProtoTimestamp(request.filter().since(), "since") ==
        fixture.clock.WallNow() - std::chrono::minutes(10));
}

TEST_CASE("logs --json prints one JSON object per line") {
  Fixture fixture;
  fixture.admin.log_entries = {Entry("one"), Entry("two")};
  const Result result = fixture.Run({"--json", "logs", "pi-1"});
  REQUIRE(result.code == 0);
  std::istringstream lines(result.out);
  std::string line;
  std::vector<std::string> messages;
  while (std::getline(lines, line)) messages.push_back(nlohmann::json::parse(line)["message"]);
  CHECK(messages == std::vector<std::string>{"one", "two"});
}

TEST_CASE("logs -f streams until Ctrl-C, then ends cleanly with exit code 0") {
  Fixture fixture;
  fixture.admin.log_entries = {Entry("one"), Entry("two")};
  SharedBuffer buffer;
  std::ostream out(&buffer);
  Result result{-1, "", ""};
  std::thread pictl([&] { result = fixture.Run({"logs", "pi-1", "-f"}, &out); });
  const bool streamed = pi::testing::WaitUntil(
      [&] { return buffer.contents() == "- pi-1 sshd[42]: one\n- pi-1 sshd[42]: two\n"; },
      std::chrono::seconds(20));
  fixture.interrupt.Cancel();
  pictl.join();
  CHECK(streamed);
  CHECK(fixture.admin.last_log_request().filter().follow());
  CHECK(result.code == 0);
  CHECK(result.err.empty());
}

TEST_CASE("watch --json prints each change as a JSON line until Ctrl-C") {
  Fixture fixture;
  pb::ClusterChange change;
  change.set_revision(8);
  change.mutable_node()->set_id("pi-1");
  fixture.admin.changes = {change};
  change.set_revision(9);
  change.mutable_node()->set_id("pi-2");
  fixture.admin.changes.push_back(change);
  SharedBuffer buffer;
  std::ostream out(&buffer);
  Result result{-1, "", ""};
  std::thread pictl([&] { result = fixture.Run({"watch", "--since", "7", "--json"}, &out); });
  const bool streamed = pi::testing::WaitUntil(
      [&] {
        return buffer.contents() ==
               "{\"revision\":\"8\",\"node\":{\"id\":\"pi-1\"}}\n"
               "{\"revision\":\"9\",\"node\":{\"id\":\"pi-2\"}}\n";
      },
      std::chrono::seconds(20));
  fixture.interrupt.Cancel();
  pictl.join();
  CHECK(streamed);
  CHECK(fixture.admin.last_watch_request().since_revision() == 7);
  CHECK(result.code == 0);
  CHECK(result.err.empty());
}

TEST_CASE("exec passes argv after -- untouched, prints the output and exits with its code") {
  Fixture fixture;
  fixture.admin.command_response.set_exit_code(3);
  fixture.admin.command_response.set_stdout("listing\n");
  fixture.admin.command_response.set_stderr("warning\n");
  fixture.admin.command_response.set_stderr_truncated(true);
  const Result result = fixture.Run(
      {"exec", "pi-1", "--timeout", "5s", "--env", "LANG=C", "--", "/bin/ls", "-l", "--json"});
  CHECK(result.code == 3);
  CHECK(result.out == "listing\n");
  CHECK(result.err == "warning\npictl: stderr was truncated by the agent\n");
  const auto request = fixture.admin.last_command_request();
  CHECK(request.node().id() == "pi-1");
  CHECK(
      std::vector<std::string>(request.request().argv().begin(), request.request().argv().end()) ==
      std::vector<std::string>{"/bin/ls", "-l", "--json"});
  CHECK(request.request().timeout().seconds() == 5);
  CHECK(request.request().env().at("LANG") == "C");
}

TEST_CASE("exec of a command killed by a signal exits with 128+signal") {
  Fixture fixture;
  fixture.admin.command_response.set_exit_code(-1);
  fixture.admin.command_response.set_signal(9);
  const Result result = fixture.Run({"exec", "pi-1", "--", "/bin/sleep", "100"});
  CHECK(result.code == 137);
  CHECK(result.err == "pictl: the command was killed by signal 9\n");
}

TEST_CASE("gpio takes the node, the chip and the action's arguments") {
  Fixture fixture;
  fixture.admin.gpio_response.set_chip_name("gpiochip0");
  fixture.admin.gpio_response.set_offset(17);
  fixture.admin.gpio_response.set_value(1);
  const Result result =
      fixture.Run({"gpio", "pi-1", "--chip", "gpiochip0", "write", "17", "1", "--hold", "30s"});
  INFO(result.err);
  REQUIRE(result.code == 0);
  CHECK(result.out == "line 17 on gpiochip0: value 1, not held\n");
  const auto request = fixture.admin.last_gpio_request();
  CHECK(request.node().id() == "pi-1");
  CHECK(request.request().chip() == "gpiochip0");
  CHECK(request.request().action() == pb::GPIO_ACTION_WRITE);
  CHECK(request.request().offset() == 17);
  CHECK(request.request().value() == 1);
  CHECK(request.request().hold().seconds() == 30);
}

TEST_CASE("tokens create prints the token once with the join command for this controller") {
  Fixture fixture;
  const Result result =
      fixture.Run({"tokens", "create", "--ttl", "2h", "--max-uses", "3", "--description", "rack"});
  INFO(result.err);
  REQUIRE(result.code == 0);
  CHECK_THAT(result.out, Catch::Contains("pi-agent --join " + fixture.server.address() +
                                         " --token K10pin::t1.secret\n"));
  const auto request = fixture.admin.last_token_request();
  CHECK(request.ttl().seconds() == 7200);
  CHECK(request.max_uses() == 3);
  CHECK(request.description() == "rack");
}

TEST_CASE("a missing config file names the file and how to create one, exit code 2") {
  Fixture fixture;
  const std::string missing = (fixture.pki.dir().path() / "nope.json").string();
  std::vector<const char*> argv = {"pictl", "--config", missing.c_str(), "nodes", "list"};
  std::ostringstream out;
  std::ostringstream err;
  CHECK(RunPictl(static_cast<int>(argv.size()), argv.data(), fixture.Context(), out, err) == 2);
  CHECK_THAT(err.str(), Catch::Contains(missing));
  CHECK_THAT(err.str(), Catch::Contains("pi-controller issue-admin NAME --out ~/.config/pictl"));
}

TEST_CASE("an unreadable certificate names the file and the config, exit code 2") {
  Fixture fixture;
  const Result result = fixture.Run({"--cert", "/nonexistent/admin.crt", "nodes", "list"});
  CHECK(result.code == 2);
  CHECK_THAT(result.err, Catch::Contains("/nonexistent/admin.crt"));
  CHECK_THAT(result.err, Catch::Contains(fixture.config));
}

TEST_CASE("usage errors exit with code 2 before connecting") {
  Fixture fixture;
  for (const std::vector<std::string>& args : {std::vector<std::string>{"nodes"},
                                               {"nodes", "frobnicate"},
                                               {"nodes", "show"},
                                               {"nodes", "list", "--state", "SLEEPY"},
                                               {"--timeout", "soon", "nodes", "list"},
                                               {"exec", "pi-1", "--", "ls"},
                                               {"gpio", "pi-1", "write", "17", "2"},
                                               {"nodes", "label", "pi-1", "novalue"}}) {
    const Result result = fixture.Run(args);
    INFO(fmt::format("{}", fmt::join(args, " ")));
    CHECK(result.code == 2);
    CHECK_FALSE(result.err.empty());
  }
}

// ---- queues

TEST_CASE("queue stats prints a table of every route by default") {
  Fixture fixture;
  pb::QueueStats* route = fixture.admin.queue_stats.add_routes();
  route->set_route("github");
  route->set_queued(3);
  *route->mutable_oldest_queued_age() = common::ToProtoDuration(std::chrono::seconds(42));
  const Result result = fixture.Run({"queue", "stats"});
  INFO(result.err);
  REQUIRE(result.code == 0);
  CHECK(fixture.admin.last_stats_request().route().empty());
  CHECK_THAT(result.out, Catch::StartsWith("ROUTE   QUEUED  DELAYED"));
  CHECK_THAT(result.out, Catch::Contains("github  3       0        0       0     42s"));
}

TEST_CASE("queue stats ROUTE --json asks for that route and prints JSON") {
  Fixture fixture;
  fixture.admin.queue_stats.add_routes()->set_route("github");
  const Result result = fixture.Run({"queue", "stats", "github", "--json"});
  INFO(result.err);
  REQUIRE(result.code == 0);
  CHECK(fixture.admin.last_stats_request().route() == "github");
  const auto json = nlohmann::json::parse(result.out);
  CHECK(json["routes"][0]["route"] == "github");
  // Zero counts are printed, not left out.
  CHECK(json["routes"][0]["queued"] == "0");
  CHECK(json["routes"][0]["acked"] == "0");
  CHECK_FALSE(json["routes"][0].contains("oldest_queued_age"));
}

TEST_CASE("queue dead list sends the limit and prints the dead letters") {
  Fixture fixture;
  fixture.admin.AddDeadLetters(3);
  const Result result = fixture.Run({"queue", "dead", "list", "github", "--limit", "2"});
  INFO(result.err);
  REQUIRE(result.code == 0);
  const auto request = fixture.admin.last_dead_list_request();
  CHECK(request.route() == "github");
  CHECK(request.limit() == 2);
  CHECK_THAT(result.out, Catch::StartsWith("ID  RECEIVED  DIED   ATTEMPTS  REASON"));
  CHECK_THAT(result.out, Catch::Contains("m1  never     never  5         max_attempts"));
  CHECK_THAT(result.out, !Catch::Contains("m2"));
}

TEST_CASE("queue dead list asks for 100 by default") {
  Fixture fixture;
  const Result result = fixture.Run({"queue", "dead", "list", "github"});
  INFO(result.err);
  REQUIRE(result.code == 0);
  CHECK(fixture.admin.last_dead_list_request().limit() == 100);
  CHECK(result.out == "No dead letters.\n");
}

TEST_CASE("queue dead requeue sends the ids and says how many were requeued") {
  Fixture fixture;
  fixture.admin.AddDeadLetters(2);
  const Result result = fixture.Run({"queue", "dead", "requeue", "github", "m0", "m9"});
  INFO(result.err);
  REQUIRE(result.code == 0);
  CHECK(result.out ==
        "requeued 1 of 2 dead letters of queue github (1 was not a dead letter of it)\n");
  CHECK(fixture.admin.dead_ids() == std::vector<std::string>{"m1"});
}

TEST_CASE("queue dead requeue --all requeues every dead letter a page at a time") {
  Fixture fixture;
  fixture.admin.AddDeadLetters(1500);
  const Result result = fixture.Run({"queue", "dead", "requeue", "github", "--all"});
  INFO(result.err);
  REQUIRE(result.code == 0);
  CHECK(result.out == "requeued 1500 of 1500 dead letters of queue github\n");
  CHECK(fixture.admin.dead_ids().empty());
  const auto requests = fixture.admin.requeue_requests();
  REQUIRE(requests.size() == 2);
  CHECK(requests[0].ids_size() == 1000);
  CHECK(requests[1].ids_size() == 500);
}

TEST_CASE("queue dead requeue --all on an empty dead letter queue requeues nothing") {
  Fixture fixture;
  const Result result = fixture.Run({"queue", "dead", "requeue", "github", "--all", "--json"});
  INFO(result.err);
  REQUIRE(result.code == 0);
  CHECK(fixture.admin.requeue_requests().empty());
  // A zero count is printed rather than left out as proto3 JSON would.
  CHECK(nlohmann::json::parse(result.out)["count"] == "0");
}

TEST_CASE("queue dead delete reports the controller's NOT_FOUND as is, exit code 1") {
  Fixture fixture;
  fixture.admin.queue_status = grpc::Status(grpc::StatusCode::NOT_FOUND,
                                            "no queue route \"nope\"; configured routes: github");
  const Result result = fixture.Run({"queue", "dead", "delete", "nope", "m0"});
  CHECK(result.code == 1);
  CHECK(result.out.empty());
  CHECK(result.err == "pictl: no queue route \"nope\"; configured routes: github\n");
}

TEST_CASE("queue publish sends the data and headers and prints the id") {
  Fixture fixture;
  const Result result = fixture.Run({"queue", "publish", "github", "--data", "{\"a\":1}",
                                     "--header", "Content-Type=application/json", "-H", "X-B=2"});
  INFO(result.err);
  REQUIRE(result.code == 0);
  CHECK(result.out == "published message 01JPUBLISHED to queue github\n");
  const auto request = fixture.admin.last_publish_request();
  CHECK(request.route() == "github");
  CHECK(request.payload() == "{\"a\":1}");
  CHECK(request.headers().at("Content-Type") == "application/json");
  CHECK(request.headers().at("X-B") == "2");
}

TEST_CASE("queue publish --file sends the file's bytes") {
  Fixture fixture;
  const std::string path = fixture.pki.dir().Write("payload.bin", std::string("a\0b", 3));
  const Result result = fixture.Run({"queue", "publish", "github", "--file", path, "--json"});
  INFO(result.err);
  REQUIRE(result.code == 0);
  CHECK(nlohmann::json::parse(result.out)["id"] == "01JPUBLISHED");
  CHECK(fixture.admin.last_publish_request().payload() == std::string("a\0b", 3));
}

TEST_CASE("queue publish to a full queue says to try later, exit code 1") {
  Fixture fixture;
  fixture.admin.queue_status =
      grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "queue github holds 10000 messages");
  const Result result = fixture.Run({"queue", "publish", "github", "--data", "x"});
  CHECK(result.code == 1);
  CHECK(result.err ==
        "pictl: the controller is at a limit: queue github holds 10000 messages; try again "
        "later\n");
}

TEST_CASE("queue usage errors exit with code 2 before calling the controller") {
  Fixture fixture;
  fixture.admin.AddDeadLetters(1);
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"queue"},
        {"queue", "dead"},
        {"queue", "dead", "list"},
        {"queue", "dead", "list", "github", "--limit", "0"},
        {"queue", "dead", "list", "github", "--limit", "1001"},
        {"queue", "dead", "requeue", "github"},
        {"queue", "dead", "requeue", "github", "m0", "--all"},
        {"queue", "dead", "delete", "github"},
        {"queue", "publish", "github"},
        {"queue", "publish", "github", "--data", "x", "--file", "/tmp/x"},
        {"queue", "publish", "github", "--data", "x", "--header", "novalue"},
        {"queue", "publish", "github", "--file", "/nonexistent/payload"}}) {
    const Result result = fixture.Run(args);
    INFO(fmt::format("{}", fmt::join(args, " ")));
    CHECK(result.code == 2);
    CHECK_FALSE(result.err.empty());
  }
  CHECK(fixture.admin.requeue_requests().empty());
  CHECK(fixture.admin.dead_ids().size() == 1);
  CHECK(fixture.admin.last_publish_request().route().empty());
}

TEST_CASE("help and version exit with code 0") {
  Fixture fixture;
  const Result help = fixture.Run({"--help"});
  CHECK(help.code == 0);
  CHECK_THAT(help.out, Catch::Contains("Exit codes: 0 ok; 1"));
  const Result version = fixture.Run({"version"});
  CHECK(version.code == 0);
  CHECK(version.out == "pictl 9.9.9\n");
}

}  // namespace pi::controlplane::pictl
