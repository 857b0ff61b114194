#pragma once

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include <chrono>
#include <string_view>

#include "absl/status/statusor.h"

namespace pi::common {

// Checked conversions between the protobuf well-known types and std::chrono. A value outside the
// ranges the protobuf spec allows (or with inconsistent signs) is INVALID_ARGUMENT naming `field`.
absl::StatusOr<std::chrono::nanoseconds> FromProtoDuration(const google::protobuf::Duration& value,
                                                           std::string_view field);
absl::StatusOr<std::chrono::system_clock::time_point> FromProtoTimestamp(
    const google::protobuf::Timestamp& value, std::string_view field);

google::protobuf::Duration ToProtoDuration(std::chrono::nanoseconds value);
google::protobuf::Timestamp ToProtoTimestamp(std::chrono::system_clock::time_point value);

}  // namespace pi::common
