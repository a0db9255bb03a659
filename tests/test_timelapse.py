"""The timelapse track: one camera frame per interval into a daily upstream-format log, end to end."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autorec import events
from autorec.core.pipeline import Pipeline
from autorec.core.timelapse import TimelapsePicker, timelapse_name
from autorec.io.logfile import LogReader
from autorec.io.retention import RetentionPolicy, apply_retention
from autorec.io.writer import SegmentWriter
from autorec.rules import ConfigError, load_rules, parse_rules
from autorec.runs.dispatch import Dispatcher
from autorec.sim.camera import CameraRenderer
from autorec.sim.core import Simulation
from autorec.sim.scenario import parse_scenario
from autorec.sim.stream import StreamEncoder
from tests.support.eventbuilder import message
from tests.support.rulefiles import write_rules

# 22:00 UTC: the night crosses midnight, so it fills two daily files.
NIGHT_START = 1_764_540_000.0  # 2025-11-30T22:00:00Z
QUIET_NIGHT = """
drops: [[2, 2]]
rates: {scan_capacitance: 0, group_capacitance: 0, hv_regulator: 0.01, active_capacitance: 0,
        temperature_control: 0, duty_cycle_updated: 0}
control: {keepalive: 60s}
timeline:
  - idle: 1h
"""
RULES = "output:\n  timelapse: {every}\nrules:\n  - name: e\n    trigger: electrodes\n"


def night_messages(hours: float, fps: float):
    sim = Simulation(parse_scenario(QUIET_NIGHT, "night.yaml"), start_time=NIGHT_START, duration=hours * 3600, fps=fps)
    encoder = StreamEncoder(CameraRenderer(14, 8, width=160, height=120, seed=1))
    for t, item in sim.advance(NIGHT_START + hours * 3600):
        for payload in encoder.encode(t, item):
            if isinstance(payload, bytes):
                yield message(payload)


def test_a_simulated_night_has_one_frame_per_interval_in_daily_files(tmp_path: Path):
    writer = SegmentWriter(tmp_path, telemetry=False, timelapse=True, block=True).start()
    dispatcher = Dispatcher(Pipeline(parse_rules(RULES.format(every="30s")), offline=True), writer)
    for msg in night_messages(8.0, fps=0.5):
        dispatcher.message(msg)
    dispatcher.finish()
    assert writer.close(30)
    files = sorted(tmp_path.glob("timelapse-*.bin"))
    assert [f.name for f in files] == [timelapse_name(NIGHT_START), timelapse_name(NIGHT_START + 8 * 3600)]
    frames = []
    for day, f in enumerate(files):
        kinds = [events.kind(events.decode(r.payload)) for r in LogReader(f)]
        frames.append(kinds.count("image"))
        # Every frame comes right after its transform; the electrode state opens the day's file once it is
        # known (the first keepalive comes within 60 s of the start: by the third frame of the night).
        assert all(kinds[i - 1] == "image_transform" for i, k in enumerate(kinds) if k == "image")
        assert kinds.index("electrode_state") == (0 if day else 4)
        assert kinds.count("electrode_state") == 1  # unchanged all night: stated once per file
    assert sum(frames) in (960, 961)  # 8 h / 30 s, plus the first frame of the night
    assert frames[0] == 240 and dispatcher.pipeline.timelapse.frames == sum(frames)  # 22:00-24:00
    assert writer.stats.timelapse_bytes == sum(f.stat().st_size for f in files)
    # Original timestamps, ~30 s apart, in order.
    records = [r.payload for f in files for r in LogReader(f)]
    image_times = [events.timestamp(events.decode(p)) for p in records if events.peek_kind(p) == "image"]
    gaps = [b - a for a, b in itertools.pairwise(image_times)]
    assert min(gaps) > 28 and max(gaps) < 32


def test_picker_restates_the_electrodes_after_a_change_and_after_the_floor():
    picker = TimelapsePicker(10.0)
    assert picker.feed(100.0, "image", b"i0") == [(100.0, b"i0")]  # nothing else known yet
    picker.feed(100.5, "electrode_state", b"s1")
    picker.feed(101.0, "image_transform", b"t")
    assert picker.feed(101.0, "image", b"i1") == []  # not due until 110
    assert [p for _, p in picker.feed(110.2, "image", b"i2")] == [b"s1", b"t", b"i2"]
    assert [p for _, p in picker.feed(120.0, "image", b"i3")] == [b"t", b"i3"]  # state unchanged
    assert picker.feed(130.0, "image", b"i4", blocked=True) == [] and picker.skipped == 1
    assert [p for _, p in picker.feed(140.0, "image", b"i5")] == [b"s1", b"t", b"i5"]
    assert [p for _, p in picker.feed(50.0, "image", b"i6")] == [b"t", b"i6"]  # clock went back: re-align
    with pytest.raises(ValueError):
        TimelapsePicker(0.0)


def test_disk_floor_pauses_the_timelapse_too(tmp_path: Path):
    writer = SegmentWriter(tmp_path, telemetry=False, timelapse=True, block=True).start()
    dispatcher = Dispatcher(Pipeline(parse_rules(RULES.format(every="30s")), offline=True), writer)
    msgs = list(night_messages(0.5, fps=0.2))
    half = len(msgs) // 2
    for msg in msgs[:half]:
        dispatcher.message(msg)
    dispatcher.floor_crossed(True, 0, 10**9, wall=0.0)
    for msg in msgs[half:]:
        dispatcher.message(msg)
    assert writer.close(30)
    picker = dispatcher.pipeline.timelapse
    assert picker.skipped >= 29 and picker.frames in (30, 31, 32)
    (f,) = tmp_path.glob("timelapse-*.bin")
    assert sum(1 for r in LogReader(f) if events.peek_kind(r.payload) == "image") == picker.frames


def test_output_timelapse_values(tmp_path: Path):
    def value(text: str):
        return load_rules(write_rules(tmp_path, RULES.format(every=text))).output.timelapse

    assert value("off") is None and value("false") is None and value("null") is None
    assert value("5min") == 300.0 and value("true") == 30.0
    assert parse_rules("rules:\n  - name: e\n    trigger: electrodes\n").output.timelapse == 30.0
    for bad in ("0s", "banana", "2d"):
        with pytest.raises(ConfigError, match=r"rules.yaml:2: output.timelapse"):
            value(bad)


def test_retention_covers_old_timelapse_days_but_not_todays(tmp_path: Path):
    now = time.time()
    days = [tmp_path / f"timelapse-2026110{d}.bin" for d in (1, 2, 3)]
    for i, f in enumerate(days):
        f.write_bytes(b"\0" * 1000)
        age = (3 - i) * 86400 * 10  # 30, 20, 10 days old
        os.utime(f, (now - age, now - age))
    (tmp_path / "timelapse-20261101.mp4").write_bytes(b"v")
    result = apply_retention(tmp_path, RetentionPolicy(keep=5 * 86400), now=now)
    assert sorted(s.log.name for s in result.deleted) == [days[0].name, days[1].name]
    assert not (tmp_path / "timelapse-20261101.mp4").exists() and days[2].exists()  # the newest is kept
    for f, size, age in ((days[0], 5000, 200), (days[1], 2000, 100)):
        f.write_bytes(b"\0" * size)
        os.utime(f, (now - age, now - age))
    result = apply_retention(tmp_path, RetentionPolicy(max_total=3000), now=now)
    # Oldest first until under the budget; the newest day (20261103) is being written and never counted.
    assert [s.log.name for s in result.deleted] == [days[0].name] and result.kept_bytes == 2000
    assert not (tmp_path / "index.jsonl").exists()


def _run_sim(tmp_path: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    rules = write_rules(tmp_path, RULES.format(every="5s"), "tl.yaml")
    args = [
        "run",
        "--rules",
        str(rules),
        "--sim",
        "--speed",
        "50",
        "--duration",
        "40s",
        "--fps",
        "2",
        "--out",
        str(out),
    ]
    return subprocess.run([sys.executable, "-m", "autorec", *args, *extra], capture_output=True, text=True, timeout=60)


def test_run_writes_the_timelapse_and_no_timelapse_switches_it_off(tmp_path: Path):
    proc = _run_sim(tmp_path, tmp_path / "on")
    assert proc.returncode == 0, proc.stderr
    (f,) = (tmp_path / "on").glob("timelapse-*.bin")
    frames = sum(1 for r in LogReader(f) if events.peek_kind(r.payload) == "image")
    assert 7 <= frames <= 9, frames  # 40 s / 5 s
    proc = _run_sim(tmp_path, tmp_path / "off", "--no-timelapse")
    assert proc.returncode == 0, proc.stderr
    assert not list((tmp_path / "off").glob("timelapse-*"))
