#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace pi::common {

// Writes `contents` to a temporary file beside `path`, fsyncs it and renames it over `path`, so
// readers see either the old or the new file, never a partial one.
absl::Status WriteFileAtomically(const std::string& path, std::string_view contents, int mode);

}  // namespace pi::common
