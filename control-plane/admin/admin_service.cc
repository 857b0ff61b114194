#include "control-plane/admin/admin_service.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>

#include "common/grpc/proto_time.h"
#include "common/grpc/status.h"
#include "common/grpc/unary_task.h"
#include "common/system/cancel_token.h"
#include "common/tls/peer_identity.h"
#include "control-plane/admin/release_wire.h"
#include "control-plane/cluster/cluster_grpc.h"
#include "picontroller/v1/agent.grpc.pb.h"

namespace pi::controlplane::admin {
namespace {

namespace pb = picontroller::v1;
using cluster::NodeView;

constexpr int kWatchBatch = 500;
// ListDeadLetters' limit when the request leaves it 0, and its cap.
constexpr int kDefaultDeadLetterLimit = 100;
constexpr int kMaxDeadLetterLimit = 1000;
// Ids per RequeueDeadLetters or DeleteDeadLetters call.
constexpr int kMaxDeadLetterIds = 1000;
constexpr std::chrono::milliseconds kWatchWakeup{500};
// Events a FollowRelease stream may hold for a slow reader before it is ended (the reader can
// resume from the last line it got).
constexpr size_t kMaxFollowBacklogBytes = 16 * 1024 * 1024;

// A call answered before it started: refused, or answered from memory.
class FinishedUnary : public grpc::ServerUnaryReactor {
 public:
  explicit FinishedUnary(const absl::Status& status) { Finish(common::ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

template <typename Message>
class FinishedStream : public grpc::ServerWriteReactor<Message> {
 public:
  explicit FinishedStream(const absl::Status& status) {
    this->Finish(common::ToGrpcStatus(status));
  }
  void OnDone() override { delete this; }
};

// What the agent answered, said from the admin's side: an agent that cannot be reached names the
// node and its address; the agent's own refusals keep their code.
grpc::Status FromAgent(const NodeView& node, const grpc::Status& status) {
  if (status.ok()) return status;
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        fmt::format("node {} ({}) is unreachable: {}", node.node.id,
                                    node.node.agent_address, status.error_message()));
  }
  return grpc::Status(status.error_code(),
                      fmt::format("node {}: {}", node.node.id, status.error_message()));
}

// The agent's call inherits the admin's deadline and names the admin, whom the agent records in
// its audit log next to the controller (it trusts that name only from a `controller` caller).
void PrepareUpstream(grpc::CallbackServerContext* from, const std::string& admin,
                     grpc::ClientContext* to) {
  if (from->deadline() != std::chrono::system_clock::time_point::max()) {
    to->set_deadline(from->deadline());
  }
  to->AddMetadata(std::string(common::kOnBehalfOfMetadata), admin);
}

}  // namespace

// A unary call forwarded to an agent. Deletes itself once both the admin's call is done and the
// agent's answer has arrived; an admin who cancels (or whose deadline passes) cancels the agent
// call, which for a command kills it.
class AdminService::ProxyUnaryReactor : public grpc::ServerUnaryReactor {
 public:
  ProxyUnaryReactor(grpc::CallbackServerContext* context, ProxyTarget target)
      : node_(std::move(target.node)) {
    PrepareUpstream(context, target.admin, &upstream_);
  }

  grpc::ClientContext* upstream() { return &upstream_; }
  std::function<void(grpc::Status)> OnAnswer() {
    return [this](grpc::Status status) {
      Finish(FromAgent(node_, status));
      Release();
    };
  }

  void OnCancel() override { upstream_.TryCancel(); }
  void OnDone() override { Release(); }

 private:
  void Release() {
    if (--references_ == 0) delete this;
  }

  const NodeView node_;
  grpc::ClientContext upstream_;
  std::atomic<int> references_{2};
};

// Streams an agent's log entries to the admin one at a time: an entry is read from the agent only
// after the previous one was written, so a slow admin slows the agent's stream instead of filling
// the controller's memory.
class AdminService::LogProxyReactor : public grpc::ServerWriteReactor<pb::LogEntry>,
                                      public grpc::ClientReadReactor<pb::LogEntry> {
 public:
  LogProxyReactor(AdminService* service, grpc::CallbackServerContext* context, ProxyTarget target,
                  pb::LogFilter filter)
      : service_(service), node_(std::move(target.node)), filter_(std::move(filter)) {
    PrepareUpstream(context, target.admin, &upstream_);
  }

  void Begin() {
    {
      std::lock_guard lock(service_->log_proxies_mu_);
      service_->log_proxies_.insert(this);
    }
    pb::NodeAgent::NewStub(service_->dialer_.Channel(node_.node.id, node_.node.agent_address))
        ->async()
        ->StreamLogs(&upstream_, &filter_, this);
    // Reads are started from OnWriteDone, a reaction of the admin's stream rather than of this
    // one: the hold keeps the agent's stream (and OnDone) alive until no read will follow.
    grpc::ClientReadReactor<pb::LogEntry>::AddHold();
    StartRead(&entry_);
    StartCall();
    // A Shutdown that ran before this stream was listed did not see it.
    if (service_->stopping_) Cancel();
  }

  void OnReadDone(bool ok) override {
    if (ok) {
      StartWrite(&entry_);
    } else {
      RemoveHold();
    }
  }
  void OnWriteDone(bool ok) override {
    if (ok) {
      StartRead(&entry_);
      return;
    }
    upstream_.TryCancel();
    RemoveHold();
  }
  // Ends the agent's stream; the admin's then ends in OnDone below.
  void Cancel() { upstream_.TryCancel(); }

  // The agent's stream ended and no write is pending (the hold saw to that): pass its status on.
  void OnDone(const grpc::Status& status) override {
    Finish(service_->stopping_
               ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "pi-controller is shutting down")
               : FromAgent(node_, status));
    Release();
  }
  void OnCancel() override { Cancel(); }
  void OnDone() override {
    {
      std::lock_guard lock(service_->log_proxies_mu_);
      service_->log_proxies_.erase(this);
    }
    service_->ReleaseStream();
    Release();
  }

 private:
  void Release() {
    if (--references_ == 0) delete this;
  }

  AdminService* const service_;
  const NodeView node_;
  const pb::LogFilter filter_;
  grpc::ClientContext upstream_;
  pb::LogEntry entry_;
  std::atomic<int> references_{2};
};

// Sends the cluster's state and then every change as it happens, from a task thread that waits on
// the revision feed.
class AdminService::WatchReactor : public grpc::ServerWriteReactor<pb::ClusterChange> {
 public:
  WatchReactor(AdminService* service, int64_t since) : service_(service), since_(since) {}

  absl::Status Begin() {
    return service_->blocking_.Run([this] { Pump(); });
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    writing_ = false;
    if (!ok) broken_ = true;
    changed_.notify_all();
  }
  void OnCancel() override {
    cancel_.Cancel();
    std::lock_guard lock(mu_);
    changed_.notify_all();
  }
  void OnDone() override {
    service_->ReleaseStream();
    delete this;
  }

 private:
  bool Ending() const { return cancel_.cancelled() || broken_ || service_->stopping_; }

  void Pump() {
    int64_t revision = since_;
    absl::Status status;
    while (status.ok() && !Ending()) {
      absl::StatusOr<cluster::ClusterDelta> delta =
          service_->cluster_.ChangesSince(revision, kWatchBatch);
      if (!delta.ok()) {
        status = delta.status();
        break;
      }
      if (delta->full_snapshot && revision != 0) {
        // Upserts alone cannot tell the watcher what was deleted in the changes it missed.
        status = absl::OutOfRangeError(fmt::format(
            "revision {} is older than the retained change log; watch again from revision 0 "
            "for the current state",
            revision));
        break;
      }
      if (delta->full_snapshot) {
        for (const store::Node& node : delta->snapshot.nodes) {
          pb::ClusterChange change;
          change.set_revision(delta->revision);
          change.set_operation(pb::ClusterChange::OPERATION_UPSERT);
          cluster::ToProto(node, change.mutable_node());
          if (!Emit(change)) break;
        }
        for (const store::JoinToken& token : delta->snapshot.join_tokens) {
          pb::ClusterChange change;
          change.set_revision(delta->revision);
          change.set_operation(pb::ClusterChange::OPERATION_UPSERT);
          cluster::ToProto(token, false, change.mutable_join_token());
          if (!Emit(change)) break;
        }
      }
      for (const store::Change& stored : delta->changes) {
        pb::ClusterChange change;
        status = cluster::ToProto(stored, false, &change);
        if (!status.ok() || !Emit(change)) break;
      }
      revision = delta->revision;
      if (!delta->more) service_->cluster_.feed().WaitBeyond(revision, kWatchWakeup);
    }
    {
      std::unique_lock lock(mu_);
      changed_.wait(lock, [this] { return !writing_; });
    }
    if (status.ok() && service_->stopping_) {
      status = absl::UnavailableError("pi-controller is shutting down");
    }
    // Nothing may touch `this` after Finish: OnDone can delete it at once.
    Finish(common::ToGrpcStatus(status));
  }

  bool Emit(const pb::ClusterChange& change) {
    std::unique_lock lock(mu_);
    changed_.wait(lock, [this] { return !writing_ || cancel_.cancelled(); });
    if (Ending()) return false;
    message_ = change;
    writing_ = true;
    lock.unlock();
    StartWrite(&message_);
    return true;
  }

  AdminService* const service_;
  const int64_t since_;
  common::CancelToken cancel_;
  std::mutex mu_;
  std::condition_variable changed_;
  bool writing_ = false;
  std::atomic<bool> broken_{false};
  pb::ClusterChange message_;
};

// Streams a release's events from the engine. The engine calls the sink with its lock held, so the
// sink only queues; writes go out one at a time as the previous one completes. The stream ends
// after the engine's last event (OK), when the engine or the service stops (UNAVAILABLE), when the
// admin cancels, or when a slow reader lets too much pile up (RESOURCE_EXHAUSTED).
class AdminService::FollowReactor : public grpc::ServerWriteReactor<pb::ReleaseEvent> {
 public:
  FollowReactor(AdminService* service, std::string id, int64_t after_sequence)
      : service_(service), id_(std::move(id)), after_sequence_(after_sequence) {}

  // Registers the reactor and starts following on a task thread. On error nothing was started
  // and the caller deletes the reactor.
  absl::Status Begin() {
    {
      std::lock_guard lock(service_->follows_mu_);
      service_->follows_.insert(this);
    }
    absl::Status started = service_->blocking_.Run([this] { Follow(); });
    if (!started.ok()) {
      std::lock_guard lock(service_->follows_mu_);
      service_->follows_.erase(this);
    }
    return started;
  }

  // Ends the stream at once, dropping what was not written yet.
  void Stop(const absl::Status& status) {
    {
      std::lock_guard lock(mu_);
      backlog_.clear();
      if (!end_.has_value()) end_ = status;
    }
    Pump();
  }

  void OnWriteDone(bool ok) override {
    {
      std::lock_guard lock(mu_);
      writing_ = false;
      if (!ok) cancelled_ = true;
    }
    Pump();
  }
  void OnCancel() override {
    {
      std::lock_guard lock(mu_);
      cancelled_ = true;
    }
    Pump();
  }
  void OnDone() override {
    bool settled;
    {
      std::lock_guard lock(mu_);
      done_ = true;
      settled = follow_settled_;
    }
    if (settled) CleanUp();
  }

 private:
  void Follow() {
    // A Shutdown that ran before this stream was listed did not see it.
    if (service_->stopping_) Stop(absl::UnavailableError("pi-controller is shutting down"));
    release::FollowSink sink;
    sink.on_event = [this](const release::ReleaseEvent& event) { Enqueue(event); };
    sink.on_end = [this](const absl::Status& status) { End(status); };
    absl::StatusOr<uint64_t> handle = service_->releases_.Follow(id_, after_sequence_, sink);
    if (!handle.ok()) End(handle.status());
    bool done;
    {
      std::lock_guard lock(mu_);
      if (handle.ok()) handle_ = *handle;
      follow_settled_ = true;
      done = done_;
    }
    if (done) CleanUp();
  }

  // Unfollow takes the engine's lock, which store writes hold: not on gRPC's callback thread.
  void CleanUp() {
    if (!service_->blocking_.Run([this] { Forget(); }).ok()) Forget();
  }
  void Forget() {
    if (handle_.has_value()) service_->releases_.Unfollow(*handle_);
    {
      std::lock_guard lock(service_->follows_mu_);
      service_->follows_.erase(this);
    }
    service_->ReleaseStream();
    delete this;
  }

  void Enqueue(const release::ReleaseEvent& event) {
    {
      std::lock_guard lock(mu_);
      if (end_.has_value()) return;
      pb::ReleaseEvent message;
      if (event.release.has_value()) ToProto(*event.release, message.mutable_release());
      if (event.log.has_value()) {
        ToProto(*event.log, message.mutable_log());
        last_sequence_ = event.log->sequence;
      }
      backlog_bytes_ += message.ByteSizeLong();
      backlog_.push_back(std::move(message));
      if (backlog_bytes_ > kMaxFollowBacklogBytes) {
        end_ = absl::ResourceExhaustedError(fmt::format(
            "release {}: the reader fell too far behind; follow again with after_sequence {}", id_,
            last_sequence_));
      }
    }
    Pump();
  }

  void End(const absl::Status& status) {
    {
      std::lock_guard lock(mu_);
      if (!end_.has_value()) end_ = status;
    }
    Pump();
  }

  // Starts the next write, or finishes once nothing is being written and nothing more will be.
  void Pump() {
    std::unique_lock lock(mu_);
    if (finished_ || writing_) return;
    if (!cancelled_ && !backlog_.empty()) {
      message_ = std::move(backlog_.front());
      backlog_.pop_front();
      backlog_bytes_ -= message_.ByteSizeLong();
      writing_ = true;
      lock.unlock();
      StartWrite(&message_);
      return;
    }
    if (!cancelled_ && !end_.has_value()) return;
    finished_ = true;
    const grpc::Status status = cancelled_ ? grpc::Status::CANCELLED : common::ToGrpcStatus(*end_);
    lock.unlock();
    Finish(status);
  }

  AdminService* const service_;
  const std::string id_;
  const int64_t after_sequence_;
  std::mutex mu_;
  std::deque<pb::ReleaseEvent> backlog_;
  size_t backlog_bytes_ = 0;
  int64_t last_sequence_ = 0;
  pb::ReleaseEvent message_;
  bool writing_ = false;
  bool cancelled_ = false;
  bool finished_ = false;
  std::optional<absl::Status> end_;
  // Follow() has returned (handle_ is set when it succeeded) and OnDone has run: together they
  // decide who cleans up.
  bool follow_settled_ = false;
  bool done_ = false;
  std::optional<uint64_t> handle_;
};

void AdminService::Shutdown() {
  stopping_ = true;
  {
    std::lock_guard lock(follows_mu_);
    for (FollowReactor* follow : follows_) {
      follow->Stop(absl::UnavailableError("pi-controller is shutting down"));
    }
  }
  std::lock_guard lock(log_proxies_mu_);
  for (LogProxyReactor* proxy : log_proxies_) proxy->Cancel();
}

absl::StatusOr<common::Identity> AdminService::Authorize(grpc::CallbackServerContext* context,
                                                         std::string_view method) const {
  const cluster::Caller caller = cluster::CallerFromContext(*context);
  if (!caller.identity.has_value()) {
    return absl::UnauthenticatedError(
        "the Admin service needs an admin certificate (pi-controller issue-admin NAME)");
  }
  absl::Status allowed = common::RequireRole(*caller.identity, {common::Role::kAdmin},
                                             fmt::format("Admin.{}", method));
  if (!allowed.ok()) {
    spdlog::warn("refused Admin.{} from {}", method, caller.identity->ToString());
    return allowed;
  }
  return *caller.identity;
}

absl::Status AdminService::CheckRoute(const std::string& route) const {
  if (route.empty()) return absl::InvalidArgumentError("name the queue route");
  const std::vector<std::string> routes = queues_.RouteNames();
  if (std::find(routes.begin(), routes.end(), route) != routes.end()) return absl::OkStatus();
  return absl::NotFoundError(
      routes.empty() ? fmt::format("no queue route {:?}: the controller has no queue routes", route)
                     : fmt::format("no queue route {:?}; configured routes: {}", route,
                                   fmt::join(routes, ", ")));
}

absl::Status AdminService::CheckDeadLetterIds(const pb::DeadLetterIds& request) const {
  if (absl::Status route = CheckRoute(request.route()); !route.ok()) return route;
  if (request.ids().empty()) return absl::InvalidArgumentError("give at least one message id");
  if (request.ids_size() > kMaxDeadLetterIds) {
    return absl::InvalidArgumentError(fmt::format("at most {} message ids per call, got {}",
                                                  kMaxDeadLetterIds, request.ids_size()));
  }
  for (int i = 0; i < request.ids_size(); ++i) {
    if (request.ids(i).empty()) {
      return absl::InvalidArgumentError(fmt::format("message id {} is empty", i + 1));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<NodeView> AdminService::Resolve(const pb::NodeRef& ref) {
  switch (ref.node_case()) {
    case pb::NodeRef::kId:
      if (ref.id().empty()) return absl::InvalidArgumentError("node id is empty");
      return cluster_.GetNode(ref.id());
    case pb::NodeRef::kHostname: {
      absl::StatusOr<std::vector<NodeView>> nodes = cluster_.ListNodes("", {});
      if (!nodes.ok()) return nodes.status();
      for (NodeView& view : *nodes) {
        if (view.node.hostname == ref.hostname()) return std::move(view);
      }
      return absl::NotFoundError(fmt::format("no node has hostname {:?}", ref.hostname()));
    }
    case pb::NodeRef::NODE_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("name the node by id or hostname");
}

absl::StatusOr<AdminService::ProxyTarget> AdminService::ResolveProxyTarget(
    grpc::CallbackServerContext* context, const pb::NodeRef& ref, std::string_view method) {
  absl::StatusOr<common::Identity> caller = Authorize(context, method);
  if (!caller.ok()) return caller.status();
  absl::StatusOr<NodeView> node = Resolve(ref);
  if (!node.ok()) return node.status();
  if (node->node.state == store::NodeState::kRemoved) {
    return absl::FailedPreconditionError(fmt::format("node {} was removed", node->node.id));
  }
  spdlog::info("{} {} on node {}", caller->ToString(), method, node->node.id);
  return ProxyTarget{*std::move(node), caller->ToString()};
}

absl::Status AdminService::ReserveStream(std::string_view what) {
  if (stopping_) return absl::UnavailableError("pi-controller is shutting down");
  if (++open_streams_ > options_.max_streams) {
    --open_streams_;
    return absl::ResourceExhaustedError(fmt::format(
        "{} refused: {} streams are open (admin.max_streams)", what, options_.max_streams));
  }
  return absl::OkStatus();
}

// ---- nodes -----------------------------------------------------------------------------------

grpc::ServerUnaryReactor* AdminService::ListNodes(grpc::CallbackServerContext* context,
                                                  const pb::ListNodesRequest* request,
                                                  pb::ListNodesResponse* response) {
  absl::StatusOr<common::Identity> caller = Authorize(context, "ListNodes");
  if (!caller.ok()) return new FinishedUnary(caller.status());
  std::set<store::NodeState> states;
  for (int state : request->states()) {
    absl::StatusOr<store::NodeState> parsed = cluster::FromProto(static_cast<pb::NodeState>(state));
    if (!parsed.ok()) return new FinishedUnary(parsed.status());
    states.insert(*parsed);
  }
  // The revision is read first: a change racing the listing shows up again in a watch from it.
  const int64_t revision = cluster_.feed().Current();
  absl::StatusOr<std::vector<NodeView>> nodes =
      cluster_.ListNodes(request->label_selector(), states);
  if (!nodes.ok()) return new FinishedUnary(nodes.status());
  for (const NodeView& node : *nodes) cluster::ToProto(node, response->add_nodes());
  response->set_revision(revision);
  return new FinishedUnary(absl::OkStatus());
}

grpc::ServerUnaryReactor* AdminService::GetNode(grpc::CallbackServerContext* context,
                                                const pb::NodeRef* request, pb::Node* response) {
  absl::StatusOr<common::Identity> caller = Authorize(context, "GetNode");
  if (!caller.ok()) return new FinishedUnary(caller.status());
  absl::StatusOr<NodeView> node = Resolve(*request);
  if (node.ok()) cluster::ToProto(*node, response);
  return new FinishedUnary(node.status());
}

grpc::ServerUnaryReactor* AdminService::LabelNode(grpc::CallbackServerContext* context,
                                                  const pb::LabelNodeRequest* request,
                                                  pb::Node* response) {
  absl::StatusOr<common::Identity> caller = Authorize(context, "LabelNode");
  if (!caller.ok()) return new FinishedUnary(caller.status());
  std::map<std::string, std::string> set(request->set().begin(), request->set().end());
  std::vector<std::string> remove(request->remove().begin(), request->remove().end());
  return common::FinishUnaryOnTask(
      context, blocking_,
      [this, ref = request->node(), set = std::move(set), remove = std::move(remove), response,
       who = caller->ToString()]() -> absl::Status {
        absl::StatusOr<NodeView> node = Resolve(ref);
        if (!node.ok()) return node.status();
        absl::StatusOr<NodeView> labelled = cluster_.LabelNode(node->node.id, set, remove);
        if (!labelled.ok()) return labelled.status();
        spdlog::info("{} labelled node {}", who, node->node.id);
        cluster::ToProto(*labelled, response);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AdminService::SetAdminState(grpc::CallbackServerContext* context,
                                                      const pb::NodeRef* request,
                                                      pb::Node* response,
                                                      store::AdminState admin_state,
                                                      std::string_view method) {
  absl::StatusOr<common::Identity> caller = Authorize(context, method);
  if (!caller.ok()) return new FinishedUnary(caller.status());
  return common::FinishUnaryOnTask(
      context, blocking_,
      [this, ref = *request, response, admin_state, method = std::string(method),
       who = caller->ToString()]() -> absl::Status {
        absl::StatusOr<NodeView> node = Resolve(ref);
        if (!node.ok()) return node.status();
        absl::StatusOr<NodeView> changed = method == "RemoveNode"
                                               ? cluster_.RemoveNode(node->node.id)
                                               : cluster_.SetAdminState(node->node.id, admin_state);
        if (!changed.ok()) return changed.status();
        spdlog::info("{} {} {}: now {}", who, method, node->node.id,
                     store::NodeStateName(changed->node.state));
        cluster::ToProto(*changed, response);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AdminService::DrainNode(grpc::CallbackServerContext* context,
                                                  const pb::NodeRef* request, pb::Node* response) {
  return SetAdminState(context, request, response, store::AdminState::kDraining, "DrainNode");
}

grpc::ServerUnaryReactor* AdminService::CordonNode(grpc::CallbackServerContext* context,
                                                   const pb::NodeRef* request, pb::Node* response) {
  return SetAdminState(context, request, response, store::AdminState::kCordoned, "CordonNode");
}

grpc::ServerUnaryReactor* AdminService::UncordonNode(grpc::CallbackServerContext* context,
                                                     const pb::NodeRef* request,
                                                     pb::Node* response) {
  return SetAdminState(context, request, response, store::AdminState::kNone, "UncordonNode");
}

grpc::ServerUnaryReactor* AdminService::RemoveNode(grpc::CallbackServerContext* context,
                                                   const pb::NodeRef* request, pb::Node* response) {
  return SetAdminState(context, request, response, store::AdminState::kNone, "RemoveNode");
}

// ---- proxied agent operations ----------------------------------------------------------------

grpc::ServerUnaryReactor* AdminService::GetNodeMetrics(grpc::CallbackServerContext* context,
                                                       const pb::NodeRef* request,
                                                       pb::SystemMetrics* response) {
  absl::StatusOr<ProxyTarget> target = ResolveProxyTarget(context, *request, "GetNodeMetrics");
  if (!target.ok()) return new FinishedUnary(target.status());
  const NodeView& node = target->node;
  auto* reactor = new ProxyUnaryReactor(context, *target);
  static const google::protobuf::Empty kEmpty;
  pb::NodeAgent::NewStub(dialer_.Channel(node.node.id, node.node.agent_address))
      ->async()
      ->GetSystemMetrics(reactor->upstream(), &kEmpty, response, reactor->OnAnswer());
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::ControlNodeGPIO(grpc::CallbackServerContext* context,
                                                        const pb::NodeGPIORequest* request,
                                                        pb::GPIOResponse* response) {
  absl::StatusOr<ProxyTarget> target =
      ResolveProxyTarget(context, request->node(), "ControlNodeGPIO");
  if (!target.ok()) return new FinishedUnary(target.status());
  const NodeView& node = target->node;
  auto* reactor = new ProxyUnaryReactor(context, *target);
  pb::NodeAgent::NewStub(dialer_.Channel(node.node.id, node.node.agent_address))
      ->async()
      ->ControlGPIO(reactor->upstream(), &request->request(), response, reactor->OnAnswer());
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::ExecuteNodeCommand(grpc::CallbackServerContext* context,
                                                           const pb::NodeCommandRequest* request,
                                                           pb::CommandResponse* response) {
  absl::StatusOr<ProxyTarget> target =
      ResolveProxyTarget(context, request->node(), "ExecuteNodeCommand");
  if (!target.ok()) return new FinishedUnary(target.status());
  const NodeView& node = target->node;
  auto* reactor = new ProxyUnaryReactor(context, *target);
  pb::NodeAgent::NewStub(dialer_.Channel(node.node.id, node.node.agent_address))
      ->async()
      ->ExecuteCommand(reactor->upstream(), &request->request(), response, reactor->OnAnswer());
  return reactor;
}

grpc::ServerWriteReactor<pb::LogEntry>* AdminService::StreamNodeLogs(
    grpc::CallbackServerContext* context, const pb::NodeLogRequest* request) {
  absl::StatusOr<ProxyTarget> target =
      ResolveProxyTarget(context, request->node(), "StreamNodeLogs");
  if (!target.ok()) return new FinishedStream<pb::LogEntry>(target.status());
  if (absl::Status reserved = ReserveStream("StreamNodeLogs"); !reserved.ok()) {
    return new FinishedStream<pb::LogEntry>(reserved);
  }
  auto* reactor = new LogProxyReactor(this, context, *std::move(target), request->filter());
  reactor->Begin();
  return reactor;
}

// ---- join tokens -----------------------------------------------------------------------------

grpc::ServerUnaryReactor* AdminService::CreateJoinToken(grpc::CallbackServerContext* context,
                                                        const pb::CreateJoinTokenRequest* request,
                                                        pb::CreateJoinTokenResponse* response) {
  absl::StatusOr<common::Identity> caller = Authorize(context, "CreateJoinToken");
  if (!caller.ok()) return new FinishedUnary(caller.status());
  std::optional<std::chrono::seconds> ttl;
  if (request->has_ttl()) {
    absl::StatusOr<std::chrono::nanoseconds> parsed =
        common::FromProtoDuration(request->ttl(), "ttl");
    if (!parsed.ok()) return new FinishedUnary(parsed.status());
    ttl = std::chrono::duration_cast<std::chrono::seconds>(*parsed);
  }
  if (request->max_uses() < 0) {
    return new FinishedUnary(
        absl::InvalidArgumentError("max_uses must not be negative (0 = unlimited)"));
  }
  std::optional<int64_t> max_uses;
  if (request->max_uses() > 0) max_uses = request->max_uses();
  return common::FinishUnaryOnTask(
      context, blocking_,
      [this, creator = *caller, description = request->description(), ttl, max_uses,
       response]() -> absl::Status {
        absl::StatusOr<cluster::CreatedJoinToken> created =
            cluster_.CreateJoinToken(creator, description, ttl, max_uses);
        if (!created.ok()) return created.status();
        spdlog::info("{} created join token {}", creator.ToString(), created->token.id);
        response->set_token(created->text);
        cluster::ToProto(created->token, false, response->mutable_info());
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AdminService::ListJoinTokens(grpc::CallbackServerContext* context,
                                                       const google::protobuf::Empty*,
                                                       pb::ListJoinTokensResponse* response) {
  absl::StatusOr<common::Identity> caller = Authorize(context, "ListJoinTokens");
  if (!caller.ok()) return new FinishedUnary(caller.status());
  absl::StatusOr<std::vector<store::JoinToken>> tokens = cluster_.ListJoinTokens();
  if (tokens.ok()) {
    for (const store::JoinToken& token : *tokens) {
      cluster::ToProto(token, false, response->add_tokens());
    }
  }
  return new FinishedUnary(tokens.status());
}

grpc::ServerUnaryReactor* AdminService::RevokeJoinToken(grpc::CallbackServerContext* context,
                                                        const pb::JoinTokenRef* request,
                                                        pb::JoinTokenInfo* response) {
  absl::StatusOr<common::Identity> caller = Authorize(context, "RevokeJoinToken");
  if (!caller.ok()) return new FinishedUnary(caller.status());
  if (request->id().empty()) {
    return new FinishedUnary(absl::InvalidArgumentError("give the id of the token to revoke"));
  }
  return common::FinishUnaryOnTask(
      context, blocking_,
      [this, id = request->id(), response, who = caller->ToString()]() -> absl::Status {
        absl::StatusOr<store::JoinToken> revoked = cluster_.RevokeJoinToken(id);
        if (!revoked.ok()) return revoked.status();
        spdlog::info("{} revoked join token {}", who, id);
        cluster::ToProto(*revoked, false, response);
        return absl::OkStatus();
      });
}

// ---- watch -----------------------------------------------------------------------------------

grpc::ServerWriteReactor<pb::ClusterChange>* AdminService::WatchCluster(
    grpc::CallbackServerContext* context, const pb::WatchClusterRequest* request) {
  absl::StatusOr<common::Identity> caller = Authorize(context, "WatchCluster");
  if (!caller.ok()) return new FinishedStream<pb::ClusterChange>(caller.status());
  if (request->since_revision() < 0) {
    return new FinishedStream<pb::ClusterChange>(
        absl::InvalidArgumentError("since_revision must not be negative"));
  }
  if (absl::Status reserved = ReserveStream("WatchCluster"); !reserved.ok()) {
    return new FinishedStream<pb::ClusterChange>(reserved);
  }
  auto* reactor = new WatchReactor(this, request->since_revision());
  if (absl::Status started = reactor->Begin(); !started.ok()) {
    delete reactor;
    ReleaseStream();
    return new FinishedStream<pb::ClusterChange>(started);
  }
  return reactor;
}

// ---- queues ----------------------------------------------------------------------------------
// Stats and listings are read from the engine's memory on the calling thread. Changes finish from
// the engine's done callback, which runs after the durable commit (on the engine's commit thread),
// so no gRPC thread waits for the disk.

grpc::ServerUnaryReactor* AdminService::GetQueueStats(grpc::CallbackServerContext* context,
                                                      const pb::GetQueueStatsRequest* request,
                                                      pb::GetQueueStatsResponse* response) {
  absl::StatusOr<common::Identity> caller = Authorize(context, "GetQueueStats");
  if (!caller.ok()) return new FinishedUnary(caller.status());
  std::vector<std::string> routes;
  if (request->route().empty()) {
    routes = queues_.RouteNames();
    std::sort(routes.begin(), routes.end());
  } else {
    if (absl::Status known = CheckRoute(request->route()); !known.ok()) {
      return new FinishedUnary(known);
    }
    routes.push_back(request->route());
  }
  for (const std::string& route : routes) {
    absl::StatusOr<queue::QueueStats> stats = queues_.Stats(route);
    if (!stats.ok()) return new FinishedUnary(stats.status());
    absl::StatusOr<queue::QueueCounters> counters = queues_.Counters(route);
    if (!counters.ok()) return new FinishedUnary(counters.status());
    pb::QueueStats* out = response->add_routes();
    out->set_route(route);
    out->set_queued(stats->queued);
    out->set_delayed(stats->delayed);
    out->set_leased(stats->leased);
    out->set_dead(stats->dead);
    if (stats->oldest_queued_age.has_value()) {
      *out->mutable_oldest_queued_age() = common::ToProtoDuration(*stats->oldest_queued_age);
    }
    out->set_enqueued(counters->enqueued);
    out->set_dequeued(counters->dequeued);
    out->set_acked(counters->acked);
    out->set_nacked(counters->nacked);
    out->set_conflicts(counters->conflicts);
    out->set_lease_expiries(counters->lease_expiries);
    out->set_dead_lettered(counters->dead_lettered);
  }
  return new FinishedUnary(absl::OkStatus());
}

grpc::ServerUnaryReactor* AdminService::ListDeadLetters(grpc::CallbackServerContext* context,
                                                        const pb::ListDeadLettersRequest* request,
                                                        pb::ListDeadLettersResponse* response) {
  absl::StatusOr<common::Identity> caller = Authorize(context, "ListDeadLetters");
  if (!caller.ok()) return new FinishedUnary(caller.status());
  if (absl::Status known = CheckRoute(request->route()); !known.ok()) {
    return new FinishedUnary(known);
  }
  if (request->limit() < 0 || request->limit() > kMaxDeadLetterLimit) {
    return new FinishedUnary(absl::InvalidArgumentError(
        fmt::format("limit must be 1..{} (0 = {}), got {}", kMaxDeadLetterLimit,
                    kDefaultDeadLetterLimit, request->limit())));
  }
  const int limit = request->limit() == 0 ? kDefaultDeadLetterLimit : request->limit();
  absl::StatusOr<std::vector<queue::StoredMessage>> dead =
      queues_.ListDeadLetters(request->route(), limit);
  if (!dead.ok()) return new FinishedUnary(dead.status());
  for (const queue::StoredMessage& message : *dead) {
    pb::DeadLetter* item = response->add_items();
    item->set_id(message.id);
    *item->mutable_received_at() = common::ToProtoTimestamp(message.received_at);
    item->set_attempt(message.attempt);
    item->set_reason(message.dead_reason);
    *item->mutable_dead_at() = common::ToProtoTimestamp(message.dead_at);
    item->set_payload(message.payload);
    item->mutable_headers()->insert(message.headers.begin(), message.headers.end());
  }
  return new FinishedUnary(absl::OkStatus());
}

grpc::ServerUnaryReactor* AdminService::RequeueDeadLetters(grpc::CallbackServerContext* context,
                                                           const pb::DeadLetterIds* request,
                                                           pb::DeadLetterCount* response) {
  absl::StatusOr<common::Identity> caller = Authorize(context, "RequeueDeadLetters");
  if (!caller.ok()) return new FinishedUnary(caller.status());
  if (absl::Status valid = CheckDeadLetterIds(*request); !valid.ok()) {
    return new FinishedUnary(valid);
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  queues_.RequeueDeadLetters(
      request->route(), {request->ids().begin(), request->ids().end()},
      [reactor, response, route = request->route(), asked = request->ids_size(),
       who = caller->ToString()](absl::StatusOr<int64_t> requeued) {
        if (requeued.ok()) {
          spdlog::info("{} requeued {} of {} dead letters of queue {}", who, *requeued, asked,
                       route);
          response->set_count(*requeued);
        }
        reactor->Finish(common::ToGrpcStatus(requeued.status()));
      });
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::DeleteDeadLetters(grpc::CallbackServerContext* context,
                                                          const pb::DeadLetterIds* request,
                                                          pb::DeadLetterCount* response) {
  absl::StatusOr<common::Identity> caller = Authorize(context, "DeleteDeadLetters");
  if (!caller.ok()) return new FinishedUnary(caller.status());
  if (absl::Status valid = CheckDeadLetterIds(*request); !valid.ok()) {
    return new FinishedUnary(valid);
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  queues_.DeleteDeadLetters(
      request->route(), {request->ids().begin(), request->ids().end()},
      [reactor, response, route = request->route(), asked = request->ids_size(),
       who = caller->ToString()](absl::StatusOr<int64_t> deleted) {
        if (deleted.ok()) {
          spdlog::info("{} deleted {} of {} dead letters of queue {}", who, *deleted, asked, route);
          response->set_count(*deleted);
        }
        reactor->Finish(common::ToGrpcStatus(deleted.status()));
      });
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::Publish(grpc::CallbackServerContext* context,
                                                const pb::PublishRequest* request,
                                                pb::PublishResponse* response) {
  absl::StatusOr<common::Identity> caller = Authorize(context, "Publish");
  if (!caller.ok()) return new FinishedUnary(caller.status());
  if (absl::Status known = CheckRoute(request->route()); !known.ok()) {
    return new FinishedUnary(known);
  }
  queue::NewMessage message;
  message.payload = request->payload();
  message.headers.insert(request->headers().begin(), request->headers().end());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  queues_.Enqueue(request->route(), std::move(message),
                  [reactor, response, route = request->route(),
                   who = caller->ToString()](absl::StatusOr<std::string> id) {
                    if (id.ok()) {
                      spdlog::info("{} published message {} to queue {}", who, *id, route);
                      response->set_id(*id);
                    }
                    reactor->Finish(common::ToGrpcStatus(id.status()));
                  });
  return reactor;
}

// ---- releases --------------------------------------------------------------------------------
// The engine writes to its store under its lock: every call runs on a task thread.

grpc::ServerUnaryReactor* AdminService::CreateRelease(grpc::CallbackServerContext* context,
                                                      const pb::CreateReleaseRequest* request,
                                                      pb::Release* response) {
  absl::StatusOr<common::Identity> caller = Authorize(context, "CreateRelease");
  if (!caller.ok()) return new FinishedUnary(caller.status());
  absl::StatusOr<release::NewRelease> wanted = FromProto(*request, caller->ToString());
  if (!wanted.ok()) return new FinishedUnary(wanted.status());
  return common::FinishUnaryOnTask(
      context, blocking_,
      [this, wanted = *std::move(wanted), who = caller->ToString(),
       response]() mutable -> absl::Status {
        absl::StatusOr<release::Release> created = releases_.Create(std::move(wanted));
        if (!created.ok()) return created.status();
        spdlog::info("{} created release {} for {}{}", who, created->id,
                     release::DestinationTypeText(created->type),
                     created->node_id.empty() ? "" : " on node " + created->node_id);
        ToProto(*created, response);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AdminService::ListReleases(grpc::CallbackServerContext* context,
                                                     const pb::ListReleasesRequest* request,
                                                     pb::ListReleasesResponse* response) {
  absl::StatusOr<common::Identity> caller = Authorize(context, "ListReleases");
  if (!caller.ok()) return new FinishedUnary(caller.status());
  absl::StatusOr<release::ReleaseFilter> filter = FromProto(*request);
  if (!filter.ok()) return new FinishedUnary(filter.status());
  return common::FinishUnaryOnTask(
      context, blocking_, [this, filter = *std::move(filter), response]() -> absl::Status {
        absl::StatusOr<std::vector<release::Release>> listed = releases_.List(filter);
        if (!listed.ok()) return listed.status();
        for (const release::Release& item : *listed) {
          pb::Release* listed_release = response->add_releases();
          ToProto(item, listed_release);
          // Up to 256 KiB each: a listing of many would outgrow a gRPC message. GetRelease has it.
          listed_release->clear_plan_output();
        }
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AdminService::GetRelease(grpc::CallbackServerContext* context,
                                                   const pb::ReleaseRef* request,
                                                   pb::Release* response) {
  absl::StatusOr<common::Identity> caller = Authorize(context, "GetRelease");
  if (!caller.ok()) return new FinishedUnary(caller.status());
  if (request->id().empty()) {
    return new FinishedUnary(absl::InvalidArgumentError("give the release id"));
  }
  return common::FinishUnaryOnTask(context, blocking_,
                                   [this, id = request->id(), response]() -> absl::Status {
                                     absl::StatusOr<release::Release> got = releases_.Get(id);
                                     if (!got.ok()) return got.status();
                                     ToProto(*got, response);
                                     return absl::OkStatus();
                                   });
}

grpc::ServerUnaryReactor* AdminService::CancelRelease(grpc::CallbackServerContext* context,
                                                      const pb::ReleaseRef* request,
                                                      pb::Release* response) {
  absl::StatusOr<common::Identity> caller = Authorize(context, "CancelRelease");
  if (!caller.ok()) return new FinishedUnary(caller.status());
  if (request->id().empty()) {
    return new FinishedUnary(absl::InvalidArgumentError("give the id of the release to cancel"));
  }
  return common::FinishUnaryOnTask(
      context, blocking_,
      [this, id = request->id(), who = caller->ToString(), response]() -> absl::Status {
        absl::StatusOr<release::Release> cancelled = releases_.Cancel(id, who);
        if (!cancelled.ok()) return cancelled.status();
        spdlog::info("{} cancelled release {}", who, id);
        ToProto(*cancelled, response);
        return absl::OkStatus();
      });
}

grpc::ServerWriteReactor<pb::ReleaseEvent>* AdminService::FollowRelease(
    grpc::CallbackServerContext* context, const pb::FollowReleaseRequest* request) {
  absl::StatusOr<common::Identity> caller = Authorize(context, "FollowRelease");
  if (!caller.ok()) return new FinishedStream<pb::ReleaseEvent>(caller.status());
  if (request->id().empty()) {
    return new FinishedStream<pb::ReleaseEvent>(
        absl::InvalidArgumentError("give the id of the release to follow"));
  }
  if (request->after_sequence() < 0) {
    return new FinishedStream<pb::ReleaseEvent>(
        absl::InvalidArgumentError("after_sequence must not be negative"));
  }
  if (absl::Status reserved = ReserveStream("FollowRelease"); !reserved.ok()) {
    return new FinishedStream<pb::ReleaseEvent>(reserved);
  }
  auto* reactor = new FollowReactor(this, request->id(), request->after_sequence());
  if (absl::Status started = reactor->Begin(); !started.ok()) {
    delete reactor;
    ReleaseStream();
    return new FinishedStream<pb::ReleaseEvent>(started);
  }
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::ListRunners(grpc::CallbackServerContext* context,
                                                    const google::protobuf::Empty*,
                                                    pb::ListRunnersResponse* response) {
  absl::StatusOr<common::Identity> caller = Authorize(context, "ListRunners");
  if (!caller.ok()) return new FinishedUnary(caller.status());
  return common::FinishUnaryOnTask(context, blocking_, [this, response]() -> absl::Status {
    for (const release::RunnerView& runner : releases_.Runners()) {
      ToProto(runner, response->add_runners());
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::GetProvisioning(grpc::CallbackServerContext* context,
                                                        const pb::ProvisioningRef* request,
                                                        pb::Provisioning* response) {
  absl::StatusOr<common::Identity> caller = Authorize(context, "GetProvisioning");
  if (!caller.ok()) return new FinishedUnary(caller.status());
  if (request->id().empty()) {
    return new FinishedUnary(absl::InvalidArgumentError("give the provisioning id"));
  }
  return common::FinishUnaryOnTask(
      context, blocking_, [this, id = request->id(), response]() -> absl::Status {
        absl::StatusOr<release::Provisioning> provisioning = releases_.GetProvisioning(id);
        if (!provisioning.ok()) return provisioning.status();
        response->set_id(provisioning->id);
        response->set_profile(provisioning->profile);
        response->set_plan(provisioning->plan);
        response->mutable_parameters()->insert(provisioning->parameters.begin(),
                                               provisioning->parameters.end());
        *response->mutable_created_at() = common::ToProtoTimestamp(provisioning->created_at);
        response->set_target(provisioning->target);
        for (const std::string& release_id : provisioning->release_ids) {
          absl::StatusOr<release::Release> item = releases_.Get(release_id);
          if (!item.ok()) return item.status();
          ToProto(*item, response->add_releases());
        }
        return absl::OkStatus();
      });
}

}  // namespace pi::controlplane::admin
