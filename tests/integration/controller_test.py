"""Integration test: the real pi-controller on 127.0.0.1 with its own CA. Nodes are simulated by
this client (keys and CSRs from openssl, Debian's python3-grpcio) so every refusal can be provoked
exactly; tests with real pi-agent processes are in cluster_test.py."""

import hashlib
import math
import os
import subprocess
import time
import unittest

import grpc
from google.protobuf import duration_pb2, empty_pb2

import harness
from picontroller.v1 import admin_pb2, admin_pb2_grpc, control_plane_pb2, control_plane_pb2_grpc

pb = control_plane_pb2
READY = pb.NODE_STATE_READY
DOWN = pb.NODE_STATE_DOWN


def altered(token):
    """The token with the last character of its secret changed."""
    return token[:-1] + ("a" if token[-1] != "a" else "b")


class SimulatedNode:
    """A node joined through RegisterNode with a key that never left this test."""

    def __init__(self, controller, response, key):
        self.controller = controller
        self.response = response
        self.id = response.node_id
        self.key = key
        self.cert = response.certificate_pem
        self.channel = controller.channel(key, self.cert)
        self.control_plane = control_plane_pb2_grpc.ControlPlaneStub(self.channel)

    def heartbeat(self, node_id=None, **summary):
        summary.setdefault("status", 1)
        self.control_plane.ReportHealth(
            pb.HealthReport(node_id=node_id or self.id, summary=pb.HealthSummary(**summary)),
            timeout=5,
        )


class ControllerFixture(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.TempDir("pi-controller-itest-")
        cls.controller = harness.Controller(cls.tmp.join("controller")).start()
        cls.admin = admin_pb2_grpc.AdminStub(cls.controller.admin_channel())
        cls.anonymous = control_plane_pb2_grpc.ControlPlaneStub(cls.controller.channel())
        cls.counter = 0

    @classmethod
    def tearDownClass(cls):
        cls.controller.stop()
        cls.tmp.cleanup()

    def token(self, **kwargs):
        return self.admin.CreateJoinToken(admin_pb2.CreateJoinTokenRequest(**kwargs), timeout=5)

    def register(self, token_text, hostname, **kwargs):
        type(self).counter += 1
        key, csr = harness.make_csr(self.tmp.path, f"node{self.counter}")
        kwargs.setdefault("agent_address", ":9091")
        response = self.anonymous.RegisterNode(
            pb.NodeRegistration(join_token=token_text, hostname=hostname, csr_pem=csr, **kwargs),
            timeout=10,
        )
        return response, key

    def join(self, hostname, **kwargs):
        response, key = self.register(self.token().token, hostname, **kwargs)
        self.assertTrue(response.accepted, response.reason)
        return SimulatedNode(self.controller, response, key)

    def node(self, node_id):
        return self.admin.GetNode(admin_pb2.NodeRef(id=node_id), timeout=5)

    def revision(self):
        return self.admin.ListNodes(admin_pb2.ListNodesRequest(), timeout=5).revision

    def token_info(self, token_id):
        for info in self.admin.ListJoinTokens(empty_pb2.Empty(), timeout=5).tokens:
            if info.id == token_id:
                return info
        self.fail(f"token {token_id} not listed")

    def assert_refused(self, response, fragment):
        self.assertFalse(response.accepted)
        self.assertIn(fragment, response.reason)
        self.assertEqual(response.certificate_pem, b"")

    def assert_rpc_error(self, code, call, fragment=""):
        with self.assertRaises(grpc.RpcError) as raised:
            call()
        self.assertEqual(raised.exception.code(), code, raised.exception.details())
        self.assertIn(fragment, raised.exception.details())
        return raised.exception


class JoinTest(ControllerFixture):
    def test_a_token_joins_a_node_with_a_certificate_for_its_own_identity(self):
        created = self.token(description="rack 1", max_uses=3)
        self.assertTrue(created.token.startswith("K10"))
        response, key = self.register(
            created.token, "Pi-Join", labels={"rack": "1"}, facts={"model": "Raspberry Pi 4"}
        )
        self.assertTrue(response.accepted, response.reason)
        self.assertEqual(response.node_id, "pi-join")
        self.assertEqual(response.ca_bundle_pem, self.controller.ca_pem())
        self.assertEqual(response.heartbeat_interval.seconds, 1)
        cert = os.path.join(self.tmp.path, "pi-join.crt")
        with open(cert, "wb") as f:
            f.write(response.certificate_pem)
        subject = subprocess.run(
            ["openssl", "x509", "-in", cert, "-noout", "-subject", "-ext", "subjectAltName"],
            check=True, capture_output=True, text=True,
        ).stdout
        self.assertIn("CN = node:pi-join", subject)
        self.assertIn("DNS:pi-join.node.pi-controller", subject)
        subprocess.run(
            ["openssl", "verify", "-CAfile", self.controller.pki.path("ca.crt"), cert],
            check=True, capture_output=True,
        )
        node = self.node("pi-join")
        self.assertEqual(node.state, pb.NODE_STATE_REGISTERED)
        self.assertEqual(node.agent_address, "127.0.0.1:9091")
        self.assertEqual(dict(node.labels), {"rack": "1"})
        self.assertEqual(node.facts["model"], "Raspberry Pi 4")
        der = subprocess.run(
            ["openssl", "x509", "-in", cert, "-outform", "DER"], check=True, capture_output=True
        ).stdout
        self.assertEqual(node.certificate_fingerprint, hashlib.sha256(der).hexdigest())
        self.assertEqual(self.token_info(created.info.id).uses, 1)

        SimulatedNode(self.controller, response, key).heartbeat(cpu_usage_percent=12.5)
        node = self.node("pi-join")
        self.assertEqual(node.state, READY)
        self.assertAlmostEqual(node.last_health.cpu_usage_percent, 12.5)

    def test_a_wrong_secret_is_refused_and_creates_nothing(self):
        created = self.token()
        before = self.revision()
        response, _ = self.register(altered(created.token), "pi-wrong-secret")
        self.assert_refused(response, "join token")
        self.assertEqual(self.token_info(created.info.id).uses, 0)
        self.assertEqual(self.revision(), before)
        self.assert_rpc_error(grpc.StatusCode.NOT_FOUND, lambda: self.node("pi-wrong-secret"))

    def test_an_unknown_token_id_gets_the_same_answer_as_a_wrong_secret(self):
        created = self.token()
        pin, rest = created.token[3:].split("::")
        secret = rest.split(".", 1)[1]
        unknown = f"K10{pin}::zzzzzzzz.{secret}"
        wrong, _ = self.register(altered(created.token), "pi-unknown-1")
        response, _ = self.register(unknown, "pi-unknown-2")
        self.assert_refused(response, "join token")
        self.assertEqual(response.reason, wrong.reason)

    def test_an_expired_token_is_refused(self):
        created = self.token(ttl=duration_pb2.Duration(seconds=1))
        time.sleep(1.2)
        response, _ = self.register(created.token, "pi-expired")
        self.assert_refused(response, "expired")

    def test_a_revoked_token_is_refused(self):
        created = self.token()
        revoked = self.admin.RevokeJoinToken(admin_pb2.JoinTokenRef(id=created.info.id), timeout=5)
        self.assertTrue(revoked.HasField("revoked_at"))
        response, _ = self.register(created.token, "pi-revoked")
        self.assert_refused(response, "revoked")

    def test_a_used_up_token_is_refused(self):
        created = self.token(max_uses=1)
        first, _ = self.register(created.token, "pi-used-1")
        self.assertTrue(first.accepted, first.reason)
        second, _ = self.register(created.token, "pi-used-2")
        self.assert_refused(second, "used")

    def test_a_token_pinning_another_ca_is_refused_without_using_it(self):
        created = self.token()
        other_pin = hashlib.sha256(b"another cluster").hexdigest()
        forged = "K10" + other_pin + "::" + created.token.split("::", 1)[1]
        response, _ = self.register(forged, "pi-other-ca")
        self.assert_refused(response, "another cluster")
        self.assertEqual(self.token_info(created.info.id).uses, 0)

    def test_malformed_tokens_are_invalid_arguments(self):
        for text in ["K10", "not-a-token", "K10" + "0" * 64 + "::id"]:
            with self.subTest(text=text):
                self.assert_rpc_error(
                    grpc.StatusCode.INVALID_ARGUMENT, lambda: self.register(text, "pi-malformed")
                )

    def test_bad_registrations_are_invalid_arguments_and_use_no_token(self):
        created = self.token()
        cases = [
            ({"hostname": "-bad"}, "hostname"),
            ({"hostname": "pi-bad", "agent_address": "nowhere"}, "nowhere"),
            ({"hostname": "pi-bad", "labels": {"bad key!": "x"}}, "label"),
        ]
        for fields, fragment in cases:
            with self.subTest(fields=fields):
                hostname = fields.pop("hostname")
                self.assert_rpc_error(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    lambda: self.register(created.token, hostname, **fields),
                    fragment,
                )
        self.assert_rpc_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: self.anonymous.RegisterNode(
                pb.NodeRegistration(join_token=created.token, hostname="pi-nocsr",
                                    agent_address=":9091"), timeout=5),
            "csr",
        )
        self.assertEqual(self.token_info(created.info.id).uses, 0)

    def test_without_token_or_certificate_registration_is_refused(self):
        response = self.anonymous.RegisterNode(
            pb.NodeRegistration(hostname="pi-anon", agent_address=":9091"), timeout=5
        )
        self.assert_refused(response, "join token is required")

    def test_a_taken_hostname_needs_that_nodes_certificate(self):
        first = self.join("pi-taken")
        created = self.token()
        response, _ = self.register(created.token, "pi-taken")
        self.assert_refused(response, "already registered as node pi-taken")
        self.assertEqual(self.token_info(created.info.id).uses, 0)
        # The node itself registers again with its certificate and no token.
        again = first.control_plane.RegisterNode(
            pb.NodeRegistration(hostname="pi-taken", agent_address="127.0.0.1:9191"), timeout=5
        )
        self.assertTrue(again.accepted, again.reason)
        self.assertEqual(again.node_id, first.id)
        self.assertEqual(again.certificate_pem, b"")
        self.assertEqual(self.node(first.id).agent_address, "127.0.0.1:9191")

    def test_a_removed_node_can_join_again_but_its_old_certificate_is_refused(self):
        old = self.join("pi-removed")
        removed = self.admin.RemoveNode(admin_pb2.NodeRef(id=old.id), timeout=5)
        self.assertEqual(removed.state, pb.NODE_STATE_REMOVED)
        self.assert_rpc_error(grpc.StatusCode.PERMISSION_DENIED, old.heartbeat, "removed")
        new = self.join("pi-removed")
        self.assertEqual(new.id, "pi-removed-2")
        new.heartbeat()
        self.assertEqual(self.node(new.id).state, READY)
        self.assert_rpc_error(grpc.StatusCode.PERMISSION_DENIED, old.heartbeat, "removed")


class AuthorizationTest(ControllerFixture):
    def test_a_node_certificate_cannot_call_admin(self):
        node = self.join("pi-authz-admin")
        stub = admin_pb2_grpc.AdminStub(node.channel)
        self.assert_rpc_error(
            grpc.StatusCode.PERMISSION_DENIED,
            lambda: stub.ListNodes(admin_pb2.ListNodesRequest(), timeout=5),
            "node:pi-authz-admin may not call Admin.ListNodes",
        )
        self.assert_rpc_error(
            grpc.StatusCode.PERMISSION_DENIED,
            lambda: stub.CreateJoinToken(admin_pb2.CreateJoinTokenRequest(), timeout=5),
        )

    def test_admin_without_a_certificate_is_unauthenticated(self):
        stub = admin_pb2_grpc.AdminStub(self.controller.channel())
        self.assert_rpc_error(
            grpc.StatusCode.UNAUTHENTICATED,
            lambda: stub.ListNodes(admin_pb2.ListNodesRequest(), timeout=5),
        )

    def test_node_a_cannot_report_health_as_node_b(self):
        a = self.join("pi-authz-a")
        b = self.join("pi-authz-b")
        b_before = self.node(b.id)
        self.assert_rpc_error(
            grpc.StatusCode.PERMISSION_DENIED,
            lambda: a.heartbeat(node_id=b.id),
            "may report health only for node pi-authz-a",
        )
        self.assertEqual(self.node(b.id).state, b_before.state)
        self.assertFalse(self.node(b.id).HasField("last_heartbeat"))

    def test_a_certificate_the_node_did_not_join_with_is_refused(self):
        node = self.join("pi-authz-forged")
        cert, key = self.controller.pki.issue("forged", "node:pi-authz-forged")
        with open(key, "rb") as k, open(cert, "rb") as c:
            forged = SimulatedNode(self.controller, node.response, k.read())
            forged.channel = self.controller.channel(forged.key, c.read())
            forged.control_plane = control_plane_pb2_grpc.ControlPlaneStub(forged.channel)
        self.assert_rpc_error(grpc.StatusCode.PERMISSION_DENIED, forged.heartbeat, "not the one")

    def test_an_admin_cannot_report_health(self):
        stub = control_plane_pb2_grpc.ControlPlaneStub(self.controller.admin_channel())
        self.assert_rpc_error(
            grpc.StatusCode.PERMISSION_DENIED,
            lambda: stub.ReportHealth(pb.HealthReport(node_id="x"), timeout=5),
        )

    def test_only_a_controller_may_sync_cluster_state(self):
        node = self.join("pi-authz-sync")
        request = pb.ClusterStateRequest()
        for name, stub, code in [
            ("admin", control_plane_pb2_grpc.ControlPlaneStub(self.controller.admin_channel()),
             grpc.StatusCode.PERMISSION_DENIED),
            ("node", node.control_plane, grpc.StatusCode.PERMISSION_DENIED),
            ("anonymous", self.anonymous, grpc.StatusCode.UNAUTHENTICATED),
        ]:
            with self.subTest(caller=name):
                self.assert_rpc_error(code, lambda: stub.SyncClusterState(request, timeout=5))

        cert, key = self.controller.pki.issue("peer", "controller")
        with open(key, "rb") as k, open(cert, "rb") as c:
            peer = control_plane_pb2_grpc.ControlPlaneStub(self.controller.channel(k.read(), c.read()))
        snapshot = peer.SyncClusterState(request, timeout=5)
        self.assertTrue(snapshot.full_snapshot)
        self.assertIn("pi-authz-sync", [n.id for n in snapshot.nodes])
        self.assertTrue(all(len(t.secret_sha256) == 64 for t in snapshot.join_tokens))

        self.admin.LabelNode(
            admin_pb2.LabelNodeRequest(node=admin_pb2.NodeRef(id=node.id), set={"zone": "a"}),
            timeout=5,
        )
        delta = peer.SyncClusterState(
            pb.ClusterStateRequest(since_revision=snapshot.revision), timeout=5
        )
        self.assertFalse(delta.full_snapshot)
        self.assertEqual(len(delta.changes), 1)
        self.assertEqual(delta.changes[0].node.labels["zone"], "a")
        self.assertEqual(delta.revision, delta.changes[0].revision)
        self.assertGreater(delta.revision, snapshot.revision)

    def test_health_summaries_no_agent_sends_are_invalid(self):
        node = self.join("pi-authz-summary")
        for summary in [{"cpu_usage_percent": math.nan}, {"cpu_usage_percent": 250},
                        {"memory_total_bytes": 1, "memory_available_bytes": 2}]:
            with self.subTest(summary=summary):
                self.assert_rpc_error(
                    grpc.StatusCode.INVALID_ARGUMENT, lambda: node.heartbeat(**summary)
                )
        self.assertEqual(self.node(node.id).state, pb.NODE_STATE_REGISTERED)

    def test_request_provisioning_without_a_profile_is_refused(self):
        # provision_integration covers provisioning itself; here only that an admin's malformed
        # request is refused before anything is looked up.
        stub = control_plane_pb2_grpc.ControlPlaneStub(self.controller.admin_channel())
        self.assert_rpc_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: stub.RequestProvisioning(pb.ProvisioningRequest(all_nodes=True), timeout=5),
        )


class NodeStateTest(ControllerFixture):
    def wait_state(self, node_id, state, timeout=10):
        return harness.wait_for(
            lambda: self.node(node_id).state == state, timeout, f"{node_id} to be {state}"
        )

    def test_a_silent_node_goes_down_and_comes_back_ready(self):
        node = self.join("pi-state-down")
        node.heartbeat()
        self.assertEqual(self.node(node.id).state, READY)
        silent_from = time.monotonic()
        self.wait_state(node.id, DOWN)
        # TTL 2 s + grace 1 s; the controller checks every 0.5 s.
        self.assertGreaterEqual(time.monotonic() - silent_from, 2.5)
        node.heartbeat()
        self.assertEqual(self.node(node.id).state, READY)

    def test_a_cordoned_node_stays_cordoned_across_a_down_spell(self):
        node = self.join("pi-state-cordon")
        node.heartbeat()
        cordoned = self.admin.CordonNode(admin_pb2.NodeRef(id=node.id), timeout=5)
        self.assertEqual(cordoned.state, pb.NODE_STATE_CORDONED)
        self.assertEqual(cordoned.admin_state, pb.NODE_STATE_CORDONED)
        self.wait_state(node.id, DOWN)
        node.heartbeat()
        self.assertEqual(self.node(node.id).state, pb.NODE_STATE_CORDONED)
        drained = self.admin.DrainNode(admin_pb2.NodeRef(hostname="pi-state-cordon"), timeout=5)
        self.assertEqual(drained.state, pb.NODE_STATE_DRAINING)
        uncordoned = self.admin.UncordonNode(admin_pb2.NodeRef(id=node.id), timeout=5)
        self.assertEqual(uncordoned.state, READY)

    def test_the_health_poll_records_an_unreachable_agent(self):
        node = self.join("pi-state-poll", agent_address="127.0.0.1:1")
        harness.wait_for(
            lambda: self.node(node.id).health_check_error, 10, "a failed health poll"
        )
        self.assertTrue(self.node(node.id).HasField("last_health_check"))

    def test_labels_select_nodes_and_bad_labels_change_nothing(self):
        node = self.join("pi-state-labels")
        ref = admin_pb2.NodeRef(id=node.id)
        labelled = self.admin.LabelNode(
            admin_pb2.LabelNodeRequest(node=ref, set={"role": "sensor", "zone": "b"}), timeout=5
        )
        self.assertEqual(dict(labelled.labels), {"role": "sensor", "zone": "b"})
        listed = self.admin.ListNodes(
            admin_pb2.ListNodesRequest(label_selector="role=sensor,zone=b"), timeout=5
        )
        self.assertEqual([n.id for n in listed.nodes], [node.id])
        before = self.revision()
        self.assert_rpc_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: self.admin.LabelNode(
                admin_pb2.LabelNodeRequest(node=ref, set={"bad key!": "x"}), timeout=5
            ),
        )
        self.assert_rpc_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: self.admin.ListNodes(admin_pb2.ListNodesRequest(label_selector="role"),
                                         timeout=5),
        )
        self.assertEqual(self.revision(), before)
        removed = self.admin.LabelNode(
            admin_pb2.LabelNodeRequest(node=ref, remove=["zone"]), timeout=5
        )
        self.assertEqual(dict(removed.labels), {"role": "sensor"})

    def test_unknown_nodes_are_not_found(self):
        for call in [
            lambda: self.admin.GetNode(admin_pb2.NodeRef(id="nope"), timeout=5),
            lambda: self.admin.CordonNode(admin_pb2.NodeRef(hostname="nope"), timeout=5),
            lambda: self.admin.GetNodeMetrics(admin_pb2.NodeRef(id="nope"), timeout=5),
        ]:
            self.assert_rpc_error(grpc.StatusCode.NOT_FOUND, call)
        self.assert_rpc_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: self.admin.GetNode(admin_pb2.NodeRef(), timeout=5),
        )

    def test_a_watch_sees_the_state_then_each_change(self):
        node = self.join("pi-state-watch")
        watch = self.admin.WatchCluster(admin_pb2.WatchClusterRequest(), timeout=20)
        seen = set()
        for change in watch:
            if change.WhichOneof("object") == "node":
                seen.add(change.node.id)
            if node.id in seen:
                break
        self.admin.LabelNode(
            admin_pb2.LabelNodeRequest(node=admin_pb2.NodeRef(id=node.id), set={"w": "1"}),
            timeout=5,
        )
        for change in watch:
            if change.node.id == node.id and change.node.labels.get("w") == "1":
                break
        watch.cancel()


class OperatorCertificateTest(unittest.TestCase):
    """A controller whose CA directory and certificate the operator provides."""

    def setUp(self):
        self.tmp = harness.TempDir("pi-controller-operator-pki-")
        self.addCleanup(self.tmp.cleanup)
        self.ca = harness.Pki(self.tmp.join("ca"))
        cert, key = self.ca.issue("server", "controller", server=True)
        with open(cert) as c, open(self.ca.path("ca.crt")) as ca:
            leaf, chain = c.read(), ca.read()
        self.chained = self.tmp.join("controller-chain.crt")
        with open(self.chained, "w") as f:
            f.write(leaf + chain)
        self.leaf_only = cert
        self.key = key

    def controller(self, cert_file):
        return harness.Controller(
            self.tmp.join("controller"),
            extra={"ca_dir": self.ca.dir,
                   "tls": {"cert_file": cert_file, "key_file": self.key}},
        )

    def test_the_given_certificate_is_served_and_agents_can_pin_its_ca(self):
        controller = self.controller(self.chained).start()
        self.addCleanup(controller.stop)
        admin = admin_pb2_grpc.AdminStub(controller.admin_channel())
        token = admin.CreateJoinToken(admin_pb2.CreateJoinTokenRequest(), timeout=5)
        pin = hashlib.sha256(subprocess.run(
            ["openssl", "x509", "-in", self.ca.path("ca.crt"), "-outform", "DER"],
            check=True, capture_output=True).stdout).hexdigest()
        self.assertTrue(token.token.startswith("K10" + pin + "::"))
        served = subprocess.run(
            ["openssl", "s_client", "-connect", controller.address, "-showcerts"],
            input=b"", capture_output=True, timeout=20).stdout
        with open(self.chained, "rb") as f:
            self.assertIn(f.read().split(b"-----END CERTIFICATE-----")[0][-64:], served)
        self.assertFalse(os.path.exists(os.path.join(controller.state_dir, "controller.crt")))

    def test_a_certificate_without_the_ca_in_its_file_stops_the_controller(self):
        controller = self.controller(self.leaf_only)
        result = subprocess.run(
            [harness.CONTROLLER_BIN, "-c", controller.config_path, "--check-config"],
            capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, 2)
        self.assertIn("followed by the cluster CA", result.stderr)


class DurabilityTest(unittest.TestCase):
    def test_everything_acknowledged_survives_kill_9(self):
        tmp = harness.TempDir("pi-controller-durability-")
        self.addCleanup(tmp.cleanup)
        controller = harness.Controller(tmp.join("controller")).start()
        self.addCleanup(controller.stop)
        admin = admin_pb2_grpc.AdminStub(controller.admin_channel())
        anonymous = control_plane_pb2_grpc.ControlPlaneStub(controller.channel())
        token = admin.CreateJoinToken(admin_pb2.CreateJoinTokenRequest(max_uses=10), timeout=5)
        revoked = admin.CreateJoinToken(admin_pb2.CreateJoinTokenRequest(), timeout=5)
        admin.RevokeJoinToken(admin_pb2.JoinTokenRef(id=revoked.info.id), timeout=5)
        ids = []
        for i in range(5):
            _, csr = harness.make_csr(tmp.path, f"d{i}")
            response = anonymous.RegisterNode(
                pb.NodeRegistration(join_token=token.token, hostname=f"pi-d{i}",
                                    agent_address=":9091", csr_pem=csr), timeout=10)
            self.assertTrue(response.accepted, response.reason)
            ids.append(response.node_id)
            admin.LabelNode(admin_pb2.LabelNodeRequest(node=admin_pb2.NodeRef(id=response.node_id),
                                                       set={"slot": str(i)}), timeout=5)
        admin.CordonNode(admin_pb2.NodeRef(id=ids[0]), timeout=5)
        admin.RemoveNode(admin_pb2.NodeRef(id=ids[1]), timeout=5)
        before = admin.ListNodes(admin_pb2.ListNodesRequest(states=range(1, 7)), timeout=5)

        controller.kill()
        controller.start()
        admin = admin_pb2_grpc.AdminStub(controller.admin_channel())
        after = admin.ListNodes(admin_pb2.ListNodesRequest(states=range(1, 7)), timeout=5)
        self.assertEqual(after.revision, before.revision)
        self.assertEqual(
            [(n.id, n.state, dict(n.labels), n.certificate_fingerprint) for n in after.nodes],
            [(n.id, n.state, dict(n.labels), n.certificate_fingerprint) for n in before.nodes],
        )
        tokens = {t.id: t for t in admin.ListJoinTokens(empty_pb2.Empty(), timeout=5).tokens}
        self.assertEqual(tokens[token.info.id].uses, 5)
        self.assertTrue(tokens[revoked.info.id].HasField("revoked_at"))


if __name__ == "__main__":
    unittest.main()
