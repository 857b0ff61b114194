"""Integration test of pi-agent as a systemd service: READY/WATCHDOG/STOPPING notifications,
graceful SIGTERM (open streams end, held GPIO lines are released), and the --insecure mode."""

import json
import os
import signal
import socket
import subprocess
import threading
import time
import unittest

import grpc
from google.protobuf import empty_pb2

import harness
from picontroller.v1 import agent_pb2, agent_pb2_grpc

AGENT_BIN = os.environ["PI_AGENT_BIN"]


class AgentLifecycleTest(unittest.TestCase):
    def setUp(self):
        self.tmp = harness.TempDir("pi-agent-life-")
        self.addCleanup(self.tmp.cleanup)
        self.pki = harness.Pki(self.tmp.join("pki"))
        self.pki.issue("agent", "node:life", server=True)
        self.pki.issue("admin", "admin:ops")
        self.log_file = self.tmp.join("app.log")
        open(self.log_file, "w").close()

    def start(self, *flags, env_extra=None, tls=True, config_extra=None):
        config = {
            "listen": "127.0.0.1:0",
            "http_listen": "",
            "gpio": {"backend": "simulated", "allowed_lines": [{"line": 17, "mode": "output"}]},
            "logs": {"files": {"app": self.log_file}, "follow_poll_interval": "50ms"},
            "exec": {"allowed_commands": ["/bin/sleep"], "max_timeout": "15m"},
        }
        config.update(config_extra or {})
        if tls:
            config["tls"] = {
                "cert_file": self.pki.path("agent.crt"),
                "key_file": self.pki.path("agent.key"),
                "ca_file": self.pki.path("ca.crt"),
            }
        path = self.tmp.join("agent.json")
        with open(path, "w") as f:
            json.dump(config, f)
        self.notify = harness.NotifySocket(self.tmp.join("notify.sock"))
        self.addCleanup(self.notify.close)
        env = dict(os.environ, NOTIFY_SOCKET=self.notify.path, **(env_extra or {}))
        ports = self.tmp.join("ports.json")
        agent = harness.Daemon(
            [AGENT_BIN, "--config", path, "--ports-file", ports, *flags],
            ports,
            self.tmp.join("agent.log"),
            env=env,
        )
        self.addCleanup(lambda: agent.process.poll() is not None or agent.terminate())
        return agent, f"127.0.0.1:{agent.ports['grpc']}"

    def test_sigterm_ends_streams_releases_gpio_and_exits_zero(self):
        agent, address = self.start()
        stub = agent_pb2_grpc.NodeAgentStub(self.pki.channel(address, "admin"))
        held = stub.ControlGPIO(
            agent_pb2.GPIORequest(offset=17, action=agent_pb2.GPIO_ACTION_WRITE, value=1), timeout=5
        )
        self.assertTrue(held.held)

        outcome = {}
        stream = stub.StreamLogs(agent_pb2.LogFilter(source="app", follow=True), timeout=60)

        def follow():
            try:
                for _ in stream:
                    pass
                outcome["code"] = grpc.StatusCode.OK
            except grpc.RpcError as error:
                outcome["code"] = error.code()

        reader = threading.Thread(target=follow)
        reader.start()
        time.sleep(0.3)  # let the stream open on the agent

        started = time.monotonic()
        self.assertEqual(agent.terminate(timeout=10), 0, agent.log())
        elapsed = time.monotonic() - started
        reader.join(5)
        self.assertFalse(reader.is_alive())
        self.assertEqual(outcome.get("code"), grpc.StatusCode.UNAVAILABLE)
        self.assertLess(elapsed, 8, "shutdown waited for the followed stream")
        self.assertIn("released 1 GPIO line(s)", agent.log())
        messages = "".join(self.notify.drain())
        self.assertIn("READY=1", messages)
        self.assertIn("STOPPING=1", messages)

    def test_sigterm_during_a_long_command_kills_it_and_exits_promptly(self):
        agent, address = self.start()
        stub = agent_pb2_grpc.NodeAgentStub(self.pki.channel(address, "admin"))
        outcome = {}

        def run():
            try:
                stub.ExecuteCommand(
                    agent_pb2.CommandRequest(argv=["/bin/sleep", "600"]), timeout=120
                )
                outcome["code"] = grpc.StatusCode.OK
            except grpc.RpcError as error:
                outcome["code"] = error.code()

        caller = threading.Thread(target=run)
        caller.start()
        time.sleep(0.5)
        started = time.monotonic()
        self.assertEqual(agent.terminate(timeout=10), 0, agent.log())
        self.assertLess(time.monotonic() - started, 8)
        caller.join(5)
        self.assertIn(outcome.get("code"), (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE))

    def test_limits_on_streams_and_commands_are_resource_exhausted(self):
        agent, address = self.start(
            config_extra={
                "grpc": {"max_log_streams": 1},
                "exec": {"allowed_commands": ["/bin/sleep"], "max_concurrent": 1},
            }
        )
        stub = agent_pb2_grpc.NodeAgentStub(self.pki.channel(address, "admin"))
        followed = stub.StreamLogs(agent_pb2.LogFilter(source="app", follow=True), timeout=30)
        command = stub.ExecuteCommand.future(
            agent_pb2.CommandRequest(argv=["/bin/sleep", "30"]), timeout=30
        )
        time.sleep(0.5)  # both are running on the agent now

        for call, limit in (
            (lambda: list(stub.StreamLogs(agent_pb2.LogFilter(source="app"), timeout=5)),
             "grpc.max_log_streams"),
            (lambda: stub.ExecuteCommand(
                agent_pb2.CommandRequest(argv=["/bin/sleep", "0"]), timeout=5),
             "exec.max_concurrent"),
        ):
            with self.assertRaises(grpc.RpcError) as raised:
                call()
            self.assertEqual(raised.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn(limit, raised.exception.details())

        # Ending the running calls frees their slots.
        followed.cancel()
        command.cancel()

        def succeeds(call):
            try:
                call()
                return True
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                return None

        harness.wait_for(
            lambda: succeeds(
                lambda: list(stub.StreamLogs(agent_pb2.LogFilter(source="app"), timeout=5))
            ),
            10,
            "the log stream slot to be free again",
        )
        harness.wait_for(
            lambda: succeeds(
                lambda: stub.ExecuteCommand(
                    agent_pb2.CommandRequest(argv=["/bin/sleep", "0"]), timeout=5
                )
            ),
            10,
            "the command slot to be free again",
        )

    def test_watchdog_is_pinged_at_half_the_interval(self):
        self.start(env_extra={"WATCHDOG_USEC": "400000"})
        pings = harness.wait_for(
            lambda: [m for m in self.notify.drain() if m == "WATCHDOG=1"][2:] or None,
            5,
            "three WATCHDOG=1 pings",
        )
        self.assertTrue(pings)

    def test_watchdog_for_another_pid_is_ignored(self):
        self.start(env_extra={"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"})
        harness.wait_for(lambda: any("READY=1" in m for m in self.notify.drain()), 5, "READY")
        time.sleep(0.5)
        self.assertNotIn("WATCHDOG=1", self.notify.drain())

    def test_a_first_join_reports_ready_and_keeps_the_watchdog_quiet(self):
        # Under systemd, boot waits for READY=1: a Pi whose controller is down must not hold it up,
        # nor be killed by the watchdog while it retries the join.
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        closed.close()
        token = self.tmp.join("token")
        with open(token, "w") as f:
            f.write("K10" + "0" * 64 + "::abcdefgh." + "a" * 32 + "\n")
        state = self.tmp.join("state")
        os.makedirs(state)
        config = self.tmp.join("join.json")
        with open(config, "w") as f:
            json.dump({"listen": "127.0.0.1:0", "http_listen": "",
                       "gpio": {"backend": "simulated"}, "control_plane": {"state_dir": state}}, f)
        notify = harness.NotifySocket(self.tmp.join("join-notify.sock"))
        self.addCleanup(notify.close)
        with open(self.tmp.join("join.log"), "w") as log:
            agent = subprocess.Popen(
                [AGENT_BIN, "--config", config, "--join", f"127.0.0.1:{port}", "--token-file",
                 token],
                env=dict(os.environ, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="400000"),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.addCleanup(lambda: agent.poll() is not None or agent.kill())
        messages = []

        def three_pings():
            messages.extend(notify.drain())
            return [m for m in messages if m == "WATCHDOG=1"][2:] or None

        harness.wait_for(three_pings, 10, "three WATCHDOG=1 pings while joining")
        self.assertIn(f"READY=1\nSTATUS=joining the controller at 127.0.0.1:{port}", messages)
        self.assertIsNone(agent.poll())
        agent.send_signal(signal.SIGTERM)
        self.assertEqual(agent.wait(10), 0)

    def test_insecure_mode_serves_plaintext_and_warns(self):
        agent, address = self.start("--insecure", tls=False)
        stub = agent_pb2_grpc.NodeAgentStub(grpc.insecure_channel(address))
        health = stub.HealthCheck(empty_pb2.Empty(), timeout=5)
        self.assertTrue(health.version)
        self.assertIn("--insecure", agent.log())
        self.assertIn("NO authentication", agent.log())


if __name__ == "__main__":
    unittest.main()
