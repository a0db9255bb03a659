"""A full disk (a real 2 MB tmpfs) during writes: finalized data stays whole, nothing raises past its owner.

Mounting needs root; elsewhere these tests are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from autorec import events
from autorec.io.atomicfile import append_json_line as append_index_line
from autorec.io.logfile import LogReader, LogWriteError, LogWriter
from autorec.io.recovery import recover_partial
from autorec.outdir import INDEX_NAME, JOURNAL_NAME
from autorec.services.diskfloor import DiskFloor, MinFree, disk_usage
from autorec.services.statusfile import Status, StatusFile, read_status
from tests.support import eventbuilder as build
from tests.support.polling import wait_until
from tests.support.tmpfs import mounted

T0 = 1_763_000_000.0


def _mount(tmp_path: Path, size: str):
    yield from mounted(tmp_path, size)


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 2 MB tmpfs mounted for this test only."""
    yield from _mount(tmp_path, "2m")


@pytest.fixture
def small_disk_16m(tmp_path) -> Path:
    """A 16 MB tmpfs mounted for this test only: less than one camera segment."""
    yield from _mount(tmp_path, "16m")


def _image(i: int, size: int = 50_000) -> bytes:
    return build.image(T0 + i * 0.1, (i.to_bytes(4, "little") * (size // 4 + 1))[:size]).SerializeToString()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fill_until_enospc(writer: LogWriter, start: int) -> tuple[int, LogWriteError]:
    """Write images until the disk refuses; returns how many writes were attempted and the error."""
    for i in range(start, start + 1000):
        try:
            writer.write(_image(i))
            writer.flush()
        except LogWriteError as exc:
            return i - start + 1, exc
    raise AssertionError("the 2 MB disk never filled")


def test_enospc_mid_segment_keeps_finalized_and_open_logs_whole(small_disk):
    done = small_disk / "seg-0001.bin"
    with LogWriter(done, fsync_on_close=True) as w:
        for i in range(5):
            w.write(_image(i))
    done_hash = _sha(done)

    partial = small_disk / "seg-0002.bin.partial"
    w = LogWriter(partial, buffer_bytes=120_000)
    attempts, exc = _fill_until_enospc(w, 100)
    assert exc.errno == errno.ENOSPC
    assert w.dropped >= 1 and w.records == attempts - w.dropped

    # The open log still ends on a record boundary and every record in it is whole.
    reader = LogReader(partial)
    records = list(reader.records())
    assert reader.truncated is None and reader.corrupt is None
    assert len(records) == w.records
    assert all(events.decode(r.payload).image.image_data for r in records)
    assert _sha(done) == done_hash  # the finalized segment was never touched

    # The writer keeps working once space returns.
    done.unlink()
    w.write(_image(999))
    w.close()
    assert len(list(LogReader(partial).records())) == len(records) + 1


def test_disk_floor_sees_the_fill_and_the_release(small_disk):
    floor = DiskFloor(MinFree(bytes=500_000, fraction=0.0))
    free, total = disk_usage(small_disk)
    assert floor.update(free, total) is None
    filler = small_disk / "filler.bin"
    with LogWriter(filler) as w:
        try:
            _fill_until_enospc(w, 0)
        except AssertionError:
            pytest.fail("disk never filled")
    change = floor.update(*disk_usage(small_disk))
    assert change is not None and change.state == "below"
    filler.unlink()
    change = floor.update(*disk_usage(small_disk))
    assert change is not None and change.state == "above"


def test_recovery_and_status_on_a_full_disk_fail_cleanly(small_disk):
    status = StatusFile(small_disk / "status.json")
    assert status.write(0.0, Status(updated=T0, connected=True, counters={"n": 1}))
    append_index_line(small_disk / INDEX_NAME, {"path": "seg-0000.bin", "records": 1})

    partial = small_disk / "seg-0003.bin.partial"
    w = LogWriter(partial, buffer_bytes=1)
    _fill_until_enospc(w, 0)
    w.close()
    with open(partial, "ab") as f:  # a cut record, as a crash would leave
        f.write(b"\xff\x00")
    # Use the last free blocks so not even a small sidecar fits.
    fd = os.open(small_disk / "crumbs", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"x" * 512)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)

    index_before = (small_disk / INDEX_NAME).read_bytes()
    with pytest.raises(OSError):
        append_index_line(small_disk / INDEX_NAME, {"path": "x" * 100_000})
    assert (small_disk / INDEX_NAME).read_bytes() == index_before  # no half line left behind

    assert not status.write(1.0, Status(updated=T0 + 1, connected=False, counters={"n": 2}))
    assert status.errors == 1
    assert read_status(small_disk / "status.json")["counters"] == {"n": 1}  # the old one, whole

    result = recover_partial(partial)
    # Either the sidecar fitted (then everything is consistent) or the partial waits for the next start.
    if result.error is None:
        assert json.loads(result.sidecar.read_text())["records"] == len(list(LogReader(result.log).records()))
    else:
        assert partial.exists() and not (small_disk / "seg-0003.bin").exists()
        assert not list(small_disk.glob(".*.tmp"))
        (small_disk / "crumbs").unlink()
        result = recover_partial(partial)
        assert result.error is None
        reader = LogReader(result.log)
        n = len(list(reader.records()))
        assert reader.truncated is None
        assert json.loads(result.sidecar.read_text())["records"] == n
        assert json.loads((small_disk / INDEX_NAME).read_text().splitlines()[-1])["records"] == n


def _wait_status(path: Path, predicate, proc: subprocess.Popen, what: str, timeout: float = 60.0) -> dict:
    found: list[dict] = []

    def seen() -> bool:
        assert proc.poll() is None, f"recorder exited ({proc.returncode}) while waiting for {what}"
        with contextlib.suppress(OSError, ValueError):
            status = read_status(path)
            if predicate(status):
                found.append(status)
                return True
        return False

    wait_until(seen, timeout, what)
    return found[0]


def test_recorder_survives_a_full_disk_and_resumes(small_disk_16m, tmp_path):
    """`autorec run --sim` with camera on a 16 MB tmpfs: ENOSPC mid-segment, floor, recovery of space."""
    out = small_disk_16m
    rules = tmp_path / "rules.yaml"
    # Only segments on this disk: the daily tracks (telemetry, timelapse) would eat its last blocks between checks.
    # A post-roll longer than the run keeps the first segment open until the floor closes it: with a short
    # one, a segment could end by itself just before the disk filled, and the floor close was a race.
    rules.write_text(
        "output:\n  min_free: 1MB\n  telemetry: false\n  timelapse: off\n"
        "segments:\n  post_roll: 1h\n"
        "rules:\n  - name: moves\n    trigger: electrodes\n"
    )
    cmd = [sys.executable, "-m", "autorec", "run", "--rules", str(rules), "--out", str(out)]
    cmd += ["--sim", "--speed", "20", "--duration", "30min"]
    log_path = tmp_path / "recorder.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    status_path = out / "status.json"
    try:
        status = _wait_status(
            status_path,
            lambda s: s["disk_below_floor"] and s["open_segment"] is None and s["last_segment"] is not None,
            proc,
            "the disk floor to close the segment",
        )
        assert "disk_floor" in [a["key"] for a in status["alerts"]]
        # Every finalized segment is whole, and its sidecar counts what it holds.
        finals = sorted(out.glob("*.bin"))
        assert finals
        for log_file in finals:
            reader = LogReader(log_file)
            n = sum(1 for _ in reader.events())
            assert reader.truncated is None and reader.corrupt is None and reader.undecodable == 0
            sidecar = json.loads(log_file.with_suffix(".json").read_text())
            assert sidecar["records"] == n
        reasons = {json.loads(p.with_suffix(".json").read_text())["close_reason"] for p in finals}
        assert "disk_floor" in reasons
        opened = status["counters"]["segments_opened"]

        # Space comes back: recording resumes by itself (and, at 20x with a camera, soon fills the
        # 16 MB again: a new segment having opened is the proof).
        for log_file in finals:
            log_file.unlink()
        _wait_status(status_path, lambda s: s["counters"]["segments_opened"] > opened, proc, "recording to resume")
        assert "disk space back" in log_path.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log_path.read_text()[-2000:]
    assert "Traceback" not in log_path.read_text()


FLOOR_RULES = """
output:
  min_free: {min_free}
  telemetry: false
  timelapse: off
segments:
  pre_roll: 1s
  post_roll: 1h
rules:
  - {{name: hi, trigger: message, where: {{hv_regulator.voltage: 5}}}}
"""


class _Wired:
    """A recorder wired as `autorec run` wires it (`Services.attach`), fed by the test, with the disk
    floor sampler's monotonic clock in the test's hands (its statvfs samples are real)."""

    def __init__(self, out: Path, min_free: str) -> None:
        from autorec.core.pipeline import Pipeline
        from autorec.io.writer import SegmentWriter
        from autorec.rules import parse_rules
        from autorec.runs.dispatch import Dispatcher
        from autorec.runs.services import Services

        ruleset = parse_rules(FLOOR_RULES.format(min_free=min_free))
        self.services = Services(ruleset, out)
        self.writer = SegmentWriter(
            out, "{seq}", telemetry=False, flush_interval=0.05, observers=self.services.observers()
        )
        self.dispatcher = Dispatcher(Pipeline(ruleset, offline=True, telemetry=False, timelapse=False), self.writer)
        self.services.attach(self.dispatcher, self.writer)
        self.clock = 0.0
        self.dispatcher.floor_sampler.clock = lambda: self.clock
        self.services.start("live", None)
        self.writer.start()
        self.t = T0

    def feed(self, kind: str = "hv_regulator", volts: float = 1.0) -> None:
        self.t += 0.1
        if kind == "image":
            data = build.image(self.t, b"\xff\xd8" + bytes(50_000) + b"\xff\xd9").SerializeToString()
        else:
            data = build.payload(kind, self.t, volts)
        self.dispatcher.message(build.message(data))

    def alerts(self) -> list[str]:
        return [a["key"] for a in self.services.monitor.status()]

    def close(self) -> None:
        assert self.writer.close(30)
        self.services.close()


def _fill_to(directory: Path, free_left: int) -> Path:
    """A filler file that leaves about `free_left` bytes free on `directory`'s filesystem (0: none at all)."""
    filler = directory / "filler.bin"
    free, _ = disk_usage(directory)
    with open(filler, "wb", buffering=0) as f:
        f.write(b"\0" * max(free - free_left, 0))
        if free_left == 0:  # the last blocks too
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 4096)
    return filler


def test_a_real_floor_crossing_is_fed_to_the_pipeline_and_reaches_the_alerts(small_disk_16m):
    """On a real 16 MB tmpfs, wired as a run is: the disk falls below a 4 MB floor while a segment
    is open; the next due sample (before an input) closes it with `disk_floor`, the alert is raised
    through the pipeline's `FloorCrossed` output, firings are suppressed; space back, the alert
    clears and a firing opens a new segment."""
    out = small_disk_16m
    run = _Wired(out, "4MB")
    try:
        run.feed(volts=5)  # fires: a segment opens
        for _ in range(5):
            run.feed()
        assert run.dispatcher.view.open_rules == ("hi",)
        filler = _fill_to(out, 2_000_000)  # below the floor, with room left for the sidecars
        run.feed()  # the sampler's interval (1 s of its clock) has not passed: not sampled yet
        assert run.dispatcher.paused is None and run.alerts() == []
        run.clock += 1.0
        run.feed()  # sampled before this input: below
        assert run.dispatcher.paused == "disk_floor" and run.alerts() == ["disk_floor"]
        run.feed(volts=5)  # suppressed
        assert run.dispatcher.counters()["suppressed_firings"] == 1
        filler.unlink()
        run.clock += 1.0
        run.feed()  # sampled before this input: space is back
        assert run.dispatcher.paused is None and run.alerts() == []
        run.feed(volts=5)
        assert run.dispatcher.counters()["segments_opened"] == 2
    finally:
        run.close()
    index = [json.loads(line) for line in (out / INDEX_NAME).read_text().splitlines()]
    assert [e["close_reason"] for e in index] == ["disk_floor", "shutdown"]
    alerts = [e for e in map(json.loads, (out / JOURNAL_NAME).read_text().splitlines()) if e["event"] == "alert"]
    assert [(e["key"], e["state"]) for e in alerts] == [("disk_floor", "raised"), ("disk_floor", "cleared")]


def test_a_failed_write_forces_a_sample_before_the_next_input(small_disk_16m):
    """The sampler's own interval is never reached here (its clock stands still): only the writer's
    error count can make it sample. The disk is filled to ENOSPC under an open camera segment; once
    the writer has counted the failed write, the next input is preceded by a sample, which pauses
    recording and raises the alert."""
    out = small_disk_16m
    run = _Wired(out, "1MB")
    try:
        run.feed(volts=5)
        run.feed("image")
        assert run.dispatcher.view.open_rules == ("hi",)
        filler = _fill_to(out, 0)

        def paused() -> bool:
            run.feed("image")  # each input is one more chance: a sample first if the writer failed
            return run.dispatcher.paused == "disk_floor"

        wait_until(paused, 30, "a failed write to force a disk floor sample")
        assert run.writer.stats.errors >= 1 and run.alerts() == ["disk_floor"]
        filler.unlink()
        run.clock += 1.0
        run.feed()
        assert run.dispatcher.paused is None and run.alerts() == []
    finally:
        run.close()
    for log_file in sorted(out.glob("*.bin")):  # what was finalized is whole
        reader = LogReader(log_file)
        sum(1 for _ in reader.records())
        assert reader.truncated is None and reader.corrupt is None
