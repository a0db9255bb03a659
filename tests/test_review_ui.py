"""The morning review in a real headless Chromium: filters and jumps in the URL, click-through to the player at a
moment, j/k/Enter, reviewed marks shared between browsers, range export, electrode search, and the one kind of
write the web server accepts refused from anywhere but its own pages."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import json
import os
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import av
import pytest

from autorec import events
from autorec.io.logfile import LogReader
from autorec.web.feed import DirectoryFeed
from autorec.web.reviewed import MarkRefused, ReviewedMarks
from autorec.web.server import WebUI, start_server
from tests.support.browser import artifact_path, chromium, console_errors
from tests.support.polling import wait_until
from tests.support.telemetrygen import write_telemetry


class Served:
    """A WebUI on 127.0.0.1 in its own event loop thread (as `autorec serve` runs it)."""

    def __init__(self, directory: Path, token: str | None = None) -> None:
        self.directory, self.token = directory, token
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start():
            self.ui = WebUI(self.directory, DirectoryFeed(self.directory), token=self.token, warm_night=False)
            self.runner, self.base = await start_server(self.ui, "127.0.0.1", 0)
            self.ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())

    def __enter__(self) -> Served:
        self.thread.start()
        assert self.ready.wait(10)
        self.port = int(self.base.rstrip("/").rsplit(":", 1)[1])
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """Raw HTTP: every header exactly as given (a browser would not let a page forge Host or Origin)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        headers = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
        if body is not None:
            headers.setdefault("Content-Length", str(len(body)))
        for k, v in headers.items():
            if v is not None:
                conn.putheader(k, v)
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, data

    def get_json(self, path: str):
        with urllib.request.urlopen(self.base.rstrip("/") + path, timeout=20) as r:
            return json.loads(r.read())


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _index(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "index.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def review_dir(night: Path, tmp_path_factory) -> Path:
    """The shared simulated night, linked into a folder of this module's own (marks and exports are written)."""
    out = tmp_path_factory.mktemp("review") / "out"
    shutil.copytree(night, out, copy_function=os.link)
    return out


@pytest.fixture(scope="module")
def served(review_dir: Path):
    with Served(review_dir) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


def _open(driver, url: str) -> None:
    driver.get(url)
    wait_until(lambda: driver.execute_script("return document.body.dataset.reviewReady === '1'"), 30, "the review bar")


def _page_errors(driver) -> list[str]:
    """The console's errors, but for the event stream a page left behind being cut off (a navigation does that)."""
    return [m for m in console_errors(driver) if not ("/api/events" in m and "ERR_INCOMPLETE_CHUNKED" in m)]


def _visible(driver) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('.card[data-name]')]"
        ".filter(c => !c.classList.contains('hidden') && !c.classList.contains('folded')).map(c => c.dataset.name)"
    )


def _player_time(driver) -> float:
    wait_until(lambda: driver.execute_script("return !!document.getElementById('player').dataset.ready"), 20, "player")
    wait_until(
        lambda: driver.execute_script(
            "const i = document.getElementById('player-frame'); return i.complete && i.naturalWidth > 0"
        ),
        20,
        "the frame to show",
    )
    return float(driver.execute_script("return document.getElementById('player-frame').dataset.t"))


def _assert_nearest_frame(served: Served, name: str, wanted: float, shown: float) -> None:
    """The frame shown is the segment's frame nearest the wanted time: within one frame of it."""
    frames = [f["t"] for f in served.get_json(f"/api/segments/{name}/frames")["frames"]]
    nearest = min(frames, key=lambda t: abs(t - wanted))
    assert shown == pytest.approx(nearest, abs=1e-6), (wanted, shown, nearest)
    k = frames.index(nearest)
    one_frame = max(b - a for a, b in zip(frames[max(0, k - 1) : k + 2], frames[max(1, k) : k + 3])) or 0.2
    assert abs(shown - wanted) <= one_frame


def test_filter_and_jump_to_a_time_by_url(served: Served, browser, review_dir: Path):
    index = _index(review_dir)
    target = index[-1]
    rule = target["rules"][0]
    lo, hi = target["start"] - 1, target["end"] + 1
    want = [s["name"] for s in index if rule in s["rules"] and s["end"] >= lo and s["start"] <= hi]
    _open(browser, served.base + f"night?rule={rule}&from={_iso(lo)}&to={_iso(hi)}")
    assert _visible(browser) == want and len(want) < len(index)
    wait_until(lambda: browser.execute_script("return !!document.body.dataset.zoomed"), 15, "the timeline zoom")
    x0, x1 = browser.execute_script(
        "const r = Bokeh.documents[0].get_model_by_name('timeline').x_range; return [r.start, r.end]"
    )
    assert x0 <= lo * 1000 and x1 >= hi * 1000 and (x1 - x0) < 1.2 * (hi - lo) * 1000
    assert browser.find_element("id", "review-count").text == f"{len(want)} of {len(index)} segments"
    browser.execute_script("document.getElementById('review-bar').scrollIntoView()")
    browser.save_screenshot(str(artifact_path("review-filter-by-url.png")))
    # changing the filter in the bar rewrites the URL (a link to send a colleague)
    browser.execute_script(
        "const s = document.getElementById('review-rule'); s.value = ''; s.dispatchEvent(new Event('change'))"
    )
    assert "rule=" not in browser.current_url and "from=" in browser.current_url
    assert _page_errors(browser) == []


def test_a_thumbnail_opens_the_player_at_its_time(served: Served, browser, review_dir: Path):
    _open(browser, served.base + "night")
    browser.execute_script("document.querySelector('.card').scrollIntoView()")
    wait_until(lambda: browser.find_elements("css selector", ".card .strip a.at img"), 20, "the thumbnails")
    thumb = browser.find_elements("css selector", ".card .strip a.at img")[2]
    name = thumb.find_element("xpath", "ancestor::div[contains(@class,'card')]").get_attribute("data-name")
    wanted = float(thumb.get_attribute("data-t"))
    thumb.click()
    wait_until(lambda: "/segment/" in browser.current_url, 15, "the segment page")
    assert f"/segment/{name}?t=" in browser.current_url
    _assert_nearest_frame(served, name, wanted, _player_time(browser))
    browser.save_screenshot(str(artifact_path("review-thumbnail-to-player.png")))
    # back to the night keeps the filter it was opened from
    _open(browser, served.base + "night?show=near-misses")
    browser.execute_script("location.href = arguments[0]", f"/segment/{name}")  # as a link does: with a referrer
    wait_until(lambda: "/segment/" in browser.current_url, 15, "the segment page")
    browser.find_element("css selector", "header a[href^='/night']").click()
    wait_until(lambda: browser.current_url.endswith("/night?show=near-misses"), 10, "the filtered night")


def test_a_firing_opens_the_player_at_its_time(served: Served, browser, review_dir: Path):
    _open(browser, served.base + "night")
    link = browser.find_elements("css selector", ".card a.firing")[0]
    name = link.find_element("xpath", "ancestor::div[contains(@class,'card')]").get_attribute("data-name")
    sidecar = json.loads((review_dir / f"{name}.json").read_text())
    first = min(f["time"] for f in sidecar["firings"])
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", link)
    link.click()
    wait_until(lambda: "/segment/" in browser.current_url, 15, "the segment page")
    _assert_nearest_frame(served, name, first, _player_time(browser))
    # on the segment page a firing seeks the player without reloading the page
    browser.execute_script("window.stillHere = 1")
    rows = browser.find_elements("css selector", "table.segments a.firing")
    row = rows[min(3, len(rows) - 1)]
    wanted = sorted(f["time"] for f in sidecar["firings"])[min(3, len(rows) - 1)]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
    row.click()
    wait_until(
        lambda: (
            abs(float(browser.execute_script("return document.getElementById('player-frame').dataset.t")) - wanted)
            < 0.5
        ),
        10,
        "the player to seek",
    )
    assert browser.execute_script("return window.stillHere") == 1
    _assert_nearest_frame(served, name, wanted, _player_time(browser))
    browser.save_screenshot(str(artifact_path("review-firing-to-player.png")))
    assert _page_errors(browser) == []


_BAR_ON_SCREEN = """
const doc = Bokeh.documents[0], tl = doc.get_model_by_name('timeline'), src = doc.get_model_by_name('segment_bars');
const view = Bokeh.index.find_one(tl), i = arguments[0];
if (!view || !view.frame.bbox.width) return null;
const x = (src.data.left[i] + src.data.right[i]) / 2;
const el = view.canvas_view ? view.canvas_view.el : view.canvas.el;
el.scrollIntoView({block: 'center'});
const r = el.getBoundingClientRect();
const y = view.frame.y_scale.compute(tl.y_range.synthetic(src.data.lane[i]));
const perPx = (tl.x_range.end - tl.x_range.start) / 1000 / view.frame.bbox.width;
return [r.left + view.frame.x_scale.compute(x), r.top + y, src.data.name[i], x / 1000, perPx];
"""


def test_a_timeline_bar_opens_the_player_at_the_tapped_time(served: Served, browser, review_dir: Path):
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    _open(browser, served.base + "night")
    wait_until(
        lambda: browser.execute_script(
            "return !!(window.Bokeh && Bokeh.documents.length && Bokeh.documents[0].get_model_by_name('timeline'))"
        ),
        20,
        "the timeline",
    )
    wait_until(lambda: browser.execute_script(_BAR_ON_SCREEN, 1), 20, "the timeline drawn")
    sx, sy, name, t, seconds_per_px = browser.execute_script(_BAR_ON_SCREEN, 1)
    tap = ActionBuilder(browser)
    tap.pointer_action.move_to_location(int(sx), int(sy))
    tap.pointer_action.click()
    tap.perform()
    wait_until(lambda: "/segment/" in browser.current_url, 15, "the tap to open the segment")
    assert f"/segment/{name}?t=" in browser.current_url
    tapped = dt.datetime.fromisoformat(browser.current_url.split("?t=")[1].replace("Z", "+00:00")).timestamp()
    assert abs(tapped - t) <= 2 * seconds_per_px + 0.01  # where the pointer was, to a pixel or two
    _assert_nearest_frame(served, name, tapped, _player_time(browser))


def test_hovering_a_card_plays_its_frames_in_turn(served: Served, browser, review_dir: Path):
    from selenium.webdriver.common.action_chains import ActionChains

    _open(browser, served.base + "night")
    card = browser.find_elements("css selector", ".card[data-name]")[0]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", card)
    wait_until(lambda: len(card.find_elements("css selector", ".strip img")) >= 3, 20, "the thumbnails")
    first = card.find_elements("css selector", ".strip img")[0]
    sources = [img.get_attribute("src") for img in card.find_elements("css selector", ".strip img")]
    ActionChains(browser).move_to_element(card.find_element("css selector", "h3")).perform()
    seen = set()

    def shown_others() -> bool:
        seen.add(first.get_attribute("src"))
        return len(seen) >= 3

    wait_until(shown_others, 10, "the preview to play the card's frames")
    assert seen <= set(sources)
    ActionChains(browser).move_to_element(browser.find_element("id", "review-bar")).perform()
    wait_until(lambda: first.get_attribute("src") == sources[0], 5, "the first frame back after the hover")


def test_keyboard_moves_between_segments_and_enter_opens_one(served: Served, browser, review_dir: Path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    _open(browser, served.base + "night")
    names = _visible(browser)
    assert len(names) >= 3

    def current():
        return browser.execute_script("const c = document.querySelector('.card.current'); return c && c.dataset.name")

    keys = ActionChains(browser)
    keys.send_keys("j").perform()
    assert current() == names[0]
    keys.send_keys("j").perform()
    ActionChains(browser).send_keys(Keys.ARROW_DOWN).perform()
    assert current() == names[2]
    browser.execute_script("document.getElementById('review-clear').focus()")  # a button keeps focus after a click
    ActionChains(browser).send_keys("k").perform()
    assert current() == names[1]
    browser.save_screenshot(str(artifact_path("review-keyboard.png")))
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    wait_until(lambda: f"/segment/{names[1]}" in browser.current_url, 15, "Enter to open the segment")


def test_a_reviewed_mark_survives_a_reload_and_shows_in_another_browser(served: Served, browser, review_dir: Path):
    _open(browser, served.base + "night")
    name = _visible(browser)[1]
    button = browser.find_element("css selector", f'.card[data-name="{name}"] .review-mark')
    wait_until(lambda: button.text == "mark reviewed", 10, "the mark button")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()
    path = review_dir / "reviewed.jsonl"
    wait_until(lambda: path.exists() and name in path.read_text(), 10, "the mark to be stored")
    browser.refresh()
    wait_until(
        lambda: browser.execute_script(
            f"return document.querySelector('.card[data-name=\"{name}\"]').classList.contains('reviewed')"
        ),
        15,
        "the mark after a reload",
    )
    with chromium() as other:
        _open(other, served.base + "night?unreviewed=1")
        wait_until(lambda: name not in _visible(other), 15, "the mark in a second browser (unreviewed only)")
        assert other.find_element("id", "review-unreviewed").is_selected()
        other.find_element("id", "review-unreviewed").click()
        wait_until(lambda: name in _visible(other), 10, "all segments again")
        other.execute_script(
            f"document.querySelector('.card[data-name=\"{name}\"]').scrollIntoView({{block: 'center'}})"
        )
        other.save_screenshot(str(artifact_path("review-reviewed-second-browser.png")))
        undo = other.find_element("css selector", f'.card[data-name="{name}"] .review-mark')
        assert undo.text.startswith("reviewed")
        undo.click()
        wait_until(lambda: path.read_text().count(name) == 2, 10, "the undo to be stored")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["name"], e["reviewed"]) for e in lines] == [(name, True), (name, False)]
    assert served.get_json("/api/reviewed") == {"reviewed": {}}


def test_a_range_export_downloads_and_plays(served: Served, browser, review_dir: Path):
    seg = _index(review_dir)[0]
    lo, hi = seg["start"] + 3.0, seg["start"] + 9.0
    _open(browser, served.base + "night")
    for box, t in (("review-from", lo), ("review-to", hi)):
        el = browser.find_element("id", box)
        el.clear()
        el.send_keys(_iso(t) + "\t")  # the span filters the cards: let the page settle before the click
    wait_until(lambda: len(_visible(browser)) == 1, 10, "the span filter")
    browser.find_element("id", "export-start").click()
    wait_until(lambda: browser.find_elements("css selector", "a.export-file[href$='.mp4']"), 60, "the export to finish")
    status = browser.find_element("id", "export-status").text
    assert status.startswith("export done"), status
    browser.execute_script("document.getElementById('review-bar').scrollIntoView()")
    browser.save_screenshot(str(artifact_path("review-export-done.png")))
    links = {
        a.get_attribute("download"): a.get_attribute("href")
        for a in browser.find_elements("css selector", "a.export-file")
    }
    mp4 = next(n for n in links if n.endswith(".mp4"))
    binary = next(n for n in links if n.endswith(".bin"))
    with urllib.request.urlopen(links[mp4], timeout=20) as r:
        assert r.headers["Content-Type"] == "video/mp4"
        video = r.read()
    with urllib.request.urlopen(links[binary], timeout=20) as r:
        log = r.read()
    assert video == (review_dir / "exports" / mp4).read_bytes()
    with av.open(__import__("io").BytesIO(video)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert 6 * 5 - 3 <= frames <= 6 * 5 + 1  # 6 s at 5 fps
    times = []
    for record in LogReader(__import__("io").BytesIO(log)).records():
        t = events.timestamp(events.decode(record.payload))
        if t is not None:
            times.append(t)
    assert times and lo <= min(times) and max(times) <= hi and max(times) - min(times) > 5.0
    # one at a time, bounded
    assert served.get_json("/api/export")["job"]["state"] == "done"
    origin = {"Origin": served.base.rstrip("/")}
    status, body = served.request("POST", f"/api/export?from={_iso(lo)}&to={_iso(lo + 3600)}", headers=origin)
    assert status == 400 and b"at most" in body


def test_writes_are_refused_without_token_from_another_origin_or_with_a_foreign_host(review_dir: Path, tmp_path: Path):
    name = _index(review_dir)[0]["name"]
    body = json.dumps({"name": name, "reviewed": True}).encode()
    json_type = {"Content-Type": "application/json"}
    with Served(review_dir) as srv:
        own = f"http://127.0.0.1:{srv.port}"
        refused = [
            {},  # no Origin at all (curl, a script)
            {"Origin": "http://evil.example"},
            {"Origin": f"http://localhost:{srv.port + 1}"},
            {"Host": f"evil.example:{srv.port}", "Origin": f"http://evil.example:{srv.port}"},  # DNS rebinding
            {"Host": f"127.0.0.1:{srv.port + 1}", "Origin": f"http://127.0.0.1:{srv.port + 1}"},
            {"Origin": own, "Sec-Fetch-Site": "cross-site"},
        ]
        for headers in refused:
            status, text = srv.request("POST", "/api/reviewed", body, {**json_type, **headers})
            assert status == 403, (headers, status, text)
        status, _ = srv.request("POST", "/api/export?from=1&to=2", None, {"Origin": "http://evil.example"})
        assert status == 403
        assert not (review_dir / "exports" / "range-19700101T000001Z-000002Z.bin").exists()
        assert srv.get_json("/api/status")["writes_refused"] == len(refused) + 1
        # from its own origin (localhost names the loopback server too), the write is taken
        status, _ = srv.request("POST", "/api/reviewed", body, {**json_type, "Origin": own})
        assert status == 200
        status, _ = srv.request(
            "POST",
            "/api/reviewed",
            json.dumps({"name": name, "reviewed": False}).encode(),
            {**json_type, "Host": f"localhost:{srv.port}", "Origin": f"http://localhost:{srv.port}"},
        )
        assert status == 200
        # only reads and these two writes exist
        assert srv.request("POST", "/api/status", b"", {"Origin": own})[0] == 405
        assert srv.request("DELETE", "/api/reviewed", None, {"Origin": own})[0] == 405
    with Served(review_dir, token="s3cret") as srv:
        own = f"http://127.0.0.1:{srv.port}"
        assert srv.request("POST", "/api/reviewed", body, {**json_type, "Origin": own})[0] == 401
        ok = {**json_type, "Origin": own, "Authorization": "Bearer s3cret"}
        assert srv.request("POST", "/api/reviewed", body, {**ok, "Origin": "http://evil.example"})[0] == 403
        assert srv.request("POST", "/api/reviewed", body, ok)[0] == 200


def test_off_loopback_a_write_needs_the_token(review_dir: Path):
    """A server on a LAN address without a token (a caller that forgot resolve_token) still takes no write."""
    from aiohttp.test_utils import make_mocked_request

    class Transport:
        def __init__(self, sockname):
            self.sockname = sockname

        def get_extra_info(self, key, default=None):
            return self.sockname if key == "sockname" else default

    for token, want in ((None, "writes off loopback need a token"), ("t", None)):
        ui = WebUI(review_dir, DirectoryFeed(review_dir), token=token, warm_night=False)
        request = make_mocked_request(
            "POST",
            "/api/reviewed",
            headers={"Host": "192.0.2.7:8080", "Origin": "http://192.0.2.7:8080"},
            transport=Transport(("192.0.2.7", 8080)),
        )
        assert ui._write_refusal(request) == want


def test_the_marks_file_is_never_a_planted_link_or_fifo(tmp_path: Path):
    secret = tmp_path / "secret"
    secret.write_text("keep")
    marks = ReviewedMarks(tmp_path)
    (tmp_path / "reviewed.jsonl").symlink_to(secret)
    with pytest.raises(MarkRefused, match="symbolic link"):
        marks.mark("a")
    assert secret.read_text() == "keep" and marks.read() == {}
    (tmp_path / "reviewed.jsonl").unlink()
    os.mkfifo(tmp_path / "reviewed.jsonl")
    began = time.monotonic()
    with pytest.raises(MarkRefused, match="not a regular file"):
        marks.mark("a")
    assert marks.read() == {} and time.monotonic() - began < 2  # never blocked on the FIFO
    (tmp_path / "reviewed.jsonl").unlink()
    marks.mark("a")
    marks.mark("b")
    with open(tmp_path / "reviewed.jsonl", "ab") as f:
        f.write(b'{"cut off\n[1]\n')
    marks.mark("a", False)
    assert list(marks.read()) == ["b"] and marks.skipped == 2
    with pytest.raises(MarkRefused):
        marks.mark("x" * 500)


def test_search_by_electrode_finds_every_moment_with_a_link(browser, tmp_path: Path):
    """A generated 2-hour telemetry track with a board layout: the pins' moments match the truth, and the page
    searches them from the board picture."""
    directory = tmp_path / "out"
    directory.mkdir()
    start = 1_796_600_000.0
    steps = write_telemetry(directory / "telemetry-20261206.bin", start, 2.0, step_every=300.0, layout=True)
    (directory / "index.jsonl").write_text("")
    (directory / "journal.jsonl").write_text(json.dumps({"event": "start", "time": start}) + "\n")
    with Served(directory) as srv:
        began = time.perf_counter()
        first = srv.get_json("/api/electrodes?pins=12,13")
        elapsed = time.perf_counter() - began
        driven = [(m["time"], m["pin"]) for m in first["moments"] if m["what"] == "driven"]
        truth = [(t, p) for t, p in steps if p in (12, 13)]
        assert len(driven) == len(truth) > 2
        # pdserver's electrode state has no time: it takes the scan's before it (4 Hz)
        assert all(p == q and 0 <= t - u <= 0.25 for (u, p), (t, q) in zip(driven, truth))
        # the scan taken at a step shows the drop on its new pin: covered at exactly that time
        covered = [(m["time"], m["pin"]) for m in first["moments"] if m["what"] == "covered"]
        assert [p for _, p in covered] == [p for _, p in truth]
        assert all(abs(t - u) < 1e-3 for (t, _), (u, _) in zip(covered, truth))
        kinds = {m["what"] for m in first["moments"]}
        assert kinds == {"driven", "released", "covered", "uncovered"}
        again = srv.get_json("/api/electrodes?pins=12,13")
        assert again["query_ms"] < 50 and elapsed < 10
        assert srv.request("GET", "/api/electrodes?pins=x")[0] == 400
        _open(browser, srv.base + "night")
        browser.find_element("id", "electrode-board").click()
        wait_until(lambda: browser.find_elements("css selector", "#electrode-grid button.pin"), 15, "the board")
        for pin in (12, 13):
            browser.find_element("css selector", f'#electrode-grid button.pin[data-pin="{pin}"]').click()
        assert browser.find_element("id", "electrode-pins").get_attribute("value") == "12, 13"
        browser.find_element("id", "electrode-go").click()
        wait_until(lambda: browser.find_elements("css selector", "#electrode-results li"), 15, "the moments")
        items = browser.find_elements("css selector", "#electrode-results li")
        assert len(items) == len(first["moments"])
        assert "no segment" in items[0].text
        browser.execute_script("document.getElementById('electrode-search').scrollIntoView()")
        browser.save_screenshot(str(artifact_path("review-electrode-search.png")))


def test_close_segments_of_one_rule_are_one_review_item(browser, tmp_path: Path):
    """Three segments of one rule 5 s apart read as one item of 3: marked as one when served, expandable in the
    static report, where ?rule= filters too."""
    from autorec.report.page import build_report

    directory = tmp_path / "out"
    directory.mkdir()
    t0 = 1_796_600_000.0
    lines = []
    for i, (rule, start) in enumerate((("a", 0), ("a", 15), ("a", 30), ("b", 200), ("a", 400))):
        name = f"s{i}"
        lines.append(
            {
                "name": name,
                "path": f"{name}.bin",
                "sidecar": f"{name}.json",
                "start": t0 + start,
                "end": t0 + start + 10,
                "rules": [rule],
                "records": 1,
                "bytes": 10,
                "close_reason": "post_roll",
            }
        )
    (directory / "index.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    # served: `r` on a folded item marks the whole item
    from selenium.webdriver.common.action_chains import ActionChains

    with Served(directory) as srv:
        _open(browser, srv.base + "night")
        assert _visible(browser) == ["s0", "s3", "s4"]
        ActionChains(browser).send_keys("j").perform()
        ActionChains(browser).send_keys("r").perform()
        wait_until(lambda: sorted(srv.get_json("/api/reviewed")["reviewed"]) == ["s0", "s1", "s2"], 10, "the item")
    report = build_report(directory, thumbnails=False)
    _open(browser, report.path.as_uri())
    assert _visible(browser) == ["s0", "s3", "s4"]
    toggle = browser.find_element("css selector", '.card[data-name="s0"] .group-toggle')
    assert toggle.text == "+2 more of a"
    toggle.click()
    assert _visible(browser) == ["s0", "s1", "s2", "s3", "s4"]
    browser.save_screenshot(str(artifact_path("review-report-group.png")))
    _open(browser, report.path.as_uri() + "?rule=b")
    assert _visible(browser) == ["s3"]
    # no server behind a file: no marks, no export, no electrode search
    assert not browser.find_elements("id", "review-export") and not browser.find_elements(
        "css selector", ".review-mark"
    )
    assert _page_errors(browser) == []


def test_a_moment_no_segment_covers_shows_the_nearest_timelapse_frame(served: Served, review_dir: Path):
    from autorec.media.thumbnails import Strip, frame_index

    [timelapse] = sorted(review_dir.glob("timelapse-*.bin"))
    times = [t for t, _, _ in frame_index(timelapse, Strip())]
    assert len(times) >= 3
    wanted = times[1] + 0.4 * (times[2] - times[1])  # nearer the second frame than the third
    with urllib.request.urlopen(f"{served.base}api/timelapse?t={_iso(wanted)}", timeout=20) as r:
        assert r.headers["Content-Type"] == "image/jpeg" and r.read()[:2] == b"\xff\xd8"
        assert float(r.headers["X-Frame-Time"]) == pytest.approx(times[1], abs=1e-6)
    assert served.request("GET", "/api/timelapse?t=never")[0] == 400


def test_mark_everything_shown_reviewed_at_once(served: Served, browser, review_dir: Path):
    index = _index(review_dir)
    lo, hi = index[-2]["start"], index[-1]["end"]
    _open(browser, served.base + f"night?from={_iso(lo)}&to={_iso(hi)}")
    shown = _visible(browser)
    assert shown == [s["name"] for s in index if s["end"] >= lo and s["start"] <= hi] and len(shown) >= 2
    path = review_dir / "reviewed.jsonl"
    before = path.read_text().count("\n") if path.exists() else 0
    browser.find_element("id", "review-mark-shown").click()
    wait_until(lambda: set(served.get_json("/api/reviewed")["reviewed"]) >= set(shown), 10, "the marks")
    assert path.read_text().count("\n") == before + len(shown)
    wait_until(
        lambda: (
            browser.execute_script("return document.querySelectorAll('.card.reviewed:not(.hidden)').length")
            == len(shown)
        ),
        10,
        "the cards marked",
    )
    browser.find_element("id", "review-unreviewed").click()
    wait_until(lambda: _visible(browser) == [], 10, "nothing left to review in that span")
    assert "unreviewed=1" in browser.current_url


def test_the_electrode_index_reads_on_as_a_log_grows(tmp_path: Path):
    """Beside a running recorder the telemetry log grows: the cached index reads only the new records (from the
    last whole one: a record cut in the middle is read once it is complete) and ends as a fresh build would."""
    from autorec.report.electrodeindex import ElectrodeIndexCache, build_electrode_index

    whole = tmp_path / "whole.bin"
    write_telemetry(whole, 1_796_600_000.0, 1.0, step_every=120.0)
    data = whole.read_bytes()
    growing = tmp_path / "telemetry-20261206.bin"
    cut = len(data) // 2 + 7  # inside a record
    growing.write_bytes(data[:cut])
    cache = ElectrodeIndexCache()
    first = cache.get([growing])
    half = first.records
    with open(growing, "ab") as f:
        f.write(data[cut:])
    again = cache.get([growing])
    fresh = build_electrode_index([whole])
    assert again is first and half < again.records == fresh.records
    assert again.driven == fresh.driven and again.covered == fresh.covered and again.problems == []
    growing.write_bytes(data[: len(data) // 3])  # replaced by a shorter log: built again
    assert cache.get([growing]) is not first
