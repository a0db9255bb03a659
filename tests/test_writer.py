"""The segment writer with real files: partial -> rename, sidecar, index, flushing, counted drops, telemetry."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from autorec.core.segmenter import Segmenter, SegmentPolicy, Write
from autorec.io.dailytrack import track_file_name
from autorec.io.logfile import LogReader
from autorec.io.writer import SegmentFile, SegmentObserver, SegmentWriter
from autorec.outdir import TELEMETRY_PREFIX
from autorec.triggers.base import Firing
from tests.support.eventbuilder import image, payload
from tests.support.polling import wait_until

T0 = 1_700_000_000.0
POLICY = SegmentPolicy(pre_roll=2.0, post_roll=3.0, max_length=100.0)


class Recorder(SegmentObserver):
    def __init__(self) -> None:
        self.opened: list[SegmentFile] = []
        self.closed: list[SegmentFile] = []

    def segment_opened(self, segment: SegmentFile) -> None:
        assert segment.partial.exists()
        self.opened.append(segment)

    def segment_closed(self, segment: SegmentFile) -> None:
        assert segment.path.exists() and segment.sidecar.exists()
        self.closed.append(segment)


def drive(writer: SegmentWriter, seconds: int = 20, fire_at: tuple[int, ...] = (5,)) -> tuple[list, list[bytes]]:
    """Feed 4 msgs/s with firings at `fire_at`; return the actions and every payload."""
    seg = Segmenter(default=POLICY)
    actions: list = []
    sent: list[bytes] = []
    for i in range(seconds * 4):
        t = T0 + i * 0.25
        kind = ("scan_capacitance", "hv_regulator", "image", "electrode_state")[i % 4]
        p = payload(kind, t, i)
        sent.append(p)
        firings = [Firing("moved", t, {"pins": [i]})] if i / 4 in fire_at else []
        acts = seg.feed(t, p, kind, firings)
        actions += acts
        writer.submit(acts)
        if kind != "image":
            writer.telemetry(t, p)
    acts = seg.close()
    actions += acts
    writer.submit(acts)
    return actions, sent


def test_segment_files_sidecar_and_index(tmp_path: Path):
    obs = Recorder()
    w = SegmentWriter(tmp_path, "{start:%Y%m%dT%H%M%SZ}-{rules}", observers=[obs]).start()
    actions, sent = drive(w)
    assert w.close(10)
    [seg] = obs.closed
    assert obs.opened[0].name == seg.name == "20231114T221323Z-moved"
    assert not list(tmp_path.glob("*.partial"))
    written = [r.payload for r in LogReader(seg.path)]
    expected = [a.payload for a in actions if isinstance(a, Write)]
    assert written == expected
    # window 5 - 2 .. 5 + 3 at 4 msgs/s, plus the snapshot
    live = [p for p in written if p in sent]
    assert live == sent[12:33]
    side = json.loads(seg.sidecar.read_text())
    assert side["start"] == T0 + 3.0 and side["end"] == T0 + 8.0
    assert side["rules"] == ["moved"] and side["firings"][0]["evidence"] == {"pins": [20]}
    assert side["records"] == len(written) and side["bytes"] == seg.path.stat().st_size
    assert sum(side["counts"].values()) == len(written)
    assert side["pre_roll"]["records"] == 8 and side["snapshot"]["records"] == 3
    assert side["dropped"] == {"records": 0, "bytes": 0} and side["gaps"] == []
    assert side["close_reason"] == "post_roll"
    [line] = (tmp_path / "index.jsonl").read_text().splitlines()
    entry = json.loads(line)
    assert entry["path"] == seg.path.name and entry["sidecar"] == seg.sidecar.name
    assert entry["records"] == side["records"] and entry["bytes"] == side["bytes"]
    # telemetry: every non-image message, in the day's file
    tele = [r.payload for r in LogReader(tmp_path / track_file_name(TELEMETRY_PREFIX, T0))]
    assert tele == [p for i, p in enumerate(sent) if i % 4 != 2]


def test_open_segment_is_flushed_as_partial_within_a_second(tmp_path: Path):
    w = SegmentWriter(tmp_path, "{seq}-{rules}", flush_interval=0.2).start()
    seg = Segmenter(default=POLICY)
    w.submit(seg.feed(T0, payload("hv_regulator", T0, 1), "hv_regulator", [Firing("a", T0)]))
    w.submit(seg.feed(T0 + 1, payload("hv_regulator", T0 + 1, 2), "hv_regulator"))
    partial = tmp_path / "1-a.bin.partial"
    wait_until(lambda: partial.exists() and len(list(LogReader(partial))) == 2, 10, "two records in the partial")
    assert not (tmp_path / "1-a.bin").exists()
    w.submit(seg.close())
    assert w.close(10)
    assert (tmp_path / "1-a.bin").exists() and not partial.exists()


def test_records_wait_for_their_batch_but_opens_closes_and_a_filling_queue_do_not(tmp_path: Path):
    # A batch delay and a flush interval far longer than the test: whatever the writer does here,
    # it does because it was told to act at once, not because the batch or the flush fell due.
    w = SegmentWriter(tmp_path, "{seq}-{rules}", batch_delay=600, flush_interval=600, queue_max_bytes=40_000)
    w.start()
    try:
        seg = Segmenter(default=POLICY)
        w.submit(seg.feed(T0, payload("hv_regulator", T0, 1), "hv_regulator", [Firing("a", T0)]))
        # the open (with its first record) is acted on at once
        wait_until(lambda: w.stats.open_segment is not None, 10, "the segment to open")
        wait_until(lambda: w.stats.queued_bytes == 0, 10, "the opening batch to be taken")
        small = payload("hv_regulator", T0 + 1, 2)
        w.submit(seg.feed(T0 + 1, small, "hv_regulator"))
        assert w.stats.queued_bytes == len(small)  # waits for its batch (600 s away)
        # a quarter of the queue's bound cannot wait
        big = image(T0 + 2, b"\xff\xd8" + bytes(12_000) + b"\xff\xd9").SerializeToString()
        w.submit(seg.feed(T0 + 2, big, "image"))
        wait_until(lambda: w.stats.queued_bytes == 0, 10, "a quarter-full queue to be taken")
        # the close is acted on at once: renamed and indexed while the batch delay is far off
        w.submit(seg.close())
        wait_until(lambda: (tmp_path / "1-a.bin").exists(), 10, "the closed segment")
        assert [r.payload for r in LogReader(tmp_path / "1-a.bin")][-2:] == [small, big]
    finally:
        assert w.close(10)


def test_a_full_queue_drops_whole_messages_and_records_a_gap(tmp_path: Path):
    # No thread started: nothing drains the queue until close(), so drops are deterministic.
    w = SegmentWriter(tmp_path, "{seq}-{rules}", queue_max_bytes=800, telemetry=False)
    actions, _ = drive(w)
    w.close()
    side = json.loads(next(tmp_path.glob("*.json")).read_text())
    gaps = side["gaps"]
    assert gaps and all(g["reason"] == "writer_queue_full" and g["records"] > 0 for g in gaps)
    lost = sum(g["records"] for g in gaps)
    assert side["dropped"]["records"] == lost == w.stats.dropped
    writes = [a for a in actions if isinstance(a, Write)]
    assert side["records"] + lost == len(writes)
    records = list(LogReader(next(tmp_path.glob("*.bin"))))
    assert len(records) == side["records"]


def test_names_never_collide(tmp_path: Path):
    w = SegmentWriter(tmp_path, "{rules}", telemetry=False).start()
    drive(w, seconds=30, fire_at=(5, 20))
    assert w.close(10)
    names = sorted(p.name for p in tmp_path.glob("*.bin"))
    assert names == ["moved-2.bin", "moved.bin"]
    assert len((tmp_path / "index.jsonl").read_text().splitlines()) == 2


def test_telemetry_rotates_daily(tmp_path: Path):
    w = SegmentWriter(tmp_path, "{seq}").start()
    midnight = 1_700_006_400.0  # 2023-11-15T00:00:00Z
    for t in (midnight - 1, midnight - 0.5, midnight, midnight + 1):
        w.telemetry(t, payload("hv_regulator", t, t))
    assert w.close(10)
    assert len(list(LogReader(tmp_path / "telemetry-20231114.bin"))) == 2
    assert len(list(LogReader(tmp_path / "telemetry-20231115.bin"))) == 2
    # a restarted recorder appends to the day's file
    w2 = SegmentWriter(tmp_path, "{seq}").start()
    w2.telemetry(midnight + 2, payload("hv_regulator", midnight + 2, 0))
    assert w2.close(10)
    assert len(list(LogReader(tmp_path / "telemetry-20231115.bin"))) == 3


def test_an_unwritable_directory_is_counted_not_fatal(tmp_path: Path):
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output directory should be")
    w = SegmentWriter(blocker / "sub", "{seq}", telemetry=False)
    w._thread = None  # run synchronously at close: start() would fail on mkdir, as a real run reports
    drive(w)
    w.close()
    assert w.stats.errors >= 1
    assert w.stats.dropped > 0


def test_a_full_disk_mid_segment_drops_counts_and_keeps_the_file_whole(tmp_path: Path):
    """A real 2 MB tmpfs (root only): the writer survives ENOSPC, the sidecar never overclaims."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount to create a small tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        w = SegmentWriter(disk, "{seq}", telemetry=False, flush_interval=0.05).start()
        seg = Segmenter(default=SegmentPolicy(pre_roll=1.0, post_roll=100.0))
        big = b"\xff\xd8" + bytes(100_000) + b"\xff\xd9"
        for i in range(40):  # ~4 MB into a 2 MB disk
            p = image(T0 + i * 0.1, big).SerializeToString()
            w.submit(seg.feed(T0 + i * 0.1, p, "image", [Firing("a", T0)] if i == 0 else []))
        w.submit(seg.close())
        assert w.close(20)
        assert w.stats.errors >= 1 and w.stats.dropped > 0
        log = disk / "1.bin"
        records = list(LogReader(log))
        side = json.loads((disk / "1.json").read_text()) if (disk / "1.json").exists() else None
        if side is not None:  # the sidecar may itself not fit; when it does, it is exact
            assert side["records"] == len(records) and side["bytes"] == log.stat().st_size
            assert any(g["reason"] == "write_error" for g in side["gaps"])
            assert side["records"] + side["dropped"]["records"] == 40
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_sidecar_caps_firings_and_carries_iso_times(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path, fsync=False, telemetry=False, max_firings=5).start()
    drive(writer, seconds=20, fire_at=tuple(range(1, 9)))  # 8 firings of one segment
    assert writer.close(10)
    [side_path] = [p for p in tmp_path.glob("*.json")]
    side = json.loads(side_path.read_text())
    assert [f["time"] for f in side["firings"]] == [T0 + i for i in range(1, 6)]  # the first 5 in full
    assert side["firing_counts"] == {"moved": 8}
    omitted = side["firings_omitted"]
    assert omitted["count"] == 3 and omitted["last"]["time"] == T0 + 8 and "first 5" in omitted["note"]
    # people read UTC strings beside the epoch times, and the duration
    assert side["start_iso"] == "2023-11-14T22:13:20.000Z" and side["segment_start_iso"].endswith("Z")
    assert side["duration_s"] == round(side["end"] - side["start"], 3)
    assert side["firings"][0]["time_iso"] == "2023-11-14T22:13:21.000Z"
    [line] = (tmp_path / "index.jsonl").read_text().splitlines()
    entry = json.loads(line)
    assert (entry["start_iso"], entry["end_iso"], entry["duration_s"]) == (
        side["start_iso"],
        side["end_iso"],
        side["duration_s"],
    )
    # a segment with few firings lists them all and says nothing about omitting
    small = tmp_path / "small"
    writer = SegmentWriter(small, fsync=False, telemetry=False).start()
    drive(writer)
    assert writer.close(10)
    [side_path] = list(small.glob("*.json"))
    side = json.loads(side_path.read_text())
    assert len(side["firings"]) == 1 and side["firing_counts"] == {"moved": 1} and "firings_omitted" not in side


def test_writer_stats_count_every_record_also_when_the_buffer_fills_between_flushes(tmp_path: Path):
    # 300 KB frames: the log writer's 1 MiB buffer goes to the OS between two flushes; the
    # writer's own record count (status file, metrics: messages kept) must still see them all.
    seg = Segmenter(default=POLICY)
    w = SegmentWriter(tmp_path, observers=[obs := Recorder()], flush_interval=30.0).start()
    for i in range(40):
        t = T0 + i * 0.25
        p = image(t, bytes([i]) * 300_000).SerializeToString()
        w.submit(seg.feed(t, p, "image", [Firing("moved", t)] if i == 12 else []))
    w.submit(seg.close())
    assert w.close(10)
    [closed] = obs.closed
    assert closed.records > 12
    assert w.stats.records == closed.records == len(list(LogReader(closed.path)))
    assert w.stats.bytes == closed.bytes == closed.path.stat().st_size
