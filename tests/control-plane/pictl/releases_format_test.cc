// Renderings of releases, runners and provisioning requests.
#include <catch2/catch.hpp>
#include <string>

#include "common/grpc/proto_time.h"
#include "control-plane/pictl/format.h"

namespace pi::controlplane::pictl {
namespace {

using namespace std::chrono_literals;

// 2026-11-22T07:31:47Z
const WallTime kNow = WallTime(std::chrono::seconds(1795332707));

google::protobuf::Timestamp Ago(std::chrono::nanoseconds age) {
  return common::ToProtoTimestamp(kNow - std::chrono::duration_cast<WallTime::duration>(age));
}

pb::Release MakeRelease(const std::string& id, pb::ReleaseState state) {
  pb::Release release;
  release.set_id(id);
  release.set_state(state);
  release.mutable_destination_type()->set_organisation("picontroller");
  release.mutable_destination_type()->set_name("provision");
  release.mutable_destination_type()->set_version(1);
  release.set_node_id("pi-1");
  release.set_attempts(1);
  release.set_max_attempts(3);
  *release.mutable_created_at() = Ago(2min);
  return release;
}

}  // namespace

TEST_CASE("release states drop their prefix; the ended ones are the final four") {
  CHECK(ReleaseStateName(pb::RELEASE_STATE_TIMED_OUT) == "TIMED_OUT");
  CHECK(ReleaseStateName(pb::RELEASE_STATE_UNSPECIFIED) == "UNSPECIFIED");
  CHECK(ReleaseStateName(static_cast<pb::ReleaseState>(42)) == "STATE_42");
  for (auto state : {pb::RELEASE_STATE_SUCCEEDED, pb::RELEASE_STATE_FAILED,
                     pb::RELEASE_STATE_CANCELLED, pb::RELEASE_STATE_TIMED_OUT}) {
    CHECK(ReleaseEnded(state));
  }
  for (auto state : {pb::RELEASE_STATE_UNSPECIFIED, pb::RELEASE_STATE_QUEUED,
                     pb::RELEASE_STATE_ASSIGNED, pb::RELEASE_STATE_RUNNING}) {
    CHECK_FALSE(ReleaseEnded(state));
  }
}

TEST_CASE("the release table has one row per release") {
  pb::ListReleasesResponse response;
  CHECK(FormatReleaseTable(response, kNow) == "No releases.\n");
  *response.add_releases() = MakeRelease("r1", pb::RELEASE_STATE_RUNNING);
  pb::Release plan = MakeRelease("r2", pb::RELEASE_STATE_QUEUED);
  plan.set_plan(true);
  plan.clear_node_id();
  *response.add_releases() = plan;
  CHECK(FormatReleaseTable(response, kNow) ==
        "ID  STATE    MODE   TYPE                      NODE  ATTEMPTS  CREATED\n"
        "r1  RUNNING  apply  picontroller/provision@1  pi-1  1/3       2m ago\n"
        "r2  QUEUED   plan   picontroller/provision@1  -     1/3       2m ago\n");
}

TEST_CASE("release details show the history, the error and the plan output") {
  pb::Release release = MakeRelease("r1", pb::RELEASE_STATE_FAILED);
  release.set_error_message("step 2 failed");
  release.set_plan(true);
  release.set_plan_output("+ write /etc/hostname\nPlan: 1 to change, 0 unchanged.");
  release.add_artifact_file_names("profile.json");
  release.add_artifact_file_names("parameters.json");
  pb::ReleaseTransition* queued = release.add_history();
  queued->set_state(pb::RELEASE_STATE_QUEUED);
  *queued->mutable_at() = common::ToProtoTimestamp(kNow);
  pb::ReleaseTransition* failed = release.add_history();
  failed->set_state(pb::RELEASE_STATE_FAILED);
  failed->set_runner_id("pi-1");
  failed->set_reason("step 2 failed");
  *failed->mutable_at() = common::ToProtoTimestamp(kNow);

  const std::string details = FormatReleaseDetails(release, kNow);
  CHECK_THAT(details, Catch::Matchers::Contains("State:           FAILED"));
  CHECK_THAT(details, Catch::Matchers::Contains("Artifact files:  profile.json, parameters.json"));
  CHECK_THAT(details, Catch::Matchers::Contains("Error:           step 2 failed"));
  CHECK_THAT(details, Catch::Matchers::Contains(
                          "  2026-11-22T07:31:47Z  FAILED  runner pi-1  step 2 failed\n"));
  CHECK_THAT(details,
             Catch::Matchers::EndsWith(
                 "Plan output:\n+ write /etc/hostname\nPlan: 1 to change, 0 unchanged.\n"));
}

TEST_CASE("release events and log lines are one line each") {
  pb::ReleaseLogLine out_line;
  out_line.set_channel("stdout");
  out_line.set_line("hello");
  CHECK(FormatReleaseLogLine(out_line) == "hello");
  out_line.set_channel("stderr");
  CHECK(FormatReleaseLogLine(out_line) == "stderr: hello");

  pb::ReleaseEvent event;
  *event.mutable_release() = MakeRelease("r1", pb::RELEASE_STATE_RUNNING);
  event.mutable_release()->set_runner_id("pi-1");
  CHECK(FormatReleaseEvent(event) == "release r1 RUNNING on runner pi-1");
  event.mutable_release()->set_state(pb::RELEASE_STATE_FAILED);
  event.mutable_release()->set_error_message("exit 2");
  CHECK(FormatReleaseEvent(event) == "release r1 FAILED: exit 2");
  *event.mutable_log() = out_line;
  CHECK(FormatReleaseEvent(event) == "stderr: hello");
  CHECK(FormatReleaseUpdate(MakeRelease("r9", pb::RELEASE_STATE_CANCELLED), "cancelled") ==
        "release r9 cancelled: CANCELLED\n");
}

TEST_CASE("the runner table lists capabilities and slots") {
  pb::ListRunnersResponse response;
  CHECK(FormatRunnerTable(response, kNow) == "No runners connected.\n");
  pb::RunnerInfo* runner = response.add_runners();
  runner->set_runner_id("pi-1");
  runner->set_identity("node:pi-1");
  runner->set_node_id("pi-1");
  pb::DestinationType* type = runner->add_capabilities();
  type->set_organisation("picontroller");
  type->set_name("provision");
  type->set_version(1);
  runner->set_active(1);
  runner->set_max_concurrent(2);
  *runner->mutable_connected_at() = Ago(1h);
  *runner->mutable_last_heartbeat() = Ago(4s);
  CHECK(FormatRunnerTable(response, kNow) ==
        "ID    IDENTITY   NODE  CAPABILITIES              ACTIVE  CONNECTED  LAST-HEARTBEAT\n"
        "pi-1  node:pi-1  pi-1  picontroller/provision@1  1/2     1h ago     4s ago\n");
}

TEST_CASE("provisioning answers: created, progress, status and plan output") {
  pb::ProvisioningRequest request;
  request.set_profile("hostname");
  request.set_mode(pb::ProvisioningRequest::MODE_PLAN);
  pb::ProvisioningResponse created;
  created.set_provisioning_id("p1");
  created.add_release_ids("r1");
  created.add_node_ids("pi-1");
  CHECK(FormatProvisioningCreated(created, request) ==
        "provisioning p1: plan hostname on 1 node\n"
        "NODE  RELEASE\n"
        "pi-1  r1\n");

  pb::Release done = MakeRelease("r1", pb::RELEASE_STATE_SUCCEEDED);
  CHECK(FormatProvisionProgress(done) == "pi-1  r1  SUCCEEDED");
  pb::Release failed = MakeRelease("r2", pb::RELEASE_STATE_FAILED);
  failed.set_node_id("pi-2");
  failed.set_error_message("exit 1");
  CHECK(FormatProvisionProgress(failed) == "pi-2  r2  FAILED: exit 1");

  CHECK(FormatPlanOutput(failed).empty());
  done.set_plan_output("Plan: 1 to change, 2 unchanged.");
  CHECK(FormatPlanOutput(done).empty());
  done.set_plan(true);
  CHECK(FormatPlanOutput(done) ==
        "--- plan for node pi-1 (release r1) ---\nPlan: 1 to change, 2 unchanged.\n");

  pb::Provisioning provisioning;
  provisioning.set_id("p1");
  provisioning.set_profile("hostname");
  provisioning.set_plan(true);
  provisioning.set_target("role=sensor");
  (*provisioning.mutable_parameters())["hostname"] = "pi-kitchen";
  *provisioning.mutable_created_at() = Ago(1min);
  *provisioning.add_releases() = done;
  *provisioning.add_releases() = failed;
  const std::string status = FormatProvisioningStatus(provisioning, kNow);
  CHECK_THAT(status, Catch::Matchers::Contains("Target:        role=sensor\n"));
  CHECK_THAT(status, Catch::Matchers::Contains("Parameters:    hostname=pi-kitchen\n"));
  CHECK_THAT(status, Catch::Matchers::Contains("Releases: 1 FAILED, 1 SUCCEEDED\n"));
  CHECK_THAT(status, Catch::Matchers::Contains("pi-2  r2       FAILED     exit 1\n"));
  CHECK_THAT(status, Catch::Matchers::EndsWith("Plan: 1 to change, 2 unchanged.\n"));
}

}  // namespace pi::controlplane::pictl
