#include <catch2/catch.hpp>

#include "common/grpc/proto_time.h"

namespace pi::common {
namespace {

using namespace std::chrono_literals;

google::protobuf::Duration Duration(int64_t seconds, int32_t nanos) {
  google::protobuf::Duration d;
  d.set_seconds(seconds);
  d.set_nanos(nanos);
  return d;
}

TEST_CASE("valid durations convert both ways", "[proto_time]") {
  CHECK(*FromProtoDuration(Duration(1, 500'000'000), "d") == 1500ms);
  CHECK(*FromProtoDuration(Duration(-2, -1), "d") == -2s - 1ns);
  CHECK(*FromProtoDuration(ToProtoDuration(-1500ms), "d") == -1500ms);
  CHECK(*FromProtoDuration(Duration(315'576'000'000, 0), "d") == std::chrono::nanoseconds::max());
}

TEST_CASE("invalid durations name the field", "[proto_time]") {
  for (auto d : {Duration(1, -1), Duration(-1, 1), Duration(0, 1'000'000'000),
                 Duration(315'576'000'001, 0)}) {
    const auto status = FromProtoDuration(d, "timeout").status();
    CHECK(status.code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(status.message()), Catch::StartsWith("timeout is not a valid duration"));
  }
}

TEST_CASE("timestamps convert both ways and reject out-of-range values", "[proto_time]") {
  const auto now = std::chrono::system_clock::now();
  CHECK(*FromProtoTimestamp(ToProtoTimestamp(now), "t") == now);
  const auto before_epoch = std::chrono::system_clock::time_point(-1500ms);
  const auto proto = ToProtoTimestamp(before_epoch);
  CHECK(proto.seconds() == -2);
  CHECK(proto.nanos() == 500'000'000);
  google::protobuf::Timestamp bad;
  bad.set_nanos(-1);
  CHECK(FromProtoTimestamp(bad, "since").status().code() == absl::StatusCode::kInvalidArgument);
  bad.set_nanos(0);
  bad.set_seconds(253'402'300'800);
  CHECK(FromProtoTimestamp(bad, "since").status().code() == absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pi::common
