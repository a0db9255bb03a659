"""Hostile strings in every field of an output directory, rendered by a real headless Chromium: every page of
`serve` and the report show them as text; none becomes an element, runs a script or opens a dialog.

The strings go where a damaged file, a careless rule file or an attacker with write access to the directory
could put them: the directory's name, segment names, rule names, close reasons, firing evidence, alert
messages in the journal, and the status file's fields (open segment, alerts, scores).
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
from pathlib import Path

from autorec.cli import main
from autorec.web.feed import DirectoryFeed
from autorec.web.server import WebUI
from tests.support.browser import artifact_path, chromium
from tests.support.polling import wait_until
from tests.test_web_hostile import Served


def payload(n: int) -> str:
    """Markup that, if it ever became markup, would set `window.__pwned` and open a dialog."""
    return f'<img src=x onerror="window.__pwned={n};alert({n})">\'"&amp;'


DIR_NAME = "night" + payload(1).replace("/", "")
SEG_NAME = "seg" + payload(2)  # a file name: no slash
RULE = "rule" + payload(3)
TITLE_BREAK = '</title></script><svg onload="window.__pwned=4;alert(4)">'


def hostile_directory(night: Path, root: Path) -> tuple[Path, list[str]]:
    d = root / DIR_NAME
    shutil.copytree(night, d)
    (d / "report.html").unlink(missing_ok=True)
    lines = [json.loads(line) for line in (d / "index.jsonl").read_text().splitlines()]
    names = []
    for i, entry in enumerate(lines):
        old_bin, old_json = d / entry["path"], d / entry["sidecar"]
        name = SEG_NAME if i == 0 else (TITLE_BREAK + str(i) if i == 1 else entry["name"])
        file_stem = name.replace("/", "") if i == 1 else name
        sidecar = json.loads(old_json.read_text())
        sidecar.update(name=name, rules=[RULE, *sidecar.get("rules", [])], close_reason=payload(5))
        for f in sidecar.get("firings", []):
            f["rule"] = RULE
            f["evidence"] = {payload(6): payload(7), "score": 0.5}
        old_bin.rename(d / f"{file_stem}.bin")
        old_json.unlink()
        (d / f"{file_stem}.json").write_text(json.dumps(sidecar))
        entry.update(name=name, path=f"{file_stem}.bin", sidecar=f"{file_stem}.json", rules=[RULE, *entry["rules"]])
        entry["close_reason"] = payload(8)
        names.append(name)
    (d / "index.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    journal = [json.loads(line) for line in (d / "journal.jsonl").read_text().splitlines()]
    t = journal[1]["time"]
    journal[1:1] = [
        {"event": "alert", "time": t, "wall": t, "state": "raised", "key": payload(9), "name": payload(10),
         "message": payload(11), "since": t},
    ]  # fmt: skip
    journal[0]["rules"] = payload(12)
    (d / "journal.jsonl").write_text("".join(json.dumps(e) + "\n" for e in journal))
    status = json.loads((d / "status.json").read_text())
    status.update(
        open_segment={"path": payload(13), "start": t, "rules": [RULE, payload(14)]},
        alerts=[{"key": payload(15), "message": payload(16), "since": t}],
        scores={RULE: {"time": t, "score": 0.4, "threshold": 1.0, "ratio": 0.4}},
        counters={payload(17): 1, "segments_closed": 3},
        # a field the page shows and no autorec writes into the file: a number where a text is
        recent_segments=[
            {"name": payload(18), "start": t, "end": t + 1, "bytes": payload(19), "rules": [RULE], "close_reason": 7}
        ],
    )
    (d / "status.json").write_text(json.dumps(status))
    near = d / "near-misses.jsonl"
    near.write_text(
        json.dumps({"rule": RULE, "start": t, "end": t + 1, "peak": 0.9, "threshold": 1.0, "peak_time": t}) + "\n"
    )
    return d, names


def assert_inert(driver, page: str) -> None:
    """No payload ran (no flag, no dialog) and none became an element."""
    from selenium.common.exceptions import NoAlertPresentException

    try:
        text = driver.switch_to.alert.text
        raise AssertionError(f"{page}: a dialog opened: {text!r}")
    except NoAlertPresentException:
        pass
    assert driver.execute_script("return window.__pwned === undefined"), page
    injected = driver.execute_script(
        "return [...document.querySelectorAll('img[src=\"x\"], svg[onload], [onerror]')].map(e => e.outerHTML)"
    )
    assert injected == [], (page, injected)


def test_hostile_strings_in_every_field_stay_text_on_every_page(night: Path, tmp_path: Path):
    d, names = hostile_directory(night, tmp_path)
    report = tmp_path / "report.html"
    assert main(["report", "--no-thumbnails", str(d), "-o", str(report)]) in (0, 1)
    with Served(lambda: WebUI(d, DirectoryFeed(d))) as srv, chromium(1300, 1000) as driver:
        base = srv.base.rstrip("/")
        # the live page: status fields and the recent segments, rendered by live.js
        driver.get(base + "/")
        wait_until(lambda: "rule<img" in driver.find_element("id", "scores").text, 10, "the hostile score name as text")
        wait_until(lambda: driver.find_elements("css selector", "#recent tr"), 10, "the recent segments")
        body = driver.find_element("tag name", "body").text
        assert payload(16) in body and payload(14).split("'")[0] in body  # shown, as text
        driver.save_screenshot(str(artifact_path("hostile-live.png")))
        assert_inert(driver, "/")
        # the night page and a segment page for each name (the title-breaking one too)
        driver.get(base + "/night")
        wait_until(lambda: driver.execute_script("return !!(window.Bokeh && Bokeh.documents.length)"), 20, "charts")
        wait_until(lambda: len(driver.find_elements("css selector", ".card")) >= len(names), 10, "every card")
        assert DIR_NAME in driver.title and SEG_NAME in driver.find_element("tag name", "body").text
        driver.save_screenshot(str(artifact_path("hostile-night.png")))
        assert_inert(driver, "/night")
        for name in names[:2]:
            driver.get(base + "/segment/" + urllib.parse.quote(name, safe=""))
            wait_until(lambda: driver.find_elements("tag name", "h1"), 10, "the segment page")
            assert driver.find_element("tag name", "h1").text == name  # the name that ends </title> too
            assert driver.title == f"autorec segment {name}"
            driver.save_screenshot(str(artifact_path(f"hostile-segment-{names.index(name)}.png")))
            assert_inert(driver, f"/segment/{name}")
        # the report, opened from its file
        driver.get(report.as_uri())
        wait_until(lambda: driver.find_elements("css selector", ".card"), 20, "the report's cards")
        assert DIR_NAME in driver.title and DIR_NAME in driver.find_element("tag name", "h1").text
        driver.save_screenshot(str(artifact_path("hostile-report.png")))
        assert_inert(driver, "report.html")
