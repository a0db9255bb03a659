"""Upstream log format: writer, reader, truncation and corruption."""

from __future__ import annotations

from pathlib import Path

import pytest

from autorec import events
from autorec.io.logfile import HEADER, LogReader, LogWriter, frame
from tests.support.upstreamreader import upstream_read


def test_fixture_counts(upstream_log: Path, upstream_counts: dict) -> None:
    reader = LogReader(upstream_log)
    kinds: dict[str, int] = {}
    for _, _, head in reader.heads():
        k = events.peek_kind(head)
        kinds[k] = kinds.get(k, 0) + 1
    assert sum(kinds.values()) == upstream_counts["records"]
    assert kinds == upstream_counts["kinds"]
    assert reader.truncated is None and reader.corrupt is None
    assert reader.end_offset == upstream_log.stat().st_size


def test_round_trip_is_byte_identical(upstream_log: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy.bin"
    with LogWriter(out) as w:
        for rec in LogReader(upstream_log):
            w.write(rec.payload)
    assert out.read_bytes() == upstream_log.read_bytes()
    assert len(upstream_read(out)) == 249


def test_new_mode_refuses_existing(tmp_path: Path) -> None:
    p = tmp_path / "x.bin"
    p.write_bytes(b"")
    with pytest.raises(FileExistsError):
        LogWriter(p)


def test_truncated_last_record_is_reported(upstream_log: Path, tmp_path: Path) -> None:
    data = upstream_log.read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[:-10])
    reader = LogReader(cut)
    records = list(reader.records())
    assert len(records) == 248
    assert reader.truncated is not None and reader.truncated.missing_bytes == 10
    assert reader.truncated.offset == records[-1].offset + 4 + len(records[-1].payload)
    reader2 = LogReader(cut)
    assert len(list(reader2.heads())) == 248
    assert reader2.truncated == reader.truncated


def test_cut_inside_header(tmp_path: Path) -> None:
    p = tmp_path / "h.bin"
    p.write_bytes(frame(b"\x0a\x00") + b"\x05\x00")
    reader = LogReader(p)
    assert [r.payload for r in reader] == [b"\x0a\x00"]
    assert reader.truncated is not None and reader.truncated.offset == 6 and reader.truncated.missing_bytes == 2


def test_absurd_length_is_corruption_not_allocation(tmp_path: Path) -> None:
    p = tmp_path / "bad.bin"
    p.write_bytes(frame(b"\x0a\x00") + HEADER.pack(0xFFFFFFF0) + b"junk")
    reader = LogReader(p)
    assert len(list(reader)) == 1
    assert reader.corrupt is not None and reader.corrupt.offset == 6
    assert reader.truncated is None


def test_append_cuts_partial_record_first(upstream_log: Path, tmp_path: Path) -> None:
    p = tmp_path / "a.bin"
    p.write_bytes(upstream_log.read_bytes()[:-10])
    with LogWriter(p, mode="append") as w:
        w.write(b"\x0a\x00")
    reader = LogReader(p)
    assert len(list(reader)) == 249
    assert reader.truncated is None


def test_failed_flush_leaves_whole_records(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    w = LogWriter(p, buffer_bytes=1 << 30)
    w.write(b"\x0a\x00")
    w.flush()
    w.write(b"\x0a\x00\x0a")
    import os

    os.close(w._fd)  # make the next write fail as a broken disk would
    w._fd = os.open(p, os.O_RDONLY)
    with pytest.raises(OSError):
        w.flush()
    assert w.dropped == 1 and w.records == 1
    os.close(w._fd)
    w._fd = None
    assert [r.payload for r in LogReader(p)] == [b"\x0a\x00"]
