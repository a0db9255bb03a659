"""Times and evidence for people (`autorec.readable`): every evidence kind of every built-in trigger, from real
firings, reads as words; times are whole (seconds, tenths) in one style."""

from __future__ import annotations

import re
import time

import pytest

from autorec import events
from autorec.core.engine import RuleEngine
from autorec.core.scores import ScoreTrack
from autorec.readable import clock, evidence_text, local_and_utc, local_time, time_html, utc_time, value_text
from autorec.rules import parse_rules
from autorec.sim.camera import CameraRenderer
from autorec.sim.core import Simulation
from autorec.sim.scenario import load_scenario
from autorec.sim.stream import StreamEncoder
from autorec.triggers import registry
from autorec.triggers.base import Firing, Score
from tests.support.eventbuilder import electrode_state, scan

T0 = 1_797_000_000.0

# Every built-in trigger, and each evidence variant of it the stream below produces.
RULES = """
rules:
  - {name: electrodes, trigger: electrodes}
  - {name: moved, trigger: movement}
  - {name: hot, trigger: threshold, field: "temperature_control.temperatures[0]", above: 40}
  - {name: cold, trigger: threshold, field: "temperature_control.temperatures[0]", below: 30}
  - {name: hv, trigger: threshold, field: hv_regulator.voltage, delta: 0.5}
  - {name: unplugged, trigger: message, kind: device_info, where: {connected: false}}
  - {name: clip, trigger: interval, every: 1min}
  - {name: camera, trigger: motion}
  - {name: stuck, trigger: missed-move}
  - {name: stuck-camera, trigger: missed-move, watch: camera}
"""


def _kind(f: Firing) -> str:
    e = f.evidence
    if f.rule in ("hot", "cold", "hv"):
        return f.rule
    return f"{f.rule}:{e['what']}" if "what" in e else f.rule


@pytest.fixture(scope="module")
def firings() -> list[Firing]:
    """Real firings: the demo scenario (bursts, a temperature ramp to 45, a disconnect) with a stuck drop
    every 30 s and the board's layout, camera included, through every built-in trigger; plus a drop that
    leaves its driven path (scans only) and a near-miss clip."""
    sc = load_scenario("demo")
    sc.layout = True
    seconds = 200.0
    sim = Simulation(sc, seed=3, start_time=T0, duration=seconds, fps=5, faults={"stuck": 30.0})
    encoder = StreamEncoder(CameraRenderer(sc.board.cols, sc.board.rows, width=512, height=384, seed=3))
    engine = RuleEngine(parse_rules(RULES))
    out: list[Firing] = []
    for t, item in sim.advance(T0 + seconds):
        for payload in encoder.encode(t, item):
            if isinstance(payload, bytes):
                out += engine.feed(t, events.decode(payload))
        out += engine.tick(t)
    # a drop that slides on to a pin nobody drives (missed-move's left_path)
    slide = RuleEngine(parse_rules("rules:\n  - {name: stuck, trigger: missed-move}\n"))
    drop = 210.0
    for t, ev in [
        (T0, scan(T0, {22: drop})),
        (T0 + 0.3, electrode_state(drive=[24])),
        (T0 + 0.5, scan(T0 + 0.5, {24: drop})),
        *[(T0 + 0.75 + 0.25 * i, scan(T0 + 0.75 + 0.25 * i, {30: drop})) for i in range(3)],
    ]:
        out += slide.feed(t, ev)
    # a near-miss clip's firing, from a real near-miss of the score track
    track = ScoreTrack()
    near_misses = []
    for i in range(60):
        near_misses += track.feed(T0 + i, [Score("camera", T0 + i, 2e-4 if i == 50 else 1e-6, 3e-4)]).near_misses
    [near] = near_misses + track.finish().near_misses
    out.append(Firing("camera", near.end, near.clip_evidence()))
    return out


def test_every_evidence_kind_of_every_builtin_trigger_reads_as_words(firings: list[Firing]) -> None:
    kinds = {_kind(f) for f in firings} | {"near-miss" for f in firings if f.evidence.get("near_miss")}
    want = {
        "electrodes",
        "moved",
        "hot",
        "cold",
        "hv",
        "unplugged",
        "clip",
        "camera",
        "stuck:no_arrival",
        "stuck:left_path",
        "stuck-camera:no_change",
        "near-miss",
    }
    assert want <= kinds, f"the stream did not produce {sorted(want - kinds)}"
    builtin = {i.name for i in registry.available() if i.origin == "built-in"}
    covered = {"electrodes", "movement", "threshold", "message", "interval", "motion", "missed-move"}
    assert builtin <= covered, f"a built-in trigger without an evidence check: {sorted(builtin - covered)}"
    seen: dict[str, str] = {}
    for f in firings:
        text = evidence_text(f.rule, f.evidence)
        seen.setdefault(_kind(f) if not f.evidence.get("near_miss") else "near-miss", text)
        for bad in ("{", "}", "[]", "e+0", "True", "False", "None", "'"):
            assert bad not in text, (bad, text, f.evidence)
        assert not re.search(r"\d{9,}", text), ("an epoch number", text)
        # every time of day is whole: HH:MM:SS, with tenths when shown
        for m in re.finditer(r"\d+:\d+(:\d+)?(\.\d+)?", text):
            assert re.fullmatch(r"\d\d:\d\d:\d\d(\.\d)?", m.group()), ("a cut time", m.group(), text)
    # the words say what happened (one of each, read by a person)
    assert re.fullmatch(r"pins? [\d, ]+ driven( \(.*\))?|no pins driven \(removed [\d, ]+\)", seen["electrodes"])
    assert seen["unplugged"] == "board connected: no"
    assert re.search(r"since \d\d:\d\d:\d\d\.\d", seen["moved"]), seen["moved"]
    assert re.fullmatch(r"temperatures\[0\] [\d.]+, above 40", seen["hot"]), seen["hot"]
    assert seen["clip"].startswith("scheduled for ") and seen["camera"].startswith("camera: ")
    assert "no drop after" in seen["stuck:no_arrival"] and "not driven" in seen["stuck:left_path"]
    assert "did not change in" in seen["stuck-camera:no_change"]
    assert seen["near-miss"].startswith("near-miss: peak 2.00e-04, usually 1.00e-06, fires at 3.00e-04")
    print("\n".join(f"{k}: {v}" for k, v in sorted(seen.items())))


def test_values_and_times_in_one_style() -> None:
    t = T0 + 0.37
    assert re.fullmatch(r"\d\d:\d\d:\d\d", clock(t)) and re.fullmatch(r"\d\d:\d\d:\d\d\.3", clock(t, 1))
    assert local_time(t) == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(T0))
    assert utc_time(t, 1) == time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(T0)) + ".3"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(UTC [\d :-]+\)", local_and_utc(t))
    html = time_html(t, 1)
    assert re.fullmatch(r'<time datetime="[\dT:.-]+Z" title="UTC [\d :.-]+">\d\d:\d\d:\d\d\.3</time>', html), html
    assert clock(None) == "?" and clock(float("nan")) and clock(1e300)  # never raises
    assert value_text("removed", []) == "none" and value_text("where", {"device_info.connected": False}) == (
        "board connected: no"
    )
    assert value_text("since", T0) == clock(T0, 1) and value_text("count", 1797000000) == "1797000000"
    assert value_text("pins", list(range(20))).endswith("... (20 in all)")
    assert [value_text("v", v) for v in (9999.7, 1234.56, 0.5, 3.5e-7, 12, True)] == [
        "10000",
        "1235",
        "0.5",
        "3.50e-07",
        "12",
        "yes",
    ]
    # a plugin's evidence, whatever its shape, in words
    text = evidence_text("plug", {"level": 3.5e-7, "ok": True, "nested": {"a": [1, 2]}, "at": T0, "none": []})
    assert text == f"level 3.50e-07; ok yes; nested a: 1, 2; at {clock(T0, 1)}; none none"


def test_a_card_reads_its_first_firing_whole_and_counts_every_firing(tmp_path) -> None:
    """The report's card of a segment with more firings than its sidecar lists (capped at 100)."""
    from autorec.report.night import Segment
    from autorec.report.page import card_html

    firings = [
        {"rule": "electrodes", "time": T0 + 0.27 + i, "evidence": {"pins": [i], "added": [i]}} for i in range(100)
    ]
    sidecar = {
        "firings": firings,
        "firing_counts": {"electrodes": 150, "unplugged": 1},
        "firings_omitted": {"count": 51, "last": firings[-1], "note": "only the first 100 firings are listed"},
    }
    seg = Segment("s", tmp_path / "s.bin", tmp_path / "s.json", T0, T0 + 200, ("electrodes",), 10, 1000, "post_roll")
    seg.sidecar = sidecar
    html = card_html(0, seg, None, lambda s: [])
    assert f"first firing {time_html(T0 + 0.27, 1)}: pin 0 driven (added 0)" in html
    assert re.search(r">\d\d:\d\d:\d\d\.2</time>", html)  # whole, not 02:15:1:
    assert "(electrodes fired 150x, unplugged fired 1x)" in html and "count fired" not in html


def test_chart_time_axes_are_in_the_local_time_of_the_computer_that_made_them(monkeypatch) -> None:
    """Bokeh labels datetime ticks in UTC; the charts shift them by the maker's UTC offset at the night's time,
    so the axis agrees with the texts beside it (seen in a screenshot of a report made in JST, read in UTC)."""
    from bokeh.plotting import figure

    from autorec.report.charts import local_time_axis

    try:
        for zone, hours in (("Asia/Tokyo", 9), ("UTC", 0), ("America/New_York", -5)):
            monkeypatch.setenv("TZ", zone)
            time.tzset()
            p = figure(x_axis_type="datetime")
            local_time_axis(p, T0)  # 2026-12-09: no daylight-saving time in any of these
            formatter = p.xaxis[0].formatter
            assert formatter.args["offset"] == hours * 3600 * 1000 and "getUTCHours" in formatter.code
            assert clock(T0) == time.strftime("%H:%M:%S", time.gmtime(T0 + hours * 3600))
    finally:
        monkeypatch.undo()
        time.tzset()
