#pragma once

// pi-agent as a Forest runner (DESIGN 4.2, 5.3): the forest.v1.RunnerService client that takes
// the provisioning releases pinned to this node and runs them with the ProfileExecutor.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "common/system/cancel_token.h"
#include "common/tls/credentials.h"
#include "node-agent/runner/profile_executor.h"

namespace pi::agent::runner {

struct RunnerClientOptions {
  // The controller's cluster address (host:port), from the enrollment.
  std::string address;
  // This node's id: the runner id, and the only node_id a pinned release may name.
  std::string node_id;
  // The enrollment's files: node.crt/node.key present the node identity, ca.crt trusts the
  // controller. Read again on every connection, so a renewed certificate is picked up.
  common::ClientTlsConfig tls;
  // Releases run at once, as the controller counts them: it assigns no more than this. Every
  // assignment it makes is taken, since the agent's own count lags (the controller frees a slot
  // on CompleteRelease, before the release's thread ends here).
  int max_concurrent = 1;
  // Forest recommends 10s; the controller drops a runner silent for 90s. Each running release's
  // token is probed as often, to notice a release the controller cancelled or timed out.
  std::chrono::nanoseconds heartbeat_interval = std::chrono::seconds(10);
  // Reconnect delays double from initial_backoff up to max_backoff; an accepted registration
  // starts over.
  std::chrono::nanoseconds initial_backoff = std::chrono::seconds(1);
  std::chrono::nanoseconds max_backoff = std::chrono::seconds(30);
  // Deadline of GetReleaseFiles, the token probes and CompleteRelease.
  std::chrono::milliseconds rpc_timeout{10'000};
};

// Keeps a RegisterRunner stream open to the controller on its own thread, heartbeats it, and runs
// each accepted WorkAssignment on a worker thread: GetReleaseFiles, ProfileExecutor::Run with every
// output line streamed through PushLogs, then CompleteRelease (a failed fetch or run is a FAILURE
// with the error). Refuses assignments for another node or another destination type.
//
// A run that is cancelled reports no outcome. The controller cancels a release (admin cancel,
// timeout) by revoking its token, which the runner learns from the UNAUTHENTICATED answer of
// PushLogs or of a token probe; the release has ended there already. When the stream breaks or
// the agent stops, the controller loses the runner and requeues its releases, or fails them when
// their attempts are used up (DESIGN 4.2). A broken stream is retried with capped exponential
// backoff and never ends the agent.
class RunnerClient {
 public:
  // `executor` must outlive the client.
  RunnerClient(RunnerClientOptions options, ProfileExecutor& executor);
  ~RunnerClient();
  RunnerClient(const RunnerClient&) = delete;
  RunnerClient& operator=(const RunnerClient&) = delete;

  void Start();
  // Cancels the running releases and waits for them, then ends the stream without reporting
  // them, so the controller requeues them as for any runner that goes away. Idempotent.
  void Stop();

  // Registrations the controller accepted since Start (one per successful connection).
  uint64_t registrations() const { return registrations_.load(); }
  // Releases running now.
  int active() const { return active_.load(); }

 private:
  struct Stream;  // one RegisterRunner connection
  struct Work;    // an assignment, with the stub its calls go through
  struct Worker;  // the thread running an accepted one

  void Run();
  // One connection: registers, heartbeats and takes assignments until the stream ends. Returns
  // why it ended (OK when Stop ended it).
  absl::Status RunSession(bool& registered);
  // Sends a heartbeat every heartbeat_interval until the stream is done.
  void Heartbeat(Stream& stream);
  void HandleAssignment(Stream& stream, Work work);
  // Why an assignment is refused; empty when it is taken. Never for being busy: the controller
  // counts the slots.
  std::string Refusal(const Work& work) const;
  void StartWorker(Work work);
  void RunRelease(const Work& work, common::CancelToken& cancel);
  // Cancels the releases running now and waits for their threads.
  void CancelAndJoinWorkers();

  const RunnerClientOptions options_;
  ProfileExecutor& executor_;
  common::CancelToken stop_;
  // Ends the current stream; set only after the workers have ended, so the controller requeues a
  // release only once its command here is gone (see Stop).
  common::CancelToken stop_stream_;
  std::atomic<uint64_t> registrations_{0};
  std::atomic<int> active_{0};
  std::mutex workers_mu_;
  std::list<std::unique_ptr<Worker>> workers_;
  std::thread thread_;
};

}  // namespace pi::agent::runner
