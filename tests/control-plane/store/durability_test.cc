#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdint>
#include <set>
#include <string>

#include "common/system/clock.h"
#include "control-plane/store/sqlite_cluster_store.h"
#include "tests/common/test_dir.h"

namespace pi::controlplane::store {
namespace {

Node NumberedNode(int i) {
  Node node;
  node.id = "n" + std::to_string(i);
  node.hostname = "pi-" + std::to_string(i);
  node.agent_address = node.hostname + ":9091";
  node.registered_at = TimePoint(std::chrono::hours(24 * 365 * 50));
  return node;
}

bool WriteAll(int fd, int32_t value) {
  const char* data = reinterpret_cast<const char*>(&value);
  size_t written = 0;
  while (written < sizeof(value)) {
    const ssize_t n = write(fd, data + written, sizeof(value) - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    written += static_cast<size_t>(n);
  }
  return true;
}

// Runs in the forked child: creates node i, then labels it, forever, and reports each
// acknowledged write on `fd` (+i for the create, -i for the label) only after it returned OK.
[[noreturn]] void WriteUntilKilled(const std::string& path, int fd) {
  pi::common::ManualClock clock;
  absl::StatusOr<std::unique_ptr<SqliteClusterStore>> store = SqliteClusterStore::Open(path, clock);
  if (!store.ok()) _exit(2);
  for (int32_t i = 1;; ++i) {
    Node node = NumberedNode(i);
    if (!(*store)->CreateNode(node).ok() || !WriteAll(fd, i)) _exit(3);
    node.labels["step"] = std::to_string(i);
    if (!(*store)->UpdateNode(node).ok() || !WriteAll(fd, -i)) _exit(3);
  }
}

TEST_CASE("Every write a SIGKILLed writer reported committed is there after reopening") {
  pi::testing::TempDir dir;
  const std::string path = (dir.path() / "cluster.db").string();
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    close(fds[0]);
    WriteUntilKilled(path, fds[1]);
  }
  close(fds[1]);

  std::set<int32_t> created;
  std::set<int32_t> labelled;
  auto read_report = [&]() {
    int32_t value = 0;
    size_t got = 0;
    while (got < sizeof(value)) {
      const ssize_t n = read(fds[0], reinterpret_cast<char*>(&value) + got, sizeof(value) - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      got += static_cast<size_t>(n);
    }
    (value > 0 ? created : labelled).insert(value > 0 ? value : -value);
    return true;
  };
  // Kill it mid-stream, while it is writing as fast as it can.
  while (created.size() + labelled.size() < 60) REQUIRE(read_report());
  REQUIRE(kill(child, SIGKILL) == 0);
  int wait_status = 0;
  REQUIRE(waitpid(child, &wait_status, 0) == child);
  CHECK(WIFSIGNALED(wait_status));
  // Reports already in the pipe were acknowledged before the kill; read them too.
  while (read_report()) {
  }
  close(fds[0]);

  pi::common::ManualClock clock;
  absl::StatusOr<std::unique_ptr<SqliteClusterStore>> store = SqliteClusterStore::Open(path, clock);
  REQUIRE(store.ok());
  for (int32_t i : created) {
    absl::StatusOr<Node> node = (*store)->GetNode("n" + std::to_string(i));
    REQUIRE(node.ok());
    if (labelled.count(i) > 0) CHECK(node->labels.at("step") == std::to_string(i));
  }
  const int64_t acknowledged = static_cast<int64_t>(created.size() + labelled.size());
  CHECK(*(*store)->CurrentRevision() >= acknowledged);
  // The store is usable after the crash: the next write gets the next revision.
  const int64_t before = *(*store)->CurrentRevision();
  REQUIRE((*store)->CreateNode(NumberedNode(100000)).ok());
  CHECK(*(*store)->CurrentRevision() == before + 1);
}

}  // namespace
}  // namespace pi::controlplane::store
