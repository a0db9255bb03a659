"""Pre-roll counts from the onset of the evidence, not from the moment a trigger confirms it.

Checked against the simulator's ground truth: every activity window is kept from a full
`pre_roll` before its first move (up to the sensor's own sampling latency), for the motion,
movement and electrodes triggers; and unit by unit (segmenter, engine, triggers, sidecar).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autorec.core.dryrun import DryRun
from autorec.core.engine import RuleEngine
from autorec.core.pipeline import Pipeline
from autorec.core.segmenter import OpenSegment, Segmenter, SegmentPolicy
from autorec.rules import parse_rules
from autorec.runs.dispatch import Dispatcher
from autorec.runs.filesource import FileSource, run_file
from autorec.triggers.base import Firing, as_firings
from tests.support.eventbuilder import hv, payload
from tests.support.simlog import write_sim_log

PRE_ROLL = 10.0

# How long after the first move of a window each trigger's first evidence can come, from the
# sensor's own sampling (not from confirmation, which the onset removes): electrodes change at
# the control step itself; the camera is analysed 5 times a second (the picture changes within
# ~0.1 s of the move starting); a scan comes every 0.25 s and a drop shows on its new pin a
# quarter into its 0.3 s move. Each budget also absorbs the message spacing (~0.1 s) at the window edge.
LATENCY = {"electrodes": 0.1, "motion": 0.3, "movement": 0.35}


@pytest.fixture(scope="module")
def demo_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("onset") / "demo.bin"
    truth = write_sim_log(path, "demo", 120.0, fps=5.0)  # three bursts of drop moves
    return path, truth


def _union_covers(spans: list[tuple[float, float]], start: float, end: float, slack: float = 0.3) -> bool:
    """Whether [start, end] is covered by one span, or by spans that follow on (a segment opening
    soon after another starts its pre-roll where the other ended: within `slack`)."""
    reach: float | None = None
    for s, e in sorted(spans):
        if reach is None:
            if s <= start <= e:
                reach = e
        elif s <= reach + slack:
            reach = max(reach, e)
    return reach is not None and reach >= end


@pytest.mark.parametrize("trigger", ["motion", "movement", "electrodes"])
def test_every_activity_window_is_kept_from_a_full_pre_roll_before_its_first_move(demo_log, trigger: str) -> None:
    path, truth = demo_log
    rules = parse_rules(
        f"segments: {{pre_roll: {PRE_ROLL}s, post_roll: 20s}}\nrules:\n  - {{name: r, trigger: {trigger}}}\n",
        "onset.yaml",
    )
    sink = DryRun()
    run_file(Dispatcher(Pipeline(rules, offline=True, telemetry=False), sink), FileSource(path))
    spans = [(s.start, s.end) for s in sink.segments]
    assert len(truth["activity"]) == 3, truth
    for window in truth["activity"]:
        want = window["start"] - PRE_ROLL + LATENCY[trigger]
        assert _union_covers(spans, want, window["end"]), (trigger, window, [(s - want, e) for s, e in spans])


# -- the segmenter ---------------------------------------------------------------------------


def _feed(seg: Segmenter, times, firings_at: dict[float, list[Firing]]) -> list:
    out = []
    for t in times:
        out += seg.feed(t, payload("hv_regulator", t), "hv_regulator", firings_at.get(t, []))
    return out


def test_pre_roll_counts_from_the_earliest_onset_within_the_rules_lag() -> None:
    seg = Segmenter(default=SegmentPolicy(pre_roll=2.0, post_roll=1.0))
    seg.set_onset_lags({"slow": 3.0})
    times = [i * 0.5 for i in range(21)]  # 0 .. 10 s
    fired = [Firing("slow", 8.0, {}, onset=5.5), Firing("fast", 8.0, {})]
    opened = [a for a in _feed(seg, times, {8.0: fired}) if isinstance(a, OpenSegment)]
    assert opened[0].start == 3.5  # onset 5.5 - pre_roll 2 (the ring held pre_roll + lag = 5 s)
    assert [f.onset for f in opened[0].firings] == [5.5, 8.0]


def test_an_onset_beyond_the_declared_lag_is_clamped_to_it() -> None:
    seg = Segmenter(default=SegmentPolicy(pre_roll=2.0, post_roll=1.0))
    seg.set_onset_lags({"slow": 1.0})
    times = [i * 0.5 for i in range(21)]
    opened = [a for a in _feed(seg, times, {8.0: [Firing("slow", 8.0, {}, onset=0.0)]}) if isinstance(a, OpenSegment)]
    assert opened[0].start == 5.0  # 8 - lag 1 - pre_roll 2: the ring never holds more than that


# -- the engine and the Trigger API ----------------------------------------------------------


def test_a_plugin_sets_the_onset_and_a_bad_one_is_a_counted_error(tmp_path: Path) -> None:
    (tmp_path / "late.py").write_text(
        "from autorec.triggers.base import Trigger\n"
        "class Late(Trigger):\n"
        "    kinds = frozenset({'hv_regulator'})\n"
        "    max_onset_lag = 5.0\n"
        "    def feed(self, time, event, state):\n"
        "        v = event.hv_regulator.voltage\n"
        "        return self.fire(time, onset=float('nan') if v < 0 else v, volts=v)\n"
    )
    rules = parse_rules("rules:\n  - {name: p, trigger: 'late:Late'}\n", tmp_path / "r.yaml")
    engine = RuleEngine(rules)
    assert engine.onset_lags() == {"p": 5.0}
    [f] = engine.feed(100.0, hv(100.0, 97.0))
    assert (f.time, f.onset, f.evidence) == (100.0, 97.0, {"volts": 97.0})
    [f] = engine.feed(101.0, hv(101.0, 150.0))
    assert f.onset == 101.0  # an onset after the firing is the firing time
    assert engine.feed(102.0, hv(102.0, -1.0)) == [] and engine.errors == {"p": 1}


def test_threshold_for_fires_after_the_hold_with_the_crossing_as_onset() -> None:
    from autorec.triggers.threshold import ThresholdTrigger

    trig = ThresholdTrigger("hot", field="hv_regulator.voltage", above=100.0, **{"for": 2.0})
    assert trig.max_onset_lag == 4.0
    values = [(0.0, 90.0), (1.0, 101.0), (2.0, 99.0), (3.0, 105.0), (4.0, 106.0), (5.0, 107.0), (6.0, 108.0)]
    fired = [f for t, v in values for f in as_firings(trig.feed(t, hv(t, v), None))]  # type: ignore[arg-type]
    assert [(f.time, f.onset) for f in fired] == [(5.0, 3.0)]  # the crossing at 1.0 dipped back within 2 s


def test_threshold_for_is_checked_like_any_option(tmp_path: Path) -> None:
    from autorec.rules import ConfigError

    base = "rules:\n  - {name: t, trigger: threshold, field: hv_regulator.voltage, "
    with pytest.raises(ConfigError, match=r"rules\[t\]\.for: applies to above/below only"):
        parse_rules(base + "delta: 5, for: 2s}\n", tmp_path / "r.yaml")
    with pytest.raises(ConfigError, match=r"rules\[t\]\.for: expected a duration"):
        parse_rules(base + "above: 5, for: soon}\n", tmp_path / "r.yaml")


def test_the_sidecar_lists_firing_time_and_onset(demo_log, tmp_path: Path) -> None:
    from autorec.io.writer import SegmentWriter

    path, _truth = demo_log
    text = "segments: {pre_roll: 2s, post_roll: 2s}\nrules:\n  - {name: mv, trigger: movement}\n"
    rules = parse_rules(text, "m.yaml")
    writer = SegmentWriter(tmp_path, rules.output.name, fsync=False, telemetry=False, block=True).start()
    run_file(Dispatcher(Pipeline(rules, offline=True, telemetry=False), writer), FileSource(path))
    assert writer.close(30)
    sidecars = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*.json"))]
    firings = [f for s in sidecars for f in s["firings"]]
    assert firings and all(f["onset"] <= f["time"] for f in firings)
    assert any(f["onset"] < f["time"] - 1.0 for f in firings)  # a burst: the firing came when the drops stopped
