// Readers of /proc/{meminfo,loadavg,uptime,stat,net/dev,diskstats}. Formats: proc(5).

#include <unistd.h>

#include <array>
#include <limits>
#include <set>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "node-agent/metrics/parse_util.h"
#include "node-agent/metrics/readers.h"

namespace pi::agent::metrics {
namespace {

using internal::MalformedFile;
using internal::MalformedLine;
using internal::ParseNonNegativeDouble;
using internal::ParseUint64;
using internal::ReadWholeFile;
using internal::SplitFields;
using internal::SplitLines;

constexpr uint64_t kBytesPerKibibyte = 1024;
constexpr uint64_t kDiskStatsSectorBytes = 512;

double TicksPerSecond() {
  static const double ticks = [] {
    const long value = ::sysconf(_SC_CLK_TCK);
    return value > 0 ? static_cast<double>(value) : 100.0;
  }();
  return ticks;
}

// Parses fields[first..first+outputs.size()) into the pointed-to counters.
template <size_t N>
bool ParseCounters(const std::vector<absl::string_view>& fields, size_t first,
                   const std::array<uint64_t*, N>& outputs) {
  if (fields.size() < first + N) return false;
  for (size_t i = 0; i < N; ++i) {
    if (!ParseUint64(fields[first + i], outputs[i])) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<MemoryInfo> ReadMemoryInfo(const std::filesystem::path& root) {
  const std::filesystem::path path = root / "proc/meminfo";
  absl::StatusOr<std::string> content = ReadWholeFile(path);
  if (!content.ok()) return content.status();

  MemoryInfo info;
  int line_number = 0;
  for (absl::string_view line : SplitLines(*content)) {
    ++line_number;
    if (line.empty()) continue;
    constexpr absl::string_view kExpected = "'<Name>: <number> [kB]'";
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos || colon == 0) {
      return MalformedLine(path, line_number, line, kExpected);
    }
    const std::vector<absl::string_view> rest = SplitFields(line.substr(colon + 1));
    MemoryInfo::Field field;
    field.name = std::string(line.substr(0, colon));
    if (rest.empty() || rest.size() > 2 || !ParseUint64(rest[0], &field.value)) {
      return MalformedLine(path, line_number, line, kExpected);
    }
    if (rest.size() == 2) {
      if (rest[1] != "kB" ||
          field.value > std::numeric_limits<uint64_t>::max() / kBytesPerKibibyte) {
        return MalformedLine(path, line_number, line, kExpected);
      }
      field.value *= kBytesPerKibibyte;
      field.is_bytes = true;
    }
    info.fields.push_back(std::move(field));
  }

  const std::array<std::pair<absl::string_view, uint64_t*>, 7> required = {{
      {"MemTotal", &info.total_bytes},
      {"MemFree", &info.free_bytes},
      {"MemAvailable", &info.available_bytes},
      {"Buffers", &info.buffers_bytes},
      {"Cached", &info.cached_bytes},
      {"SwapTotal", &info.swap_total_bytes},
      {"SwapFree", &info.swap_free_bytes},
  }};
  for (const auto& [name, out] : required) {
    bool found = false;
    for (const MemoryInfo::Field& field : info.fields) {
      if (field.name == name) {
        *out = field.value;
        found = true;
        break;
      }
    }
    if (!found) return MalformedFile(path, absl::StrCat("no ", name, " line"));
  }
  return info;
}

absl::StatusOr<LoadAverage> ReadLoadAverage(const std::filesystem::path& root) {
  const std::filesystem::path path = root / "proc/loadavg";
  absl::StatusOr<std::string> content = ReadWholeFile(path);
  if (!content.ok()) return content.status();

  const std::vector<absl::string_view> lines = SplitLines(*content);
  const absl::string_view line = lines.empty() ? absl::string_view() : lines[0];
  constexpr absl::string_view kExpected =
      "'<load1> <load5> <load15> <runnable>/<total> <last pid>'";
  const std::vector<absl::string_view> fields = SplitFields(line);
  LoadAverage load;
  if (fields.size() != 5 || !ParseNonNegativeDouble(fields[0], &load.load1) ||
      !ParseNonNegativeDouble(fields[1], &load.load5) ||
      !ParseNonNegativeDouble(fields[2], &load.load15)) {
    return MalformedLine(path, 1, line, kExpected);
  }
  const size_t slash = fields[3].find('/');
  if (slash == absl::string_view::npos ||
      !ParseUint64(fields[3].substr(0, slash), &load.runnable_tasks) ||
      !ParseUint64(fields[3].substr(slash + 1), &load.total_tasks)) {
    return MalformedLine(path, 1, line, kExpected);
  }
  return load;
}

absl::StatusOr<Uptime> ReadUptime(const std::filesystem::path& root) {
  const std::filesystem::path path = root / "proc/uptime";
  absl::StatusOr<std::string> content = ReadWholeFile(path);
  if (!content.ok()) return content.status();

  const std::vector<absl::string_view> lines = SplitLines(*content);
  const absl::string_view line = lines.empty() ? absl::string_view() : lines[0];
  const std::vector<absl::string_view> fields = SplitFields(line);
  Uptime uptime;
  if (fields.size() != 2 || !ParseNonNegativeDouble(fields[0], &uptime.uptime_seconds) ||
      !ParseNonNegativeDouble(fields[1], &uptime.idle_seconds)) {
    return MalformedLine(path, 1, line, "'<uptime seconds> <idle seconds>'");
  }
  return uptime;
}

absl::StatusOr<KernelStat> ReadKernelStat(const std::filesystem::path& root) {
  const std::filesystem::path path = root / "proc/stat";
  absl::StatusOr<std::string> content = ReadWholeFile(path);
  if (!content.ok()) return content.status();

  KernelStat stat;
  stat.ticks_per_second = TicksPerSecond();
  struct Scalar {
    absl::string_view key;
    uint64_t* out;
    bool seen;
  };
  std::array<Scalar, 5> scalars = {{
      {"ctxt", &stat.context_switches, false},
      {"btime", &stat.boot_time_seconds, false},
      {"processes", &stat.forks, false},
      {"procs_running", &stat.procs_running, false},
      {"procs_blocked", &stat.procs_blocked, false},
  }};
  bool seen_total = false;
  int line_number = 0;
  for (absl::string_view line : SplitLines(*content)) {
    ++line_number;
    const std::vector<absl::string_view> fields = SplitFields(line);
    if (fields.empty()) continue;
    const absl::string_view key = fields[0];

    if (absl::StartsWith(key, "cpu")) {
      CpuTimes times;
      const absl::string_view index = key.substr(3);
      uint64_t cpu = 0;
      if (!index.empty() && (!ParseUint64(index, &cpu) ||
                             cpu > static_cast<uint64_t>(std::numeric_limits<int>::max()))) {
        return MalformedLine(path, line_number, line, "'cpu' or 'cpu<N>' followed by counters");
      }
      // steal exists since Linux 2.6.11; guest and guest_nice are optional.
      const bool ok = ParseCounters<8>(fields, 1,
                                       {&times.user, &times.nice, &times.system, &times.idle,
                                        &times.iowait, &times.irq, &times.softirq, &times.steal}) &&
                      (fields.size() < 10 || ParseUint64(fields[9], &times.guest)) &&
                      (fields.size() < 11 || ParseUint64(fields[10], &times.guest_nice));
      if (!ok) {
        return MalformedLine(path, line_number, line,
                             absl::StrCat("at least 8 counters after '", key, "'"));
      }
      if (index.empty()) {
        stat.total = times;
        seen_total = true;
      } else {
        times.cpu = static_cast<int>(cpu);
        stat.cores.push_back(times);
      }
      continue;
    }
    for (Scalar& scalar : scalars) {
      if (key != scalar.key) continue;
      if (fields.size() != 2 || !ParseUint64(fields[1], scalar.out)) {
        return MalformedLine(path, line_number, line, absl::StrCat("'", key, " <number>'"));
      }
      scalar.seen = true;
    }
  }
  if (!seen_total) return MalformedFile(path, "no aggregate 'cpu' line");
  for (const Scalar& scalar : scalars) {
    if (!scalar.seen) return MalformedFile(path, absl::StrCat("no '", scalar.key, "' line"));
  }
  return stat;
}

absl::StatusOr<std::vector<NetDeviceStats>> ReadNetDevices(const std::filesystem::path& root) {
  const std::filesystem::path path = root / "proc/net/dev";
  absl::StatusOr<std::string> content = ReadWholeFile(path);
  if (!content.ok()) return content.status();

  const std::vector<absl::string_view> lines = SplitLines(*content);
  constexpr int kHeaderLines = 2;
  if (lines.size() < kHeaderLines || !absl::StrContains(lines[0], '|')) {
    return MalformedFile(path, "no two-line 'Inter-|' header");
  }
  std::vector<NetDeviceStats> devices;
  for (size_t i = kHeaderLines; i < lines.size(); ++i) {
    const absl::string_view line = lines[i];
    const int line_number = static_cast<int>(i) + 1;
    constexpr absl::string_view kExpected = "'<interface>: <16 counters>'";
    // A long name can run into the first counter ("veth1234567:123"); counters hold no ':'.
    const size_t colon = line.rfind(':');
    if (colon == absl::string_view::npos) return MalformedLine(path, line_number, line, kExpected);
    NetDeviceStats dev;
    dev.device = std::string(absl::StripAsciiWhitespace(line.substr(0, colon)));
    const std::vector<absl::string_view> fields = SplitFields(line.substr(colon + 1));
    if (dev.device.empty() || fields.size() != 16 ||
        !ParseCounters<16>(
            fields, 0,
            {&dev.receive_bytes, &dev.receive_packets, &dev.receive_errs, &dev.receive_drop,
             &dev.receive_fifo, &dev.receive_frame, &dev.receive_compressed, &dev.receive_multicast,
             &dev.transmit_bytes, &dev.transmit_packets, &dev.transmit_errs, &dev.transmit_drop,
             &dev.transmit_fifo, &dev.transmit_colls, &dev.transmit_carrier,
             &dev.transmit_compressed})) {
      return MalformedLine(path, line_number, line, kExpected);
    }
    devices.push_back(std::move(dev));
  }
  return devices;
}

namespace {

bool IsVirtualBlockDevice(absl::string_view name) {
  for (absl::string_view prefix : {"ram", "loop", "zram", "fd"}) {
    if (!absl::StartsWith(name, prefix)) continue;
    uint64_t unused;
    if (ParseUint64(name.substr(prefix.size()), &unused)) return true;
  }
  return false;
}

bool IsPartition(absl::string_view name, const std::set<std::string, std::less<>>& names) {
  absl::string_view base = name;
  while (!base.empty() && absl::ascii_isdigit(static_cast<unsigned char>(base.back()))) {
    base.remove_suffix(1);
  }
  if (base.empty() || base.size() == name.size()) return false;
  if (names.count(base) > 0) return true;
  // "mmcblk0p1", "nvme0n1p1": the disk name itself ends in a digit, so a 'p' separates them.
  if (base.size() >= 2 && base.back() == 'p' &&
      absl::ascii_isdigit(static_cast<unsigned char>(base[base.size() - 2]))) {
    base.remove_suffix(1);
    return names.count(base) > 0;
  }
  return false;
}

}  // namespace

absl::StatusOr<std::vector<DiskStats>> ReadDiskStats(const std::filesystem::path& root) {
  const std::filesystem::path path = root / "proc/diskstats";
  absl::StatusOr<std::string> content = ReadWholeFile(path);
  if (!content.ok()) return content.status();

  std::vector<DiskStats> all;
  int line_number = 0;
  for (absl::string_view line : SplitLines(*content)) {
    ++line_number;
    const std::vector<absl::string_view> fields = SplitFields(line);
    if (fields.empty()) continue;
    DiskStats disk;
    uint64_t major, minor, read_sectors, written_sectors;
    // Kernels since 4.18 and 5.5 append discard and flush counters; only the first 11 are used.
    if (fields.size() < 14 || !ParseUint64(fields[0], &major) || !ParseUint64(fields[1], &minor) ||
        !ParseCounters<11>(
            fields, 3,
            {&disk.reads_completed, &disk.reads_merged, &read_sectors, &disk.read_time_ms,
             &disk.writes_completed, &disk.writes_merged, &written_sectors, &disk.write_time_ms,
             &disk.io_in_progress, &disk.io_time_ms, &disk.io_time_weighted_ms})) {
      return MalformedLine(path, line_number, line, "'<major> <minor> <device> <11+ counters>'");
    }
    disk.device = std::string(fields[2]);
    disk.read_bytes = read_sectors * kDiskStatsSectorBytes;
    disk.written_bytes = written_sectors * kDiskStatsSectorBytes;
    all.push_back(std::move(disk));
  }

  std::set<std::string, std::less<>> names;
  for (const DiskStats& disk : all) names.insert(disk.device);
  std::vector<DiskStats> disks;
  for (DiskStats& disk : all) {
    if (IsVirtualBlockDevice(disk.device) || IsPartition(disk.device, names)) continue;
    disks.push_back(std::move(disk));
  }
  return disks;
}

}  // namespace pi::agent::metrics
