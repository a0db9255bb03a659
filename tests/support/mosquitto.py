"""A real Mosquitto broker for the MQTT tests, and a subscriber that records what it sees.

`Broker(tmp_path)` writes a config (one listener on 127.0.0.1 and a free port, anonymous clients,
persistence off unless asked for) and `start()`s Debian's `mosquitto` on it, polling until the port
accepts connections. `stop()` ends it with SIGTERM (a restart keeps the port); `url` is its
`mqtt://` URL. Without mosquitto installed the test is skipped with the reason, except under CI
(`CI` set), where it fails: `.ci/run` installs it.

`make_tls_files(dir)` makes a throwaway CA and server certificate with `openssl` for
`Broker(dir, tls=...)`, a TLS listener.

`Subscriber(port, "autorec/#")` is a paho client on its own thread that subscribes again after every
reconnect and keeps each message (`topic`, `payload`, `retain`); `wait_for(predicate)` polls them.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.polling import wait_until

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """A throwaway certificate authority and a server certificate for 127.0.0.1, made with `openssl`."""
    openssl = shutil.which("openssl")
    if openssl is None:
        message = "openssl not installed: apt-get install openssl"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    d = directory
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    new_key = ["-newkey", "rsa:2048", "-nodes", "-days", "1"]
    for argv in (
        ["req", "-x509", *new_key, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=autorec test CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
         "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
         "-out", "server.pem", "-extfile", "san.ext"],
    ):  # fmt: skip
        subprocess.run([openssl, *argv], cwd=d, check=True, capture_output=True)
    return TlsFiles(d / "ca.pem", d / "server.pem", d / "server.key")


class Broker:
    def __init__(
        self,
        directory: Path,
        *,
        persistence: bool = False,
        tls: TlsFiles | None = None,
        users: dict[str, str] | None = None,
    ) -> None:
        if not os.path.exists(MOSQUITTO):
            message = f"mosquitto not installed ({MOSQUITTO}): apt-get install mosquitto"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        self.directory = directory
        self.port = free_port()
        self.config = directory / "mosquitto.conf"
        # started as root, mosquitto would switch to its own user, who cannot read or write the test's directory
        lines = [f"listener {self.port} 127.0.0.1", f"user {getpass.getuser()}"]
        if users:  # only these may connect
            passwords = directory / "mosquitto.passwd"
            passwords.write_text("")
            for name, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwords), name, password], check=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines += ["allow_anonymous true"]
        if tls is not None:
            lines += [f"cafile {tls.ca}", f"certfile {tls.cert}", f"keyfile {tls.key}"]
        if persistence:
            lines += ["persistence true", f"persistence_location {directory}/"]
        else:
            lines += ["persistence false"]
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Broker:
        self.starts += 1
        log = open(self.directory / f"mosquitto-{self.starts}.log", "wb")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_until(lambda: accepts(self.port) or self.proc.poll() is not None, 10, "mosquitto to accept connections")
        assert self.proc.poll() is None, (self.directory / f"mosquitto-{self.starts}.log").read_text()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Received:
    topic: str
    payload: str
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """A paho subscriber to `pattern` on the broker at 127.0.0.1:`port`. See the module docstring."""

    def __init__(self, port: int, pattern: str = "autorec/#", *, client_id: str = "", clean: bool = True) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.pattern = pattern
        self.messages: list[Received] = []
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        self.client.reconnect_delay_set(0.2, 0.5)  # the test waits on it: come back quickly after a restart
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(pattern, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rc, p: self.subscribed.set()
        self.client.on_message = self._message
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        wait_until(self.subscribed.is_set, 10, f"the subscription to {pattern}")

    def _message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append(Received(msg.topic, msg.payload.decode(), bool(msg.retain)))

    def received(self, topic_end: str = "") -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(topic_end)]

    def wait_for(self, predicate: Callable[[Received], bool], timeout: float, what: str) -> Received:
        found: list[Received] = []

        def seen() -> bool:
            with self._lock:
                found[:] = [m for m in self.messages if predicate(m)]
            return bool(found)

        wait_until(seen, timeout, what)
        return found[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
