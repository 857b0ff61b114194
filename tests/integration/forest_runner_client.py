"""A stand-alone Forest runner that follows only the seed proto (forest/v1/runner.proto) and
behaves like the stock Forest runner: it registers with its capabilities, heartbeats, never sends
WorkAck, and for every WorkAssignment fetches the release files, the spec files, the annotation
and the project info, pushes log lines and completes the release with SUCCESS (with plan output in
plan mode). Nothing of Pi-Controller's own code or protos is used.

Variants for tests: ack="accept" or ack="reject" sends WorkAck (reject = give the work back);
hold=True keeps every assignment without working on it, so a test can use its token.

As a library:
    runner = ForestRunner(address, ca_pem, cert_pem, key_pem, [("org", "name", 1)]).start()
    runner.wait_registered()
    done = runner.wait_completed(release_id)
    runner.stop()

As a command (one JSON object per line on stdout for each event: registered, assigned,
completed, rejected, error, ended):
    forest_runner_client.py --address 127.0.0.1:9090 --ca ca.crt --cert runner.crt \\
        --key runner.key --capability org/name@1 [--capability ...] [--runner-id ID]
        [--max-concurrent N] [--heartbeat-interval S] [--hold] [--reject] [--accept]
"""

import argparse
import json
import os
import queue
import sys
import threading
import time

if "PI_PROTO_PYTHON_DIR" in os.environ:
    sys.path.insert(0, os.environ["PI_PROTO_PYTHON_DIR"])

import grpc  # noqa: E402

try:
    from forest.v1 import runner_pb2, runner_pb2_grpc
except ImportError as error:
    raise ImportError(f"{error}: set PI_PROTO_PYTHON_DIR to the build's proto/python directory "
                      "(stubs generated from proto/forest/v1/runner.proto)") from error

fpb = runner_pb2

MODE_NAMES = {fpb.RELEASE_MODE_UNSPECIFIED: "deploy", fpb.RELEASE_MODE_DEPLOY: "deploy",
              fpb.RELEASE_MODE_PLAN: "plan"}


def parse_capability(text):
    """"org/name@version" as (organisation, name, version)."""
    head, _, version = text.rpartition("@")
    organisation, _, name = head.partition("/")
    if not organisation or not name or not version.isdigit():
        raise ValueError(f"capability {text!r}: expected organisation/name@version")
    return organisation, name, int(version)


def default_plan_output(work):
    return f"runner {work['runner_id']} would deploy {len(work['files'])} file(s)\n" \
           "Plan: 0 to change, 0 unchanged."


class ForestRunner:
    def __init__(self, address, ca_pem, cert_pem, key_pem, capabilities, runner_id="",
                 max_concurrent=1, heartbeat_interval=1.0, ack=None, hold=False,
                 plan_output=default_plan_output, on_event=None):
        """capabilities: (organisation, name, version) tuples. ack: None (the stock runner never
        acks), "accept" or "reject". cert_pem/key_pem None: no client certificate."""
        self.address = address
        self.capabilities = list(capabilities)
        self.requested_id = runner_id
        self.max_concurrent = max_concurrent
        self.heartbeat_interval = heartbeat_interval
        self.ack = ack
        self.hold = hold
        self.plan_output = plan_output
        self.on_event = on_event or (lambda event: None)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem)
        self.channel = grpc.secure_channel(address, credentials)
        self.stub = runner_pb2_grpc.RunnerServiceStub(self.channel)
        self.runner_id = None
        self.register_ack = None
        self.stream_error = None  # the grpc.RpcError that ended the stream, if any
        self.assigned = {}  # release_id -> the WorkAssignment
        self.completed = {}  # release_id -> dict of what was fetched and pushed
        self.errors = {}  # release_id -> the exception a fetch or completion raised
        self._lock = threading.Condition()
        self._outgoing = queue.Queue()
        self._active = 0
        self._stopping = threading.Event()
        self._ended = threading.Event()
        self._call = None
        self._threads = []

    # ---- life cycle

    def start(self):
        register = fpb.RunnerRegister(runner_id=self.requested_id,
                                      max_concurrent=self.max_concurrent)
        for organisation, name, version in self.capabilities:
            register.capabilities.add(organisation=organisation, name=name, version=version)
        self._outgoing.put(fpb.RunnerMessage(register=register))
        self._call = self.stub.RegisterRunner(self._requests())
        self._spawn(self._read)
        self._spawn(self._heartbeat)
        return self

    def stop(self):
        """Ends the stream as a runner that shuts down does (half-close), then closes."""
        self._stopping.set()
        self._outgoing.put(None)
        self._ended.wait(5)
        self.cancel()
        self.channel.close()

    def cancel(self):
        """Cancels the RegisterRunner stream at once, as a lost connection would."""
        self._stopping.set()
        if self._call is not None:
            self._call.cancel()
        self._ended.wait(5)

    def _spawn(self, target, *args):
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _requests(self):
        while True:
            message = self._outgoing.get()
            if message is None:
                return
            yield message

    def _heartbeat(self):
        while not self._stopping.wait(self.heartbeat_interval):
            with self._lock:
                active = self._active
            self._outgoing.put(fpb.RunnerMessage(
                heartbeat=fpb.RunnerHeartbeat(active_releases=active)))

    def _read(self):
        try:
            for message in self._call:
                kind = message.WhichOneof("message")
                if kind == "register_ack":
                    with self._lock:
                        self.register_ack = message.register_ack
                        self.runner_id = message.register_ack.runner_id
                        self._lock.notify_all()
                    self.on_event({"event": "registered", "runner_id": self.runner_id,
                                   "accepted": message.register_ack.accepted,
                                   "reason": message.register_ack.reason})
                elif kind == "work_assignment":
                    self._assigned(message.work_assignment)
        except grpc.RpcError as error:
            with self._lock:
                self.stream_error = error
        finally:
            self._stopping.set()
            self._outgoing.put(None)
            with self._lock:
                self._ended.set()
                self._lock.notify_all()
            code = self.stream_error.code().name if self.stream_error else "OK"
            self.on_event({"event": "ended", "code": code,
                           "details": self.stream_error.details() if self.stream_error else ""})

    # ---- work

    def _assigned(self, work):
        with self._lock:
            self.assigned[work.release_id] = work
            self._active += 1
            self._lock.notify_all()
        self.on_event({"event": "assigned", "release_id": work.release_id,
                       "release_token": work.release_token, "mode": MODE_NAMES[work.mode]})
        if self.ack is not None:
            accepted = self.ack == "accept"
            self._outgoing.put(fpb.RunnerMessage(work_ack=fpb.WorkAck(
                release_token=work.release_token, accepted=accepted)))
            if not accepted:
                with self._lock:
                    self._active -= 1
                self.on_event({"event": "rejected", "release_id": work.release_id})
                return
        if not self.hold:
            self._spawn(self._work, work)

    def _work(self, work):
        token = work.release_token
        try:
            files = self.fetch_files(token)
            specs = self.fetch_spec_files(token)
            annotation = self.stub.GetReleaseAnnotation(
                fpb.GetReleaseAnnotationRequest(release_token=token), timeout=10)
            project = self.stub.GetProjectInfo(
                fpb.GetProjectInfoRequest(release_token=token), timeout=10)
            record = {
                "runner_id": self.runner_id,
                "release_id": work.release_id,
                "release_token": token,
                "mode": MODE_NAMES[work.mode],
                "destination": work.destination,
                "files": files,
                "spec_files": specs,
                "annotation": annotation,
                "project": project,
            }
            lines = [("stdout", f"release {work.release_id} on runner {self.runner_id}")]
            lines += [("stdout", f"file {name}: {len(content)} bytes")
                      for name, content in sorted(files.items())]
            lines += [("stderr", f"project {project.organisation}/{project.project}")]
            self.push_logs(token, lines)
            record["log_lines"] = lines
            plan_output = self.plan_output(record) if work.mode == fpb.RELEASE_MODE_PLAN else None
            record["plan_output"] = plan_output
            self.complete(token, fpb.RELEASE_OUTCOME_SUCCESS, plan_output=plan_output)
            with self._lock:
                self.completed[work.release_id] = record
                self._active -= 1
                self._lock.notify_all()
            self.on_event({"event": "completed", "release_id": work.release_id})
        except Exception as error:  # noqa: BLE001 (a test waiting on the release re-raises it)
            with self._lock:
                self.errors[work.release_id] = error
                self._active -= 1
                self._lock.notify_all()
            code = error.code().name if isinstance(error, grpc.RpcError) else type(error).__name__
            self.on_event({"event": "error", "release_id": work.release_id, "code": code,
                           "details": str(error)})

    # ---- token-scoped calls, usable by tests with any token

    def fetch_files(self, token, timeout=10):
        return {f.file_name: f.file_content for f in self.stub.GetReleaseFiles(
            fpb.GetReleaseFilesRequest(release_token=token), timeout=timeout)}

    def fetch_spec_files(self, token, timeout=10):
        return {f.file_name: f.file_content for f in self.stub.GetSpecFiles(
            fpb.GetSpecFilesRequest(release_token=token), timeout=timeout)}

    def push_logs(self, token, lines, timeout=10):
        """lines: (channel, text) pairs, sent on one PushLogs stream."""
        now = int(time.time() * 1000)
        return self.stub.PushLogs(iter([
            fpb.PushLogRequest(release_token=token, channel=channel, line=line, timestamp=now)
            for channel, line in lines]), timeout=timeout)

    def complete(self, token, outcome, error_message="", plan_output=None, timeout=10):
        request = fpb.CompleteReleaseRequest(release_token=token, outcome=outcome,
                                             error_message=error_message)
        if plan_output is not None:
            request.plan_output = plan_output
        return self.stub.CompleteRelease(request, timeout=timeout)

    # ---- waiting

    def _wait(self, predicate, timeout, what):
        """timeout None: wait for ever."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                value = predicate()
                if value:
                    return value
                if deadline is None:
                    self._lock.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"runner {self.runner_id or self.requested_id}: timed out "
                                       f"after {timeout}s waiting for {what}")
                self._lock.wait(remaining)

    def wait_registered(self, timeout=10):
        """The RegisterAck, or raises the error that ended the stream before one came."""
        def registered():
            if self.register_ack is not None:
                return self.register_ack
            if self._ended.is_set():
                raise self.stream_error or RuntimeError("stream ended without a RegisterAck")
            return None
        return self._wait(registered, timeout, "RegisterAck")

    def wait_ended(self, timeout=10):
        """The error that ended the stream (None when it ended OK)."""
        self._wait(self._ended.is_set, timeout, "the stream to end")
        return self.stream_error

    def wait_assigned(self, release_id=None, timeout=10):
        def assigned():
            if release_id is None:
                return next(iter(self.assigned.values()), None)
            return self.assigned.get(release_id)
        return self._wait(assigned, timeout, f"assignment of {release_id or 'any release'}")

    def wait_completed(self, release_id, timeout=10):
        def completed():
            if release_id in self.errors:
                raise self.errors[release_id]
            return self.completed.get(release_id)
        return self._wait(completed, timeout, f"completion of {release_id}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--capability", action="append", required=True, type=parse_capability,
                        help="organisation/name@version (repeatable)")
    parser.add_argument("--runner-id", default="")
    parser.add_argument("--max-concurrent", type=int, default=1)
    parser.add_argument("--heartbeat-interval", type=float, default=10.0)
    parser.add_argument("--hold", action="store_true", help="keep work without doing it")
    ack = parser.add_mutually_exclusive_group()
    ack.add_argument("--reject", action="store_const", dest="ack", const="reject")
    ack.add_argument("--accept", action="store_const", dest="ack", const="accept")
    args = parser.parse_args()

    def read(path):
        if not path:
            return None
        with open(path, "rb") as f:
            return f.read()

    printed = threading.Lock()

    def report(event):
        with printed:
            print(json.dumps(event), flush=True)

    runner = ForestRunner(args.address, read(args.ca), read(args.cert), read(args.key),
                          args.capability, runner_id=args.runner_id,
                          max_concurrent=args.max_concurrent,
                          heartbeat_interval=args.heartbeat_interval, ack=args.ack,
                          hold=args.hold, on_event=report)
    runner.start()
    try:
        runner.wait_ended(timeout=None)
    except KeyboardInterrupt:
        runner.stop()
    return 0 if runner.stream_error is None else 1


if __name__ == "__main__":
    sys.exit(main())
