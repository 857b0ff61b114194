#include "control-plane/pictl/format.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/grpc/proto_time.h"

namespace pi::controlplane::pictl {
namespace {

using namespace std::chrono_literals;

// 2026-11-22T07:31:47Z
const WallTime kNow = WallTime(std::chrono::seconds(1795332707));

google::protobuf::Timestamp Ago(std::chrono::nanoseconds age) {
  return common::ToProtoTimestamp(kNow - std::chrono::duration_cast<WallTime::duration>(age));
}

}  // namespace

TEST_CASE("ages are the two largest units, past or future") {
  CHECK(FormatAge(Ago(3s), kNow) == "3s ago");
  CHECK(FormatAge(Ago(5min + 12s), kNow) == "5m12s ago");
  CHECK(FormatAge(Ago(2h), kNow) == "2h ago");
  CHECK(FormatAge(Ago(76h + 5min), kNow) == "3d4h ago");
  CHECK(FormatAge(Ago(-10min), kNow) == "in 10m");
  CHECK(FormatAge(Ago(200ms), kNow) == "just now");
  CHECK(FormatAge({}, kNow) == "never");
}

TEST_CASE("timestamps are RFC 3339 UTC, unset ones a dash") {
  CHECK(FormatTimestamp(common::ToProtoTimestamp(kNow)) == "2026-11-22T07:31:47Z");
  CHECK(FormatTimestamp({}) == "-");
}

TEST_CASE("bytes use binary units") {
  CHECK(FormatBytes(512) == "512 B");
  CHECK(FormatBytes(1536) == "1.5 KiB");
  CHECK(FormatBytes(uint64_t{4} << 30) == "4.0 GiB");
}

TEST_CASE("labels are sorted key=value pairs") {
  pb::Node node;
  (*node.mutable_labels())["zone"] = "a";
  (*node.mutable_labels())["role"] = "worker";
  CHECK(FormatLabels(node.labels()) == "role=worker,zone=a");
  CHECK(FormatLabels(pb::Node().labels()) == "<none>");
}

TEST_CASE("the node table aligns columns and shows an admin state behind DOWN") {
  pb::ListNodesResponse response;
  pb::Node* ready = response.add_nodes();
  ready->set_id("pi-1");
  ready->set_hostname("pi-1");
  ready->set_state(pb::NODE_STATE_READY);
  ready->set_agent_address("10.0.0.1:9091");
  *ready->mutable_last_heartbeat() = Ago(3s);
  pb::Node* down = response.add_nodes();
  down->set_id("kitchen-pi");
  down->set_hostname("kitchen");
  down->set_state(pb::NODE_STATE_DOWN);
  down->set_admin_state(pb::NODE_STATE_CORDONED);
  down->set_agent_address("10.0.0.22:9091");
  (*down->mutable_labels())["room"] = "kitchen";
  CHECK(FormatNodeTable(response, kNow) ==
        "ID          HOSTNAME  STATE            ADDRESS         LAST-HEARTBEAT  LABELS\n"
        "pi-1        pi-1      READY            10.0.0.1:9091   3s ago          <none>\n"
        "kitchen-pi  kitchen   DOWN (cordoned)  10.0.0.22:9091  never           room=kitchen\n");
}

TEST_CASE("an empty node list says so") { CHECK(FormatNodeTable({}, kNow) == "No nodes.\n"); }

TEST_CASE("node details show facts, health and the health check") {
  pb::Node node;
  node.set_id("pi-1");
  node.set_state(pb::NODE_STATE_DRAINING);
  node.set_admin_state(pb::NODE_STATE_DRAINING);
  (*node.mutable_facts())["arch"] = "arm64";
  *node.mutable_last_health_check() = Ago(5s);
  node.set_health_check_error("connection refused");
  auto* health = node.mutable_last_health();
  health->set_status(pb::HealthStatus::DEGRADED);
  health->set_cpu_usage_percent(12.5);
  health->set_max_temperature_celsius(48.25);
  health->set_throttled_now(true);
  *health->mutable_uptime() = common::ToProtoDuration(26h);
  const std::string text = FormatNodeDetails(node, kNow);
  CHECK_THAT(text, Catch::Contains("Admin state:          DRAINING\n"));
  CHECK_THAT(text, Catch::Contains(
                       "Health check:         FAILED 2026-11-22T07:31:42Z (5s ago): connection "
                       "refused\n"));
  CHECK_THAT(text, Catch::Contains("  arch:  arm64\n"));
  CHECK_THAT(text, Catch::Contains("  Status:             DEGRADED\n"));
  CHECK_THAT(text, Catch::Contains("  CPU:                12.5%\n"));
  CHECK_THAT(text, Catch::Contains("  Temperature:        48.2 °C\n"));
  CHECK_THAT(text, Catch::Contains("  Throttled now:      yes\n"));
  CHECK_THAT(text, Catch::Contains("  Uptime:             1d2h\n"));
}

TEST_CASE("node details without a heartbeat or poll say so") {
  const std::string text = FormatNodeDetails(pb::Node(), kNow);
  CHECK_THAT(text, Catch::Contains("Health check:         not polled yet\n"));
  CHECK_THAT(text, Catch::Contains("<no heartbeat yet>"));
  CHECK_THAT(text, Catch::Contains("Admin state:          none\n"));
}

TEST_CASE("metrics summarise CPU, memory, load, uptime, disks, temperatures and throttling") {
  pb::SystemMetrics metrics;
  metrics.set_hostname("pi-1");
  metrics.set_model("Raspberry Pi 4 Model B Rev 1.4");
  *metrics.mutable_collected_at() = Ago(1s);
  metrics.mutable_cpu()->set_count(4);
  metrics.mutable_cpu()->mutable_total()->set_usage_percent(12.5);
  metrics.mutable_memory()->set_total_bytes(uint64_t{4} << 30);
  metrics.mutable_memory()->set_used_bytes(uint64_t{1} << 30);
  metrics.mutable_memory()->set_available_bytes(uint64_t{3} << 30);
  metrics.mutable_load()->set_load1(0.5);
  *metrics.mutable_uptime() = common::ToProtoDuration(3h + 5min);
  auto* disk = metrics.add_disks();
  disk->set_mount_point("/");
  disk->set_fs_type("ext4");
  disk->set_device("/dev/mmcblk0p2");
  disk->set_total_bytes(100 << 20);
  disk->set_used_bytes(25 << 20);
  disk->set_available_bytes(70 << 20);
  auto* zone = metrics.add_thermal_zones();
  zone->set_zone("thermal_zone0");
  zone->set_type("cpu-thermal");
  zone->set_temperature_celsius(51.0);
  metrics.mutable_power()->set_under_voltage_occurred(true);
  metrics.mutable_power()->set_throttled_now(true);
  metrics.add_absent("processes");
  const std::string text = FormatMetrics(metrics, kNow);
  CHECK_THAT(text, Catch::Contains("Host:         pi-1 (Raspberry Pi 4 Model B Rev 1.4)\n"));
  CHECK_THAT(text, Catch::Contains("CPU:          12.5% of 4 cores"));
  CHECK_THAT(text, Catch::Contains("Memory:       1.0 GiB used of 4.0 GiB (3.0 GiB available)\n"));
  CHECK_THAT(text, Catch::Contains("Load:         0.50 0.00 0.00\n"));
  CHECK_THAT(text, Catch::Contains("Uptime:       3h5m\n"));
  CHECK_THAT(text, Catch::Contains("Throttling:   NOW: throttled; since boot: under-voltage\n"));
  CHECK_THAT(text, Catch::Contains("Unavailable:  processes\n"));
  CHECK_THAT(
      text, Catch::Contains("  /  ext4  /dev/mmcblk0p2  25.0 MiB of 100.0 MiB used (25%), 70.0 MiB "
                            "available\n"));
  CHECK_THAT(text, Catch::Contains("  cpu-thermal (thermal_zone0)  51.0 °C\n"));
}

TEST_CASE("metrics without power flags say throttling is unknown") {
  CHECK_THAT(FormatMetrics(pb::SystemMetrics(), kNow), Catch::Contains("Throttling:  unknown"));
}

TEST_CASE("a GPIO answer names the line, chip, level and hold") {
  pb::GPIOResponse response;
  response.set_chip_name("gpiochip0");
  response.set_chip_label("pinctrl-bcm2835");
  response.set_offset(17);
  response.set_line_name("GPIO17");
  response.set_value(1);
  response.set_direction(pb::GPIO_DIRECTION_OUTPUT);
  response.set_held(true);
  *response.mutable_held_until() = Ago(-30s);
  CHECK(FormatGpio(response, kNow) ==
        "GPIO17 (line 17) on gpiochip0 [pinctrl-bcm2835]: value 1, output, held until "
        "2026-11-22T07:32:17Z (in 30s)\n");
  response.clear_value();
  response.clear_held_until();
  response.set_held(false);
  response.set_direction(pb::GPIO_DIRECTION_UNSPECIFIED);
  response.set_line_name("");
  CHECK(FormatGpio(response, kNow) == "line 17 on gpiochip0 [pinctrl-bcm2835]: not held\n");
}

TEST_CASE("a command's exit code is mirrored, 128+signal when killed") {
  pb::CommandResponse response;
  response.set_exit_code(3);
  CHECK(CommandExitCode(response) == 3);
  response.set_exit_code(-1);
  response.set_signal(9);
  CHECK(CommandExitCode(response) == 137);
}

TEST_CASE("command notes mention truncation, timeouts and signals") {
  pb::CommandResponse response;
  CHECK(FormatCommandNotes(response).empty());
  response.set_stdout_truncated(true);
  response.set_signal(15);
  CHECK(FormatCommandNotes(response) ==
        "pictl: stdout was truncated by the agent\npictl: the command was killed by signal 15\n");
  response.set_timed_out(true);
  *response.mutable_duration() = common::ToProtoDuration(30s);
  CHECK_THAT(FormatCommandNotes(response), Catch::Contains("timed out after 30s"));
}

TEST_CASE("a log entry reads like syslog") {
  pb::LogEntry entry;
  *entry.mutable_timestamp() = common::ToProtoTimestamp(kNow);
  entry.set_hostname("pi-1");
  entry.set_identifier("sshd");
  entry.set_pid(42);
  entry.set_message("Accepted publickey");
  CHECK(FormatLogEntry(entry) == "2026-11-22T07:31:47Z pi-1 sshd[42]: Accepted publickey");
  entry.set_identifier("");
  entry.set_pid(0);
  entry.set_source("app");
  CHECK(FormatLogEntry(entry) == "2026-11-22T07:31:47Z pi-1 app: Accepted publickey");
}

TEST_CASE("a created token is shown with the join command") {
  pb::CreateJoinTokenResponse response;
  response.set_token("K10abc::id1.secret");
  response.mutable_info()->set_id("id1");
  *response.mutable_info()->mutable_expires_at() = Ago(-24h);
  const std::string text = FormatCreatedToken(response, "10.0.0.1:9090", kNow);
  CHECK_THAT(text, Catch::Contains("shown only once"));
  CHECK_THAT(text, Catch::Contains("  pi-agent --join 10.0.0.1:9090 --token K10abc::id1.secret\n"));
  CHECK_THAT(text, Catch::Contains("(in 1d); uses: 0/unlimited."));
}

TEST_CASE("the token table shows each token's status") {
  pb::ListJoinTokensResponse response;
  auto* active = response.add_tokens();
  active->set_id("a");
  *active->mutable_expires_at() = Ago(-1h);
  auto* expired = response.add_tokens();
  expired->set_id("b");
  *expired->mutable_expires_at() = Ago(1h);
  auto* revoked = response.add_tokens();
  revoked->set_id("c");
  *revoked->mutable_revoked_at() = Ago(1min);
  auto* used = response.add_tokens();
  used->set_id("d");
  used->set_uses(2);
  used->set_max_uses(2);
  used->set_created_by("admin:alice");
  used->set_description("rack 2");
  CHECK(FormatTokenTable(response, kNow) ==
        "ID  STATUS   EXPIRES  USES         CREATED-BY   DESCRIPTION\n"
        "a   active   in 1h    0/unlimited\n"
        "b   expired  1h ago   0/unlimited\n"
        "c   revoked  never    0/unlimited\n"
        "d   used up  never    2/2          admin:alice  rack 2\n");
  CHECK(FormatTokenTable({}, kNow) == "No join tokens.\n");
}

TEST_CASE("cluster changes are one line each") {
  pb::ClusterChange change;
  change.set_revision(42);
  change.set_operation(pb::ClusterChange::OPERATION_UPSERT);
  *change.mutable_changed_at() = common::ToProtoTimestamp(kNow);
  change.mutable_node()->set_id("pi-1");
  change.mutable_node()->set_state(pb::NODE_STATE_READY);
  change.mutable_node()->set_agent_address("10.0.0.1:9091");
  CHECK(FormatClusterChange(change) ==
        "2026-11-22T07:31:47Z rev 42 node pi-1 READY 10.0.0.1:9091 labels <none>");
  change.mutable_join_token()->set_id("t1");
  CHECK(FormatClusterChange(change) ==
        "2026-11-22T07:31:47Z rev 42 join-token t1 uses 0/unlimited");
  change.set_operation(pb::ClusterChange::OPERATION_DELETE);
  change.set_deleted_id("t1");
  CHECK(FormatClusterChange(change) == "2026-11-22T07:31:47Z rev 42 delete t1");
}

TEST_CASE("JSON output uses the proto field names on one line") {
  pb::Node node;
  node.set_id("pi-1");
  node.set_agent_address("a:1");
  const std::string line = ToJsonLine(node);
  CHECK(line.find('\n') == std::string::npos);
  const auto json = nlohmann::json::parse(line);
  CHECK(json["agent_address"] == "a:1");
}

// ---- queues

TEST_CASE("the queue stats table shows depths, the oldest age and counters per route") {
  pb::GetQueueStatsResponse response;
  pb::QueueStats* github = response.add_routes();
  github->set_route("github");
  github->set_queued(12);
  github->set_delayed(2);
  github->set_leased(3);
  github->set_dead(1);
  *github->mutable_oldest_queued_age() = common::ToProtoDuration(std::chrono::seconds(312));
  github->set_enqueued(100);
  github->set_dequeued(90);
  github->set_acked(80);
  github->set_nacked(5);
  github->set_conflicts(1);
  github->set_lease_expiries(4);
  github->set_dead_lettered(1);
  pb::QueueStats* jobs = response.add_routes();
  jobs->set_route("jobs");
  CHECK(FormatQueueStatsTable(response) ==
        "ROUTE   QUEUED  DELAYED  LEASED  DEAD  OLDEST  ENQUEUED  DEQUEUED  ACKED  NACKED  "
        "CONFLICTS  EXPIRED  DEAD-LETTERED\n"
        "github  12      2        3       1     5m12s   100       90        80     5       "
        "1          4        1\n"
        "jobs    0       0        0       0     -       0         0         0      0       "
        "0          0        0\n");
}

TEST_CASE("no queue routes says so") { CHECK(FormatQueueStatsTable({}) == "No queue routes.\n"); }

TEST_CASE("the dead letter table shows ages, attempts, reason, size and headers") {
  pb::ListDeadLettersResponse response;
  pb::DeadLetter* item = response.add_items();
  item->set_id("m1");
  *item->mutable_received_at() = Ago(2h);
  *item->mutable_dead_at() = Ago(90s);
  item->set_attempt(5);
  item->set_reason("max_attempts");
  item->set_payload(std::string(2048, 'x'));
  (*item->mutable_headers())["X-B"] = "2";
  (*item->mutable_headers())["X-A"] = "1";
  pb::DeadLetter* bare = response.add_items();
  bare->set_id("m2");
  *bare->mutable_received_at() = Ago(1h);
  *bare->mutable_dead_at() = Ago(1h);
  bare->set_attempt(1);
  CHECK(FormatDeadLetterTable(response, kNow) ==
        "ID  RECEIVED  DIED       ATTEMPTS  REASON        SIZE     HEADERS\n"
        "m1  2h ago    1m30s ago  5         max_attempts  2.0 KiB  X-A=1,X-B=2\n"
        "m2  1h ago    1h ago     1         -             0 B      -\n");
}

TEST_CASE("no dead letters says so") {
  CHECK(FormatDeadLetterTable({}, kNow) == "No dead letters.\n");
}

TEST_CASE("a requeue or delete count says how many ids were not dead letters") {
  CHECK(FormatDeadLetterCount("requeued", 3, 3, "github") ==
        "requeued 3 of 3 dead letters of queue github\n");
  CHECK(FormatDeadLetterCount("deleted", 1, 1, "github") ==
        "deleted 1 of 1 dead letter of queue github\n");
  CHECK(FormatDeadLetterCount("requeued", 2, 3, "github") ==
        "requeued 2 of 3 dead letters of queue github (1 was not a dead letter of it)\n");
  CHECK(FormatDeadLetterCount("deleted", 0, 2, "jobs") ==
        "deleted 0 of 2 dead letters of queue jobs (2 were not dead letters of it)\n");
}

TEST_CASE("a published message is named with its route") {
  pb::PublishResponse response;
  response.set_id("01JABC");
  CHECK(FormatPublished(response, "github") == "published message 01JABC to queue github\n");
}

TEST_CASE("JSON with defaults prints zero counts; without, proto3 leaves them out") {
  pb::QueueStats stats;
  stats.set_route("github");
  CHECK_FALSE(nlohmann::json::parse(ToJsonLine(stats)).contains("queued"));
  const auto json = nlohmann::json::parse(ToJsonLine(stats, /*include_defaults=*/true));
  CHECK(json["queued"] == "0");
  CHECK(json["route"] == "github");
}

TEST_CASE("dead letters as JSON carry the payload as base64") {
  pb::ListDeadLettersResponse response;
  response.add_items()->set_payload("hi");
  const auto json = nlohmann::json::parse(ToJsonLine(response));
  CHECK(json["items"][0]["payload"] == "aGk=");
}

}  // namespace pi::controlplane::pictl
