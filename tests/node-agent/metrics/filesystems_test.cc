#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

#include "node-agent/metrics/readers.h"
#include "tests/node-agent/metrics/test_util.h"

namespace pi::agent::metrics {
namespace {

using testing::Fixture;
using testing::TempTree;

// statvfs for fixture mount points, which do not exist on this machine. Records its calls.
class FakeStatvfs {
 public:
  void Set(const std::string& mount_point, FsUsage usage) { usage_[mount_point] = usage; }
  StatvfsFunction Function() {
    return [this](const std::string& mount_point) -> absl::StatusOr<FsUsage> {
      calls_.push_back(mount_point);
      auto it = usage_.find(mount_point);
      if (it == usage_.end()) return absl::PermissionDeniedError("cannot statvfs " + mount_point);
      return it->second;
    };
  }
  const std::vector<std::string>& calls() const { return calls_; }

 private:
  std::map<std::string, FsUsage> usage_;
  std::vector<std::string> calls_;
};

FsUsage Usage(uint64_t size, uint64_t free, uint64_t avail, uint64_t files, uint64_t files_free) {
  return FsUsage{.size_bytes = size,
                 .free_bytes = free,
                 .avail_bytes = avail,
                 .files = files,
                 .files_free = files_free};
}

TEST_CASE("mounts are read with the kernel's octal escapes undone", "[mounts]") {
  absl::StatusOr<std::vector<MountEntry>> mounts = ReadMounts(Fixture("pi3b"));
  REQUIRE(mounts.ok());
  REQUIRE(mounts->size() == 22);
  CHECK((*mounts)[0].device == "/dev/root");
  CHECK((*mounts)[0].mount_point == "/");
  CHECK((*mounts)[0].fs_type == "ext4");
  CHECK((*mounts)[0].options == "rw,noatime");
  CHECK_FALSE((*mounts)[0].read_only);
  const MountEntry& usb = (*mounts)[20];
  CHECK(usb.device == "/dev/sda1");
  CHECK(usb.mount_point == "/media/pi/USB Stick");
  CHECK(usb.read_only);
}

TEST_CASE("mount escapes for tab, newline and backslash are undone", "[mounts]") {
  TempTree tree;
  tree.Write("proc/mounts", "/dev/sdb1 /mnt/a\\011b\\012c\\134d ext4 rw 0 0\n");
  absl::StatusOr<std::vector<MountEntry>> mounts = ReadMounts(tree.root());
  REQUIRE(mounts.ok());
  REQUIRE(mounts->size() == 1);
  CHECK((*mounts)[0].mount_point == "/mnt/a\tb\nc\\d");
}

TEST_CASE("a mount with an invalid escape is DATA_LOSS naming the line", "[mounts]") {
  absl::StatusOr<std::vector<MountEntry>> mounts = ReadMounts(Fixture("broken"));
  REQUIRE(absl::IsDataLoss(mounts.status()));
  CHECK(std::string(mounts.status().message()).find("broken/proc/mounts line 2") !=
        std::string::npos);
}

TEST_CASE("a mount escape cut off at the end of the field is DATA_LOSS", "[mounts]") {
  TempTree tree;
  tree.Write("proc/mounts", "/dev/sdb1 /mnt/x\\04 ext4 rw 0 0\n");
  REQUIRE(absl::IsDataLoss(ReadMounts(tree.root()).status()));
}

TEST_CASE("a mount line with too few fields is DATA_LOSS", "[mounts]") {
  TempTree tree;
  tree.Write("proc/mounts", "/dev/sdb1 /mnt/x ext4\n");
  REQUIRE(absl::IsDataLoss(ReadMounts(tree.root()).status()));
}

TEST_CASE("a mount point that is not absolute is DATA_LOSS", "[mounts]") {
  TempTree tree;
  tree.Write("proc/mounts", "/dev/sdb1 mnt/x ext4 rw 0 0\n");
  REQUIRE(absl::IsDataLoss(ReadMounts(tree.root()).status()));
}

TEST_CASE("filesystems skip pseudo and memory filesystems and carry statvfs figures",
          "[filesystems]") {
  FakeStatvfs statvfs;
  statvfs.Set("/", Usage(31'000'000'000, 20'000'000'000, 18'400'000'000, 1'900'000, 1'700'000));
  statvfs.Set("/boot/firmware", Usage(535'805'952, 469'985'280, 469'985'280, 0, 0));
  statvfs.Set("/media/pi/USB Stick", Usage(8'000'000'000, 1'000'000'000, 1'000'000'000, 0, 0));
  absl::StatusOr<std::vector<FilesystemStats>> filesystems =
      ReadFilesystems(Fixture("pi3b"), statvfs.Function());
  REQUIRE(filesystems.ok());
  CHECK(statvfs.calls() == std::vector<std::string>{"/", "/boot/firmware", "/media/pi/USB Stick"});
  REQUIRE(filesystems->size() == 3);
  const FilesystemStats& root = (*filesystems)[0];
  CHECK(root.device == "/dev/root");
  CHECK(root.fs_type == "ext4");
  CHECK(root.error.empty());
  CHECK(root.usage.size_bytes == 31'000'000'000);
  CHECK(root.usage.free_bytes == 20'000'000'000);
  CHECK(root.usage.avail_bytes == 18'400'000'000);
  CHECK(root.usage.files == 1'900'000);
  CHECK(root.usage.files_free == 1'700'000);
  CHECK(root.used_bytes() == 11'000'000'000);
  CHECK((*filesystems)[1].fs_type == "vfat");
  CHECK((*filesystems)[2].mount_point == "/media/pi/USB Stick");
  CHECK((*filesystems)[2].read_only);
}

TEST_CASE("a filesystem whose statvfs fails carries the error and zero usage", "[filesystems]") {
  FakeStatvfs statvfs;
  statvfs.Set("/", Usage(100, 50, 40, 10, 5));
  statvfs.Set("/boot/firmware", Usage(10, 5, 5, 0, 0));
  absl::StatusOr<std::vector<FilesystemStats>> filesystems =
      ReadFilesystems(Fixture("pi3b"), statvfs.Function());
  REQUIRE(filesystems.ok());
  REQUIRE(filesystems->size() == 3);
  CHECK((*filesystems)[0].error.empty());
  const FilesystemStats& usb = (*filesystems)[2];
  CHECK(usb.error == "cannot statvfs /media/pi/USB Stick");
  CHECK(usb.usage.size_bytes == 0);
}

TEST_CASE("a mount point mounted over is reported once, for the top mount", "[filesystems]") {
  TempTree tree;
  tree.Write("proc/mounts",
             "/dev/sda1 /data ext4 rw 0 0\n/dev/sdb1 /srv xfs rw 0 0\n"
             "/dev/sdc1 /data btrfs ro 0 0\n");
  FakeStatvfs statvfs;
  statvfs.Set("/data", Usage(1, 1, 1, 1, 1));
  statvfs.Set("/srv", Usage(2, 2, 2, 2, 2));
  absl::StatusOr<std::vector<FilesystemStats>> filesystems =
      ReadFilesystems(tree.root(), statvfs.Function());
  REQUIRE(filesystems.ok());
  REQUIRE(filesystems->size() == 2);
  CHECK((*filesystems)[0].mount_point == "/data");
  CHECK((*filesystems)[0].device == "/dev/sdc1");
  CHECK((*filesystems)[0].fs_type == "btrfs");
  CHECK((*filesystems)[0].read_only);
  CHECK(statvfs.calls().size() == 2);
}

TEST_CASE("the excluded filesystem types can be chosen", "[filesystems]") {
  FakeStatvfs statvfs;
  for (const char* mp : {"/", "/run", "/run/lock", "/dev/shm", "/run/user/1000", "/boot/firmware",
                         "/media/pi/USB Stick"}) {
    statvfs.Set(mp, Usage(1, 1, 1, 1, 1));
  }
  std::set<std::string> excluded = DefaultExcludedFsTypes();
  excluded.erase("tmpfs");
  excluded.insert("vfat");
  absl::StatusOr<std::vector<FilesystemStats>> filesystems =
      ReadFilesystems(Fixture("pi3b"), statvfs.Function(), excluded);
  REQUIRE(filesystems.ok());
  std::vector<std::string> mount_points;
  for (const FilesystemStats& fs : *filesystems) mount_points.push_back(fs.mount_point);
  CHECK(mount_points ==
        std::vector<std::string>{"/", "/dev/shm", "/run", "/run/lock", "/run/user/1000"});
}

TEST_CASE("filesystems without /proc/mounts is NOT_FOUND", "[filesystems]") {
  TempTree empty;
  FakeStatvfs statvfs;
  REQUIRE(absl::IsNotFound(ReadFilesystems(empty.root(), statvfs.Function()).status()));
}

TEST_CASE("real statvfs of / reports a non-empty filesystem", "[filesystems]") {
  absl::StatusOr<FsUsage> usage = RealStatvfs("/");
  REQUIRE(usage.ok());
  CHECK(usage->size_bytes > 0);
  CHECK(usage->free_bytes <= usage->size_bytes);
  CHECK(usage->avail_bytes <= usage->free_bytes);
}

TEST_CASE("real statvfs of a missing path is NOT_FOUND", "[filesystems]") {
  TempTree tree;
  REQUIRE(absl::IsNotFound(RealStatvfs((tree.root() / "no/such/dir").string()).status()));
}

}  // namespace
}  // namespace pi::agent::metrics
