"""`autorec report`: a night recorded from the simulator, read back into one HTML page, checked in a real browser."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from autorec.cli import main
from tests.support.browser import artifact_path, chromium, console_errors
from tests.support.polling import wait_until


def index_of(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "index.jsonl").read_text().splitlines()]


def test_report_has_a_card_and_a_bar_per_segment_and_the_numbers_of_ls(night: Path, tmp_path: Path, capsys):
    out = tmp_path / "night.html"
    png = tmp_path / "night.png"
    assert main(["report", str(night), "-o", str(out), "--png", str(png)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # no problem in a healthy directory
    page = out.read_text()
    index = index_of(night)
    assert len(index) >= 3
    for entry in index:
        assert f'data-name="{entry["name"]}"' in page
    assert page.count("<div class=card ") == len(index)
    # the page is self-contained: no tag loads a script, style or image from anywhere
    # (BokehJS's own code names a MathJax CDN it uses only for math text, which the report has none of;
    # the browser test checks that nothing is fetched)
    markup = re.sub(r"(?s)(<script[^>]*>).*?</script>", r"\1</script>", page)
    assert not re.search(r'<script[^>]+src=|<link[^>]+href=|(src|href)="(https?:)?//', markup)
    assert 'src="data:image/jpeg;base64,' in page
    # the summary's figures are those of `autorec ls`
    assert main(["ls", str(night), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    kept = sum(s["bytes"] for s in listing["segments"])
    per_rule: dict[str, int] = {}
    for s in listing["segments"]:
        for r in s["rules"]:
            per_rule[r] = per_rule.get(r, 0) + 1
    from autorec.units import format_size

    assert f"<td>segments</td><td>{len(index)} (" in page
    assert ", ".join(f"{r}: {n}" for r, n in per_rule.items()) in page
    assert f"{format_size(kept)} of " in page
    # the server's close faults are in the journal, hence in the summary
    assert re.search(r"<span class=bad>[1-9]\d* disconnection\(s\)", page)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the timelapse track (a frame every 30 s, on by default) is shown as a filmstrip
    timelapse = sorted(night.glob("timelapse-*.bin"))
    assert timelapse and "The night in pictures" in page and timelapse[0].name in page
    # with the command that makes the movie, naming the folder (it runs from anywhere, like the report)
    assert f"<code>autorec video {timelapse[0]} --fps 10 --timestamp</code>" in page
    # the score track of the motion rule is plotted with its threshold
    assert "Score of camera-motion (threshold 0.0003)" in page


def test_report_in_a_real_browser(night: Path, tmp_path: Path):
    out = tmp_path / "night.html"
    assert main(["report", str(night), "-o", str(out)]) == 0
    index = index_of(night)
    with chromium(1300, 1000) as driver:
        driver.get(out.as_uri())
        wait_until(
            lambda: driver.execute_script("return !!(window.Bokeh && Bokeh.index && Object.keys(Bokeh.index).length)"),
            15,
            "Bokeh to render the charts",
        )
        assert console_errors(driver) == []
        fetched = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'))"
        )
        assert fetched == []  # nothing from the network, nothing from disk beyond the page itself
        # every segment has a card, and one bar per rule it holds
        cards = driver.execute_script("return [...document.querySelectorAll('.card')].map(c => c.dataset.name)")
        assert cards == [e["name"] for e in index]
        bars = driver.execute_script(
            "const doc = Bokeh.documents[0];"
            "const src = doc.get_model_by_name('segment_bars');"
            "return src.data.name.length;"
        )
        assert bars == sum(len(e["rules"]) for e in index)
        driver.save_screenshot(str(artifact_path("report-top.png")))
        # click the last segment's bar: the page scrolls to its card
        target = len(index) - 1
        point = driver.execute_script(
            """
            const doc = Bokeh.documents[0];
            const src = doc.get_model_by_name('segment_bars');
            const i = src.data.card.lastIndexOf(arguments[0]);
            const x = (src.data.left[i] + src.data.right[i]) / 2, lane = src.data.lane[i];
            const root = Object.values(Bokeh.index)[0];
            const views = [root];
            while (views.length) {
              const v = views.shift();
              if (v.model && v.model.name === 'timeline' && v.frame) {
                const r = v.canvas_view.el.getBoundingClientRect();
                const y = v.frame.y_scale.compute(v.model.y_range.factors.indexOf(lane) + 0.5);
                return [r.left + v.frame.x_scale.compute(x), r.top + y];
              }
              for (const c of (v.child_views || [])) views.push(c);
            }
            return null;
            """,
            f"seg-{target}",
        )
        assert point is not None, "timeline figure view not found"
        assert driver.execute_script("return window.scrollY") == 0
        from selenium.webdriver.common.actions.action_builder import ActionBuilder

        actions = ActionBuilder(driver)
        actions.pointer_action.move_to_location(int(point[0]), int(point[1])).click()
        actions.perform()

        def scrolled_to_card() -> bool:
            # at the top of the window, or (the last cards, when the page cannot scroll that far) in view
            return driver.execute_script(
                f"const r = document.getElementById('seg-{target}').getBoundingClientRect();"
                "return window.scrollY > 0 && r.top >= 0 && r.bottom <= window.innerHeight;"
            )

        wait_until(scrolled_to_card, 5, "the page to scroll to the clicked segment's card")
        driver.save_screenshot(str(artifact_path("report-card.png")))
        assert console_errors(driver) == []


def test_report_of_damaged_directories_comes_out_with_the_problems_named(night: Path, tmp_path: Path, capsys):
    # empty directory
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 0
    assert "No segment in this directory" in (empty / "report.html").read_text()
    # telemetry only
    tele = tmp_path / "tele"
    tele.mkdir()
    for f in night.glob("telemetry-*.bin"):
        shutil.copy(f, tele / f.name)
    assert main(["report", str(tele)]) == 0
    page = (tele / "report.html").read_text()
    assert "Temperature" in page and "No segment" in page
    # a corrupt sidecar, a missing segment file, a sidecar from a future autorec, a damaged index line
    bad = tmp_path / "bad"
    shutil.copytree(night, bad)
    index = index_of(bad)
    (bad / index[0]["sidecar"]).write_text("{ damaged")
    (bad / index[1]["path"]).unlink()
    side = json.loads((bad / index[2]["sidecar"]).read_text())
    side["version"] = 7
    (bad / index[2]["sidecar"]).write_text(json.dumps(side))
    with open(bad / "index.jsonl", "a") as f:
        f.write('{"name": "cut-off\n')
    capsys.readouterr()
    assert main(["report", str(bad)]) == 0
    err = capsys.readouterr().err
    page = (bad / "report.html").read_text()
    for what in ("sidecar not valid JSON", "segment file missing", "sidecar version 7 is newer", "not a JSON line"):
        assert what in err
        assert what in page
    assert page.count("<div class=card ") == len(index)
    assert "4 problem(s) found" in page


def test_report_escapes_what_comes_from_the_directory(tmp_path: Path):
    from tests.test_night import make_segment

    make_segment(tmp_path, "x", 1000.0, 1010.0, rules=("<script>alert(1)</script>",))
    assert main(["report", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "<script>alert(1)</script>" not in page.split("<body>", 1)[1].split("<script type=")[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_report_usage_errors(tmp_path: Path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--from", "soon"]) == 2
    assert "not understood" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "no" / "such" / "dir.html")]) == 1
    assert "cannot write" in capsys.readouterr().err


def test_report_without_the_report_extra_says_what_to_install(tmp_path: Path):
    """A core install has no Bokeh: one line naming the extra, exit 2, no traceback."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['bokeh'] = None; sys.modules['matplotlib'] = None\n"
        "from autorec.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "report", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    # this Python's own pip and the clone: 'autorec' on PyPI is another project
    assert proc.stderr.strip() == (
        "autorec report: the report needs the 'report' extra (Bokeh; matplotlib for --png): "
        f"{sys.executable} -m pip install '.[report]' in the autorec folder"
    )
