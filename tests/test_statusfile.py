"""Status file: always a whole JSON document, replaced atomically, on a cadence; msg/s meter."""

from __future__ import annotations

import json
import logging
import threading

from autorec.services.statusfile import (
    RateMeter,
    Status,
    StatusFile,
    StatusReporter,
    read_status,
    segment_info,
    write_status,
)


def _status(i: int) -> Status:
    return Status(
        updated=1700000000.0 + i,
        connected=i % 2 == 0,
        msg_per_s=12.5,
        open_segment={"path": f"seg-{i}.bin.partial", "rules": ["moves"], "bytes": i * 1000},
        last_segment={"path": "seg-0.bin", "start": 1.0, "end": 2.0, "bytes": 10},
        disk_free=123,
        disk_total=456,
        counters={"messages": i, "decode_errors": 0},
        alerts=["disconnected for 60s"] if i % 3 == 0 else [],
    )


def test_fields_round_trip(tmp_path):
    path = tmp_path / "status.json"
    write_status(path, _status(3))
    data = read_status(path)
    assert set(data) == {
        "updated",
        "updated_iso",
        "pid",
        "connected",
        "msg_per_s",
        "open_segment",
        "last_segment",
        "disk_free",
        "disk_total",
        "disk_below_floor",
        "counters",
        "alerts",
        "scores",
    }
    assert data["open_segment"]["bytes"] == 3000
    # beside every epoch time, the same time for people (UTC), and a duration beside start/end
    assert data["updated_iso"] == "2023-11-14T22:13:23.000Z"
    assert data["last_segment"]["start_iso"] == "1970-01-01T00:00:01.000Z" and data["last_segment"]["duration_s"] == 1.0
    assert data["alerts"] == ["disconnected for 60s"]
    assert data["connected"] is False
    # No temporary files left beside it.
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_concurrent_reader_always_sees_a_whole_document(tmp_path):
    path = tmp_path / "status.json"
    write_status(path, _status(0))
    stop = threading.Event()
    seen: list[int] = []
    bad: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            text = path.read_text()
            try:
                seen.append(json.loads(text)["counters"]["messages"])
            except ValueError:
                bad.append(text)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(1, 400):
            write_status(path, _status(i))
    finally:
        stop.set()
        t.join()
    assert not bad
    assert seen == sorted(seen)  # never goes backwards
    assert read_status(path)["counters"]["messages"] == 399


def test_status_file_cadence_and_failures(tmp_path):
    sf = StatusFile(tmp_path / "status.json", interval=2.0)
    assert sf.due(100.0)
    assert sf.write(100.0, _status(1))
    assert not sf.due(101.9)
    assert sf.due(102.0)
    # A directory that vanished: the write fails, is counted, and does not raise.
    gone = StatusFile(tmp_path / "missing" / "status.json")
    assert not gone.write(0.0, _status(1))
    assert gone.errors == 1 and "status file" in gone.last_error
    assert sf.writes == 1


def test_a_status_file_that_cannot_be_written_is_said_once_a_minute_then_works_again(tmp_path, caplog):
    """A directory missing for five minutes of 2 s updates: 3 lines, not 150; then one line when it works."""
    now = [0.0]
    path = tmp_path / "missing" / "status.json"
    reporter = StatusReporter(path, interval=2.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="autorec.services.statusfile"):
        while now[0] < 150.0:
            reporter.update()
            now[0] += 1.0
        path.parent.mkdir()
        assert reporter.update(force=True) and reporter.update(force=True)
    lines = [f"{r.levelname} {r.getMessage()}" for r in caplog.records]
    assert lines == [
        f"ERROR status file {path}: No such file or directory (status updates continue to be tried; 1 failed so far)",
        f"ERROR status file {path}: No such file or directory (status updates continue to be tried; 31 failed so far)",
        f"ERROR status file {path}: No such file or directory (status updates continue to be tried; 61 failed so far)",
        f"INFO status: writing to {path} works again (75 failed so far)",
    ]
    assert read_status(path)["pid"] > 0


def test_rate_meter_window():
    meter = RateMeter(window=5.0)
    assert meter.rate(0.0) == 0.0
    meter.add(0.0, 1)
    assert meter.rate(0.0) == 1.0  # one message, not a burst of millions per second
    for i in range(1, 101):
        meter.add(i * 0.1, 1)  # 10 msg/s for 10 s
    assert abs(meter.rate(10.0) - 10.0) < 0.5
    assert meter.rate(20.0) == 0.0  # all samples aged out


def test_segment_info_from_writer_segment_files(tmp_path):
    from autorec.io.writer import SegmentFile

    seg = SegmentFile(
        seq=1,
        part=1,
        name="s",
        path=tmp_path / "s.bin",
        partial=tmp_path / "s.bin.partial",
        sidecar=tmp_path / "s.json",
        start=5.0,
        rules=("moved",),
        records=3,
        bytes=99,
    )
    assert segment_info(seg)["path"].endswith("s.bin.partial")  # still open
    seg.end, seg.close_reason = 9.0, "post_roll"
    info = segment_info(seg)
    assert info["path"].endswith("s.bin") and info["rules"] == ["moved"] and info["bytes"] == 99
    assert segment_info(None) is None
    write_status(tmp_path / "st.json", Status(updated=1.0, connected=True, last_segment=info))
    assert read_status(tmp_path / "st.json")["last_segment"]["close_reason"] == "post_roll"


def test_reporter_writes_on_its_cadence_from_what_it_sees(tmp_path):
    from autorec.services.diskfloor import DiskWatch
    from autorec.services.statusfile import StatusReporter

    clock = [0.0]
    counters = {"messages": 0}
    watch = DiskWatch(tmp_path)
    watch.poll(0.0)
    path = tmp_path / "status.json"
    rep = StatusReporter(
        path,
        interval=2.0,
        counters=lambda: counters,
        alerts=lambda: [{"key": "disconnected"}],
        disk=watch,
        clock=lambda: clock[0],
        wall_clock=lambda: 1234.0,
    )
    rep.connected(0.0)
    first = read_status(path)
    assert first["connected"] is True and first["updated"] == 1234.0
    assert first["disk_free"] == watch.floor.last_free and first["disk_below_floor"] is False
    for i in range(30):  # 10 msg/s for 3 s
        clock[0] = i * 0.1
        counters["messages"] += 1
        rep.message(clock[0], "hv_regulator")
    data = read_status(path)
    assert data["counters"]["messages"] == 21  # written at 2.0 s, not since
    assert 8 <= data["msg_per_s"] <= 12
    assert data["alerts"] == [{"key": "disconnected"}]
    rep.disconnected(3.0)  # a connection change is written at once
    assert read_status(path)["connected"] is False

    broken = StatusReporter(tmp_path / "gone" / "status.json", counters=lambda: 1 / 0)
    assert broken.update(force=True) is False  # logged, never raised
