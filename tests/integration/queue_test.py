"""Integration test: durable work queues (issue 4, DESIGN 4.1 and 5.1) on the real pi-controller.

Messages go in through HTTP ingress (http.client) and come out through both worker transports:
Hookaido's WorkerService over plaintext gRPC (Debian's python3-grpcio with stubs generated from
proto/hookaido/worker/v1/workerapi.proto) and the HTTP Pull API (JSON over http.client). Every
semantic test is written once against a common worker interface and runs against both. The
admin Admin service (mTLS) reads queue stats and dead letters to check that refused requests
change nothing.

Each test gets its own route (named after its class and position), so tests never see each
other's messages; one controller serves all of them. The mTLS, durability (kill -9) and
configuration guardrail tests start their own controllers.
"""

import base64
import datetime
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import unittest

import grpc
from google.protobuf import duration_pb2

import harness
from hookaido.worker.v1 import workerapi_pb2, workerapi_pb2_grpc
from picontroller.v1 import admin_pb2, admin_pb2_grpc

wpb = workerapi_pb2

# The global worker token comes from the environment (env: reference), which both `issue-admin`
# and the daemon inherit; route tokens come from files (file: reference).
GLOBAL_TOKEN = "global-worker-token-6c1f0e"
GLOBAL_TOKEN_ENV = "PI_QUEUE_TEST_WORKER_TOKEN"
os.environ[GLOBAL_TOKEN_ENV] = GLOBAL_TOKEN
ROUTE_TOKEN = "route-own-token-9b27d4"

PULL_PREFIX = "/worker"
INGRESS_MAX_BODY = 64 * 1024
LEASE_CONFLICT_DETAIL = "lease is invalid or expired"
DEFAULT = object()  # "use the worker's own bearer token"


def http_request(port, method, path, body=b"", headers=None, timeout=30):
    """One request on its own connection: (status, headers dict (lower-case), body bytes)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        try:
            connection.request(method, path, body=body, headers=headers or {})
        except (BrokenPipeError, ConnectionResetError):
            # A server may answer (413) and close before reading all of an oversize body; the
            # answer is still there to read, unless the connection is gone (a killed server).
            if connection.sock is None:
                raise
        response = connection.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        connection.close()


def json_or_none(data):
    try:
        return json.loads(data)
    except ValueError:
        return None


def text_duration(seconds):
    """A duration as the HTTP Pull API reads it ("1500ms")."""
    return f"{round(seconds * 1000)}ms"


def proto_duration(seconds):
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def parse_time(value):
    """An RFC 3339 timestamp (any number of fraction digits) or epoch seconds, as epoch seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    text = value.replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    fraction = 0.0
    if "." in text:
        head, rest = text.split(".", 1)
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        fraction = float("0." + digits) if digits else 0.0
        text = head + rest
    return datetime.datetime.fromisoformat(text).timestamp() + fraction


def lower_keys(mapping):
    return {k.lower(): v for k, v in mapping.items()}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Item:
    """A leased item, the same shape from both transports."""

    def __init__(self, id, lease_id, attempt, route, payload, headers, trace, received_at,
                 next_run_at):
        self.id = id
        self.lease_id = lease_id
        self.attempt = attempt
        self.route = route
        self.payload = payload
        self.headers = headers
        self.trace = trace
        self.received_at = received_at
        self.next_run_at = next_run_at

    def __repr__(self):
        return f"Item(id={self.id!r}, attempt={self.attempt}, payload={self.payload[:40]!r})"


class Batch:
    """The answer to a batch ack or nack: how many were applied, and (lease_id, expired) pairs."""

    def __init__(self, count, conflicts):
        self.count = count
        self.conflicts = conflicts

    def __repr__(self):
        return f"Batch(count={self.count}, conflicts={self.conflicts})"


class WorkerError(Exception):
    """A refused worker call. kind is transport-neutral: invalid, unauthenticated, not_found,
    conflict, deadline, ...; status is the gRPC code or the HTTP status; code is the HTTP
    body's "code"."""

    def __init__(self, kind, status, detail, code=None):
        super().__init__(f"{kind} ({status}): {detail}")
        self.kind = kind
        self.status = status
        self.detail = detail
        self.code = code


GRPC_KINDS = {
    grpc.StatusCode.INVALID_ARGUMENT: "invalid",
    grpc.StatusCode.UNAUTHENTICATED: "unauthenticated",
    grpc.StatusCode.NOT_FOUND: "not_found",
    grpc.StatusCode.FAILED_PRECONDITION: "conflict",
    grpc.StatusCode.DEADLINE_EXCEEDED: "deadline",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "exhausted",
    grpc.StatusCode.UNAVAILABLE: "unavailable",
}

HTTP_KINDS = {
    400: "invalid",
    401: "unauthenticated",
    404: "not_found",
    405: "method",
    409: "conflict",
    413: "too_large",
    503: "unavailable",
    504: "deadline",
}


class GrpcWorker:
    """hookaido.worker.v1.WorkerService over plaintext gRPC with a bearer token in metadata."""

    transport = "grpc"

    def __init__(self, port, token=GLOBAL_TOKEN):
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = workerapi_pb2_grpc.WorkerServiceStub(self.channel)
        self.token = token

    def close(self):
        self.channel.close()

    def _call(self, method, request, authorization, timeout=10):
        if authorization is DEFAULT:
            authorization = f"Bearer {self.token}"
        metadata = [] if authorization is None else [("authorization", authorization)]
        try:
            return method(request, metadata=metadata, timeout=timeout)
        except grpc.RpcError as error:
            code = error.code()
            raise WorkerError(GRPC_KINDS.get(code, str(code)), code, error.details()) from None

    def dequeue(self, endpoint, batch=None, max_wait=None, lease_ttl=None,
                authorization=DEFAULT, timeout=None):
        request = wpb.DequeueRequest(endpoint=endpoint)
        if batch is not None:
            request.batch = batch
        if max_wait is not None:
            request.max_wait.CopyFrom(proto_duration(max_wait))
        if lease_ttl is not None:
            request.lease_ttl.CopyFrom(proto_duration(lease_ttl))
        response = self._call(self.stub.Dequeue, request, authorization,
                              timeout or (max_wait or 0) + 10)
        return [
            Item(i.id, i.lease_id, i.attempt, i.route, i.payload, dict(i.headers), dict(i.trace),
                 i.received_at.ToNanoseconds() / 1e9, i.next_run_at.ToNanoseconds() / 1e9)
            for i in response.items
        ]

    def ack(self, endpoint, lease_id=None, lease_ids=None, authorization=DEFAULT):
        request = wpb.AckRequest(endpoint=endpoint, lease_id=lease_id or "",
                                 lease_ids=lease_ids or [])
        response = self._call(self.stub.Ack, request, authorization)
        if lease_ids is None:
            return None
        return Batch(response.acked, [(c.lease_id, c.expired) for c in response.conflicts])

    def nack(self, endpoint, lease_id=None, lease_ids=None, delay=None, dead=False, reason="",
             authorization=DEFAULT):
        request = wpb.NackRequest(endpoint=endpoint, lease_id=lease_id or "",
                                  lease_ids=lease_ids or [], dead=dead, reason=reason)
        if delay is not None:
            request.delay.CopyFrom(proto_duration(delay))
        response = self._call(self.stub.Nack, request, authorization)
        if lease_ids is None:
            return None
        return Batch(response.succeeded, [(c.lease_id, c.expired) for c in response.conflicts])

    def extend(self, endpoint, lease_id, extend_by, authorization=DEFAULT):
        request = wpb.ExtendRequest(endpoint=endpoint, lease_id=lease_id,
                                    extend_by=proto_duration(extend_by))
        self._call(self.stub.Extend, request, authorization)


class HttpWorker:
    """The HTTP Pull API: POST {prefix}{pull_path}/{action} with JSON (DESIGN 5.1)."""

    transport = "http"

    def __init__(self, port, prefix=PULL_PREFIX, token=GLOBAL_TOKEN):
        self.port = port
        self.prefix = prefix
        self.token = token

    def close(self):
        pass

    def post(self, endpoint, action, body, authorization=DEFAULT, timeout=10):
        """The raw exchange: (status, parsed JSON or None, raw body)."""
        if authorization is DEFAULT:
            authorization = f"Bearer {self.token}"
        headers = {"Content-Type": "application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        status, _, raw = http_request(self.port, "POST", f"{self.prefix}{endpoint}/{action}", data,
                                      headers, timeout)
        return status, json_or_none(raw), raw

    def _call(self, endpoint, action, body, authorization, ok_statuses, timeout=10):
        status, parsed, raw = self.post(endpoint, action, body, authorization, timeout)
        if status in ok_statuses:
            return status, parsed
        detail = parsed.get("detail") if isinstance(parsed, dict) else raw[:200]
        code = parsed.get("code") if isinstance(parsed, dict) else None
        raise WorkerError(HTTP_KINDS.get(status, str(status)), status, detail, code)

    def dequeue(self, endpoint, batch=None, max_wait=None, lease_ttl=None,
                authorization=DEFAULT, timeout=None):
        body = {}
        if batch is not None:
            body["batch"] = batch
        if max_wait is not None:
            body["max_wait"] = text_duration(max_wait)
        if lease_ttl is not None:
            body["lease_ttl"] = text_duration(lease_ttl)
        _, parsed = self._call(endpoint, "dequeue", body, authorization, (200,),
                               timeout or (max_wait or 0) + 10)
        items = []
        for i in parsed.get("items") or []:
            items.append(Item(i["id"], i["lease_id"], i["attempt"], i.get("route", ""),
                              base64.b64decode(i.get("payload_b64", "")), i.get("headers") or {},
                              i.get("trace") or {}, parse_time(i["received_at"]),
                              parse_time(i["next_run_at"])))
        return items

    def _settle(self, endpoint, action, body, lease_ids, authorization, count_key):
        if lease_ids is None:
            self._call(endpoint, action, body, authorization, (204,))
            return None
        status, parsed, raw = self.post(endpoint, action, body, authorization)
        if status not in (200, 409) or not isinstance(parsed, dict) or count_key not in parsed:
            detail = parsed.get("detail") if isinstance(parsed, dict) else raw[:200]
            code = parsed.get("code") if isinstance(parsed, dict) else None
            raise WorkerError(HTTP_KINDS.get(status, str(status)), status, detail, code)
        conflicts = [(c["lease_id"], bool(c.get("expired", False)))
                     for c in parsed.get("conflicts") or []]
        # DESIGN 5.1: a batch answers 200, or 409 with the same body when conflicts exist.
        expected = 409 if conflicts else 200
        if status != expected:
            raise AssertionError(f"batch {action} answered {status} with {parsed}; want {expected}")
        return Batch(parsed[count_key], conflicts)

    @staticmethod
    def _lease_body(lease_id, lease_ids):
        body = {}
        if lease_id is not None:
            body["lease_id"] = lease_id
        if lease_ids is not None:
            body["lease_ids"] = lease_ids
        return body

    def ack(self, endpoint, lease_id=None, lease_ids=None, authorization=DEFAULT):
        return self._settle(endpoint, "ack", self._lease_body(lease_id, lease_ids), lease_ids,
                            authorization, "acked")

    def nack(self, endpoint, lease_id=None, lease_ids=None, delay=None, dead=False, reason="",
             authorization=DEFAULT):
        body = self._lease_body(lease_id, lease_ids)
        if delay is not None:
            body["delay"] = text_duration(delay)
        if dead:
            body["dead"] = True
        if reason:
            body["reason"] = reason
        return self._settle(endpoint, "nack", body, lease_ids, authorization, "succeeded")

    def extend(self, endpoint, lease_id, extend_by, authorization=DEFAULT):
        body = {"lease_id": lease_id, "extend_by": text_duration(extend_by)}
        self._call(endpoint, "extend", body, authorization, (204,))


# ---- the shared controller ---------------------------------------------------------------------

# Route settings by test name (every test gets its own route; these tests need special limits).
ROUTE_OPTIONS = {
    "test_dequeue_batch_is_clamped_to_the_route_max_batch": {"max_batch": 3},
    "test_lease_ttl_is_capped_by_the_route_max_lease_ttl": {"max_lease_ttl": "5s"},
    "test_max_attempts_dead_letters_an_item_leased_that_often": {"max_attempts": 2},
    "test_max_attempts_counts_expired_leases_too": {"max_attempts": 2},
    "test_a_full_route_refuses_ingress_with_503": {"max_depth": 3},
    "test_a_route_token_list_replaces_the_global_one": {"own_token": True},
    "test_extend_is_capped_by_the_route_max_lease_ttl": {"max_lease_ttl": "2s"},
    "test_retention_drops_old_queued_items_and_dead_letters_but_not_leased_ones": {
        "retention": "1s"},
}

SHARED = {}  # controller, ports, admin stub, tmp dir


class QueueTestCase(unittest.TestCase):
    """Gives each test its own route: self.route_name, self.ingress_path, self.pull_path."""

    ROUTE_PREFIX = None  # set by each concrete class

    @classmethod
    def setUpClass(cls):
        start_shared_controller()

    @classmethod
    def route_table(cls):
        names = unittest.TestLoader().getTestCaseNames(cls)
        return {name: f"{cls.ROUTE_PREFIX}{index:02d}" for index, name in enumerate(names)}

    def setUp(self):
        self.controller = SHARED["controller"]
        self.ports = SHARED["ports"]
        self.admin = SHARED["admin"]
        self.route_name = self.route_table()[self._testMethodName]
        self.ingress_path = f"/in/{self.route_name}"
        self.pull_path = f"/pull/{self.route_name}"

    # Ingress and admin helpers.

    def post(self, payload=b"x", path=None, headers=None, expect=202):
        status, _, data = http_request(self.ports["ingress"], "POST", path or self.ingress_path,
                                       payload, headers)
        self.assertEqual(status, expect, data)
        if expect == 202:
            body = json.loads(data)
            self.assertTrue(body["id"], body)
            return body["id"]
        return json_or_none(data)

    def post_many(self, count, prefix="m"):
        return [self.post(f"{prefix}{i}".encode()) for i in range(count)]

    def stats(self, route=None):
        response = self.admin.GetQueueStats(
            admin_pb2.GetQueueStatsRequest(route=route or self.route_name), timeout=5)
        self.assertEqual(len(response.routes), 1, response)
        return response.routes[0]

    def depth(self, route=None):
        """(queued, delayed, leased, dead) of the route."""
        s = self.stats(route)
        return (s.queued, s.delayed, s.leased, s.dead)

    def snapshot(self, route=None):
        """Everything a refused request must leave unchanged."""
        s = self.stats(route)
        return {f: getattr(s, f) for f in ("queued", "delayed", "leased", "dead", "enqueued",
                                           "dequeued", "acked", "nacked", "dead_lettered")}

    def dead_letters(self, route=None):
        return list(self.admin.ListDeadLetters(
            admin_pb2.ListDeadLettersRequest(route=route or self.route_name), timeout=5).items)


def all_route_classes():
    return [GrpcSemanticsTest, HttpSemanticsTest, IngressTest, ConcurrentWorkersTest,
            HttpBadInputTest, InteropTest, PictlQueueTest]


def routes_config(token_file):
    routes = []
    for cls in all_route_classes():
        for test_name, route_name in cls.route_table().items():
            route = {"name": route_name, "ingress_path": f"/in/{route_name}",
                     "pull_path": f"/pull/{route_name}"}
            options = dict(ROUTE_OPTIONS.get(test_name, {}))
            if options.pop("own_token", False):
                route["auth_tokens"] = [f"file:{token_file}"]
            route.update(options)
            routes.append(route)
    # A second route for every test that needs "another route's lease".
    routes.append({"name": "foreign", "ingress_path": "/in/foreign", "pull_path": "/pull/foreign"})
    return routes


def queues_config(token_file, **overrides):
    config = {
        "ingress": {"listen": "127.0.0.1:0", "max_body_bytes": INGRESS_MAX_BODY},
        "pull_api": {"listen": "127.0.0.1:0", "prefix": PULL_PREFIX, "grpc_listen": "127.0.0.1:0",
                     "auth_tokens": [f"env:{GLOBAL_TOKEN_ENV}"]},
        "routes": routes_config(token_file),
    }
    config.update(overrides)
    return config


def start_shared_controller():
    """The controller every QueueTestCase shares, started on first use (so the durability and
    configuration tests, which start their own, do not depend on it)."""
    if "error" in SHARED:
        raise SHARED["error"]
    if "controller" in SHARED:
        return
    tmp = harness.TempDir("pi-queue-itest-")
    SHARED["tmp"] = tmp
    token_file = tmp.join("route.token")
    with open(token_file, "w") as f:
        f.write(ROUTE_TOKEN + "\n")
    os.chmod(token_file, 0o600)
    try:
        controller = harness.Controller(tmp.join("controller"),
                                        extra={"queues": queues_config(token_file)})
        controller.start()
        SHARED["controller"] = controller
        ports = controller.daemon.ports
        missing = [key for key in ("ingress", "pull", "worker_grpc") if not ports.get(key)]
        if missing:
            raise AssertionError(f"--ports-file lacks bound ports for {missing}: {ports}")
    except Exception as error:
        SHARED["error"] = error
        raise
    admin_channel = controller.admin_channel()
    SHARED.update(ports=ports, admin_channel=admin_channel,
                  admin=admin_pb2_grpc.AdminStub(admin_channel))


def tearDownModule():
    # Open client channels hold up the controller's gRPC shutdown until its deadline.
    if "admin_channel" in SHARED:
        SHARED["admin_channel"].close()
    if "controller" in SHARED:
        SHARED["controller"].stop()
    if "tmp" in SHARED:
        SHARED["tmp"].cleanup()


# ---- DESIGN 4.1, once per transport ------------------------------------------------------------


class WorkerSemantics:
    """Every bullet of DESIGN 4.1; run once over gRPC and once over the HTTP Pull API."""

    def make_worker(self, token=GLOBAL_TOKEN):
        raise NotImplementedError

    def setUp(self):
        super().setUp()
        self.worker = self.make_worker()
        self.addCleanup(self.worker.close)

    # Helpers.

    def dequeue(self, **kwargs):
        return self.worker.dequeue(self.pull_path, **kwargs)

    def dequeue_one(self, **kwargs):
        items = self.dequeue(**kwargs)
        self.assertEqual(len(items), 1, items)
        return items[0]

    def assert_refused(self, kind, call):
        with self.assertRaises(WorkerError) as raised:
            call()
        self.assertEqual(raised.exception.kind, kind, raised.exception)
        return raised.exception

    def assert_lease_conflict(self, call):
        """The single form's refusal: FAILED_PRECONDITION / 409 lease_conflict."""
        error = self.assert_refused("conflict", call)
        if self.worker.transport == "grpc":
            self.assertIn(LEASE_CONFLICT_DETAIL, error.detail)
        else:
            self.assertEqual(error.code, "lease_conflict", error)
        return error

    def lease_one(self, payload=b"x", lease_ttl=60):
        self.post(payload)
        return self.dequeue_one(lease_ttl=lease_ttl)

    # Dequeue.

    def test_dequeue_delivers_the_posted_message_with_every_field(self):
        payload = bytes(range(256)) + "ünïcode".encode()
        before = time.time()
        message_id = self.post(payload, headers={"X-Event": "push", "Content-Type": "text/x"})
        item = self.dequeue_one()
        after = time.time()
        self.assertEqual(item.id, message_id)
        self.assertEqual(item.payload, payload)
        self.assertEqual(item.attempt, 1)
        self.assertEqual(item.route, self.route_name)
        self.assertTrue(item.lease_id)
        self.assertNotEqual(item.lease_id, item.id)
        self.assertEqual(lower_keys(item.headers).get("x-event"), "push", item.headers)
        self.assertGreaterEqual(item.received_at, before - 1)
        self.assertLessEqual(item.received_at, after + 1)
        # Default lease_ttl is 30s, and next_run_at is the lease's expiry.
        self.assertAlmostEqual(item.next_run_at - after, 30, delta=3)
        self.assertEqual(self.depth(), (0, 0, 1, 0))

    def test_ingress_never_stores_credentials(self):
        self.post(b"{}", headers={
            "Authorization": "Bearer secret-a", "Proxy-Authorization": "Basic c2VjcmV0",
            "Cookie": "session=secret-c", "X-Delivery": "d-1",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
        item = self.dequeue_one()
        headers = lower_keys(item.headers)
        for name in ("authorization", "proxy-authorization", "cookie"):
            self.assertNotIn(name, headers)
        for value in list(item.headers.values()) + list(item.trace.values()):
            self.assertNotIn("secret", value)
        self.assertEqual(headers.get("x-delivery"), "d-1", item.headers)
        stored_trace = list(item.trace.values()) + list(item.headers.values())
        self.assertIn("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", stored_trace)

    def test_an_empty_queue_answers_at_once_without_max_wait(self):
        start = time.monotonic()
        self.assertEqual(self.dequeue(), [])
        self.assertLess(time.monotonic() - start, 1.0)

    def test_a_long_poll_answers_empty_after_max_wait(self):
        start = time.monotonic()
        self.assertEqual(self.dequeue(max_wait=0.8), [])
        elapsed = time.monotonic() - start
        self.assertGreaterEqual(elapsed, 0.7)
        self.assertLess(elapsed, 4)

    def run_in_thread(self, function):
        """Starts function() on a thread; the returned callable joins and returns its result."""
        result = {}

        def run():
            try:
                result["value"] = function()
            except BaseException as error:  # re-raised in the test's thread
                result["error"] = error
            result["at"] = time.monotonic()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()

        def join(timeout=30):
            thread.join(timeout)
            self.assertFalse(thread.is_alive(), "the call did not return")
            if "error" in result:
                raise result["error"]
            return result["value"], result["at"]

        return join

    def test_a_long_poll_is_woken_at_once_by_an_ingress_post(self):
        join = self.run_in_thread(lambda: self.dequeue(max_wait=20))
        time.sleep(0.7)
        posted_at = time.monotonic()
        message_id = self.post(b"wake")
        items, answered_at = join()
        self.assertEqual([i.id for i in items], [message_id])
        self.assertLess(answered_at - posted_at, 1.0)

    def test_a_long_poll_is_woken_by_a_nack(self):
        item = self.lease_one()
        join = self.run_in_thread(lambda: self.dequeue(max_wait=20))
        time.sleep(0.5)
        nacked_at = time.monotonic()
        self.worker.nack(self.pull_path, item.lease_id)
        items, answered_at = join()
        self.assertEqual([(i.id, i.attempt) for i in items], [(item.id, 2)])
        self.assertLess(answered_at - nacked_at, 1.0)

    def test_a_long_poll_is_woken_by_a_lease_expiry(self):
        item = self.lease_one(lease_ttl=1)
        started = time.monotonic()
        items = self.dequeue(max_wait=20)
        self.assertEqual([(i.id, i.attempt) for i in items], [(item.id, 2)])
        self.assertLess(time.monotonic() - started, 3)

    def test_dequeue_batch_is_clamped_to_100(self):
        self.post_many(101)
        self.assertEqual(len(self.dequeue(batch=1000)), 100)
        self.assertEqual(len(self.dequeue(batch=1000)), 1)

    def test_dequeue_batch_is_clamped_to_the_route_max_batch(self):
        self.post_many(5)
        self.assertEqual(len(self.dequeue(batch=10)), 3)
        # Unset or 0 is clamped up to 1.
        self.assertEqual(len(self.dequeue()), 1)
        self.assertEqual(len(self.dequeue(batch=0)), 1)
        self.assertEqual(self.depth(), (0, 0, 5, 0))

    def test_dequeue_order_is_next_run_at_then_received_at(self):
        a, b, c = self.post(b"a"), self.post(b"b"), self.post(b"c")
        first = self.dequeue_one()
        self.assertEqual(first.id, a)
        self.worker.nack(self.pull_path, first.lease_id)  # due now: after b and c
        self.assertEqual([i.id for i in self.dequeue(batch=3)], [b, c, a])

    def test_every_lease_has_a_fresh_id_and_counts_the_attempt(self):
        first = self.lease_one(lease_ttl=1)
        second = self.dequeue_one(max_wait=10)
        self.worker.nack(self.pull_path, second.lease_id)
        third = self.dequeue_one()
        self.assertEqual({first.id, second.id, third.id}, {first.id})
        self.assertEqual([first.attempt, second.attempt, third.attempt], [1, 2, 3])
        leases = [first.lease_id, second.lease_id, third.lease_id]
        self.assertEqual(len(set(leases)), 3)
        for lease in leases:
            self.assertGreaterEqual(len(lease), 16, "lease ids must be unguessable")

    def test_lease_ttl_is_capped_by_the_route_max_lease_ttl(self):
        self.post()
        item = self.dequeue_one(lease_ttl=600)
        self.assertLessEqual(item.next_run_at - time.time(), 5.5)
        self.assertGreater(item.next_run_at - time.time(), 3)

    def test_lease_ttl_is_honoured(self):
        self.post()
        item = self.dequeue_one(lease_ttl=90)
        self.assertAlmostEqual(item.next_run_at - time.time(), 90, delta=3)

    # Ack.

    def test_a_single_ack_settles_the_item(self):
        item = self.lease_one()
        self.assertIsNone(self.worker.ack(self.pull_path, item.lease_id))
        self.assertEqual(self.depth(), (0, 0, 0, 0))
        self.assertEqual(self.dequeue(), [])

    def test_a_single_ack_nack_or_extend_of_an_unknown_lease_is_a_lease_conflict(self):
        item = self.lease_one()
        before = self.snapshot()
        self.assert_lease_conflict(lambda: self.worker.ack(self.pull_path, "no-such-lease"))
        self.assert_lease_conflict(lambda: self.worker.nack(self.pull_path, "no-such-lease"))
        self.assert_lease_conflict(lambda: self.worker.extend(self.pull_path, "no-such-lease", 5))
        self.assertEqual(self.snapshot(), before)
        self.worker.ack(self.pull_path, item.lease_id)

    def test_a_repeated_ack_of_the_same_lease_succeeds_again(self):
        item = self.lease_one()
        self.worker.ack(self.pull_path, item.lease_id)
        self.worker.ack(self.pull_path, item.lease_id)
        again = self.worker.ack(self.pull_path, lease_ids=[item.lease_id])
        self.assertEqual((again.count, again.conflicts), (1, []))
        self.assertEqual(self.depth(), (0, 0, 0, 0))

    def test_a_repeated_nack_of_the_same_lease_succeeds_again_without_requeueing_twice(self):
        item = self.lease_one()
        self.worker.nack(self.pull_path, item.lease_id, delay=60)
        self.worker.nack(self.pull_path, item.lease_id, delay=60)
        again = self.worker.nack(self.pull_path, lease_ids=[item.lease_id], delay=60)
        self.assertEqual((again.count, again.conflicts), (1, []))
        self.assertEqual(self.depth(), (1, 1, 0, 0))

    def test_a_batch_ack_applies_the_valid_leases_and_reports_the_others(self):
        self.post_many(3)
        items = self.dequeue(batch=3)
        self.assertEqual(len(items), 3)
        a, b, c = (i.lease_id for i in items)
        result = self.worker.ack(self.pull_path, lease_ids=[a, b, "bogus-lease", a])
        # Deduplicated: a counts once; the unknown lease is reported, not expired.
        self.assertEqual(result.count, 2)
        self.assertEqual(result.conflicts, [("bogus-lease", False)])
        self.assertEqual(self.depth(), (0, 0, 1, 0))
        clean = self.worker.ack(self.pull_path, lease_ids=[c])
        self.assertEqual((clean.count, clean.conflicts), (1, []))
        self.assertEqual(self.depth(), (0, 0, 0, 0))

    def test_a_batch_nack_applies_the_valid_leases_and_reports_the_others(self):
        self.post_many(2)
        a, b = (i.lease_id for i in self.dequeue(batch=2))
        result = self.worker.nack(self.pull_path, lease_ids=[a, "bogus-lease", b], delay=60)
        self.assertEqual(result.count, 2)
        self.assertEqual(result.conflicts, [("bogus-lease", False)])
        self.assertEqual(self.depth(), (2, 2, 0, 0))

    def test_a_batch_of_exactly_100_is_accepted(self):
        item = self.lease_one()
        bogus = [f"bogus-{i}" for i in range(99)]
        result = self.worker.ack(self.pull_path, lease_ids=[item.lease_id] + bogus)
        self.assertEqual(result.count, 1)
        self.assertEqual(sorted(result.conflicts), sorted((b, False) for b in bogus))

    def test_a_batch_over_100_is_invalid_and_changes_nothing(self):
        item = self.lease_one()
        before = self.snapshot()
        too_many = [item.lease_id] + [f"bogus-{i}" for i in range(100)]
        self.assert_refused("invalid", lambda: self.worker.ack(self.pull_path, lease_ids=too_many))
        self.assert_refused("invalid", lambda: self.worker.nack(self.pull_path, lease_ids=too_many))
        self.assertEqual(self.snapshot(), before)
        self.worker.ack(self.pull_path, item.lease_id)

    def test_ack_and_nack_need_exactly_one_of_lease_id_and_lease_ids(self):
        item = self.lease_one()
        before = self.snapshot()
        for settle in (self.worker.ack, self.worker.nack):
            self.assert_refused("invalid", lambda: settle(self.pull_path, lease_id=item.lease_id,
                                                          lease_ids=[item.lease_id]))
            self.assert_refused("invalid", lambda: settle(self.pull_path))
            self.assert_refused("invalid", lambda: settle(self.pull_path, lease_ids=[]))
        self.assertEqual(self.snapshot(), before)
        self.worker.ack(self.pull_path, item.lease_id)

    # Nack.

    def test_a_nack_with_delay_requeues_the_item_later(self):
        item = self.lease_one()
        nacked_at = time.monotonic()
        self.worker.nack(self.pull_path, item.lease_id, delay=1.5)
        self.assertEqual(self.depth(), (1, 1, 0, 0))
        self.assertEqual(self.dequeue(), [])
        again = self.dequeue_one(max_wait=10)
        self.assertGreaterEqual(time.monotonic() - nacked_at, 1.3)
        self.assertLess(time.monotonic() - nacked_at, 4)
        self.assertEqual((again.id, again.attempt), (item.id, 2))

    def test_a_dead_nack_moves_the_item_to_the_dead_letters_with_its_reason(self):
        item = self.lease_one(b"poison")
        # The delay is ignored when dead.
        self.worker.nack(self.pull_path, item.lease_id, dead=True, reason="unparseable",
                         delay=3600)
        self.assertEqual(self.depth(), (0, 0, 0, 1))
        self.assertEqual(self.dequeue(max_wait=0.5), [])
        [dead] = self.dead_letters()
        self.assertEqual((dead.id, dead.reason, dead.attempt, dead.payload),
                         (item.id, "unparseable", 1, b"poison"))

    def test_a_negative_nack_delay_is_invalid(self):
        item = self.lease_one()
        before = self.snapshot()
        self.assert_refused("invalid", lambda: self.worker.nack(self.pull_path, item.lease_id,
                                                                delay=-1))
        self.assertEqual(self.snapshot(), before)

    # Extend.

    def test_extend_keeps_a_lease_past_its_expiry(self):
        item = self.lease_one(lease_ttl=1)
        self.worker.extend(self.pull_path, item.lease_id, 5)
        time.sleep(1.8)
        self.assertEqual(self.dequeue(), [])
        self.assertEqual(self.depth(), (0, 0, 1, 0))
        self.worker.ack(self.pull_path, item.lease_id)

    def test_extend_by_zero_is_a_no_op_success(self):
        item = self.lease_one(lease_ttl=1)
        self.worker.extend(self.pull_path, item.lease_id, 0)
        # Succeeds without looking at the lease.
        self.worker.extend(self.pull_path, "no-such-lease", 0)
        # And the lease still expires on time.
        again = self.dequeue_one(max_wait=5)
        self.assertEqual((again.id, again.attempt), (item.id, 2))

    def test_extend_is_capped_by_the_route_max_lease_ttl(self):
        item = self.lease_one(lease_ttl=2)
        self.worker.extend(self.pull_path, item.lease_id, 600)
        started = time.monotonic()
        again = self.dequeue_one(max_wait=10)
        self.assertLess(time.monotonic() - started, 4)
        self.assertEqual((again.id, again.attempt), (item.id, 2))

    def test_extend_of_an_expired_lease_is_a_lease_conflict(self):
        item = self.lease_one(lease_ttl=1)
        time.sleep(1.6)
        self.assert_lease_conflict(lambda: self.worker.extend(self.pull_path, item.lease_id, 30))

    # Expiry.

    def test_an_expired_lease_returns_to_the_queue_with_its_attempt_kept(self):
        item = self.lease_one(lease_ttl=1)
        again = self.dequeue_one(max_wait=10)
        self.assertEqual((again.id, again.attempt), (item.id, 2))
        self.assertNotEqual(again.lease_id, item.lease_id)
        self.assert_lease_conflict(lambda: self.worker.ack(self.pull_path, item.lease_id))
        result = self.worker.ack(self.pull_path, lease_ids=[item.lease_id, again.lease_id])
        self.assertEqual(result.count, 1)
        self.assertEqual(result.conflicts, [(item.lease_id, True)])
        self.assertGreaterEqual(self.stats().lease_expiries, 1)

    # Route scoping.

    def test_another_routes_lease_is_reported_exactly_like_an_unknown_one(self):
        item = self.lease_one()
        foreign = "/pull/foreign"
        before = self.snapshot()
        known = self.assert_lease_conflict(lambda: self.worker.ack(foreign, item.lease_id))
        unknown = self.assert_lease_conflict(lambda: self.worker.ack(foreign, "no-such-lease"))
        self.assertEqual((known.status, known.code, known.detail),
                         (unknown.status, unknown.code, unknown.detail))
        self.assert_lease_conflict(lambda: self.worker.nack(foreign, item.lease_id))
        self.assert_lease_conflict(lambda: self.worker.extend(foreign, item.lease_id, 30))
        batch = self.worker.ack(foreign, lease_ids=[item.lease_id])
        self.assertEqual((batch.count, batch.conflicts), (0, [(item.lease_id, False)]))
        batch = self.worker.nack(foreign, lease_ids=[item.lease_id], dead=True)
        self.assertEqual((batch.count, batch.conflicts), (0, [(item.lease_id, False)]))
        self.assertEqual(self.snapshot(), before)
        # Still valid on its own route.
        self.worker.extend(self.pull_path, item.lease_id, 30)
        self.worker.ack(self.pull_path, item.lease_id)

    # max_attempts (beyond Hookaido).

    def test_max_attempts_dead_letters_an_item_leased_that_often(self):
        item = self.lease_one()
        self.worker.nack(self.pull_path, item.lease_id)
        second = self.dequeue_one()
        self.assertEqual(second.attempt, 2)
        self.worker.nack(self.pull_path, second.lease_id)
        self.assertEqual(self.dequeue(max_wait=0.5), [])
        self.assertEqual(self.depth(), (0, 0, 0, 1))
        [dead] = self.dead_letters()
        self.assertEqual((dead.id, dead.reason, dead.attempt), (item.id, "max_attempts", 2))

    def test_max_attempts_counts_expired_leases_too(self):
        self.lease_one(lease_ttl=1)
        self.dequeue_one(max_wait=10, lease_ttl=1)
        time.sleep(1.5)
        self.assertEqual(self.dequeue(max_wait=0.5), [])
        self.assertEqual(self.depth(), (0, 0, 0, 1))
        self.assertEqual(self.dead_letters()[0].reason, "max_attempts")

    # Auth and the order of checks.

    def test_a_missing_or_wrong_token_is_unauthenticated_and_changes_nothing(self):
        self.post()
        item = self.lease_one()
        before = self.snapshot()
        for authorization in (None, "", "Bearer", "Bearer wrong-token", f"Basic {GLOBAL_TOKEN}",
                              f"Bearer {GLOBAL_TOKEN}x", f"Bearer {GLOBAL_TOKEN[:-1]}",
                              GLOBAL_TOKEN):
            for call in (
                lambda: self.worker.dequeue(self.pull_path, authorization=authorization),
                lambda: self.worker.ack(self.pull_path, item.lease_id, authorization=authorization),
                lambda: self.worker.nack(self.pull_path, item.lease_id, dead=True,
                                         authorization=authorization),
                lambda: self.worker.extend(self.pull_path, item.lease_id, 30,
                                           authorization=authorization),
            ):
                with self.subTest(authorization=authorization):
                    self.assert_refused("unauthenticated", call)
        self.assertEqual(self.snapshot(), before)
        self.worker.ack(self.pull_path, item.lease_id)

    def test_the_bearer_scheme_is_case_insensitive_and_the_value_trimmed(self):
        self.post_many(3)
        for authorization in (f"bearer {GLOBAL_TOKEN}", f"BEARER {GLOBAL_TOKEN}",
                              f"Bearer   {GLOBAL_TOKEN}  "):
            with self.subTest(authorization=authorization):
                [item] = self.worker.dequeue(self.pull_path, authorization=authorization)
                self.worker.ack(self.pull_path, item.lease_id, authorization=authorization)

    def test_an_unknown_endpoint_is_not_found(self):
        for call in (
            lambda: self.worker.dequeue("/pull/no-such-route"),
            lambda: self.worker.ack("/pull/no-such-route", "lease"),
            lambda: self.worker.nack("/pull/no-such-route", "lease"),
            lambda: self.worker.extend("/pull/no-such-route", "lease", 5),
        ):
            self.assert_refused("not_found", call)
        # The ingress path is not a pull endpoint.
        self.assert_refused("not_found", lambda: self.worker.dequeue(self.ingress_path))

    def test_checks_run_in_order_malformed_then_token_then_endpoint(self):
        unknown = "/pull/no-such-route"
        # Malformed beats a bad token and an unknown endpoint.
        self.assert_refused("invalid", lambda: self.worker.ack(
            unknown, lease_id="a", lease_ids=["b"], authorization="Bearer wrong"))
        self.assert_refused("invalid", lambda: self.worker.dequeue(
            unknown, max_wait=-1, authorization=None))
        over_the_cap = [f"lease-{i}" for i in range(101)]
        self.assert_refused("invalid", lambda: self.worker.ack(
            unknown, lease_ids=over_the_cap, authorization="Bearer wrong"))
        # A bad token beats an unknown endpoint.
        self.assert_refused("unauthenticated", lambda: self.worker.dequeue(
            unknown, authorization="Bearer wrong"))
        self.assert_refused("unauthenticated", lambda: self.worker.ack(
            unknown, "lease", authorization=None))

    def test_a_route_token_list_replaces_the_global_one(self):
        self.post_many(2)
        own = self.make_worker(token=ROUTE_TOKEN)
        self.addCleanup(own.close)
        # The global token is not valid for this route...
        self.assert_refused("unauthenticated", lambda: self.worker.dequeue(self.pull_path))
        # ...its own token is...
        [item] = own.dequeue(self.pull_path)
        own.extend(self.pull_path, item.lease_id, 10)
        self.assert_refused("unauthenticated",
                            lambda: self.worker.ack(self.pull_path, item.lease_id))
        own.ack(self.pull_path, item.lease_id)
        # ...and is valid only for it: other routes (and unknown endpoints) use the global list.
        other = self.route_table()["test_a_single_ack_settles_the_item"]
        self.assert_refused("unauthenticated", lambda: own.dequeue(f"/pull/{other}"))
        self.assert_refused("unauthenticated", lambda: own.dequeue("/pull/no-such-route"))
        self.assertEqual(self.depth(), (1, 0, 0, 0))

    def test_a_negative_max_wait_or_lease_ttl_is_invalid(self):
        self.post()
        self.assert_refused("invalid", lambda: self.dequeue(max_wait=-1))
        self.assert_refused("invalid", lambda: self.dequeue(lease_ttl=-1))
        self.assertEqual(self.depth(), (1, 0, 0, 0))

    # Ingress limits seen through a worker.

    def test_a_full_route_refuses_ingress_with_503(self):
        self.post_many(3)
        refused = self.post(b"4th", expect=503)
        self.assertIsInstance(refused, dict)
        self.assertIn("code", refused)
        # Leased items still count towards max_depth.
        item = self.dequeue_one()
        self.post(b"still full", expect=503)
        self.assertEqual(self.depth(), (2, 0, 1, 0))
        self.worker.ack(self.pull_path, item.lease_id)
        self.post(b"room again")
        self.assertEqual(self.depth(), (3, 0, 0, 0))


class GrpcSemanticsTest(WorkerSemantics, QueueTestCase):
    ROUTE_PREFIX = "g"

    def make_worker(self, token=GLOBAL_TOKEN):
        return GrpcWorker(self.ports["worker_grpc"], token)

    def test_grpc_extend_by_a_negative_duration_is_a_no_op_success(self):
        item = self.lease_one(lease_ttl=1)
        self.worker.extend(self.pull_path, item.lease_id, -5)
        self.worker.extend(self.pull_path, "no-such-lease", -5)
        self.assertEqual(self.dequeue_one(max_wait=5).id, item.id)

    def test_grpc_nothing_is_leased_to_a_caller_whose_deadline_passed(self):
        # The caller gives up after 0.5s though it asked to wait 10s.
        started = time.monotonic()
        self.assert_refused("deadline", lambda: self.dequeue(max_wait=10, timeout=0.5))
        self.assertLess(time.monotonic() - started, 3)
        message_id = self.post()
        time.sleep(0.3)
        self.assertEqual(self.depth(), (1, 0, 0, 0))
        self.assertEqual(self.dequeue_one().id, message_id)

    def test_grpc_empty_endpoint_is_invalid_or_not_found(self):
        with self.assertRaises(WorkerError) as raised:
            self.worker.dequeue("")
        self.assertIn(raised.exception.kind, ("invalid", "not_found"))


class HttpSemanticsTest(WorkerSemantics, QueueTestCase):
    ROUTE_PREFIX = "h"

    def make_worker(self, token=GLOBAL_TOKEN):
        return HttpWorker(self.ports["pull"], PULL_PREFIX, token)

    def test_http_errors_are_json_with_code_and_detail(self):
        calls = {
            404: lambda: self.worker.dequeue("/pull/no-such-route"),
            401: lambda: self.worker.dequeue(self.pull_path, authorization=None),
            409: lambda: self.worker.ack(self.pull_path, "no-such-lease"),
            400: lambda: self.worker.dequeue(self.pull_path, max_wait=-1),
        }
        for status, call in calls.items():
            with self.subTest(status=status):
                with self.assertRaises(WorkerError) as raised:
                    call()
                error = raised.exception
                self.assertEqual(error.status, status, error)
                self.assertTrue(error.code, error)
                self.assertTrue(error.detail, error)

    def test_http_nothing_is_leased_to_a_client_that_hung_up(self):
        # The client gives up after 0.5s though it asked to wait 10s, and closes its connection.
        with self.assertRaises(OSError):
            self.worker.post(self.pull_path, "dequeue", {"max_wait": "10s"}, timeout=0.5)
        time.sleep(0.3)
        message_id = self.post()
        time.sleep(0.3)
        self.assertEqual(self.depth(), (1, 0, 0, 0))
        self.assertEqual(self.dequeue_one().id, message_id)

    def test_http_the_pull_api_is_served_under_its_prefix_only(self):
        self.post()
        status, _, _ = http_request(self.ports["pull"], "POST", f"{self.pull_path}/dequeue",
                                    b"{}", {"Authorization": f"Bearer {GLOBAL_TOKEN}"})
        self.assertEqual(status, 404)
        self.assertEqual(self.depth(), (1, 0, 0, 0))


# ---- HTTP ingress ------------------------------------------------------------------------------


class IngressTest(QueueTestCase):
    ROUTE_PREFIX = "i"

    def test_a_post_is_answered_202_with_a_fresh_id(self):
        ids = self.post_many(5)
        self.assertEqual(len(set(ids)), 5)
        self.assertEqual(self.depth(), (5, 0, 0, 0))
        self.assertEqual(self.stats().enqueued, 5)

    def test_an_unknown_path_is_404(self):
        for path in ("/in/no-such-route", "/", self.pull_path, self.ingress_path + "/x",
                     self.ingress_path + "/"):
            with self.subTest(path=path):
                status, _, body = http_request(self.ports["ingress"], "POST", path, b"x")
                self.assertEqual(status, 404, body)
        self.assertEqual(self.depth(), (0, 0, 0, 0))

    def test_another_method_is_405(self):
        for method in ("GET", "PUT", "DELETE", "PATCH"):
            with self.subTest(method=method):
                status, _, body = http_request(self.ports["ingress"], method, self.ingress_path,
                                               b"x" if method != "GET" else b"")
                self.assertEqual(status, 405, body)
        self.assertEqual(self.depth(), (0, 0, 0, 0))

    def test_a_body_over_the_limit_is_413_and_one_at_the_limit_is_stored(self):
        self.post(b"a" * (INGRESS_MAX_BODY + 1), expect=413)
        self.assertEqual(self.depth(), (0, 0, 0, 0))
        self.post(b"a" * INGRESS_MAX_BODY)
        self.assertEqual(self.depth(), (1, 0, 0, 0))

    def test_an_empty_body_is_stored(self):
        message_id = self.post(b"")
        worker = GrpcWorker(self.ports["worker_grpc"])
        self.addCleanup(worker.close)
        [item] = worker.dequeue(self.pull_path)
        self.assertEqual((item.id, item.payload), (message_id, b""))

    def test_retention_drops_old_queued_items_and_dead_letters_but_not_leased_ones(self):
        worker = GrpcWorker(self.ports["worker_grpc"])
        self.addCleanup(worker.close)
        self.post_many(3)
        dead, leased = worker.dequeue(self.pull_path, batch=2, lease_ttl=120)
        worker.nack(self.pull_path, dead.lease_id, dead=True, reason="r")
        self.assertEqual(self.depth(), (1, 0, 1, 1))
        # Retention is swept periodically (every few seconds), not at once.
        harness.wait_for(lambda: self.depth() == (0, 0, 1, 0), 25, "the retention sweep")
        worker.ack(self.pull_path, leased.lease_id)

    def test_metrics_export_queue_depth_and_counters(self):
        self.post_many(2)
        status, _, body = http_request(self.controller.daemon.ports["http"], "GET", "/metrics")
        self.assertEqual(status, 200)
        text = body.decode()
        self.assertIn(f'pi_controller_queue_enqueued_total{{route="{self.route_name}"}} 2', text)
        self.assertRegex(text, rf'pi_controller_queue_depth{{[^}}]*route="{self.route_name}"')

    def test_the_ingress_is_not_authenticated_by_worker_tokens(self):
        # Webhook senders do not know worker tokens; credentials are dropped, not checked.
        self.post(b"x", headers={"Authorization": "Bearer whatever"})
        self.assertEqual(self.depth(), (1, 0, 0, 0))


class ConcurrentWorkersTest(QueueTestCase):
    """Many workers at once, over both transports, never get the same item twice while its
    lease is valid, and together get every item."""

    ROUTE_PREFIX = "c"
    MESSAGES = 600
    WORKERS = 8

    def test_concurrent_workers_never_share_an_item(self):
        ids = set()
        lock = threading.Lock()

        def produce(start):
            for n in range(start, self.MESSAGES, 4):
                message_id = self.post(f"c{n}".encode())
                with lock:
                    ids.add(message_id)

        delivered = []
        errors = []

        def consume(worker):
            try:
                idle = 0
                while idle < 3:
                    items = worker.dequeue(self.pull_path, batch=7, max_wait=0.5, lease_ttl=120)
                    if not items:
                        idle += 1
                        continue
                    idle = 0
                    with lock:
                        delivered.extend(i.id for i in items)
                    result = worker.ack(self.pull_path, lease_ids=[i.lease_id for i in items])
                    if result.conflicts or result.count != len(items):
                        errors.append(result)
            except Exception as error:  # reported by the test's thread
                errors.append(error)
            finally:
                worker.close()

        workers = [GrpcWorker(self.ports["worker_grpc"]) if n % 2 else
                   HttpWorker(self.ports["pull"]) for n in range(self.WORKERS)]
        threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
        threads += [threading.Thread(target=consume, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(len(delivered), len(set(delivered)), "an item was leased twice")
        self.assertEqual(set(delivered), ids)
        self.assertEqual(self.depth(), (0, 0, 0, 0))


# ---- Bad input on the HTTP Pull API changes nothing --------------------------------------------


class HttpBadInputTest(QueueTestCase):
    ROUTE_PREFIX = "b"

    def setUp(self):
        super().setUp()
        self.worker = HttpWorker(self.ports["pull"])
        # One queued item and one leased item, so every refusal has something it could break.
        self.post(b"queued-or-leased")
        self.post(b"queued-or-leased")
        [self.leased] = self.worker.dequeue(self.pull_path, lease_ttl=120)
        self.before = self.snapshot()
        self.foreign_before = self.snapshot("foreign")

    def expect(self, status, action, body, authorization=DEFAULT, endpoint=None, code=None):
        got, parsed, raw = self.worker.post(endpoint or self.pull_path, action, body, authorization)
        self.assertEqual(got, status, raw)
        self.assertIsInstance(parsed, dict, raw)
        if status >= 400 and status != 409 or code:
            self.assertTrue(parsed.get("code"), parsed)
            self.assertIn("detail", parsed)
        if code:
            self.assertEqual(parsed["code"], code)
        return parsed

    def assert_nothing_changed(self):
        self.assertEqual(self.snapshot(), self.before)
        self.assertEqual(self.snapshot("foreign"), self.foreign_before)
        # The leased item's lease is intact, and the queued item is still there.
        self.worker.extend(self.pull_path, self.leased.lease_id, 1)
        [queued] = self.worker.dequeue(self.pull_path)
        self.assertNotEqual(queued.id, self.leased.id)
        self.worker.ack(self.pull_path, lease_ids=[self.leased.lease_id, queued.lease_id])

    def tearDown(self):
        self.assert_nothing_changed()

    def lease(self):
        return self.leased.lease_id

    def test_malformed_json_is_400(self):
        for action in ("dequeue", "ack", "nack", "extend"):
            for body in (b"{", b"", b"[]", b"null", b'"text"', b"{}}", b"\xff\xfe",
                         b'{"lease_id": "a",}', b"{'lease_id': 'a'}"):
                with self.subTest(action=action, body=body):
                    self.expect(400, action, body)

    def test_unknown_fields_are_400(self):
        self.expect(400, "dequeue", {"batch": 1, "priority": 5})
        self.expect(400, "dequeue", {"Batch": 1})
        self.expect(400, "ack", {"lease_id": self.lease(), "force": True})
        self.expect(400, "nack", {"lease_id": self.lease(), "dead": True, "why": "x"})
        self.expect(400, "extend", {"lease_id": self.lease(), "extend_by": "1m", "x": 1})
        self.expect(400, "ack", {"lease_id": self.lease(), "payload_b64": ""})

    def test_wrong_field_types_are_400(self):
        self.expect(400, "dequeue", {"batch": "ten"})
        self.expect(400, "dequeue", {"batch": -1})
        self.expect(400, "dequeue", {"batch": 1.5})
        self.expect(400, "ack", {"lease_id": 42})
        self.expect(400, "ack", {"lease_ids": self.lease()})
        self.expect(400, "ack", {"lease_ids": [self.lease(), 7]})
        self.expect(400, "nack", {"lease_id": self.lease(), "dead": "yes", "reason": "r"})
        self.expect(400, "nack", {"lease_id": self.lease(), "dead": True, "reason": 3})

    def test_both_or_neither_of_lease_id_and_lease_ids_is_400(self):
        for action in ("ack", "nack"):
            with self.subTest(action=action):
                self.expect(400, action, {"lease_id": self.lease(), "lease_ids": [self.lease()]})
                self.expect(400, action, {})
                self.expect(400, action, {"lease_ids": []})
                self.expect(400, action, {"lease_id": ""})
        self.expect(400, "extend", {"extend_by": "1m"})
        self.expect(400, "extend", {"lease_id": self.lease(), "lease_ids": [self.lease()],
                                    "extend_by": "1m"})

    def test_a_batch_over_the_cap_is_400(self):
        ids = [self.lease()] + [f"bogus-{i}" for i in range(100)]
        self.expect(400, "ack", {"lease_ids": ids})
        self.expect(400, "nack", {"lease_ids": ids, "dead": True})

    def test_bad_durations_are_400(self):
        for value in ("soon", "-1s", "5 parsecs", "1", "", "1x", 30, ["1s"], "1s2"):
            with self.subTest(value=value):
                self.expect(400, "dequeue", {"max_wait": value})
                self.expect(400, "dequeue", {"lease_ttl": value})
                self.expect(400, "nack", {"lease_id": self.lease(), "delay": value})
                self.expect(400, "extend", {"lease_id": self.lease(), "extend_by": value})

    def test_a_wrong_or_missing_token_is_401(self):
        bodies = {"dequeue": {"batch": 10}, "ack": {"lease_id": self.lease()},
                  "nack": {"lease_id": self.lease(), "dead": True},
                  "extend": {"lease_id": self.lease(), "extend_by": "1h"}}
        for authorization in (None, "Bearer nope", f"Basic {GLOBAL_TOKEN}",
                              f"Bearer {ROUTE_TOKEN}"):
            for action, body in bodies.items():
                with self.subTest(authorization=authorization, action=action):
                    self.expect(401, action, body, authorization=authorization)

    def test_a_foreign_route_lease_is_409_like_an_unknown_one(self):
        foreign = "/pull/foreign"
        for action, body in (("ack", {"lease_id": self.lease()}),
                             ("nack", {"lease_id": self.lease(), "dead": True}),
                             ("extend", {"lease_id": self.lease(), "extend_by": "1h"})):
            with self.subTest(action=action):
                self.expect(409, action, body, endpoint=foreign, code="lease_conflict")
        parsed = self.expect(409, "ack", {"lease_ids": [self.lease()]}, endpoint=foreign)
        self.assertEqual(parsed, {"acked": 0, "conflicts": [{"lease_id": self.lease(),
                                                             "expired": False}]})
        parsed = self.expect(409, "nack", {"lease_ids": [self.lease()]}, endpoint=foreign)
        self.assertEqual(parsed["succeeded"], 0)

    def test_an_oversize_body_is_413(self):
        body = json.dumps({"lease_ids": ["x" * (1024 * 1024)]}).encode()
        self.expect(413, "ack", body)

    def test_another_method_is_405_and_an_unknown_action_404(self):
        for method in ("GET", "PUT", "DELETE"):
            status, _, _ = http_request(self.ports["pull"], method,
                                        f"{PULL_PREFIX}{self.pull_path}/dequeue",
                                        headers={"Authorization": f"Bearer {GLOBAL_TOKEN}"})
            self.assertEqual(status, 405, method)
        self.expect(404, "purge", {})
        self.expect(404, "dequeue", {}, endpoint="/pull/no-such-route")


# ---- pictl against the real controller ---------------------------------------------------------


class PictlQueueTest(QueueTestCase):
    """`pictl queue ...` end to end: the admin CLI, the Admin service and the engine."""

    ROUTE_PREFIX = "p"

    def setUp(self):
        super().setUp()
        with open(os.path.join(self.controller.admin_dir, "config.json")) as f:
            config = json.load(f)
        config["controller"] = self.controller.address
        self.pictl_config = os.path.join(self.controller.dir, "pictl-queue.json")
        # Relative certificate paths in the config are relative to its own directory.
        for key in ("ca_file", "cert_file", "key_file"):
            if not os.path.isabs(config[key]):
                config[key] = os.path.join(self.controller.admin_dir, config[key])
        with open(self.pictl_config, "w") as f:
            json.dump(config, f)

    def pictl(self, *args, expect=0):
        result = subprocess.run([os.environ["PI_PICTL_BIN"], "--config", self.pictl_config, *args],
                                capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, expect, f"pictl {args}: {result.stdout}{result.stderr}")
        return result

    def pictl_json(self, *args):
        return json.loads(self.pictl("--json", *args).stdout)

    def test_publish_stats_and_dead_letters_round_trip(self):
        published = self.pictl_json("queue", "publish", self.route_name, "--data", "hello",
                                    "-H", "content-type=text/plain")
        self.assertTrue(published["id"])
        stats = self.pictl_json("queue", "stats", self.route_name)["routes"][0]
        # int64 fields are JSON strings in the proto's JSON mapping.
        self.assertEqual((stats["route"], int(stats["queued"]), int(stats["enqueued"])),
                         (self.route_name, 1, 1))

        worker = GrpcWorker(self.ports["worker_grpc"])
        self.addCleanup(worker.close)
        [item] = worker.dequeue(self.pull_path, batch=10)
        self.assertEqual((item.id, item.payload), (published["id"], b"hello"))
        self.assertEqual(lower_keys(item.headers).get("content-type"), "text/plain")
        worker.nack(self.pull_path, lease_id=item.lease_id, dead=True, reason="bad input")

        dead = self.pictl_json("queue", "dead", "list", self.route_name)["items"]
        self.assertEqual([(d["id"], d["reason"]) for d in dead], [(item.id, "bad input")])
        table = self.pictl("queue", "dead", "list", self.route_name).stdout
        self.assertIn(item.id, table)
        self.pictl("queue", "dead", "requeue", self.route_name, "--all")
        self.assertEqual(self.depth(), (1, 0, 0, 0))
        [again] = worker.dequeue(self.pull_path)
        self.assertEqual((again.id, again.attempt), (item.id, 1))
        worker.nack(self.pull_path, lease_id=again.lease_id, dead=True, reason="still bad")
        self.pictl("queue", "dead", "delete", self.route_name, item.id)
        self.assertEqual(self.depth(), (0, 0, 0, 0))

    def test_errors_are_one_clear_line_and_change_nothing(self):
        unknown = self.pictl("queue", "stats", "no-such-route", expect=1)
        self.assertIn("no-such-route", unknown.stderr)
        self.assertEqual(len(unknown.stderr.strip().splitlines()), 1, unknown.stderr)
        self.pictl("queue", "publish", self.route_name, expect=2)  # neither --data nor --file
        self.assertEqual(self.depth(), (0, 0, 0, 0))


# ---- Interoperability: a plain grpcio client, no project code ----------------------------------


class InteropTest(QueueTestCase):
    """Hookaido's worker loop written directly against the generated stubs, as an existing
    Hookaido worker would run it: dequeue, extend, ack, nack (requeue and dead) with a bearer
    token, over a plaintext channel."""

    ROUTE_PREFIX = "x"

    def test_a_grpcio_worker_dequeues_extends_acks_and_nacks(self):
        ids = [self.post(f"job-{i}".encode(), headers={"X-Job": str(i)}) for i in range(4)]
        channel = grpc.insecure_channel(f"127.0.0.1:{self.ports['worker_grpc']}")
        self.addCleanup(channel.close)
        stub = workerapi_pb2_grpc.WorkerServiceStub(channel)
        metadata = [("authorization", f"Bearer {GLOBAL_TOKEN}")]

        response = stub.Dequeue(
            wpb.DequeueRequest(endpoint=self.pull_path, batch=4,
                               max_wait=duration_pb2.Duration(seconds=5),
                               lease_ttl=duration_pb2.Duration(seconds=2)),
            metadata=metadata, timeout=15)
        self.assertEqual([i.id for i in response.items], ids)
        for n, item in enumerate(response.items):
            self.assertEqual(item.payload, f"job-{n}".encode())
            self.assertEqual(item.attempt, 1)
            self.assertEqual(item.route, self.route_name)
            self.assertEqual(lower_keys(dict(item.headers))["x-job"], str(n))
            self.assertGreater(item.next_run_at.ToSeconds(), item.received_at.ToSeconds())
        done, retry, poison, slow = response.items

        # Extend returns google.protobuf.Empty.
        empty = stub.Extend(wpb.ExtendRequest(endpoint=self.pull_path, lease_id=slow.lease_id,
                                              extend_by=duration_pb2.Duration(seconds=60)),
                            metadata=metadata, timeout=5)
        self.assertEqual(empty.ByteSize(), 0)
        self.assertEqual(type(empty).DESCRIPTOR.full_name, "google.protobuf.Empty")

        acked = stub.Ack(wpb.AckRequest(endpoint=self.pull_path, lease_id=done.lease_id),
                         metadata=metadata, timeout=5)
        self.assertEqual(list(acked.conflicts), [])
        nacked = stub.Nack(wpb.NackRequest(endpoint=self.pull_path, lease_id=retry.lease_id),
                           metadata=metadata, timeout=5)
        self.assertEqual(list(nacked.conflicts), [])
        stub.Nack(wpb.NackRequest(endpoint=self.pull_path, lease_ids=[poison.lease_id], dead=True,
                                  reason="cannot parse"), metadata=metadata, timeout=5)

        # The nacked one comes back; the extended one outlives its 2s lease.
        time.sleep(2.5)
        again = stub.Dequeue(wpb.DequeueRequest(endpoint=self.pull_path, batch=10),
                             metadata=metadata, timeout=5)
        self.assertEqual([(i.id, i.attempt) for i in again.items], [(retry.id, 2)])
        batch = stub.Ack(wpb.AckRequest(endpoint=self.pull_path,
                                        lease_ids=[again.items[0].lease_id, slow.lease_id,
                                                   done.lease_id]),
                         metadata=metadata, timeout=5)
        self.assertEqual((batch.acked, list(batch.conflicts)), (3, []))
        self.assertEqual(self.depth(), (0, 0, 0, 1))
        self.assertEqual(self.dead_letters()[0].reason, "cannot parse")

        # Refusals carry the documented codes.
        with self.assertRaises(grpc.RpcError) as raised:
            stub.Ack(wpb.AckRequest(endpoint=self.pull_path, lease_id="no-such-lease"),
                     metadata=metadata, timeout=5)
        self.assertEqual(raised.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        with self.assertRaises(grpc.RpcError) as raised:
            stub.Dequeue(wpb.DequeueRequest(endpoint=self.pull_path), timeout=5)
        self.assertEqual(raised.exception.code(), grpc.StatusCode.UNAUTHENTICATED)

    def test_the_method_paths_are_hookaidos(self):
        message_id = self.post(b"raw")
        channel = grpc.insecure_channel(f"127.0.0.1:{self.ports['worker_grpc']}")
        self.addCleanup(channel.close)
        dequeue = channel.unary_unary(
            "/hookaido.worker.v1.WorkerService/Dequeue",
            request_serializer=wpb.DequeueRequest.SerializeToString,
            response_deserializer=wpb.DequeueResponse.FromString)
        response = dequeue(wpb.DequeueRequest(endpoint=self.pull_path),
                           metadata=[("authorization", f"Bearer {GLOBAL_TOKEN}")], timeout=5)
        self.assertEqual([i.id for i in response.items], [message_id])
        # Hookaido's field numbers, hand-encoded: AckRequest endpoint = 1, lease_ids = 3.
        ack = channel.unary_unary("/hookaido.worker.v1.WorkerService/Ack",
                                  request_serializer=lambda raw: raw,
                                  response_deserializer=wpb.AckResponse.FromString)
        endpoint = self.pull_path.encode()
        lease = response.items[0].lease_id.encode()
        raw = bytes([0x0A, len(endpoint)]) + endpoint + bytes([0x1A, len(lease)]) + lease
        answer = ack(raw, metadata=[("authorization", f"Bearer {GLOBAL_TOKEN}")], timeout=5)
        self.assertEqual(answer.acked, 1)


# ---- Worker transports over mTLS ---------------------------------------------------------------


class WorkerTlsTest(unittest.TestCase):
    """pull_api.tls with client_auth require_and_verify: both worker transports need a client
    certificate from the configured CA (certificates made by deploy/pki.sh for this test)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.TempDir("pi-queue-tls-")
        try:
            cls.start_controller()
        except Exception:
            cls.tmp.cleanup()
            raise

    @classmethod
    def start_controller(cls):
        cls.pki = harness.Pki(cls.tmp.join("pki"))
        cert, key = cls.pki.issue("pull-server", "controller", server=True)
        cls.pki.issue("worker", "runner:worker")
        queues = {
            "ingress": {"listen": "127.0.0.1:0"},
            "pull_api": {"listen": "127.0.0.1:0", "grpc_listen": "127.0.0.1:0",
                         "auth_tokens": [f"env:{GLOBAL_TOKEN_ENV}"],
                         "tls": {"cert_file": cert, "key_file": key,
                                 "client_ca": cls.pki.path("ca.crt"),
                                 "client_auth": "require_and_verify"}},
            "routes": [{"name": "tls", "ingress_path": "/in/tls", "pull_path": "/pull/tls"}],
        }
        cls.controller = harness.Controller(cls.tmp.join("controller"), extra={"queues": queues})
        cls.controller.start()
        cls.ports = cls.controller.daemon.ports

    @classmethod
    def tearDownClass(cls):
        cls.controller.stop()
        cls.tmp.cleanup()

    def post(self):
        status, _, body = http_request(self.ports["ingress"], "POST", "/in/tls", b"secret job")
        self.assertEqual(status, 202, body)
        return json.loads(body)["id"]

    def grpc_stub(self, client_certificate):
        channel = self.pki.channel(f"127.0.0.1:{self.ports['worker_grpc']}",
                                   "worker" if client_certificate else None)
        self.addCleanup(channel.close)
        return workerapi_pb2_grpc.WorkerServiceStub(channel)

    def test_grpc_with_a_client_certificate_and_a_token_works(self):
        message_id = self.post()
        stub = self.grpc_stub(client_certificate=True)
        metadata = [("authorization", f"Bearer {GLOBAL_TOKEN}")]
        response = stub.Dequeue(wpb.DequeueRequest(endpoint="/pull/tls"), metadata=metadata,
                                timeout=10)
        self.assertEqual([i.id for i in response.items], [message_id])
        stub.Ack(wpb.AckRequest(endpoint="/pull/tls", lease_id=response.items[0].lease_id),
                 metadata=metadata, timeout=5)
        # The token is still required on top of the certificate.
        with self.assertRaises(grpc.RpcError) as raised:
            stub.Dequeue(wpb.DequeueRequest(endpoint="/pull/tls"), timeout=5)
        self.assertEqual(raised.exception.code(), grpc.StatusCode.UNAUTHENTICATED)

    def test_grpc_without_a_client_certificate_or_in_plaintext_is_refused(self):
        self.post()
        metadata = [("authorization", f"Bearer {GLOBAL_TOKEN}")]
        for stub in (self.grpc_stub(client_certificate=False),
                     workerapi_pb2_grpc.WorkerServiceStub(
                         grpc.insecure_channel(f"127.0.0.1:{self.ports['worker_grpc']}"))):
            with self.assertRaises(grpc.RpcError) as raised:
                stub.Dequeue(wpb.DequeueRequest(endpoint="/pull/tls"), metadata=metadata,
                             timeout=5)
            self.assertEqual(raised.exception.code(), grpc.StatusCode.UNAVAILABLE)

    def https_pull(self, client_certificate):
        context = ssl.create_default_context(cafile=self.pki.path("ca.crt"))
        if client_certificate:
            context.load_cert_chain(self.pki.path("worker.crt"), self.pki.path("worker.key"))
        connection = http.client.HTTPSConnection("127.0.0.1", self.ports["pull"], timeout=10,
                                                 context=context)
        try:
            connection.request("POST", "/pull/tls/dequeue", body=b"{}",
                               headers={"Authorization": f"Bearer {GLOBAL_TOKEN}"})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def test_the_http_pull_api_uses_the_same_tls_settings(self):
        # QueuesConfig: the worker listener's TLS settings are "shared with the HTTP Pull API".
        self.post()
        try:
            status, body = self.https_pull(client_certificate=True)
        except OSError as error:
            self.fail(f"the HTTP Pull API refused a TLS client with a certificate ({error!r}): "
                      "it does not serve TLS although pull_api.tls is set")
        self.assertEqual(status, 200, body)
        with self.assertRaises(OSError):
            self.https_pull(client_certificate=False)
        with self.assertRaises(OSError):
            http_request(self.ports["pull"], "POST", "/pull/tls/dequeue", b"{}",
                         {"Authorization": f"Bearer {GLOBAL_TOKEN}"}, timeout=5)


# ---- Durability: kill -9 mid-stream ------------------------------------------------------------


def durability_queues():
    return {
        "ingress": {"listen": "127.0.0.1:0"},
        "pull_api": {"listen": "127.0.0.1:0", "grpc_listen": "127.0.0.1:0",
                     "auth_tokens": [f"env:{GLOBAL_TOKEN_ENV}"]},
        "routes": [{"name": "durable", "ingress_path": "/in/durable",
                    "pull_path": "/pull/durable"}],
    }


class DurabilityTest(unittest.TestCase):
    MESSAGES = 2000
    SENDERS = 4

    def setUp(self):
        self.tmp = harness.TempDir("pi-queue-durability-")
        self.addCleanup(self.tmp.cleanup)
        self.controller = harness.Controller(self.tmp.join("controller"),
                                             extra={"queues": durability_queues()})
        self.controller.start()
        self.addCleanup(self.controller.stop)

    def ports(self):
        return self.controller.daemon.ports

    def drain(self, worker, lease_ttl=30, quiet_rounds=2, ack=True):
        """Dequeues until the route stays empty; returns every item seen, in order."""
        seen = []
        empty = 0
        deadline = time.monotonic() + 120
        while empty < quiet_rounds:
            self.assertLess(time.monotonic(), deadline, "draining took too long")
            items = worker.dequeue("/pull/durable", batch=100, max_wait=1, lease_ttl=lease_ttl)
            if not items:
                empty += 1
                continue
            empty = 0
            seen.extend(items)
            if ack:
                result = worker.ack("/pull/durable", lease_ids=[i.lease_id for i in items])
                self.assertEqual((result.count, result.conflicts), (len(items), []))
        return seen

    def test_every_202_survives_a_kill_9_mid_stream(self):
        accepted = {}  # payload -> id, for posts answered 202
        failed = []
        lock = threading.Lock()
        port = self.ports()["ingress"]
        kill_after = self.MESSAGES // 3

        def send(sender):
            for n in range(sender, self.MESSAGES, self.SENDERS):
                payload = f"durable-{n:05d}".encode()
                try:
                    status, _, body = http_request(port, "POST", "/in/durable", payload, timeout=10)
                except (OSError, http.client.HTTPException) as error:
                    with lock:
                        failed.append((payload, repr(error)))
                    continue
                with lock:
                    if status == 202:
                        accepted[payload] = json.loads(body)["id"]
                    else:
                        failed.append((payload, status))

        senders = [threading.Thread(target=send, args=(s,)) for s in range(self.SENDERS)]
        for thread in senders:
            thread.start()
        harness.wait_for(lambda: len(accepted) >= kill_after, 60, f"{kill_after} posts")
        self.controller.kill()
        for thread in senders:
            thread.join(120)
        self.assertGreaterEqual(len(accepted), kill_after)
        self.assertTrue(failed, "the kill did not land mid-stream: every post got 202")
        self.assertEqual(len(accepted) + len(failed), self.MESSAGES)

        self.controller.start()
        worker = GrpcWorker(self.ports()["worker_grpc"])
        self.addCleanup(worker.close)
        delivered = self.drain(worker)
        delivered_ids = {i.id for i in delivered}
        lost = {p: i for p, i in accepted.items() if i not in delivered_ids}
        self.assertEqual(lost, {}, f"{len(lost)} of {len(accepted)} acknowledged posts were lost")
        sent = {f"durable-{n:05d}".encode() for n in range(self.MESSAGES)}
        for item in delivered:
            self.assertIn(item.payload, sent)
            if item.payload in accepted:
                self.assertEqual(item.id, accepted[item.payload])

        # Everything was acked: another kill -9 and restart delivers none of it again.
        worker.close()
        self.controller.kill()
        self.controller.start()
        worker = GrpcWorker(self.ports()["worker_grpc"])
        self.addCleanup(worker.close)
        self.assertEqual(worker.dequeue("/pull/durable", batch=100, max_wait=1.5), [])

    def test_an_acked_message_is_never_delivered_again_after_a_kill_9(self):
        port = self.ports()["ingress"]
        ids = []
        for n in range(60):
            status, _, body = http_request(port, "POST", "/in/durable", f"m{n}".encode())
            self.assertEqual(status, 202)
            ids.append(json.loads(body)["id"])
        worker = GrpcWorker(self.ports()["worker_grpc"])
        items = worker.dequeue("/pull/durable", batch=60, lease_ttl=5)
        leases_end = time.monotonic() + 5
        self.assertEqual([i.id for i in items], ids)
        acked = items[:30]
        result = worker.ack("/pull/durable", lease_ids=[i.lease_id for i in acked[:20]])
        self.assertEqual(result.count, 20)
        for item in acked[20:]:
            worker.ack("/pull/durable", item.lease_id)
        nacked_dead = items[30]
        worker.nack("/pull/durable", nacked_dead.lease_id, dead=True, reason="bad")
        worker.close()
        self.controller.kill()

        self.controller.start()
        worker = GrpcWorker(self.ports()["worker_grpc"])
        self.addCleanup(worker.close)
        time.sleep(max(0, leases_end - time.monotonic()) + 0.5)
        delivered = self.drain(worker)
        acked_ids = {i.id for i in acked} | {nacked_dead.id}
        delivered_ids = [i.id for i in delivered]
        self.assertEqual(acked_ids & set(delivered_ids), set())
        # The 29 that were only leased come back once their lease ran out, attempt kept.
        self.assertEqual(sorted(delivered_ids), sorted(i.id for i in items[31:]))
        self.assertTrue(all(i.attempt == 2 for i in delivered), [i.attempt for i in delivered])
        with self.controller.admin_channel() as admin_channel:
            admin = admin_pb2_grpc.AdminStub(admin_channel)
            [dead] = admin.ListDeadLetters(admin_pb2.ListDeadLettersRequest(route="durable"),
                                           timeout=5).items
        self.assertEqual((dead.id, dead.reason), (nacked_dead.id, "bad"))
        # And after a clean restart too (open client channels would hold up the shutdown).
        worker.close()
        self.assertEqual(self.controller.stop(), 0)
        self.controller.start()
        worker2 = GrpcWorker(self.ports()["worker_grpc"])
        self.addCleanup(worker2.close)
        self.assertEqual(worker2.dequeue("/pull/durable", batch=100, max_wait=1.5), [])


# ---- Configuration guardrails ------------------------------------------------------------------


class ConfigGuardrailTest(unittest.TestCase):
    """The worker gRPC listener needs a pull route and its own address (DESIGN 5.1)."""

    def setUp(self):
        self.tmp = harness.TempDir("pi-queue-config-")
        self.addCleanup(self.tmp.cleanup)
        self.runs = 0

    def run_controller(self, queues, listen="127.0.0.1:0", http_listen="127.0.0.1:0",
                       expect_start=False):
        """Runs pi-controller with this queues section: (exit code or None if it started,
        output, ports)."""
        self.runs += 1
        directory = self.tmp.join(f"run{self.runs}")
        os.makedirs(directory)
        config_path = os.path.join(directory, "controller.json")
        with open(config_path, "w") as f:
            json.dump({"state_dir": os.path.join(directory, "state"), "listen": listen,
                       "http_listen": http_listen, "queues": queues}, f)
        ports_file = os.path.join(directory, "ports.json")
        log_path = os.path.join(directory, "controller.log")
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [harness.CONTROLLER_BIN, "-c", config_path, "--ports-file", ports_file],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            deadline = time.monotonic() + 20
            ports = None
            while time.monotonic() < deadline and process.poll() is None:
                if os.path.exists(ports_file):
                    with open(ports_file) as f:
                        try:
                            ports = json.load(f)
                        except ValueError:
                            ports = None
                    if ports:
                        break
                time.sleep(0.05)
            code = process.poll()
            if code is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(10)
        with open(log_path, "rb") as f:
            output = f.read().decode(errors="replace")
        return code, output, ports

    def assert_refused(self, queues, key="grpc_listen", **kwargs):
        code, output, ports = self.run_controller(queues, **kwargs)
        self.assertIsNotNone(code, f"the controller started:\n{output}")
        self.assertNotEqual(code, 0, output)
        self.assertIsNone(ports, "it must refuse before listening")
        self.assertIn(key, output)
        return output

    @staticmethod
    def queues(grpc_listen, ingress="127.0.0.1:0", pull="127.0.0.1:0", pull_route=True):
        route = {"name": "r", "ingress_path": "/in/r"}
        if pull_route:
            route["pull_path"] = "/pull/r"
        return {"ingress": {"listen": ingress},
                "pull_api": {"listen": pull, "grpc_listen": grpc_listen,
                             "auth_tokens": [f"env:{GLOBAL_TOKEN_ENV}"]},
                "routes": [route]}

    def test_a_valid_configuration_starts(self):
        # The positive control for the refusals below.
        code, output, ports = self.run_controller(self.queues("127.0.0.1:0"))
        self.assertIsNone(code, output)
        for key in ("ingress", "pull", "worker_grpc"):
            self.assertGreater(ports.get(key, 0), 0, ports)

    def test_the_worker_listener_is_off_without_an_address(self):
        code, output, ports = self.run_controller(self.queues("", pull_route=False))
        self.assertIsNone(code, output)
        self.assertEqual(ports.get("worker_grpc"), 0, ports)
        self.assertGreater(ports.get("ingress", 0), 0, ports)

    def test_the_worker_listener_must_differ_from_the_ingress_listener(self):
        address = f"127.0.0.1:{free_port()}"
        self.assert_refused(self.queues(address, ingress=address))

    def test_the_worker_listener_must_differ_from_the_pull_api_listener(self):
        address = f"127.0.0.1:{free_port()}"
        self.assert_refused(self.queues(address, pull=address))

    def test_the_worker_listener_must_differ_from_the_cluster_listener(self):
        address = f"127.0.0.1:{free_port()}"
        self.assert_refused(self.queues(address), listen=address)

    def test_the_worker_listener_must_differ_from_the_metrics_listener(self):
        address = f"127.0.0.1:{free_port()}"
        self.assert_refused(self.queues(address), http_listen=address)

    def test_the_worker_listener_needs_a_pull_route(self):
        self.assert_refused(self.queues(f"127.0.0.1:{free_port()}", pull_route=False))


if __name__ == "__main__":
    unittest.main()
