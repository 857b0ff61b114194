#pragma once

#include <catch2/catch.hpp>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace Catch {
template <>
struct StringMaker<absl::StatusCode> {
  static std::string convert(absl::StatusCode code) { return absl::StatusCodeToString(code); }
};
}  // namespace Catch

namespace pi::agent::gpio::testing {

inline const absl::Status& StatusOf(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

}  // namespace pi::agent::gpio::testing

// Shows the status message when the check fails.
#define REQUIRE_OK(expr)                                                        \
  do {                                                                          \
    const absl::Status pi_status_ = ::pi::agent::gpio::testing::StatusOf(expr); \
    INFO(pi_status_.ToString());                                                \
    REQUIRE(pi_status_.ok());                                                   \
  } while (false)

#define REQUIRE_CODE(expr, expected_code)                                       \
  do {                                                                          \
    const absl::Status pi_status_ = ::pi::agent::gpio::testing::StatusOf(expr); \
    INFO(pi_status_.ToString());                                                \
    REQUIRE(pi_status_.code() == (expected_code));                              \
  } while (false)
