#include "node-agent/runner/runner_client.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <optional>
#include <utility>
#include <vector>

#include "common/system/duration.h"
#include "common/text/utf8.h"
#include "forest/v1/runner.grpc.pb.h"
#include "node-agent/join/backoff.h"

namespace pi::agent::runner {
namespace {

namespace wire = forest::v1;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

// The one destination type pi-agent runs (DESIGN 5.3), and the metadata key that pins a release
// to a node; both as the controller writes them.
constexpr char kProvisionOrganisation[] = "picontroller";
constexpr char kProvisionName[] = "provision";
constexpr uint64_t kProvisionVersion = 1;
constexpr char kNodeIdMetadataKey[] = "node_id";
// The controller refuses longer log lines (and with them the rest of the stream).
constexpr size_t kMaxLogLineBytes = 64 * 1024;

std::string Describe(const grpc::Status& status) {
  return fmt::format("{}: {}",
                     absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())),
                     status.error_message());
}

uint64_t NowMillis() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

// Valid UTF-8 (a proto3 string must be) and at most kMaxLogLineBytes, cut at a character
// boundary.
std::string LogLineText(std::string_view raw) {
  std::string line = common::ToValidUtf8(raw);
  if (line.size() > kMaxLogLineBytes) {
    size_t cut = kMaxLogLineBytes;
    while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;
    line.resize(cut);
  }
  return line;
}

// The PushLogs stream of one release, opened with its first line. A line the controller cannot
// take ends the stream; the run goes on and its outcome is still reported.
class LogStream {
 public:
  LogStream(wire::RunnerService::Stub& stub, std::string token, std::string release_id,
            common::CancelToken& cancel)
      : stub_(stub), token_(std::move(token)), release_id_(std::move(release_id)) {
    // A run that is cancelled reports its outcome through CompleteRelease; its remaining lines
    // are not worth a wait on a controller that may be gone.
    cancel_registration_.emplace(cancel.OnCancel([this] { context_.TryCancel(); }));
  }

  void Write(std::string_view channel, std::string_view text) {
    std::lock_guard lock(mu_);
    if (broken_) return;
    if (!writer_) writer_ = stub_.PushLogs(&context_, &response_);
    // One message per line: the controller stores and shows lines, not chunks.
    size_t start = 0;
    while (true) {
      const size_t end = text.find('\n', start);
      if (!Send(channel, text.substr(start, end == std::string_view::npos ? end : end - start))) {
        broken_ = true;
        return;
      }
      if (end == std::string_view::npos || end + 1 == text.size()) return;
      start = end + 1;
    }
  }

  // Ends the stream and waits for the controller's answer.
  void Close() {
    std::lock_guard lock(mu_);
    if (!writer_) return;
    if (!broken_) writer_->WritesDone();
    const grpc::Status status = writer_->Finish();
    if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      spdlog::warn("log lines of release {} were not all delivered ({})", release_id_,
                   Describe(status));
    }
    writer_.reset();
  }

  ~LogStream() { Close(); }

 private:
  bool Send(std::string_view channel, std::string_view line) {
    wire::PushLogRequest request;
    request.set_release_token(token_);
    request.set_channel(channel == "stderr" ? "stderr" : "stdout");
    request.set_line(LogLineText(line));
    request.set_timestamp(NowMillis());
    return writer_->Write(request);
  }

  wire::RunnerService::Stub& stub_;
  const std::string token_;
  const std::string release_id_;
  std::mutex mu_;
  grpc::ClientContext context_;
  wire::PushLogResponse response_;
  std::unique_ptr<grpc::ClientWriter<wire::PushLogRequest>> writer_;
  bool broken_ = false;
  std::optional<common::CancelToken::Registration> cancel_registration_;
};

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> FetchFiles(
    wire::RunnerService::Stub& stub, const std::string& token, milliseconds timeout,
    common::CancelToken& cancel) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  auto registration = cancel.OnCancel([&context] { context.TryCancel(); });
  wire::GetReleaseFilesRequest request;
  request.set_release_token(token);
  auto reader = stub.GetReleaseFiles(&context, request);
  std::vector<std::pair<std::string, std::string>> files;
  wire::ReleaseFile file;
  while (reader->Read(&file)) {
    files.emplace_back(std::move(*file.mutable_file_name()),
                       std::move(*file.mutable_file_content()));
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        fmt::format("cannot fetch the release files ({})", Describe(status)));
  }
  return files;
}

}  // namespace

struct RunnerClient::Stream {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderWriter<wire::RunnerMessage, wire::ServerMessage>> rpc;
  std::shared_ptr<wire::RunnerService::Stub> stub;
  // Set once the stream has ended, to stop the heartbeats.
  common::CancelToken done;
  // Heartbeats and work acks are written from two threads; gRPC allows one writer at a time.
  std::mutex write_mu;

  bool Write(const wire::RunnerMessage& message) {
    std::lock_guard lock(write_mu);
    return rpc->Write(message);
  }
};

struct RunnerClient::Work {
  std::shared_ptr<wire::RunnerService::Stub> stub;
  wire::WorkAssignment assignment;
};

struct RunnerClient::Worker {
  common::CancelToken cancel;
  std::atomic<bool> finished{false};
  std::thread thread;
};

RunnerClient::RunnerClient(RunnerClientOptions options, ProfileExecutor& executor)
    : options_(std::move(options)), executor_(executor) {}

RunnerClient::~RunnerClient() { Stop(); }

void RunnerClient::Start() {
  thread_ = std::thread([this] { Run(); });
}

void RunnerClient::Stop() {
  stop_.Cancel();
  // The releases report their outcome while the stream still holds their tokens valid.
  CancelAndJoinWorkers();
  stop_stream_.Cancel();
  if (thread_.joinable()) thread_.join();
}

void RunnerClient::Run() {
  join::Backoff backoff(options_.initial_backoff, options_.max_backoff);
  while (!stop_.cancelled()) {
    bool registered = false;
    const absl::Status status = RunSession(registered);
    if (stop_.cancelled()) break;
    if (registered) backoff.Success();
    const nanoseconds delay = backoff.Failure();
    spdlog::warn("runner {}: {}; reconnecting in {}", options_.node_id,
                 std::string(status.message()), common::FormatDuration(delay));
    stop_.WaitFor(backoff.Remaining());
  }
}

absl::Status RunnerClient::RunSession(bool& registered) {
  auto credentials = common::MakeChannelCredentials(options_.tls);
  if (!credentials.ok()) {
    return absl::Status(credentials.status().code(),
                        fmt::format("cannot load the node certificate to reach the controller: {}",
                                    std::string(credentials.status().message())));
  }
  Stream stream;
  stream.stub = wire::RunnerService::NewStub(grpc::CreateChannel(options_.address, *credentials));
  const auto stream_registration = stop_stream_.OnCancel([&stream] { stream.context.TryCancel(); });
  stream.rpc = stream.stub->RegisterRunner(&stream.context);

  wire::RunnerMessage hello;
  auto* register_message = hello.mutable_register_();
  register_message->set_runner_id(options_.node_id);
  auto* capability = register_message->add_capabilities();
  capability->set_organisation(kProvisionOrganisation);
  capability->set_name(kProvisionName);
  capability->set_version(kProvisionVersion);
  register_message->set_max_concurrent(options_.max_concurrent);

  std::thread heartbeats;
  std::string ended;
  wire::ServerMessage message;
  if (!stream.Write(hello) || !stream.rpc->Read(&message)) {
    ended = fmt::format("cannot register as a runner with the controller at {}", options_.address);
  } else if (!message.has_register_ack()) {
    stream.context.TryCancel();
    ended = "the controller did not answer the registration with a RegisterAck";
  } else if (!message.register_ack().accepted()) {
    stream.context.TryCancel();
    const std::string& reason = message.register_ack().reason();
    ended = fmt::format("the controller at {} refused the runner registration: {}",
                        options_.address, reason.empty() ? "no reason given" : reason);
  } else {
    registered = true;
    registrations_.fetch_add(1);
    spdlog::info("runner {} registered with the controller at {} (provision@1, up to {} at once)",
                 message.register_ack().runner_id(), options_.address, options_.max_concurrent);
    heartbeats = std::thread([this, &stream] { Heartbeat(stream); });
    while (stream.rpc->Read(&message)) {
      if (message.has_work_assignment()) {
        HandleAssignment(stream, Work{stream.stub, message.work_assignment()});
      }
    }
    ended = fmt::format("the RegisterRunner stream to {} ended", options_.address);
  }
  stream.done.Cancel();
  if (heartbeats.joinable()) heartbeats.join();
  const grpc::Status status = stream.rpc->Finish();
  // The controller revoked the tokens of this stream's releases when it ended.
  CancelAndJoinWorkers();
  if (stop_stream_.cancelled()) return absl::OkStatus();
  if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
    ended = fmt::format("{} ({})", ended, Describe(status));
  }
  return absl::UnavailableError(ended);
}

void RunnerClient::Heartbeat(Stream& stream) {
  // Reached only after the RegisterAck; heartbeats keep the controller from dropping the runner.
  wire::RunnerMessage heartbeat;
  while (!stream.done.WaitFor(options_.heartbeat_interval)) {
    heartbeat.mutable_heartbeat()->set_active_releases(active_.load());
    if (!stream.Write(heartbeat)) return;
  }
}

std::string RunnerClient::Refusal(const Work& work) const {
  const wire::WorkAssignment& assignment = work.assignment;
  if (stop_.cancelled()) return "pi-agent is stopping";
  const wire::DestinationCapability& type = assignment.destination().type();
  if (type.organisation() != kProvisionOrganisation || type.name() != kProvisionName ||
      type.version() != kProvisionVersion) {
    return fmt::format("destination type {}/{}@{} is not {}/{}@{}", type.organisation(),
                       type.name(), type.version(), kProvisionOrganisation, kProvisionName,
                       kProvisionVersion);
  }
  const auto& metadata = assignment.destination().metadata();
  if (auto pinned = metadata.find(kNodeIdMetadataKey);
      pinned != metadata.end() && !pinned->second.empty() && pinned->second != options_.node_id) {
    return fmt::format("it is pinned to node {}, this is node {}", pinned->second,
                       options_.node_id);
  }
  if (active_.load() >= options_.max_concurrent) {
    return fmt::format("busy: {} of {} releases running", active_.load(), options_.max_concurrent);
  }
  return "";
}

void RunnerClient::HandleAssignment(Stream& stream, Work work) {
  const std::string refusal = Refusal(work);
  wire::RunnerMessage ack;
  ack.mutable_work_ack()->set_release_token(work.assignment.release_token());
  ack.mutable_work_ack()->set_accepted(refusal.empty());
  if (!refusal.empty()) {
    spdlog::info("runner {} refused release {}: {}", options_.node_id, work.assignment.release_id(),
                 refusal);
    stream.Write(ack);
    return;
  }
  // A lost stream revoked the token already: the controller requeues the release.
  if (!stream.Write(ack)) return;
  StartWorker(std::move(work));
}

void RunnerClient::StartWorker(Work work) {
  std::lock_guard lock(workers_mu_);
  // Threads of releases that ended are joined here, so they do not pile up.
  workers_.remove_if([](const std::unique_ptr<Worker>& worker) {
    if (!worker->finished.load()) return false;
    worker->thread.join();
    return true;
  });
  auto worker = std::make_unique<Worker>();
  // Stop() may have cancelled the running releases just now: this one then only reports that.
  if (stop_.cancelled()) worker->cancel.Cancel();
  active_.fetch_add(1);
  Worker* raw = worker.get();
  raw->thread = std::thread([this, raw, work = std::move(work)] {
    RunRelease(work, raw->cancel);
    active_.fetch_sub(1);
    raw->finished = true;
  });
  workers_.push_back(std::move(worker));
}

void RunnerClient::CancelAndJoinWorkers() {
  std::list<std::unique_ptr<Worker>> workers;
  {
    std::lock_guard lock(workers_mu_);
    workers.swap(workers_);
  }
  for (auto& worker : workers) worker->cancel.Cancel();
  for (auto& worker : workers) worker->thread.join();
}

void RunnerClient::RunRelease(const Work& work, common::CancelToken& cancel) {
  const wire::WorkAssignment& assignment = work.assignment;
  const std::string& id = assignment.release_id();
  const bool plan = assignment.mode() == wire::RELEASE_MODE_PLAN;
  spdlog::info("runner {} running release {} ({})", options_.node_id, id, plan ? "plan" : "deploy");

  wire::CompleteReleaseRequest completion;
  completion.set_release_token(assignment.release_token());
  completion.set_outcome(wire::RELEASE_OUTCOME_FAILURE);
  auto files = FetchFiles(*work.stub, assignment.release_token(), options_.rpc_timeout, cancel);
  if (!files.ok()) {
    completion.set_error_message(std::string(files.status().message()));
  } else {
    LogStream logs(*work.stub, assignment.release_token(), id, cancel);
    auto result = executor_.Run(
        *files, plan,
        [&logs](std::string_view channel, std::string_view line) { logs.Write(channel, line); },
        &cancel);
    logs.Close();
    if (!result.ok()) {
      completion.set_error_message(std::string(result.status().message()));
    } else if (result->success) {
      completion.set_outcome(wire::RELEASE_OUTCOME_SUCCESS);
      // A plan for review in plan mode; in deploy mode the same summary of what was done.
      completion.set_plan_output(result->plan_output);
    } else {
      completion.set_error_message(result->error_message);
    }
  }
  if (completion.outcome() == wire::RELEASE_OUTCOME_FAILURE && cancel.cancelled()) {
    completion.set_error_message(fmt::format(
        "{}: {}",
        stop_.cancelled() ? "cancelled because pi-agent is stopping"
                          : "cancelled because the connection to the controller was lost",
        completion.error_message()));
  }
  completion.set_error_message(LogLineText(completion.error_message()));

  // Always sent, also for a cancelled run, so the release ends at once instead of waiting for the
  // controller to notice the runner is gone.
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + options_.rpc_timeout);
  wire::CompleteReleaseResponse response;
  const grpc::Status status = work.stub->CompleteRelease(&context, completion, &response);
  const bool succeeded = completion.outcome() == wire::RELEASE_OUTCOME_SUCCESS;
  if (status.ok()) {
    if (succeeded) {
      spdlog::info("release {} succeeded", id);
    } else {
      spdlog::warn("release {} failed: {}", id, completion.error_message());
    }
  } else if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
    spdlog::info("release {} ended on the controller before its outcome ({}) was reported: {}", id,
                 succeeded ? "success" : "failure", status.error_message());
  } else {
    spdlog::warn(
        "cannot report the outcome of release {} ({}); the controller fails or requeues it "
        "when its runner is gone",
        id, Describe(status));
  }
}

}  // namespace pi::agent::runner
