#include "node-agent/join/enrollment_state.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/config/json_config.h"
#include "common/system/files.h"
#include "common/system/host_port.h"
#include "common/tls/credentials.h"
#include "common/tls/identity.h"
#include "common/tls/x509.h"

namespace pi::agent::join {
namespace {

constexpr size_t kMaxPemBytes = 1024 * 1024;

// A path that cannot be looked at (EACCES...) counts as present, so that reading it reports why
// instead of the agent quietly acting as if it had never joined.
bool Exists(const std::string& path) {
  struct stat info {};
  return lstat(path.c_str(), &info) == 0 || (errno != ENOENT && errno != ENOTDIR);
}

// "host:port" with a host and a non-zero port, in the one spelling used for comparisons.
absl::StatusOr<std::string> NormalizeAddress(std::string_view address) {
  auto parsed = common::SplitHostPort(address);
  if (!parsed.ok()) return parsed.status();
  if (parsed->host.empty() || parsed->port == 0) {
    return absl::InvalidArgumentError(fmt::format(
        "controller address \"{}\" needs a host and a port, such as controller.lan:9090", address));
  }
  return common::JoinHostPort(*parsed);
}

}  // namespace

StateDir::StateDir(std::string dir) : dir_(std::move(dir)) {}

std::string StateDir::Path(std::string_view name) const {
  return (std::filesystem::path(dir_) / name).string();
}
std::string StateDir::key_file() const { return Path(kKeyFile); }
std::string StateDir::cert_file() const { return Path(kCertFile); }
std::string StateDir::ca_file() const { return Path(kCaFile); }
std::string StateDir::control_plane_file() const { return Path(kControlPlaneFile); }

std::string StateDir::RejoinAdvice() const {
  return fmt::format(
      "to join again, stop pi-agent, delete {}, {}, {} and {} and run pi-agent --join "
      "HOST:PORT --token-file FILE with a new join token",
      control_plane_file(), cert_file(), ca_file(), key_file());
}

absl::Status CheckNodeCertificate(std::string_view cert_pem, std::string_view key_pem,
                                  std::string_view node_id) {
  auto cert = common::ParseCertificatePem(cert_pem);
  if (!cert.ok()) return cert.status();
  auto key = common::ParsePrivateKeyPem(key_pem);
  if (!key.ok()) return key.status();
  if (!common::KeyMatchesCertificate(cert->get(), key->get())) {
    return absl::InvalidArgumentError("the node certificate is not for this node's key");
  }
  auto info = common::ParseCertificate(cert_pem);
  if (!info.ok()) return info.status();
  const std::string expected = fmt::format("node:{}", node_id);
  if (info->common_name != expected) {
    return absl::InvalidArgumentError(fmt::format(
        "the node certificate is for \"{}\", expected \"{}\"", info->common_name, expected));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<Enrollment>> StateDir::Load() const {
  if (!Exists(control_plane_file())) return std::optional<Enrollment>();

  std::vector<std::string> missing;
  for (const auto& path : {key_file(), cert_file(), ca_file()}) {
    if (!Exists(path)) missing.push_back(path);
  }
  if (!missing.empty()) {
    return absl::FailedPreconditionError(fmt::format(
        "the enrollment in {} is incomplete: {} missing; restore {} from a backup, or {}", dir_,
        fmt::join(missing, ", "), missing.size() == 1 ? "it" : "them", RejoinAdvice()));
  }
  const auto corrupt = [this](const std::string& what) {
    return absl::DataLossError(
        fmt::format("the enrollment in {} is corrupt: {}; {}", dir_, what, RejoinAdvice()));
  };

  auto document = common::ParseJsonConfigFile(control_plane_file());
  if (!document.ok()) return corrupt(std::string(document.status().message()));
  Enrollment enrollment;
  common::ConfigReader reader(*document, "");
  reader.Read("address", &enrollment.address);
  reader.Read("node_id", &enrollment.node_id);
  if (auto status = reader.Finish(); !status.ok()) {
    return corrupt(fmt::format("{}: {}", control_plane_file(), std::string(status.message())));
  }
  if (auto address = NormalizeAddress(enrollment.address); address.ok()) {
    enrollment.address = *address;
  } else {
    return corrupt(fmt::format("{}: address: {}", control_plane_file(),
                               std::string(address.status().message())));
  }
  if (auto identity = common::ParseIdentity("node:" + enrollment.node_id); !identity.ok()) {
    return corrupt(fmt::format("{}: node_id \"{}\" is not a node id", control_plane_file(),
                               enrollment.node_id));
  }

  auto pair = common::LoadKeyPair(cert_file(), key_file());
  if (!pair.ok()) return corrupt(std::string(pair.status().message()));
  if (auto status = CheckNodeCertificate(pair->cert_pem, pair->key_pem, enrollment.node_id);
      !status.ok()) {
    return corrupt(fmt::format("{}: {}", cert_file(), std::string(status.message())));
  }
  if (auto ca = common::LoadCaBundle(ca_file()); !ca.ok())
    return corrupt(std::string(ca.status().message()));
  return std::optional<Enrollment>(std::move(enrollment));
}

absl::Status StateDir::CheckEnrollable() const {
  std::vector<std::string> leftovers;
  for (const auto& path : {cert_file(), ca_file()}) {
    if (Exists(path)) leftovers.push_back(path);
  }
  if (leftovers.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(fmt::format(
      "cannot join: {} already exist{} in {} without {} (an interrupted join, or certificates "
      "placed by hand); joining would replace them. Delete {} (or set control_plane.state_dir to "
      "another directory) and run the join again",
      fmt::join(leftovers, " and "), leftovers.size() == 1 ? "s" : "", dir_, kControlPlaneFile,
      leftovers.size() == 1 ? "it" : "them"));
}

absl::StatusOr<std::string> StateDir::LoadOrCreateKey() const {
  auto existing = common::ReadFileToString(key_file(), kMaxPemBytes);
  if (existing.ok()) {
    if (auto key = common::ParsePrivateKeyPem(*existing); !key.ok()) {
      return absl::DataLossError(
          fmt::format("{} is not a private key ({}); delete it to have a "
                      "new one generated",
                      key_file(), std::string(key.status().message())));
    }
    return existing;
  }
  if (existing.status().code() != absl::StatusCode::kNotFound) return existing.status();

  std::error_code error;
  const bool created = std::filesystem::create_directories(dir_, error);
  if (error) {
    return absl::FailedPreconditionError(
        fmt::format("cannot create the state directory {}: {}", dir_, error.message()));
  }
  // A directory we create holds the node's private key: nobody else needs to list it. One that
  // exists is the operator's to set up.
  if (created && chmod(dir_.c_str(), 0700) != 0) {
    return absl::FailedPreconditionError(
        fmt::format("cannot restrict {} to mode 0700: {}", dir_, std::strerror(errno)));
  }
  auto key = common::GenerateEcPrivateKeyPem();
  if (!key.ok()) return key.status();
  if (auto status = common::WritePrivateKeyFile(key_file(), *key); !status.ok()) return status;
  return key;
}

absl::Status StateDir::Save(const Enrollment& enrollment, std::string_view cert_pem,
                            std::string_view ca_pem) const {
  if (auto status = common::WriteFileAtomically(cert_file(), cert_pem, 0644); !status.ok()) {
    return status;
  }
  if (auto status = common::WriteFileAtomically(ca_file(), ca_pem, 0644); !status.ok()) {
    return status;
  }
  const auto document =
      nlohmann::json{{"address", enrollment.address}, {"node_id", enrollment.node_id}};
  return common::WriteFileAtomically(control_plane_file(), document.dump(2) + "\n", 0644);
}

absl::Status StateDir::SaveCertificate(std::string_view cert_pem) const {
  return common::WriteFileAtomically(cert_file(), cert_pem, 0644);
}

absl::StatusOr<StartupPlan> PlanStartup(const StateDir& state,
                                        const std::optional<Enrollment>& stored,
                                        std::string_view requested_address, bool has_token) {
  StartupPlan plan;
  std::string requested;
  if (!requested_address.empty()) {
    auto normalized = NormalizeAddress(requested_address);
    if (!normalized.ok()) return normalized.status();
    requested = *normalized;
  }
  if (stored) {
    if (!requested.empty() && requested != stored->address) {
      return absl::FailedPreconditionError(fmt::format(
          "this agent is joined to {} as node {} and cannot join {} as well; to move it, remove "
          "the node from the old controller, stop pi-agent, delete {}, {}, {} and {}, and join "
          "{} with a token from it",
          stored->address, stored->node_id, requested, state.control_plane_file(),
          state.cert_file(), state.ca_file(), state.key_file(), requested));
    }
    plan.action = StartupAction::kReregister;
    plan.address = stored->address;
    plan.enrollment = stored;
    return plan;
  }
  if (requested.empty()) {
    if (has_token) {
      return absl::InvalidArgumentError(
          "a join token needs the controller's address: add --join HOST:PORT (or set "
          "control_plane.address)");
    }
    return plan;
  }
  if (!has_token) {
    return absl::InvalidArgumentError(fmt::format(
        "this agent has not joined {} yet: give the join token with --token-file FILE or "
        "--token TOKEN (an admin creates one on the controller)",
        requested));
  }
  if (auto status = state.CheckEnrollable(); !status.ok()) return status;
  plan.action = StartupAction::kEnroll;
  plan.address = requested;
  return plan;
}

}  // namespace pi::agent::join
