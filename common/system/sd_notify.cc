#include "common/system/sd_notify.h"

#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/numbers.h"

namespace pi::common {

absl::Status SdNotify(std::string_view state) {
  const char* socket_path = std::getenv("NOTIFY_SOCKET");
  if (socket_path == nullptr || *socket_path == '\0') return absl::OkStatus();
  const std::string path(socket_path);
  if (path[0] != '/' && path[0] != '@') {
    return absl::InvalidArgumentError(
        fmt::format("NOTIFY_SOCKET={} is neither a path nor an abstract socket", path));
  }
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError("NOTIFY_SOCKET path is too long");
  }
  std::memcpy(address.sun_path, path.data(), path.size());
  // A leading '@' names a socket in the abstract namespace, spelled with a NUL byte.
  if (path[0] == '@') address.sun_path[0] = '\0';
  const socklen_t length = offsetof(sockaddr_un, sun_path) + path.size();

  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(fmt::format("socket: {}", std::strerror(errno)));
  const ssize_t sent = sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                              reinterpret_cast<const sockaddr*>(&address), length);
  const int saved_errno = errno;
  close(fd);
  if (sent < 0) {
    return absl::UnavailableError(
        fmt::format("sd_notify to {}: {}", path, std::strerror(saved_errno)));
  }
  return absl::OkStatus();
}

std::optional<std::chrono::microseconds> WatchdogPingInterval() {
  const char* usec_text = std::getenv("WATCHDOG_USEC");
  if (usec_text == nullptr) return std::nullopt;
  uint64_t usec = 0;
  if (!absl::SimpleAtoi(usec_text, &usec) || usec == 0) return std::nullopt;
  if (const char* pid_text = std::getenv("WATCHDOG_PID")) {
    int64_t pid = 0;
    if (!absl::SimpleAtoi(pid_text, &pid) || pid != getpid()) return std::nullopt;
  }
  return std::chrono::microseconds(usec / 2);
}

}  // namespace pi::common
