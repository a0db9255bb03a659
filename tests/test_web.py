"""The web UI: a real aiohttp server on 127.0.0.1, real HTTP clients, and a real headless Chromium."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from autorec.units import parse_listen
from autorec.web.feed import QUEUE_MAX, DirectoryFeed, LiveFeed
from autorec.web.server import WebUI, is_loopback, resolve_token, start_server
from tests.support.browser import artifact_path, chromium, console_errors
from tests.support.polling import wait_until


class ServerThread:
    """A WebUI served from its own event loop in a thread (as `autorec serve` does in its process)."""

    def __init__(self, ui_factory, token: str | None = None) -> None:
        self.ui_factory = ui_factory
        self.token = token
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start():
            self.ui = self.ui_factory()
            self.runner, self.base = await start_server(self.ui, "127.0.0.1", 0)
            self.ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())

    def __enter__(self) -> ServerThread:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def get(self, path: str, headers: dict | None = None, method: str = "GET") -> tuple[int, bytes, dict]:
        req = urllib.request.Request(self.base.rstrip("/") + path, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)


def index_of(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "index.jsonl").read_text().splitlines()]


def test_every_endpoint_of_a_served_directory(night: Path):
    index = index_of(night)
    name = index[0]["name"]
    with ServerThread(lambda: WebUI(night, DirectoryFeed(night))) as srv:
        for page in ("/", "/night", f"/segment/{name}"):
            status, body, headers = srv.get(page)
            assert status == 200 and headers["Content-Type"].startswith("text/html"), page
        status, body, _ = srv.get("/night")
        assert body.decode().count("<div class=card ") == len(index)
        assert (
            b"/static/js/bokeh" in body
            and srv.get(re.search(rb'src="(/static/js/bokeh[^"]+)"', body)[1].decode())[0] == 200
        )
        status, body, _ = srv.get("/api/status")
        assert status == 200 and json.loads(body)["live"] is False
        segments = json.loads(srv.get("/api/segments")[1])["segments"]
        assert [s["name"] for s in segments] == [e["name"] for e in index]
        one = json.loads(srv.get(f"/api/segments/{name}")[1])
        assert one["segment"]["name"] == name and one["sidecar"]["name"] == name
        frames = json.loads(srv.get(f"/api/segments/{name}/frames")[1])["frames"]
        assert len(frames) > 10 and all(a["t"] <= b["t"] for a, b in itertools.pairwise(frames))
        status, jpeg, headers = srv.get(f"/api/segments/{name}/frames/3")
        assert status == 200 and headers["Content-Type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
        assert srv.get(f"/api/segments/{name}/frames/{len(frames)}")[0] == 404
        status, body, _ = srv.get(f"/api/segments/{name}/strip")
        assert status == 200 and b"data:image/jpeg;base64," in body
        card = json.loads(srv.get(f"/api/segments/{name}/card")[1])
        assert f'data-name="{name}"' in card["html"] and card["bars"]["name"][0] == name
        # the bars are streamed into the page's timeline source, which has a colour column
        assert card["bars"]["color"][0].startswith("#")
        assert json.loads(srv.get("/api/scores")[1]) == {"scores": json.loads(srv.get("/api/status")[1])["scores"]}
        status, body, _ = srv.get(f"/files/{index[0]['path']}")
        assert status == 200 and body == (night / index[0]["path"]).read_bytes()
        assert srv.get(f"/files/{index[0]['sidecar']}")[0] == 200
        assert srv.get("/api/frame/latest")[0] == 404  # a directory has no live camera
        # the event stream starts with the status
        with urllib.request.urlopen(srv.base + "api/events", timeout=10) as r:
            assert r.headers["Content-Type"] == "text/event-stream"
            assert r.readline() == b"event: status\n"


def test_nothing_outside_the_index_is_served(night: Path, tmp_path: Path):
    directory = tmp_path / "d"
    directory.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    index = index_of(night)
    first = index[0]
    for key in ("path", "sidecar"):
        os.link(night / first[key], directory / first[key])
    # a segment whose log is a symlink planted to a file outside the directory
    (directory / "evil.bin").symlink_to(secret)
    evil = dict(first, name="evil", path="evil.bin", sidecar="evil.json")
    (directory / "evil.json").symlink_to(secret)
    (directory / "index.jsonl").write_text(json.dumps(first) + "\n" + json.dumps(evil) + "\n")
    (directory / "other.bin").write_bytes(b"not in the index")
    with ServerThread(lambda: WebUI(directory, DirectoryFeed(directory))) as srv:
        assert srv.get(f"/files/{first['path']}")[0] == 200
        for path in (
            "/files/..%2Fsecret.txt",
            "/files/%2E%2E%2Fsecret.txt",
            "/files/%2Fetc%2Fpasswd",
            "/files/index.jsonl",
            "/files/other.bin",
            "/files/evil.bin",  # listed, but a symlink: refused
            "/files/evil.json",
            "/api/segments/evil/frames/0",
            "/segment/..%2F..%2Fetc",
            "/ui/../server.py",
            "/ui/%2E%2E/server.py",
            "/static/../../../../etc/passwd",
        ):
            status, body, _ = srv.get(path)
            assert status == 404, (path, status)
            assert b"not yours" not in body and b"root:" not in body
        assert json.loads(srv.get("/api/segments/evil/frames")[1])["frames"] == []
        # read-only: no other method (a change from another site is refused before that: no Origin of ours)
        origin = {"Origin": srv.base.rstrip("/")}
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            assert srv.get("/api/status", method=method)[0] == 403
            assert srv.get("/api/status", origin, method=method)[0] == 405
    assert secret.read_text() == "not yours"


def test_a_token_is_required_on_every_request_when_set(night: Path):
    with ServerThread(lambda: WebUI(night, DirectoryFeed(night), token="s3cret")) as srv:
        for path in ("/", "/night", "/api/status", "/api/events", "/files/index.jsonl", "/ui/live.js"):
            assert srv.get(path)[0] == 401, path
        assert srv.get("/api/status?token=wrong")[0] == 401
        status, _, headers = srv.get("/api/status?token=s3cret")
        assert status == 200 and "autorec_token=s3cret" in headers.get("Set-Cookie", "")
        assert srv.get("/api/status", headers={"Cookie": "autorec_token=s3cret"})[0] == 200
        assert srv.get("/api/status", headers={"Authorization": "Bearer s3cret"})[0] == 200


def test_listen_address_and_token_policy():
    assert parse_listen("8080") == ("127.0.0.1", 8080)
    assert parse_listen("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_listen("[::1]:81") == ("::1", 81)
    for bad in ("http", "1.2.3.4:99999", ":x"):
        with pytest.raises(ValueError):
            parse_listen(bad)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.7")
    assert resolve_token("127.0.0.1", None) == (None, False)
    token, generated = resolve_token("0.0.0.0", None)
    assert generated and len(token) >= 20
    assert resolve_token("0.0.0.0", "mine") == ("mine", False)


def test_a_stalled_browser_costs_the_recorder_nothing(night: Path):
    """A client that opens the event stream and never reads: pushes stay O(1), its queue stays bounded, and
    other clients are served."""
    feed = LiveFeed(lambda: {"blob": "x" * 50_000}, status_interval=0.0)
    with ServerThread(lambda: WebUI(night, feed)) as srv:
        host, port = srv.base.split("//")[1].rstrip("/").split(":")
        stalled = socket.create_connection((host, int(port)))
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(f"GET /api/events HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        wait_until(lambda: len(feed.subscribers) == 1, 10, "the stalled client to subscribe")
        [sub] = feed.subscribers

        def push_many() -> float:
            began = time.perf_counter()
            for i in range(2000):
                feed.push("status", {"i": i, "blob": "y" * 50_000})
            return time.perf_counter() - began

        seconds = asyncio.run_coroutine_threadsafe(_call(push_many), srv.loop).result(30)
        assert sub.queue.qsize() <= QUEUE_MAX
        assert sub.dropped >= 2000 - QUEUE_MAX - 1
        print(f"2000 pushes to a stalled browser: {seconds * 1000:.1f} ms, {sub.dropped} dropped")
        # the server still answers others at once
        assert srv.get("/api/status")[0] == 200
        stalled.close()
        wait_until(lambda: not feed.subscribers, 30, "the stalled client to be forgotten once gone")


def test_a_segment_closing_after_the_web_loop_ended_is_not_an_error(tmp_path: Path, caplog):
    """Ctrl-C during a segment: the web server and its loop end first, then the writer closes the
    segment and tells its observers, the web feed among them. That raised into the writer
    ('observer _Feed.segment_closed failed', an ERROR and a traceback on a clean stop)."""
    from autorec.core.segmenter import Segmenter, SegmentPolicy
    from autorec.io.writer import SegmentWriter
    from autorec.triggers.base import Firing
    from tests.support.eventbuilder import payload

    feed = LiveFeed(lambda: {})
    feed.loop = asyncio.new_event_loop()
    feed.loop.close()
    writer = SegmentWriter(tmp_path, "{seq}-{rules}", telemetry=False, observers=[feed]).start()
    seg = Segmenter(default=SegmentPolicy(pre_roll=1.0, post_roll=1.0, max_length=60.0))
    t0 = 1_700_000_000.0
    with caplog.at_level(logging.WARNING):
        writer.submit(seg.feed(t0, payload("hv_regulator", t0, 1), "hv_regulator", [Firing("a", t0)]))
        writer.submit(seg.close())
        assert writer.close(10)
    assert (tmp_path / "1-a.bin").exists()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_serve_without_the_web_extra_says_what_to_install(tmp_path: Path):
    """A core install has no aiohttp: one line naming this Python's pip and the clone, exit 2."""
    code = "import sys; sys.modules['aiohttp'] = None\nfrom autorec.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, "serve", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "autorec serve: --http: the web UI needs the 'web' extra (aiohttp, Bokeh): "
        f"{sys.executable} -m pip install '.[web]' in the autorec folder"
    )


async def _call(fn):
    return fn()


# -- a live run in a real browser ------------------------------------------------------------------

LIVE_RULES = """
output:
  telemetry: true
segments:
  pre_roll: 2s
  post_roll: 3s
rules:
  - name: camera-motion
    trigger: motion
    threshold: 0.0003
    detect_fps: 5
  - name: electrodes
    trigger: electrodes
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_live_page_against_run_sim_http_in_a_real_browser(tmp_path: Path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(LIVE_RULES)
    out = tmp_path / "out"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "autorec", "run", "--rules", str(rules), "--sim", "--speed", "4"),
            *("--duration", "150s", "--fps", "5", "--seed", "2", "--out", str(out), "--http", f"127.0.0.1:{port}"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def api(path: str):
        with urllib.request.urlopen(base + path, timeout=5) as r:
            return json.loads(r.read())

    def up() -> bool:
        try:
            return api("/api/status")["connected"]
        except OSError:
            return False

    try:
        wait_until(up, 30, "the recorder's web UI to answer")
        with chromium(1300, 1000) as driver:
            driver.get(base + "/")
            wait_until(lambda: driver.find_element("id", "conn").text == "connected", 5, "the connection state")
            # a segment opens: the page shows it within 2 s of the recorder knowing
            wait_until(lambda: api("/api/status")["open_segment"] is not None, 40, "a segment to open")
            wait_until(
                lambda: driver.find_element("id", "open-segment").text != "none", 2, "the open segment on the page"
            )
            # the score bar moves
            ratios: set[str] = set()

            def bar_moved() -> bool:
                ratio = driver.execute_script(
                    "const e = document.querySelector('.score[data-rule=\"camera-motion\"]');"
                    "return e ? e.dataset.ratio : null"
                )
                if ratio is not None:
                    ratios.add(ratio)
                return len(ratios) >= 3

            wait_until(bar_moved, 20, "the camera-motion score bar to move")
            # the latest camera frame is shown
            wait_until(
                lambda: driver.execute_script(
                    "const i = document.getElementById('frame');return i.complete && i.naturalWidth > 0"
                ),
                5,
                "a camera frame",
            )
            # a segment closes: it appears in the list within 2 s
            wait_until(lambda: (out / "index.jsonl").exists() and (out / "index.jsonl").read_text(), 60, "a segment")
            closed = json.loads((out / "index.jsonl").read_text().splitlines()[0])["name"]
            wait_until(
                lambda: driver.find_elements("css selector", f'#recent tr[data-name="{closed}"]'),
                2,
                "the closed segment in the list",
            )
            driver.save_screenshot(str(artifact_path("web-live.png")))
            assert console_errors(driver) == []
            # the segment page plays the segment's own frames
            driver.get(f"{base}/segment/{closed}")
            wait_until(lambda: "/" in driver.find_element("id", "frame-time").text, 10, "the frame player")
            first = driver.find_element("id", "frame-time").text
            driver.find_element("id", "play").click()
            wait_until(lambda: driver.find_element("id", "frame-time").text != first, 5, "the player to advance")
            driver.save_screenshot(str(artifact_path("web-segment.png")))
            # the night page: a new segment appears without reloading
            driver.get(f"{base}/night")
            wait_until(lambda: driver.execute_script("return !!(window.Bokeh && Bokeh.documents.length)"), 15, "charts")
            # a page rendered earlier (the server keeps one ready) completes itself from /api/segments
            known = len((out / "index.jsonl").read_text().splitlines())
            wait_until(
                lambda: len(driver.find_elements("css selector", ".card")) >= known, 5, "every closed segment's card"
            )
            cards = len(driver.find_elements("css selector", ".card"))
            wait_until(lambda: len((out / "index.jsonl").read_text().splitlines()) > known, 60, "another segment")
            wait_until(lambda: len(driver.find_elements("css selector", ".card")) > cards, 3, "the new card")
            driver.save_screenshot(str(artifact_path("web-night.png")))
            assert console_errors(driver) == []
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "web UI at http://127.0.0.1" in err
