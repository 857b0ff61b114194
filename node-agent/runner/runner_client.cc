#include "node-agent/runner/runner_client.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "common/provisioning/profile.h"
#include "common/system/duration.h"
#include "common/text/utf8.h"
#include "forest/v1/runner.grpc.pb.h"
#include "node-agent/join/backoff.h"

namespace pi::agent::runner {
namespace {

namespace wire = forest::v1;
namespace provisioning = common::provisioning;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

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
  if (line.size() > provisioning::kMaxLogLineBytes) {
    size_t cut = provisioning::kMaxLogLineBytes;
    while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;
    line.resize(cut);
  }
  return line;
}

// The PushLogs stream of one release, opened with its first line. A line the controller cannot
// take ends the stream; the run goes on and its outcome is still reported, unless the answer is
// UNAUTHENTICATED: the controller revoked the token because the release has ended there
// (cancelled or timed out), and `revoked` is called to stop the run.
class LogStream {
 public:
  LogStream(wire::RunnerService::Stub& stub, std::string token, std::string release_id,
            common::CancelToken& cancel, std::function<void()> revoked)
      : stub_(stub),
        token_(std::move(token)),
        release_id_(std::move(release_id)),
        revoked_(std::move(revoked)) {
    // A cancelled run reports no outcome; its remaining lines are not worth a wait on a
    // controller that may be gone.
    cancel_registration_.emplace(cancel.OnCancel([this] { context_.TryCancel(); }));
  }

  void Write(std::string_view channel, std::string_view text) {
    std::lock_guard lock(mu_);
    if (ended_) return;
    if (!writer_) writer_ = stub_.PushLogs(&context_, &response_);
    // One message per line: the controller stores and shows lines, not chunks.
    size_t start = 0;
    while (true) {
      const size_t end = text.find('\n', start);
      if (!Send(channel, text.substr(start, end == std::string_view::npos ? end : end - start))) {
        // The controller ended the stream; its status says why.
        EndLocked(/*writes_done=*/false);
        return;
      }
      if (end == std::string_view::npos || end + 1 == text.size()) return;
      start = end + 1;
    }
  }

  // Ends the stream and waits for the controller's answer.
  void Close() {
    std::lock_guard lock(mu_);
    if (writer_) EndLocked(/*writes_done=*/true);
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

  void EndLocked(bool writes_done) {
    if (writes_done) writer_->WritesDone();
    const grpc::Status status = writer_->Finish();
    writer_.reset();
    ended_ = true;
    if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
      revoked_();
    } else if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      spdlog::warn("log lines of release {} were not all delivered ({})", release_id_,
                   Describe(status));
    }
  }

  wire::RunnerService::Stub& stub_;
  const std::string token_;
  const std::string release_id_;
  const std::function<void()> revoked_;
  std::mutex mu_;
  grpc::ClientContext context_;
  wire::PushLogResponse response_;
  std::unique_ptr<grpc::ClientWriter<wire::PushLogRequest>> writer_;
  bool ended_ = false;
  std::optional<common::CancelToken::Registration> cancel_registration_;
};

// Probes a release's token every `interval` while its profile runs, and calls `revoked` once the
// controller answers UNAUTHENTICATED. A step that prints nothing (a long command) sends no log
// line whose answer would tell the runner that the release was cancelled or timed out.
class RevocationProbe {
 public:
  RevocationProbe(wire::RunnerService::Stub& stub, std::string token, nanoseconds interval,
                  milliseconds timeout, std::function<void()> revoked)
      : thread_([this, &stub, token = std::move(token), interval, timeout,
                 revoked = std::move(revoked)] {
          while (!done_.WaitFor(interval)) {
            grpc::ClientContext context;
            context.set_deadline(std::chrono::system_clock::now() + timeout);
            const auto registration = done_.OnCancel([&context] { context.TryCancel(); });
            wire::GetReleaseAnnotationRequest request;
            request.set_release_token(token);
            wire::ReleaseAnnotationResponse response;
            const grpc::Status status = stub.GetReleaseAnnotation(&context, request, &response);
            if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
              revoked();
              return;
            }
          }
        }) {}

  ~RevocationProbe() {
    done_.Cancel();
    thread_.join();
  }

  RevocationProbe(const RevocationProbe&) = delete;
  RevocationProbe& operator=(const RevocationProbe&) = delete;

 private:
  common::CancelToken done_;
  std::thread thread_;
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
  capability->set_organisation(std::string(provisioning::kProvisionOrganisation));
  capability->set_name(std::string(provisioning::kProvisionName));
  capability->set_version(provisioning::kProvisionVersion);
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
  if (type.organisation() != provisioning::kProvisionOrganisation ||
      type.name() != provisioning::kProvisionName ||
      type.version() != provisioning::kProvisionVersion) {
    return fmt::format("destination type {}/{}@{} is not {}/{}@{}", type.organisation(),
                       type.name(), type.version(), provisioning::kProvisionOrganisation,
                       provisioning::kProvisionName, provisioning::kProvisionVersion);
  }
  const auto& metadata = assignment.destination().metadata();
  if (auto pinned = metadata.find(std::string(provisioning::kNodeIdMetadataKey));
      pinned != metadata.end() && !pinned->second.empty() && pinned->second != options_.node_id) {
    return fmt::format("it is pinned to node {}, this is node {}", pinned->second,
                       options_.node_id);
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
  // Stop() may have cancelled the running releases just now: this one then does not start.
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
  const std::string& token = assignment.release_token();
  const bool plan = assignment.mode() == wire::RELEASE_MODE_PLAN;
  spdlog::info("runner {} running release {} ({})", options_.node_id, id, plan ? "plan" : "deploy");

  std::atomic<bool> revoked{false};
  const auto on_revoked = [&revoked, &cancel] {
    revoked = true;
    cancel.Cancel();
  };
  wire::CompleteReleaseRequest completion;
  completion.set_release_token(token);
  completion.set_outcome(wire::RELEASE_OUTCOME_FAILURE);
  auto files = FetchFiles(*work.stub, token, options_.rpc_timeout, cancel);
  if (absl::IsUnauthenticated(files.status())) {
    on_revoked();
  } else if (!files.ok()) {
    completion.set_error_message(std::string(files.status().message()));
  } else {
    RevocationProbe probe(*work.stub, token, options_.heartbeat_interval, options_.rpc_timeout,
                          on_revoked);
    LogStream logs(*work.stub, token, id, cancel, on_revoked);
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
  // The run was cut short, so its outcome says nothing about the release. The controller ended
  // it already (revoked), or requeues or fails it once this runner's stream is gone.
  if (cancel.cancelled()) {
    if (revoked) {
      spdlog::info("release {} was cancelled or timed out on the controller; its run was stopped",
                   id);
    } else {
      spdlog::warn(
          "release {} was stopped because {}; the controller requeues or fails it", id,
          stop_.cancelled() ? "pi-agent is stopping" : "the connection to the controller was lost");
    }
    return;
  }
  completion.set_error_message(LogLineText(completion.error_message()));

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
