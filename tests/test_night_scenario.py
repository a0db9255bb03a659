"""The simulator's `night` (an overnight DMF protocol) and the shipped rule files on it: coverage against the
ground truth, bytes kept against what pdrecord would write, near-misses; and how scenario names are found."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import pytest

from autorec.cli import main
from autorec.sim.scenario import ScenarioError, builtin_names, load_scenario
from tests.support.simlog import write_sim_log

REPO = Path(__file__).resolve().parent.parent
NIGHT_SECONDS = 9000.0  # the README's --duration 2.5h


def _steps(activity: list[dict], gap: float = 300.0) -> list[tuple[float, float]]:
    """Activity windows grouped into protocol steps (windows less than `gap` apart)."""
    steps: list[list[float]] = []
    for a in sorted(activity, key=lambda a: a["start"]):
        if steps and a["start"] - steps[-1][1] < gap:
            steps[-1][1] = max(steps[-1][1], a["end"])
        else:
            steps.append([a["start"], a["end"]])
    return [(s, e) for s, e in steps]


def test_night_is_a_builtin_listed_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert {"demo", "idle", "night", "subtle"} <= set(builtin_names())
    for command in ("sim", "run"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert f"built-in scenario ({', '.join(builtin_names())})" in text, command


@pytest.fixture(scope="module")
def quiet_night(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The whole night (2.5 h), sensors and electrodes only (no camera): what rules/overnight.yaml watches."""
    path = tmp_path_factory.mktemp("night") / "night.bin"
    return path, write_sim_log(path, "night", NIGHT_SECONDS, fps=0, seed=0)


def test_the_night_is_shaped_like_an_overnight_protocol(quiet_night) -> None:
    _, truth = quiet_night
    steps = _steps(truth["activity"])
    assert len(steps) == 6
    for start, end in steps:
        assert 15.0 <= end - start <= 120.0, (start, end)  # a protocol step: seconds to two minutes
    incubations = [b[0] - a[1] for a, b in itertools.pairwise(steps)]
    assert all(599.0 <= i <= 2401.0 for i in incubations), incubations  # 10-40 min with nothing moving
    assert any("scripted move of 230" in a["what"] for a in truth["activity"])  # the mix loop
    assert any(a["what"].startswith("split") for a in truth["activity"])
    assert len(truth["lighting"]) == 1 and "x0.6" in truth["lighting"][0]["what"]  # the room lights go off once
    assert len(truth["failures"]) == 1 and len(truth["disconnects"]) == 1
    assert truth["disconnects"][0]["end"] - truth["disconnects"][0]["start"] == pytest.approx(15.0)
    # a 37 C hold with one excursion above 45 and back
    assert [round(float(re.findall(r"-> ([\d.]+)", t["what"])[0])) for t in truth["temperature"]] == [37, 46, 37]
    # nothing happens in the lights-off moment: a segment there would be from lighting alone
    light = truth["lighting"][0]["start"]
    assert all(abs(light - t) > 60.0 for s in steps for t in s)


def test_a_builtin_name_wins_unless_a_file_of_that_name_exists(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "idle").mkdir()  # an output directory named like a built-in (run --scenario idle --out idle)
    assert load_scenario("idle").name == "idle" and load_scenario("idle").timeline[0].kind == "idle"
    with pytest.raises(ScenarioError, match=r"^idle:0: is a directory, not a scenario file \(built-ins: demo"):
        load_scenario("./idle")
    (tmp_path / "demo").write_text("name: mine\ndrops: [[1, 1]]\ntimeline:\n  - idle: 5s\n")
    assert load_scenario("demo").name == "mine"  # a FILE of that name is what the user means
    # the command that crashed: runs the built-in, and again from the same folder
    for _ in range(2):
        args = ["run", "--rules", str(REPO / "rules" / "electrodes.yaml"), "--sim", "--scenario", "idle"]
        args += ["--out", "idle", "--duration", "10s", "--speed", "50", "--no-camera"]
        proc = subprocess.run([sys.executable, "-m", "autorec", *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1].startswith("autorec run: simulator finished; 0 segment(s)")
    proc = subprocess.run(
        [sys.executable, "-m", "autorec", "sim", "--scenario", str(tmp_path / "idle")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"autorec sim: {tmp_path / 'idle'}:0: is a directory, not a scenario file " + (
        f"(built-ins: {', '.join(builtin_names())})"
    )


def _segments(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]


def _covers(segments: list[dict], start: float, end: float) -> bool:
    return any(s["start"] <= start and s["end"] >= end for s in segments)


def test_overnight_rules_keep_each_protocol_step_and_little_else(quiet_night, tmp_path: Path) -> None:
    log, truth = quiet_night
    out = tmp_path / "out"
    began = time.monotonic()
    args = ["run", "--rules", str(REPO / "rules" / "overnight.yaml"), "--log", str(log), "--out", str(out)]
    proc = subprocess.run([sys.executable, "-m", "autorec", *args], capture_output=True, text=True, timeout=120)
    took = time.monotonic() - began
    assert proc.returncode == 0, proc.stderr
    segments = _segments(out)
    # every activity window from a full pre-roll (10 s) to its end (an electrode state carries no time of its
    # own: it takes the time of the stream around it, a few hundredths of a second off)
    for a in truth["activity"]:
        assert _covers(segments, a["start"] - 10.0 + 0.5, a["end"]), (a, segments)
    # the board's disconnect, with the minute that led up to it (board-disconnected: pre_roll 60s)
    down = truth["disconnects"][0]["start"]
    assert _covers(segments, down - 60.0 + 0.5, down)
    # kept: a small part of what pdrecord would have written for the same stream (the log: 4-byte header + message)
    kept = sum(s["bytes"] for s in segments if "context" not in s["rules"] or len(s["rules"]) > 1)
    pdrecord = log.stat().st_size
    assert sum(s["bytes"] for s in segments) <= 0.15 * pdrecord, (sum(s["bytes"] for s in segments), pdrecord)
    # a quiet night: a handful of near-misses at most (the 37 C hold under `above: 45` is not one)
    near = out / "near-misses.jsonl"
    near_misses = near.read_text().splitlines() if near.exists() else []
    assert len(near_misses) <= 3, near_misses
    summary = proc.stdout.strip().splitlines()[-1]
    assert re.search(r"kept of [\d.]+[kMG]?B seen \((\d+\.\d) %\)", summary), summary
    print(
        f"\novernight.yaml on a {NIGHT_SECONDS / 3600:.1f} h night (no camera): {len(segments)} segments, "
        f"{sum(s['bytes'] for s in segments) / pdrecord:.1%} of pdrecord's {pdrecord / 1e6:.1f} MB "
        f"({kept / pdrecord:.1%} without the half-hourly context clips), {len(near_misses)} near-miss(es), "
        f"run --log {took:.1f} s"
    )


def _compressed_night() -> str:
    """night.yaml with each incubation 1 min long (longer than pre- plus post-roll, so steps stay apart)."""
    text = resources.files("autorec.sim").joinpath("scenarios", "night.yaml").read_text()
    return re.sub(r"idle: (\d+)min", "idle: 60s", text)


def test_motion_rules_on_a_compressed_night_with_the_camera(tmp_path: Path) -> None:
    """rules/motion.yaml with the camera (2 frames/s): each step from its pre-roll, nothing from the lights."""
    log = tmp_path / "night.bin"
    text = _compressed_night()
    seconds = sum(float(s) for s in re.findall(r"idle: (\d+)s", text)) + 420.0  # the steps: under 7 min
    truth = write_sim_log(log, text, seconds, fps=2, seed=0, text=True)
    out = tmp_path / "out"
    began = time.monotonic()
    args = ["run", "--rules", str(REPO / "rules" / "motion.yaml"), "--log", str(log), "--out", str(out)]
    proc = subprocess.run([sys.executable, "-m", "autorec", *args], capture_output=True, text=True, timeout=120)
    took = time.monotonic() - began
    assert proc.returncode == 0, proc.stderr
    segments = _segments(out)
    # Every window from its pre-roll. The camera sees a move once the drop has visibly moved (two frames at
    # 2/s in a row): allow 2 s for that. A move that failed shows nothing; the retry 6 s later covers it.
    failed = {f["t"] for f in truth["failures"]}
    for a in truth["activity"]:
        if any(a["start"] <= t <= a["end"] for t in failed):
            assert _covers(segments, a["start"], a["end"]), (a, segments)
        else:
            assert _covers(segments, a["start"] - 10.0 + 2.0, a["end"]), (a, segments)
    # no segment from the lights going off: none starts in the 30 s after it (the next step is a minute later)
    light = truth["lighting"][0]["start"]
    assert not [s for s in segments if light - 10.0 <= s["start"] <= light + 30.0], segments
    # nothing kept beyond the windows with their pre- and post-roll (30 s in motion.yaml), and their detection lag
    windows = sorted((a["start"] - 10.0, a["end"] + 30.0 + 2.0) for a in truth["activity"])
    spans = [(s["start"], s["end"]) for s in segments]
    for s0, s1 in spans:
        assert any(w0 - 0.5 <= s0 and s0 <= w1 for w0, w1 in windows), (s0, s1)
    kept = sum(s["bytes"] for s in segments)
    print(
        f"\nmotion.yaml on a compressed night ({seconds / 60:.0f} min, camera 2/s): {len(segments)} segments, "
        f"{kept / log.stat().st_size:.1%} of {log.stat().st_size / 1e6:.0f} MB, run --log {took:.1f} s"
    )
