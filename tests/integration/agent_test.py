"""Integration test: the real pi-agent binary on 127.0.0.1 with certificates made for the test.
Every RPC is called over mTLS and checked against this machine (/proc, statvfs, hostname)."""

import json
import os
import socket
import subprocess
import threading
import time
import unittest
import urllib.error
import urllib.request

import grpc
from google.protobuf import duration_pb2, empty_pb2, timestamp_pb2

import harness
from picontroller.v1 import agent_pb2, agent_pb2_grpc

AGENT_BIN = os.environ["PI_AGENT_BIN"]


def meminfo_bytes(field):
    with open("/proc/meminfo") as f:
        for line in f:
            name, value = line.split(":", 1)
            if name == field:
                return int(value.split()[0]) * 1024
    raise KeyError(field)


class AgentTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.TempDir("pi-agent-itest-")
        cls.pki = harness.Pki(cls.tmp.join("pki"))
        cls.pki.issue("agent", "node:itest", server=True)
        cls.pki.issue("controller", "controller")
        cls.pki.issue("admin", "admin:alice")
        cls.pki.issue("othernode", "node:other")
        cls.rogue = harness.Pki(cls.tmp.join("rogue-pki"))
        cls.rogue.issue("admin", "admin:mallory")

        cls.followed_log = cls.tmp.join("followed.log")
        open(cls.followed_log, "w").close()
        cls.app_log = cls.tmp.join("app.log")
        with open(cls.app_log, "w") as f:
            f.write("2026-11-22T03:00:00Z boot ok\n")
            f.write("2026-11-22T03:00:01Z disk warning: 91% used\n")
            f.write("2026-11-22T03:00:02Z service started\n")

        config = {
            "listen": "127.0.0.1:0",
            "http_listen": "127.0.0.1:0",
            "log_level": "debug",
            "tls": {
                "cert_file": cls.pki.path("agent.crt"),
                "key_file": cls.pki.path("agent.key"),
                "ca_file": cls.pki.path("ca.crt"),
            },
            "metrics": {"cpu_sample_interval": "100ms"},
            "gpio": {
                "backend": "simulated",
                "chip": "pinctrl-bcm2835",
                "allowed_lines": [
                    {"line": 17, "mode": "output"},
                    {"line": "GPIO27", "mode": "any"},
                    {"line": 22, "mode": "input"},
                    {"line": "10-16", "mode": "any"},
                ],
            },
            "exec": {
                "allowed_commands": ["/bin/echo", "/bin/sleep", "/bin/sh"],
                "max_timeout": "30s",
                "max_output_bytes": 4096,
                "allowed_env": ["GREETING"],
            },
            "logs": {
                "files": {"app": cls.app_log, "followed": cls.followed_log},
                "follow_poll_interval": "50ms",
            },
        }
        cls.config_path = cls.tmp.join("agent.json")
        with open(cls.config_path, "w") as f:
            json.dump(config, f)

        cls.notify = harness.NotifySocket(cls.tmp.join("notify.sock"))
        env = dict(os.environ, NOTIFY_SOCKET=cls.notify.path)
        cls.agent = harness.Daemon(
            [AGENT_BIN, "--config", cls.config_path, "--ports-file", cls.tmp.join("ports.json")],
            cls.tmp.join("ports.json"),
            cls.tmp.join("agent.log"),
            env=env,
        )
        cls.address = f"127.0.0.1:{cls.agent.ports['grpc']}"
        cls.http = f"http://127.0.0.1:{cls.agent.ports['http']}"
        cls.channel = cls.pki.channel(cls.address, "controller")
        cls.stub = agent_pb2_grpc.NodeAgentStub(cls.channel)
        cls.admin = agent_pb2_grpc.NodeAgentStub(cls.pki.channel(cls.address, "admin"))

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        code = cls.agent.terminate()
        cls.notify.close()
        cls.tmp.cleanup()
        if code != 0:
            raise AssertionError(f"pi-agent exited with {code} on SIGTERM:\n{cls.agent.log()}")

    def assertCode(self, call, code, *contains):
        with self.assertRaises(grpc.RpcError) as raised:
            call()
        self.assertEqual(raised.exception.code(), code, raised.exception.details())
        for text in contains:
            self.assertIn(text, raised.exception.details())
        return raised.exception

    # ---- systemd ---------------------------------------------------------------------------

    def test_ready_is_notified_once_listeners_are_bound(self):
        messages = harness.wait_for(
            lambda: [m for m in self.notify.drain() if "READY=1" in m], 5, "READY=1"
        )
        self.assertTrue(messages)

    # ---- GetSystemMetrics ------------------------------------------------------------------

    def test_metrics_match_this_machine(self):
        metrics = self.stub.GetSystemMetrics(empty_pb2.Empty(), timeout=5)
        self.assertEqual(metrics.memory.total_bytes, meminfo_bytes("MemTotal"))
        self.assertEqual(metrics.memory.swap_total_bytes, meminfo_bytes("SwapTotal"))
        self.assertEqual(metrics.cpu.count, os.cpu_count())
        self.assertEqual(len(metrics.cpu.cores), os.cpu_count())
        self.assertGreaterEqual(metrics.cpu.total.usage_percent, 0.0)
        self.assertLessEqual(metrics.cpu.total.usage_percent, 100.0)
        self.assertEqual(metrics.hostname, socket.gethostname())
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        self.assertAlmostEqual(metrics.uptime.seconds, uptime, delta=5)
        load1 = os.getloadavg()[0]
        self.assertAlmostEqual(metrics.load.load1, load1, delta=max(2.0, load1))
        self.assertIn("lo", [i.name for i in metrics.network_interfaces])
        self.assertGreater(metrics.processes.total, 0)

        root = [d for d in metrics.disks if d.mount_point == "/"]
        self.assertEqual(len(root), 1, [d.mount_point for d in metrics.disks])
        st = os.statvfs("/")
        self.assertEqual(root[0].total_bytes, st.f_blocks * st.f_frsize)
        self.assertEqual(root[0].inodes_total, st.f_files)
        # No Raspberry Pi firmware here: the power part is absent, not an error.
        self.assertFalse(metrics.HasField("power"))
        self.assertIn("power", metrics.absent)

    def test_metrics_endpoint_uses_node_exporter_names(self):
        with urllib.request.urlopen(self.http + "/metrics", timeout=5) as response:
            self.assertEqual(response.status, 200)
            body = response.read().decode()
        self.assertIn(f"node_memory_MemTotal_bytes {meminfo_bytes('MemTotal')}\n", body)
        self.assertIn('node_cpu_seconds_total{cpu="0",mode="idle"}', body)
        self.assertIn("node_load1 ", body)
        self.assertIn('node_network_receive_bytes_total{device="lo"}', body)
        self.assertIn('node_filesystem_size_bytes{device=', body)
        self.assertIn("# TYPE node_cpu_seconds_total counter", body)

    def test_healthz_endpoint(self):
        with urllib.request.urlopen(self.http + "/healthz", timeout=5) as response:
            self.assertEqual(response.status, 200)
        with self.assertRaises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(self.http + "/nope", timeout=5)
        self.assertEqual(raised.exception.code, 404)

    # ---- ControlGPIO -----------------------------------------------------------------------

    def gpio(self, **fields):
        return self.stub.ControlGPIO(agent_pb2.GPIORequest(**fields), timeout=5)

    def test_gpio_write_persists_until_release(self):
        written = self.gpio(offset=17, action=agent_pb2.GPIO_ACTION_WRITE, value=1)
        self.assertTrue(written.success)
        self.assertTrue(written.held)
        self.assertEqual(written.chip_label, "pinctrl-bcm2835")
        self.assertEqual(written.line_name, "GPIO17")
        self.assertEqual(self.gpio(offset=17, action=agent_pb2.GPIO_ACTION_READ).value, 1)
        self.gpio(line_name="GPIO17", action=agent_pb2.GPIO_ACTION_WRITE, value=0)
        self.assertEqual(self.gpio(offset=17, action=agent_pb2.GPIO_ACTION_READ).value, 0)
        released = self.gpio(offset=17, action=agent_pb2.GPIO_ACTION_RELEASE)
        self.assertFalse(released.held)
        self.assertCode(
            lambda: self.gpio(offset=17, action=agent_pb2.GPIO_ACTION_RELEASE),
            grpc.StatusCode.FAILED_PRECONDITION,
        )

    def test_gpio_hold_expires(self):
        written = self.gpio(
            offset=27,
            chip="gpiochip0",
            action=agent_pb2.GPIO_ACTION_WRITE,
            value=1,
            hold=duration_pb2.Duration(nanos=300_000_000),
        )
        self.assertTrue(written.HasField("held_until"))
        harness.wait_for(
            lambda: not self.gpio(offset=27, action=agent_pb2.GPIO_ACTION_READ).held
            or None, 5, "the hold on line 27 to end"
        )

    def test_gpio_refusals(self):
        self.assertCode(
            lambda: self.gpio(offset=5, action=agent_pb2.GPIO_ACTION_READ),
            grpc.StatusCode.PERMISSION_DENIED, "allowed_lines",
        )
        self.assertCode(
            lambda: self.gpio(offset=14, action=agent_pb2.GPIO_ACTION_WRITE, value=1),
            grpc.StatusCode.PERMISSION_DENIED, "UART",
        )
        self.assertCode(
            lambda: self.gpio(offset=22, action=agent_pb2.GPIO_ACTION_WRITE, value=1),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        self.assertCode(
            lambda: self.gpio(chip="no-such-chip", offset=17, action=agent_pb2.GPIO_ACTION_READ),
            grpc.StatusCode.NOT_FOUND, "no-such-chip",
        )
        self.assertCode(
            lambda: self.gpio(line_name="GPIO99", action=agent_pb2.GPIO_ACTION_READ),
            grpc.StatusCode.NOT_FOUND,
        )
        self.assertCode(
            lambda: self.gpio(offset=17, action=agent_pb2.GPIO_ACTION_WRITE, value=2),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        self.assertCode(
            lambda: self.gpio(offset=17), grpc.StatusCode.INVALID_ARGUMENT, "action"
        )
        self.assertCode(
            lambda: self.gpio(
                offset=17,
                action=agent_pb2.GPIO_ACTION_WRITE,
                value=1,
                hold=duration_pb2.Duration(seconds=250 * 365 * 86400),
            ),
            grpc.StatusCode.INVALID_ARGUMENT, "366 days",
        )
        self.assertCode(
            lambda: self.gpio(action=agent_pb2.GPIO_ACTION_READ), grpc.StatusCode.INVALID_ARGUMENT
        )

    # ---- ExecuteCommand --------------------------------------------------------------------

    def execute(self, argv, **fields):
        return self.stub.ExecuteCommand(agent_pb2.CommandRequest(argv=argv, **fields), timeout=15)

    def test_execute_allowed_command(self):
        result = self.execute(["/bin/echo", "hello", "pi"])
        self.assertEqual(result.exit_code, 0)
        self.assertEqual(result.stdout, b"hello pi\n")
        self.assertFalse(result.timed_out)
        env = self.execute(["/bin/sh", "-c", 'echo "$GREETING"; exit 3'], env={"GREETING": "hi"})
        self.assertEqual(env.exit_code, 3)
        self.assertEqual(env.stdout, b"hi\n")

    def test_the_audit_line_names_the_admin_a_controller_acts_for_and_trusts_no_one_else(self):
        request = agent_pb2.CommandRequest(argv=["/bin/echo", "audited-by-controller"])
        self.stub.ExecuteCommand(request, timeout=10,
                                 metadata=[("pi-on-behalf-of", "admin:carol")])
        request = agent_pb2.CommandRequest(argv=["/bin/echo", "audited-by-admin"])
        self.admin.ExecuteCommand(request, timeout=10,
                                  metadata=[("pi-on-behalf-of", "admin:carol")])
        request = agent_pb2.CommandRequest(argv=["/bin/echo", "audited-not-an-admin"])
        self.stub.ExecuteCommand(request, timeout=10, metadata=[("pi-on-behalf-of", "node:x")])

        def audit_line(marker):
            lines = [l for l in self.agent.log().splitlines() if marker in l and "exec:" in l]
            return lines[0] if lines else None

        line = harness.wait_for(lambda: audit_line("audited-by-controller"), 5, "audit line")
        self.assertIn("caller=controller for admin:carol", line)
        line = harness.wait_for(lambda: audit_line("audited-by-admin"), 5, "audit line")
        self.assertIn("caller=admin:alice ", line)
        line = harness.wait_for(lambda: audit_line("audited-not-an-admin"), 5, "audit line")
        self.assertIn("caller=controller ", line)

    def test_execute_captures_stderr_and_truncates(self):
        result = self.execute(["/bin/sh", "-c", "head -c 10000 /dev/zero; echo oops >&2"])
        self.assertEqual(len(result.stdout), 4096)
        self.assertTrue(result.stdout_truncated)
        self.assertEqual(result.stderr, b"oops\n")
        self.assertFalse(result.stderr_truncated)

    def test_execute_timeout_kills_the_process_group(self):
        started = time.monotonic()
        result = self.execute(
            ["/bin/sh", "-c", "sleep 60 & sleep 60"], timeout=duration_pb2.Duration(nanos=300_000_000)
        )
        self.assertLess(time.monotonic() - started, 10)
        self.assertTrue(result.timed_out)
        self.assertNotEqual(result.signal, 0)

    def test_client_deadline_kills_the_running_command(self):
        pid_file = self.tmp.join("cancelled.pid")
        script = f"echo $$ > {pid_file}; exec sleep 30"
        self.assertCode(
            lambda: self.stub.ExecuteCommand(
                agent_pb2.CommandRequest(argv=["/bin/sh", "-c", script]), timeout=1
            ),
            grpc.StatusCode.DEADLINE_EXCEEDED,
        )
        pid = int(harness.wait_for(lambda: open(pid_file).read().strip(), 5, "the pid file"))

        def gone():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    return f.read().split(") ")[1][0] == "Z"
            except FileNotFoundError:
                return True

        harness.wait_for(gone, 5, f"command {pid} to be killed after the deadline")

    def test_execute_refusals(self):
        self.assertCode(
            lambda: self.execute(["/bin/rm", "-rf", "/tmp/x"]),
            grpc.StatusCode.PERMISSION_DENIED, "/bin/rm",
        )
        self.assertCode(lambda: self.execute(["echo", "x"]), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertCode(lambda: self.execute([]), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertCode(
            lambda: self.execute(["/bin/echo"], timeout=duration_pb2.Duration(seconds=-1)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        self.assertCode(
            lambda: self.execute(["/bin/echo"], timeout=duration_pb2.Duration(seconds=86400)),
            grpc.StatusCode.INVALID_ARGUMENT, "30s",
        )
        self.assertCode(
            lambda: self.execute(["/bin/echo"], env={"LD_PRELOAD": "/tmp/evil.so"}),
            grpc.StatusCode.PERMISSION_DENIED, "LD_PRELOAD",
        )
        self.assertCode(
            lambda: self.execute(["/bin/echo"], working_directory="/tmp/../etc"),
            grpc.StatusCode.INVALID_ARGUMENT,
        )

    def test_oversize_request_is_refused(self):
        self.assertCode(
            lambda: self.execute(["/bin/echo", "x" * (5 * 1024 * 1024)]),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )

    # ---- StreamLogs ------------------------------------------------------------------------

    def test_stream_logs_from_a_file_with_filters(self):
        entries = list(self.stub.StreamLogs(agent_pb2.LogFilter(source="app"), timeout=5))
        self.assertEqual(
            [e.message for e in entries],
            [
                "2026-11-22T03:00:00Z boot ok",
                "2026-11-22T03:00:01Z disk warning: 91% used",
                "2026-11-22T03:00:02Z service started",
            ],
        )
        self.assertEqual(entries[0].timestamp.ToJsonString(), "2026-11-22T03:00:00Z")
        last = list(self.stub.StreamLogs(agent_pb2.LogFilter(source="app", limit=1), timeout=5))
        self.assertEqual(len(last), 1)
        self.assertIn("service started", last[0].message)
        warned = list(
            self.stub.StreamLogs(agent_pb2.LogFilter(source="app", regex=r"\d+% used"), timeout=5)
        )
        self.assertEqual(len(warned), 1)
        self.assertEqual(warned[0].source, "app")
        since = timestamp_pb2.Timestamp()
        since.FromJsonString("2026-11-22T03:00:01Z")
        recent = list(self.stub.StreamLogs(agent_pb2.LogFilter(source="app", since=since), timeout=5))
        self.assertEqual(len(recent), 2)

    def test_stream_logs_follow_sees_new_lines_and_ends_on_cancel(self):
        call = self.stub.StreamLogs(
            agent_pb2.LogFilter(source="followed", contains="followed", follow=True), timeout=30
        )
        received = []

        def consume():
            try:
                for entry in call:
                    received.append(entry.message)
            except grpc.RpcError:
                pass

        reader = threading.Thread(target=consume)
        reader.start()
        for i in range(3):
            with open(self.followed_log, "a") as f:
                f.write(f"followed line {i}\n")
                f.write("noise that the filter drops\n")
            time.sleep(0.05)
        harness.wait_for(lambda: len(received) >= 3, 10, "three followed lines")
        started = time.monotonic()
        call.cancel()
        reader.join(5)
        self.assertFalse(reader.is_alive())
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(received, [f"followed line {i}" for i in range(3)])

    def test_stream_logs_refusals(self):
        self.assertCode(
            lambda: list(self.stub.StreamLogs(agent_pb2.LogFilter(source="/etc/shadow"), timeout=5)),
            grpc.StatusCode.NOT_FOUND,
        )
        self.assertCode(
            lambda: list(self.stub.StreamLogs(agent_pb2.LogFilter(source="app", regex="("), timeout=5)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        self.assertCode(
            lambda: list(self.stub.StreamLogs(agent_pb2.LogFilter(source="app", limit=-1), timeout=5)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )

    # ---- HealthCheck, grpc.health.v1, reflection -------------------------------------------

    def test_health_check(self):
        health = self.admin.HealthCheck(empty_pb2.Empty(), timeout=5)
        self.assertIn(health.status, (agent_pb2.HealthStatus.OK, agent_pb2.HealthStatus.DEGRADED))
        self.assertTrue(health.version)
        self.assertEqual(health.hostname, socket.gethostname())
        names = {c.name for c in health.checks}
        self.assertTrue({"metrics", "gpio", "exec", "logs"} <= names, names)

    def test_standard_health_service_reports_serving(self):
        check = self.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        # HealthCheckRequest{service: ""} is empty; HealthCheckResponse{status: SERVING} is 08 01.
        self.assertEqual(check(b"", timeout=5), b"\x08\x01")

    def test_server_reflection_lists_the_node_agent(self):
        reflect = self.channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        # ServerReflectionRequest{list_services: ""} (field 7, length-delimited).
        responses = list(reflect(iter([b"\x3a\x00"]), timeout=5))
        self.assertIn(b"picontroller.v1.NodeAgent", responses[0])

    # ---- who may call ----------------------------------------------------------------------

    def test_client_without_certificate_is_refused(self):
        stub = agent_pb2_grpc.NodeAgentStub(self.pki.channel(self.address, None))
        self.assertCode(
            lambda: stub.HealthCheck(empty_pb2.Empty(), timeout=5), grpc.StatusCode.UNAVAILABLE
        )

    def test_certificate_from_another_ca_is_refused(self):
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.pki.read("ca.crt"),
            private_key=self.rogue.read("admin.key"),
            certificate_chain=self.rogue.read("admin.crt"),
        )
        stub = agent_pb2_grpc.NodeAgentStub(grpc.secure_channel(self.address, credentials))
        self.assertCode(
            lambda: stub.HealthCheck(empty_pb2.Empty(), timeout=5), grpc.StatusCode.UNAVAILABLE
        )

    def test_node_identity_is_refused(self):
        stub = agent_pb2_grpc.NodeAgentStub(self.pki.channel(self.address, "othernode"))
        for call in (
            lambda: stub.GetSystemMetrics(empty_pb2.Empty(), timeout=5),
            lambda: stub.ExecuteCommand(agent_pb2.CommandRequest(argv=["/bin/echo"]), timeout=5),
            lambda: stub.ControlGPIO(
                agent_pb2.GPIORequest(offset=17, action=agent_pb2.GPIO_ACTION_READ), timeout=5
            ),
            lambda: list(stub.StreamLogs(agent_pb2.LogFilter(source="app"), timeout=5)),
            lambda: stub.HealthCheck(empty_pb2.Empty(), timeout=5),
        ):
            self.assertCode(call, grpc.StatusCode.PERMISSION_DENIED, "node:other")

    def test_plaintext_client_is_refused(self):
        stub = agent_pb2_grpc.NodeAgentStub(grpc.insecure_channel(self.address))
        self.assertCode(
            lambda: stub.HealthCheck(empty_pb2.Empty(), timeout=5), grpc.StatusCode.UNAVAILABLE
        )


class AgentConfigTest(unittest.TestCase):
    """Startup refusals: the agent exits non-zero with a message naming the problem."""

    def run_agent(self, config, *flags):
        tmp = harness.TempDir("pi-agent-cfg-")
        try:
            path = tmp.join("agent.json")
            with open(path, "w") as f:
                f.write(config if isinstance(config, str) else json.dumps(config))
            result = subprocess.run(
                [AGENT_BIN, "--config", path, *flags], capture_output=True, text=True, timeout=30
            )
            return result.returncode, result.stderr
        finally:
            tmp.cleanup()

    def test_unknown_key_is_named(self):
        code, err = self.run_agent({"listen": "127.0.0.1:0", "gpio": {"alowed_lines": []}})
        self.assertNotEqual(code, 0)
        self.assertIn("gpio.alowed_lines: unknown key", err)

    def test_malformed_json_reports_the_line(self):
        code, err = self.run_agent('{\n "listen": \n}')
        self.assertNotEqual(code, 0)
        self.assertIn("agent.json:3:", err)

    def test_check_config_accepts_a_valid_config(self):
        code, err = self.run_agent(
            {"gpio": {"allowed_lines": [{"line": "4-27"}]}}, "--check-config", "--insecure"
        )
        self.assertEqual(code, 0, err)

    def test_check_config_runs_the_capability_checks(self):
        code, err = self.run_agent(
            {"gpio": {"allowed_lines": [{"line": "27-4"}]}}, "--check-config", "--insecure"
        )
        self.assertNotEqual(code, 0)
        self.assertIn("27-4", err)
        code, err = self.run_agent(
            {"logs": {"files": {"app": "relative.log"}}}, "--check-config", "--insecure"
        )
        self.assertNotEqual(code, 0)
        self.assertIn("relative.log", err)

    def test_missing_certificates_are_named(self):
        code, err = self.run_agent(
            {"listen": "127.0.0.1:0", "tls": {"cert_file": "/nonexistent/node.crt",
                                              "key_file": "/nonexistent/node.key",
                                              "ca_file": "/nonexistent/ca.crt"}}
        )
        self.assertNotEqual(code, 0)
        self.assertIn("/nonexistent/node.crt", err)

    def test_an_agent_that_never_joined_says_how_to_join(self):
        state = harness.TempDir("pi-agent-state-")
        self.addCleanup(state.cleanup)
        code, err = self.run_agent(
            {"listen": "127.0.0.1:0", "control_plane": {"state_dir": state.path}}
        )
        self.assertEqual(code, 2, err)
        self.assertIn("has not joined a cluster", err)
        self.assertIn("--join HOST:PORT --token-file FILE", err)
        self.assertIn("/etc/default/pi-agent", err)


if __name__ == "__main__":
    unittest.main()
