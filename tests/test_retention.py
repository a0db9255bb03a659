"""Retention: oldest closed segments go first, with sidecars, exports and index lines."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from autorec.io.logfile import LogWriter
from autorec.io.retention import (
    INDEX_NAME,
    RetentionPolicy,
    RetentionWorker,
    SegmentFiles,
    apply_retention,
    plan_deletions,
    read_index,
)
from tests.support.polling import wait_until

NOW = 1_800_000_000.0
DAY = 86400.0


def _segment(directory: Path, name: str, age: float, payload_bytes: int, exports: tuple[str, ...] = ()) -> Path:
    log = directory / f"{name}.bin"
    with LogWriter(log) as w:
        w.write(b"\x0a" + bytes(payload_bytes - 1))
    (directory / f"{name}.json").write_text(json.dumps({"path": log.name, "start": 1.0, "end": 2.0}))
    for ext in exports:
        (directory / f"{name}{ext}").write_bytes(b"video")
    os.utime(log, (NOW - age, NOW - age))
    with open(directory / INDEX_NAME, "a") as index:
        index.write(json.dumps({"path": log.name, "start": 1.0, "end": 2.0, "bytes": payload_bytes + 4}) + "\n")
    return log


def _listed(directory: Path) -> list[str]:
    return [json.loads(line)["path"] for line in read_index(directory) if line.startswith("{")]


def test_policy_from_config():
    p = RetentionPolicy.from_config("7d", "50GB")
    assert p.keep == 7 * DAY and p.max_total == 50 * 10**9 and p.active
    assert not RetentionPolicy.from_config(None, None).active
    with pytest.raises(ValueError):
        RetentionPolicy.from_config("7 fortnights", None)


def _seg(name: str, modified: float, size: int, i: int) -> SegmentFiles:
    return SegmentFiles(Path(name), (Path(name),), size, modified, i)


def test_plan_keep_and_max_total_oldest_first():
    segs = [_seg("c", NOW - 1 * DAY, 100, 2), _seg("a", NOW - 9 * DAY, 100, 0), _seg("b", NOW - 3 * DAY, 100, 1)]
    assert [s.log.name for s in plan_deletions(segs, RetentionPolicy(keep=7 * DAY), NOW)] == ["a"]
    assert [s.log.name for s in plan_deletions(segs, RetentionPolicy(max_total=150), NOW)] == ["a", "b"]
    assert [s.log.name for s in plan_deletions(segs, RetentionPolicy(keep=2 * DAY, max_total=1000), NOW)] == ["a", "b"]
    assert plan_deletions(segs, RetentionPolicy(), NOW) == []


def test_newest_is_never_deleted_for_size_alone():
    segs = [_seg("old", NOW - 10, 500, 0), _seg("new", NOW, 500, 1)]
    assert [s.log.name for s in plan_deletions(segs, RetentionPolicy(max_total=100), NOW)] == ["old"]


def test_apply_deletes_files_and_index_lines(tmp_path):
    _segment(tmp_path, "seg-001", 10 * DAY, 1000, exports=(".mp4",))
    _segment(tmp_path, "seg-002", 8 * DAY, 1000, exports=(".mkv", ".mp4", ".mp4.partial"))
    _segment(tmp_path, "seg-003", 2 * DAY, 1000)
    _segment(tmp_path, "seg-004", 1 * DAY, 1000)
    (tmp_path / "telemetry-2026-11-20.bin").write_bytes(b"")  # not a segment: never touched
    (tmp_path / "seg-005.bin.partial").write_bytes(b"")  # open segment: never touched

    result = apply_retention(tmp_path, RetentionPolicy(keep=7 * DAY), now=NOW)
    assert [s.log.name for s in result.deleted] == ["seg-001.bin", "seg-002.bin"]
    assert not result.errors
    assert result.freed_bytes == 2 * 1004 + len("video") * 4 + sum(
        len(json.dumps({"path": f"seg-00{i}.bin", "start": 1.0, "end": 2.0})) for i in (1, 2)
    )
    remaining = sorted(p.name for p in tmp_path.iterdir())
    assert remaining == [
        INDEX_NAME,
        "seg-003.bin",
        "seg-003.json",
        "seg-004.bin",
        "seg-004.json",
        "seg-005.bin.partial",
        "telemetry-2026-11-20.bin",
    ]
    assert _listed(tmp_path) == ["seg-003.bin", "seg-004.bin"]

    # Size budget that holds one segment with its sidecar: seg-003 goes, seg-004 stays.
    result = apply_retention(tmp_path, RetentionPolicy(max_total=1500), now=NOW)
    assert [s.log.name for s in result.deleted] == ["seg-003.bin"]
    assert _listed(tmp_path) == ["seg-004.bin"]
    assert result.kept_bytes == (tmp_path / "seg-004.bin").stat().st_size + (tmp_path / "seg-004.json").stat().st_size


def test_unparseable_and_missing_lines_are_kept(tmp_path):
    _segment(tmp_path, "seg-001", 10 * DAY, 100)
    with open(tmp_path / INDEX_NAME, "a") as index:
        index.write("not json\n")
        index.write(json.dumps({"path": "moved-away.bin"}) + "\n")
    _segment(tmp_path, "seg-002", 1 * DAY, 100)
    result = apply_retention(tmp_path, RetentionPolicy(keep=7 * DAY), now=NOW)
    assert [s.log.name for s in result.deleted] == ["seg-001.bin"]
    lines = read_index(tmp_path)
    assert lines[0] == "not json"
    assert json.loads(lines[1])["path"] == "moved-away.bin"
    assert json.loads(lines[2])["path"] == "seg-002.bin"
    assert not (tmp_path / f".{INDEX_NAME}.tmp").exists()


def test_undeletable_segment_keeps_its_line(tmp_path):
    log = _segment(tmp_path, "seg-001", 10 * DAY, 100)
    # A directory where the sidecar should be cannot be unlinked: a stand-in for a permission error.
    (tmp_path / "seg-001.json").unlink()
    (tmp_path / "seg-001.json").mkdir()
    result = apply_retention(tmp_path, RetentionPolicy(keep=DAY), now=NOW)
    assert result.deleted == []
    assert result.errors and "seg-001.json" in result.errors[0]
    assert _listed(tmp_path) == [log.name]


def test_no_index_is_nothing_to_do(tmp_path):
    assert apply_retention(tmp_path, RetentionPolicy(keep=1.0), now=NOW).deleted == []
    assert not (tmp_path / INDEX_NAME).exists()


def test_writer_shaped_lines_name_their_sidecar_and_lock_is_held(tmp_path):
    import threading

    log = tmp_path / "a.bin"
    with LogWriter(log) as w:
        w.write(b"\x0a\x00")
    (tmp_path / "a-meta.json").write_text("{}")
    os.utime(log, (NOW - 10 * DAY, NOW - 10 * DAY))
    (tmp_path / INDEX_NAME).write_text(
        json.dumps({"path": "a.bin", "sidecar": "a-meta.json", "recovered": False}) + "\n"
    )

    class Lock:
        def __init__(self) -> None:
            self.inner = threading.Lock()
            self.entered = 0

        def __enter__(self):
            self.entered += 1
            return self.inner.__enter__()

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

    lock = Lock()
    result = apply_retention(tmp_path, RetentionPolicy(keep=DAY), now=NOW, index_lock=lock)
    assert lock.entered == 1 and not lock.inner.locked()
    assert [s.log.name for s in result.deleted] == ["a.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [INDEX_NAME]
    assert read_index(tmp_path) == []


def test_worker_runs_on_segment_close_in_its_own_thread(tmp_path):
    import threading
    import time

    log = _segment(tmp_path, "seg-001", 10 * DAY, 100)
    old = time.time() - 10 * DAY  # the worker uses the real clock
    os.utime(log, (old, old))
    results = []
    done = threading.Event()

    def on_result(r):
        results.append((r, threading.current_thread().name))
        done.set()

    lock = threading.Lock()
    worker = RetentionWorker(tmp_path, RetentionPolicy(keep=7 * DAY), index_lock=lock, on_result=on_result).start()
    try:
        worker.segment_closed(object())
        assert done.wait(30)
        [(result, thread)] = results
        assert thread == "autorec-retention"
        assert [s.log.name for s in result.deleted] == ["seg-001.bin"]
        wait_until(lambda: worker.deleted == 1, 30, "the retention worker to delete the segment")
        assert worker.runs == 1 and worker.errors == 0
    finally:
        assert worker.close(30)
    assert RetentionWorker(tmp_path, RetentionPolicy()).start().close(1)  # inactive policy: no thread
