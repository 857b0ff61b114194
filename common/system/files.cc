#include "common/system/files.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace pi::common {

absl::Status WriteFileAtomically(const std::string& path, std::string_view contents, int mode) {
  const std::string temp = fmt::format("{}.tmp.{}", path, getpid());
  // A leftover from a crashed run of this pid is ours to replace; O_EXCL|O_NOFOLLOW then makes
  // sure nobody can slip a symlink in its place.
  unlink(temp.c_str());
  const int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) {
    return absl::InternalError(fmt::format("cannot create {}: {}", temp, std::strerror(errno)));
  }
  size_t written = 0;
  while (written < contents.size()) {
    const ssize_t n = write(fd, contents.data() + written, contents.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int saved = errno;
      close(fd);
      unlink(temp.c_str());
      return absl::InternalError(fmt::format("cannot write {}: {}", temp, std::strerror(saved)));
    }
    written += static_cast<size_t>(n);
  }
  const bool synced = fsync(fd) == 0;
  const int sync_errno = errno;
  const bool closed = close(fd) == 0;
  if (!synced || !closed) {
    const int saved = synced ? errno : sync_errno;
    unlink(temp.c_str());
    return absl::InternalError(fmt::format("cannot flush {}: {}", temp, std::strerror(saved)));
  }
  if (rename(temp.c_str(), path.c_str()) != 0) {
    const int saved = errno;
    unlink(temp.c_str());
    return absl::InternalError(
        fmt::format("cannot rename {} to {}: {}", temp, path, std::strerror(saved)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path, size_t max_bytes) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const std::string message = fmt::format("cannot read {}: {}", path, std::strerror(errno));
    return errno == ENOENT ? absl::NotFoundError(message) : absl::FailedPreconditionError(message);
  }
  std::string contents;
  char buffer[16 * 1024];
  while (true) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int saved = errno;
      close(fd);
      return absl::FailedPreconditionError(
          fmt::format("cannot read {}: {}", path, std::strerror(saved)));
    }
    if (n == 0) break;
    if (contents.size() + static_cast<size_t>(n) > max_bytes) {
      close(fd);
      return absl::InvalidArgumentError(fmt::format("{} is larger than {} bytes", path, max_bytes));
    }
    contents.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return contents;
}

}  // namespace pi::common
