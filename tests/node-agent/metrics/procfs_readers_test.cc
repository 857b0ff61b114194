#include <catch2/catch.hpp>
#include <string>

#include "node-agent/metrics/readers.h"
#include "tests/node-agent/metrics/test_util.h"

namespace pi::agent::metrics {
namespace {

using testing::Fixture;
using testing::TempTree;

constexpr uint64_t kKiB = 1024;

bool MessageContains(const absl::Status& status, const std::string& text) {
  return std::string(status.message()).find(text) != std::string::npos;
}

const MemoryInfo::Field* FindField(const MemoryInfo& info, const std::string& name) {
  for (const MemoryInfo::Field& field : info.fields) {
    if (field.name == name) return &field;
  }
  return nullptr;
}

TEST_CASE("meminfo of a Pi 3B is read with kB converted to bytes", "[meminfo]") {
  absl::StatusOr<MemoryInfo> info = ReadMemoryInfo(Fixture("pi3b"));
  REQUIRE(info.ok());
  CHECK(info->total_bytes == 948304 * kKiB);
  CHECK(info->free_bytes == 340112 * kKiB);
  CHECK(info->available_bytes == 716520 * kKiB);
  CHECK(info->buffers_bytes == 34416 * kKiB);
  CHECK(info->cached_bytes == 385484 * kKiB);
  CHECK(info->swap_total_bytes == 102396 * kKiB);
  CHECK(info->swap_free_bytes == 98300 * kKiB);
  CHECK(info->used_bytes() == (948304 - 716520) * kKiB);
  CHECK(info->swap_used_bytes() == (102396 - 98300) * kKiB);
}

TEST_CASE("meminfo keeps every field in file order, unitless ones as plain counts", "[meminfo]") {
  absl::StatusOr<MemoryInfo> info = ReadMemoryInfo(Fixture("pi3b"));
  REQUIRE(info.ok());
  REQUIRE(info->fields.size() == 47);
  CHECK(info->fields.front().name == "MemTotal");
  CHECK(info->fields.back().name == "Hugetlb");
  const MemoryInfo::Field* anon = FindField(*info, "Active(anon)");
  REQUIRE(anon != nullptr);
  CHECK(anon->value == 110640 * kKiB);
  CHECK(anon->is_bytes);
  const MemoryInfo::Field* huge = FindField(*info, "HugePages_Total");
  REQUIRE(huge != nullptr);
  CHECK(huge->value == 0);
  CHECK_FALSE(huge->is_bytes);
  const MemoryInfo::Field* vmalloc = FindField(*info, "VmallocTotal");
  REQUIRE(vmalloc != nullptr);
  CHECK(vmalloc->value == 135288315904ull * kKiB);
}

TEST_CASE("meminfo with a non-numeric value is DATA_LOSS naming file and line", "[meminfo]") {
  absl::StatusOr<MemoryInfo> info = ReadMemoryInfo(Fixture("broken"));
  REQUIRE(absl::IsDataLoss(info.status()));
  CHECK(MessageContains(info.status(), "broken/proc/meminfo line 2"));
  CHECK(MessageContains(info.status(), "MemFree:          lots kB"));
}

TEST_CASE("meminfo without MemAvailable is DATA_LOSS", "[meminfo]") {
  TempTree tree;
  tree.Write("proc/meminfo",
             "MemTotal: 100 kB\nMemFree: 50 kB\nBuffers: 1 kB\nCached: 2 kB\n"
             "SwapTotal: 0 kB\nSwapFree: 0 kB\n");
  absl::StatusOr<MemoryInfo> info = ReadMemoryInfo(tree.root());
  REQUIRE(absl::IsDataLoss(info.status()));
  CHECK(MessageContains(info.status(), "no MemAvailable line"));
}

TEST_CASE("meminfo with a unit other than kB is DATA_LOSS", "[meminfo]") {
  TempTree tree;
  tree.Write("proc/meminfo", "MemTotal: 100 MB\n");
  REQUIRE(absl::IsDataLoss(ReadMemoryInfo(tree.root()).status()));
}

TEST_CASE("meminfo line without a colon is DATA_LOSS", "[meminfo]") {
  TempTree tree;
  tree.Write("proc/meminfo", "MemTotal 100 kB\n");
  REQUIRE(absl::IsDataLoss(ReadMemoryInfo(tree.root()).status()));
}

TEST_CASE("meminfo whose kB value overflows bytes is DATA_LOSS", "[meminfo]") {
  TempTree tree;
  tree.Write("proc/meminfo", "MemTotal: 18446744073709551615 kB\n");
  REQUIRE(absl::IsDataLoss(ReadMemoryInfo(tree.root()).status()));
}

TEST_CASE("a missing proc file is NOT_FOUND", "[procfs]") {
  TempTree empty;
  CHECK(absl::IsNotFound(ReadMemoryInfo(empty.root()).status()));
  CHECK(absl::IsNotFound(ReadLoadAverage(empty.root()).status()));
  CHECK(absl::IsNotFound(ReadUptime(empty.root()).status()));
  CHECK(absl::IsNotFound(ReadKernelStat(empty.root()).status()));
  CHECK(absl::IsNotFound(ReadNetDevices(empty.root()).status()));
  CHECK(absl::IsNotFound(ReadDiskStats(empty.root()).status()));
  CHECK(absl::IsNotFound(ReadMounts(empty.root()).status()));
}

TEST_CASE("a proc path that is a directory is UNAVAILABLE, not NOT_FOUND", "[procfs]") {
  TempTree tree;
  tree.Write("proc/loadavg/oops", "");
  REQUIRE(absl::IsUnavailable(ReadLoadAverage(tree.root()).status()));
}

TEST_CASE("loadavg gives the three averages and task counts", "[loadavg]") {
  absl::StatusOr<LoadAverage> load = ReadLoadAverage(Fixture("pi3b"));
  REQUIRE(load.ok());
  CHECK(load->load1 == 0.52);
  CHECK(load->load5 == 0.34);
  CHECK(load->load15 == 0.28);
  CHECK(load->runnable_tasks == 2);
  CHECK(load->total_tasks == 187);
}

TEST_CASE("loadavg with too few fields is DATA_LOSS", "[loadavg]") {
  absl::StatusOr<LoadAverage> load = ReadLoadAverage(Fixture("broken"));
  REQUIRE(absl::IsDataLoss(load.status()));
  CHECK(MessageContains(load.status(), "broken/proc/loadavg line 1"));
}

TEST_CASE("loadavg without the running/total slash is DATA_LOSS", "[loadavg]") {
  TempTree tree;
  tree.Write("proc/loadavg", "0.1 0.2 0.3 2 100\n");
  REQUIRE(absl::IsDataLoss(ReadLoadAverage(tree.root()).status()));
}

TEST_CASE("loadavg with a negative or non-finite average is DATA_LOSS", "[loadavg]") {
  TempTree tree;
  tree.Write("proc/loadavg", "-0.1 0.2 0.3 2/100 7\n");
  CHECK(absl::IsDataLoss(ReadLoadAverage(tree.root()).status()));
  tree.Write("proc/loadavg", "nan 0.2 0.3 2/100 7\n");
  CHECK(absl::IsDataLoss(ReadLoadAverage(tree.root()).status()));
}

TEST_CASE("empty loadavg is DATA_LOSS", "[loadavg]") {
  TempTree tree;
  tree.Write("proc/loadavg", "");
  REQUIRE(absl::IsDataLoss(ReadLoadAverage(tree.root()).status()));
}

TEST_CASE("uptime gives uptime and idle seconds", "[uptime]") {
  absl::StatusOr<Uptime> uptime = ReadUptime(Fixture("pi3b"));
  REQUIRE(uptime.ok());
  CHECK(uptime->uptime_seconds == 352417.31);
  CHECK(uptime->idle_seconds == 1382954.82);
}

TEST_CASE("uptime with a non-numeric idle time is DATA_LOSS", "[uptime]") {
  absl::StatusOr<Uptime> uptime = ReadUptime(Fixture("broken"));
  REQUIRE(absl::IsDataLoss(uptime.status()));
  CHECK(MessageContains(uptime.status(), "broken/proc/uptime line 1"));
}

TEST_CASE("stat gives aggregate and per-core ticks and the kernel counters", "[stat]") {
  absl::StatusOr<KernelStat> stat = ReadKernelStat(Fixture("pi3b"));
  REQUIRE(stat.ok());
  CHECK(stat->ticks_per_second == 100);
  CHECK(stat->total.cpu == -1);
  CHECK(stat->total.user == 1397862);
  CHECK(stat->total.nice == 6521);
  CHECK(stat->total.system == 527470);
  CHECK(stat->total.idle == 52879431);
  CHECK(stat->total.iowait == 39847);
  CHECK(stat->total.softirq == 10852);
  REQUIRE(stat->cores.size() == 4);
  for (int i = 0; i < 4; ++i) CHECK(stat->cores[i].cpu == i);
  const CpuTimes& cpu0 = stat->cores[0];
  CHECK(cpu0.user == 356475);
  CHECK(cpu0.nice == 1609);
  CHECK(cpu0.system == 137256);
  CHECK(cpu0.idle == 13203017);
  CHECK(cpu0.iowait == 11325);
  CHECK(cpu0.irq == 0);
  CHECK(cpu0.softirq == 7846);
  CHECK(cpu0.steal == 0);
  CHECK(stat->context_switches == 482675114);
  CHECK(stat->boot_time_seconds == 1700000000);
  CHECK(stat->forks == 412345);
  CHECK(stat->procs_running == 3);
  CHECK(stat->procs_blocked == 1);
}

TEST_CASE("stat with a negative counter is DATA_LOSS naming the line", "[stat]") {
  absl::StatusOr<KernelStat> stat = ReadKernelStat(Fixture("broken"));
  REQUIRE(absl::IsDataLoss(stat.status()));
  CHECK(MessageContains(stat.status(), "broken/proc/stat line 2"));
}

TEST_CASE("stat with a short cpu line is DATA_LOSS", "[stat]") {
  TempTree tree;
  tree.Write("proc/stat", "cpu  1 2 3 4\n");
  REQUIRE(absl::IsDataLoss(ReadKernelStat(tree.root()).status()));
}

TEST_CASE("stat without btime is DATA_LOSS", "[stat]") {
  TempTree tree;
  tree.Write("proc/stat",
             "cpu  1 2 3 4 5 6 7 8 0 0\nctxt 1\nprocesses 2\nprocs_running 1\nprocs_blocked 0\n");
  absl::StatusOr<KernelStat> stat = ReadKernelStat(tree.root());
  REQUIRE(absl::IsDataLoss(stat.status()));
  CHECK(MessageContains(stat.status(), "no 'btime' line"));
}

TEST_CASE("stat with a bad cpu index is DATA_LOSS", "[stat]") {
  TempTree tree;
  tree.Write("proc/stat", "cpu  1 2 3 4 5 6 7 8\ncpux 1 2 3 4 5 6 7 8\n");
  REQUIRE(absl::IsDataLoss(ReadKernelStat(tree.root()).status()));
}

TEST_CASE("net/dev gives every interface's counters", "[netdev]") {
  absl::StatusOr<std::vector<NetDeviceStats>> devices = ReadNetDevices(Fixture("pi3b"));
  REQUIRE(devices.ok());
  REQUIRE(devices->size() == 3);
  CHECK((*devices)[0].device == "lo");
  CHECK((*devices)[2].device == "wlan0");
  const NetDeviceStats& eth0 = (*devices)[1];
  CHECK(eth0.device == "eth0");
  CHECK(eth0.receive_bytes == 1843726352);
  CHECK(eth0.receive_packets == 2176453);
  CHECK(eth0.receive_errs == 3);
  CHECK(eth0.receive_drop == 12);
  CHECK(eth0.receive_frame == 1);
  CHECK(eth0.receive_multicast == 15230);
  CHECK(eth0.transmit_bytes == 238764512);
  CHECK(eth0.transmit_packets == 985432);
  CHECK(eth0.transmit_errs == 0);
  CHECK(eth0.transmit_drop == 2);
  CHECK((*devices)[2].receive_drop == 41);
}

TEST_CASE("net/dev with a long name glued to its first counter is read", "[netdev]") {
  TempTree tree;
  tree.Write("proc/net/dev",
             "Inter-| Receive | Transmit\n face |bytes|bytes\n"
             "veth1a2b3c4d5e:123 4 0 0 0 0 0 0 567 8 0 0 0 0 0 0\n");
  absl::StatusOr<std::vector<NetDeviceStats>> devices = ReadNetDevices(tree.root());
  REQUIRE(devices.ok());
  REQUIRE(devices->size() == 1);
  CHECK((*devices)[0].device == "veth1a2b3c4d5e");
  CHECK((*devices)[0].receive_bytes == 123);
  CHECK((*devices)[0].transmit_bytes == 567);
}

TEST_CASE("net/dev with a missing counter is DATA_LOSS naming the line", "[netdev]") {
  absl::StatusOr<std::vector<NetDeviceStats>> devices = ReadNetDevices(Fixture("broken"));
  REQUIRE(absl::IsDataLoss(devices.status()));
  CHECK(MessageContains(devices.status(), "broken/proc/net/dev line 4"));
}

TEST_CASE("net/dev without its header is DATA_LOSS", "[netdev]") {
  TempTree tree;
  tree.Write("proc/net/dev", "eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n");
  REQUIRE(absl::IsDataLoss(ReadNetDevices(tree.root()).status()));
}

TEST_CASE("diskstats reports whole disks only, sectors as bytes", "[diskstats]") {
  absl::StatusOr<std::vector<DiskStats>> disks = ReadDiskStats(Fixture("pi3b"));
  REQUIRE(disks.ok());
  REQUIRE(disks->size() == 1);
  const DiskStats& sd = (*disks)[0];
  CHECK(sd.device == "mmcblk0");
  CHECK(sd.reads_completed == 52811);
  CHECK(sd.reads_merged == 21348);
  CHECK(sd.read_bytes == 3412290ull * 512);
  CHECK(sd.read_time_ms == 98310);
  CHECK(sd.writes_completed == 184236);
  CHECK(sd.writes_merged == 243176);
  CHECK(sd.written_bytes == 9833576ull * 512);
  CHECK(sd.write_time_ms == 1653321);
  CHECK(sd.io_in_progress == 0);
  CHECK(sd.io_time_ms == 722510);
  CHECK(sd.io_time_weighted_ms == 1826174);
}

TEST_CASE("diskstats tells partitions from disks across naming schemes", "[diskstats]") {
  TempTree tree;
  const std::string counters = " 1 0 8 0 2 0 16 0 0 3 0\n";
  std::string content;
  for (const char* name : {"sda", "sda1", "sda2", "nvme0n1", "nvme0n1p1", "md0", "dm-0", "sr0",
                           "zram0", "fd0", "loop12", "mmcblk1", "mmcblk1p1"}) {
    content += std::string("8 0 ") + name + counters;
  }
  tree.Write("proc/diskstats", content);
  absl::StatusOr<std::vector<DiskStats>> disks = ReadDiskStats(tree.root());
  REQUIRE(disks.ok());
  std::vector<std::string> names;
  for (const DiskStats& disk : *disks) names.push_back(disk.device);
  CHECK(names == std::vector<std::string>{"sda", "nvme0n1", "md0", "dm-0", "sr0", "mmcblk1"});
}

TEST_CASE("diskstats with too few counters is DATA_LOSS", "[diskstats]") {
  absl::StatusOr<std::vector<DiskStats>> disks = ReadDiskStats(Fixture("broken"));
  REQUIRE(absl::IsDataLoss(disks.status()));
  CHECK(MessageContains(disks.status(), "broken/proc/diskstats line 1"));
}

TEST_CASE("diskstats of an old kernel with exactly 11 counters is read", "[diskstats]") {
  TempTree tree;
  tree.Write("proc/diskstats", "8 0 sda 1 2 3 4 5 6 7 8 9 10 11\n");
  absl::StatusOr<std::vector<DiskStats>> disks = ReadDiskStats(tree.root());
  REQUIRE(disks.ok());
  REQUIRE(disks->size() == 1);
  CHECK((*disks)[0].io_time_weighted_ms == 11);
}

}  // namespace
}  // namespace pi::agent::metrics
