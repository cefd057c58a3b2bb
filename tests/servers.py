"""Real servers on loopback for the DVC remote tests: OpenSSH's sshd (an ssh:// remote) and moto's S3
server (an s3:// remote, the way DVC's own S3 plugin tests), each started and stopped by the test.

Each can be stopped and started again on the same port with what it stored kept: sshd serves a
folder, moto keeps its buckets in this process's memory. Stopping kills the connections too, as a
server going down does (sshd's per-connection processes with it).
"""

import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def descendants(pid):
    """The process ids under `pid` (from /proc), deepest last."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def required(program, package):
    """The path of `program`; where it is missing, a skip on a workstation and a failure in CI (.ci/run
    installs `package`)."""
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin")  # sbin: off a user's PATH
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"no {program}: .ci/run installs {package}")
        pytest.skip(f"no {program} on this machine (Debian's {package}; .ci/run installs it)")
    return path


class OpenSSHServer:
    """sshd on 127.0.0.1 for the current user, public-key login only (a throw-away host key and user
    key under `root`), with the SFTP subsystem DVC's ssh remote uses. `home` holds the client's
    ~/.ssh/known_hosts naming the host key, so the client checks it as a user's would."""

    def __init__(self, root):
        self.sshd = required("sshd", "openssh-server")
        self.root = Path(root)
        self.root.mkdir(parents=True)
        self.port, self.user = free_port(), getpass.getuser()
        for name in ("host_key", "user_key", "stranger_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.root / name], check=True)
        (self.root / "authorized_keys").write_text((self.root / "user_key.pub").read_text())
        self.home = self.root / "home"
        (self.home / ".ssh").mkdir(parents=True)
        host_key = (self.root / "host_key.pub").read_text().split()[:2]
        (self.home / ".ssh/known_hosts").write_text(f"[127.0.0.1]:{self.port} {' '.join(host_key)}\n")
        self.storage = self.root / "storage"
        self.storage.mkdir()
        (self.root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.root / 'host_key'}\n"
            f"PidFile {self.root / 'sshd.pid'}\nAuthorizedKeysFile {self.root / 'authorized_keys'}\n"
            "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nSubsystem sftp internal-sftp\n"
            "LogLevel ERROR\n"
        )
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(exist_ok=True)  # its privilege separation directory
        self.process = None

    @property
    def url(self):
        return f"ssh://{self.user}@127.0.0.1:{self.port}{self.storage}"

    def start(self):
        log = open(self.root / "sshd.log", "ab")  # noqa: SIM115  (open while the server runs)
        command = [self.sshd, "-D", "-e", "-f", self.root / "sshd_config"]
        self.process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        wait_for_port(self.port)

    def stop(self):
        if self.process is None:
            return
        for pid in [self.process.pid, *descendants(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()
        self.process = None


class MotoS3Server:
    """moto's S3 server in this process (its buckets survive a stop and start), on 127.0.0.1, checking
    credentials as AWS does: one IAM user, `keys`, allowed S3; any other key is refused. moto's state is
    this process's, so each server has its own user and `bucket`."""

    def __init__(self):
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.running = False
        self.keys = None
        self.bucket = f"team-{self.port}"

    def start(self):
        from moto import settings

        self.server.start()
        wait_for_port(self.port)
        self.running = True
        if self.keys is None:  # the first start: the user, its keys and the bucket, before checks begin
            iam = self.client("iam", ("admin", "admin"))
            iam.create_user(UserName=self.bucket)
            key = iam.create_access_key(UserName=self.bucket)["AccessKey"]
            policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
            iam.put_user_policy(UserName=self.bucket, PolicyName="s3", PolicyDocument=json.dumps(policy))
            self.keys = (key["AccessKeyId"], key["SecretAccessKey"])
            self.client().create_bucket(Bucket=self.bucket)
            self.unchecked, settings.INITIAL_NO_AUTH_ACTION_COUNT = settings.INITIAL_NO_AUTH_ACTION_COUNT, 0

    def stop(self):
        if self.running:
            self.server.stop()
            self.running = False

    def close(self):
        from moto import settings

        self.stop()
        if self.keys is not None:
            settings.INITIAL_NO_AUTH_ACTION_COUNT = self.unchecked

    def client(self, service="s3", keys=None):
        import boto3

        key_id, secret = keys or self.keys
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            region_name="us-east-1",
        )
