"""`autorec serve` on the directory of a finished run, in a real headless Chromium: the live page says when and
why the recorder stopped; a video exported after `serve` started shows up; times are whole, in one style."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support.browser import artifact_path, chromium, console_errors
from tests.support.polling import wait_until

pytest.importorskip("aiohttp")

RULES = """
segments:
  pre_roll: 2s
  post_roll: 3s
rules:
  - name: electrodes
    trigger: electrodes
  - name: unplugged
    trigger: message
    kind: device_info
    where: {connected: false}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _autorec(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autorec", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run that has ended: the demo scenario's first 100 s (bursts and the device disconnect at ~3 min
    are not in it, so the disconnect rule comes from a second short pass), camera at 2 frames/s."""
    work = tmp_path_factory.mktemp("finished")
    rules = work / "rules.yaml"
    rules.write_text(RULES)
    out = work / "out"
    proc = _autorec(
        *("run", "--rules", str(rules), "--sim", "--speed", "40", "--duration", "200s", "--fps", "2"),
        *("--seed", "3", "--out", str(out)),
    )
    assert proc.returncode == 0, proc.stderr
    return out


def test_a_finished_run_says_when_and_why_it_stopped_and_picks_up_a_new_video(finished: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    serve = subprocess.Popen(
        [sys.executable, "-m", "autorec", "serve", str(finished), "--http", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def api(path: str):
        with urllib.request.urlopen(base + path, timeout=10) as r:
            return json.loads(r.read())

    def up() -> bool:
        try:
            return api("/api/status") is not None
        except OSError:
            return False

    stop = [json.loads(line) for line in (finished / "journal.jsonl").read_text().splitlines()][-1]
    assert stop["event"] == "stop"
    try:
        wait_until(up, 30, "autorec serve to answer")
        wait_until(lambda: "stopped" in api("/api/status"), 5, "the journal's stop line in the status")
        assert api("/api/status")["stopped"]["reason"] == stop["reason"]
        segments = api("/api/segments")["segments"]
        assert segments and all(s["videos"] == [] for s in segments)
        with chromium(1300, 1000) as driver:
            driver.get(base + "/")
            wait_until(lambda: driver.find_element("id", "conn").text == "stopped", 5, "the stopped badge")
            text = driver.find_element("id", "stopped").text
            stopped_at = r"The recorder stopped at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\w+\)"
            assert re.fullmatch(stopped_at + r"; the figures below are its last ones\.", text), text
            assert "s old" not in driver.find_element("id", "conn").text
            assert re.fullmatch(
                r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(at the stop\)", driver.find_element("id", "stream-time").text
            )
            # every time on the page in the one style: no browser-locale dates (12/7/2026, 2:21:24 AM)
            body = driver.find_element("tag name", "body").text
            assert not re.search(r"\d+/\d+/\d{4}|\b[AP]M\b", body), body
            first = driver.find_element("css selector", "#recent tr td span")
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", first.text)
            assert first.get_attribute("title").startswith("UTC ")
            # no camera without a run: no empty picture box with a broken-image icon, the note instead
            assert not driver.find_element("id", "frame").is_displayed()
            assert "only when attached to a run" in driver.find_element("id", "frame-info").text
            driver.save_screenshot(str(artifact_path("web-live-stopped.png")))
            assert console_errors(driver) == []
            # export one segment's video now, while serve runs: it shows up without a restart
            name = segments[0]["name"]
            proc = _autorec("video", str(finished / f"{name}.bin"), "-q")
            assert proc.returncode == 0, proc.stderr
            assert (finished / f"{name}.mp4").is_file()
            wait_until(
                lambda: api("/api/segments")["segments"][0]["videos"] == [f"{name}.mp4"], 5, "the new video listed"
            )
            driver.get(f"{base}/segment/{name}")
            wait_until(lambda: driver.find_elements("id", "video"), 5, "the exported video on the segment page")
            cells = driver.find_elements("css selector", "section.panel table.segments td time")
            assert cells, "the firings table"
            for cell in cells:
                assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d", cell.text), cell.text  # whole, with tenths
                assert cell.get_attribute("title").startswith("UTC ")
            evidence = driver.find_element("css selector", "section.panel table.segments").text
            assert "{" not in evidence and "[]" not in evidence and "e+0" not in evidence, evidence
            table = driver.find_element("css selector", "section.panel table.segments")
            driver.execute_script("arguments[0].scrollIntoView()", table)
            driver.save_screenshot(str(artifact_path("web-segment-times.png")))
            # the night page: a page rendered before the export is served at once and refreshed behind it
            # (a big night takes seconds to render), so a reload shows the video's link

            def night_links_the_video() -> bool:
                driver.get(f"{base}/night")
                wait_until(lambda: driver.find_elements("css selector", ".card"), 20, "the night page's cards")
                return bool(driver.find_elements("css selector", f'a[href="/files/{name}.mp4"]'))

            wait_until(night_links_the_video, 30, "the night page to link the new video")
            times = driver.find_elements("css selector", ".card .evidence time")
            assert times, "the cards' first-firing times"
            for el in times:
                assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d", el.text), el.text  # not 02:15:1:
            driver.execute_script("arguments[0].scrollIntoView()", times[0])
            driver.save_screenshot(str(artifact_path("web-night-times.png")))
    finally:
        serve.terminate()
        serve.communicate(timeout=30)
