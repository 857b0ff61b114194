#pragma once

// The ControlPlane gRPC client of pi-agent: first join (Enroll), re-registration with the node
// certificate (Reregister) and the heartbeat thread (Heartbeater).

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/statusor.h"
#include "common/system/cancel_token.h"
#include "common/system/clock.h"
#include "node-agent/join/enrollment_state.h"
#include "node-agent/join/health_summary.h"

namespace pi::agent::join {

// What the agent tells the controller each time it registers.
struct NodeDescription {
  std::string hostname;
  // host:port of the NodeAgent listener; an unspecified host is filled in by the controller.
  std::string agent_address;
  // Applied by the controller on the first join only.
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> facts;
};

struct Registration {
  std::string node_id;
  std::chrono::nanoseconds heartbeat_interval{0};
  // A re-registration wrote a renewed node.crt.
  bool certificate_renewed = false;
};

struct ClientOptions {
  // Per call, and for the CA fetch.
  std::chrono::milliseconds rpc_timeout{10'000};
  // When the controller returns no (or a non-positive) heartbeat interval.
  std::chrono::nanoseconds default_heartbeat_interval = std::chrono::seconds(10);
};

// Heartbeat intervals below this are raised to it, so a misconfigured controller cannot make
// every agent spin.
inline constexpr std::chrono::milliseconds kMinHeartbeatInterval{50};

// First join with a token "K10<pin>::<id>.<secret>": fetches the controller's CA and checks it
// against the token's pin BEFORE the token is sent, generates (or reuses) node.key, sends
// RegisterNode with a CSR over TLS trusting only that CA (no client certificate) and stores
// node.crt, ca.crt and control_plane.json in `state`. The token never appears in a message.
// Errors: UNAVAILABLE/DEADLINE_EXCEEDED when the controller cannot be reached (worth retrying);
// PERMISSION_DENIED when the pin does not match or the controller refused (its reason is in the
// message); the controller's own status otherwise, with what to do.
absl::StatusOr<Registration> Enroll(const StateDir& state, std::string_view address,
                                    std::string_view token, const NodeDescription& node,
                                    const ClientOptions& options);

// Registers an enrolled node again over mTLS with its node certificate (empty join token), so
// the controller learns its current address and facts. With `renew`, sends a fresh CSR for the
// same key and atomically replaces node.crt with the certificate returned; a server that already
// loaded the old certificate keeps serving it until restart. `cancel` (optional) ends a call in
// flight.
absl::StatusOr<Registration> Reregister(const StateDir& state, const Enrollment& enrollment,
                                        const NodeDescription& node, bool renew,
                                        const ClientOptions& options,
                                        common::CancelToken* cancel = nullptr);

// Whether a failed Enroll/Reregister is worth retrying later (the controller was unreachable or
// slow) rather than a refusal an operator must act on.
bool IsTransient(const absl::Status& status);

// The background thread of a joined agent: registers again (Reregister), then calls ReportHealth
// every heartbeat interval the controller returned, with the summary `summarize` builds. Failures
// are logged and retried with capped exponential backoff; a heartbeat refused for the caller's
// identity leads to a new registration. Never blocks its owner; Stop() returns promptly even
// during a call.
class Heartbeater {
 public:
  struct Options {
    ClientOptions client;
    std::chrono::nanoseconds initial_backoff = std::chrono::seconds(1);
    std::chrono::nanoseconds max_backoff = std::chrono::seconds(30);
    // Send a CSR with the first registration to renew node.crt (not needed right after a join).
    bool renew_certificate = true;
    const common::Clock* clock = &common::RealClock();
  };

  Heartbeater(StateDir state, Enrollment enrollment, NodeDescription node,
              std::function<NodeHealthSummary()> summarize, Options options);
  ~Heartbeater();
  Heartbeater(const Heartbeater&) = delete;
  Heartbeater& operator=(const Heartbeater&) = delete;

  void Start();
  // Cancels a call in flight and joins the thread. Idempotent.
  void Stop();

  // Heartbeats the controller acknowledged.
  uint64_t heartbeats_acknowledged() const { return acknowledged_.load(); }

 private:
  void Run();

  const StateDir state_;
  const Enrollment enrollment_;
  const NodeDescription node_;
  const std::function<NodeHealthSummary()> summarize_;
  const Options options_;
  common::CancelToken cancel_;
  std::atomic<uint64_t> acknowledged_{0};
  std::thread thread_;
};

}  // namespace pi::agent::join
