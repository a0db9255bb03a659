"""What-if backtests: `run --log --dry-run --set`, the dry run's score summary, and `autorec tune`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from autorec.cli import main
from autorec.core.dryrun import DryRun
from autorec.core.pipeline import Pipeline
from autorec.core.sweep import sweep
from autorec.rules import Override, load_rules
from autorec.runs.dispatch import Dispatcher
from autorec.runs.filesource import FileSource, run_file
from tests.support.simlog import write_sim_log

RULES = """segments: {pre_roll: 3s, post_roll: 5s}
rules:
  - {name: cam, trigger: motion}
  - {name: hot, trigger: threshold, field: "temperature_control.temperatures[0]", above: 40, hysteresis: 1, for: 2s}
  - {name: moved, trigger: movement}
"""


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tune")
    log = d / "subtle.bin"
    write_sim_log(log, "subtle", 80.0, fps=10.0)
    rules = d / "rules.yaml"
    rules.write_text(RULES)
    return log, rules


def _dry_run(rules: Path, log: Path, *overrides: str) -> DryRun:
    ruleset = load_rules(rules, [Override.parse(o) for o in overrides])
    sink = DryRun()
    run_file(Dispatcher(Pipeline(ruleset, offline=True, telemetry=False), sink, score_sinks=[sink]), FileSource(log))
    return sink


def test_the_sweep_agrees_with_separate_dry_runs_at_each_threshold(night) -> None:
    log, rules = night
    thresholds = [0.0002, 0.0003, 0.0008]
    rows = sweep(load_rules(rules), "cam", thresholds, FileSource(log), log.stat().st_size)
    seen = []
    for row in rows:
        sink = _dry_run(rules, log, f"cam.threshold={row.threshold}")
        assert (row.segments, row.kept_bytes) == (len(sink.segments), sink.kept_bytes), row
        seen.append((row.segments, row.kept_bytes))
    assert len(set(seen)) == 3  # the thresholds matter here: the nudges fire only at 0.0002


def test_a_threshold_rule_with_a_hold_sweeps_exactly_too(tmp_path: Path) -> None:
    log = tmp_path / "demo.bin"
    write_sim_log(log, "demo", 150.0, fps=0.0)  # a temperature ramp from 25 to 45 C from 54 s on
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    rows = sweep(load_rules(rules), "hot", [30.0, 38.0, 50.0], FileSource(log))
    for row in rows:
        sink = _dry_run(rules, log, f"hot.above={row.threshold}")
        assert (row.segments, row.kept_bytes) == (len(sink.segments), sink.kept_bytes), row


def test_tune_prints_the_table(night, capsys: pytest.CaptureFixture[str]) -> None:
    log, rules = night
    rc = main(["tune", "cam", "--rules", str(rules), "--log", str(log), "--range", "0.0002:0.0004:3"])
    out = capsys.readouterr().out
    assert rc == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("cam.threshold on ")
    assert lines[1].split() == ["threshold", "segments", "kept", "kept", "%"]
    assert [line.split()[0] for line in lines[2:]] == ["0.0002", "0.0003", "0.0004"]


def test_tune_plot_needs_matplotlib_or_writes_the_png(night, tmp_path: Path, capsys) -> None:
    log, rules = night
    png = tmp_path / "tune.png"
    args = ["tune", "cam", "--rules", str(rules), "--log", str(log), "--thresholds", "0.0003", "--plot", str(png)]
    rc = main(args)
    err = capsys.readouterr().err
    if importlib.util.find_spec("matplotlib") is None:
        assert rc == 1 and "--plot needs matplotlib" in err and not png.exists()
    else:
        assert rc == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--thresholds", "0.1,x"], "autorec tune: --thresholds: expected numbers"),
        (["--range", "1:0:3"], "autorec tune: --range: N must be 1-1000 and HI above LO"),
        (["--thresholds", "2"], "autorec tune: --set cam.threshold: must be <= 1.0, got 2.0"),
    ],
)
def test_tune_usage_errors_exit_2(night, capsys, args, message) -> None:
    log, rules = night
    assert main(["tune", "cam", "--rules", str(rules), "--log", str(log), *args]) == 2
    assert capsys.readouterr().err.startswith(message)


def test_a_rule_that_cannot_be_swept_says_so(night, capsys) -> None:
    log, rules = night
    assert main(["tune", "moved", "--rules", str(rules), "--log", str(log), "--thresholds", "1,2"]) == 2
    assert "rule moved (movement) cannot be swept" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("cam.threshold=2", "--set cam.threshold: must be <= 1.0, got 2.0"),
        ("cam.treshold=0.1", "--set cam.treshold: unknown key; did you mean 'threshold'?"),
        ("nope.threshold=0.1", "--set nope.threshold: no rule named 'nope' (rules: cam, hot, moved)"),
        ("cam.threshold", "--set cam.threshold: expected RULE.OPTION=VALUE"),
        ("cam.trigger=movement", "--set cam.trigger: the rule's trigger cannot be changed with --set"),
        ("hot.delta=3", "--set hot.delta: use delta alone, or above/below, not both"),
        ("cam.post_roll=soon", "--set cam.post_roll: expected a duration"),
    ],
)
def test_set_is_validated_like_the_file(night, capsys, setting: str, message: str) -> None:
    log, rules = night
    assert main(["run", "--rules", str(rules), "--log", str(log), "--dry-run", "--set", setting]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"autorec run: {message}"), err


def test_dry_run_prints_the_score_distribution_and_near_misses(night, capsys) -> None:
    log, rules = night
    args = ["run", "--rules", str(rules), "--log", str(log), "--dry-run", "--set", "cam.near_miss=0.6"]
    assert main([*args, "--set", "hot.above=60"]) == 0
    out = capsys.readouterr().out
    assert "scores (per-second maxima):" in out
    cam = next(line for line in out.splitlines() if line.startswith("  cam: threshold 0.0003"))
    assert "peak" in cam and "p99" in cam and "above threshold" in cam
    assert any(" cam  peak " in line and "fires at 0.0003" in line for line in out.splitlines())
    assert " near-miss(es)" in out


@pytest.mark.parametrize(
    "extra",
    [
        "max_segments_per_hour: 2",  # a budget: tune used to ignore it (20 segments against 3)
        "max_bytes_per_hour: 3MB",
        "flap_rate: 6, flap_for: 1min, flap_keep_fps: 1",  # flap control thins and splits
        "near_miss_clip: true, near_miss: 0.3",  # near-miss clips become segments of their own
    ],
)
def test_the_sweep_is_the_dry_run_with_budgets_flap_control_and_near_miss_clips(night, tmp_path, extra) -> None:
    """Each lane is a real Pipeline: whatever the rule file asks beyond the threshold, tune agrees
    with separate `run --log --dry-run --set` runs."""
    log, _ = night
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "segments: {pre_roll: 3s, post_roll: 5s}\n"
        "rules:\n"
        f"  - {{name: cam, trigger: motion, {extra}}}\n"
        "  - {name: moved, trigger: movement}\n"
    )
    thresholds = [0.0002, 0.0003, 0.0008]
    rows = sweep(load_rules(rules), "cam", thresholds, FileSource(log), log.stat().st_size)
    for row in rows:
        sink = _dry_run(rules, log, f"cam.threshold={row.threshold}")
        assert (row.segments, row.kept_bytes) == (len(sink.segments), sink.kept_bytes), (extra, row)
