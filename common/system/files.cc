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

}  // namespace pi::common
