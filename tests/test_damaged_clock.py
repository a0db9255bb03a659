"""One damaged timestamp must not damage the night: outliers, clock steps, dates of any float."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

from autorec import dates, events
from autorec.cli import main
from autorec.core.pipeline import Pipeline
from autorec.core.segmentname import render_segment_name
from autorec.io.dailytrack import DailyTrack, track_file_name
from autorec.io.logfile import LogReader, LogWriter
from autorec.io.writer import SegmentWriter
from autorec.outdir import TELEMETRY_PREFIX
from autorec.rules import load_rules
from autorec.runs.dispatch import Dispatcher
from tests.support.eventbuilder import hv, message, payload, raw_time

T0 = 1_795_520_000.0  # 2026-11-24
DAY = "20261124"
RULES = "rules:\n  - name: el\n    trigger: electrodes\n    post_roll: 5s\n    pre_roll: 2s\n"


def _damaged(seconds: int, nanos: int = 0) -> bytes:
    """An hv_regulator whose Timestamp fields are set raw (any int64 / int32, as a damaged rig sends)."""
    return raw_time(hv(None, 1.0), seconds, nanos).SerializeToString()


# Timestamps of every damaged shape: 0 (1970), year 1, 2**62, negative, the last second of year 9999,
# beyond it, nanos far out of their range (the "NaN-like" Timestamp), the most negative int64.
DAMAGED = [
    (0, 0),
    (-62_135_596_800 + 3, 0),
    (2**62, 0),
    (-1, 0),
    (-(10**9), 0),
    (253_402_300_799, 999_999_999),
    (253_402_300_800 + 10**6, 0),
    (int(T0), 2**31 - 1),
    (int(T0), -(2**31)),
    (-(2**63), 0),
    (2**63 - 1, 0),
]


def night(damaged: list[tuple[int, int]]) -> list[bytes]:
    """Four messages a second for 60 s; electrode changes every 15 s; one damaged record every few seconds."""
    out = []
    k = 0
    for i in range(240):
        t = T0 + i * 0.25
        out.append(payload("scan_capacitance", t, i))
        if i % 60 == 30:
            out.append(payload("electrode_state", None, i // 60 + 1))
        if i % 20 == 10 and k < len(damaged):
            out.append(_damaged(*damaged[k]))
            k += 1
    return out


def write_log(path: Path, payloads: list[bytes]) -> Path:
    with LogWriter(path) as w:
        for p in payloads:
            w.write(p)
    return path


@pytest.mark.parametrize("t", [0.0, -1.0, -1e300, 1e300, math.nan, math.inf, -math.inf, 2.0**62, 253402300799.9999])
def test_every_date_format_survives_any_float(t):
    assert len(dates.utc_iso(t)) >= 20
    assert dates.utc_strftime(t, "%Y%m%dT%H%M%SZ")[:4].isdigit()
    assert dates.local_strftime(t, "%Y-%m-%d %H:%M:%S")
    assert track_file_name(TELEMETRY_PREFIX, t).startswith("telemetry-")
    assert render_segment_name("{start}-{rules}", t, ["a"], 1).endswith("-a")
    assert dates.utc_strftime(t, "%Q bad \x00") is not None  # a format strftime rejects: the ISO form


def test_damaged_timestamps_are_outliers_and_date_nothing_outside_the_night(tmp_path: Path):
    """Live path in-process: segments, sidecars, index and telemetry all stay on the night's day."""
    rules = tmp_path / "r.yaml"
    rules.write_text(RULES)
    out = tmp_path / "out"
    writer = SegmentWriter(out, load_rules(rules).output.name, telemetry=True).start()
    pipe = Dispatcher(Pipeline(load_rules(rules), offline=True, telemetry=True), writer)
    sent = night(DAMAGED)
    for p in sent:
        pipe.message(message(p))
    pipe.finish()
    assert writer.close(10)
    # Of the 11 damaged records, those outside years 1-9999 read as "no timestamp" (events.timestamp);
    # the 6 others (0, year 1, -1, -1e9, and the two T0-ish ones with absurd nanos, seconds behind
    # the clock when they come) are outliers.
    in_range = [d for d in DAMAGED if events.timestamp(events.decode(_damaged(*d))) is not None]
    assert len(in_range) == 6
    assert pipe.pipeline.timeline.outliers == 6 and pipe.pipeline.timeline.steps == 0
    assert pipe.counters()["clock_outliers"] == 6
    assert pipe.stats.messages == len(sent)  # nothing lost
    names = sorted(p.name for p in out.iterdir())
    assert [n for n in names if n.startswith("telemetry-")] == [f"telemetry-{DAY}.bin"]
    tele = list(LogReader(out / f"telemetry-{DAY}.bin"))
    assert len(tele) == len(sent)  # every non-image message, damaged ones included
    segments = [n for n in names if n.endswith(".bin") and not n.startswith("telemetry-")]
    assert len(segments) == 4 and all(n.startswith(DAY) for n in segments)
    for line in (out / "index.jsonl").read_text().splitlines():
        entry = json.loads(line)
        assert T0 <= entry["start"] <= entry["end"] <= T0 + 70


def test_run_log_dry_run_and_out_on_damaged_log(tmp_path: Path, capsys):
    rules = tmp_path / "r.yaml"
    rules.write_text(RULES)
    log = write_log(tmp_path / "night.bin", night(DAMAGED))
    assert main(["run", "--rules", str(rules), "--log", str(log), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and all(line.startswith("2026-11-2") for line in lines[:-1])  # local time, the night's date
    out = tmp_path / "out"
    assert main(["run", "--rules", str(rules), "--log", str(log), "--out", str(out)]) == 0
    assert all(p.name.startswith((DAY, "index", ".")) for p in out.iterdir()), sorted(out.iterdir())
    assert main(["info", str(log)]) == 0
    assert "from 2026-11-24" in capsys.readouterr().out


def test_a_clock_stepped_back_for_good_is_followed_and_counted(tmp_path: Path):
    rules = tmp_path / "r.yaml"
    rules.write_text(RULES)
    pipe = Dispatcher(
        Pipeline(load_rules(rules), offline=True), SegmentWriter(tmp_path / "o", "{seq}", telemetry=False)
    )
    for i in range(40):
        t = T0 + i * 0.25 - (3600.0 if i >= 20 else 0.0)  # NTP set the rig's clock back an hour
        pipe.message(message(payload("scan_capacitance", t, i)))
    pipe.finish()
    assert pipe.pipeline.timeline.steps == 1 and pipe.pipeline.timeline.outliers == 0
    assert pipe.stats.last_time == pytest.approx(T0 + 39 * 0.25)  # absorbed: stream time went on


def test_a_failing_telemetry_write_is_counted_and_logged_once(tmp_path: Path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the output directory should be")
    tele = DailyTrack(blocker, TELEMETRY_PREFIX)
    with caplog.at_level(logging.WARNING, logger="autorec.io.dailytrack"):
        for i in range(500):
            tele.write(T0 + i, payload("hv_regulator", T0 + i, i))
        tele.close()
    assert tele.dropped == 500 and tele.records == 0
    assert len([r for r in caplog.records if r.name == "autorec.io.dailytrack"]) == 1


def test_a_telemetry_track_on_a_disk_that_fills_then_frees_says_so_once_each_way(full_disk: Path, caplog):
    """A full disk: one ERROR line for all the failed flushes, one "works again" once a flush really writes."""
    tele = DailyTrack(full_disk.parent, TELEMETRY_PREFIX)
    with caplog.at_level(logging.INFO, logger="autorec.io.dailytrack"):
        for i in range(20):
            tele.write(T0 + i, payload("hv_regulator", T0 + i, i))
            tele.flush()
        assert tele.records == 20 and tele.dropped == 20  # buffered, then lost at each flush
        (full_disk.parent / "filler").unlink()  # room again
        tele.flush()  # an empty buffer: proves nothing
        for i in range(20, 25):
            tele.write(T0 + i, payload("hv_regulator", T0 + i, i))
        tele.flush()
        tele.close()
    lines = [f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.name == "autorec.io.dailytrack"]
    track = full_disk.parent / track_file_name(TELEMETRY_PREFIX, T0)
    assert len(lines) == 2, lines
    assert lines[0].startswith("ERROR ") and "No space left on device (1 record(s) lost so far" in lines[0], lines
    assert lines[1] == f"INFO writing to {track} works again (20 record(s) lost so far)"
    assert len(list(LogReader(track))) == 5
