#pragma once

// Helpers shared by the /proc and /sys readers. Not part of the metrics API.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pi::agent::metrics::internal {

// The whole content of a small (pseudo-)file. /proc files report size 0, so this reads to EOF.
absl::StatusOr<std::string> ReadWholeFile(const std::filesystem::path& path);

// The status for a failed system call on path: NOT_FOUND, PERMISSION_DENIED or UNAVAILABLE.
absl::Status FileError(const std::filesystem::path& path, int error_number,
                       absl::string_view action);

// DATA_LOSS naming the file and 1-based line, quoting (a prefix of) the offending line.
absl::Status MalformedLine(const std::filesystem::path& path, int line_number,
                           absl::string_view line, absl::string_view expected);
// DATA_LOSS about the file as a whole, e.g. a line it should have but does not.
absl::Status MalformedFile(const std::filesystem::path& path, absl::string_view problem);

// The lines of content without their '\n'; a final newline does not add an empty line.
std::vector<absl::string_view> SplitLines(absl::string_view content);
// Fields separated by runs of spaces or tabs.
std::vector<absl::string_view> SplitFields(absl::string_view line);

// Strict decimal parsers: the whole text must be the number (no sign for unsigned).
bool ParseUint64(absl::string_view text, uint64_t* out);
bool ParseInt64(absl::string_view text, int64_t* out);
// A finite, non-negative decimal such as "0.52" or "352417.31".
bool ParseNonNegativeDouble(absl::string_view text, double* out);

}  // namespace pi::agent::metrics::internal
