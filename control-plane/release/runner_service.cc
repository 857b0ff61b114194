#include "control-plane/release/runner_service.h"

#include <fmt/format.h>
#include <google/protobuf/util/time_util.h>
#include <spdlog/spdlog.h>

#include <deque>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "common/grpc/proto_time.h"
#include "common/grpc/status.h"
#include "common/grpc/unary_task.h"
#include "common/tls/peer_identity.h"
#include "common/tls/x509.h"

namespace pi::controlplane::release {
namespace {

namespace wire = forest::v1;

// Lines a PushLogs stream holds while the engine takes the previous ones; beyond this it stops
// reading, so a runner that outpaces the engine is slowed by flow control instead of growing the
// controller's memory.
constexpr size_t kMaxPendingLogLines = 1024;

constexpr std::string_view kShuttingDown = "pi-controller is shutting down";

// A call answered before it started: refused, or answered from memory.
template <typename Reactor>
class Finished final : public Reactor {
 public:
  explicit Finished(const absl::Status& status) { this->Finish(common::ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

// The verified certificate identity of a runner or of a node's agent. The cluster listener only
// requests client certificates (other services on it take callers without one), so a caller
// without one gets this far and is refused here.
absl::StatusOr<common::Identity> RunnerIdentityOf(const grpc::ServerContextBase& context,
                                                  std::string_view operation) {
  const std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr) {
    return absl::UnauthenticatedError(
        fmt::format("{} needs a TLS client certificate of a runner or node", operation));
  }
  // The listener verifies every certificate that is presented.
  absl::StatusOr<common::Identity> identity = common::IdentityFromAuthContext(*auth, true);
  if (!identity.ok()) return identity.status();
  absl::Status allowed =
      common::RequireRole(*identity, {common::Role::kRunner, common::Role::kNode}, operation);
  if (!allowed.ok()) return allowed;
  return identity;
}

// Who registers: the identity of the verified client certificate and that certificate's
// fingerprint, for the authorizer to compare with the node's own.
struct Caller {
  common::Identity identity;
  std::string cert_sha256;
};

absl::StatusOr<Caller> CallerOf(const grpc::ServerContextBase& context) {
  absl::StatusOr<common::Identity> identity =
      RunnerIdentityOf(context, "RunnerService.RegisterRunner");
  if (!identity.ok()) return identity.status();
  const auto pems = context.auth_context()->FindPropertyValues("x509_pem_cert");
  if (pems.size() != 1) {
    return absl::UnauthenticatedError("the connection carries no single client certificate");
  }
  absl::StatusOr<common::CertificateInfo> certificate =
      common::ParseCertificate(std::string_view(pems.front().data(), pems.front().size()));
  if (!certificate.ok()) {
    return absl::UnauthenticatedError(fmt::format("the client certificate cannot be read: {}",
                                                  std::string(certificate.status().message())));
  }
  return Caller{*std::move(identity), certificate->sha256_fingerprint};
}

RunnerHello HelloFrom(const wire::RunnerRegister& request) {
  RunnerHello hello;
  hello.runner_id = request.runner_id();
  for (const wire::DestinationCapability& capability : request.capabilities()) {
    hello.capabilities.push_back(DestinationType{.organisation = capability.organisation(),
                                                 .name = capability.name(),
                                                 .version = capability.version()});
  }
  hello.max_concurrent = request.max_concurrent();
  return hello;
}

wire::ServerMessage AckMessage(const std::string& runner_id, const absl::Status& refusal) {
  wire::ServerMessage message;
  wire::RegisterAck* ack = message.mutable_register_ack();
  ack->set_runner_id(runner_id);
  ack->set_accepted(refusal.ok());
  if (!refusal.ok()) ack->set_reason(std::string(refusal.message()));
  return message;
}

wire::ServerMessage AssignmentMessage(const Assignment& assignment) {
  const Release& release = assignment.release;
  wire::ServerMessage message;
  wire::WorkAssignment* work = message.mutable_work_assignment();
  work->set_release_token(assignment.token);
  work->set_release_id(release.id);
  // Forest's intent is what asked for the release: here the provisioning request, if any.
  work->set_release_intent_id(release.provisioning_id.empty() ? release.id
                                                              : release.provisioning_id);
  work->set_artifact_id(release.id);
  work->set_destination_id(release.node_id.empty() ? release.destination_name : release.node_id);
  wire::DestinationInfo* destination = work->mutable_destination();
  destination->set_name(release.destination_name);
  destination->set_environment(release.environment);
  destination->mutable_metadata()->insert(release.metadata.begin(), release.metadata.end());
  wire::DestinationCapability* type = destination->mutable_type();
  type->set_organisation(release.type.organisation);
  type->set_name(release.type.name);
  type->set_version(release.type.version);
  destination->set_organisation(release.project_organisation);
  work->set_mode(release.plan ? wire::RELEASE_MODE_PLAN : wire::RELEASE_MODE_DEPLOY);
  return message;
}

absl::StatusOr<ReleaseEngine::Outcome> OutcomeFrom(wire::ReleaseOutcome outcome) {
  switch (outcome) {
    case wire::RELEASE_OUTCOME_SUCCESS:
      return ReleaseEngine::Outcome::kSuccess;
    case wire::RELEASE_OUTCOME_FAILURE:
      return ReleaseEngine::Outcome::kFailure;
    default:
      break;
  }
  return absl::InvalidArgumentError(
      fmt::format("outcome must be RELEASE_OUTCOME_SUCCESS or RELEASE_OUTCOME_FAILURE, not {}",
                  static_cast<int>(outcome)));
}

}  // namespace

// One RegisterRunner call. Its state is shared with the engine (as the runner's channel) and
// with the tasks that call the engine, so it lives until the last of them lets go; gRPC is done
// with it at OnDone. Messages are read one at a time: the next read starts when the previous
// message has been handled, which keeps a runner's messages in order.
class RunnerService::RunnerStream final
    : public grpc::ServerBidiReactor<wire::RunnerMessage, wire::ServerMessage>,
      public RunnerChannel,
      public std::enable_shared_from_this<RunnerStream> {
 public:
  RunnerStream(RunnerService& service, absl::StatusOr<Caller> caller)
      : service_(service), caller_(std::move(caller)) {}

  void Begin() { ReadNext(); }

  // Ends the call with `status` once the messages already queued are written.
  void End(const grpc::Status& status) {
    std::lock_guard lock(mu_);
    if (!ending_.has_value()) ending_ = status;
    FinishIfDrainedLocked();
  }

  void Assign(const Assignment& assignment) override {
    std::lock_guard lock(mu_);
    // The runner is on its way out; the engine takes the release back at DisconnectRunner.
    if (ending_.has_value()) return;
    outgoing_.push_back(AssignmentMessage(assignment));
    WriteNextLocked();
  }

  void Close(const absl::Status& status) override { End(common::ToGrpcStatus(status)); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The runner closed its side or the call was cancelled.
      End(grpc::Status::OK);
      return;
    }
    if (!registering_started_) {
      registering_started_ = true;
      if (!incoming_.has_register_()) {
        End(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                         "the first message of RegisterRunner must be register"));
        return;
      }
      RunTaskOrRefuse(
          [self = shared_from_this(), hello = HelloFrom(incoming_.register_())]() mutable {
            self->Register(std::move(hello));
          });
      return;
    }
    RunnerSession session;
    {
      std::lock_guard lock(mu_);
      session = *session_;
    }
    switch (incoming_.message_case()) {
      case wire::RunnerMessage::kRegister:
        End(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                         "register may only be sent once, as the first message"));
        return;
      case wire::RunnerMessage::kHeartbeat:
        service_.engine_.Heartbeat(session, incoming_.heartbeat().active_releases());
        ReadNext();
        return;
      case wire::RunnerMessage::kWorkAck:
        AckWork(session, incoming_.work_ack());
        return;
      case wire::RunnerMessage::MESSAGE_NOT_SET:
        break;
    }
    // A newer runner may send messages this server does not know: they are not an error.
    ReadNext();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    writing_ = false;
    outgoing_.pop_front();
    if (!ok) {
      // The call is broken (usually cancelled): nothing more can be delivered.
      outgoing_.clear();
      if (!ending_.has_value()) {
        ending_ = grpc::Status(grpc::StatusCode::UNAVAILABLE, "the stream to the runner broke");
      }
    }
    WriteNextLocked();
    FinishIfDrainedLocked();
  }

  void OnCancel() override {
    End(grpc::Status(grpc::StatusCode::CANCELLED, "the runner cancelled the stream"));
  }

  void OnDone() override {
    std::optional<RunnerSession> connected;
    std::string reason;
    {
      std::lock_guard lock(mu_);
      done_ = true;
      // Exactly one of OnDone and Register sees both the session and done_.
      connected = session_;
      if (ending_.has_value() && !ending_->ok()) reason = ending_->error_message();
    }
    if (connected.has_value()) {
      if (reason.empty()) reason = "the runner closed its stream";
      service_.Disconnect(*connected, std::move(reason));
    }
    // The last statement: may destroy this stream.
    service_.Forget(this);
  }

 private:
  // On a task thread: authenticates the caller and connects the runner.
  void Register(RunnerHello hello) {
    if (!caller_.ok()) {
      Refuse(hello.runner_id, caller_.status());
      return;
    }
    if (service_.authorize_) {
      absl::Status allowed = service_.authorize_(caller_->identity, caller_->cert_sha256);
      if (!allowed.ok()) {
        Refuse(hello.runner_id, allowed);
        return;
      }
    }
    const std::string requested_id = hello.runner_id;
    absl::StatusOr<RunnerSession> session =
        service_.engine_.ConnectRunner(caller_->identity, std::move(hello), shared_from_this());
    if (!session.ok()) {
      Refuse(requested_id, session.status());
      return;
    }
    bool ended_meanwhile = false;
    {
      std::lock_guard lock(mu_);
      ended_meanwhile = done_;
      if (!ended_meanwhile) {
        session_ = *session;
        // Assignments the engine made during ConnectRunner wait behind the acknowledgement.
        outgoing_.push_front(AckMessage(session->runner_id, absl::OkStatus()));
        holding_writes_ = false;
        WriteNextLocked();
      }
    }
    if (ended_meanwhile) {
      service_.engine_.DisconnectRunner(*session, "the stream ended while the runner registered");
      return;
    }
    spdlog::info("runner {} connected as {}", session->runner_id, caller_->identity.ToString());
    ReadNext();
  }

  void Refuse(const std::string& runner_id, const absl::Status& refusal) {
    spdlog::warn("refused runner registration{} from {}: {}",
                 runner_id.empty() ? "" : " of " + runner_id,
                 caller_.ok() ? caller_->identity.ToString()
                              : "a caller without a runner or node certificate",
                 std::string(refusal.message()));
    std::lock_guard lock(mu_);
    outgoing_.push_back(AckMessage(runner_id, refusal));
    holding_writes_ = false;
    if (!ending_.has_value()) ending_ = common::ToGrpcStatus(refusal);
    WriteNextLocked();
    FinishIfDrainedLocked();
  }

  void AckWork(const RunnerSession& session, const wire::WorkAck& ack) {
    RunTaskOrContinue([self = shared_from_this(), session, token = ack.release_token(),
                       accepted = ack.accepted()] {
      absl::Status applied = self->service_.engine_.WorkAck(session, token, accepted);
      // A stale or foreign token is the runner's mistake about one release, not about the
      // stream: its other work goes on.
      if (!applied.ok()) {
        spdlog::warn("runner {}: work {} not applied: {}", session.runner_id,
                     accepted ? "acceptance" : "rejection", std::string(applied.message()));
      }
      self->ReadNext();
    });
  }

  void RunTaskOrRefuse(std::function<void()> task) {
    absl::Status started = service_.tasks_.Run(std::move(task));
    if (!started.ok()) Refuse("", started);
  }

  void RunTaskOrContinue(std::function<void()> task) {
    absl::Status started = service_.tasks_.Run(std::move(task));
    if (started.ok()) return;
    spdlog::warn("runner message dropped: {}", std::string(started.message()));
    ReadNext();
  }

  void ReadNext() {
    std::lock_guard lock(mu_);
    if (ending_.has_value()) return;
    StartRead(&incoming_);
  }

  void WriteNextLocked() {
    if (finished_ || writing_ || holding_writes_ || outgoing_.empty()) return;
    writing_ = true;
    StartWrite(&outgoing_.front());
  }

  // Finish may not overlap a write, and the last acknowledgement should reach the runner
  // before the status does.
  void FinishIfDrainedLocked() {
    if (!ending_.has_value() || finished_ || writing_) return;
    if (!outgoing_.empty() && !holding_writes_) return;
    finished_ = true;
    Finish(*ending_);
  }

  RunnerService& service_;
  const absl::StatusOr<Caller> caller_;
  // Touched only by the read path, one message at a time.
  wire::RunnerMessage incoming_;
  bool registering_started_ = false;

  std::mutex mu_;
  std::optional<RunnerSession> session_;
  std::deque<wire::ServerMessage> outgoing_;
  bool writing_ = false;
  // Nothing is written before the RegisterAck.
  bool holding_writes_ = true;
  std::optional<grpc::Status> ending_;
  bool finished_ = false;
  bool done_ = false;
};

// GetReleaseFiles / GetSpecFiles: fetches the files on a task (the first fetch may mark the
// release RUNNING, a store write), then writes them one message each.
class RunnerService::FilesStream final : public grpc::ServerWriteReactor<wire::ReleaseFile> {
 public:
  void Send(absl::StatusOr<std::vector<ReleaseFile>> files) {
    if (!files.ok()) {
      Finish(common::ToGrpcStatus(files.status()));
      return;
    }
    files_ = *std::move(files);
    WriteNext();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the runner stopped reading"));
      return;
    }
    WriteNext();
  }

  void OnDone() override { delete this; }

 private:
  void WriteNext() {
    if (next_ == files_.size()) {
      Finish(grpc::Status::OK);
      return;
    }
    message_.set_file_name(files_[next_].name);
    message_.set_file_content(std::move(files_[next_].content));
    ++next_;
    StartWrite(&message_);
  }

  std::vector<ReleaseFile> files_;
  size_t next_ = 0;
  wire::ReleaseFile message_;
};

// PushLogs: every line goes to the engine as it arrives, so followers see it live and a token
// revoked meanwhile ends the stream at once: that is how a runner learns its release was
// cancelled. One task at a time hands the engine every line that waits, which keeps them in
// order; reading goes on meanwhile, up to kMaxPendingLogLines. At the end of the stream the
// engine writes the lines to disk before the answer, so an OK means they are durable.
class RunnerService::LogStream final : public grpc::ServerReadReactor<wire::PushLogRequest> {
 public:
  // `caller` is the verified identity of the runner; only the holder of a release may log to it.
  LogStream(RunnerService& service, std::string caller)
      : service_(service), caller_(std::move(caller)) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    // Outside the lock: token_ changes only on the first message, before any drain reads it,
    // and nothing reads into request_ while this runs.
    const absl::Status accepted = ok ? Accept() : absl::OkStatus();
    std::unique_lock lock(mu_);
    if (finishing_) return;
    if (!ok) {
      input_ended_ = true;
      if (!draining_) StartDrainLocked(lock);
      return;
    }
    if (!accepted.ok()) {
      // A running drain ends the call when it sees the failure; gRPC must not be told twice.
      failure_ = common::ToGrpcStatus(accepted);
      if (!draining_) FinishLocked(lock, *failure_);
      return;
    }
    pending_.push_back(LogLine{.sequence = 0,
                               .channel = request_.channel(),
                               .line = request_.line(),
                               .timestamp_ms = request_.timestamp()});
    if (!draining_ && !StartDrainLocked(lock)) return;
    if (pending_.size() >= kMaxPendingLogLines) {
      reading_paused_ = true;
      return;
    }
    // Under the lock, so that a drain cannot finish the call before the read is started.
    StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  // Checks a message's token: the first against the engine and the caller, the others against
  // the first.
  absl::Status Accept() {
    const std::string& token = request_.release_token();
    if (token_.empty()) {
      absl::StatusOr<TokenScope> scope = service_.ScopeHeldBy(caller_, token);
      if (!scope.ok()) return scope.status();
      token_ = token;
      return absl::OkStatus();
    }
    if (token == token_) return absl::OkStatus();
    if (token.empty()) return absl::UnauthenticatedError("release_token is required");
    return absl::InvalidArgumentError(
        "a PushLogs stream carries the lines of one release: every message needs the same "
        "release_token");
  }

  // Returns false when the call was finished instead.
  bool StartDrainLocked(std::unique_lock<std::mutex>& lock) {
    absl::Status started = service_.tasks_.Run([this] { Drain(); });
    if (!started.ok()) {
      FinishLocked(lock, common::ToGrpcStatus(started));
      return false;
    }
    draining_ = true;
    return true;
  }

  // On a task thread, the only one of this stream: hands over lines until none wait, then ends
  // the call if the engine refused some or the runner has sent everything.
  void Drain() {
    std::unique_lock lock(mu_);
    while (!failure_.has_value() && !pending_.empty()) {
      std::vector<LogLine> lines;
      lines.swap(pending_);
      if (std::exchange(reading_paused_, false)) StartRead(&request_);
      lock.unlock();
      absl::Status appended = service_.engine_.AppendLogs(token_, std::move(lines));
      lock.lock();
      if (!appended.ok() && !failure_.has_value()) failure_ = common::ToGrpcStatus(appended);
    }
    draining_ = false;
    if (failure_.has_value()) {
      FinishLocked(lock, *failure_);
      return;
    }
    if (!input_ended_) return;
    finishing_ = true;
    lock.unlock();
    Finish(common::ToGrpcStatus(service_.engine_.FlushLogs()));
  }

  // Finish may run OnDone, which deletes this stream, before it returns: the lock is let go
  // first and nothing is touched after.
  void FinishLocked(std::unique_lock<std::mutex>& lock, grpc::Status status) {
    finishing_ = true;
    lock.unlock();
    Finish(status);
  }

  RunnerService& service_;
  const std::string caller_;
  // The read path's: request_ between reads, token_ set by the first message (before any drain
  // reads it).
  wire::PushLogRequest request_;
  std::string token_;

  std::mutex mu_;
  std::vector<LogLine> pending_;
  bool draining_ = false;
  bool reading_paused_ = false;
  bool input_ended_ = false;
  std::optional<grpc::Status> failure_;
  bool finishing_ = false;
};

RunnerService::RunnerService(ReleaseEngine& engine, RunnerAuthorizer authorize)
    : engine_(engine), authorize_(std::move(authorize)) {}

RunnerService::~RunnerService() { Shutdown(); }

void RunnerService::Shutdown() {
  std::vector<std::shared_ptr<RunnerStream>> open;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (const auto& [stream, owner] : streams_) open.push_back(owner);
  }
  const grpc::Status unavailable(grpc::StatusCode::UNAVAILABLE, std::string(kShuttingDown));
  for (const auto& stream : open) stream->End(unavailable);
}

std::shared_ptr<RunnerService::RunnerStream> RunnerService::Forget(RunnerStream* stream) {
  std::lock_guard lock(mu_);
  auto found = streams_.find(stream);
  if (found == streams_.end()) return nullptr;
  std::shared_ptr<RunnerStream> owner = std::move(found->second);
  streams_.erase(found);
  return owner;
}

void RunnerService::Disconnect(const RunnerSession& session, std::string reason) {
  auto disconnect = [this, session, reason = std::move(reason)] {
    engine_.DisconnectRunner(session, reason);
  };
  absl::Status started = tasks_.Run(disconnect);
  // Blocking a gRPC thread beats leaving the runner's releases assigned to nobody.
  if (!started.ok()) disconnect();
}

grpc::ServerBidiReactor<wire::RunnerMessage, wire::ServerMessage>* RunnerService::RegisterRunner(
    grpc::CallbackServerContext* context) {
  auto stream = std::make_shared<RunnerStream>(*this, CallerOf(*context));
  bool stopping = false;
  {
    std::lock_guard lock(mu_);
    stopping = stopping_;
    streams_.emplace(stream.get(), stream);
  }
  if (stopping) {
    stream->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, std::string(kShuttingDown)));
  }
  stream->Begin();
  return stream.get();
}

absl::StatusOr<TokenScope> RunnerService::ScopeHeldBy(const std::string& caller,
                                                      const std::string& token) {
  absl::StatusOr<TokenScope> scope = engine_.Authorize(token);
  if (!scope.ok()) return scope.status();
  // A token that leaked to another runner, or one handed to the wrong stream, is worth nothing.
  if (scope->holder != caller) {
    return absl::UnauthenticatedError("release token belongs to another runner");
  }
  return scope;
}

absl::StatusOr<TokenScope> RunnerService::AuthorizeCall(const grpc::ServerContextBase& context,
                                                        const std::string& token,
                                                        std::string_view operation) {
  absl::StatusOr<common::Identity> caller = RunnerIdentityOf(context, operation);
  if (!caller.ok()) return caller.status();
  return ScopeHeldBy(caller->ToString(), token);
}

grpc::ServerWriteReactor<wire::ReleaseFile>* RunnerService::StreamFiles(
    grpc::CallbackServerContext* context, const std::string& token, FileKind kind,
    std::string_view operation) {
  if (absl::StatusOr<TokenScope> scope = AuthorizeCall(*context, token, operation); !scope.ok()) {
    return new Finished<grpc::ServerWriteReactor<wire::ReleaseFile>>(scope.status());
  }
  auto* stream = new FilesStream();
  absl::Status started =
      tasks_.Run([this, stream, token, kind] { stream->Send(engine_.Files(token, kind)); });
  if (!started.ok()) stream->Send(started);
  return stream;
}

grpc::ServerWriteReactor<wire::ReleaseFile>* RunnerService::GetReleaseFiles(
    grpc::CallbackServerContext* context, const wire::GetReleaseFilesRequest* request) {
  return StreamFiles(context, request->release_token(), FileKind::kArtifact,
                     "RunnerService.GetReleaseFiles");
}

grpc::ServerWriteReactor<wire::ReleaseFile>* RunnerService::GetSpecFiles(
    grpc::CallbackServerContext* context, const wire::GetSpecFilesRequest* request) {
  return StreamFiles(context, request->release_token(), FileKind::kSpec,
                     "RunnerService.GetSpecFiles");
}

grpc::ServerReadReactor<wire::PushLogRequest>* RunnerService::PushLogs(
    grpc::CallbackServerContext* context, wire::PushLogResponse* /*response*/) {
  // The token comes with the first message; the caller can be refused before it.
  absl::StatusOr<common::Identity> caller = RunnerIdentityOf(*context, "RunnerService.PushLogs");
  if (!caller.ok()) {
    return new Finished<grpc::ServerReadReactor<wire::PushLogRequest>>(caller.status());
  }
  return new LogStream(*this, caller->ToString());
}

grpc::ServerUnaryReactor* RunnerService::GetReleaseAnnotation(
    grpc::CallbackServerContext* context, const wire::GetReleaseAnnotationRequest* request,
    wire::ReleaseAnnotationResponse* response) {
  absl::StatusOr<TokenScope> scope =
      AuthorizeCall(*context, request->release_token(), "RunnerService.GetReleaseAnnotation");
  if (!scope.ok()) return new Finished<grpc::ServerUnaryReactor>(scope.status());
  const Release& release = scope->release;
  const Annotation& annotation = release.annotation;
  response->set_slug(annotation.slug);
  response->set_source_username(annotation.source_username);
  response->set_source_email(annotation.source_email);
  response->set_context_title(annotation.context_title);
  response->set_context_description(annotation.context_description);
  response->set_context_web(annotation.context_web);
  response->set_reference_version(annotation.reference_version);
  response->set_reference_commit_sha(annotation.reference_commit_sha);
  response->set_reference_commit_branch(annotation.reference_commit_branch);
  response->set_reference_commit_message(annotation.reference_commit_message);
  response->set_created_at(
      google::protobuf::util::TimeUtil::ToString(common::ToProtoTimestamp(release.created_at)));
  return new Finished<grpc::ServerUnaryReactor>(absl::OkStatus());
}

grpc::ServerUnaryReactor* RunnerService::GetProjectInfo(grpc::CallbackServerContext* context,
                                                        const wire::GetProjectInfoRequest* request,
                                                        wire::ProjectInfoResponse* response) {
  absl::StatusOr<TokenScope> scope =
      AuthorizeCall(*context, request->release_token(), "RunnerService.GetProjectInfo");
  if (!scope.ok()) return new Finished<grpc::ServerUnaryReactor>(scope.status());
  response->set_organisation(scope->release.project_organisation);
  response->set_project(scope->release.project);
  return new Finished<grpc::ServerUnaryReactor>(absl::OkStatus());
}

grpc::ServerUnaryReactor* RunnerService::CompleteRelease(
    grpc::CallbackServerContext* context, const wire::CompleteReleaseRequest* request,
    wire::CompleteReleaseResponse* /*response*/) {
  if (absl::StatusOr<TokenScope> scope =
          AuthorizeCall(*context, request->release_token(), "RunnerService.CompleteRelease");
      !scope.ok()) {
    return new Finished<grpc::ServerUnaryReactor>(scope.status());
  }
  absl::StatusOr<ReleaseEngine::Outcome> outcome = OutcomeFrom(request->outcome());
  if (!outcome.ok()) return new Finished<grpc::ServerUnaryReactor>(outcome.status());
  std::optional<std::string> plan_output;
  if (request->has_plan_output()) plan_output = request->plan_output();
  return common::FinishUnaryOnTask(
      context, tasks_,
      [this, token = request->release_token(), outcome = *outcome,
       error_message = request->error_message(),
       plan_output = std::move(plan_output)]() -> absl::Status {
        return engine_.Complete(token, outcome, error_message, plan_output).status();
      });
}

}  // namespace pi::controlplane::release
