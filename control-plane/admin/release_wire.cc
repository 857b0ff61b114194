#include "control-plane/admin/release_wire.h"

#include <fmt/format.h>

#include <chrono>

#include "common/grpc/proto_time.h"

namespace pi::controlplane::admin {
namespace {

namespace pb = picontroller::v1;

void ToProto(const release::Annotation& annotation, pb::ReleaseAnnotation* out) {
  out->set_slug(annotation.slug);
  out->set_source_username(annotation.source_username);
  out->set_source_email(annotation.source_email);
  out->set_context_title(annotation.context_title);
  out->set_context_description(annotation.context_description);
  out->set_context_web(annotation.context_web);
  out->set_reference_version(annotation.reference_version);
  out->set_reference_commit_sha(annotation.reference_commit_sha);
  out->set_reference_commit_branch(annotation.reference_commit_branch);
  out->set_reference_commit_message(annotation.reference_commit_message);
}

release::Annotation FromProto(const pb::ReleaseAnnotation& annotation) {
  release::Annotation out;
  out.slug = annotation.slug();
  out.source_username = annotation.source_username();
  out.source_email = annotation.source_email();
  out.context_title = annotation.context_title();
  out.context_description = annotation.context_description();
  out.context_web = annotation.context_web();
  out.reference_version = annotation.reference_version();
  out.reference_commit_sha = annotation.reference_commit_sha();
  out.reference_commit_branch = annotation.reference_commit_branch();
  out.reference_commit_message = annotation.reference_commit_message();
  return out;
}

std::vector<release::ReleaseFile> FromProto(
    const google::protobuf::RepeatedPtrField<pb::ReleaseFileContent>& files) {
  std::vector<release::ReleaseFile> out;
  out.reserve(files.size());
  for (const pb::ReleaseFileContent& file : files) out.push_back({file.name(), file.content()});
  return out;
}

}  // namespace

pb::ReleaseState ToProto(release::ReleaseState state) {
  switch (state) {
    case release::ReleaseState::kQueued:
      return pb::RELEASE_STATE_QUEUED;
    case release::ReleaseState::kAssigned:
      return pb::RELEASE_STATE_ASSIGNED;
    case release::ReleaseState::kRunning:
      return pb::RELEASE_STATE_RUNNING;
    case release::ReleaseState::kSucceeded:
      return pb::RELEASE_STATE_SUCCEEDED;
    case release::ReleaseState::kFailed:
      return pb::RELEASE_STATE_FAILED;
    case release::ReleaseState::kCancelled:
      return pb::RELEASE_STATE_CANCELLED;
    case release::ReleaseState::kTimedOut:
      return pb::RELEASE_STATE_TIMED_OUT;
  }
  return pb::RELEASE_STATE_UNSPECIFIED;
}

absl::StatusOr<release::ReleaseState> FromProto(pb::ReleaseState state) {
  switch (state) {
    case pb::RELEASE_STATE_QUEUED:
      return release::ReleaseState::kQueued;
    case pb::RELEASE_STATE_ASSIGNED:
      return release::ReleaseState::kAssigned;
    case pb::RELEASE_STATE_RUNNING:
      return release::ReleaseState::kRunning;
    case pb::RELEASE_STATE_SUCCEEDED:
      return release::ReleaseState::kSucceeded;
    case pb::RELEASE_STATE_FAILED:
      return release::ReleaseState::kFailed;
    case pb::RELEASE_STATE_CANCELLED:
      return release::ReleaseState::kCancelled;
    case pb::RELEASE_STATE_TIMED_OUT:
      return release::ReleaseState::kTimedOut;
    default:
      break;
  }
  return absl::InvalidArgumentError(
      fmt::format("{} is not a release state", static_cast<int>(state)));
}

void ToProto(const release::DestinationType& type, pb::DestinationType* out) {
  out->set_organisation(type.organisation);
  out->set_name(type.name);
  out->set_version(type.version);
}

void ToProto(const release::Release& release, pb::Release* out) {
  out->set_id(release.id);
  out->set_state(ToProto(release.state));
  out->set_plan(release.plan);
  ToProto(release.type, out->mutable_destination_type());
  out->set_destination_name(release.destination_name);
  out->set_environment(release.environment);
  out->mutable_destination_metadata()->insert(release.metadata.begin(), release.metadata.end());
  out->set_node_id(release.node_id);
  out->set_runner_id(release.runner_id);
  out->set_attempts(release.attempts);
  out->set_max_attempts(release.max_attempts);
  *out->mutable_created_at() = common::ToProtoTimestamp(release.created_at);
  *out->mutable_updated_at() = common::ToProtoTimestamp(release.updated_at);
  if (release.finished_at.has_value()) {
    *out->mutable_finished_at() = common::ToProtoTimestamp(*release.finished_at);
  }
  out->set_error_message(release.error_message);
  if (release.plan_output.has_value()) out->set_plan_output(*release.plan_output);
  for (const release::Transition& transition : release.history) {
    pb::ReleaseTransition* item = out->add_history();
    item->set_state(ToProto(transition.state));
    *item->mutable_at() = common::ToProtoTimestamp(transition.at);
    item->set_reason(transition.reason);
    item->set_runner_id(transition.runner_id);
  }
  out->set_provisioning_id(release.provisioning_id);
  for (const std::string& name : release.artifact_file_names) out->add_artifact_file_names(name);
  for (const std::string& name : release.spec_file_names) out->add_spec_file_names(name);
  out->set_log_lines(release.log_lines);
  ToProto(release.annotation, out->mutable_annotation());
  out->set_project_organisation(release.project_organisation);
  out->set_project(release.project);
  *out->mutable_timeout() = common::ToProtoDuration(release.timeout);
}

void ToProto(const release::LogLine& line, pb::ReleaseLogLine* out) {
  out->set_sequence(line.sequence);
  out->set_channel(line.channel);
  out->set_line(line.line);
  out->set_timestamp_ms(line.timestamp_ms);
}

void ToProto(const release::RunnerView& runner, pb::RunnerInfo* out) {
  out->set_runner_id(runner.runner_id);
  out->set_identity(runner.identity);
  out->set_node_id(runner.node_id);
  for (const release::DestinationType& type : runner.capabilities) {
    ToProto(type, out->add_capabilities());
  }
  out->set_max_concurrent(runner.max_concurrent);
  out->set_active(runner.active);
  *out->mutable_connected_at() = common::ToProtoTimestamp(runner.connected_at);
  *out->mutable_last_heartbeat() = common::ToProtoTimestamp(runner.last_heartbeat);
  for (const std::string& id : runner.release_ids) out->add_release_ids(id);
}

absl::StatusOr<release::NewRelease> FromProto(const pb::CreateReleaseRequest& request,
                                              const std::string& created_by) {
  release::NewRelease out;
  out.artifact_files = FromProto(request.artifact_files());
  out.spec_files = FromProto(request.spec_files());
  out.type.organisation = request.destination_type().organisation();
  out.type.name = request.destination_type().name();
  out.type.version = request.destination_type().version();
  out.destination_name = request.destination_name();
  out.environment = request.environment();
  out.metadata.insert(request.destination_metadata().begin(), request.destination_metadata().end());
  out.node_id = request.node_id();
  out.plan = request.plan();
  out.annotation = FromProto(request.annotation());
  out.project_organisation = request.project_organisation();
  out.project = request.project();
  out.max_attempts = request.max_attempts();
  if (request.has_timeout()) {
    absl::StatusOr<std::chrono::nanoseconds> timeout =
        common::FromProtoDuration(request.timeout(), "timeout");
    if (!timeout.ok()) return timeout.status();
    if (*timeout < std::chrono::seconds(1)) {
      return absl::InvalidArgumentError("timeout must be at least 1s (unset = the default)");
    }
    out.timeout = std::chrono::duration_cast<std::chrono::seconds>(*timeout);
  }
  out.created_by = created_by;
  return out;
}

absl::StatusOr<release::ReleaseFilter> FromProto(const pb::ListReleasesRequest& request) {
  if (request.limit() < 0 || request.limit() > kMaxReleaseListLimit) {
    return absl::InvalidArgumentError(fmt::format("limit must be 1..{} (0 = {}), got {}",
                                                  kMaxReleaseListLimit, kDefaultReleaseListLimit,
                                                  request.limit()));
  }
  release::ReleaseFilter filter;
  for (int state : request.states()) {
    absl::StatusOr<release::ReleaseState> parsed = FromProto(static_cast<pb::ReleaseState>(state));
    if (!parsed.ok()) return parsed.status();
    filter.states.insert(*parsed);
  }
  filter.node_id = request.node_id();
  filter.provisioning_id = request.provisioning_id();
  filter.limit = request.limit() == 0 ? kDefaultReleaseListLimit : request.limit();
  return filter;
}

}  // namespace pi::controlplane::admin
