// Benchmark: durable work-queue throughput and latency end to end (ingress -> dequeue -> ack) of
// the real pi-controller, and of beanstalkd (the Debian package) with its binlog fsynced on every
// write, running the same workload in the same run so the two are compared side by side.
//
// Workload, identical for both systems: P producers, each on its own keep-alive connection with
// one message in flight, send ~200-byte messages; W workers, each on its own connection, take up
// to B messages at a time and acknowledge them.
//   pi-controller: HTTP POST to the route's ingress path (202 after the durable commit, SQLite WAL
//     with synchronous=FULL); workers call hookaido.worker.v1.WorkerService Dequeue(batch B,
//     max_wait 1s) then Ack, with lease_ids (the batch form) when B > 1 and lease_id when B = 1.
//   beanstalkd -b DIR -f 0: put (answered INSERTED after the binlog write and its fsync). It has
//     no batch reserve or batch delete, so a worker sends reserve-with-timeout 1, then B-1
//     reserve-with-timeout 0 pipelined in one write, then one delete per job pipelined in one
//     write: the fewest round trips its protocol allows.
// Latency of a message: from just before its POST/put is written until the ack/delete that
// settled it has been answered. Producers stop starting messages when the queue already holds
// --max-backlog unsettled ones (by default twice what keeps every producer and every worker
// busy: 2 * max(P, W * B)), so a slow consumer side shows as lower throughput, and its latency as
// that bounded queue, rather than as an ever-growing queue. Each scenario stops producing after
// --max-seconds.
//
// Prints one JSON document. It asserts nothing about timings; it fails only when a system cannot
// be run, a message is refused or lost, or the controller does not exit cleanly on SIGTERM.
//
//   queue_bench --controller PATH [--beanstalkd /usr/bin/beanstalkd] [--messages 40000]
//       [--warmup-messages 1000] [--producers 64] [--workers 4] [--batches 1,100]
//       [--message-bytes 200] [--max-backlog 2*max(P,W*B)] [--max-seconds 10]
// Defaults can also come from the environment, for quick local runs: PI_BENCH_QUEUE_MESSAGES,
// PI_BENCH_QUEUE_WARMUP_MESSAGES, PI_BENCH_QUEUE_PRODUCERS, PI_BENCH_QUEUE_WORKERS (a list such
// as "4,16"), PI_BENCH_QUEUE_BATCHES, PI_BENCH_QUEUE_MESSAGE_BYTES, PI_BENCH_QUEUE_MAX_BACKLOG,
// PI_BENCH_QUEUE_MAX_SECONDS, PI_BENCH_QUEUE_SYSTEMS ("pi-controller,beanstalkd").
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/grpc/proto_time.h"
#include "common/system/child_process.h"
#include "hookaido/worker/v1/workerapi.grpc.pb.h"
#include "tests/bench/bench_support.h"
#include "tests/common/test_dir.h"

namespace {

namespace worker = hookaido::worker::v1;
using Clock = std::chrono::steady_clock;

constexpr char kRouteName[] = "bench";
constexpr char kIngressPath[] = "/webhooks/bench";
constexpr char kPullPath[] = "/pull/bench";
constexpr char kTokenVariable[] = "PI_BENCH_PULL_TOKEN";
constexpr char kToken[] = "queue-bench-token-0123456789abcdef";
// Long enough that no lease or reservation expires during a run, so every redelivery counted
// as a duplicate is a real fault.
constexpr auto kLeaseSeconds = std::chrono::seconds(60);
// Generous limits: only a stuck server, never a busy machine, runs into them.
constexpr auto kCallDeadline = std::chrono::seconds(30);
constexpr auto kStartDeadline = std::chrono::seconds(30);
// Messages that are still unsettled this long after producing stopped count as lost.
constexpr auto kDrainLimit = std::chrono::seconds(60);
// Warm-up only has to open connections and fill caches; a slow system needs no more than this.
constexpr double kWarmupSeconds = 2.0;

int64_t Nanos(Clock::time_point time) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch()).count();
}

absl::StatusOr<std::vector<int>> ParseIntList(const std::string& text, const char* what) {
  std::vector<int> values;
  std::istringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    char* end = nullptr;
    const long value = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || value < 1 || value > 1000) {
      return absl::InvalidArgumentError(std::string(what) + ": \"" + item +
                                        "\" is not a number from 1 to 1000");
    }
    values.push_back(static_cast<int>(value));
  }
  if (values.empty()) return absl::InvalidArgumentError(std::string(what) + " is empty");
  return values;
}

std::string ErrnoText(const std::string& what) { return what + ": " + std::strerror(errno); }

// A blocking TCP connection to 127.0.0.1 with buffered line and exact-length reads: enough of a
// client for HTTP/1.1 keep-alive and the beanstalk text protocol.
class Connection {
 public:
  static absl::StatusOr<std::unique_ptr<Connection>> Open(int port) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return absl::UnavailableError(ErrnoText("socket"));
    auto connection = std::unique_ptr<Connection>(new Connection(fd));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      return absl::UnavailableError(ErrnoText("connect to 127.0.0.1:" + std::to_string(port)));
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    const timeval timeout{std::chrono::seconds(kCallDeadline).count(), 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    return connection;
  }

  ~Connection() { close(fd_); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  absl::Status WriteAll(const std::string& data) {
    for (size_t done = 0; done < data.size();) {
      const ssize_t sent = send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (sent < 0 && errno == EINTR) continue;
      if (sent <= 0) return absl::UnavailableError(ErrnoText("send"));
      done += static_cast<size_t>(sent);
    }
    return absl::OkStatus();
  }

  // The next line without its CRLF.
  absl::StatusOr<std::string> ReadLine() {
    for (;;) {
      const size_t end = buffer_.find("\r\n", start_);
      if (end != std::string::npos) {
        std::string line = buffer_.substr(start_, end - start_);
        start_ = end + 2;
        return line;
      }
      if (absl::Status status = Fill(); !status.ok()) return status;
    }
  }

  absl::StatusOr<std::string> ReadExact(size_t size) {
    while (buffer_.size() - start_ < size) {
      if (absl::Status status = Fill(); !status.ok()) return status;
    }
    std::string data = buffer_.substr(start_, size);
    start_ += size;
    return data;
  }

 private:
  explicit Connection(int fd) : fd_(fd) {}

  absl::Status Fill() {
    if (start_ > 0) {
      buffer_.erase(0, start_);
      start_ = 0;
    }
    char chunk[16 * 1024];
    for (;;) {
      const ssize_t received = recv(fd_, chunk, sizeof(chunk), 0);
      if (received < 0 && errno == EINTR) continue;
      if (received < 0) return absl::UnavailableError(ErrnoText("recv"));
      if (received == 0) return absl::UnavailableError("the server closed the connection");
      buffer_.append(chunk, static_cast<size_t>(received));
      return absl::OkStatus();
    }
  }

  int fd_;
  std::string buffer_;
  size_t start_ = 0;
};

// A message body of exactly `size` bytes that carries its sequence number, so the worker that
// settles it can find when it was sent.
std::string MessageBody(int64_t sequence, int size) {
  char head[40];
  const int head_size = std::snprintf(head, sizeof(head), "{\"seq\":%010lld,\"pad\":\"",
                                      static_cast<long long>(sequence));
  std::string body(head, static_cast<size_t>(head_size));
  body.append(static_cast<size_t>(size - head_size - 2), 'x');
  body += "\"}";
  return body;
}

std::optional<int64_t> SequenceOf(const std::string& payload) {
  static constexpr std::string_view kPrefix = "{\"seq\":";
  if (payload.compare(0, kPrefix.size(), kPrefix) != 0) return std::nullopt;
  char* end = nullptr;
  const long long value = std::strtoll(payload.c_str() + kPrefix.size(), &end, 10);
  if (end == payload.c_str() + kPrefix.size() || *end != ',') return std::nullopt;
  return value;
}

// A message a worker holds: its body and what settles it (lease id, job id).
struct TakenMessage {
  std::string payload;
  std::string handle;
};

class Producer {
 public:
  virtual ~Producer() = default;
  // Returns once the system has durably accepted the message.
  virtual absl::Status Send(const std::string& body) = 0;
};

class Consumer {
 public:
  virtual ~Consumer() = default;
  // Up to `batch` messages, waiting up to a second for the first; empty when none came.
  virtual absl::StatusOr<std::vector<TakenMessage>> Take(int batch) = 0;
  // Acknowledges (deletes) every message of one Take.
  virtual absl::Status Settle(const std::vector<TakenMessage>& messages) = 0;
};

// A server under test: its process and how to talk to it.
class QueueSystem {
 public:
  virtual ~QueueSystem() = default;
  virtual pid_t pid() const = 0;
  virtual absl::StatusOr<std::unique_ptr<Producer>> NewProducer() = 0;
  virtual absl::StatusOr<std::unique_ptr<Consumer>> NewConsumer(int batch) = 0;
};

// ---- pi-controller: HTTP ingress and worker gRPC ----

class HttpIngressProducer final : public Producer {
 public:
  HttpIngressProducer(int port, std::unique_ptr<Connection> connection)
      : port_(port), connection_(std::move(connection)) {}

  absl::Status Send(const std::string& body) override {
    // After the server closed the connection, as keep-alive allows, open another.
    if (connection_ == nullptr) {
      auto opened = Connection::Open(port_);
      if (!opened.ok()) return opened.status();
      connection_ = *std::move(opened);
    }
    const std::string request = std::string("POST ") + kIngressPath +
                                " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                "Content-Type: application/json\r\nContent-Length: " +
                                std::to_string(body.size()) + "\r\n\r\n" + body;
    if (absl::Status status = connection_->WriteAll(request); !status.ok()) return Drop(status);
    auto status_line = connection_->ReadLine();
    if (!status_line.ok()) return Drop(status_line.status());
    size_t content_length = 0;
    bool close = false;
    for (;;) {
      auto line = connection_->ReadLine();
      if (!line.ok()) return Drop(line.status());
      if (line->empty()) break;
      std::string name = line->substr(0, line->find(':'));
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return std::tolower(c); });
      const std::string value = line->size() > name.size() + 1 ? line->substr(name.size() + 1) : "";
      if (name == "content-length") content_length = std::strtoul(value.c_str(), nullptr, 10);
      if (name == "connection" && value.find("close") != std::string::npos) close = true;
    }
    auto response_body = connection_->ReadExact(content_length);
    if (!response_body.ok()) return Drop(response_body.status());
    if (close) connection_.reset();
    if (status_line->rfind("HTTP/1.1 202", 0) != 0) {
      return absl::FailedPreconditionError("ingress answered \"" + *status_line +
                                           "\": " + *response_body);
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Drop(absl::Status status) {
    connection_.reset();
    return status;
  }

  const int port_;
  std::unique_ptr<Connection> connection_;
};

class WorkerGrpcConsumer final : public Consumer {
 public:
  WorkerGrpcConsumer(const std::string& target, int index, bool single_ack)
      : single_ack_(single_ack) {
    // A subchannel pool of its own: each worker gets its own connection, as separate worker
    // processes would, instead of channels with equal arguments sharing one.
    grpc::ChannelArguments arguments;
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    arguments.SetInt("pi.bench_worker", index);
    stub_ = worker::WorkerService::NewStub(
        grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), arguments));
  }

  absl::StatusOr<std::vector<TakenMessage>> Take(int batch) override {
    grpc::ClientContext context;
    Prepare(context);
    worker::DequeueRequest request;
    request.set_endpoint(kPullPath);
    request.set_batch(static_cast<uint32_t>(batch));
    *request.mutable_max_wait() = pi::common::ToProtoDuration(std::chrono::seconds(1));
    *request.mutable_lease_ttl() = pi::common::ToProtoDuration(kLeaseSeconds);
    worker::DequeueResponse response;
    const grpc::Status status = stub_->Dequeue(&context, request, &response);
    if (!status.ok()) return Failed("Dequeue", status);
    std::vector<TakenMessage> taken;
    taken.reserve(static_cast<size_t>(response.items_size()));
    for (worker::DequeueItem& item : *response.mutable_items()) {
      taken.push_back({std::move(*item.mutable_payload()), item.lease_id()});
    }
    return taken;
  }

  absl::Status Settle(const std::vector<TakenMessage>& messages) override {
    grpc::ClientContext context;
    Prepare(context);
    worker::AckRequest request;
    request.set_endpoint(kPullPath);
    if (single_ack_ && messages.size() == 1) {
      request.set_lease_id(messages.front().handle);
    } else {
      for (const TakenMessage& message : messages) request.add_lease_ids(message.handle);
    }
    worker::AckResponse response;
    const grpc::Status status = stub_->Ack(&context, request, &response);
    if (!status.ok()) return Failed("Ack", status);
    if (response.conflicts_size() > 0 || response.acked() != messages.size()) {
      return absl::FailedPreconditionError("Ack of " + std::to_string(messages.size()) +
                                           " leases acked " + std::to_string(response.acked()) +
                                           " with " + std::to_string(response.conflicts_size()) +
                                           " conflicts");
    }
    return absl::OkStatus();
  }

 private:
  static void Prepare(grpc::ClientContext& context) {
    context.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
    context.AddMetadata("authorization", std::string("Bearer ") + kToken);
  }

  static absl::Status Failed(const char* method, const grpc::Status& status) {
    return absl::UnavailableError(std::string(method) + " failed: " + status.error_message() +
                                  " (code " + std::to_string(status.error_code()) + ")");
  }

  const bool single_ack_;
  std::unique_ptr<worker::WorkerService::Stub> stub_;
};

class PiControllerSystem final : public QueueSystem {
 public:
  static absl::StatusOr<std::unique_ptr<PiControllerSystem>> Start(
      const std::string& binary, const pi::testing::TempDir& dir) {
    const std::string state_dir = (dir.path() / "controller-state").string();
    const std::string ports_file = (dir.path() / "controller-ports.json").string();
    std::filesystem::remove(ports_file);
    // One route with no depth limit; the cluster side idles (no nodes, no health polls).
    const std::string config =
        dir.Write("controller.json",
                  nlohmann::json{{"state_dir", state_dir},
                                 {"listen", "127.0.0.1:0"},
                                 {"http_listen", "127.0.0.1:0"},
                                 {"log_level", "warn"},
                                 {"cluster", {{"health_poll_interval", "1h"}}},
                                 {"queues",
                                  {{"ingress", {{"listen", "127.0.0.1:0"}}},
                                   {"pull_api",
                                    {{"listen", ""},
                                     {"grpc_listen", "127.0.0.1:0"},
                                     {"auth_tokens", {std::string("env:") + kTokenVariable}}}},
                                   {"routes",
                                    {{{"name", kRouteName},
                                      {"ingress_path", kIngressPath},
                                      {"pull_path", kPullPath},
                                      {"max_depth", 0},
                                      {"max_batch", 100},
                                      {"max_lease_ttl", "10m"}}}}}}}
                      .dump());
    auto daemon = pi::bench::Daemon::Start({binary, "--config", config, "--ports-file", ports_file},
                                           {std::string(kTokenVariable) + "=" + kToken});
    if (!daemon.ok()) return daemon.status();
    int ingress = 0;
    int worker_grpc = 0;
    for (auto deadline = Clock::now() + kStartDeadline; ingress == 0 || worker_grpc == 0;) {
      if (Clock::now() > deadline || (*daemon)->exited()) {
        return absl::FailedPreconditionError("pi-controller did not start serving queues: " +
                                             (*daemon)->output());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      ingress = pi::bench::PortFromFile(ports_file, "ingress");
      worker_grpc = pi::bench::PortFromFile(ports_file, "worker_grpc");
    }
    return std::unique_ptr<PiControllerSystem>(
        new PiControllerSystem(*std::move(daemon), ingress, worker_grpc));
  }

  pid_t pid() const override { return daemon_->pid(); }

  absl::StatusOr<std::unique_ptr<Producer>> NewProducer() override {
    auto connection = Connection::Open(ingress_port_);
    if (!connection.ok()) return connection.status();
    return std::make_unique<HttpIngressProducer>(ingress_port_, *std::move(connection));
  }

  absl::StatusOr<std::unique_ptr<Consumer>> NewConsumer(int batch) override {
    return std::make_unique<WorkerGrpcConsumer>("127.0.0.1:" + std::to_string(worker_port_),
                                                next_worker_++, batch == 1);
  }

  // Stops the controller the way systemd does; true when it exited 0.
  bool StopCleanly() {
    const auto exit = daemon_->Stop(std::chrono::seconds(10));
    return exit.has_value() && exit->exit_code == 0;
  }
  std::string output() { return daemon_->output(); }

 private:
  PiControllerSystem(std::unique_ptr<pi::bench::Daemon> daemon, int ingress_port, int worker_port)
      : daemon_(std::move(daemon)), ingress_port_(ingress_port), worker_port_(worker_port) {}

  std::unique_ptr<pi::bench::Daemon> daemon_;
  const int ingress_port_;
  const int worker_port_;
  std::atomic<int> next_worker_{0};
};

// ---- beanstalkd: its text protocol over one connection per producer and per worker ----

class BeanstalkProducer final : public Producer {
 public:
  explicit BeanstalkProducer(std::unique_ptr<Connection> connection)
      : connection_(std::move(connection)) {}

  absl::Status Send(const std::string& body) override {
    // Priority 1024, no delay, time-to-run as long as a pi-controller lease.
    const std::string command = "put 1024 0 " + std::to_string(kLeaseSeconds.count()) + " " +
                                std::to_string(body.size()) + "\r\n" + body + "\r\n";
    if (absl::Status status = connection_->WriteAll(command); !status.ok()) return status;
    auto reply = connection_->ReadLine();
    if (!reply.ok()) return reply.status();
    if (reply->rfind("INSERTED ", 0) != 0) {
      return absl::FailedPreconditionError("put answered \"" + *reply + "\"");
    }
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<Connection> connection_;
};

class BeanstalkConsumer final : public Consumer {
 public:
  explicit BeanstalkConsumer(std::unique_ptr<Connection> connection)
      : connection_(std::move(connection)) {}

  absl::StatusOr<std::vector<TakenMessage>> Take(int batch) override {
    std::vector<TakenMessage> taken;
    if (absl::Status status = connection_->WriteAll("reserve-with-timeout 1\r\n"); !status.ok()) {
      return status;
    }
    if (absl::Status status = ReadReservation(taken); !status.ok()) return status;
    if (taken.empty() || batch == 1) return taken;
    // The rest of the batch without waiting: what is ready now, as Dequeue leases it.
    std::string more;
    for (int i = 1; i < batch; ++i) more += "reserve-with-timeout 0\r\n";
    if (absl::Status status = connection_->WriteAll(more); !status.ok()) return status;
    for (int i = 1; i < batch; ++i) {
      if (absl::Status status = ReadReservation(taken); !status.ok()) return status;
    }
    return taken;
  }

  absl::Status Settle(const std::vector<TakenMessage>& messages) override {
    std::string deletes;
    for (const TakenMessage& message : messages) deletes += "delete " + message.handle + "\r\n";
    if (absl::Status status = connection_->WriteAll(deletes); !status.ok()) return status;
    for (const TakenMessage& message : messages) {
      auto reply = connection_->ReadLine();
      if (!reply.ok()) return reply.status();
      if (*reply != "DELETED") {
        return absl::FailedPreconditionError("delete " + message.handle + " answered \"" + *reply +
                                             "\"");
      }
    }
    return absl::OkStatus();
  }

 private:
  // Reads one reserve reply; appends the job when there was one.
  absl::Status ReadReservation(std::vector<TakenMessage>& taken) {
    auto reply = connection_->ReadLine();
    if (!reply.ok()) return reply.status();
    if (*reply == "TIMED_OUT" || *reply == "DEADLINE_SOON") return absl::OkStatus();
    std::istringstream fields(*reply);
    std::string word;
    std::string id;
    size_t size = 0;
    if (!(fields >> word >> id >> size) || word != "RESERVED") {
      return absl::FailedPreconditionError("reserve answered \"" + *reply + "\"");
    }
    auto data = connection_->ReadExact(size + 2);
    if (!data.ok()) return data.status();
    data->resize(size);
    taken.push_back({*std::move(data), id});
    return absl::OkStatus();
  }

  std::unique_ptr<Connection> connection_;
};

// A port nobody listens on right now, for daemons that cannot be told to pick one.
absl::StatusOr<int> FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(ErrnoText("socket"));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  const bool bound = bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
                     getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  close(fd);
  if (!bound) return absl::UnavailableError(ErrnoText("bind 127.0.0.1:0"));
  return ntohs(address.sin_port);
}

class BeanstalkdSystem final : public QueueSystem {
 public:
  static absl::StatusOr<std::unique_ptr<BeanstalkdSystem>> Start(const std::string& binary,
                                                                 const std::string& binlog_dir) {
    std::filesystem::create_directories(binlog_dir);
    auto port = FreePort();
    if (!port.ok()) return port.status();
    // -f 0: fsync the binlog on every write, as synchronous=FULL does for the controller.
    auto daemon = pi::bench::Daemon::Start(
        {binary, "-l", "127.0.0.1", "-p", std::to_string(*port), "-b", binlog_dir, "-f", "0"}, {});
    if (!daemon.ok()) return daemon.status();
    for (auto deadline = Clock::now() + kStartDeadline;;) {
      if (Connection::Open(*port).ok()) break;
      if (Clock::now() > deadline || (*daemon)->exited()) {
        return absl::FailedPreconditionError("beanstalkd did not start: " + (*daemon)->output());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return std::unique_ptr<BeanstalkdSystem>(new BeanstalkdSystem(*std::move(daemon), *port));
  }

  pid_t pid() const override { return daemon_->pid(); }

  absl::StatusOr<std::unique_ptr<Producer>> NewProducer() override {
    auto connection = Connection::Open(port_);
    if (!connection.ok()) return connection.status();
    return std::make_unique<BeanstalkProducer>(*std::move(connection));
  }

  absl::StatusOr<std::unique_ptr<Consumer>> NewConsumer(int) override {
    auto connection = Connection::Open(port_);
    if (!connection.ok()) return connection.status();
    return std::make_unique<BeanstalkConsumer>(*std::move(connection));
  }

 private:
  BeanstalkdSystem(std::unique_ptr<pi::bench::Daemon> daemon, int port)
      : daemon_(std::move(daemon)), port_(port) {}

  std::unique_ptr<pi::bench::Daemon> daemon_;
  const int port_;
};

// ---- the workload ----

struct Workload {
  int messages = 0;
  int producers = 0;
  int workers = 0;
  int batch = 0;
  int message_bytes = 0;
  int max_backlog = 0;
  double max_seconds = 0;
};

struct WorkloadResult {
  int64_t sent = 0;
  int64_t accepted = 0;
  int64_t settled = 0;
  int64_t duplicates = 0;
  int64_t errors = 0;
  std::string first_error;
  double seconds = 0;
  double server_cpu_seconds = 0;
  double bench_cpu_seconds = 0;
  std::vector<float> end_to_end_us;
  std::vector<float> accept_us;
};

// Every producer's and worker's connection, opened before the clock starts and kept from the
// warm-up to the measured run.
struct Clients {
  std::vector<std::unique_ptr<Producer>> producers;
  std::vector<std::unique_ptr<Consumer>> consumers;
};

absl::StatusOr<Clients> OpenClients(QueueSystem& system, const Workload& workload) {
  Clients clients;
  for (int i = 0; i < workload.producers; ++i) {
    auto producer = system.NewProducer();
    if (!producer.ok()) return producer.status();
    clients.producers.push_back(*std::move(producer));
  }
  for (int i = 0; i < workload.workers; ++i) {
    auto consumer = system.NewConsumer(workload.batch);
    if (!consumer.ok()) return consumer.status();
    clients.consumers.push_back(*std::move(consumer));
  }
  return clients;
}

class WorkloadRun {
 public:
  WorkloadRun(QueueSystem& system, const Workload& workload, Clients& clients)
      : system_(system),
        workload_(workload),
        clients_(clients),
        sent_at_ns_(static_cast<size_t>(workload.messages)),
        settled_flags_(static_cast<size_t>(workload.messages)) {}

  WorkloadResult Run() {
    const double server_cpu_before = pi::bench::ProcessCpuSeconds(system_.pid());
    const double bench_cpu_before = pi::bench::SelfCpuSeconds();
    start_ = Clock::now();
    produce_until_ = start_ + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(workload_.max_seconds));
    std::vector<std::thread> workers;
    for (auto& consumer : clients_.consumers) {
      workers.emplace_back([this, &consumer] { Work(*consumer); });
    }
    std::vector<std::thread> producers;
    for (auto& producer : clients_.producers) {
      producers.emplace_back([this, &producer] { Produce(*producer); });
    }
    for (auto& producer : producers) producer.join();
    const auto drain_until = Clock::now() + kDrainLimit;
    while (settled_ < accepted_ && !workers_failed_ && Clock::now() < drain_until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    result_.server_cpu_seconds = pi::bench::ProcessCpuSeconds(system_.pid()) - server_cpu_before;
    result_.bench_cpu_seconds = pi::bench::SelfCpuSeconds() - bench_cpu_before;
    stop_ = true;
    for (auto& worker : workers) worker.join();

    result_.sent = sent_;
    result_.accepted = accepted_;
    result_.settled = settled_;
    result_.duplicates = duplicates_;
    result_.seconds = std::max(1e-9, (last_settled_ns_ - Nanos(start_)) / 1e9);
    if (result_.settled < result_.accepted) {
      Fail(absl::DataLossError(std::to_string(result_.accepted - result_.settled) + " of " +
                               std::to_string(result_.accepted) +
                               " accepted messages were never delivered"));
    }
    result_.errors = errors_;
    return std::move(result_);
  }

 private:
  void Produce(Producer& producer) {
    std::vector<float> accept_us;
    for (;;) {
      const std::optional<int64_t> next = NextSequence();
      if (!next) break;
      const int64_t sequence = *next;
      const std::string body = MessageBody(sequence, workload_.message_bytes);
      const auto sent = Clock::now();
      sent_at_ns_[static_cast<size_t>(sequence)] = Nanos(sent);
      ++sent_;
      if (absl::Status status = producer.Send(body); !status.ok()) {
        Fail(status);
        break;
      }
      ++accepted_;
      accept_us.push_back(static_cast<float>(
          std::chrono::duration<double, std::micro>(Clock::now() - sent).count()));
    }
    std::lock_guard lock(mu_);
    result_.accept_us.insert(result_.accept_us.end(), accept_us.begin(), accept_us.end());
  }

  // The next message to send, once fewer than max_backlog are unsettled; nothing when producing
  // is over. A condition variable rather than polling: the waiting producers would otherwise
  // take CPU from the server on this small machine.
  std::optional<int64_t> NextSequence() {
    std::unique_lock lock(backlog_mu_);
    // Stuck settling ends production at produce_until_; the drain limit then reports it.
    const bool admitted = backlog_cv_.wait_until(lock, produce_until_, [this] {
      return next_sequence_ - settled_ < workload_.max_backlog ||
             next_sequence_ >= workload_.messages || workers_failed_;
    });
    if (admitted && !workers_failed_ && next_sequence_ < workload_.messages &&
        Clock::now() < produce_until_) {
      return next_sequence_++;
    }
    lock.unlock();
    // The producers still waiting must see it is over too.
    backlog_cv_.notify_all();
    return std::nullopt;
  }

  void WorkerFailed(const absl::Status& status) {
    Fail(status);
    {
      std::lock_guard lock(backlog_mu_);
      workers_failed_ = true;
    }
    backlog_cv_.notify_all();
  }

  void Work(Consumer& consumer) {
    std::vector<float> end_to_end_us;
    while (!stop_) {
      auto taken = consumer.Take(workload_.batch);
      if (!taken.ok()) {
        WorkerFailed(taken.status());
        break;
      }
      if (taken->empty()) continue;
      if (absl::Status status = consumer.Settle(*taken); !status.ok()) {
        WorkerFailed(status);
        break;
      }
      const auto now = Clock::now();
      int64_t fresh = 0;
      for (const TakenMessage& message : *taken) {
        const std::optional<int64_t> sequence = SequenceOf(message.payload);
        if (!sequence || *sequence < 0 || *sequence >= workload_.messages) {
          Fail(absl::DataLossError("a delivered payload carries no valid sequence number: " +
                                   message.payload.substr(0, 40)));
          continue;
        }
        if (settled_flags_[static_cast<size_t>(*sequence)].exchange(true)) {
          ++duplicates_;
          continue;
        }
        ++fresh;
        const int64_t sent_ns = sent_at_ns_[static_cast<size_t>(*sequence)].load();
        end_to_end_us.push_back(static_cast<float>((Nanos(now) - sent_ns) / 1e3));
      }
      int64_t last = last_settled_ns_.load();
      while (last < Nanos(now) && !last_settled_ns_.compare_exchange_weak(last, Nanos(now))) {
      }
      {
        std::lock_guard lock(backlog_mu_);
        settled_ += fresh;
      }
      // Each settled message lets one more be sent.
      if (fresh == 1) backlog_cv_.notify_one();
      if (fresh > 1) backlog_cv_.notify_all();
    }
    std::lock_guard lock(mu_);
    result_.end_to_end_us.insert(result_.end_to_end_us.end(), end_to_end_us.begin(),
                                 end_to_end_us.end());
  }

  void Fail(const absl::Status& status) {
    ++errors_;
    std::lock_guard lock(mu_);
    if (result_.first_error.empty()) result_.first_error = std::string(status.message());
  }

  QueueSystem& system_;
  const Workload workload_;
  Clients& clients_;
  Clock::time_point start_;
  Clock::time_point produce_until_;
  // When each message's POST/put was started, in steady-clock nanoseconds.
  std::vector<std::atomic<int64_t>> sent_at_ns_;
  std::vector<std::atomic<bool>> settled_flags_;
  // Guards next_sequence_ and the changes of settled_ and workers_failed_ producers wait on.
  std::mutex backlog_mu_;
  std::condition_variable backlog_cv_;
  int64_t next_sequence_ = 0;
  std::atomic<int64_t> sent_{0};
  std::atomic<int64_t> accepted_{0};
  std::atomic<int64_t> settled_{0};
  std::atomic<int64_t> duplicates_{0};
  std::atomic<int64_t> errors_{0};
  std::atomic<int64_t> last_settled_ns_{0};
  std::atomic<bool> workers_failed_{false};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  WorkloadResult result_;
};

struct Options {
  std::string controller_path;
  std::string beanstalkd_path = "/usr/bin/beanstalkd";
  std::string systems =
      pi::bench::FromEnv<std::string>("PI_BENCH_QUEUE_SYSTEMS", "pi-controller,beanstalkd");
  int messages = pi::bench::FromEnv("PI_BENCH_QUEUE_MESSAGES", 40000);
  int warmup_messages = pi::bench::FromEnv("PI_BENCH_QUEUE_WARMUP_MESSAGES", 1000);
  int producers = pi::bench::FromEnv("PI_BENCH_QUEUE_PRODUCERS", 64);
  std::string workers = pi::bench::FromEnv<std::string>("PI_BENCH_QUEUE_WORKERS", "4");
  std::string batches = pi::bench::FromEnv<std::string>("PI_BENCH_QUEUE_BATCHES", "1,100");
  int message_bytes = pi::bench::FromEnv("PI_BENCH_QUEUE_MESSAGE_BYTES", 200);
  // 0: 2 * max(producers, workers * batch).
  int max_backlog = pi::bench::FromEnv("PI_BENCH_QUEUE_MAX_BACKLOG", 0);
  double max_seconds = pi::bench::FromEnv("PI_BENCH_QUEUE_MAX_SECONDS", 10.0);
};

const char kPiController[] = "pi-controller";
const char kBeanstalkd[] = "beanstalkd";

// Starts a fresh server, warms it up, runs the measured workload and describes it.
absl::StatusOr<nlohmann::json> RunScenario(const Options& options, const std::string& system_name,
                                           const Workload& workload) {
  pi::testing::TempDir dir;
  std::unique_ptr<QueueSystem> system;
  PiControllerSystem* controller = nullptr;
  if (system_name == kPiController) {
    auto started = PiControllerSystem::Start(options.controller_path, dir);
    if (!started.ok()) return started.status();
    controller = started->get();
    system = *std::move(started);
  } else {
    auto started =
        BeanstalkdSystem::Start(options.beanstalkd_path, (dir.path() / "binlog").string());
    if (!started.ok()) return started.status();
    system = *std::move(started);
  }
  const pid_t pid = system->pid();
  const double idle_rss = pi::bench::StatusMib(pid, "VmRSS");
  auto clients = OpenClients(*system, workload);
  if (!clients.ok()) return clients.status();

  if (options.warmup_messages > 0) {
    Workload warmup = workload;
    warmup.messages = options.warmup_messages;
    warmup.max_seconds = std::min(workload.max_seconds, kWarmupSeconds);
    WorkloadResult warmed = WorkloadRun(*system, warmup, *clients).Run();
    if (warmed.errors > 0) {
      return absl::FailedPreconditionError(system_name + " warm-up failed: " + warmed.first_error);
    }
  }
  WorkloadResult result = WorkloadRun(*system, workload, *clients).Run();
  const double rss = pi::bench::StatusMib(pid, "VmRSS");
  const double peak_rss = pi::bench::StatusMib(pid, "VmHWM");
  const double wall = result.seconds;
  nlohmann::json json = {
      {"system", system_name},
      {"batch", workload.batch},
      {"workers", workload.workers},
      {"producers", workload.producers},
      {"max_backlog", workload.max_backlog},
      {"message_bytes", workload.message_bytes},
      {"messages", result.settled},
      {"seconds", wall},
      {"msgs_per_s", result.settled / wall},
      {"p50_ms", pi::bench::Percentile(result.end_to_end_us, 0.50) / 1000},
      {"p99_ms", pi::bench::Percentile(result.end_to_end_us, 0.99) / 1000},
      {"max_ms",
       result.end_to_end_us.empty()
           ? 0.0
           : *std::max_element(result.end_to_end_us.begin(), result.end_to_end_us.end()) / 1000},
      {"accept_p50_ms", pi::bench::Percentile(result.accept_us, 0.50) / 1000},
      {"accept_p99_ms", pi::bench::Percentile(result.accept_us, 0.99) / 1000},
      {"duplicates", result.duplicates},
      {"errors", result.errors},
      {"server_cpu_percent", 100 * result.server_cpu_seconds / wall},
      {"server_idle_rss_mib", idle_rss},
      {"server_rss_mib", rss},
      {"server_peak_rss_mib", peak_rss},
      {"bench_cpu_percent", 100 * result.bench_cpu_seconds / wall},
  };
  if (system_name == kBeanstalkd) {
    int binlog_files = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir.path() / "binlog")) {
      if (entry.path().filename().string().rfind("binlog.", 0) == 0) ++binlog_files;
    }
    json["binlog_files"] = binlog_files;
    if (binlog_files == 0) {
      return absl::FailedPreconditionError("beanstalkd wrote no binlog: " + json.dump());
    }
  }
  if (result.errors > 0) {
    return absl::FailedPreconditionError(system_name + ": " + result.first_error + "\n" +
                                         json.dump());
  }
  if (controller != nullptr) {
    // Close every connection first, then stop the controller the way systemd does.
    clients->producers.clear();
    clients->consumers.clear();
    const bool clean = controller->StopCleanly();
    json["controller_clean_exit"] = clean;
    if (!clean) {
      return absl::FailedPreconditionError("pi-controller did not exit cleanly on SIGTERM: " +
                                           controller->output() + "\n" + json.dump());
    }
  }
  return json;
}

absl::StatusOr<nlohmann::json> Run(const Options& options) {
  auto batches = ParseIntList(options.batches, "--batches");
  if (!batches.ok()) return batches.status();
  auto worker_counts = ParseIntList(options.workers, "--workers");
  if (!worker_counts.ok()) return worker_counts.status();
  std::vector<std::string> systems;
  {
    std::istringstream in(options.systems);
    std::string name;
    while (std::getline(in, name, ',')) {
      if (name != kPiController && name != kBeanstalkd) {
        return absl::InvalidArgumentError("--systems: unknown system \"" + name + "\"");
      }
      systems.push_back(name);
    }
  }
  if (systems.empty()) return absl::InvalidArgumentError("--systems is empty");
  for (int batch : *batches) {
    if (batch > 100) return absl::InvalidArgumentError("--batches: at most 100 (Dequeue's cap)");
  }

  nlohmann::json scenarios = nlohmann::json::array();
  nlohmann::json comparisons = nlohmann::json::array();
  std::optional<double> target_throughput;
  std::optional<double> target_beanstalkd;
  for (int batch : *batches) {
    for (int workers : *worker_counts) {
      const int max_backlog = options.max_backlog > 0
                                  ? options.max_backlog
                                  : 2 * std::max(options.producers, workers * batch);
      const Workload workload{
          options.messages, options.producers,  workers, batch, options.message_bytes,
          max_backlog,      options.max_seconds};
      std::map<std::string, nlohmann::json> by_system;
      for (const std::string& system : systems) {
        auto scenario = RunScenario(options, system, workload);
        if (!scenario.ok()) return scenario.status();
        std::fprintf(stderr, "%s\n", scenario->dump().c_str());
        by_system[system] = *scenario;
        scenarios.push_back(*scenario);
      }
      if (by_system.count(kPiController) && by_system.count(kBeanstalkd)) {
        const nlohmann::json& pi = by_system[kPiController];
        const nlohmann::json& beanstalk = by_system[kBeanstalkd];
        comparisons.push_back(
            {{"batch", batch},
             {"workers", workers},
             {"throughput_ratio_pi_over_beanstalkd",
              pi["msgs_per_s"].get<double>() /
                  std::max(1e-9, beanstalk["msgs_per_s"].get<double>())},
             {"p99_ratio_pi_over_beanstalkd",
              pi["p99_ms"].get<double>() / std::max(1e-9, beanstalk["p99_ms"].get<double>())}});
      }
      if (batch == 100 && by_system.count(kPiController)) {
        const double throughput = by_system[kPiController]["msgs_per_s"].get<double>();
        if (!target_throughput || throughput > *target_throughput) {
          target_throughput = throughput;
          if (by_system.count(kBeanstalkd)) {
            target_beanstalkd = by_system[kBeanstalkd]["msgs_per_s"].get<double>();
          }
        }
      }
    }
  }

  nlohmann::json result = {
      {"benchmark", "queue_end_to_end"},
      {"cpus", std::thread::hardware_concurrency()},
      {"path", "producers -> ingress (durable accept) -> worker take -> worker ack/delete"},
      {"latency", "from just before the POST/put is written to the answered ack/delete"},
      {"producer_connections",
       "one keep-alive connection per producer, one message in flight each"},
      {"max_seconds_producing", options.max_seconds},
      {"warmup_messages", options.warmup_messages},
      {"durability",
       {{kPiController, "HTTP 202 after commit; SQLite WAL, synchronous=FULL (queue.db)"},
        {kBeanstalkd,
         "beanstalkd -b DIR -f 0: binlog on, fsync on every binlog write (INSERTED after it)"}}},
      {"beanstalkd_batches",
       "no batch reserve/delete in its protocol: reserve-with-timeout 1, then B-1 "
       "reserve-with-timeout 0 pipelined in one write, then B deletes pipelined in one write"},
      {"scenarios", scenarios},
      {"comparisons", comparisons},
  };
  if (target_throughput) {
    nlohmann::json target = {{"batch", 100},
                             {"min_msgs_per_s", 10000},
                             {"pi_controller_msgs_per_s", *target_throughput},
                             {"met_min_msgs_per_s", *target_throughput >= 10000}};
    if (target_beanstalkd) {
      target["beanstalkd_msgs_per_s"] = *target_beanstalkd;
      target["faster_than_beanstalkd"] = *target_throughput > *target_beanstalkd;
    }
    result["target"] = target;
  }
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app{"End-to-end durable queue throughput: pi-controller against beanstalkd"};
  app.add_option("--controller", options.controller_path, "pi-controller binary");
  app.add_option("--beanstalkd", options.beanstalkd_path, "beanstalkd binary")
      ->capture_default_str();
  app.add_option("--systems", options.systems,
                 "comma-separated: pi-controller, beanstalkd ($PI_BENCH_QUEUE_SYSTEMS)")
      ->capture_default_str();
  app.add_option("--messages", options.messages,
                 "messages per measured scenario ($PI_BENCH_QUEUE_MESSAGES)")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000000));
  app.add_option("--warmup-messages", options.warmup_messages,
                 "messages through each fresh server before measuring "
                 "($PI_BENCH_QUEUE_WARMUP_MESSAGES)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  app.add_option("--producers", options.producers,
                 "producer connections, one message in flight each ($PI_BENCH_QUEUE_PRODUCERS)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--workers", options.workers,
                 "worker connections; a list runs each ($PI_BENCH_QUEUE_WORKERS)")
      ->capture_default_str();
  app.add_option("--batches", options.batches,
                 "messages a worker takes at once; a list runs each ($PI_BENCH_QUEUE_BATCHES)")
      ->capture_default_str();
  app.add_option("--message-bytes", options.message_bytes,
                 "message body size ($PI_BENCH_QUEUE_MESSAGE_BYTES)")
      ->capture_default_str()
      ->check(CLI::Range(64, 60000));
  app.add_option("--max-backlog", options.max_backlog,
                 "producers wait while this many messages are unsettled; 0 = "
                 "2*max(producers, workers*batch) ($PI_BENCH_QUEUE_MAX_BACKLOG)")
      ->capture_default_str()
      ->check(CLI::Range(0, 10000000));
  app.add_option("--max-seconds", options.max_seconds,
                 "stop producing after this long in each scenario ($PI_BENCH_QUEUE_MAX_SECONDS)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  CLI11_PARSE(app, argc, argv);
  if (options.systems.find(kPiController) != std::string::npos) {
    if (options.controller_path.empty()) {
      std::fprintf(stderr, "queue_bench: --controller is required to measure pi-controller\n");
      return 2;
    }
    // ChildProcess never searches PATH; accept a path relative to the working directory too.
    options.controller_path = std::filesystem::absolute(options.controller_path).string();
  }
  options.beanstalkd_path = std::filesystem::absolute(options.beanstalkd_path).string();
  const absl::StatusOr<nlohmann::json> result = Run(options);
  if (!result.ok()) {
    std::fprintf(stderr, "queue_bench: %s\n", std::string(result.status().message()).c_str());
    return 1;
  }
  std::printf("%s\n", result->dump().c_str());
  return 0;
}
