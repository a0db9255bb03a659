"""`run --log --jobs N`: motion frames decoded ahead in threads give the same segments as one thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from autorec import events
from autorec.cli import main
from autorec.core.dryrun import DryRun
from autorec.core.pipeline import Pipeline
from autorec.io.logfile import LogReader, LogWriter
from autorec.rules import load_rules
from autorec.runs.dispatch import Dispatcher
from autorec.runs.filesource import FileSource, run_file
from autorec.runs.predecode import Predecoder, predecoded
from autorec.triggers.motion import MotionTrigger
from tests.support.simlog import write_sim_log

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "rules" / "motion.yaml"


@pytest.fixture(scope="module")
def damaged_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two simulated minutes at 10 fps (drops moving: segments), then damaged the ways a night
    log can be: cut-off and garbled JPEGs, an empty image, a timestamp 30 s back, one missing."""
    tmp = tmp_path_factory.mktemp("predecode")
    clean = tmp / "clean.bin"
    write_sim_log(clean, "demo", 120.0, fps=10.0, seed=5)
    log = tmp / "damaged.bin"
    images = 0
    with LogWriter(log, mode="overwrite") as out:
        for record, event in LogReader(clean).events():
            if event.WhichOneof("msg") != "image":
                out.write(record.payload)
                continue
            images += 1
            jpeg = event.image.image_data
            if images % 37 == 0:
                event.image.image_data = jpeg[: len(jpeg) // 2]
            elif images % 53 == 0:
                middle = bytearray(jpeg)
                middle[len(jpeg) // 2 : len(jpeg) // 2 + 64] = bytes(range(64))
                event.image.image_data = bytes(middle)
            elif images == 300:
                event.image.image_data = b""
            elif images == 400:
                events.set_timestamp(event, events.timestamp(event) - 30.0)
            elif images == 500:
                event.image.ClearField("timestamp")
            out.write(event.SerializeToString())
    return log


def _dry_run(log: Path, jobs: int, **predecoder) -> tuple[list[str], dict, Predecoder | None]:
    lines: list[str] = []
    dispatcher = Dispatcher(Pipeline(load_rules(RULES), offline=True, telemetry=False), DryRun(say=lines.append))
    source = FileSource(log)
    wrapped = Predecoder(source, _motion(dispatcher), jobs, **predecoder) if jobs > 1 else source
    run_file(dispatcher, wrapped)
    (trigger,) = _motion(dispatcher)
    return lines, dict(trigger.counters), wrapped if isinstance(wrapped, Predecoder) else None


def _motion(dispatcher: Dispatcher) -> list[MotionTrigger]:
    return [t for t in dispatcher.pipeline.engine.triggers.values() if isinstance(t, MotionTrigger)]


@pytest.fixture(scope="module")
def single(damaged_log: Path) -> tuple[list[str], dict]:
    """The reference: one thread, no decoding ahead."""
    lines, counters, _ = _dry_run(damaged_log, 1)
    return lines, counters


def test_segments_and_counters_match_the_single_threaded_run(damaged_log: Path, single: tuple) -> None:
    single, single_counters = single
    parallel, counters, predecoder = _dry_run(damaged_log, 3)
    assert len(single) >= 2 and all("camera-motion" in line for line in single)  # segments to compare
    assert parallel == single
    assert counters == single_counters
    assert single_counters["corrupt"] >= 5  # the damage reached the trigger
    assert predecoder is not None
    # It did the work ahead: nearly every analysed frame was found decoded.
    hits = predecoder.counters["hits"]
    assert hits >= 0.9 * (counters["analysed"] + counters["corrupt"])


def test_a_short_keep_window_only_costs_misses(damaged_log: Path, single: tuple) -> None:
    """Frames decoded ahead but evicted before the trigger asks (keep=0: at once) are decoded in the
    pipeline thread: slower, same results."""
    single, single_counters = single
    parallel, counters, predecoder = _dry_run(damaged_log, 2, ahead=40, keep=0)
    assert parallel == single and counters == single_counters
    assert predecoder is not None and predecoder.counters == {
        "hits": 0,
        "misses": counters["analysed"] + counters["corrupt"],
    }


def test_cli_jobs_option_gives_identical_output(damaged_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = []
    for jobs in ("1", "2"):
        assert main(["run", "--rules", str(RULES), "--log", str(damaged_log), "--dry-run", "--jobs", jobs]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and outputs[0].strip()


def test_nothing_to_gain_returns_the_source_itself(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text("rules:\n  - {name: e, trigger: electrodes}\n")
    electrodes = Pipeline(load_rules(rules), offline=True, telemetry=False).engine
    source: list = []
    assert predecoded(source, electrodes, 4) is source
    motion = Pipeline(load_rules(RULES), offline=True, telemetry=False).engine
    assert predecoded(source, motion, 1) is source
    assert isinstance(predecoded(source, motion, 2), Predecoder)


def test_grid_guess_follows_the_timeline_on_outliers_and_steps() -> None:
    from autorec.runs.predecode import _Guess
    from autorec.triggers.framegrid import FrameGrid

    trigger_grid = FrameGrid(0.2, idle_interval=0.0)  # detect_fps 5 on a 10 fps stream, no idle rate
    guess = _Guess(trigger_grid)
    assert [guess.due(t / 10) for t in range(6)] == [True, False, True, False, True, False]
    # one damaged timestamp far behind: the timeline carries it forward, so the trigger skips it
    assert guess.due(-100.0) is False
    assert [guess.due(t / 10) for t in range(6, 9)] == [True, False, True]
    # a real clock step back (frames keep coming from the past): followed after STEP_FRAMES frames
    behind = [guess.due(-50.0 + t / 10) for t in range(6)]
    assert behind[: _Guess.STEP_FRAMES - 1] == [False] * (_Guess.STEP_FRAMES - 1) and any(behind)
    # resync moves the guess onto the trigger's slots, nearest to its own
    guess.grid.next_due = 10.05
    trigger_grid.next_due = 3.0
    guess.resync()
    assert guess.grid.next_due == pytest.approx(10.0)
