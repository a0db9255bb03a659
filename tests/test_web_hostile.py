"""The web server on a hostile network: floods, slow clients, rebinding names, planted FIFOs.

Real servers on 127.0.0.1 (a `WebUI` in a thread, and `autorec run --sim --http` in a subprocess with a
low descriptor limit), raw sockets as clients.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from autorec.web.feed import DirectoryFeed
from autorec.web.guard import HostCheck, WebLimits
from autorec.web.server import WebUI, start_server
from tests.support.polling import wait_until


class Served:
    """A WebUI served from its own loop in a thread; `raw()` sends bytes and returns the status line."""

    def __init__(self, ui_factory) -> None:
        self.ui_factory = ui_factory
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start():
            self.ui = self.ui_factory()
            self.runner, self.base = await start_server(self.ui, "127.0.0.1", 0)
            self.port = int(self.base.rstrip("/").rsplit(":", 1)[1])
            self.ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())
        # connections a test left open: their handlers end here, not in a later test's garbage collection
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    def __enter__(self) -> Served:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def connect(self, source: str = "127.0.0.1") -> socket.socket:
        s = socket.socket()
        s.bind((source, 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", self.port))
        return s

    def raw(self, request: bytes, source: str = "127.0.0.1") -> tuple[int, bytes]:
        with self.connect(source) as s:
            s.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
        return status, data

    def request(self, method: str, path: str, host: str | None = None, extra: str = "") -> int:
        host = host if host is not None else f"127.0.0.1:{self.port}"
        head = f"{method} {path} HTTP/1.1\r\n" + (f"Host: {host}\r\n" if host else "") + extra
        return self.raw((head + "Connection: close\r\n\r\n").encode())[0]


def closed_by_peer(s: socket.socket) -> bool:
    """True once the server has closed or reset `s` (readable with nothing to read)."""
    readable, _, _ = select.select([s], [], [], 0)
    if not readable:
        return False
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def test_only_the_served_address_or_a_configured_name_is_answered(night: Path):
    """DNS rebinding: a page on evil.example rebinds its name to 127.0.0.1; the browser sends `Host: evil.example`."""
    with Served(lambda: WebUI(night, DirectoryFeed(night), host_names=["rig-pc.lab"])) as srv:
        p = srv.port
        assert srv.request("GET", "/api/status") == 200
        for good in (f"localhost:{p}", "127.0.0.1", f"rig-pc.lab:{p}", "RIG-PC.lab.", "localhost:9000"):  # a tunnel
            assert srv.request("GET", "/api/segments", host=good) == 200, good
        for bad in (
            "evil.example",
            f"evil.example:{p}",
            "",
            "127.0.0.1.evil.example",
            f"user@127.0.0.1:{p}",
            "[::1",
            f"localhost:{p}/x",
            "a" * 5000,
        ):
            assert srv.request("GET", "/api/segments", host=bad) in (400, 403), bad
        # a change must carry our own Origin (a form on another site carries its own, or "null")
        for origin in ("", "http://evil.example", "null", f"http://127.0.0.1:{p + 1}", "http://[::1"):
            assert srv.request("POST", "/api/status", extra=f"Origin: {origin}\r\n" if origin else "") == 403, origin
        assert srv.request("POST", "/api/status", extra=f"Origin: http://127.0.0.1:{p}\r\n") == 405
        counters = srv.ui.counters()
        assert counters["web.refused.host"] == 7 and counters["web.refused.write"] == 5  # a missing Host: aiohttp's 400


def test_host_check_of_a_server_on_every_address():
    check = HostCheck("0.0.0.0", 8080, ["lab.example.org"])
    assert check.host_ok("192.168.1.20:8080") and check.host_ok("[fe80::1]:8080") and check.host_ok("lab.example.org")
    assert check.host_ok(socket.gethostname() + ":8080")
    assert not check.host_ok("evil.example:8080") and not check.host_ok("evil.example")
    assert check.origin_ok("http://192.168.1.20:8080", "192.168.1.20:8080")
    assert not check.origin_ok("https://evil.example", "192.168.1.20:8080")
    assert not check.origin_ok("http://192.168.1.20:3000", "192.168.1.20:8080")  # another app on this computer
    assert check.origin_ok("http://localhost:9000", "localhost:9000")  # through a tunnel


def test_the_token_is_checked_before_a_body_is_waited_for(night: Path):
    limits = WebLimits(body_timeout=0.5)
    with Served(lambda: WebUI(night, DirectoryFeed(night), token="s3cret", limits=limits)) as srv:
        origin = f"Origin: http://127.0.0.1:{srv.port}\r\n"
        began = time.monotonic()
        # a body announced and never sent: without the token the answer is 401 at once
        assert srv.request("POST", "/api/status", extra=origin + "Content-Length: 100000\r\n") == 401
        assert time.monotonic() - began < 0.4
        # with the token, the body that never comes is a 408 after the body timeout
        began = time.monotonic()
        auth = origin + "Authorization: Bearer s3cret\r\nContent-Length: 1000\r\n"
        assert srv.request("POST", "/api/status", extra=auth) == 408
        assert 0.4 < time.monotonic() - began < 5
        assert srv.ui.counters()["web.refused.token"] == 1
        # a body over the cap is refused whole
        big = origin + f"Authorization: Bearer s3cret\r\nContent-Length: {limits.max_body + 1}\r\n"
        assert srv.request("POST", "/api/status", extra=big) == 413


def test_connections_are_capped_per_address_and_overall_and_idle_ones_time_out(night: Path):
    limits = WebLimits(max_connections=12, per_address=5, header_timeout=0.6)
    with Served(lambda: WebUI(night, DirectoryFeed(night), limits=limits)) as srv:
        held = [srv.connect("127.0.0.2") for _ in range(8)]
        wait_until(lambda: sum(closed_by_peer(s) for s in held) == 3, 5, "3 of 8 from one address to be refused")
        wait_until(lambda: srv.ui.guard.open == 5, 5, "5 held")
        others = [srv.connect(f"127.0.0.{3 + i}") for i in range(10)]
        wait_until(lambda: sum(closed_by_peer(s) for s in others) == 3, 5, "the overall cap to refuse 3 more")
        counters = srv.ui.counters()
        assert counters["web.refused.per_address"] == 3 and counters["web.refused.connections"] == 3
        # a slow client: half a header block, then nothing; closed after the header timeout
        slow = srv.connect("127.0.0.30")
        wait_until(lambda: all(closed_by_peer(s) for s in held + others), 5, "idle connections to time out")
        slow.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        wait_until(lambda: closed_by_peer(slow), 5, "a request that never completes to be closed")
        wait_until(lambda: srv.ui.guard.open == 0, 5, "every connection let go")
        assert srv.ui.counters()["web.header_timeouts"] >= 11
        # a keep-alive client that sends requests is served, and may wait between them within the timeout
        with srv.connect() as s:
            for _ in range(3):
                s.sendall(f"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode())
                assert s.recv(65536).startswith(b"HTTP/1.1 200")
        for s in held + others + [slow]:
            s.close()


def test_a_fifo_in_place_of_a_served_file_never_blocks_a_worker(night: Path, tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    first = json.loads((night / "index.jsonl").read_text().splitlines()[0])
    (out / "index.jsonl").write_text(json.dumps(first) + "\n")
    os.mkfifo(out / first["path"])
    os.mkfifo(out / (first["name"] + ".json"))
    with Served(lambda: WebUI(out, DirectoryFeed(out), limits=WebLimits(workers=1))) as srv:
        for _ in range(3):  # one worker: a blocked one would make the next request wait forever
            began = time.monotonic()
            assert srv.request("GET", f"/files/{first['path']}") == 404
            assert srv.request("GET", f"/files/{first['name']}.json") == 404
            assert srv.request("GET", "/api/segments") == 200
            assert time.monotonic() - began < 5


FLOOD_RULES = """
output:
  telemetry: true
  status_file: status.json
segments:
  pre_roll: 2s
  post_roll: 3s
rules:
  - name: electrodes
    trigger: electrodes
"""


def _record(tmp_path: Path, name: str, port: int, nofile: int, flood: int) -> dict:
    """`autorec run --sim --http` with RLIMIT_NOFILE `nofile`, under `flood` idle connections from 20 addresses
    kept open (re-opened as the server drops them) for the whole run. Returns what was measured."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(FLOOD_RULES)
    out = tmp_path / name

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    log = (tmp_path / f"{name}.log").open("w")  # a file, not a pipe: a flood of lines must not block the run
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "autorec", "run", "--rules", str(rules), "--sim", "--speed", "6", "--seed", "3"),
            *("--duration", "60s", "--fps", "5", "--out", str(out), "--http", f"127.0.0.1:{port}"),
        ],
        stdout=log,
        stderr=log,
        preexec_fn=limit,
    )
    sockets: list[socket.socket] = []
    held_max = refused = opened = 0
    try:
        if flood:

            def listening() -> bool:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    return True
                except OSError:
                    return proc.poll() is not None

            wait_until(listening, 30, "the web UI to listen")
            while proc.poll() is None:
                for s in [s for s in sockets if closed_by_peer(s)]:
                    refused += 1
                    sockets.remove(s)
                    s.close()
                held_max = max(held_max, len(sockets))
                began = time.monotonic()
                while len(sockets) < flood and time.monotonic() - began < 0.5 and proc.poll() is None:
                    s = socket.socket()
                    s.bind((f"127.0.0.{2 + opened % 20}", 0))
                    s.settimeout(0.2)
                    opened += 1
                    if s.connect_ex(("127.0.0.1", port)) == 0:  # 0: the kernel queued it for the server
                        s.setblocking(False)
                        sockets.append(s)
                    else:
                        s.close()
        proc.wait(timeout=60)
    finally:
        proc.kill()
        log.close()
        for s in sockets:
            s.close()
    err = (tmp_path / f"{name}.log").read_text()
    assert proc.returncode == 0, err
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    journal = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    stop = [e for e in journal if e["event"] == "stop"][-1]
    status = json.loads((out / "status.json").read_text())
    return {
        "err": err,
        "index": index,
        "messages": stop["messages"],
        "counters": status["counters"],
        "held_max": held_max,
        "refused_seen": refused,
        "opened": opened,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="many loopback source addresses (127.0.0.0/8)")
def test_recording_goes_on_at_full_rate_under_a_connection_flood_beyond_the_descriptor_limit(tmp_path: Path):
    """400 idle connections against a recorder allowed 256 descriptors: before, it ran out of descriptors
    (segments with 0 records, drops, a flood of tracebacks); now the web server holds what its caps allow,
    refuses the rest, and the recording is what it is without the flood."""
    quiet = _record(tmp_path, "quiet", _free_port(), 256, flood=0)
    flooded = _record(tmp_path, "flooded", _free_port(), 256, flood=400)
    c = flooded["counters"]
    refused = sum(v for k, v in c.items() if k.startswith("web.refused."))
    print(
        f"flood: {flooded['opened']} connections opened, {flooded['held_max']} open at once, "
        f"server held at most {c['web.connections_peak']}, "
        f"refused {refused} ({ {k: v for k, v in c.items() if k.startswith('web.refused.')} }), "
        f"{c['web.header_timeouts']} closed idle; messages {flooded['messages']} vs {quiet['messages']} without"
    )
    assert flooded["opened"] >= 400  # the flood was really beyond the descriptor limit
    assert c["web.connections_peak"] <= WebLimits().max_connections
    assert refused > 0 and c["dropped"] == 0 and c["telemetry_dropped"] == 0 and c["write_errors"] == 0
    assert flooded["messages"] >= 0.97 * quiet["messages"]
    assert flooded["index"] and all(seg["records"] > 0 for seg in flooded["index"])
    assert len(flooded["index"]) == len(quiet["index"])
    assert "Traceback" not in flooded["err"] and len(flooded["err"].splitlines()) < 40, flooded["err"][-3000:]


def _bytes_read() -> int:
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="counts the bytes read through /proc/self/io")
def test_serve_reads_only_what_changed(night: Path, tmp_path: Path):
    """`serve` polls twice a second: an unchanged status file is not read again, a NUL-filled index tail of
    5 MB (power loss) is skipped over once, never re-read, and a line appended after it is still found."""
    d = tmp_path / "out"
    d.mkdir()
    for p in night.iterdir():
        if p.is_file():  # links spare the copy; the index, appended to below, is a copy
            (shutil.copy if p.name == "index.jsonl" else os.link)(p, d / p.name)
    feed = DirectoryFeed(d)
    status, _ = feed.poll_once()
    assert status is not None
    before = _bytes_read()
    for _ in range(20):
        assert feed.poll_once() == (None, [])
    assert _bytes_read() - before < 20_000  # nothing changed: nothing read
    index = d / "index.jsonl"
    first = index.read_text().splitlines()[0]
    # a sidecar is read again only when it changed
    ui = WebUI(d, feed)
    ui.index.load()
    before = _bytes_read()
    with open(index, "ab") as f:
        f.write(first.encode() + b"\n")
    ui.index.load()
    read = _bytes_read() - before
    sidecars = sum(p.stat().st_size for p in d.glob("*.json") if p.name != "status.json")
    assert read < sidecars, (read, sidecars)
    assert len(feed.poll_once()[1]) == 1  # the feed saw that line too
    line = first
    data = index.read_bytes()
    index.unlink()
    index.write_bytes(data + b"\0" * (5 << 20))
    before = _bytes_read()
    for _ in range(20):
        assert feed.poll_once()[1] == []
    assert _bytes_read() - before < 6 << 20  # the tail read once, in 1 MB steps
    with open(index, "ab") as f:
        f.write(b"\n" + line.encode() + b"\n")
    assert [e["name"] for e in feed.poll_once()[1]] == [json.loads(line)["name"]]


def test_a_call_stuck_forever_is_a_504_and_never_holds_the_process_exit(tmp_path: Path):
    """A read that never returns (a FIFO opened the plain way stands in for a hung network file system):
    the request gets a 504 after the call timeout, other calls go on in the other workers, and the
    process still exits at once (Python joins a ThreadPoolExecutor's threads at exit; these are daemons)."""
    fifo = tmp_path / "hung"
    os.mkfifo(fifo)
    script = f"""
import asyncio, time
from aiohttp import web
from autorec.web.guard import WebLimits, WorkerPool

async def main():
    pool = WorkerPool(WebLimits(workers=2, call_timeout=0.3))
    try:
        await pool.call(lambda: open({str(fifo)!r}).read())
    except web.HTTPGatewayTimeout:
        print("504")
    print("other", await pool.call(lambda: 42), "pending", pool.pending)
    pool.shutdown()

asyncio.run(main())
"""
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["504", "other", "42", "pending", "1"]
    assert time.monotonic() - began < 10


def test_the_metrics_server_caps_and_times_out_idle_connections():
    """`run --metrics` serves from the recorder's process too: idle connections beyond its cap are closed at
    once, the rest after the idle timeout, and a scrape still answers."""
    pytest.importorskip("prometheus_client")
    from prometheus_client import CollectorRegistry, Counter

    from autorec.services.metrics import serve_metrics

    registry = CollectorRegistry()
    Counter("autorec_test", "a test counter", registry=registry).inc()
    server, _ = serve_metrics("127.0.0.1", 0, registry, max_connections=4, idle_timeout=3.0)
    port = server.server_address[1]
    try:
        idle = [socket.create_connection(("127.0.0.1", port), 5) for _ in range(12)]
        wait_until(lambda: sum(closed_by_peer(s) for s in idle) >= 8, 5, "the connections beyond the cap closed")
        wait_until(lambda: all(closed_by_peer(s) for s in idle), 10, "idle connections timed out")
        assert server.refused >= 8
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert b"autorec_test_total 1.0" in r.read()
        for s in idle:
            s.close()
    finally:
        server.shutdown()
        server.server_close()
