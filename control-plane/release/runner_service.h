#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/grpc/blocking_tasks.h"
#include "common/tls/identity.h"
#include "control-plane/release/release_engine.h"
#include "forest/v1/runner.grpc.pb.h"

namespace pi::controlplane::release {

// Decides whether a verified certificate may register as a runner; the controller checks that a
// node identity is a joined, non-removed node presenting its own certificate. An error refuses
// the registration with its code and message.
using RunnerAuthorizer =
    std::function<absl::Status(const common::Identity& identity, const std::string& cert_sha256)>;

// forest.v1.RunnerService (DESIGN 4.2) on the release engine. Runners register on a stream
// authenticated by their client certificate (runner:<name> or node:<id>) and receive work
// there; every later call carries the release token of one assignment and must come from the
// identity that holds that release. Serve it only on a listener that verifies the client
// certificates presented against the cluster CA (it may let callers without one through: they
// are refused here): the identity is taken from the certificate as presented.
//
// Engine calls that write run on threads of the service's own, never on gRPC's callback threads;
// only in-memory ones (Heartbeat, Authorize) run inline, so a refused call costs no thread.
class RunnerService final : public forest::v1::RunnerService::CallbackService {
 public:
  // A null `authorize` accepts every runner and node identity.
  RunnerService(ReleaseEngine& engine, RunnerAuthorizer authorize);
  ~RunnerService() override;
  RunnerService(const RunnerService&) = delete;
  RunnerService& operator=(const RunnerService&) = delete;

  // Ends every open RegisterRunner stream with UNAVAILABLE and refuses new ones. Call it before
  // the server's Shutdown, which otherwise waits for those streams.
  void Shutdown();

  grpc::ServerBidiReactor<forest::v1::RunnerMessage, forest::v1::ServerMessage>* RegisterRunner(
      grpc::CallbackServerContext* context) override;
  grpc::ServerWriteReactor<forest::v1::ReleaseFile>* GetReleaseFiles(
      grpc::CallbackServerContext* context,
      const forest::v1::GetReleaseFilesRequest* request) override;
  grpc::ServerReadReactor<forest::v1::PushLogRequest>* PushLogs(
      grpc::CallbackServerContext* context, forest::v1::PushLogResponse* response) override;
  grpc::ServerWriteReactor<forest::v1::ReleaseFile>* GetSpecFiles(
      grpc::CallbackServerContext* context,
      const forest::v1::GetSpecFilesRequest* request) override;
  grpc::ServerUnaryReactor* GetReleaseAnnotation(
      grpc::CallbackServerContext* context, const forest::v1::GetReleaseAnnotationRequest* request,
      forest::v1::ReleaseAnnotationResponse* response) override;
  grpc::ServerUnaryReactor* GetProjectInfo(grpc::CallbackServerContext* context,
                                           const forest::v1::GetProjectInfoRequest* request,
                                           forest::v1::ProjectInfoResponse* response) override;
  grpc::ServerUnaryReactor* CompleteRelease(grpc::CallbackServerContext* context,
                                            const forest::v1::CompleteReleaseRequest* request,
                                            forest::v1::CompleteReleaseResponse* response) override;

 private:
  class RunnerStream;
  class FilesStream;
  class LogStream;

  grpc::ServerWriteReactor<forest::v1::ReleaseFile>* StreamFiles(
      grpc::CallbackServerContext* context, const std::string& token, FileKind kind,
      std::string_view operation);
  // What `token` gives access to, if `caller` (an identity string) holds its release.
  absl::StatusOr<TokenScope> ScopeHeldBy(const std::string& caller, const std::string& token);
  // Admits a token-scoped call: a runner or node certificate that holds the token's release.
  absl::StatusOr<TokenScope> AuthorizeCall(const grpc::ServerContextBase& context,
                                           const std::string& token, std::string_view operation);
  // Forgets a stream whose call is over and hands back the last reference to it.
  std::shared_ptr<RunnerStream> Forget(RunnerStream* stream);
  // Tells the engine a runner's stream is over, from a task thread.
  void Disconnect(const RunnerSession& session, std::string reason);

  ReleaseEngine& engine_;
  const RunnerAuthorizer authorize_;
  std::mutex mu_;
  bool stopping_ = false;
  // Open RegisterRunner streams, owned here until gRPC is done with them.
  std::map<RunnerStream*, std::shared_ptr<RunnerStream>> streams_;
  // Declared last so that it is destroyed first: its destructor waits for running tasks, which
  // use the members above.
  common::BlockingTasks tasks_;
};

}  // namespace pi::controlplane::release
