#pragma once

#include <catch2/catch.hpp>
#include <utility>

#include "absl/status/statusor.h"

namespace pi::testing {

// The value of a result the test cannot go on without; on an error the test stops and shows it.
template <typename T>
T Require(absl::StatusOr<T> value) {
  INFO(value.status().ToString());
  REQUIRE(value.ok());
  return *std::move(value);
}

}  // namespace pi::testing
