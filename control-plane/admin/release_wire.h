#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "control-plane/release/release_engine.h"
#include "control-plane/release/release_types.h"
#include "picontroller/v1/admin.pb.h"

// Conversions between the release core's types and picontroller.v1 Admin messages, in one place
// for every release RPC.
namespace pi::controlplane::admin {

picontroller::v1::ReleaseState ToProto(release::ReleaseState state);
// INVALID_ARGUMENT for UNSPECIFIED or a number no state has.
absl::StatusOr<release::ReleaseState> FromProto(picontroller::v1::ReleaseState state);

void ToProto(const release::DestinationType& type, picontroller::v1::DestinationType* out);
void ToProto(const release::Release& release, picontroller::v1::Release* out);
void ToProto(const release::LogLine& line, picontroller::v1::ReleaseLogLine* out);
void ToProto(const release::RunnerView& runner, picontroller::v1::RunnerInfo* out);

// The release an admin asks for; the engine validates files, type and limits. INVALID_ARGUMENT
// here only for what does not convert (a negative or malformed timeout).
absl::StatusOr<release::NewRelease> FromProto(const picontroller::v1::CreateReleaseRequest& request,
                                              const std::string& created_by);

// ListReleases' limit when the request leaves it 0, and its cap.
inline constexpr int kDefaultReleaseListLimit = 100;
inline constexpr int kMaxReleaseListLimit = 1000;
// INVALID_ARGUMENT for a limit outside 0..kMaxReleaseListLimit or a bad state.
absl::StatusOr<release::ReleaseFilter> FromProto(
    const picontroller::v1::ListReleasesRequest& request);

}  // namespace pi::controlplane::admin
