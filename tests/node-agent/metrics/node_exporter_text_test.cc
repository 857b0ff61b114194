#include "node-agent/metrics/node_exporter_text.h"

#include <catch2/catch.hpp>
#include <cctype>
#include <chrono>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "common/system/clock.h"
#include "node-agent/metrics/collector.h"
#include "tests/node-agent/metrics/test_util.h"

namespace pi::agent::metrics {
namespace {

using testing::Fixture;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool IsMetricName(const std::string& name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != ':') return false;
  }
  return true;
}

bool HasLine(const std::string& text, const std::string& line) {
  for (const std::string& candidate : Lines(text)) {
    if (candidate == line) return true;
  }
  return false;
}

SystemMetrics Sample() {
  SystemMetrics m;
  m.collected_at = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::milliseconds(1'700'000'123'500)));

  KernelStat stat;
  stat.ticks_per_second = 100;
  CpuTimes cpu0;
  cpu0.cpu = 0;
  cpu0.user = 12345;
  cpu0.nice = 50;
  cpu0.system = 2500;
  cpu0.idle = 100000;
  cpu0.iowait = 25;
  cpu0.softirq = 75;
  cpu0.guest = 50;
  stat.cores = {cpu0};
  stat.context_switches = 482675114;
  stat.forks = 412345;
  stat.boot_time_seconds = 1700000000;
  stat.procs_running = 3;
  stat.procs_blocked = 1;
  m.kernel_stat = stat;

  MemoryInfo memory;
  memory.fields = {{"MemTotal", 948304ull * 1024, true},
                   {"Active(anon)", 110640ull * 1024, true},
                   {"HugePages_Total", 7, false}};
  m.memory = memory;

  m.load = LoadAverage{.load1 = 0.5, .load5 = 0.25, .load15 = 1.75};

  NetDeviceStats eth0;
  eth0.device = "eth0";
  eth0.receive_bytes = 1843726352;
  eth0.receive_errs = 3;
  eth0.transmit_drop = 2;
  eth0.transmit_carrier = 9;
  m.network = std::vector<NetDeviceStats>{eth0};

  DiskStats disk;
  disk.device = "mmcblk0";
  disk.reads_completed = 52811;
  disk.read_bytes = 3412290ull * 512;
  disk.writes_completed = 184236;
  disk.written_bytes = 9833576ull * 512;
  disk.io_time_ms = 722500;
  disk.io_in_progress = 2;
  m.disks = std::vector<DiskStats>{disk};

  FilesystemStats usb;
  usb.device = "/dev/sda1";
  usb.mount_point = "/media/pi/My \"Disk\"\\x\ny";
  usb.fs_type = "vfat";
  usb.read_only = true;
  usb.usage = FsUsage{.size_bytes = 8'000'000'000,
                      .free_bytes = 1'000'000'000,
                      .avail_bytes = 900'000'000,
                      .files = 0,
                      .files_free = 0};
  FilesystemStats nfs;
  nfs.device = "server:/export";
  nfs.mount_point = "/mnt/nfs";
  nfs.fs_type = "nfs4";
  nfs.error = "cannot statvfs /mnt/nfs: Stale file handle";
  m.filesystems = std::vector<FilesystemStats>{usb, nfs};

  m.thermal_zones = std::vector<ThermalZone>{{.zone = 0, .type = "cpu-thermal", .celsius = 51.5}};
  m.power = DecodePowerState(0x50005);
  m.device_model = "Raspberry Pi 3 Model B Rev 1.2";
  return m;
}

TEST_CASE("CPU time is rendered as node_cpu_seconds_total in seconds per cpu and mode",
          "[prometheus]") {
  const std::string text = RenderNodeExporterText(Sample());
  CHECK(HasLine(text, "# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode."));
  CHECK(HasLine(text, "# TYPE node_cpu_seconds_total counter"));
  CHECK(HasLine(text, R"(node_cpu_seconds_total{cpu="0",mode="user"} 123.45)"));
  CHECK(HasLine(text, R"(node_cpu_seconds_total{cpu="0",mode="nice"} 0.5)"));
  CHECK(HasLine(text, R"(node_cpu_seconds_total{cpu="0",mode="system"} 25)"));
  CHECK(HasLine(text, R"(node_cpu_seconds_total{cpu="0",mode="idle"} 1000)"));
  CHECK(HasLine(text, R"(node_cpu_seconds_total{cpu="0",mode="iowait"} 0.25)"));
  CHECK(HasLine(text, R"(node_cpu_seconds_total{cpu="0",mode="irq"} 0)"));
  CHECK(HasLine(text, R"(node_cpu_seconds_total{cpu="0",mode="softirq"} 0.75)"));
  CHECK(HasLine(text, R"(node_cpu_seconds_total{cpu="0",mode="steal"} 0)"));
  CHECK(HasLine(text, R"(node_cpu_guest_seconds_total{cpu="0",mode="user"} 0.5)"));
  CHECK(HasLine(text, "# TYPE node_cpu_guest_seconds_total counter"));
}

TEST_CASE("kernel counters, boot time, time and process gauges use node_exporter names",
          "[prometheus]") {
  const std::string text = RenderNodeExporterText(Sample());
  CHECK(HasLine(text, "# TYPE node_time_seconds gauge"));
  CHECK(HasLine(text, "node_time_seconds 1700000123.5"));
  CHECK(HasLine(text, "# TYPE node_boot_time_seconds gauge"));
  CHECK(HasLine(text, "node_boot_time_seconds 1700000000"));
  CHECK(HasLine(text, "# TYPE node_context_switches_total counter"));
  CHECK(HasLine(text, "node_context_switches_total 482675114"));
  CHECK(HasLine(text, "node_forks_total 412345"));
  CHECK(HasLine(text, "# TYPE node_procs_running gauge"));
  CHECK(HasLine(text, "node_procs_running 3"));
  CHECK(HasLine(text, "node_procs_blocked 1"));
}

TEST_CASE("memory fields become node_memory_<Field>_bytes gauges", "[prometheus]") {
  const std::string text = RenderNodeExporterText(Sample());
  CHECK(
      HasLine(text, "# HELP node_memory_MemTotal_bytes Memory information field MemTotal_bytes."));
  CHECK(HasLine(text, "# TYPE node_memory_MemTotal_bytes gauge"));
  CHECK(HasLine(text, "node_memory_MemTotal_bytes 971063296"));
  CHECK(HasLine(text, "node_memory_Active_anon_bytes 113295360"));
  CHECK(HasLine(text, "node_memory_HugePages_Total 7"));
}

TEST_CASE("load averages are node_load1, node_load5 and node_load15", "[prometheus]") {
  const std::string text = RenderNodeExporterText(Sample());
  CHECK(HasLine(text, "# TYPE node_load1 gauge"));
  CHECK(HasLine(text, "node_load1 0.5"));
  CHECK(HasLine(text, "node_load5 0.25"));
  CHECK(HasLine(text, "node_load15 1.75"));
}

TEST_CASE("network counters are node_network_*_total per device", "[prometheus]") {
  const std::string text = RenderNodeExporterText(Sample());
  CHECK(HasLine(text, "# TYPE node_network_receive_bytes_total counter"));
  CHECK(HasLine(text, R"(node_network_receive_bytes_total{device="eth0"} 1843726352)"));
  CHECK(HasLine(text, R"(node_network_receive_errs_total{device="eth0"} 3)"));
  CHECK(HasLine(text, R"(node_network_receive_drop_total{device="eth0"} 0)"));
  CHECK(HasLine(text, R"(node_network_receive_packets_total{device="eth0"} 0)"));
  CHECK(HasLine(text, R"(node_network_transmit_drop_total{device="eth0"} 2)"));
  CHECK(HasLine(text, R"(node_network_transmit_carrier_total{device="eth0"} 9)"));
  CHECK(HasLine(text,
                "# HELP node_network_receive_errs_total Network device statistic receive_errs."));
}

TEST_CASE("disk counters are node_disk_* in bytes and seconds", "[prometheus]") {
  const std::string text = RenderNodeExporterText(Sample());
  CHECK(HasLine(text, "# TYPE node_disk_reads_completed_total counter"));
  CHECK(HasLine(text, R"(node_disk_reads_completed_total{device="mmcblk0"} 52811)"));
  CHECK(HasLine(text, R"(node_disk_writes_completed_total{device="mmcblk0"} 184236)"));
  CHECK(HasLine(text, R"(node_disk_read_bytes_total{device="mmcblk0"} 1747092480)"));
  CHECK(HasLine(text, R"(node_disk_written_bytes_total{device="mmcblk0"} 5034790912)"));
  CHECK(HasLine(text, R"(node_disk_io_time_seconds_total{device="mmcblk0"} 722.5)"));
  CHECK(HasLine(text, "# TYPE node_disk_io_now gauge"));
  CHECK(HasLine(text, R"(node_disk_io_now{device="mmcblk0"} 2)"));
}

TEST_CASE("filesystem gauges carry device, fstype and an escaped mountpoint", "[prometheus]") {
  const std::string text = RenderNodeExporterText(Sample());
  const std::string labels =
      R"({device="/dev/sda1",fstype="vfat",mountpoint="/media/pi/My \"Disk\"\\x\ny"})";
  CHECK(HasLine(text, "# TYPE node_filesystem_size_bytes gauge"));
  CHECK(HasLine(text, "node_filesystem_size_bytes" + labels + " 8000000000"));
  CHECK(HasLine(text, "node_filesystem_free_bytes" + labels + " 1000000000"));
  CHECK(HasLine(text, "node_filesystem_avail_bytes" + labels + " 900000000"));
  CHECK(HasLine(text, "node_filesystem_files" + labels + " 0"));
  CHECK(HasLine(text, "node_filesystem_files_free" + labels + " 0"));
  CHECK(HasLine(text, "node_filesystem_readonly" + labels + " 1"));
  CHECK(HasLine(text, "node_filesystem_device_error" + labels + " 0"));
}

TEST_CASE("a filesystem that could not be queried has device_error 1 and no sizes",
          "[prometheus]") {
  const std::string text = RenderNodeExporterText(Sample());
  const std::string labels = R"({device="server:/export",fstype="nfs4",mountpoint="/mnt/nfs"})";
  CHECK(HasLine(text, "node_filesystem_device_error" + labels + " 1"));
  CHECK(text.find("node_filesystem_size_bytes" + labels) == std::string::npos);
  CHECK(text.find("node_filesystem_avail_bytes" + labels) == std::string::npos);
}

TEST_CASE("thermal zones are node_thermal_zone_temp in Celsius with type and zone",
          "[prometheus]") {
  const std::string text = RenderNodeExporterText(Sample());
  CHECK(HasLine(text, "# TYPE node_thermal_zone_temp gauge"));
  CHECK(HasLine(text, R"(node_thermal_zone_temp{type="cpu-thermal",zone="0"} 51.5)"));
}

TEST_CASE("Pi power state is rendered as pi_agent_power_* gauges", "[prometheus]") {
  const std::string text = RenderNodeExporterText(Sample());
  CHECK(HasLine(text, "# TYPE pi_agent_power_throttled_bitmask gauge"));
  CHECK(HasLine(text, "pi_agent_power_throttled_bitmask 327685"));
  CHECK(HasLine(text, R"(pi_agent_power_condition_active{condition="under_voltage"} 1)"));
  CHECK(HasLine(text, R"(pi_agent_power_condition_active{condition="arm_frequency_capped"} 0)"));
  CHECK(HasLine(text, R"(pi_agent_power_condition_active{condition="throttled"} 1)"));
  CHECK(HasLine(text, R"(pi_agent_power_condition_active{condition="soft_temperature_limit"} 0)"));
  CHECK(HasLine(text, R"(pi_agent_power_condition_occurred{condition="under_voltage"} 1)"));
  CHECK(HasLine(text, R"(pi_agent_power_condition_occurred{condition="throttled"} 1)"));
  CHECK(HasLine(text, R"(pi_agent_power_condition_occurred{condition="arm_frequency_capped"} 0)"));
  CHECK(HasLine(text, R"(pi_agent_device_model_info{model="Raspberry Pi 3 Model B Rev 1.2"} 1)"));
}

TEST_CASE("absent parts produce no families", "[prometheus]") {
  SystemMetrics m;
  m.network = std::vector<NetDeviceStats>{};
  const std::string text = RenderNodeExporterText(m);
  CHECK(Lines(text) == std::vector<std::string>{
                           "# HELP node_time_seconds System time in seconds since epoch (1970).",
                           "# TYPE node_time_seconds gauge", "node_time_seconds 0"});
}

TEST_CASE("the rendering of a whole Pi 3B is valid exposition with unique series", "[prometheus]") {
  common::ManualClock clock;
  CpuSampler sampler({.root = Fixture("pi3b")});
  SystemMetricsCollector collector(
      {.root = Fixture("pi3b")}, sampler,
      [](const std::string&) -> absl::StatusOr<FsUsage> { return FsUsage{.size_bytes = 1}; },
      clock);
  const std::string text = RenderNodeExporterText(collector.Collect());

  std::set<std::string> typed;
  std::set<std::string> series;
  std::string current_family;
  for (const std::string& line : Lines(text)) {
    INFO(line);
    if (line.rfind("# HELP ", 0) == 0) continue;
    if (line.rfind("# TYPE ", 0) == 0) {
      const size_t space = line.rfind(' ');
      const std::string name = line.substr(7, space - 7);
      const std::string kind = line.substr(space + 1);
      CHECK(IsMetricName(name));
      CHECK((kind == "counter" || kind == "gauge"));
      CHECK(typed.insert(name).second);
      current_family = name;
      continue;
    }
    const size_t value_at = line.rfind(' ');
    REQUIRE(value_at != std::string::npos);
    const std::string series_id = line.substr(0, value_at);
    const std::string name = series_id.substr(0, series_id.find('{'));
    CHECK(IsMetricName(name));
    CHECK(name == current_family);
    if (name.size() < series_id.size()) CHECK(series_id.back() == '}');
    double value = 0;
    CHECK(absl::SimpleAtod(line.substr(value_at + 1), &value));
    CHECK(series.insert(series_id).second);
  }
  CHECK(typed.count("node_cpu_seconds_total") == 1);
  CHECK(typed.count("node_memory_MemAvailable_bytes") == 1);
  CHECK(typed.count("node_filesystem_avail_bytes") == 1);
  CHECK(HasLine(text, R"(node_cpu_seconds_total{cpu="0",mode="user"} 3564.75)"));
  CHECK(HasLine(text, R"(node_network_receive_drop_total{device="wlan0"} 41)"));
  CHECK(
      HasLine(text, std::string(R"(node_filesystem_size_bytes{device="/dev/sda1",fstype="vfat",)") +
                        R"(mountpoint="/media/pi/USB Stick"} 1)"));
  CHECK(HasLine(text, "node_memory_SwapFree_bytes 100659200"));
}

}  // namespace
}  // namespace pi::agent::metrics
