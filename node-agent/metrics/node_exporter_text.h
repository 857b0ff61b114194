#pragma once

// SystemMetrics as Prometheus text with node_exporter's metric names, types, labels and units, so
// dashboards built for node_exporter (e.g. Grafana's "Node Exporter Full") work against pi-agent:
//
//   node_cpu_seconds_total{cpu,mode}          counter  modes idle iowait irq nice softirq steal
//                                                      system user
//   node_cpu_guest_seconds_total{cpu,mode}    counter  modes user nice
//   node_context_switches_total, node_forks_total                         counter
//   node_boot_time_seconds, node_time_seconds, node_procs_running, node_procs_blocked  gauge
//   node_load1, node_load5, node_load15                                   gauge
//   node_memory_<Field>[_bytes]               gauge    every /proc/meminfo line; "Active(anon)"
//                                                      becomes Active_anon; kB lines get _bytes
//   node_network_{receive,transmit}_<stat>_total{device}   counter  bytes packets errs drop fifo
//                                                      receive: frame compressed multicast
//                                                      transmit: colls carrier compressed
//   node_disk_{reads,writes}_completed_total, node_disk_{reads,writes}_merged_total,
//   node_disk_read_bytes_total, node_disk_written_bytes_total,
//   node_disk_{read,write}_time_seconds_total, node_disk_io_time_seconds_total,
//   node_disk_io_time_weighted_seconds_total {device}  counter;  node_disk_io_now{device} gauge
//   node_filesystem_{size,free,avail}_bytes, node_filesystem_files, node_filesystem_files_free,
//   node_filesystem_readonly, node_filesystem_device_error {device,fstype,mountpoint}  gauge
//   node_thermal_zone_temp{type,zone}         gauge    degrees Celsius
//
// pi-agent's own gauges (node_exporter has no equivalent):
//   pi_agent_power_throttled_bitmask                  the firmware's get_throttled value
//   pi_agent_power_condition_active{condition}        1 while the condition holds now
//   pi_agent_power_condition_occurred{condition}      1 if it has held at any time since boot
//     condition: under_voltage, arm_frequency_capped, throttled, soft_temperature_limit
//   pi_agent_device_model_info{model}                 always 1; the device-tree model
//
// Absent parts of SystemMetrics produce no families at all.

#include <string>

#include "common/prometheus/text_writer.h"
#include "node-agent/metrics/system_metrics.h"

namespace pi::agent::metrics {

// Appends the families above to writer, so a /metrics handler can add its own families.
void WriteNodeExporterMetrics(const SystemMetrics& metrics, common::PrometheusTextWriter& writer);

std::string RenderNodeExporterText(const SystemMetrics& metrics);

}  // namespace pi::agent::metrics
