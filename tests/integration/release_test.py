"""Integration test: releases (DESIGN 4.2) on the real pi-controller. Runners are the stand-alone
Forest runner of forest_runner_client.py (seed proto only, Debian's python3-grpcio) with
runner:<name> certificates issued by deploy/pki.sh from the controller's CA; the admin side is pictl
and the Admin gRPC service.

Every test class starts its own controller, and every test uses a destination type of its own, so
runners of one test are never given another test's releases.
"""

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

import grpc
from google.protobuf import duration_pb2, empty_pb2

import harness
from forest.v1 import runner_pb2, runner_pb2_grpc
from forest_runner_client import ForestRunner
from picontroller.v1 import admin_pb2, admin_pb2_grpc

fpb = runner_pb2
apb = admin_pb2

CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "forest_runner_client.py")
RELEASE_CONFIG = {
    "releases": {
        "token_ttl": "1h",
        "default_timeout": "30m",
        # The shortest the controller allows, so the silent-runner test is quick; every runner
        # here heartbeats each second.
        "runner_silence_limit": "5s",
        "default_max_attempts": 3,
    }
}
ARTIFACTS = {"main.tf": 'resource "null_resource" "x" {}\n', "modules/net/vars.tf": "# vars\n",
             "notes/ünïcode.txt": "grüße\n"}
SPECS = {"spec.yaml": "name: web\nreplicas: 2\n"}
DEAD = (apb.RELEASE_STATE_SUCCEEDED, apb.RELEASE_STATE_FAILED, apb.RELEASE_STATE_CANCELLED,
        apb.RELEASE_STATE_TIMED_OUT)
_type_numbers = itertools.count(1)


def state_name(state):
    return apb.ReleaseState.Name(state)


def empty():
    return empty_pb2.Empty()


def history(release):
    return [state_name(t.state) for t in release.history]


class ReleaseCluster:
    """A controller with release settings, an Admin stub, pictl and runner certificates."""

    def __init__(self, tmp, name):
        self.controller = harness.Controller(tmp.join(name), extra=RELEASE_CONFIG).start()
        self.pictl = harness.Pictl(self.controller)
        self.admin = admin_pb2_grpc.AdminStub(self.controller.admin_channel())
        self._issued = set()

    def restart_after_kill(self):
        self.controller.kill()
        self.controller.start()
        self.pictl.point_at(self.controller)
        self.admin = admin_pb2_grpc.AdminStub(self.controller.admin_channel())

    def credentials(self, name):
        """(cert_pem, key_pem) of runner:<name>, issued once."""
        file_name = f"runner-{name}"
        if name not in self._issued:
            self.controller.pki.issue(file_name, f"runner:{name}")
            self._issued.add(name)
        return (self.controller.pki.read(file_name + ".crt"),
                self.controller.pki.read(file_name + ".key"))

    def cert_paths(self, name):
        self.credentials(name)
        return self.controller.pki.path(f"runner-{name}.crt"), \
            self.controller.pki.path(f"runner-{name}.key")

    def runner_stub(self, name="probe"):
        """A RunnerService stub over a channel with runner:<name>'s certificate."""
        cert, key = self.credentials(name)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.controller.ca_pem(), private_key=key, certificate_chain=cert)
        return runner_pb2_grpc.RunnerServiceStub(
            grpc.secure_channel(self.controller.address, credentials))

    def stop(self):
        self.controller.stop()


class ReleaseTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.TempDir("pi-release-itest-")
        try:
            cls.cluster = ReleaseCluster(cls.tmp, "controller")
        except BaseException:
            cls.tmp.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()
        cls.tmp.cleanup()

    def setUp(self):
        # A destination type only this test's runners advertise.
        self.type = ("itest", f"deploy-{next(_type_numbers)}", 1)

    @property
    def admin(self):
        return self.cluster.admin

    # ---- runners

    def runner(self, name, register=True, capabilities=None, **kwargs):
        cert, key = self.cluster.credentials(name)
        runner = ForestRunner(self.cluster.controller.address, self.cluster.controller.ca_pem(),
                              cert, key, capabilities or [self.type], **kwargs).start()
        self.addCleanup(runner.stop)
        if register:
            ack = runner.wait_registered()
            self.assertTrue(ack.accepted, f"runner {name} refused: {ack.reason}")
        return runner

    def runner_process(self, name, *extra):
        """The client as a process of its own (so a test can kill -9 it); its stdout is one JSON
        event per line."""
        cert, key = self.cluster.cert_paths(name)
        organisation, type_name, version = self.type
        process = subprocess.Popen(
            [sys.executable, CLIENT, "--address", self.cluster.controller.address,
             "--ca", self.cluster.controller.pki.path("ca.crt"), "--cert", cert, "--key", key,
             "--capability", f"{organisation}/{type_name}@{version}", "--heartbeat-interval", "1",
             *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

        def cleanup():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            process.stdout.close()
            process.stderr.close()

        self.addCleanup(cleanup)
        return process

    def next_event(self, process, wanted, timeout=15):
        """Reads the process's events until one of kind `wanted`."""
        found = {}

        def read():
            for line in process.stdout:
                event = json.loads(line)
                if event["event"] == wanted:
                    found["event"] = event
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        if "event" not in found:
            exited = process.poll() is not None
            raise AssertionError(f"no {wanted} event from the runner process in {timeout}s; "
                                 f"stderr:\n{process.stderr.read() if exited else ''}")
        return found["event"]

    # ---- releases

    def create(self, artifacts=None, specs=None, **fields):
        request = apb.CreateReleaseRequest(
            destination_type=apb.DestinationType(organisation=self.type[0], name=self.type[1],
                                                 version=self.type[2]),
            destination_name="web-prod", environment="production",
            destination_metadata={"region": "eu-1"}, project_organisation="acme",
            project="webshop",
            annotation=apb.ReleaseAnnotation(slug="web-42", source_username="alice",
                                             source_email="alice@example.org",
                                             context_title="Deploy web",
                                             reference_version="1.4.2",
                                             reference_commit_sha="0a1b2c",
                                             reference_commit_branch="main",
                                             reference_commit_message="ship it"))
        for name, content in (ARTIFACTS if artifacts is None else artifacts).items():
            request.artifact_files.add(name=name, content=content)
        for name, content in (SPECS if specs is None else specs).items():
            request.spec_files.add(name=name, content=content)
        for key, value in fields.items():
            if isinstance(value, dict):
                getattr(request, key).update(value)
            elif isinstance(value, duration_pb2.Duration):
                getattr(request, key).CopyFrom(value)
            else:
                setattr(request, key, value)
        return self.admin.CreateRelease(request, timeout=10)

    def get(self, release_id):
        return self.admin.GetRelease(apb.ReleaseRef(id=release_id), timeout=10)

    def wait_state(self, release_id, *states, timeout=15):
        wanted = states or DEAD
        return harness.wait_for(
            lambda: (lambda r: r if r.state in wanted else None)(self.get(release_id)),
            timeout, f"release {release_id} to reach {[state_name(s) for s in wanted]}")

    def all_release_ids(self):
        return {r.id for r in self.admin.ListReleases(apb.ListReleasesRequest(limit=1000),
                                                      timeout=10).releases}

    def assert_code(self, code, call, *args, **kwargs):
        with self.assertRaises(grpc.RpcError) as caught:
            result = call(*args, **kwargs)
            if hasattr(result, "__iter__") and not isinstance(result, (str, bytes)):
                list(result)  # a server stream fails on reading
        self.assertEqual(caught.exception.code(), code, caught.exception.details())
        return caught.exception

    def assert_token_dead(self, token, owner):
        """Every token-scoped RPC refuses the token, also to runner:<owner>, the runner it was
        given to (tokens are bound to that identity)."""
        stub = self.cluster.runner_stub(owner)
        U = grpc.StatusCode.UNAUTHENTICATED
        self.assert_code(U, stub.GetReleaseFiles, fpb.GetReleaseFilesRequest(release_token=token),
                         timeout=10)
        self.assert_code(U, stub.GetSpecFiles, fpb.GetSpecFilesRequest(release_token=token),
                         timeout=10)
        self.assert_code(U, stub.GetReleaseAnnotation,
                         fpb.GetReleaseAnnotationRequest(release_token=token), timeout=10)
        self.assert_code(U, stub.GetProjectInfo, fpb.GetProjectInfoRequest(release_token=token),
                         timeout=10)
        self.assert_code(U, stub.PushLogs, iter([fpb.PushLogRequest(
            release_token=token, channel="stdout", line="late", timestamp=1)]), timeout=10)
        self.assert_code(U, stub.CompleteRelease, fpb.CompleteReleaseRequest(
            release_token=token, outcome=fpb.RELEASE_OUTCOME_SUCCESS), timeout=10)


class StockRunnerTest(ReleaseTestCase):
    def test_a_stock_runner_that_never_acks_completes_a_release_with_everything_fetched(self):
        runner = self.runner("stock")
        self.assertTrue(runner.runner_id, "the server assigns an id when the runner sends none")
        release = self.create()
        self.assertEqual(sorted(release.artifact_file_names), sorted(ARTIFACTS))
        done = runner.wait_completed(release.id)
        self.assertEqual(done["files"], ARTIFACTS)
        self.assertEqual(done["spec_files"], SPECS)
        self.assertEqual(done["mode"], "deploy")
        self.assertEqual(done["annotation"].slug, "web-42")
        self.assertEqual(done["annotation"].source_email, "alice@example.org")
        self.assertEqual(done["annotation"].reference_commit_message, "ship it")
        self.assertTrue(done["annotation"].created_at)
        self.assertEqual((done["project"].organisation, done["project"].project),
                         ("acme", "webshop"))
        destination = done["destination"]
        self.assertEqual((destination.name, destination.environment), ("web-prod", "production"))
        self.assertEqual(destination.metadata["region"], "eu-1")
        self.assertEqual((destination.type.organisation, destination.type.name,
                          destination.type.version), self.type)
        assignment = runner.assigned[release.id]
        self.assertRegex(assignment.release_token, r"^[0-9a-f]{64}$")
        self.assertEqual(assignment.mode, fpb.RELEASE_MODE_DEPLOY)

        finished = self.wait_state(release.id)
        self.assertEqual(state_name(finished.state), "RELEASE_STATE_SUCCEEDED")
        self.assertEqual(finished.runner_id, runner.runner_id)
        self.assertEqual(finished.attempts, 1)
        self.assertFalse(finished.HasField("plan_output"))
        self.assertTrue(finished.HasField("finished_at"))
        states = history(finished)
        self.assertEqual(states[-1], "RELEASE_STATE_SUCCEEDED")
        self.assertIn("RELEASE_STATE_ASSIGNED", states)
        self.assertEqual(finished.log_lines, len(done["log_lines"]))

        logs = self.cluster.pictl.run("releases", "logs", release.id).stdout
        for _, line in done["log_lines"]:
            self.assertIn(line, logs)
        shown = self.cluster.pictl.json("releases", "show", release.id)
        self.assertEqual(shown["state"], "RELEASE_STATE_SUCCEEDED")

    def test_a_runner_keeps_the_id_it_chose_and_is_listed_with_its_identity(self):
        runner = self.runner("lister", runner_id="ci-lister-7", max_concurrent=3)
        self.assertEqual(runner.runner_id, "ci-lister-7")
        listed = {r.runner_id: r for r in
                  self.admin.ListRunners(empty(), timeout=10).runners}
        self.assertIn("ci-lister-7", listed)
        info = listed["ci-lister-7"]
        self.assertEqual(info.identity, "runner:lister")
        self.assertEqual(info.max_concurrent, 3)
        self.assertEqual([(c.organisation, c.name, c.version) for c in info.capabilities],
                         [self.type])
        runner.stop()
        harness.wait_for(lambda: "ci-lister-7" not in {
            r.runner_id for r in self.admin.ListRunners(empty(), timeout=10).runners},
            10, "the stopped runner to leave the list")

    def test_only_a_runner_with_the_exact_destination_type_gets_the_release(self):
        organisation, name, version = self.type
        near_misses = [(organisation, name, version + 1), (organisation + "x", name, version),
                       (organisation, name + "x", version)]
        others = [self.runner(f"near-miss-{i}", capabilities=[kind])
                  for i, kind in enumerate(near_misses)]
        release = self.create()
        time.sleep(0.5)
        self.assertEqual(self.get(release.id).state, apb.RELEASE_STATE_QUEUED)
        for other in others:
            self.assertEqual(other.assigned, {})
        # A runner with several capabilities qualifies by any of them.
        exact = self.runner("exact", capabilities=[near_misses[0], self.type])
        exact.wait_completed(release.id)

    def test_the_runner_with_the_most_free_slots_is_preferred(self):
        small = self.runner("small", hold=True, max_concurrent=1)
        large = self.runner("large", hold=True, max_concurrent=3)
        first, second = self.create(), self.create()
        large.wait_assigned(first.id)
        large.wait_assigned(second.id)
        self.assertEqual(small.assigned, {})
        # Now both have one free slot; then only the small one has.
        later = [self.create().id, self.create().id]
        harness.wait_for(lambda: all(i in small.assigned or i in large.assigned for i in later),
                         10, "both releases to be assigned")
        self.assertEqual((len(small.assigned), len(large.assigned)), (1, 3))

    def test_a_release_can_be_completed_straight_from_assigned(self):
        runner = self.runner("terse", hold=True)
        release = self.create()
        token = runner.wait_assigned(release.id).release_token
        self.assertEqual(self.get(release.id).state, apb.RELEASE_STATE_ASSIGNED)
        runner.complete(token, fpb.RELEASE_OUTCOME_SUCCESS)
        finished = self.wait_state(release.id)
        self.assertEqual(finished.state, apb.RELEASE_STATE_SUCCEEDED)
        self.assertNotIn("RELEASE_STATE_RUNNING", history(finished))

    def test_the_client_also_works_as_a_command(self):
        process = self.runner_process("cli")
        registered = self.next_event(process, "registered")
        self.assertTrue(registered["accepted"])
        release = self.create()
        self.assertEqual(self.next_event(process, "completed")["release_id"], release.id)
        self.assertEqual(self.wait_state(release.id).state, apb.RELEASE_STATE_SUCCEEDED)


class ReassignmentTest(ReleaseTestCase):
    def test_rejected_work_is_reassigned_to_another_runner(self):
        rejecting = self.runner("rejecting", ack="reject")
        release = self.create()
        rejecting.wait_assigned(release.id)
        # Never back to the runner that rejected it: it waits for another.
        requeued = self.wait_state(release.id, apb.RELEASE_STATE_QUEUED)
        self.assertEqual(requeued.attempts, 1)
        time.sleep(0.5)
        self.assertEqual(self.get(release.id).state, apb.RELEASE_STATE_QUEUED)
        self.assertEqual(len(rejecting.assigned), 1)

        stock = self.runner("stock")
        stock.wait_completed(release.id)
        finished = self.wait_state(release.id)
        self.assertEqual(finished.state, apb.RELEASE_STATE_SUCCEEDED)
        self.assertEqual(finished.runner_id, stock.runner_id)
        self.assertEqual(finished.attempts, 2)
        self.assertTrue(any(rejecting.runner_id in t.reason for t in finished.history),
                        f"no transition names the rejecting runner: {finished.history}")
        # The rejected token was revoked with the rejection.
        self.assert_token_dead(rejecting.assigned[release.id].release_token, "rejecting")

    def test_a_release_rejected_by_its_only_allowed_runner_fails(self):
        rejecting = self.runner("rejecting", ack="reject")
        release = self.create(max_attempts=1)
        rejecting.wait_assigned(release.id)
        failed = self.wait_state(release.id)
        self.assertEqual(failed.state, apb.RELEASE_STATE_FAILED)
        self.assertEqual(failed.attempts, 1)
        self.assertTrue(failed.error_message)

    def test_a_release_rejected_by_default_max_attempts_runners_fails(self):
        rejecting = [self.runner(f"rejecting-{i}", ack="reject") for i in range(4)]
        release = self.create()
        failed = self.wait_state(release.id)
        self.assertEqual(failed.state, apb.RELEASE_STATE_FAILED)
        # default_max_attempts is 3: three runners had it, each once; the fourth never did.
        self.assertEqual(failed.attempts, 3)
        self.assertEqual(sorted(len(r.assigned) for r in rejecting), [0, 1, 1, 1])

    def test_an_accepting_runner_moves_the_release_to_running(self):
        accepting = self.runner("accepting", ack="accept", hold=True)
        release = self.create()
        assignment = accepting.wait_assigned(release.id)
        self.wait_state(release.id, apb.RELEASE_STATE_RUNNING)
        accepting.complete(assignment.release_token, fpb.RELEASE_OUTCOME_SUCCESS)
        self.assertEqual(self.wait_state(release.id).state, apb.RELEASE_STATE_SUCCEEDED)


class LostRunnerTest(ReleaseTestCase):
    def test_a_runner_killed_mid_release_loses_its_token_and_the_release_is_requeued(self):
        process = self.runner_process("doomed", "--hold")
        self.next_event(process, "registered")
        release = self.create(max_attempts=3)
        assigned = self.next_event(process, "assigned")
        self.assertEqual(assigned["release_id"], release.id)
        token = assigned["release_token"]
        stub = self.cluster.runner_stub("doomed")
        # The token works while its runner is alive (and the fetch makes the release RUNNING).
        self.assertEqual({f.file_name for f in stub.GetReleaseFiles(
            fpb.GetReleaseFilesRequest(release_token=token), timeout=10)}, set(ARTIFACTS))
        self.wait_state(release.id, apb.RELEASE_STATE_RUNNING)

        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        requeued = self.wait_state(release.id, apb.RELEASE_STATE_QUEUED)
        self.assertEqual(requeued.attempts, 1)
        self.assert_token_dead(token, "doomed")

        rescuer = self.runner("rescuer")
        rescuer.wait_completed(release.id)
        finished = self.wait_state(release.id)
        self.assertEqual(finished.state, apb.RELEASE_STATE_SUCCEEDED)
        self.assertEqual(finished.runner_id, rescuer.runner_id)
        self.assertEqual(finished.attempts, 2)

    def test_a_lost_runner_fails_a_release_that_allows_one_attempt(self):
        runner = self.runner("cancelled", hold=True)
        release = self.create(max_attempts=1)
        token = runner.wait_assigned(release.id).release_token
        runner.cancel()
        failed = self.wait_state(release.id)
        self.assertEqual(failed.state, apb.RELEASE_STATE_FAILED)
        self.assertEqual(failed.attempts, 1)
        self.assertTrue(failed.error_message)
        self.assert_token_dead(token, "cancelled")
        # Nobody gets it again.
        other = self.runner("other")
        time.sleep(0.5)
        self.assertEqual(other.assigned, {})


    def test_a_silent_runner_loses_its_release_and_its_stream(self):
        silent = self.runner("silent", hold=True, heartbeat_interval=3600)
        release = self.create()
        token = silent.wait_assigned(release.id).release_token
        assigned_at = time.monotonic()
        requeued = self.wait_state(release.id, apb.RELEASE_STATE_QUEUED, timeout=15)
        # runner_silence_limit is 5 s, checked every second.
        self.assertGreater(time.monotonic() - assigned_at, 3)
        self.assertEqual(requeued.attempts, 1)
        self.assert_token_dead(token, "silent")
        self.assertIsNotNone(silent.wait_ended())

    def test_a_release_past_its_timeout_is_timed_out(self):
        runner = self.runner("slow", hold=True)
        release = self.create(timeout=duration_pb2.Duration(seconds=1))
        token = runner.wait_assigned(release.id).release_token
        timed_out = self.wait_state(release.id, timeout=10)
        self.assertEqual(timed_out.state, apb.RELEASE_STATE_TIMED_OUT)
        self.assert_token_dead(token, "slow")
        # The slot is free again: the runner gets the next release.
        following = self.create()
        runner.wait_assigned(following.id)


class TokenScopeTest(ReleaseTestCase):
    def test_a_release_token_reads_only_its_own_release(self):
        runner = self.runner("holder", hold=True, max_concurrent=2)
        a = self.create(artifacts={"a.txt": "release A\n"}, specs={"a.spec": "A"},
                        project="project-a")
        b = self.create(artifacts={"b.txt": "release B\n", "b2.txt": "more B\n"},
                        specs={"b.spec": "B"}, project="project-b")
        token_a = runner.wait_assigned(a.id).release_token
        token_b = runner.wait_assigned(b.id).release_token
        self.assertNotEqual(token_a, token_b)
        self.assertEqual(runner.fetch_files(token_a), {"a.txt": "release A\n"})
        self.assertEqual(runner.fetch_spec_files(token_a), {"a.spec": "A"})
        self.assertEqual(runner.fetch_files(token_b),
                         {"b.txt": "release B\n", "b2.txt": "more B\n"})
        self.assertEqual(runner.stub.GetProjectInfo(
            fpb.GetProjectInfoRequest(release_token=token_a), timeout=10).project, "project-a")

        runner.push_logs(token_a, [("stdout", "line of A only")])
        runner.complete(token_a, fpb.RELEASE_OUTCOME_SUCCESS)
        self.assertEqual(self.wait_state(a.id).state, apb.RELEASE_STATE_SUCCEEDED)
        # Completing A with its token left B alone.
        self.assertIn(self.get(b.id).state, (apb.RELEASE_STATE_ASSIGNED,
                                             apb.RELEASE_STATE_RUNNING))
        self.assertIn("line of A only", self.cluster.pictl.run("releases", "logs", a.id).stdout)
        self.assertNotIn("line of A only",
                         self.cluster.pictl.run("releases", "logs", b.id).stdout)
        self.assertEqual(self.get(b.id).log_lines, 0)
        runner.complete(token_b, fpb.RELEASE_OUTCOME_SUCCESS)
        self.assertEqual(self.wait_state(b.id).state, apb.RELEASE_STATE_SUCCEEDED)

    def test_a_token_works_only_for_the_runner_it_was_given_to(self):
        runner = self.runner("owner", hold=True)
        release = self.create()
        token = runner.wait_assigned(release.id).release_token
        # Another runner identity holding a copy of the token gets nothing and changes nothing.
        self.assert_token_dead(token, "thief")
        controller = self.cluster.controller
        for name, channel in [
            ("no client certificate", controller.channel()),
            ("admin certificate", controller.admin_channel()),
        ]:
            with self.subTest(name):
                stub = runner_pb2_grpc.RunnerServiceStub(channel)
                with self.assertRaises(grpc.RpcError) as caught:
                    list(stub.GetReleaseFiles(fpb.GetReleaseFilesRequest(release_token=token),
                                              timeout=10))
                self.assertIn(caught.exception.code(), (grpc.StatusCode.UNAUTHENTICATED,
                                                        grpc.StatusCode.PERMISSION_DENIED))
        self.assertEqual(self.get(release.id).state, apb.RELEASE_STATE_ASSIGNED)
        self.assertEqual(runner.fetch_files(token), ARTIFACTS)
        runner.complete(token, fpb.RELEASE_OUTCOME_SUCCESS)
        self.assertEqual(self.wait_state(release.id).state, apb.RELEASE_STATE_SUCCEEDED)

    def test_malformed_and_unknown_tokens_are_unauthenticated(self):
        runner = self.runner("holder", hold=True)
        release = self.create()
        token = runner.wait_assigned(release.id).release_token
        forged = token[:-1] + ("0" if token[-1] != "0" else "1")
        for bad in ["", "not-a-token", "0" * 64, token.upper(), forged, token + "00", "é" * 64]:
            with self.subTest(token=bad):
                self.assert_code(grpc.StatusCode.UNAUTHENTICATED, runner.fetch_files, bad)
        # The real token still works, and nothing of the above changed the release.
        self.assertEqual(runner.fetch_files(token), ARTIFACTS)
        runner.complete(token, fpb.RELEASE_OUTCOME_SUCCESS)
        self.assertEqual(self.wait_state(release.id).state, apb.RELEASE_STATE_SUCCEEDED)

    def test_a_completed_releases_token_no_longer_works(self):
        runner = self.runner("stock")
        release = self.create()
        done = runner.wait_completed(release.id)
        self.assertEqual(self.wait_state(release.id).state, apb.RELEASE_STATE_SUCCEEDED)
        self.assert_token_dead(done["release_token"], "stock")
        after = self.get(release.id)
        self.assertEqual(after.state, apb.RELEASE_STATE_SUCCEEDED)
        self.assertEqual(after.log_lines, len(done["log_lines"]))

    def test_a_failed_releases_token_no_longer_works_and_its_error_is_kept(self):
        runner = self.runner("failing", hold=True)
        release = self.create()
        token = runner.wait_assigned(release.id).release_token
        runner.complete(token, fpb.RELEASE_OUTCOME_FAILURE, error_message="terraform exited 1")
        failed = self.wait_state(release.id)
        self.assertEqual(failed.state, apb.RELEASE_STATE_FAILED)
        self.assertEqual(failed.error_message, "terraform exited 1")
        self.assert_token_dead(token, "failing")

    def test_a_cancelled_releases_token_no_longer_works(self):
        runner = self.runner("holder", hold=True)
        release = self.create()
        token = runner.wait_assigned(release.id).release_token
        cancelled = self.admin.CancelRelease(apb.ReleaseRef(id=release.id), timeout=10)
        self.assertEqual(cancelled.state, apb.RELEASE_STATE_CANCELLED)
        self.assert_token_dead(token, "holder")
        self.assert_code(grpc.StatusCode.FAILED_PRECONDITION, self.admin.CancelRelease,
                         apb.ReleaseRef(id=release.id), timeout=10)

    def test_an_unspecified_outcome_is_invalid_and_changes_nothing(self):
        runner = self.runner("holder", hold=True)
        release = self.create()
        token = runner.wait_assigned(release.id).release_token
        runner.fetch_files(token)
        before = self.wait_state(release.id, apb.RELEASE_STATE_RUNNING)
        self.assert_code(grpc.StatusCode.INVALID_ARGUMENT, runner.complete, token,
                         fpb.RELEASE_OUTCOME_UNSPECIFIED)
        self.assert_code(grpc.StatusCode.INVALID_ARGUMENT, runner.complete, token, 7)
        after = self.get(release.id)
        self.assertEqual(after.state, apb.RELEASE_STATE_RUNNING)
        self.assertEqual(history(after), history(before))
        self.assertFalse(after.HasField("finished_at"))
        # The token still works: the refused call did not end the release.
        self.assertEqual(runner.fetch_files(token), ARTIFACTS)
        runner.complete(token, fpb.RELEASE_OUTCOME_SUCCESS)
        self.assertEqual(self.wait_state(release.id).state, apb.RELEASE_STATE_SUCCEEDED)


class OversizeTest(ReleaseTestCase):
    def test_bad_log_lines_are_refused_and_never_stored(self):
        runner = self.runner("holder", hold=True)
        release = self.create()
        token = runner.wait_assigned(release.id).release_token
        for name, bad in [("channel", ("stdlog", "bad channel")),
                          ("oversize", ("stdout", "y" * 65537))]:
            with self.subTest(name):
                self.assert_code(grpc.StatusCode.INVALID_ARGUMENT, runner.push_logs, token, [bad])
        runner.push_logs(token, [("stdout", "z" * 65536)])
        runner.complete(token, fpb.RELEASE_OUTCOME_SUCCESS)
        self.assertEqual(self.wait_state(release.id).log_lines, 1)
        logs = self.cluster.pictl.run("releases", "logs", release.id).stdout
        self.assertNotIn("bad channel", logs)

    def test_oversize_texts_from_a_runner_do_not_make_releases_unreadable(self):
        # A runner's error_message and plan_output are stored and sent back to admins with
        # every release; a few large ones must not push ListReleases past gRPC's 4 MiB
        # message limit.
        runner = self.runner("verbose", hold=True, max_concurrent=4)
        releases = [self.create(plan=(i % 2 == 1)) for i in range(4)]
        for release in releases:
            token = runner.wait_assigned(release.id).release_token
            try:
                if release.plan:
                    runner.complete(token, fpb.RELEASE_OUTCOME_SUCCESS,
                                    plan_output="p" * (1024 * 1024))
                else:
                    runner.complete(token, fpb.RELEASE_OUTCOME_FAILURE,
                                    error_message="e" * (1024 * 1024))
            except grpc.RpcError as error:
                self.assertEqual(error.code(), grpc.StatusCode.INVALID_ARGUMENT)
        for release in releases:
            self.get(release.id)
        listed = self.admin.ListReleases(apb.ListReleasesRequest(limit=1000), timeout=10)
        self.assertGreaterEqual(len(listed.releases), 4)
        self.cluster.pictl.run("releases", "list")


class PlanTest(ReleaseTestCase):
    def test_plan_output_is_stored_and_shown(self):
        plan_text = "~ update web-prod\nPlan: 1 to change, 2 unchanged."
        runner = self.runner("planner", plan_output=lambda work: plan_text)
        release = self.create(plan=True)
        self.assertTrue(release.plan)
        done = runner.wait_completed(release.id)
        self.assertEqual(done["mode"], "plan")
        self.assertEqual(runner.assigned[release.id].mode, fpb.RELEASE_MODE_PLAN)
        finished = self.wait_state(release.id)
        self.assertEqual(finished.state, apb.RELEASE_STATE_SUCCEEDED)
        self.assertTrue(finished.HasField("plan_output"))
        self.assertEqual(finished.plan_output, plan_text)
        shown = self.cluster.pictl.json("releases", "show", release.id)
        self.assertEqual(shown["plan_output"], plan_text)
        self.assertTrue(shown.get("plan"))
        self.assertIn("Plan: 1 to change",
                      self.cluster.pictl.run("releases", "show", release.id).stdout)


class AuthenticationTest(ReleaseTestCase):
    def assert_refused(self, runner, codes):
        """The stream ends with one of `codes`; a RegisterAck, if one came first, says
        accepted=false with a reason."""
        try:
            ack = runner.wait_registered()
        except grpc.RpcError as error:
            self.assertIn(error.code(), codes, error.details())
            return
        self.assertFalse(ack.accepted, "the registration was accepted")
        self.assertTrue(ack.reason)
        error = runner.wait_ended()
        self.assertIsNotNone(error, "the stream of a refused runner ended OK")
        self.assertIn(error.code(), codes, error.details())

    def test_runners_without_a_runner_or_node_certificate_are_refused(self):
        release = self.create()
        ca = self.cluster.controller.ca_pem()
        address = self.cluster.controller.address
        anonymous = ForestRunner(address, ca, None, None, [self.type]).start()
        self.addCleanup(anonymous.stop)
        self.assert_refused(anonymous, (grpc.StatusCode.UNAUTHENTICATED,))

        admin_dir = self.cluster.controller.admin_dir
        admin = ForestRunner(address, ca, self.cluster.controller.read(admin_dir, "admin.crt"),
                             self.cluster.controller.read(admin_dir, "admin.key"),
                             [self.type]).start()
        self.addCleanup(admin.stop)
        self.assert_refused(admin, (grpc.StatusCode.PERMISSION_DENIED,
                                    grpc.StatusCode.UNAUTHENTICATED))

        # A certificate of another CA does not even get through TLS.
        other = harness.Pki(self.tmp.join("other-ca"))
        other.issue("runner-rogue", "runner:rogue")
        rogue = ForestRunner(address, ca, other.read("runner-rogue.crt"),
                             other.read("runner-rogue.key"), [self.type]).start()
        self.addCleanup(rogue.stop)
        self.assert_refused(rogue, (grpc.StatusCode.UNAVAILABLE,
                                    grpc.StatusCode.UNAUTHENTICATED))

        time.sleep(0.5)
        for refused in (anonymous, admin, rogue):
            self.assertEqual(refused.assigned, {})
        self.assertEqual(self.get(release.id).state, apb.RELEASE_STATE_QUEUED)
        identities = {r.identity for r in self.admin.ListRunners(empty(), timeout=10).runners}
        self.assertNotIn("admin:alice", identities)
        self.assertNotIn("", identities)
        self.admin.CancelRelease(apb.ReleaseRef(id=release.id), timeout=10)

    def test_only_admins_create_or_read_releases(self):
        before = self.all_release_ids()
        controller = self.cluster.controller
        cert, key = self.cluster.credentials("not-an-admin")
        request = apb.CreateReleaseRequest(destination_type=apb.DestinationType(
            organisation=self.type[0], name=self.type[1], version=self.type[2]))
        request.artifact_files.add(name="a.txt", content="a")
        for name, channel, code in [
            ("runner", controller.channel(key, cert), grpc.StatusCode.PERMISSION_DENIED),
            ("anonymous", controller.channel(), grpc.StatusCode.UNAUTHENTICATED),
        ]:
            with self.subTest(name):
                stub = admin_pb2_grpc.AdminStub(channel)
                self.assert_code(code, stub.CreateRelease, request, timeout=10)
                self.assert_code(code, stub.ListReleases, apb.ListReleasesRequest(), timeout=10)
                self.assert_code(code, stub.ListRunners, empty(), timeout=10)
        self.assertEqual(self.all_release_ids(), before)

    def test_the_first_message_must_be_a_registration(self):
        stub = self.cluster.runner_stub()
        for first in [fpb.RunnerMessage(heartbeat=fpb.RunnerHeartbeat(active_releases=0)),
                      fpb.RunnerMessage(work_ack=fpb.WorkAck(release_token="0" * 64,
                                                             accepted=True)),
                      fpb.RunnerMessage()]:
            with self.subTest(first=first.WhichOneof("message")):
                error = self.assert_code(grpc.StatusCode.INVALID_ARGUMENT,
                                         lambda: list(stub.RegisterRunner(iter([first]),
                                                                          timeout=10)))
                self.assertIn("regist", error.details().lower())

    def test_a_registration_without_capabilities_or_slots_is_refused(self):
        for name, register in [
            ("no capabilities", fpb.RunnerRegister(max_concurrent=1)),
            ("no slots", fpb.RunnerRegister(max_concurrent=0, capabilities=[
                fpb.DestinationCapability(organisation="itest", name="x", version=1)])),
        ]:
            with self.subTest(name):
                stub = self.cluster.runner_stub()
                try:
                    replies = list(stub.RegisterRunner(
                        iter([fpb.RunnerMessage(register=register)]), timeout=10))
                except grpc.RpcError as error:
                    self.assertEqual(error.code(), grpc.StatusCode.INVALID_ARGUMENT,
                                     error.details())
                    continue
                self.assertTrue(replies and not replies[0].register_ack.accepted, replies)


class FollowTest(ReleaseTestCase):
    def test_an_admin_follows_the_log_live_until_the_release_ends(self):
        runner = self.runner("holder", hold=True)
        release = self.create()
        token = runner.wait_assigned(release.id).release_token
        runner.push_logs(token, [("stdout", "stored before the follow")])
        follower = subprocess.Popen(
            [harness.PICTL_BIN, "--config", self.cluster.pictl.config, "releases", "logs", "-f",
             release.id], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: (follower.poll() is None and follower.kill(), follower.wait(),
                                 follower.stdout.close(), follower.stderr.close()))
        self.assertIn("stored before the follow", follower.stdout.readline())
        runner.push_logs(token, [("stderr", "pushed while followed")])
        self.assertIn("pushed while followed", follower.stdout.readline())
        runner.complete(token, fpb.RELEASE_OUTCOME_SUCCESS)
        # The follow ends by itself once the release has ended.
        exit_code = follower.wait(10)
        states = follower.stderr.read()
        self.assertEqual(exit_code, 0, states)
        self.assertIn("SUCCEEDED", states)

    def test_follow_release_streams_state_changes_and_lines_then_ends(self):
        runner = self.runner("holder", hold=True)
        release = self.create()
        token = runner.wait_assigned(release.id).release_token
        events = []
        stream = self.admin.FollowRelease(apb.FollowReleaseRequest(id=release.id), timeout=20)

        def read():
            for event in stream:
                events.append(event)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        harness.wait_for(lambda: events, 10, "the first event")
        self.assertEqual(events[0].WhichOneof("event"), "release")
        runner.push_logs(token, [("stdout", "one"), ("stdout", "two")])
        runner.complete(token, fpb.RELEASE_OUTCOME_SUCCESS)
        reader.join(10)
        self.assertFalse(reader.is_alive(), "FollowRelease did not end with the release")
        lines = [e.log for e in events if e.WhichOneof("event") == "log"]
        self.assertEqual([(l.sequence, l.line) for l in lines], [(1, "one"), (2, "two")])
        last = events[-1]
        self.assertEqual(last.WhichOneof("event"), "release")
        self.assertEqual(last.release.state, apb.RELEASE_STATE_SUCCEEDED)
        self.assert_code(grpc.StatusCode.NOT_FOUND, self.admin.FollowRelease,
                         apb.FollowReleaseRequest(id="no-such-release"), timeout=10)


class RunnerIdentityTest(ReleaseTestCase):
    def test_a_runner_id_taken_over_by_the_same_identity_loses_its_releases(self):
        first = self.runner("twin", runner_id="twin-1", hold=True)
        release = self.create()
        token = first.wait_assigned(release.id).release_token
        second = self.runner("twin", runner_id="twin-1")
        # The old connection is closed and its release goes back to the queue, then to the new
        # connection.
        self.assertIsNotNone(first.wait_ended())
        second.wait_completed(release.id)
        self.assert_token_dead(token, "twin")
        finished = self.wait_state(release.id)
        self.assertEqual(finished.state, apb.RELEASE_STATE_SUCCEEDED)
        self.assertEqual(finished.attempts, 2)

    def test_a_runner_id_of_another_identity_is_refused(self):
        owner = self.runner("owner", runner_id="shared-id")
        thief = ForestRunner(self.cluster.controller.address, self.cluster.controller.ca_pem(),
                             *self.cluster.credentials("thief"), [self.type],
                             runner_id="shared-id").start()
        self.addCleanup(thief.stop)
        ack = thief.wait_registered()
        self.assertFalse(ack.accepted)
        self.assertEqual(thief.wait_ended().code(), grpc.StatusCode.PERMISSION_DENIED)
        # The owner keeps its id and its work.
        release = self.create()
        owner.wait_completed(release.id)
        listed = [r for r in self.admin.ListRunners(empty(), timeout=10).runners
                  if r.runner_id == "shared-id"]
        self.assertEqual([r.identity for r in listed], ["runner:owner"])


class CreationTest(ReleaseTestCase):
    def test_bad_release_files_are_refused_and_nothing_is_created(self):
        before = self.all_release_ids()
        bad_names = ["../escape.txt", "a/../../b.txt", "/etc/passwd", "", "a//b", "./a",
                     "dir\\file", "line\nbreak"]
        for name in bad_names:
            with self.subTest(artifact=name):
                self.assert_code(grpc.StatusCode.INVALID_ARGUMENT, self.create,
                                 artifacts={"ok.txt": "fine", name: "x"})
            with self.subTest(spec=name):
                self.assert_code(grpc.StatusCode.INVALID_ARGUMENT, self.create,
                                 specs={name: "x"})
        with self.subTest("no destination type"):
            request = apb.CreateReleaseRequest()
            request.artifact_files.add(name="a.txt", content="a")
            self.assert_code(grpc.StatusCode.INVALID_ARGUMENT, self.admin.CreateRelease, request,
                             timeout=10)
        with self.subTest("duplicate names"):
            request = apb.CreateReleaseRequest(destination_type=apb.DestinationType(
                organisation=self.type[0], name=self.type[1], version=self.type[2]))
            request.artifact_files.add(name="a.txt", content="a")
            request.artifact_files.add(name="a.txt", content="b")
            self.assert_code(grpc.StatusCode.INVALID_ARGUMENT, self.admin.CreateRelease, request,
                             timeout=10)
        with self.subTest("a file over 1 MiB"):
            self.assert_code(grpc.StatusCode.INVALID_ARGUMENT, self.create,
                             artifacts={"big.txt": "x" * (1024 * 1024 + 1)})
        with self.subTest("node_id disagrees with metadata"):
            self.assert_code(grpc.StatusCode.INVALID_ARGUMENT, self.create, node_id="pi-1",
                             destination_metadata={"node_id": "pi-2"})
        with self.subTest("max_attempts out of range"):
            self.assert_code(grpc.StatusCode.INVALID_ARGUMENT, self.create, max_attempts=-1)
        self.assertEqual(self.all_release_ids(), before)

    def test_pictl_creates_a_release_from_a_directory_and_refuses_bad_ones(self):
        runner = self.runner("stock")
        source = self.tmp.join(f"release-{self.type[1]}")
        for name, content in ARTIFACTS.items():
            os.makedirs(os.path.dirname(os.path.join(source, name)), exist_ok=True)
            with open(os.path.join(source, name), "w") as f:
                f.write(content)
        specs = self.tmp.join(f"specs-{self.type[1]}")
        os.makedirs(specs)
        with open(os.path.join(specs, "spec.yaml"), "w") as f:
            f.write(SPECS["spec.yaml"])
        organisation, name, version = self.type
        kind = f"{organisation}/{name}@{version}"
        created = self.cluster.pictl.json("releases", "create", "--type", kind, "--dir", source,
                                          "--spec-dir", specs, "--name", "web-prod", "--env",
                                          "production", "--meta", "region=eu-1")
        done = runner.wait_completed(created["id"])
        self.assertEqual(done["files"], ARTIFACTS)
        self.assertEqual(done["spec_files"], SPECS)
        self.assertEqual(done["destination"].metadata["region"], "eu-1")
        self.assertEqual(done["destination"].environment, "production")
        waited = self.cluster.pictl.run("releases", "wait", created["id"], timeout=30)
        self.assertEqual(waited.returncode, 0)
        self.assertEqual(self.get(created["id"]).state, apb.RELEASE_STATE_SUCCEEDED)

        before = self.all_release_ids()
        big = self.tmp.join(f"big-{self.type[1]}")
        os.makedirs(big)
        with open(os.path.join(big, "big.bin"), "w") as f:
            f.write("x" * (1024 * 1024 + 1))
        for args, wanted in [
            (["--type", kind, "--dir", self.tmp.join("no-such-dir")], "no-such-dir"),
            (["--type", kind, "--dir", big], "big.bin"),
            (["--type", f"{organisation}/{name}", "--dir", source], f"{organisation}/{name}"),
        ]:
            with self.subTest(args=args):
                refused = self.cluster.pictl.run("releases", "create", *args, check=False)
                self.assertNotEqual(refused.returncode, 0, refused.stdout)
                self.assertIn(wanted, refused.stderr)
        self.assertEqual(self.all_release_ids(), before)


class DurabilityTest(unittest.TestCase):
    def setUp(self):
        self.tmp = harness.TempDir("pi-release-durable-")
        self.addCleanup(self.tmp.cleanup)
        self.cluster = ReleaseCluster(self.tmp, "controller")
        self.addCleanup(self.cluster.stop)
        self.type = ("itest", "durable", 1)

    def runner(self, name, **kwargs):
        cert, key = self.cluster.credentials(name)
        runner = ForestRunner(self.cluster.controller.address, self.cluster.controller.ca_pem(),
                              cert, key, [self.type], **kwargs).start()
        self.addCleanup(runner.stop)
        self.assertTrue(runner.wait_registered().accepted)
        return runner

    def create(self, artifacts):
        request = apb.CreateReleaseRequest(destination_type=apb.DestinationType(
            organisation=self.type[0], name=self.type[1], version=self.type[2]))
        for name, content in artifacts.items():
            request.artifact_files.add(name=name, content=content)
        return self.cluster.admin.CreateRelease(request, timeout=10)

    def get(self, release_id):
        return self.cluster.admin.GetRelease(apb.ReleaseRef(id=release_id), timeout=10)

    def test_releases_survive_a_controller_kill(self):
        holder = self.runner("holder", hold=True)
        held = self.create({"held.txt": "was assigned\n"})
        held_token = holder.wait_assigned(held.id).release_token
        # The holder's only slot is taken: this one waits in the queue.
        queued = self.create({"queued.txt": "waits for a runner\n"})
        self.assertEqual(self.get(queued.id).state, apb.RELEASE_STATE_QUEUED)

        self.cluster.restart_after_kill()
        holder.wait_ended()

        survived = self.get(queued.id)
        self.assertEqual(survived.state, apb.RELEASE_STATE_QUEUED)
        self.assertEqual(list(survived.artifact_file_names), ["queued.txt"])
        # The assigned release lost its runner with the controller: back in the queue.
        requeued = self.get(held.id)
        self.assertEqual(requeued.state, apb.RELEASE_STATE_QUEUED)
        self.assertEqual(requeued.attempts, 1)
        runner = self.runner("after-restart")
        stub = self.cluster.runner_stub("holder")
        self.assert_unauthenticated(stub, held_token)
        runner_done = [runner.wait_completed(queued.id, timeout=15),
                       runner.wait_completed(held.id, timeout=15)]
        self.assertEqual(runner_done[0]["files"], {"queued.txt": "waits for a runner\n"})
        self.assertEqual(runner_done[1]["files"], {"held.txt": "was assigned\n"})
        for release_id in (queued.id, held.id):
            finished = harness.wait_for(
                lambda: (lambda r: r if r.state == apb.RELEASE_STATE_SUCCEEDED else None)(
                    self.get(release_id)), 10, f"{release_id} to succeed")
            self.assertEqual(finished.runner_id, runner.runner_id)

    def assert_unauthenticated(self, stub, token):
        with self.assertRaises(grpc.RpcError) as caught:
            list(stub.GetReleaseFiles(fpb.GetReleaseFilesRequest(release_token=token),
                                      timeout=10))
        self.assertEqual(caught.exception.code(), grpc.StatusCode.UNAUTHENTICATED)


if __name__ == "__main__":
    unittest.main()
