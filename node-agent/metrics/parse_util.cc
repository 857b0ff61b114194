#include "node-agent/metrics/parse_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <system_error>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace pi::agent::metrics::internal {
namespace {

// Far above any real /proc or /sys file (a 256-CPU /proc/stat is ~100 KiB) but bounded, so a
// wrong root pointing at a huge file cannot make a metrics call eat memory.
constexpr size_t kMaxFileBytes = 16 * 1024 * 1024;
constexpr size_t kMaxQuotedLine = 120;

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

absl::Status FileError(const std::filesystem::path& path, int error_number,
                       absl::string_view action) {
  const std::string reason = std::error_code(error_number, std::generic_category()).message();
  switch (error_number) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(absl::StrCat(path.string(), " does not exist"));
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(
          absl::StrCat("cannot ", action, " ", path.string(), ": ", reason,
                       "; run pi-agent as a user allowed to read it"));
    default:
      return absl::UnavailableError(
          absl::StrCat("cannot ", action, " ", path.string(), ": ", reason));
  }
}

absl::StatusOr<std::string> ReadWholeFile(const std::filesystem::path& path) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return FileError(path, errno, "open");
  std::string content;
  char buffer[8192];
  while (true) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return FileError(path, errno, "read");
    }
    if (n == 0) break;
    content.append(buffer, static_cast<size_t>(n));
    if (content.size() > kMaxFileBytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          path.string(), " is larger than ", kMaxFileBytes, " bytes; is the metrics root right?"));
    }
  }
  return content;
}

absl::Status MalformedLine(const std::filesystem::path& path, int line_number,
                           absl::string_view line, absl::string_view expected) {
  std::string quoted(line.substr(0, kMaxQuotedLine));
  if (line.size() > kMaxQuotedLine) quoted += "...";
  return absl::DataLossError(absl::StrCat("malformed ", path.string(), " line ", line_number,
                                          ": expected ", expected, ", got '", quoted, "'"));
}

absl::Status MalformedFile(const std::filesystem::path& path, absl::string_view problem) {
  return absl::DataLossError(absl::StrCat("malformed ", path.string(), ": ", problem));
}

std::vector<absl::string_view> SplitLines(absl::string_view content) {
  if (!content.empty() && content.back() == '\n') content.remove_suffix(1);
  if (content.empty()) return {};
  return absl::StrSplit(content, '\n');
}

std::vector<absl::string_view> SplitFields(absl::string_view line) {
  return absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
}

bool ParseUint64(absl::string_view text, uint64_t* out) {
  if (text.empty()) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

bool ParseInt64(absl::string_view text, int64_t* out) {
  if (text.empty()) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

bool ParseNonNegativeDouble(absl::string_view text, double* out) {
  if (text.empty() || text.front() == '-' || text.front() == '+') return false;
  return absl::SimpleAtod(text, out) && std::isfinite(*out) && *out >= 0;
}

}  // namespace pi::agent::metrics::internal
