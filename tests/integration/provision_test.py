"""Integration test, end to end (DESIGN 5.3): the real pi-controller and three real pi-agents that
join with a token and serve as runners for their own node. `pictl provision` applies the example
profile deploy/profiles/motd.json to the whole cluster; each agent writes under a filesystem root
of its own (a temporary directory), so the test reads what each node wrote."""

import json
import os
import re
import signal
import time
import unittest

import grpc
from google.protobuf import empty_pb2

import harness
from forest_runner_client import ForestRunner
from picontroller.v1 import admin_pb2, admin_pb2_grpc, control_plane_pb2

apb = admin_pb2

AGENT_BIN = os.environ["PI_AGENT_BIN"]
PROFILES_DIR = os.path.join(harness.SOURCE_DIR, "deploy", "profiles")
PROFILE_PATH = os.path.join(PROFILES_DIR, "motd.json")
AGENTS = ["pi-node-1", "pi-node-2", "pi-node-3"]
DEAD = (apb.RELEASE_STATE_SUCCEEDED, apb.RELEASE_STATE_FAILED, apb.RELEASE_STATE_CANCELLED,
        apb.RELEASE_STATE_TIMED_OUT)


def load_profile():
    with open(PROFILE_PATH) as f:
        return json.load(f)


def written_paths(profile):
    """The absolute paths the profile's write_file steps write (templates left as they are)."""
    return [step["write_file"]["path"] for step in profile["steps"] if "write_file" in step]


def render(text, parameters):
    for name, value in parameters.items():
        text = text.replace("{{" + name + "}}", value)
    return text


class Agent:
    """A pi-agent that joins on first start and runs provisioning releases under its own root."""

    def __init__(self, tmp, name, write_roots):
        self.name = name
        self.dir = tmp.join(name)
        self.state_dir = os.path.join(self.dir, "state")
        self.root = os.path.join(self.dir, "root")
        os.makedirs(self.state_dir)
        for directory in write_roots:
            os.makedirs(self.root + directory, exist_ok=True)
        self.config = os.path.join(self.dir, "agent.json")
        with open(self.config, "w") as f:
            json.dump(
                {
                    "node_name": name,
                    "listen": "127.0.0.1:0",
                    "http_listen": "127.0.0.1:0",
                    "gpio": {"backend": "simulated",
                             "allowed_lines": [{"line": 17, "mode": "any"}]},
                    "exec": {"allowed_commands": ["/bin/echo", "/bin/true", "/bin/sleep"],
                             "max_timeout": "10s"},
                    "control_plane": {"state_dir": self.state_dir, "labels": {"rack": "r1"}},
                    "runner": {
                        "enabled": True,
                        "max_concurrent": 1,
                        "filesystem_root": self.root,
                        "allowed_write_roots": list(write_roots),
                        "heartbeat_interval": "1s",
                        "reconnect_max_backoff": "1s",
                    },
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

    def path(self, absolute):
        return self.root + absolute

    def read(self, absolute):
        with open(self.path(absolute)) as f:
            return f.read()

    def kill(self):
        os.killpg(self.daemon.process.pid, signal.SIGKILL)
        self.daemon.process.wait()
        self.daemon.terminate()

    def stop(self):
        if self.daemon is not None:
            self.daemon.terminate()


class ProvisionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.profile = load_profile()
        cls.paths = [p for p in written_paths(cls.profile) if "{{" not in p]
        if not cls.paths:
            raise AssertionError(f"{PROFILE_PATH} writes no file at a fixed path")
        cls.tmp = harness.TempDir("pi-provision-itest-")
        cls.controller = None
        cls.agents = {}
        try:
            cls.start_cluster()
        except BaseException:
            # tearDownClass does not run when setUpClass fails: no daemon may outlive the test.
            cls.tearDownClass()
            raise

    @classmethod
    def start_cluster(cls):
        write_roots = sorted({os.path.dirname(p) for p in cls.paths})
        cls.controller = harness.Controller(
            cls.tmp.join("controller"),
            extra={
                "releases": {"token_ttl": "1h", "default_timeout": "5m",
                             "runner_silence_limit": "90s", "default_max_attempts": 3},
                "provisioning": {"profiles_dir": PROFILES_DIR},
            },
        ).start()
        cls.pictl = harness.Pictl(cls.controller)
        cls.admin = admin_pb2_grpc.AdminStub(cls.controller.admin_channel())
        token = cls.pictl.json("tokens", "create", "--max-uses", "3", "--description", "itest")
        token_file = cls.tmp.join("token")
        with open(token_file, "w") as f:
            f.write(token["token"] + "\n")
        for name in AGENTS:
            cls.agents[name] = Agent(cls.tmp, name, write_roots).start(
                "--join", cls.controller.address, "--token-file", token_file
            )
        cls.wait_runners(AGENTS)

    @classmethod
    def tearDownClass(cls):
        for agent in cls.agents.values():
            agent.stop()
        if cls.controller is not None:
            cls.controller.stop()
        cls.tmp.cleanup()

    @classmethod
    def runners(cls):
        return {r.node_id: r for r in cls.admin.ListRunners(empty_pb2.Empty(), timeout=10).runners}

    @classmethod
    def wait_runners(cls, nodes, timeout=30):
        def ready():
            listed = {n.id: n for n in cls.admin.ListNodes(apb.ListNodesRequest(),
                                                           timeout=10).nodes}
            runners = cls.runners()
            ready_nodes = {n for n, node in listed.items()
                           if node.state == control_plane_pb2.NODE_STATE_READY}
            return all(n in ready_nodes and n in runners for n in nodes) and runners
        return harness.wait_for(ready, timeout, f"nodes {nodes} READY with their runners")

    def provision(self, *args, json_output=True):
        """`pictl provision …`, which waits until every release it made has ended: (its output,
        the provisioning as Admin.GetProvisioning returns it)."""
        result = self.pictl.run(*(["--json"] if json_output else []), "provision", *args,
                                check=False, timeout=120)
        lines = result.stdout.splitlines()
        self.assertTrue(lines, f"pictl provision printed nothing:\n{result.stderr}")
        if json_output:
            # A line when the request is taken, another when every release has ended.
            created, ended = json.loads(lines[0]), json.loads(lines[-1])
            provisioning_id = created["provisioning_id"]
            self.assertEqual(ended["id"], provisioning_id)
        else:
            match = re.match(r"provisioning (\S+): ", lines[0])
            self.assertIsNotNone(match, result.stdout)
            provisioning_id = match.group(1)
        provisioning = self.admin.GetProvisioning(apb.ProvisioningRef(id=provisioning_id),
                                                  timeout=10)
        self.assertTrue(all(r.state in DEAD for r in provisioning.releases), provisioning)
        all_succeeded = all(r.state == apb.RELEASE_STATE_SUCCEEDED
                            for r in provisioning.releases)
        # pictl's exit status says whether every release succeeded.
        self.assertEqual(result.returncode == 0, all_succeeded,
                         f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result.stdout, provisioning

    def expected_content(self, parameters):
        """What the first fixed-path write step writes with `parameters` (defaults filled in)."""
        resolved = {name: spec["default"] for name, spec in self.profile.get("parameters",
                                                                              {}).items()
                    if "default" in spec}
        resolved.update(parameters)
        for step in self.profile["steps"]:
            write = step.get("write_file")
            if write and write["path"] == self.paths[0]:
                return render(write["content"], resolved)
        raise AssertionError("no write step")

    def parameter_args(self, parameters):
        args = []
        for name, value in parameters.items():
            args += ["--param", f"{name}={value}"]
        return args

    def first_string_parameter(self):
        for name, spec in self.profile.get("parameters", {}).items():
            if spec.get("type", "string") == "string":
                return name
        return None

    def create_pinned(self, node_id, profile_text, parameters):
        """A provisioning release made by hand (as RequestProvisioning would) for `node_id`."""
        request = apb.CreateReleaseRequest(
            destination_type=apb.DestinationType(organisation="picontroller", name="provision",
                                                 version=1),
            node_id=node_id)
        request.artifact_files.add(name="profile.json", content=profile_text)
        request.artifact_files.add(name="parameters.json", content=json.dumps(parameters))
        return self.admin.CreateRelease(request, timeout=10)

    def wait_ended(self, release_id, timeout=30):
        return harness.wait_for(
            lambda: (lambda r: r if r.state in DEAD else None)(
                self.admin.GetRelease(apb.ReleaseRef(id=release_id), timeout=10)),
            timeout, f"release {release_id} to end")

    def test_1_provisioning_every_node_writes_the_file_and_keeps_the_logs(self):
        _, provisioning = self.provision("motd", "--all")
        self.assertEqual(provisioning.profile, "motd")
        self.assertFalse(provisioning.plan)
        self.assertEqual(sorted(r.node_id for r in provisioning.releases), AGENTS)
        runners = self.runners()
        expected = self.expected_content({})
        for release in provisioning.releases:
            with self.subTest(node=release.node_id):
                self.assertEqual(release.state, apb.RELEASE_STATE_SUCCEEDED, release.error_message)
                self.assertEqual(release.runner_id, runners[release.node_id].runner_id)
                self.assertEqual(runners[release.node_id].identity, f"node:{release.node_id}")
                self.assertEqual(release.destination_metadata["node_id"], release.node_id)
                agent = self.agents[release.node_id]
                self.assertEqual(agent.read(self.paths[0]), expected)
                self.assertGreater(release.log_lines, 0)
                logs = self.pictl.run("releases", "logs", release.id).stdout
                self.assertTrue(logs.strip(), f"no logs for {release.id}")
        listed = self.pictl.json("releases", "list", "--provisioning", provisioning.id)
        self.assertEqual(sorted(r["id"] for r in listed["releases"]),
                         sorted(r.id for r in provisioning.releases))
        status = self.pictl.run("provision", "status", provisioning.id).stdout
        for name in AGENTS:
            self.assertIn(name, status)
        self.assertIn(f"{len(AGENTS)} SUCCEEDED", status)
        # Nothing was written outside the agents' roots: not the machine's own file.
        if os.path.exists(self.paths[0]):
            with open(self.paths[0]) as f:
                self.assertNotEqual(f.read(), expected)

    def test_2_a_second_run_in_plan_mode_reports_no_changes(self):
        before = {name: os.stat(agent.path(self.paths[0])).st_mtime_ns
                  for name, agent in self.agents.items()}
        output, provisioning = self.provision("motd", "--all", "--plan", json_output=False)
        self.assertTrue(provisioning.plan)
        self.assertEqual(len(provisioning.releases), len(AGENTS))
        self.assertIn(f"{len(AGENTS)} of {len(AGENTS)} succeeded", output)
        self.assertEqual(output.count("Plan: 0 to change"), len(AGENTS), output)
        for release in provisioning.releases:
            with self.subTest(node=release.node_id):
                self.assertEqual(release.state, apb.RELEASE_STATE_SUCCEEDED, release.error_message)
                self.assertTrue(release.plan)
                self.assertTrue(release.HasField("plan_output"))
                last = release.plan_output.strip().splitlines()[-1]
                self.assertTrue(last.startswith("Plan: 0 to change"), release.plan_output)
                shown = self.pictl.json("releases", "show", release.id)
                self.assertIn("Plan: 0 to change", shown["plan_output"])
        for name, agent in self.agents.items():
            self.assertEqual(os.stat(agent.path(self.paths[0])).st_mtime_ns, before[name])

    def test_3_a_plan_with_other_parameters_reports_the_change_and_changes_nothing(self):
        name = self.first_string_parameter()
        if name is None:
            self.skipTest("the profile has no string parameter")
        _, provisioning = self.provision("motd", "--node", "pi-node-1", "--plan",
                                      *self.parameter_args({name: "planned only"}))
        (release,) = provisioning.releases
        self.assertEqual(release.state, apb.RELEASE_STATE_SUCCEEDED, release.error_message)
        self.assertNotIn("Plan: 0 to change", release.plan_output)
        self.assertEqual(self.agents["pi-node-1"].read(self.paths[0]), self.expected_content({}))

    def test_4_a_node_release_runs_only_on_its_own_node(self):
        name = self.first_string_parameter()
        if name is None:
            self.skipTest("the profile has no string parameter")
        parameters = {name: "only on pi-node-2"}
        _, provisioning = self.provision("motd", "--node", "pi-node-2",
                                      *self.parameter_args(parameters))
        (release,) = provisioning.releases
        self.assertEqual(release.state, apb.RELEASE_STATE_SUCCEEDED, release.error_message)
        self.assertEqual(release.runner_id, self.runners()["pi-node-2"].runner_id)
        self.assertEqual(self.agents["pi-node-2"].read(self.paths[0]),
                         self.expected_content(parameters))
        for other in ("pi-node-1", "pi-node-3"):
            self.assertEqual(self.agents[other].read(self.paths[0]), self.expected_content({}))

        # A release pinned to a node whose agent is away waits for it: neither the other agents
        # nor a runner identity with the same capability get it. It runs there once the agent is
        # back.
        self.agents["pi-node-3"].stop()
        harness.wait_for(lambda: "pi-node-3" not in self.runners(), 15,
                         "pi-node-3's runner to disconnect")
        self.controller.pki.issue("runner-intruder", "runner:intruder")
        intruder = ForestRunner(self.controller.address, self.controller.ca_pem(),
                                self.controller.pki.read("runner-intruder.crt"),
                                self.controller.pki.read("runner-intruder.key"),
                                [("picontroller", "provision", 1)], hold=True).start()
        self.addCleanup(intruder.stop)
        self.assertTrue(intruder.wait_registered().accepted)
        with open(PROFILE_PATH) as f:
            profile_text = f.read()
        away = {name: "written after the agent came back"}
        pinned = self.create_pinned("pi-node-3", profile_text, away)
        self.assertEqual(pinned.destination_metadata["node_id"], "pi-node-3")
        # An unpinned one goes to the runner identity, never to a node's agent.
        unpinned = self.create_pinned("", profile_text, {})
        intruder.wait_assigned(unpinned.id)
        time.sleep(1.5)
        waiting = self.admin.GetRelease(apb.ReleaseRef(id=pinned.id), timeout=10)
        self.assertEqual(waiting.state, apb.RELEASE_STATE_QUEUED)
        self.assertEqual(waiting.attempts, 0)
        self.assertNotIn(pinned.id, intruder.assigned)
        self.admin.CancelRelease(apb.ReleaseRef(id=unpinned.id), timeout=10)
        self.agents["pi-node-3"].start()
        self.wait_runners(["pi-node-3"])
        finished = self.wait_ended(pinned.id)
        self.assertEqual(finished.state, apb.RELEASE_STATE_SUCCEEDED, finished.error_message)
        self.assertEqual(finished.runner_id, self.runners()["pi-node-3"].runner_id)
        self.assertEqual(self.agents["pi-node-3"].read(self.paths[0]),
                         self.expected_content(away))
        self.assertEqual(self.agents["pi-node-1"].read(self.paths[0]), self.expected_content({}))
        self.assertNotIn(pinned.id, intruder.assigned)

    def test_5_bad_provisioning_requests_are_refused_and_create_nothing(self):
        before = len(self.admin.ListReleases(apb.ListReleasesRequest(limit=1000),
                                             timeout=10).releases)
        for args, wanted in [
            (["no-such-profile", "--all"], "motd"),  # the error names the profiles there are
            (["../motd", "--all"], ""),
            (["motd", "--node", "pi-node-404"], "pi-node-404"),
            (["motd", "--all", "--param", "no_such_parameter=1"], "no_such_parameter"),
        ]:
            with self.subTest(args=args):
                refused = self.pictl.run("provision", *args, check=False)
                self.assertNotEqual(refused.returncode, 0, refused.stdout)
                self.assertIn(wanted, refused.stderr)
        self.assertEqual(len(self.admin.ListReleases(apb.ListReleasesRequest(limit=1000),
                                                     timeout=10).releases), before)
        with self.assertRaises(grpc.RpcError):
            self.admin.GetProvisioning(apb.ProvisioningRef(id="no-such-provisioning"), timeout=10)

    def test_6_a_failing_step_fails_the_release_and_the_agent_still_completes_it(self):
        escape = {"name": "escape", "steps": [
            {"name": "outside", "write_file": {"path": "/opt/pi-itest-escape.txt",
                                               "content": "must not be written\n"}}]}
        forbidden = {"name": "forbidden", "steps": [
            {"name": "cat", "run": {"argv": ["/bin/cat", "/etc/hostname"]}}]}
        failing_check = {"name": "check", "steps": [
            {"name": "absent", "check": {"path": "/etc/pi-itest-absent"}}]}
        for name, profile, wanted in [
            ("write outside allowed roots", json.dumps(escape), "/opt/pi-itest-escape.txt"),
            ("command not allowed", json.dumps(forbidden), "/bin/cat"),
            ("failing check", json.dumps(failing_check), "/etc/pi-itest-absent"),
            ("malformed profile", "{not json", "profile.json"),
        ]:
            with self.subTest(name):
                release = self.create_pinned("pi-node-1", profile, {})
                failed = self.wait_ended(release.id)
                self.assertEqual(failed.state, apb.RELEASE_STATE_FAILED)
                self.assertIn(wanted, failed.error_message)
        agent = self.agents["pi-node-1"]
        self.assertFalse(os.path.exists(agent.path("/opt/pi-itest-escape.txt")))
        self.assertFalse(os.path.exists("/opt/pi-itest-escape.txt"))
        # The runner is free again: a good release still runs.
        _, provisioning = self.provision("motd", "--node", "pi-node-1")
        self.assertEqual(provisioning.releases[0].state, apb.RELEASE_STATE_SUCCEEDED)

    def test_7_agents_reconnect_as_runners_after_a_controller_kill(self):
        # Agents know the controller by the address they joined; it comes back on the same port.
        with open(self.controller.config_path) as f:
            config = json.load(f)
        config["listen"] = self.controller.address
        with open(self.controller.config_path, "w") as f:
            json.dump(config, f)
        self.controller.kill()
        self.controller.start()
        self.assertEqual(self.controller.address, config["listen"])
        type(self).admin = admin_pb2_grpc.AdminStub(self.controller.admin_channel())
        self.wait_runners(AGENTS, timeout=60)
        parameters = {self.first_string_parameter() or "message": "after the restart"}
        _, provisioning = self.provision("motd", "--all", *self.parameter_args(parameters))
        self.assertEqual([r.state for r in provisioning.releases],
                         [apb.RELEASE_STATE_SUCCEEDED] * len(AGENTS))
        for agent in self.agents.values():
            self.assertEqual(agent.read(self.paths[0]), self.expected_content(parameters))

    def test_8_a_release_whose_agent_is_killed_mid_run_runs_again_on_that_node(self):
        slow = {"name": "slow", "steps": [
            {"name": "sleep", "run": {"argv": ["/bin/sleep", "3"]}},
            {"name": "mark", "write_file": {"path": "/etc/pi-itest-slow", "content": "done\n"}}]}
        release = self.create_pinned("pi-node-2", json.dumps(slow), {})
        harness.wait_for(
            lambda: self.admin.GetRelease(apb.ReleaseRef(id=release.id), timeout=10).state
            == apb.RELEASE_STATE_RUNNING, 15, "the slow release to run")
        agent = self.agents["pi-node-2"]
        agent.kill()
        requeued = harness.wait_for(
            lambda: (lambda r: r if r.state == apb.RELEASE_STATE_QUEUED else None)(
                self.admin.GetRelease(apb.ReleaseRef(id=release.id), timeout=10)),
            15, "the release to go back to the queue")
        self.assertEqual(requeued.attempts, 1)
        self.assertFalse(os.path.exists(agent.path("/etc/pi-itest-slow")))
        agent.start()
        self.wait_runners(["pi-node-2"])
        finished = self.wait_ended(release.id, timeout=30)
        self.assertEqual(finished.state, apb.RELEASE_STATE_SUCCEEDED, finished.error_message)
        self.assertEqual(finished.attempts, 2)
        self.assertEqual(agent.read("/etc/pi-itest-slow"), "done\n")


if __name__ == "__main__":
    unittest.main()
