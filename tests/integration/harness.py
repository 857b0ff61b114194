"""Shared pieces of the integration tests: a test PKI made with deploy/pki.sh, the real daemons
started on 127.0.0.1 with ports chosen at run time, and mTLS channels for each identity.

Environment (set by ctest): PI_SOURCE_DIR, PI_AGENT_BIN, PI_PROTO_PYTHON_DIR.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.environ["PI_PROTO_PYTHON_DIR"])

import grpc  # noqa: E402

SOURCE_DIR = os.environ["PI_SOURCE_DIR"]
PKI_SH = os.path.join(SOURCE_DIR, "deploy", "pki.sh")


def wait_for(predicate, timeout, what):
    """Polls predicate until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Pki:
    """A cluster CA in its own directory, issuing certificates whose CN is the identity."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self._run("init", directory)

    def _run(self, *args):
        subprocess.run([PKI_SH, *args], check=True, stderr=subprocess.DEVNULL)

    def issue(self, name, identity, server=False):
        extra = ["--dns", "localhost", "--ip", "127.0.0.1"] if server else []
        self._run("issue", self.dir, name, identity, *extra)
        return self.path(name + ".crt"), self.path(name + ".key")

    def path(self, name):
        return os.path.join(self.dir, name)

    def read(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()

    def channel(self, address, name):
        """A secure channel presenting the certificate `name` (None: no client certificate)."""
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.read("ca.crt"),
            private_key=self.read(name + ".key") if name else None,
            certificate_chain=self.read(name + ".crt") if name else None,
        )
        return grpc.secure_channel(address, credentials)


class Daemon:
    """A real daemon process whose listeners bind port 0 and report their ports in a file."""

    def __init__(self, argv, ports_file, log_path, env=None):
        self.ports_file = ports_file
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        self.ports = wait_for(self._read_ports, 30, f"{argv[0]} to write {ports_file}")

    def _read_ports(self):
        if self.process.poll() is not None:
            raise RuntimeError(f"daemon exited with {self.process.returncode}:\n{self.log()}")
        try:
            with open(self.ports_file) as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def terminate(self, timeout=10):
        """SIGTERM, then waits; returns the exit code (SIGKILL and raises if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
                raise
        self._log.close()
        return self.process.returncode


class TempDir:
    def __init__(self, prefix):
        self.path = tempfile.mkdtemp(prefix=prefix)

    def join(self, *parts):
        return os.path.join(self.path, *parts)

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


class NotifySocket:
    """A NOTIFY_SOCKET like systemd's, to see what a Type=notify daemon reports."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.05)
        self.messages = []

    def drain(self):
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except (socket.timeout, BlockingIOError):
                return self.messages

    def close(self):
        self.sock.close()


CONTROLLER_BIN = os.environ.get("PI_CONTROLLER_BIN", "")


class Controller:
    """A real pi-controller with its own state dir, an admin bundle made by `issue-admin`, and
    listeners on ports chosen at run time. Restartable on the same state dir."""

    def __init__(self, directory, cluster=None, name="controller", extra=None):
        self.dir = directory
        self.name = name
        os.makedirs(directory, exist_ok=True)
        self.state_dir = os.path.join(directory, "state")
        self.config_path = os.path.join(directory, "controller.json")
        config = {
            "state_dir": self.state_dir,
            "listen": "127.0.0.1:0",
            "http_listen": "127.0.0.1:0",
            "log_level": "debug",
            "cluster": cluster
            or {
                "heartbeat_interval": "1s",
                "heartbeat_ttl": "2s",
                "down_grace": "1s",
                "health_poll_interval": "1s",
                "health_poll_timeout": "1s",
            },
        }
        config.update(extra or {})
        with open(self.config_path, "w") as f:
            json.dump(config, f)
        self.admin_dir = os.path.join(directory, "admin")
        subprocess.run(
            [CONTROLLER_BIN, "-c", self.config_path, "issue-admin", "alice", "--out", self.admin_dir],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # pki.sh can issue extra certificates from the controller's CA.
        self.pki = Pki(config.get("ca_dir", self.state_dir))
        self.daemon = None
        self.starts = 0

    def start(self):
        self.starts += 1
        ports_file = os.path.join(self.dir, f"ports-{self.starts}.json")
        self.daemon = Daemon(
            [CONTROLLER_BIN, "-c", self.config_path, "--ports-file", ports_file],
            ports_file,
            os.path.join(self.dir, f"{self.name}-{self.starts}.log"),
        )
        self.address = f"127.0.0.1:{self.daemon.ports['grpc']}"
        return self

    def read(self, *parts):
        with open(os.path.join(*parts), "rb") as f:
            return f.read()

    def ca_pem(self):
        return self.read(self.pki.path("ca.crt"))

    def admin_channel(self):
        return self.channel(
            self.read(self.admin_dir, "admin.key"), self.read(self.admin_dir, "admin.crt")
        )

    def channel(self, key=None, cert=None):
        """A TLS channel to the controller; with key and cert it is mTLS."""
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem(), private_key=key, certificate_chain=cert
        )
        return grpc.secure_channel(self.address, credentials)

    def kill(self):
        """SIGKILL: no shutdown path runs."""
        os.killpg(self.daemon.process.pid, signal.SIGKILL)
        self.daemon.process.wait()
        self.daemon.terminate()

    def stop(self):
        if self.daemon is not None and self.daemon.process.poll() is None:
            return self.daemon.terminate()
        return self.daemon.process.returncode if self.daemon else None


def make_csr(directory, name):
    """A P-256 key and a CSR for it made with openssl: (key_pem, csr_pem)."""
    key = os.path.join(directory, name + ".key")
    csr = os.path.join(directory, name + ".csr")
    subprocess.run(
        ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key], check=True
    )
    subprocess.run(
        ["openssl", "req", "-new", "-key", key, "-subj", "/CN=ignored", "-out", csr], check=True
    )
    with open(key, "rb") as k, open(csr, "rb") as c:
        return k.read(), c.read()


PICTL_BIN = os.environ.get("PI_PICTL_BIN", "")


class Pictl:
    """pictl with the controller's admin bundle, pointed at the controller's address."""

    def __init__(self, controller):
        self.config = os.path.join(controller.admin_dir, "config.json")
        self.point_at(controller)

    def point_at(self, controller):
        """Follows a controller restarted on another port."""
        with open(self.config) as f:
            config = json.load(f)
        config["controller"] = controller.address
        with open(self.config, "w") as f:
            json.dump(config, f)

    def run(self, *args, check=True, timeout=30):
        result = subprocess.run([PICTL_BIN, "--config", self.config, *args],
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"pictl {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def json(self, *args, timeout=30):
        return json.loads(self.run("--json", *args, timeout=timeout).stdout)
