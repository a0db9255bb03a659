"""The score track, near-misses and near-miss clips (pure parts, then through the pipeline and files)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from autorec.core.dryrun import DryRun
from autorec.core.pipeline import Pipeline
from autorec.core.scores import NearMiss, ScoreRow, ScoreTrack
from autorec.io.scorelog import ScoreLog, scores_name
from autorec.rules import ConfigError, parse_rules
from autorec.runs.dispatch import Dispatcher
from autorec.runs.filesource import FileSource, run_file
from autorec.triggers.base import Firing, Score
from tests.support.simlog import T0, write_sim_log


def _feed_all(track: ScoreTrack, items):
    rows, near = [], []
    for t, value, fired in items:
        out = track.feed(t, [Score("r", t, value, 1.0)], [Firing("r", t, {})] if fired else [])
        rows += out.rows
        near += out.near_misses
    out = track.finish()
    return rows + out.rows, near + out.near_misses


def test_per_second_maximum_rows() -> None:
    rows, _ = _feed_all(ScoreTrack(), [(10.1, 0.2, False), (10.6, 0.4, False), (11.2, 0.1, False), (13.0, 0.3, False)])
    assert [(r.second, r.max) for r in rows] == [(10, 0.4), (11, 0.1), (13, 0.3)]


def test_near_miss_is_a_period_above_the_fraction_without_firing() -> None:
    usual = [(t - 100.0, 0.0, False) for t in range(100)]  # the score's usual level: 0
    items = [*usual, (0.0, 0.1, False), (1.0, 0.6, False), (1.5, 0.8, False), (2.0, 0.55, False), (4.0, 0.1, False)]
    # then a period that fires: not a miss, nor is the rest of the same excursion
    items += [(9.0, 0.7, False), (9.2, 1.2, True), (9.4, 0.9, False), (12.0, 0.2, False)]
    # a new excursion after the score dropped back is one again
    items += [(15.0, 0.9, False), (18.0, 0.0, False)]
    _, near = _feed_all(ScoreTrack(gap=1.0), items)
    assert [(n.start, n.end, n.peak) for n in near] == [(1.0, 2.0, 0.8), (15.0, 15.0, 0.9)]
    d = near[0].as_dict()
    assert d["ratio"] == 0.8 and d["start_iso"].endswith("Z") and d["rule"] == "r" and d["threshold"] == 1.0
    assert d["baseline"] == 0.0 and d["closeness"] == 0.8


def test_a_close_call_just_before_a_firing_is_its_run_up_not_a_miss() -> None:
    # a camera score over the threshold on one frame, under it on the next, then min_frames in a row: fired
    usual = [(t - 100.0, 0.0, False) for t in range(100)]
    items = [*usual, (0.0, 1.5, False), (1.0, 0.1, False), (2.5, 0.1, False), (3.0, 1.4, True), (20.0, 0.0, False)]
    _, near = _feed_all(ScoreTrack(gap=1.0), items)
    assert near == []


def _temperatures(track: ScoreTrack, values: list[float], threshold: float = 45.0, t0: float = 0.0):
    """One score a second (a `threshold` rule's temperature against `above: 45`); the near-misses."""
    near = []
    for i, v in enumerate(values):
        near += track.feed(t0 + i, [Score("too-hot", t0 + i, v, threshold)]).near_misses
    return near + track.finish().near_misses


def test_a_steady_score_far_from_zero_is_no_near_miss() -> None:
    # room temperature (25 = 0.56x of `above: 45`) and a 37 C hold: where the score usually is
    assert _temperatures(ScoreTrack(), [25.0] * 600) == []
    # warming from 25 to a 37 hold over 4 min, holding 10 min: the baseline follows, no near-miss
    ramp = [25.0 + 12.0 * min(1.0, i / 240) for i in range(840)]
    assert _temperatures(ScoreTrack(), ramp) == []


def test_a_real_close_call_from_the_usual_level_is_one_near_miss() -> None:
    hold = [37.0] * 900
    # a 37 C hold that climbs to 43 for 20 s and back: 75 % of the way to 45, a near-miss
    spike = hold + [37.0 + 6.0 * min(1.0, i / 30) for i in range(30)] + [43.0] * 20 + [37.0] * 60
    near = _temperatures(ScoreTrack(), spike)
    assert len(near) == 1 and near[0].peak == 43.0 and near[0].baseline == 37.0
    assert near[0].closeness == pytest.approx(0.75)
    # a slow drift from 37 to 44 over 10 minutes is a close call too (the 30-min median stays near 37)
    drift = hold + [37.0 + 7.0 * i / 600 for i in range(600)] + [37.0] * 30
    near = _temperatures(ScoreTrack(), drift)
    assert len(near) == 1 and near[0].peak == pytest.approx(44.0, abs=0.02)
    # a baseline already past the threshold (a rule that stays fired) has none
    assert _temperatures(ScoreTrack(), [46.0] * 300 + [45.5] * 10) == []


def test_the_baseline_forgets_after_its_window() -> None:
    track = ScoreTrack(window=60.0)
    _temperatures(track, [25.0] * 100 + [37.0] * 100)
    assert track.baseline("too-hot") == 37.0


def test_fraction_zero_turns_near_misses_off() -> None:
    _, near = _feed_all(ScoreTrack({"r": 0.0}), [(1.0, 0.9, False), (5.0, 0.0, False)])
    assert near == []


def test_near_miss_options_are_checked(tmp_path: Path) -> None:
    base = "rules:\n  - {name: cam, trigger: motion, "
    with pytest.raises(ConfigError, match=r"r.yaml:2: rules\[cam\]\.near_miss: must be below 1, got 1.5"):
        parse_rules(base + "near_miss: 1.5}\n", tmp_path / "r.yaml")
    with pytest.raises(ConfigError, match=r"rules\[cam\]\.near_miss_clip: "):
        parse_rules(base + "near_miss_clip: maybe}\n", tmp_path / "r.yaml")
    rule = parse_rules(base + "near_miss: 0.7, near_miss_clip: true}\n", tmp_path / "r.yaml").rules[0]
    assert (rule.near_miss, rule.near_miss_clip) == (0.7, True)


@pytest.fixture(scope="module")
def subtle_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("subtle") / "subtle.bin"
    truth = write_sim_log(path, "subtle", 80.0, fps=10.0)
    return path, truth


def _overlaps(a0: float, a1: float, b0: float, b1: float) -> bool:
    return a0 <= b1 and b0 <= a1


def test_sub_threshold_motion_is_found_as_near_misses(subtle_log) -> None:
    path, truth = subtle_log
    rules = parse_rules("rules:\n  - {name: cam, trigger: motion}\n", "subtle.yaml")
    sink = DryRun()
    run_file(Dispatcher(Pipeline(rules, offline=True, telemetry=False), sink, score_sinks=[sink]), FileSource(path))
    subtle, activity = truth["subtle"], truth["activity"]
    assert len(subtle) == 2 and len(activity) == 1
    # the real burst fires; the nudges do not...
    assert len(sink.segments) == 1 and sink.segments[0].start <= activity[0]["start"]
    # ...and every nudge (its start or its return) shows as a near-miss, with nothing else
    for s in subtle:
        assert any(_overlaps(n.start, n.end, s["start"], s["end"] + 1.0) for n in sink.found_near_misses), s
    for n in sink.found_near_misses:
        assert 0.5 < n.ratio < 1.0
        assert any(_overlaps(n.start, n.end, s["start"], s["end"] + 1.0) for s in subtle), n
    summary = sink.score_summary()["cam"]
    assert summary["peak"] > summary["threshold"] and summary["seconds"] >= 79


def test_backtest_writes_the_score_track_and_near_misses_and_clips(subtle_log, tmp_path: Path) -> None:
    from autorec.io.writer import SegmentWriter

    path, _truth = subtle_log
    rules = parse_rules(
        "segments: {pre_roll: 2s, post_roll: 2s}\n"
        "rules:\n  - {name: cam, trigger: motion, near_miss_clip: true}\n  - {name: mv, trigger: movement}\n",
        "subtle.yaml",
    )
    writer = SegmentWriter(tmp_path, rules.output.name, fsync=False, telemetry=False, block=True).start()
    score_log = ScoreLog(tmp_path)
    run_file(
        Dispatcher(Pipeline(rules, offline=True, telemetry=False), writer, score_sinks=[score_log]), FileSource(path)
    )
    assert writer.close(30) and score_log.close(10)
    # the score track: one call to read (numpy here; pandas.read_csv reads it the same way)
    table = np.genfromtxt(tmp_path / scores_name(T0), delimiter=",", names=True, dtype=None, encoding=None)
    assert set(table["rule"]) == {"cam", "mv"}
    cam = table[table["rule"] == "cam"]
    assert len(cam) >= 79 and np.all(np.diff(cam["time"]) > 0) and np.all(cam["threshold"] == 0.0003)
    assert gzip.open(tmp_path / scores_name(T0), "rt").readline() == "time,rule,score,threshold\n"
    near = [json.loads(line) for line in (tmp_path / "near-misses.jsonl").read_text().splitlines()]
    assert near and {n["rule"] for n in near} == {"cam"}
    assert all(set(n) >= {"start", "end", "start_iso", "end_iso", "rule", "peak", "threshold", "ratio"} for n in near)
    # near_miss_clip: each near-miss kept a short segment marked near_miss, starting pre_roll before it
    index = [json.loads(line) for line in (tmp_path / "index.jsonl").read_text().splitlines()]
    clips = [e for e in index if e.get("near_miss")]
    assert clips and len(clips) < len(index)
    spans = sorted((c["start"], c["end"]) for c in clips)
    for n in near:  # covered from pre_roll before it (a clip opening right after another starts where it ended)
        want = n["start"] - 2.0 + 0.2
        i = next(i for i, (s, e) in enumerate(spans) if e >= want)
        assert spans[i][0] <= want or (i > 0 and spans[i][0] - spans[i - 1][1] < 0.3), (n, spans)
        assert max(e for s, e in spans[i:]) >= n["end"]
    for c in clips:
        side = json.loads((tmp_path / c["sidecar"]).read_text())
        assert side["near_miss"] is True and all(f["evidence"]["near_miss"] for f in side["firings"])


def test_the_status_line_shows_each_rules_latest_score() -> None:
    import io

    from autorec.runs.live import StatusLine
    from tests.support.eventbuilder import hv, message

    text = "rules:\n  - {name: hv, trigger: threshold, field: hv_regulator.voltage, above: 100}\n"
    rules = parse_rules(text, "s.yaml")
    dispatcher = Dispatcher(Pipeline(rules, offline=True, telemetry=False), DryRun())
    for i, volts in enumerate([60.0, 97.5]):
        dispatcher.message(message(hv(T0 + i, volts), received=T0 + i))
    assert dispatcher.pipeline.scores.latest["hv"].value == 97.5
    assert StatusLine(dispatcher.view, None, stream=io.StringIO()).text(1.0).endswith("scores hv 97.5/100")


def test_the_engine_collects_scores_and_drops_bad_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autorec.core import engine as engine_module
    from autorec.core.engine import RuleEngine
    from tests.support.eventbuilder import hv

    (tmp_path / "noisy.py").write_text(
        "from autorec.triggers.base import Trigger\n"
        "class Noisy(Trigger):\n"
        "    kinds = frozenset({'hv_regulator'})\n"
        "    def feed(self, time, event, state):\n"
        "        self.score(time, event.hv_regulator.voltage, 100)\n"
        "        self.score(time, float('nan'), 100)\n"
        "        self.score(time, 'high', 100)\n"
    )
    engine = RuleEngine(parse_rules("rules:\n  - {name: n, trigger: 'noisy:Noisy'}\n", tmp_path / "r.yaml"))
    ev = hv(None, 42.0)
    engine.feed(5.0, ev)

    assert engine.take_scores() == [Score("n", 5.0, 42.0, 100.0)] and engine.bad_scores == 2
    assert engine.take_scores() == [] and engine.latest_scores["n"].value == 42.0
    # nobody takes them: the engine stays bounded
    monkeypatch.setattr(engine_module, "MAX_PENDING_SCORES", 100)
    for i in range(engine_module.MAX_PENDING_SCORES + 10):
        engine.feed(6.0 + i, ev)
    assert len(engine.take_scores()) <= engine_module.MAX_PENDING_SCORES and engine.dropped_scores > 0


def test_check_names_near_miss_settings_that_differ_from_the_default(tmp_path: Path, capsys) -> None:
    from autorec.cli import main

    rules = tmp_path / "r.yaml"
    rules.write_text(
        "rules:\n  - {name: a, trigger: motion, near_miss: 0.8, near_miss_clip: true}\n"
        "  - {name: b, trigger: motion, near_miss: 0}\n  - {name: c, trigger: motion}\n"
    )
    assert main(["check", str(rules)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3].endswith("motion  (near_miss 0.8, near_miss_clip)")
    assert lines[-2].endswith("motion  (near_miss off)") and lines[-1].endswith("motion")


def test_the_dry_run_says_a_near_miss_past_the_threshold_did_not_fire() -> None:
    """A score past the threshold without a firing (a move that had not settled when the log ended,
    one frame of min_frames) is a near-miss too: "past it", not "300% of the way"."""
    import io

    sink = DryRun()
    sink.score_rows([ScoreRow(int(T0), "moved", 3.0, 1.0), ScoreRow(int(T0), "hot", 43.0, 45.0)])
    sink.near_misses(
        [
            NearMiss("moved", T0, T0 + 0.5, peak=3.0, threshold=1.0, peak_time=T0, baseline=0.0),
            NearMiss("hot", T0, T0 + 20, peak=43.0, threshold=45.0, peak_time=T0, baseline=37.0),
        ]
    )
    out = io.StringIO()
    sink.report_scores(out)
    lines = out.getvalue().splitlines()
    assert lines[-2].endswith("moved  peak 3 (usually 0, fires at 1: past it, did not fire)"), lines
    assert lines[-1].endswith("hot  peak 43 (usually 37, fires at 45: 75% of the way)"), lines
