#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pi::common {

// Writes `contents` to a temporary file beside `path`, fsyncs it and renames it over `path`, so
// readers see either the old or the new file, never a partial one.
absl::Status WriteFileAtomically(const std::string& path, std::string_view contents, int mode);

// Reads a whole small file (config, key, certificate, secret). NOT_FOUND when it does not exist,
// FAILED_PRECONDITION when it cannot be read, INVALID_ARGUMENT when it is larger than `max_bytes`
// (so a wrong path such as /dev/zero cannot exhaust memory). Messages name the path.
absl::StatusOr<std::string> ReadFileToString(const std::string& path, size_t max_bytes);

}  // namespace pi::common
