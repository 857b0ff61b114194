#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "control-plane/cluster/cluster.h"
#include "control-plane/release/release_engine.h"
#include "control-plane/release/release_types.h"

// Provisioning requests (DESIGN 5.3): a profile from the profiles directory, applied to one node,
// the READY nodes matching a label selector or every READY node, as one release per node.
namespace pi::controlplane::provisioning {

enum class TargetKind { kNode, kSelector, kAll };

struct ProvisioningSpec {
  TargetKind target = TargetKind::kNode;
  std::string node_id;         // kNode
  std::string label_selector;  // kSelector
  std::string profile;         // a file name in the profiles directory, without ".json"
  std::map<std::string, std::string> parameters;
  bool plan = false;
};

struct Requested {
  release::Provisioning provisioning;
  // The target nodes, in the order of provisioning.release_ids.
  std::vector<std::string> node_ids;
};

// Profile names: what can safely be a file name in the profiles directory.
bool IsValidProfileName(const std::string& name);

class Provisioner {
 public:
  // `releases` and `cluster` must outlive the provisioner. Profiles are read at each request, so
  // a profile edited on disk takes effect without a restart.
  Provisioner(release::ReleaseEngine& releases, cluster::Cluster& cluster, std::string profiles_dir)
      : releases_(releases), cluster_(cluster), profiles_dir_(std::move(profiles_dir)) {}

  // Creates the provisioning record and one release per target node (node ids sorted), all or
  // none. Refused before anything is created: INVALID_ARGUMENT for a malformed profile name, a
  // profile that does not parse or parameters it does not accept; NOT_FOUND for an unknown
  // profile (naming the available ones) or node; FAILED_PRECONDITION for a node that is not
  // READY or a selector that matches no READY node.
  absl::StatusOr<Requested> Request(const ProvisioningSpec& spec, const std::string& created_by);

 private:
  struct LoadedProfile {
    std::string text;                               // as read: the agent parses the same bytes
    std::map<std::string, std::string> parameters;  // resolved
  };
  absl::StatusOr<LoadedProfile> Load(const ProvisioningSpec& spec) const;
  // NOT_FOUND text for an unknown profile, naming those that exist.
  std::string UnknownProfile(const std::string& name) const;
  absl::StatusOr<std::vector<std::string>> TargetNodes(const ProvisioningSpec& spec);

  release::ReleaseEngine& releases_;
  cluster::Cluster& cluster_;
  const std::string profiles_dir_;
};

}  // namespace pi::controlplane::provisioning
