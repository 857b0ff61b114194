#include "common/grpc/proto_time.h"

#include <fmt/format.h>

namespace pi::common {
namespace {

// Limits from google/protobuf/duration.proto and timestamp.proto.
constexpr int64_t kMaxDurationSeconds = 315'576'000'000;
constexpr int64_t kMinTimestampSeconds = -62'135'596'800;  // 0001-01-01T00:00:00Z
constexpr int64_t kMaxTimestampSeconds = 253'402'300'799;  // 9999-12-31T23:59:59Z
constexpr int32_t kNanosPerSecond = 1'000'000'000;

}  // namespace

absl::StatusOr<std::chrono::nanoseconds> FromProtoDuration(const google::protobuf::Duration& value,
                                                           std::string_view field) {
  const int64_t seconds = value.seconds();
  const int32_t nanos = value.nanos();
  const bool in_range = seconds >= -kMaxDurationSeconds && seconds <= kMaxDurationSeconds &&
                        nanos > -kNanosPerSecond && nanos < kNanosPerSecond;
  const bool signs_agree = !((seconds < 0 && nanos > 0) || (seconds > 0 && nanos < 0));
  if (!in_range || !signs_agree) {
    return absl::InvalidArgumentError(
        fmt::format("{} is not a valid duration (seconds={}, nanos={})", field, seconds, nanos));
  }
  // Beyond ±292 years nanoseconds overflow int64; such durations are saturated.
  constexpr int64_t kMaxSafeSeconds = 9'000'000'000;
  if (seconds > kMaxSafeSeconds) return std::chrono::nanoseconds::max();
  if (seconds < -kMaxSafeSeconds) return std::chrono::nanoseconds::min();
  return std::chrono::seconds(seconds) + std::chrono::nanoseconds(nanos);
}

absl::StatusOr<std::chrono::system_clock::time_point> FromProtoTimestamp(
    const google::protobuf::Timestamp& value, std::string_view field) {
  if (value.seconds() < kMinTimestampSeconds || value.seconds() > kMaxTimestampSeconds ||
      value.nanos() < 0 || value.nanos() >= kNanosPerSecond) {
    return absl::InvalidArgumentError(
        fmt::format("{} is not a valid timestamp (seconds={}, nanos={})", field, value.seconds(),
                    value.nanos()));
  }
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(value.seconds()) + std::chrono::nanoseconds(value.nanos())));
}

google::protobuf::Duration ToProtoDuration(std::chrono::nanoseconds value) {
  google::protobuf::Duration out;
  out.set_seconds(value.count() / kNanosPerSecond);
  out.set_nanos(static_cast<int32_t>(value.count() % kNanosPerSecond));
  return out;
}

google::protobuf::Timestamp ToProtoTimestamp(std::chrono::system_clock::time_point value) {
  const int64_t nanos =
      std::chrono::duration_cast<std::chrono::nanoseconds>(value.time_since_epoch()).count();
  int64_t seconds = nanos / kNanosPerSecond;
  int64_t remainder = nanos % kNanosPerSecond;
  if (remainder < 0) {
    remainder += kNanosPerSecond;
    --seconds;
  }
  google::protobuf::Timestamp out;
  out.set_seconds(seconds);
  out.set_nanos(static_cast<int32_t>(remainder));
  return out;
}

}  // namespace pi::common
