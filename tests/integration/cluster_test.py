"""Integration test: the real pi-controller and three real pi-agent processes on 127.0.0.1. Every
agent joins with `pi-agent --join` and a token made by `pictl`; an operator's view is checked
through `pictl` (its --json output), which talks only to the controller."""

import json
import os
import signal
import subprocess
import time
import unittest

import harness

AGENT_BIN = os.environ["PI_AGENT_BIN"]
PICTL_BIN = os.environ["PI_PICTL_BIN"]
AGENTS = ["pi-node-1", "pi-node-2", "pi-node-3"]


class Agent:
    """A pi-agent that joins the controller on first start and keeps its state dir."""

    def __init__(self, tmp, name):
        self.name = name
        self.dir = tmp.join(name)
        self.state_dir = os.path.join(self.dir, "state")
        os.makedirs(self.state_dir)
        self.log_file = os.path.join(self.dir, "app.log")
        with open(self.log_file, "w") as f:
            f.write(f"{name} booted\n")
        self.config = os.path.join(self.dir, "agent.json")
        with open(self.config, "w") as f:
            json.dump(
                {
                    "node_name": name,
                    "listen": "127.0.0.1:0",
                    "http_listen": "127.0.0.1:0",
                    "metrics": {"cpu_sample_interval": "100ms"},
                    "gpio": {"backend": "simulated", "allowed_lines": [{"line": 17, "mode": "any"}]},
                    "exec": {"allowed_commands": ["/bin/echo"], "max_timeout": "10s"},
                    "logs": {"files": {"app": self.log_file}, "follow_poll_interval": "50ms"},
                    "control_plane": {"state_dir": self.state_dir, "labels": {"rack": "r1"}},
                },
                f,
            )
        self.daemon = None
        self.starts = 0

    def start(self, *extra):
        self.starts += 1
        ports = os.path.join(self.dir, f"ports-{self.starts}.json")
        self.daemon = harness.Daemon(
            [AGENT_BIN, "--config", self.config, "--ports-file", ports, *extra],
            ports,
            os.path.join(self.dir, f"agent-{self.starts}.log"),
        )
        return self

    def kill(self):
        os.killpg(self.daemon.process.pid, signal.SIGKILL)
        self.daemon.process.wait()
        self.daemon.terminate()

    def stop(self):
        if self.daemon is not None:
            self.daemon.terminate()


class ClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.TempDir("pi-cluster-itest-")
        cls.controller = harness.Controller(cls.tmp.join("controller")).start()
        cls.pictl_config = os.path.join(cls.controller.admin_dir, "config.json")
        with open(cls.pictl_config) as f:
            config = json.load(f)
        config["controller"] = cls.controller.address
        with open(cls.pictl_config, "w") as f:
            json.dump(config, f)
        token = cls.pictl_json("tokens", "create", "--max-uses", "3", "--description", "itest")
        token_file = cls.tmp.join("token")
        with open(token_file, "w") as f:
            f.write(token["token"] + "\n")
        cls.agents = {}
        for name in AGENTS:
            cls.agents[name] = Agent(cls.tmp, name).start(
                "--join", cls.controller.address, "--token-file", token_file
            )

    @classmethod
    def tearDownClass(cls):
        for agent in cls.agents.values():
            agent.stop()
        cls.controller.stop()
        cls.tmp.cleanup()

    @classmethod
    def pictl(cls, *args, check=True, timeout=30):
        result = subprocess.run(
            [PICTL_BIN, "--config", cls.pictl_config, *args],
            capture_output=True, text=True, timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"pictl {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    @classmethod
    def pictl_json(cls, *args):
        return json.loads(cls.pictl("--json", *args).stdout)

    def nodes(self):
        listed = self.pictl_json("nodes", "list")
        return {n["hostname"]: n for n in listed.get("nodes", [])}

    def wait_states(self, wanted, timeout=20):
        def matches():
            nodes = self.nodes()
            return nodes if all(
                nodes.get(host, {}).get("state") == state for host, state in wanted.items()
            ) else None
        return harness.wait_for(matches, timeout, f"node states {wanted}")

    def test_1_all_agents_join_and_pictl_lists_them_ready(self):
        nodes = self.wait_states({name: "NODE_STATE_READY" for name in AGENTS})
        for name in AGENTS:
            self.assertEqual(nodes[name]["id"], name)
            self.assertEqual(nodes[name]["labels"], {"rack": "r1"})
            self.assertTrue(nodes[name]["agent_address"].startswith("127.0.0.1:"))
            self.assertNotEqual(nodes[name]["agent_address"], "127.0.0.1:0")
            for leaf in ["node.crt", "node.key", "ca.crt"]:
                self.assertTrue(os.path.exists(os.path.join(self.agents[name].state_dir, leaf)))
            mode = os.stat(os.path.join(self.agents[name].state_dir, "node.key")).st_mode & 0o777
            self.assertEqual(mode, 0o600)
        table = self.pictl("nodes", "list").stdout
        for name in AGENTS:
            self.assertIn(name, table)
        self.assertIn("READY", table)
        tokens = self.pictl_json("tokens", "list")["tokens"]
        self.assertEqual([t["uses"] for t in tokens if t["description"] == "itest"], [3])

    def test_2_pictl_reads_metrics_through_the_controller(self):
        self.wait_states({"pi-node-2": "NODE_STATE_READY"})
        metrics = self.pictl_json("metrics", "pi-node-2")
        self.assertEqual(metrics["hostname"], "pi-node-2")
        with open("/proc/meminfo") as f:
            total_kib = int(f.readline().split()[1])
        self.assertEqual(int(metrics["memory"]["total_bytes"]), total_kib * 1024)
        self.assertIn("Memory", self.pictl("metrics", "pi-node-2").stdout)

    def test_3_pictl_flips_a_gpio_line_on_the_simulated_chip(self):
        self.wait_states({"pi-node-1": "NODE_STATE_READY"})
        self.pictl("gpio", "pi-node-1", "write", "17", "1")
        self.assertEqual(self.pictl_json("gpio", "pi-node-1", "read", "17").get("value"), 1)
        self.pictl("gpio", "pi-node-1", "write", "17", "0")
        self.assertEqual(self.pictl_json("gpio", "pi-node-1", "read", "17").get("value", 0), 0)
        refused = self.pictl("gpio", "pi-node-1", "write", "14", "1", check=False)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("14", refused.stderr)

    def test_4_pictl_runs_an_allowed_command_and_is_refused_others(self):
        self.wait_states({"pi-node-3": "NODE_STATE_READY"})
        ran = self.pictl("exec", "pi-node-3", "--", "/bin/echo", "hello", "from", "pi-node-3")
        self.assertEqual(ran.stdout, "hello from pi-node-3\n")
        # The agent's audit line names the admin the controller acted for.
        audit = [l for l in self.agents["pi-node-3"].daemon.log().splitlines()
                 if "exec:" in l and "hello" in l]
        self.assertIn("caller=controller for admin:alice", audit[0])
        refused = self.pictl("exec", "pi-node-3", "--", "/bin/cat", "/etc/shadow", check=False)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("/bin/cat", refused.stderr)

    def test_5_pictl_follows_logs_through_the_controller(self):
        agent = self.agents["pi-node-1"]
        follower = subprocess.Popen(
            [PICTL_BIN, "--config", self.pictl_config, "logs", "pi-node-1", "--source", "app",
             "-f"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            self.assertIn("pi-node-1 booted", follower.stdout.readline())
            with open(agent.log_file, "a") as f:
                f.write("line written while following\n")
            self.assertIn("line written while following", follower.stdout.readline())
        finally:
            follower.send_signal(signal.SIGINT)
            follower.wait(10)
            follower.stdout.close()
            follower.stderr.close()

    def test_6_a_killed_agent_goes_down_and_returns_ready_with_its_id(self):
        agent = self.agents["pi-node-3"]
        self.wait_states({"pi-node-3": "NODE_STATE_READY"})
        agent.kill()
        killed_at = time.monotonic()
        self.wait_states({"pi-node-3": "NODE_STATE_DOWN"}, timeout=15)
        # TTL 2 s + grace 1 s, checked every 0.5 s.
        self.assertLess(time.monotonic() - killed_at, 2 + 1 + 3)
        failed = self.pictl("metrics", "pi-node-3", check=False)
        self.assertNotEqual(failed.returncode, 0)
        self.assertIn("unreachable", failed.stderr)
        # As under systemd, the restart still names the join token file, which the operator has
        # deleted after the join: a joined agent does not read it.
        gone = self.tmp.join("deleted-token")
        self.assertFalse(os.path.exists(gone))
        agent.start("--join", self.controller.address, "--token-file", gone)
        nodes = self.wait_states({"pi-node-3": "NODE_STATE_READY"})
        self.assertEqual(nodes["pi-node-3"]["id"], "pi-node-3")
        self.assertEqual(len([n for n in self.nodes() if n.startswith("pi-node-3")]), 1)
        self.assertEqual(self.pictl_json("metrics", "pi-node-3")["hostname"], "pi-node-3")

    def test_7_a_token_pinning_another_ca_is_refused_by_the_agent_before_it_sends_the_secret(self):
        other = harness.Controller(self.tmp.join("other-controller")).start()
        self.addCleanup(other.stop)
        token = self.pictl_json("tokens", "create", "--description", "pin")
        other_pin_token = token["token"]
        # The token names this cluster's CA; the agent is pointed at another controller.
        impostor = Agent(self.tmp, "pi-impostor")
        token_file = self.tmp.join("pin-token")
        with open(token_file, "w") as f:
            f.write(other_pin_token)
        result = subprocess.run(
            [AGENT_BIN, "--config", impostor.config, "--join", other.address, "--token-file",
             token_file],
            capture_output=True, text=True, timeout=60,
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("pin", (result.stdout + result.stderr).lower())
        # The other controller never saw a registration: the secret was not sent.
        self.assertNotIn("registration", other.daemon.log())
        self.assertNotIn("joined", other.daemon.log())
        self.assertFalse(os.path.exists(os.path.join(impostor.state_dir, "node.crt")))

    def test_9_the_controller_stops_cleanly_with_streams_open(self):
        follower = subprocess.Popen(
            [PICTL_BIN, "--config", self.pictl_config, "logs", "pi-node-2", "--source", "app",
             "-f"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        watcher = subprocess.Popen(
            [PICTL_BIN, "--config", self.pictl_config, "--json", "watch"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            self.assertIn("pi-node-2 booted", follower.stdout.readline())
            self.assertTrue(watcher.stdout.readline().startswith("{"))
            started = time.monotonic()
            self.assertEqual(self.controller.stop(), 0)
            self.assertLess(time.monotonic() - started, 8)
            # Both streams end with an error the admin can read, not a hang.
            self.assertNotEqual(follower.wait(10), 0)
            self.assertNotEqual(watcher.wait(10), 0)
            self.assertIn("shutting down", watcher.stderr.read() + follower.stderr.read())
        finally:
            for process in (follower, watcher):
                if process.poll() is None:
                    process.kill()
                    process.wait()
                process.stdout.close()
                process.stderr.close()


if __name__ == "__main__":
    unittest.main()
