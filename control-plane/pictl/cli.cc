#include "control-plane/pictl/cli.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "common/tls/credentials.h"
#include "control-plane/pictl/errors.h"
#include "control-plane/pictl/format.h"
#include "control-plane/pictl/requests.h"
#include "picontroller/v1/admin.grpc.pb.h"
#include "picontroller/v1/control_plane.grpc.pb.h"

namespace pi::controlplane::pictl {
namespace {

// Without its own --timeout an exec runs for at most the agent's exec.max_timeout, 300 s unless
// configured otherwise; the call waits that long plus the usual --timeout.
constexpr std::chrono::seconds kAgentMaxExecTimeout{300};
// How often `provision` asks for the state of its releases while it waits.
constexpr std::chrono::seconds kProvisionPollInterval{1};

constexpr char kExitCodesHelp[] =
    "Exit codes: 0 ok; 1 the controller or the node reported a failure; 2 bad usage, config or "
    "credentials; 3 controller unreachable or pictl's certificate refused; 130 interrupted. "
    "`exec` exits with the remote command's code (128+signal when it was killed); `releases wait` "
    "and `provision` exit 1 unless every release SUCCEEDED.\n"
    "Config: --config, else $PICTL_CONFIG, else ~/.config/pictl/config.json: {\"controller\": "
    "\"HOST:PORT\", \"ca_file\": \"ca.crt\", \"cert_file\": \"admin.crt\", \"key_file\": "
    "\"admin.key\"} (paths relative to the file). Create it with `pi-controller issue-admin NAME "
    "--out ~/.config/pictl`.\n";

struct GlobalOptions {
  ConnectionFlags connection;
  bool json = false;
  std::string timeout = "10s";
};

// A provisioning of many nodes in plan mode carries every node's plan output (up to 256 KiB
// each), beyond gRPC's default 4 MiB for a received message.
grpc::ChannelArguments ChannelArguments() {
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(64 * 1024 * 1024);
  return arguments;
}

// One connected invocation: the stub, the deadline policy and the output conventions.
class Session {
 public:
  Session(const GlobalOptions& options, const PictlConfig& config, std::chrono::nanoseconds timeout,
          const RunContext& context, std::ostream& out, std::ostream& err,
          std::shared_ptr<grpc::ChannelCredentials> credentials)
      : options_(options),
        config_(config),
        timeout_(timeout),
        context_(context),
        out_(out),
        err_(err),
        channel_(grpc::CreateCustomChannel(config.controller, credentials, ChannelArguments())),
        stub_(pb::Admin::NewStub(channel_)),
        control_plane_(pb::ControlPlane::NewStub(channel_)) {}

  pb::Admin::Stub& stub() { return *stub_; }
  // RequestProvisioning lives on the ControlPlane service, which admins may call.
  pb::ControlPlane::Stub& control_plane() { return *control_plane_; }
  common::CancelToken& interrupt() { return *context_.interrupt; }
  bool json() const { return options_.json; }
  const std::string& controller() const { return config_.controller; }
  WallTime now() const { return context_.clock->WallNow(); }
  std::ostream& out() { return out_; }
  std::ostream& err() { return err_; }

  // Calls `rpc` with the --timeout deadline (plus `extra`) and prints the answer: as JSON with
  // --json, else with `print`.
  template <typename Response>
  int Unary(const std::function<grpc::Status(grpc::ClientContext*, Response*)>& rpc,
            const std::function<void(const Response&)>& print,
            std::chrono::nanoseconds extra = std::chrono::nanoseconds(0)) {
    Response response;
    const grpc::Status status = Call<Response>(rpc, &response, extra);
    if (!status.ok()) return Fail(status, /*stream=*/false);
    if (json()) {
      out_ << ToJsonLine(response, json_defaults_) << "\n";
    } else {
      print(response);
    }
    return kExitOk;
  }

  // --json prints zero and empty fields too (the queue commands: counts a script reads).
  void IncludeJsonDefaults() { json_defaults_ = true; }

  // One unary call with the --timeout deadline (plus `extra`), cancelled by Ctrl-C; prints nothing.
  template <typename Response>
  grpc::Status Call(const std::function<grpc::Status(grpc::ClientContext*, Response*)>& rpc,
                    Response* response,
                    std::chrono::nanoseconds extra = std::chrono::nanoseconds(0)) {
    grpc::ClientContext call;
    call.set_deadline(
        std::chrono::system_clock::now() +
        std::chrono::duration_cast<std::chrono::system_clock::duration>(timeout_ + extra));
    auto registration = context_.interrupt->OnCancel([&call] { call.TryCancel(); });
    return rpc(&call, response);
  }

  // Reports a failed unary call (see Call) and returns the exit code.
  int FailUnary(const grpc::Status& status) { return Fail(status, /*stream=*/false); }
  // Reports a failed stream: Ctrl-C is a clean end.
  int FailStream(const grpc::Status& status) { return Fail(status, /*stream=*/true); }

  // Reads a server stream until it ends, the call fails or Ctrl-C (a clean end). Streams have no
  // deadline: they last as long as the operator wants (logs -f, watch).
  template <typename Message>
  int Stream(
      const std::function<std::unique_ptr<grpc::ClientReader<Message>>(grpc::ClientContext*)>& open,
      const std::function<std::string(const Message&)>& format) {
    grpc::ClientContext call;
    grpc::Status status;
    {
      auto registration = context_.interrupt->OnCancel([&call] { call.TryCancel(); });
      auto reader = open(&call);
      Message message;
      while (reader->Read(&message)) {
        // Flushed per line so `pictl logs -f | grep` sees each line as it comes.
        out_ << (json() ? ToJsonLine(message) : format(message)) << std::endl;
      }
      status = reader->Finish();
    }
    if (!status.ok()) return Fail(status, /*stream=*/true);
    return kExitOk;
  }

 private:
  int Fail(const grpc::Status& status, bool stream) {
    if (context_.interrupt->cancelled()) {
      if (stream) return kExitOk;
      err_ << "pictl: interrupted\n";
      return kExitInterrupted;
    }
    const Failure failure = DescribeRpcFailure(status, config_.controller);
    err_ << "pictl: " << failure.message << "\n";
    return failure.exit_code;
  }

  const GlobalOptions& options_;
  PictlConfig config_;
  std::chrono::nanoseconds timeout_;
  const RunContext& context_;
  std::ostream& out_;
  std::ostream& err_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::Admin::Stub> stub_;
  std::unique_ptr<pb::ControlPlane::Stub> control_plane_;
  bool json_defaults_ = false;
};

using Action = std::function<int(Session&)>;

int LocalFailure(std::ostream& err, const absl::Status& status) {
  err << "pictl: " << DescribeLocalFailure(status).message << "\n";
  return kExitUsage;
}

// The node subcommands that take only a node and return it.
void AddNodeVerb(CLI::App& nodes, const std::string& name, const std::string& help,
                 const std::string& past_tense,
                 grpc::Status (pb::Admin::Stub::*rpc)(grpc::ClientContext*, const pb::NodeRef&,
                                                      pb::Node*),
                 std::string& node, Action& action) {
  auto* sub = nodes.add_subcommand(name, help);
  sub->add_option("NODE", node, "Node id")->required();
  sub->callback([&node, &action, rpc, past_tense] {
    action = [&node, rpc, past_tense](Session& session) {
      const pb::NodeRef ref = NodeRefOf(node);
      return session.Unary<pb::Node>(
          [&](grpc::ClientContext* call, pb::Node* response) {
            return (session.stub().*rpc)(call, ref, response);
          },
          [&](const pb::Node& response) {
            session.out() << FormatNodeUpdate(response, past_tense);
          });
    };
  });
}

// Everything the subcommands read, kept alive across parsing and running.
struct Arguments {
  GlobalOptions global;
  std::string node;
  std::string selector;
  std::vector<std::string> states;
  std::vector<std::string> label_changes;
  GpioOptions gpio;
  ExecOptions exec;
  LogsOptions logs;
  TokenOptions token;
  std::string token_id;
  int64_t since_revision = 0;
  std::string route;
  int64_t dead_limit = 100;
  std::vector<std::string> message_ids;
  bool all_dead_letters = false;
  PublishOptions publish;
  std::string publish_data;
  std::string publish_file;
  std::string release_id;
  CreateReleaseOptions create_release;
  std::vector<std::string> release_states;
  std::string release_node;
  std::string provisioning_id;
  int64_t release_limit = 100;
  bool follow_release = false;
  ProvisionOptions provision;
  bool no_wait = false;
};

void DefineNodes(CLI::App& app, Arguments& args, Action& action) {
  auto* nodes = app.add_subcommand("nodes", "List, inspect, label and manage nodes");
  nodes->require_subcommand(1);

  auto* list = nodes->add_subcommand("list", "Table of nodes (all but REMOVED by default)");
  list->add_option("--selector,-l", args.selector, "Label selector: key=value,key2=value2");
  list->add_option("--state", args.states, "Only these states (READY, DOWN, ...); repeatable")
      ->delimiter(',');
  list->callback([&] {
    action = [&args](Session& session) {
      auto request = BuildListNodesRequest(args.selector, args.states);
      if (!request.ok()) return LocalFailure(session.err(), request.status());
      return session.Unary<pb::ListNodesResponse>(
          [&](grpc::ClientContext* call, pb::ListNodesResponse* response) {
            return session.stub().ListNodes(call, *request, response);
          },
          [&](const pb::ListNodesResponse& response) {
            session.out() << FormatNodeTable(response, session.now());
          });
    };
  });

  auto* show = nodes->add_subcommand("show", "Everything known about one node");
  show->add_option("NODE", args.node, "Node id")->required();
  show->callback([&] {
    action = [&args](Session& session) {
      const pb::NodeRef ref = NodeRefOf(args.node);
      return session.Unary<pb::Node>(
          [&](grpc::ClientContext* call, pb::Node* response) {
            return session.stub().GetNode(call, ref, response);
          },
          [&](const pb::Node& response) {
            session.out() << FormatNodeDetails(response, session.now());
          });
    };
  });

  auto* label = nodes->add_subcommand("label", "Set (key=value) and remove (key-) labels");
  label->add_option("NODE", args.node, "Node id")->required();
  label->add_option("CHANGES", args.label_changes, "key=value to set, key- to remove")->required();
  label->callback([&] {
    action = [&args](Session& session) {
      auto request = BuildLabelNodeRequest(args.node, args.label_changes);
      if (!request.ok()) return LocalFailure(session.err(), request.status());
      return session.Unary<pb::Node>(
          [&](grpc::ClientContext* call, pb::Node* response) {
            return session.stub().LabelNode(call, *request, response);
          },
          [&](const pb::Node& response) {
            session.out() << FormatNodeUpdate(response, "labeled");
          });
    };
  });

  AddNodeVerb(*nodes, "drain", "No new work; running work finishes", "draining",
              &pb::Admin::Stub::DrainNode, args.node, action);
  AddNodeVerb(*nodes, "cordon", "No new work", "cordoned", &pb::Admin::Stub::CordonNode, args.node,
              action);
  AddNodeVerb(*nodes, "uncordon", "Accept work again (ends drain or cordon)", "uncordoned",
              &pb::Admin::Stub::UncordonNode, args.node, action);
  AddNodeVerb(*nodes, "remove", "Mark REMOVED; its certificate is no longer accepted", "removed",
              &pb::Admin::Stub::RemoveNode, args.node, action);
}

void DefineMetrics(CLI::App& app, Arguments& args, Action& action) {
  auto* metrics = app.add_subcommand("metrics", "A node's live system metrics");
  metrics->add_option("NODE", args.node, "Node id")->required();
  metrics->callback([&] {
    action = [&args](Session& session) {
      const pb::NodeRef ref = NodeRefOf(args.node);
      return session.Unary<pb::SystemMetrics>(
          [&](grpc::ClientContext* call, pb::SystemMetrics* response) {
            return session.stub().GetNodeMetrics(call, ref, response);
          },
          [&](const pb::SystemMetrics& response) {
            session.out() << FormatMetrics(response, session.now());
          });
    };
  });
}

void DefineGpio(CLI::App& app, Arguments& args, Action& action) {
  auto* gpio = app.add_subcommand("gpio", "Read, write, configure or release a GPIO line");
  gpio->add_option("NODE", args.node, "Node id")->required();
  gpio->add_option("--chip", args.gpio.chip,
                   "Chip label, name or path (default: the agent's default chip)");
  gpio->require_subcommand(1);
  const std::string line_help = "Line offset (17) or kernel line name (GPIO17)";

  auto run = [&args](Session& session) {
    auto request = BuildGpioRequest(args.node, args.gpio);
    if (!request.ok()) return LocalFailure(session.err(), request.status());
    return session.Unary<pb::GPIOResponse>(
        [&](grpc::ClientContext* call, pb::GPIOResponse* response) {
          return session.stub().ControlNodeGPIO(call, *request, response);
        },
        [&](const pb::GPIOResponse& response) {
          session.out() << FormatGpio(response, session.now());
        });
  };

  auto* read = gpio->add_subcommand("read", "Read the line's level");
  read->add_option("LINE", args.gpio.line, line_help)->required();

  auto* write = gpio->add_subcommand("write", "Drive the line to 0 or 1");
  write->add_option("LINE", args.gpio.line, line_help)->required();
  write->add_option("VALUE", args.gpio.value, "0 or 1")->required();
  write->add_option("--hold", args.gpio.hold, "Release after this long (default: until release)");

  auto* configure = gpio->add_subcommand("configure", "Set direction, bias, drive, polarity");
  configure->add_option("LINE", args.gpio.line, line_help)->required();
  configure->add_option("--direction", args.gpio.direction, "in or out")->required();
  configure->add_option("--bias", args.gpio.bias, "as-is, disabled, pull-up or pull-down");
  configure->add_option("--drive", args.gpio.drive, "push-pull, open-drain or open-source");
  configure->add_flag("--active-low", args.gpio.active_low, "Logical 1 is a low level");
  configure->add_option("--value", args.gpio.value, "Level of an output: 0 or 1");
  configure->add_option("--hold", args.gpio.hold, "Release after this long");

  auto* release = gpio->add_subcommand("release", "Give the line back");
  release->add_option("LINE", args.gpio.line, line_help)->required();

  for (const auto& [sub, name] : std::initializer_list<std::pair<CLI::App*, const char*>>{
           {read, "read"}, {write, "write"}, {configure, "configure"}, {release, "release"}}) {
    sub->callback([&args, &action, run, name = std::string(name)] {
      args.gpio.action = name;
      action = run;
    });
  }
}

void DefineExec(CLI::App& app, Arguments& args, Action& action) {
  auto* exec = app.add_subcommand(
      "exec", "Run an allowlisted command on a node: pictl exec NODE [options] -- /path ARGS...");
  exec->add_option("NODE", args.node, "Node id")->required();
  exec->add_option("ARGV", args.exec.argv, "Absolute path of the command, then its arguments")
      ->required();
  exec->add_option("--timeout", args.exec.timeout, "Kill the command after this long");
  exec->add_option("--cwd", args.exec.working_directory, "Absolute working directory");
  // One value per --env, so that the `--` before the command is not taken as the end of a list.
  exec->add_option("--env", args.exec.env, "NAME=value (only names the agent allows); repeatable")
      ->allow_extra_args(false);
  exec->callback([&] {
    action = [&args](Session& session) {
      auto request = BuildCommandRequest(args.node, args.exec);
      if (!request.ok()) return LocalFailure(session.err(), request.status());
      std::chrono::nanoseconds runtime = kAgentMaxExecTimeout;
      if (request->request().has_timeout()) {
        runtime = std::chrono::seconds(request->request().timeout().seconds() + 1);
      }
      int remote_exit = kExitOk;
      const int status = session.Unary<pb::CommandResponse>(
          [&](grpc::ClientContext* call, pb::CommandResponse* response) {
            grpc::Status result = session.stub().ExecuteNodeCommand(call, *request, response);
            if (result.ok()) remote_exit = CommandExitCode(*response);
            return result;
          },
          [&](const pb::CommandResponse& response) {
            session.out() << response.stdout() << std::flush;
            session.err() << response.stderr() << FormatCommandNotes(response);
          },
          runtime);
      return status == kExitOk ? remote_exit : status;
    };
  });
}

void DefineLogs(CLI::App& app, Arguments& args, Action& action) {
  auto* logs = app.add_subcommand("logs", "Stream a node's journal or log files");
  logs->add_option("NODE", args.node, "Node id")->required();
  logs->add_option("--source", args.logs.source, "\"journal\" (default) or a configured log file");
  logs->add_flag("-f,--follow", args.logs.follow, "Keep streaming new entries until Ctrl-C");
  logs->add_option("--since", args.logs.since, "Only entries newer than this (10m, 2h)");
  logs->add_option("--grep", args.logs.grep, "Only entries containing this text");
  logs->add_option("--regex", args.logs.regex, "Only entries matching this RE2 expression");
  logs->add_option("--unit", args.logs.unit, "Only this systemd unit (journal)");
  logs->add_option("--priority", args.logs.priority,
                   "At most this priority: 0-7 or emerg..debug (journal)");
  logs->add_option("--limit,-n", args.logs.limit, "The last N matching entries (0: all)");
  logs->callback([&] {
    action = [&args](Session& session) {
      auto request = BuildLogRequest(args.node, args.logs, session.now());
      if (!request.ok()) return LocalFailure(session.err(), request.status());
      return session.Stream<pb::LogEntry>(
          [&](grpc::ClientContext* call) { return session.stub().StreamNodeLogs(call, *request); },
          [](const pb::LogEntry& entry) { return FormatLogEntry(entry); });
    };
  });
}

void DefineTokens(CLI::App& app, Arguments& args, Action& action) {
  auto* tokens = app.add_subcommand("tokens", "Join tokens for new nodes");
  tokens->require_subcommand(1);

  auto* create = tokens->add_subcommand("create", "Create a join token (shown once)");
  create->add_option("--ttl", args.token.ttl, "Lifetime")->capture_default_str();
  create->add_option("--max-uses", args.token.max_uses, "How many joins (0: unlimited)");
  create->add_option("--description", args.token.description, "What the token is for");
  create->callback([&] {
    action = [&args](Session& session) {
      auto request = BuildCreateTokenRequest(args.token);
      if (!request.ok()) return LocalFailure(session.err(), request.status());
      return session.Unary<pb::CreateJoinTokenResponse>(
          [&](grpc::ClientContext* call, pb::CreateJoinTokenResponse* response) {
            return session.stub().CreateJoinToken(call, *request, response);
          },
          [&](const pb::CreateJoinTokenResponse& response) {
            session.out() << FormatCreatedToken(response, session.controller(), session.now());
          });
    };
  });

  auto* list = tokens->add_subcommand("list", "Join tokens and their state");
  list->callback([&] {
    action = [](Session& session) {
      return session.Unary<pb::ListJoinTokensResponse>(
          [&](grpc::ClientContext* call, pb::ListJoinTokensResponse* response) {
            return session.stub().ListJoinTokens(call, google::protobuf::Empty(), response);
          },
          [&](const pb::ListJoinTokensResponse& response) {
            session.out() << FormatTokenTable(response, session.now());
          });
    };
  });

  auto* revoke = tokens->add_subcommand("revoke", "Revoke a join token");
  revoke->add_option("ID", args.token_id, "Token id")->required();
  revoke->callback([&] {
    action = [&args](Session& session) {
      pb::JoinTokenRef ref;
      ref.set_id(args.token_id);
      return session.Unary<pb::JoinTokenInfo>(
          [&](grpc::ClientContext* call, pb::JoinTokenInfo* response) {
            return session.stub().RevokeJoinToken(call, ref, response);
          },
          [&](const pb::JoinTokenInfo& response) {
            session.out() << FormatRevokedToken(response);
          });
    };
  });
}

void DefineWatch(CLI::App& app, Arguments& args, Action& action) {
  auto* watch = app.add_subcommand(
      "watch", "Print cluster changes as they happen (the current state first) until Ctrl-C");
  watch->add_option("--since", args.since_revision,
                    "Only changes after this revision (0: start with the current state)");
  watch->callback([&] {
    action = [&args](Session& session) {
      auto request = BuildWatchRequest(args.since_revision);
      if (!request.ok()) return LocalFailure(session.err(), request.status());
      return session.Stream<pb::ClusterChange>(
          [&](grpc::ClientContext* call) { return session.stub().WatchCluster(call, *request); },
          [](const pb::ClusterChange& change) { return FormatClusterChange(change); });
    };
  });
}

// `queue dead requeue ROUTE --all`: lists and requeues the route's dead letters a page at a
// time. Each message is requeued at most once per run, so letters that die again while this runs
// (a worker still failing them) do not keep it going.
int RequeueAllDeadLetters(Session& session, const std::string& route) {
  std::set<std::string> requeued_ids;
  int64_t asked = 0;
  int64_t requeued = 0;
  while (true) {
    absl::StatusOr<pb::ListDeadLettersRequest> list =
        BuildListDeadLettersRequest(route, kMaxDeadLetterLimit);
    if (!list.ok()) return LocalFailure(session.err(), list.status());
    pb::ListDeadLettersResponse listed;
    grpc::Status status = session.Call<pb::ListDeadLettersResponse>(
        [&](grpc::ClientContext* call, pb::ListDeadLettersResponse* response) {
          return session.stub().ListDeadLetters(call, *list, response);
        },
        &listed);
    if (status.ok()) {
      std::vector<std::string> ids;
      for (const pb::DeadLetter& item : listed.items()) {
        if (requeued_ids.insert(item.id()).second) ids.push_back(item.id());
      }
      if (ids.empty()) break;
      absl::StatusOr<pb::DeadLetterIds> request = BuildDeadLetterIds(route, ids);
      if (!request.ok()) return LocalFailure(session.err(), request.status());
      pb::DeadLetterCount count;
      status = session.Call<pb::DeadLetterCount>(
          [&](grpc::ClientContext* call, pb::DeadLetterCount* response) {
            return session.stub().RequeueDeadLetters(call, *request, response);
          },
          &count);
      if (status.ok()) {
        asked += static_cast<int64_t>(ids.size());
        requeued += count.count();
        if (listed.items_size() < kMaxDeadLetterLimit) break;
        continue;
      }
    }
    if (requeued > 0) {
      session.err() << fmt::format(
          "pictl: {} dead letters of queue {} were requeued before this "
          "failure:\n",
          requeued, route);
    }
    return session.FailUnary(status);
  }
  if (session.json()) {
    pb::DeadLetterCount total;
    total.set_count(requeued);
    session.out() << ToJsonLine(total, /*include_defaults=*/true) << "\n";
  } else if (asked == 0) {
    session.out() << fmt::format("queue {} has no dead letters\n", route);
  } else {
    session.out() << FormatDeadLetterCount("requeued", requeued, asked, route);
  }
  return kExitOk;
}

void DefineQueue(CLI::App& app, Arguments& args, Action& action) {
  auto* queue = app.add_subcommand("queue", "Durable work queues: stats, dead letters, publish");
  queue->require_subcommand(1);

  auto* stats = queue->add_subcommand("stats", "Depths and counters of one route or of all");
  stats->add_option("ROUTE", args.route, "Queue route (default: every route)");
  stats->callback([&] {
    action = [&args](Session& session) {
      session.IncludeJsonDefaults();
      const pb::GetQueueStatsRequest request = BuildQueueStatsRequest(args.route);
      return session.Unary<pb::GetQueueStatsResponse>(
          [&](grpc::ClientContext* call, pb::GetQueueStatsResponse* response) {
            return session.stub().GetQueueStats(call, request, response);
          },
          [&](const pb::GetQueueStatsResponse& response) {
            session.out() << FormatQueueStatsTable(response);
          });
    };
  });

  auto* dead = queue->add_subcommand("dead", "List, requeue or delete a route's dead letters");
  dead->require_subcommand(1);

  auto* list = dead->add_subcommand("list", "Dead letters, oldest death first");
  list->add_option("ROUTE", args.route, "Queue route")->required();
  list->add_option("--limit,-n", args.dead_limit,
                   fmt::format("At most this many (1..{})", kMaxDeadLetterLimit))
      ->capture_default_str();
  list->callback([&] {
    action = [&args](Session& session) {
      session.IncludeJsonDefaults();
      auto request = BuildListDeadLettersRequest(args.route, args.dead_limit);
      if (!request.ok()) return LocalFailure(session.err(), request.status());
      return session.Unary<pb::ListDeadLettersResponse>(
          [&](grpc::ClientContext* call, pb::ListDeadLettersResponse* response) {
            return session.stub().ListDeadLetters(call, *request, response);
          },
          [&](const pb::ListDeadLettersResponse& response) {
            session.out() << FormatDeadLetterTable(response, session.now());
          });
    };
  });

  // Requeue and delete take the same arguments and answer alike.
  using IdsRpc = grpc::Status (pb::Admin::Stub::*)(grpc::ClientContext*, const pb::DeadLetterIds&,
                                                   pb::DeadLetterCount*);
  auto run_ids = [&args](IdsRpc rpc, std::string verb) {
    return [&args, rpc, verb](Session& session) {
      session.IncludeJsonDefaults();
      auto request = BuildDeadLetterIds(args.route, args.message_ids);
      if (!request.ok()) return LocalFailure(session.err(), request.status());
      return session.Unary<pb::DeadLetterCount>(
          [&](grpc::ClientContext* call, pb::DeadLetterCount* response) {
            return (session.stub().*rpc)(call, *request, response);
          },
          [&](const pb::DeadLetterCount& response) {
            session.out() << FormatDeadLetterCount(verb, response.count(), request->ids_size(),
                                                   args.route);
          });
    };
  };

  auto* requeue = dead->add_subcommand("requeue", "Put dead letters back in the queue, due now");
  requeue->add_option("ROUTE", args.route, "Queue route")->required();
  auto* ids = requeue->add_option("ID", args.message_ids, "Message ids");
  requeue->add_flag("--all", args.all_dead_letters, "Every dead letter of the route")
      ->excludes(ids);
  requeue->callback([&, run_ids] {
    if (args.all_dead_letters) {
      action = [&args](Session& session) { return RequeueAllDeadLetters(session, args.route); };
    } else {
      action = run_ids(&pb::Admin::Stub::RequeueDeadLetters, "requeued");
    }
  });

  auto* remove = dead->add_subcommand("delete", "Delete dead letters for good");
  remove->add_option("ROUTE", args.route, "Queue route")->required();
  remove->add_option("ID", args.message_ids, "Message ids")->required();
  remove->callback(
      [&, run_ids] { action = run_ids(&pb::Admin::Stub::DeleteDeadLetters, "deleted"); });

  auto* publish = queue->add_subcommand(
      "publish", "Enqueue a message: pictl queue publish ROUTE (--data TEXT | --file PATH)");
  publish->add_option("ROUTE", args.route, "Queue route")->required();
  auto* data = publish->add_option("--data", args.publish_data, "The payload as given");
  auto* file = publish->add_option("--file", args.publish_file, "Read the payload from this file");
  data->excludes(file);
  publish->add_option("--header,-H", args.publish.headers, "NAME=VALUE; repeatable")
      ->allow_extra_args(false);
  publish->callback([&args, &action, data, file] {
    args.publish.data.reset();
    args.publish.file.reset();
    // Counted rather than tested for emptiness: `--data ''` publishes an empty payload.
    if (data->count() > 0) args.publish.data = args.publish_data;
    if (file->count() > 0) args.publish.file = args.publish_file;
    action = [&args](Session& session) {
      auto request = BuildPublishRequest(args.route, args.publish);
      if (!request.ok()) return LocalFailure(session.err(), request.status());
      return session.Unary<pb::PublishResponse>(
          [&](grpc::ClientContext* call, pb::PublishResponse* response) {
            return session.stub().Publish(call, *request, response);
          },
          [&](const pb::PublishResponse& response) {
            session.out() << FormatPublished(response, args.route);
          });
    };
  });
}

// Reads a release's FollowRelease stream until it ends, or until `on_event` returns false (the
// call is then cancelled, which counts as a clean end). Ctrl-C cancels the call.
grpc::Status FollowEvents(Session& session, const pb::FollowReleaseRequest& request,
                          const std::function<bool(const pb::ReleaseEvent&)>& on_event) {
  grpc::ClientContext call;
  bool stopped = false;
  auto registration = session.interrupt().OnCancel([&call] { call.TryCancel(); });
  auto reader = session.stub().FollowRelease(&call, request);
  pb::ReleaseEvent event;
  while (reader->Read(&event)) {
    if (!on_event(event)) {
      stopped = true;
      call.TryCancel();
      break;
    }
  }
  const grpc::Status status = reader->Finish();
  return stopped ? grpc::Status::OK : status;
}

// `releases logs ID [-f]`: without -f, the lines stored when the call starts (the count the
// first event reports), then exit; with -f, every line until the release ends, and its state
// changes on stderr so that stdout holds only the log.
int ReleaseLogs(Session& session, const std::string& id, bool follow) {
  pb::FollowReleaseRequest request;
  request.set_id(id);
  std::optional<int64_t> stored_lines;
  const grpc::Status status = FollowEvents(session, request, [&](const pb::ReleaseEvent& event) {
    if (session.json()) session.out() << ToJsonLine(event) << std::endl;
    if (event.has_release()) {
      if (!stored_lines.has_value()) {
        stored_lines = event.release().log_lines();
        return follow || *stored_lines > 0;
      }
      if (!session.json()) session.err() << FormatReleaseEvent(event) << std::endl;
      return true;
    }
    if (!session.json()) session.out() << FormatReleaseLogLine(event.log()) << std::endl;
    return follow || !stored_lines.has_value() || event.log().sequence() < *stored_lines;
  });
  if (!status.ok()) return follow ? session.FailStream(status) : session.FailUnary(status);
  return kExitOk;
}

// `releases wait ID`: follows the release's state (not its log) until it ends; exit 0 only when
// it SUCCEEDED.
int WaitForRelease(Session& session, const std::string& id) {
  pb::FollowReleaseRequest request;
  request.set_id(id);
  // Live lines still arrive; stored ones are skipped.
  request.set_after_sequence(std::numeric_limits<int64_t>::max());
  std::optional<pb::Release> last;
  const grpc::Status status = FollowEvents(session, request, [&](const pb::ReleaseEvent& event) {
    if (!event.has_release()) return true;
    if (!session.json() && (!last.has_value() || last->state() != event.release().state())) {
      session.out() << FormatReleaseEvent(event) << std::endl;
    }
    last = event.release();
    return true;
  });
  if (!status.ok()) return session.FailUnary(status);
  if (!last.has_value() || !ReleaseEnded(last->state())) {
    session.err() << fmt::format(
        "pictl: the controller ended the follow of release {} before "
        "the release ended\n",
        id);
    return kExitRemoteFailure;
  }
  if (session.json()) {
    session.out() << ToJsonLine(*last) << "\n";
  } else {
    session.out() << FormatPlanOutput(*last);
  }
  return last->state() == pb::RELEASE_STATE_SUCCEEDED ? kExitOk : kExitRemoteFailure;
}

void DefineReleases(CLI::App& app, Arguments& args, Action& action) {
  auto* releases = app.add_subcommand("releases", "Create, list, follow and cancel releases");
  releases->require_subcommand(1);

  auto* create = releases->add_subcommand(
      "create", "Create a release from the files under a directory (names relative to it)");
  create
      ->add_option("--type", args.create_release.type, "Destination type ORGANISATION/NAME@VERSION")
      ->required();
  create->add_option("--dir", args.create_release.dir, "Artifact files: every file under DIR")
      ->required();
  create->add_option("--spec-dir", args.create_release.spec_dir,
                     "Spec files: every file under this directory");
  create->add_option("--node", args.create_release.node, "Only this node's runner may take it");
  create->add_flag("--plan", args.create_release.plan, "Plan (dry run) instead of apply");
  create->add_option("--name", args.create_release.name, "Destination name");
  create->add_option("--env", args.create_release.environment, "Environment");
  create->add_option("--meta", args.create_release.metadata, "Destination metadata k=v; repeatable")
      ->allow_extra_args(false);
  create->add_option("--max-attempts", args.create_release.max_attempts,
                     "Runners it may be given (0: the controller's default)");
  create->add_option("--timeout", args.create_release.timeout,
                     "How long it may run (10m; default: the controller's). The call's own "
                     "deadline is the global --timeout given before `releases`");
  create->callback([&] {
    action = [&args](Session& session) {
      auto request = BuildCreateReleaseRequest(args.create_release);
      if (!request.ok()) return LocalFailure(session.err(), request.status());
      return session.Unary<pb::Release>(
          [&](grpc::ClientContext* call, pb::Release* response) {
            return session.stub().CreateRelease(call, *request, response);
          },
          [&](const pb::Release& response) {
            session.out() << FormatReleaseUpdate(response, "created");
          });
    };
  });

  auto* list = releases->add_subcommand("list", "Releases, newest first");
  list->add_option("--state", args.release_states, "Only these states; repeatable")
      ->delimiter(',')
      ->allow_extra_args(false);
  list->add_option("--node", args.release_node, "Only releases pinned to this node");
  list->add_option("--provisioning", args.provisioning_id, "Only this provisioning's releases");
  list->add_option("--limit,-n", args.release_limit,
                   fmt::format("At most this many (1..{})", kMaxReleaseListLimit))
      ->capture_default_str();
  list->callback([&] {
    action = [&args](Session& session) {
      auto request = BuildListReleasesRequest(args.release_states, args.release_node,
                                              args.provisioning_id, args.release_limit);
      if (!request.ok()) return LocalFailure(session.err(), request.status());
      return session.Unary<pb::ListReleasesResponse>(
          [&](grpc::ClientContext* call, pb::ListReleasesResponse* response) {
            return session.stub().ListReleases(call, *request, response);
          },
          [&](const pb::ListReleasesResponse& response) {
            session.out() << FormatReleaseTable(response, session.now());
          });
    };
  });

  auto* show = releases->add_subcommand("show", "Everything known about one release");
  show->add_option("ID", args.release_id, "Release id")->required();
  show->callback([&] {
    action = [&args](Session& session) {
      const pb::ReleaseRef ref = ReleaseRefOf(args.release_id);
      return session.Unary<pb::Release>(
          [&](grpc::ClientContext* call, pb::Release* response) {
            return session.stub().GetRelease(call, ref, response);
          },
          [&](const pb::Release& response) {
            session.out() << FormatReleaseDetails(response, session.now());
          });
    };
  });

  auto* cancel = releases->add_subcommand("cancel", "Cancel a release that has not ended");
  cancel->add_option("ID", args.release_id, "Release id")->required();
  cancel->callback([&] {
    action = [&args](Session& session) {
      const pb::ReleaseRef ref = ReleaseRefOf(args.release_id);
      return session.Unary<pb::Release>(
          [&](grpc::ClientContext* call, pb::Release* response) {
            return session.stub().CancelRelease(call, ref, response);
          },
          [&](const pb::Release& response) {
            session.out() << FormatReleaseUpdate(response, "cancelled");
          });
    };
  });

  auto* logs = releases->add_subcommand(
      "logs", "A release's log lines stored so far; with -f, until the release ends");
  logs->add_option("ID", args.release_id, "Release id")->required();
  logs->add_flag("-f,--follow", args.follow_release, "Keep printing lines until the release ends");
  logs->callback([&] {
    action = [&args](Session& session) {
      return ReleaseLogs(session, args.release_id, args.follow_release);
    };
  });

  auto* wait =
      releases->add_subcommand("wait", "Wait for a release to end; exit 0 only when it SUCCEEDED");
  wait->add_option("ID", args.release_id, "Release id")->required();
  wait->callback([&] {
    action = [&args](Session& session) { return WaitForRelease(session, args.release_id); };
  });
}

void DefineRunners(CLI::App& app, Action& action) {
  app.add_subcommand("runners", "Runners connected now")->callback([&action] {
    action = [](Session& session) {
      return session.Unary<pb::ListRunnersResponse>(
          [&](grpc::ClientContext* call, pb::ListRunnersResponse* response) {
            return session.stub().ListRunners(call, google::protobuf::Empty(), response);
          },
          [&](const pb::ListRunnersResponse& response) {
            session.out() << FormatRunnerTable(response, session.now());
          });
    };
  });
}

// Polls the provisioning until each of its releases has ended, printing a line whenever one
// changes state; then the plan outputs (plan mode). Exit 0 only when every release SUCCEEDED.
int WaitForProvisioning(Session& session, const std::string& id) {
  pb::ProvisioningRef ref;
  ref.set_id(id);
  std::map<std::string, pb::ReleaseState> shown;
  while (true) {
    pb::Provisioning provisioning;
    const grpc::Status status = session.Call<pb::Provisioning>(
        [&](grpc::ClientContext* call, pb::Provisioning* response) {
          return session.stub().GetProvisioning(call, ref, response);
        },
        &provisioning);
    if (!status.ok()) return session.FailUnary(status);
    bool all_ended = true;
    bool all_succeeded = true;
    for (const pb::Release& release : provisioning.releases()) {
      all_ended = all_ended && ReleaseEnded(release.state());
      all_succeeded = all_succeeded && release.state() == pb::RELEASE_STATE_SUCCEEDED;
      auto [it, added] = shown.try_emplace(release.id(), release.state());
      if ((added || it->second != release.state()) && !session.json()) {
        session.out() << FormatProvisionProgress(release) << std::endl;
      }
      it->second = release.state();
    }
    if (all_ended) {
      if (session.json()) {
        session.out() << ToJsonLine(provisioning) << "\n";
      } else {
        for (const pb::Release& release : provisioning.releases()) {
          session.out() << FormatPlanOutput(release);
        }
        int succeeded = 0;
        for (const pb::Release& release : provisioning.releases()) {
          if (release.state() == pb::RELEASE_STATE_SUCCEEDED) ++succeeded;
        }
        session.out() << fmt::format("provisioning {}: {} of {} succeeded\n", id, succeeded,
                                     provisioning.releases_size());
      }
      return all_succeeded ? kExitOk : kExitRemoteFailure;
    }
    if (session.interrupt().WaitFor(kProvisionPollInterval)) {
      session.err() << fmt::format(
          "pictl: interrupted; provisioning {} goes on (pictl provision status {})\n", id, id);
      return kExitInterrupted;
    }
  }
}

void DefineProvision(CLI::App& app, Arguments& args, Action& action) {
  auto* provision = app.add_subcommand(
      "provision",
      "Apply a profile to one node, a label selector or every READY node, and wait for it");
  provision->add_option("PROFILE", args.provision.profile, "Profile name (deploy/profiles/NAME)");
  auto* node = provision->add_option("--node", args.provision.node, "This node");
  auto* selector =
      provision->add_option("--selector,-l", args.provision.selector, "READY nodes with labels");
  auto* all = provision->add_flag("--all", args.provision.all, "Every READY node");
  node->excludes(selector)->excludes(all);
  selector->excludes(all);
  provision->add_option("--param", args.provision.parameters, "Profile parameter k=v; repeatable")
      ->allow_extra_args(false);
  provision->add_flag("--plan", args.provision.plan, "Report what would change, change nothing");
  provision->add_flag("--no-wait", args.no_wait, "Print the releases and exit at once");

  auto* status = provision->add_subcommand("status", "A provisioning request and its releases");
  status->add_option("ID", args.provisioning_id, "Provisioning id")->required();
  status->callback([&] {
    action = [&args](Session& session) {
      pb::ProvisioningRef ref;
      ref.set_id(args.provisioning_id);
      return session.Unary<pb::Provisioning>(
          [&](grpc::ClientContext* call, pb::Provisioning* response) {
            return session.stub().GetProvisioning(call, ref, response);
          },
          [&](const pb::Provisioning& response) {
            session.out() << FormatProvisioningStatus(response, session.now());
          });
    };
  });

  provision->callback([&args, &action, status] {
    if (status->parsed()) return;
    action = [&args](Session& session) -> int {
      auto request = BuildProvisioningRequest(args.provision);
      if (!request.ok()) return LocalFailure(session.err(), request.status());
      pb::ProvisioningResponse created;
      const grpc::Status requested = session.Call<pb::ProvisioningResponse>(
          [&](grpc::ClientContext* call, pb::ProvisioningResponse* response) {
            return session.control_plane().RequestProvisioning(call, *request, response);
          },
          &created);
      if (!requested.ok()) return session.FailUnary(requested);
      if (session.json()) {
        session.out() << ToJsonLine(created) << "\n";
      } else {
        session.out() << FormatProvisioningCreated(created, *request);
      }
      if (args.no_wait) return kExitOk;
      return WaitForProvisioning(session, created.provisioning_id());
    };
  });
}

int Connect(const Arguments& args, const Action& action, const RunContext& context,
            std::ostream& out, std::ostream& err) {
  auto timeout = ParseTimeout(args.global.timeout);
  if (!timeout.ok()) return LocalFailure(err, timeout.status());
  auto config = ResolveConfig(args.global.connection, context.env);
  if (!config.ok()) return LocalFailure(err, config.status());
  auto credentials =
      common::MakeChannelCredentials({config->ca_file, config->cert_file, config->key_file});
  if (!credentials.ok()) {
    return LocalFailure(
        err, absl::InvalidArgumentError(fmt::format(
                 "cannot load pictl's credentials{}: {}; issue new ones with `pi-controller "
                 "issue-admin NAME --out ~/.config/pictl`",
                 config->source.empty()
                     ? std::string(" (--ca/--cert/--key)")
                     : fmt::format(" (ca_file/cert_file/key_file of {})", config->source),
                 std::string(credentials.status().message()))));
  }
  Session session(args.global, *config, *timeout, context, out, err, *credentials);
  return action(session);
}

}  // namespace

int RunPictl(int argc, const char* const* argv, const RunContext& context, std::ostream& out,
             std::ostream& err) {
  try {
    CLI::App app{"pictl: administer a Pi-Controller cluster", "pictl"};
    app.footer(kExitCodesHelp);
    app.require_subcommand(1);
    // Global flags may follow the subcommand: `pictl nodes list --json`.
    app.fallthrough();
    Arguments args;
    Action action;
    bool show_version = false;

    app.add_option("--config", args.global.connection.config_path,
                   "Config file (default $PICTL_CONFIG, then ~/.config/pictl/config.json)");
    app.add_option("--controller", args.global.connection.controller,
                   "Controller address HOST:PORT");
    app.add_option("--ca", args.global.connection.ca_file, "Cluster CA certificate (PEM)");
    app.add_option("--cert", args.global.connection.cert_file, "Admin certificate (PEM)");
    app.add_option("--key", args.global.connection.key_file, "Admin private key (PEM)");
    app.add_flag("--json", args.global.json, "Print answers as JSON (one object per line)");
    app.add_option("--timeout", args.global.timeout, "Deadline of each call")
        ->capture_default_str();

    DefineNodes(app, args, action);
    DefineMetrics(app, args, action);
    DefineGpio(app, args, action);
    DefineExec(app, args, action);
    DefineLogs(app, args, action);
    DefineTokens(app, args, action);
    DefineWatch(app, args, action);
    DefineQueue(app, args, action);
    DefineReleases(app, args, action);
    DefineRunners(app, action);
    DefineProvision(app, args, action);
    app.add_subcommand("version", "Print pictl's version")->callback([&] { show_version = true; });

    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
      const int code = app.exit(error, out, err);
      return code == 0 ? kExitOk : kExitUsage;
    }
    if (show_version) {
      if (args.global.json) {
        out << nlohmann::json{{"pictl_version", context.version}}.dump() << "\n";
      } else {
        out << "pictl " << context.version << "\n";
      }
      return kExitOk;
    }
    return Connect(args, action, context, out, err);
  } catch (const std::exception& error) {
    err << "pictl: internal error: " << error.what() << "\n";
    return kExitRemoteFailure;
  }
}

}  // namespace pi::controlplane::pictl
