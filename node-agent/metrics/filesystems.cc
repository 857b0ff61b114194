// Mounted filesystems: /proc/mounts (fstab(5) format with octal escapes) and statvfs(3).

#include <sys/statvfs.h>

#include <cerrno>
#include <map>
#include <string>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "node-agent/metrics/parse_util.h"
#include "node-agent/metrics/readers.h"

namespace pi::agent::metrics {
namespace {

using internal::FileError;
using internal::MalformedLine;
using internal::ReadWholeFile;
using internal::SplitFields;
using internal::SplitLines;

bool IsOctalDigit(char c) { return c >= '0' && c <= '7'; }

// The kernel writes space, tab, newline and backslash in mount fields as \ooo (three octal
// digits); any other backslash cannot come from it.
bool UnescapeMountField(absl::string_view field, std::string* out) {
  out->clear();
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] != '\\') {
      *out += field[i];
      continue;
    }
    if (i + 3 >= field.size()) return false;
    const char a = field[i + 1], b = field[i + 2], c = field[i + 3];
    if (!IsOctalDigit(a) || !IsOctalDigit(b) || !IsOctalDigit(c)) return false;
    const int value = (a - '0') * 64 + (b - '0') * 8 + (c - '0');
    if (value > 0xff) return false;
    *out += static_cast<char>(value);
    i += 3;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::vector<MountEntry>> ReadMounts(const std::filesystem::path& root) {
  const std::filesystem::path path = root / "proc/mounts";
  absl::StatusOr<std::string> content = ReadWholeFile(path);
  if (!content.ok()) return content.status();

  std::vector<MountEntry> mounts;
  int line_number = 0;
  for (absl::string_view line : SplitLines(*content)) {
    ++line_number;
    const std::vector<absl::string_view> fields = SplitFields(line);
    if (fields.empty()) continue;
    MountEntry mount;
    if (fields.size() < 4 || !UnescapeMountField(fields[0], &mount.device) ||
        !UnescapeMountField(fields[1], &mount.mount_point) ||
        !UnescapeMountField(fields[2], &mount.fs_type) || mount.mount_point.empty() ||
        mount.mount_point.front() != '/') {
      return MalformedLine(path, line_number, line,
                           "'<device> <absolute mount point> <type> <options> ...' with only "
                           "\\ooo octal escapes");
    }
    mount.options = std::string(fields[3]);
    for (absl::string_view option : absl::StrSplit(fields[3], ',')) {
      if (option == "ro") mount.read_only = true;
    }
    mounts.push_back(std::move(mount));
  }
  return mounts;
}

absl::StatusOr<FsUsage> RealStatvfs(const std::string& mount_point) {
  struct statvfs st;
  if (::statvfs(mount_point.c_str(), &st) != 0) return FileError(mount_point, errno, "statvfs");
  // f_blocks, f_bfree and f_bavail count fragments of f_frsize bytes; f_bsize is only a hint for
  // I/O sizes, though some old filesystems leave f_frsize zero.
  const uint64_t block = st.f_frsize != 0 ? st.f_frsize : st.f_bsize;
  FsUsage usage;
  usage.size_bytes = static_cast<uint64_t>(st.f_blocks) * block;
  usage.free_bytes = static_cast<uint64_t>(st.f_bfree) * block;
  usage.avail_bytes = static_cast<uint64_t>(st.f_bavail) * block;
  usage.files = st.f_files;
  usage.files_free = st.f_ffree;
  return usage;
}

const std::set<std::string>& DefaultExcludedFsTypes() {
  // Pseudo and in-memory filesystems, plus network filesystems: statvfs on a hung NFS or CIFS
  // server blocks without a timeout, and one stuck mount must not wedge every metrics call.
  static const std::set<std::string> types = {
      "9p",        "ceph",    "cifs",       "fuse.sshfs",  "glusterfs", "nfs",      "nfs4",
      "smb3",      "smbfs",   "autofs",     "binfmt_misc", "bpf",       "cgroup",   "cgroup2",
      "configfs",  "debugfs", "devpts",     "devtmpfs",    "efivarfs",  "erofs",    "fusectl",
      "hugetlbfs", "iso9660", "mqueue",     "nsfs",        "overlay",   "proc",     "procfs",
      "pstore",    "ramfs",   "rpc_pipefs", "securityfs",  "selinuxfs", "squashfs", "sysfs",
      "tmpfs",     "tracefs",
  };
  return types;
}

absl::StatusOr<std::vector<FilesystemStats>> ReadFilesystems(
    const std::filesystem::path& root, const StatvfsFunction& statvfs,
    const std::set<std::string>& excluded_fs_types) {
  absl::StatusOr<std::vector<MountEntry>> mounts = ReadMounts(root);
  if (!mounts.ok()) return mounts.status();

  std::vector<FilesystemStats> filesystems;
  std::map<std::string, size_t> index_by_mount_point;
  for (MountEntry& mount : *mounts) {
    if (excluded_fs_types.count(mount.fs_type) > 0) continue;
    FilesystemStats fs;
    fs.device = std::move(mount.device);
    fs.mount_point = std::move(mount.mount_point);
    fs.fs_type = std::move(mount.fs_type);
    fs.read_only = mount.read_only;
    // /proc/mounts lists mounts in the order they were made, so a later entry for the same
    // mount point hides the earlier one.
    auto [it, inserted] = index_by_mount_point.emplace(fs.mount_point, filesystems.size());
    if (inserted) {
      filesystems.push_back(std::move(fs));
    } else {
      filesystems[it->second] = std::move(fs);
    }
  }
  for (FilesystemStats& fs : filesystems) {
    absl::StatusOr<FsUsage> usage = statvfs(fs.mount_point);
    if (usage.ok()) {
      fs.usage = *usage;
    } else {
      fs.error = std::string(usage.status().message());
      if (fs.error.empty()) fs.error = usage.status().ToString();
    }
  }
  return filesystems;
}

}  // namespace pi::agent::metrics
