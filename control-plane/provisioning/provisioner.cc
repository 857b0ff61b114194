#include "control-plane/provisioning/provisioner.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <vector>

#include "common/provisioning/profile.h"
#include "common/system/files.h"

namespace pi::controlplane::provisioning {
namespace {

namespace profile = common::provisioning;

constexpr std::string_view kProfileExtension = ".json";
// A profile is a short text; this keeps a wrong file from filling memory and every release.
constexpr size_t kMaxProfileBytes = 256 * 1024;
constexpr size_t kMaxProfileNameBytes = 64;

bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

std::string TargetText(const ProvisioningSpec& spec) {
  switch (spec.target) {
    case TargetKind::kNode:
      return "node=" + spec.node_id;
    case TargetKind::kSelector:
      return spec.label_selector;
    case TargetKind::kAll:
      break;
  }
  return "all";
}

}  // namespace

bool IsValidProfileName(const std::string& name) {
  if (name.empty() || name.size() > kMaxProfileNameBytes || !IsNameStart(name[0])) return false;
  return std::all_of(name.begin() + 1, name.end(),
                     [](char c) { return IsNameStart(c) || c == '_' || c == '-'; });
}

std::string Provisioner::UnknownProfile(const std::string& name) const {
  std::vector<std::string> available;
  std::error_code error;
  for (std::filesystem::directory_iterator it(profiles_dir_, error), end; !error && it != end;
       it.increment(error)) {
    const std::filesystem::path& path = it->path();
    const std::string stem = path.stem().string();
    if (path.extension() == kProfileExtension && IsValidProfileName(stem)) {
      available.push_back(stem);
    }
  }
  std::sort(available.begin(), available.end());
  if (available.empty()) {
    return fmt::format("no provisioning profile {:?}: {} holds no profiles", name, profiles_dir_);
  }
  return fmt::format("no provisioning profile {:?}; available: {}", name,
                     fmt::join(available, ", "));
}

absl::StatusOr<Provisioner::LoadedProfile> Provisioner::Load(const ProvisioningSpec& spec) const {
  if (!IsValidProfileName(spec.profile)) {
    return absl::InvalidArgumentError(fmt::format(
        "profile name {:?} is not valid: lowercase letters, digits, '_' and '-', starting with a "
        "letter or digit, at most {} characters",
        spec.profile, kMaxProfileNameBytes));
  }
  const std::string path =
      (std::filesystem::path(profiles_dir_) / (spec.profile + std::string(kProfileExtension)))
          .string();
  absl::StatusOr<std::string> text = common::ReadFileToString(path, kMaxProfileBytes);
  if (absl::IsNotFound(text.status())) return absl::NotFoundError(UnknownProfile(spec.profile));
  if (!text.ok()) return text.status();
  absl::StatusOr<profile::Profile> parsed = profile::ParseProfile(*text, path);
  if (!parsed.ok()) return parsed.status();
  absl::StatusOr<std::map<std::string, std::string>> resolved =
      profile::ResolveParameters(*parsed, spec.parameters);
  if (!resolved.ok()) return resolved.status();
  // Substitution can still break a step (a parameter that makes a path relative): refuse now
  // rather than on every node.
  if (absl::StatusOr<profile::Profile> rendered = profile::Render(*parsed, *resolved);
      !rendered.ok()) {
    return absl::InvalidArgumentError(
        fmt::format("profile {}: {}", spec.profile, std::string(rendered.status().message())));
  }
  return LoadedProfile{*std::move(text), *std::move(resolved)};
}

absl::StatusOr<std::vector<std::string>> Provisioner::TargetNodes(const ProvisioningSpec& spec) {
  std::vector<std::string> ids;
  if (spec.target == TargetKind::kNode) {
    if (spec.node_id.empty()) return absl::InvalidArgumentError("name the node to provision");
    absl::StatusOr<cluster::NodeView> node = cluster_.GetNode(spec.node_id);
    if (!node.ok()) return node.status();
    if (node->node.state != store::NodeState::kReady) {
      return absl::FailedPreconditionError(fmt::format("node {} is {}, not READY", spec.node_id,
                                                       store::NodeStateName(node->node.state)));
    }
    ids.push_back(spec.node_id);
    return ids;
  }
  if (spec.target == TargetKind::kSelector && spec.label_selector.empty()) {
    return absl::InvalidArgumentError("give a label selector (or target every node)");
  }
  const std::string selector = spec.target == TargetKind::kSelector ? spec.label_selector : "";
  absl::StatusOr<std::vector<cluster::NodeView>> nodes =
      cluster_.ListNodes(selector, {store::NodeState::kReady});
  if (!nodes.ok()) return nodes.status();
  if (nodes->empty()) {
    return absl::FailedPreconditionError(
        spec.target == TargetKind::kAll
            ? std::string("no READY node to provision")
            : fmt::format("no READY node matches {:?}", spec.label_selector));
  }
  for (const cluster::NodeView& view : *nodes) ids.push_back(view.node.id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

absl::StatusOr<Requested> Provisioner::Request(const ProvisioningSpec& spec,
                                               const std::string& created_by) {
  absl::StatusOr<LoadedProfile> loaded = Load(spec);
  if (!loaded.ok()) return loaded.status();
  absl::StatusOr<std::vector<std::string>> nodes = TargetNodes(spec);
  if (!nodes.ok()) return nodes.status();

  const std::string parameters_json = profile::ParametersJson(loaded->parameters);
  std::vector<release::NewRelease> releases;
  for (const std::string& node_id : *nodes) {
    release::NewRelease release;
    release.type = release::ProvisionDestinationType();
    release.destination_name = "provision/" + spec.profile;
    release.node_id = node_id;
    release.metadata[std::string(release::kNodeIdMetadataKey)] = node_id;
    release.artifact_files = {
        {std::string(profile::kProfileFileName), loaded->text},
        {std::string(profile::kParametersFileName), parameters_json},
    };
    release.plan = spec.plan;
    release.annotation.slug = spec.profile;
    release.created_by = created_by;
    releases.push_back(std::move(release));
  }

  release::Provisioning provisioning;
  provisioning.profile = spec.profile;
  provisioning.plan = spec.plan;
  provisioning.parameters = loaded->parameters;
  provisioning.target = TargetText(spec);
  provisioning.created_by = created_by;
  absl::StatusOr<release::Provisioning> created =
      releases_.CreateProvisioning(std::move(provisioning), std::move(releases));
  if (!created.ok()) return created.status();
  return Requested{*std::move(created), *std::move(nodes)};
}

}  // namespace pi::controlplane::provisioning
