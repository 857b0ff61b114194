#include "common/system/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>

#include "tests/common/test_dir.h"

namespace pi::common {
namespace {

TEST_CASE("without NOTIFY_SOCKET notifications are a no-op", "[sd_notify]") {
  unsetenv("NOTIFY_SOCKET");
  CHECK(SdNotify("READY=1").ok());
}

TEST_CASE("a notification arrives as one datagram on NOTIFY_SOCKET", "[sd_notify]") {
  pi::testing::TempDir dir;
  const std::string path = (dir.path() / "notify").string();
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);

  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  REQUIRE(SdNotify("READY=1\nSTATUS=serving").ok());
  char buffer[128] = {};
  const ssize_t n = recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
  close(fd);
  unsetenv("NOTIFY_SOCKET");
  REQUIRE(n > 0);
  CHECK(std::string(buffer, n) == "READY=1\nSTATUS=serving");
}

TEST_CASE("a NOTIFY_SOCKET nobody listens on is reported", "[sd_notify]") {
  setenv("NOTIFY_SOCKET", "/nonexistent/notify", 1);
  CHECK(SdNotify("READY=1").code() == absl::StatusCode::kUnavailable);
  setenv("NOTIFY_SOCKET", "relative", 1);
  CHECK(SdNotify("READY=1").code() == absl::StatusCode::kInvalidArgument);
  unsetenv("NOTIFY_SOCKET");
}

TEST_CASE("the watchdog interval is half of WATCHDOG_USEC for this process", "[sd_notify]") {
  setenv("WATCHDOG_USEC", "20000000", 1);
  unsetenv("WATCHDOG_PID");
  REQUIRE(WatchdogPingInterval().has_value());
  CHECK(*WatchdogPingInterval() == std::chrono::seconds(10));
  setenv("WATCHDOG_PID", std::to_string(getpid() + 1).c_str(), 1);
  CHECK_FALSE(WatchdogPingInterval().has_value());
  setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
  CHECK(WatchdogPingInterval().has_value());
  setenv("WATCHDOG_USEC", "garbage", 1);
  CHECK_FALSE(WatchdogPingInterval().has_value());
  unsetenv("WATCHDOG_USEC");
  unsetenv("WATCHDOG_PID");
  CHECK_FALSE(WatchdogPingInterval().has_value());
}

}  // namespace
}  // namespace pi::common
