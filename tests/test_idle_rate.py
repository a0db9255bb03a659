"""The motion trigger's frame grid (`autorec.triggers.framegrid`) and its idle rate.

- One grid: the trigger and the pre-decoder use the same `FrameGrid`; the full-rate grid chooses
  the frames the trigger chose before the idle rate existed, and the pre-decoder's copy, following
  the trigger's signs, guesses every analysed frame but those after a sign it could not see yet.
- Quiet nights: after `idle_after` without a sign the trigger analyses `idle_fps` frames a second,
  and the first sign brings the full rate back. On simulated nights (`demo`, `subtle`, a quiet one)
  the segments are the same with the idle rate on and off (within one analysed frame), and every
  activity window of the simulator's truth lies in a segment from a full pre-roll before it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from autorec.core.dryrun import DryRun, PlannedSegment
from autorec.core.pipeline import Pipeline
from autorec.core.sweep import sweep
from autorec.rules import Override, load_rules
from autorec.runs.dispatch import Dispatcher
from autorec.runs.filesource import FileSource, run_file
from autorec.runs.predecode import Predecoder
from autorec.triggers.framegrid import GAP_WAKE, FrameGrid
from autorec.triggers.motion import MotionTrigger
from tests.support.simlog import T0, write_sim_log

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "rules" / "motion.yaml"
RULE = "camera-motion"
PRE_ROLL = 10.0  # rules/motion.yaml's segments.pre_roll

# An hour of a quiet night in three minutes: nothing moves for longer than `idle_after`, one burst.
QUIET_NIGHT = """
name: quiet-night
board: misl_v4.1
drops: [[2, 2], [9, 5]]
control: {step: 0.5s, move_time: 0.3s, keepalive: 2s}
timeline:
  - idle: 75s
  - burst: {moves: 6, drops: 1}
  - idle: 90s
"""


# -- the grid itself -----------------------------------------------------------------------------


def _round_two_choice(times: list[float], interval: float) -> list[bool]:
    """The trigger's choice of frames as `MotionTrigger._due` wrote it before the grid was shared."""
    last = due = None
    out = []
    for t in times:
        if last is None or due is None or t < last:
            due, last = t + interval, t
            out.append(True)
        elif t < due - 0.01 * interval:
            out.append(False)
        else:
            due = due + interval if t - due < interval else t + interval
            last = t
            out.append(True)
    return out


@pytest.mark.parametrize("interval", [0.0, 0.2, 0.5])
def test_full_rate_grid_chooses_the_frames_the_trigger_chose_before(interval: float) -> None:
    rng = random.Random(4)
    times, t = [], 0.0
    for i in range(3000):
        t += 0.1 + rng.uniform(-0.03, 0.03)
        if i % 500 == 250:
            t += rng.choice([3.0, 0.7])  # frames stop for a while
        if i == 1700:
            t -= 40.0  # the clock steps back
        times.append(t)
    grid = FrameGrid(interval, idle_interval=0.0)
    got = [grid.due(t) for t in times]
    assert got == _round_two_choice(times, interval)
    # signs change nothing at full rate
    woken = FrameGrid(interval, idle_interval=0.0)
    assert [woken.due(t) or bool(woken.wake(t)) for t in times] == got


def test_idle_rate_after_quiet_and_full_rate_from_the_first_sign() -> None:
    grid = FrameGrid(0.2, idle_interval=1.0, idle_after=10.0)
    frames = [round(0.1 * i, 6) for i in range(400)]  # 10 fps for 40 s
    taken = [t for t in frames[:250] if grid.due(t)]
    busy = [t for t in taken if t < 10.0]
    quiet = [t for t in taken if t >= 10.0]
    assert busy == pytest.approx([0.2 * i for i in range(50)])  # 5 a second from the first frame
    assert quiet == pytest.approx([10.0 + i for i in range(15)])  # then 1 a second, on the same slots
    # A sign between two idle frames: the next full-rate slot is due, then 5 a second again.
    grid.wake(25.03)
    after = [t for t in frames[250:] if grid.due(t)]
    assert after[:3] == pytest.approx([25.0, 25.2, 25.4])
    assert [t for t in after if t < 35.0] == pytest.approx([25.0 + 0.2 * i for i in range(50)])
    # idle again `idle_after` after the sign: 1 a second from the first slot past it
    assert [t for t in after if t >= 35.2] == pytest.approx([35.2, 36.2, 37.2, 38.2, 39.2])


def test_frames_coming_back_after_a_gap_are_a_sign() -> None:
    grid = FrameGrid(0.2, idle_interval=1.0, idle_after=5.0)
    assert [t for t in (0.1 * i for i in range(100)) if grid.due(t)][-1] == pytest.approx(9.0)
    assert grid.idle_at(9.9)
    back = 9.9 + GAP_WAKE + 0.5
    assert grid.due(back) and not grid.idle_at(back + 0.1)
    assert grid.due(back + 0.2) and not grid.due(back + 0.3)


# -- the trigger and the pre-decoder share it ----------------------------------------------------


def _dry_run(log: Path, jobs: int = 1, **options) -> tuple[list[PlannedSegment], dict, Predecoder | None]:
    sink = DryRun()
    overrides = [Override(RULE, k, v) for k, v in options.items()]
    dispatcher = Dispatcher(Pipeline(load_rules(RULES, overrides), offline=True, telemetry=False), sink)
    (trigger,) = [t for t in dispatcher.pipeline.engine.triggers.values() if isinstance(t, MotionTrigger)]
    source = FileSource(log)
    wrapped = Predecoder(source, [trigger], jobs) if jobs > 1 else source
    run_file(dispatcher, wrapped)
    return sink.segments, dict(trigger.counters), wrapped if isinstance(wrapped, Predecoder) else None


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    """Simulated logs at 5 fps (the rule's detect_fps: every frame is on the full-rate grid), with their truth."""
    tmp = tmp_path_factory.mktemp("idle")
    out = {}
    for name, text, seconds in (("demo", False, 180.0), ("subtle", False, 120.0), (QUIET_NIGHT, True, 200.0)):
        key = "quiet" if text else name
        path = tmp / f"{key}.bin"
        out[key] = (path, write_sim_log(path, name, seconds, fps=5.0, seed=3, text=text))
    return out


def test_predecoder_guesses_the_idle_grid_and_output_stays_identical(logs) -> None:
    log, _ = logs["quiet"]
    single, single_counters, _ = _dry_run(log, idle_after="20s")
    parallel, counters, predecoder = _dry_run(log, jobs=2, idle_after="20s")
    assert parallel == single and counters == single_counters and single
    assert counters["idle_frames"] > 100  # the idle rate was in use, and left on the burst
    assert predecoder is not None
    # Every analysed frame was decoded ahead but those after a sign in the frames read ahead
    # (64 messages: ~5 s here) before the pre-decoder could follow it: a few wakes' worth.
    assert predecoder.counters["misses"] <= 3 * 5 * 5
    assert predecoder.counters["hits"] >= 0.9 * (counters["analysed"] + counters["corrupt"])


def test_predecoder_misses_nothing_when_no_sign_comes(tmp_path: Path) -> None:
    log = tmp_path / "idle.bin"
    write_sim_log(log, "idle", 60.0, fps=5.0, seed=2)
    segments, counters, predecoder = _dry_run(log, jobs=2, idle_after="10s")
    assert segments == [] and counters["idle_frames"] >= 45
    assert predecoder is not None and predecoder.counters == {"hits": counters["analysed"], "misses": 0}


# -- coverage against the simulator's truth ----------------------------------------------------


@pytest.mark.parametrize("scenario", ["demo", "subtle", "quiet"])
def test_idle_rate_keeps_the_segments_and_every_activity_window(logs, scenario: str) -> None:
    log, truth = logs[scenario]
    full, full_counters, _ = _dry_run(log, idle_fps=0)
    # 10 s instead of the default minute: the idle rate is in use between the bursts of these short logs
    idle, idle_counters, _ = _dry_run(log, idle_after="10s")
    assert full_counters["idle_frames"] == 0 and idle_counters["idle_frames"] > 20
    assert idle_counters["analysed"] < 0.8 * full_counters["analysed"]
    frame = 1.0  # one analysed frame at the idle rate
    assert len(idle) == len(full), (idle, full)
    for a, b in zip(idle, full, strict=True):
        assert a.rules == b.rules and a.near_miss == b.near_miss
        assert abs(a.start - b.start) <= frame + 1e-6 and abs(a.end - b.end) <= frame + 1e-6
    kept = [s for s in idle if not s.near_miss]
    for window in truth["activity"]:
        want = max(window["start"] - PRE_ROLL, T0)
        assert any(s.start <= want + 0.5 and s.end >= window["end"] for s in kept), (window, kept)
    print(scenario, json.dumps({"analysed": [full_counters["analysed"], idle_counters["analysed"]]}))


def test_an_electrode_change_ends_the_idle_rate(logs) -> None:
    """On the quiet night the burst's first control step comes before any drop moves: the trigger is
    back at full rate from that electrode change, before the camera sees anything."""
    log, truth = logs["quiet"]
    sink = DryRun()
    overrides = [Override(RULE, "idle_after", "20s"), Override(RULE, "idle_wake", 1.0)]
    dispatcher = Dispatcher(Pipeline(load_rules(RULES, overrides), offline=True, telemetry=False), sink)
    (trigger,) = [t for t in dispatcher.pipeline.engine.triggers.values() if isinstance(t, MotionTrigger)]
    first = truth["activity"][0]["start"]
    woken: list[float] = []
    for msg in FileSource(log):
        dispatcher.message(msg)
        if trigger.grid.woken is not None and first - 1.0 <= trigger.grid.woken and not woken:
            woken.append(trigger.grid.woken)
    dispatcher.finish()
    assert woken and woken[0] <= first + 0.25, (woken, first)


def test_tune_with_the_idle_rate_in_use_is_exact_at_its_lowest_threshold(logs, tmp_path: Path) -> None:
    """Which frames are analysed depends on the threshold (a score above idle_wake x threshold is a
    sign), so a one-pass sweep cannot be exact at every threshold: its trigger wakes at the lowest
    threshold swept (`MotionTrigger.decider`). That lane is exact; a lane above it may analyse a
    frame more after a wake-up than its own run (here: a few hundred bytes kept more or less)."""
    log, _ = logs["subtle"]
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "segments: {pre_roll: 3s, post_roll: 5s}\n"
        "rules:\n  - {name: cam, trigger: motion, idle_after: 5s, idle_wake: 1.0}\n"  # nudges: 0.55-0.9x
    )
    thresholds = [0.0002, 0.0003, 0.0008]
    rows = sweep(load_rules(rules), "cam", thresholds, FileSource(log), log.stat().st_size)
    for row in rows:
        sink = DryRun()
        ruleset = load_rules(rules, [Override("cam", "threshold", row.threshold)])
        run_file(Dispatcher(Pipeline(ruleset, offline=True, telemetry=False), sink), FileSource(log))
        if row.threshold == min(thresholds):
            assert (row.segments, row.kept_bytes) == (len(sink.segments), sink.kept_bytes), row
        else:
            assert row.segments == len(sink.segments), row
            assert row.kept_bytes == pytest.approx(sink.kept_bytes, rel=1e-3), row
