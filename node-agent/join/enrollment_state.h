#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pi::agent::join {

// Where this agent is joined: the controller's cluster address and the node id it was given.
struct Enrollment {
  std::string address;
  std::string node_id;

  bool operator==(const Enrollment&) const = default;
};

// The files an enrolled agent keeps in its state directory (DESIGN 5.6: /var/lib/pi-agent):
// node.key (0600, generated once, never leaves the Pi), node.crt (signed by the cluster CA for
// "node:<id>"), ca.crt (the cluster CA) and control_plane.json {"address", "node_id"}.
// control_plane.json is written last and marks the enrollment complete.
class StateDir {
 public:
  static constexpr std::string_view kKeyFile = "node.key";
  static constexpr std::string_view kCertFile = "node.crt";
  static constexpr std::string_view kCaFile = "ca.crt";
  static constexpr std::string_view kControlPlaneFile = "control_plane.json";

  explicit StateDir(std::string dir);

  const std::string& dir() const { return dir_; }
  std::string key_file() const;
  std::string cert_file() const;
  std::string ca_file() const;
  std::string control_plane_file() const;

  // nullopt when control_plane.json does not exist (not joined). Otherwise every file must be
  // there and consistent: the certificate matches node.key and names "node:<node_id>", ca.crt
  // holds a certificate. FAILED_PRECONDITION for a missing file, DATA_LOSS for a corrupt one;
  // both messages say which files to delete to join again.
  absl::StatusOr<std::optional<Enrollment>> Load() const;

  // OK when a new enrollment may write here: FAILED_PRECONDITION when node.crt or ca.crt exist
  // without control_plane.json (left by an interrupted join or placed by hand), because joining
  // would silently replace them. A lone node.key is fine: it is reused.
  absl::Status CheckEnrollable() const;

  // The node's private key, generated (ECDSA P-256, mode 0600, directory created 0700) the first
  // time and reused afterwards, so a retried join keeps the same key.
  absl::StatusOr<std::string> LoadOrCreateKey() const;

  // Completes an enrollment: writes node.crt and ca.crt, then control_plane.json, each atomically.
  absl::Status Save(const Enrollment& enrollment, std::string_view cert_pem,
                    std::string_view ca_pem) const;

  // Replaces node.crt atomically with a renewed certificate for the same key.
  absl::Status SaveCertificate(std::string_view cert_pem) const;

 private:
  std::string Path(std::string_view name) const;
  // What an operator should do to start over, for error messages.
  std::string RejoinAdvice() const;

  std::string dir_;
};

// Checks that a certificate from the controller is for this node: it parses, matches `key_pem`
// and its common name is "node:<node_id>". INVALID_ARGUMENT naming what is wrong.
absl::Status CheckNodeCertificate(std::string_view cert_pem, std::string_view key_pem,
                                  std::string_view node_id);

// What the agent does at start, from the stored enrollment and what it was asked to join.
enum class StartupAction {
  kStandalone,  // no controller: serve NodeAgent only (as before clusters existed)
  kEnroll,      // first join with a token
  kReregister,  // already joined: re-register with the node certificate, then heartbeat
};

struct StartupPlan {
  StartupAction action = StartupAction::kStandalone;
  // The controller's address (kEnroll, kReregister).
  std::string address;
  // The stored enrollment (kReregister).
  std::optional<Enrollment> enrollment;
};

// `requested_address` is --join or control_plane.address ("" for neither). Refuses with
// FAILED_PRECONDITION a request to join another controller than the stored one; with
// INVALID_ARGUMENT a first join without a token, a token without an address, or a malformed
// address. A token given to an agent that is already joined to that address is ignored.
absl::StatusOr<StartupPlan> PlanStartup(const StateDir& state,
                                        const std::optional<Enrollment>& stored,
                                        std::string_view requested_address, bool has_token);

}  // namespace pi::agent::join
