"""`autorec info`: counts, time span, images, truncation and corruption, on real files."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from autorec import events
from autorec.cli import main
from autorec.commands.info import ABSENT, HEAD, head_timestamp, jpeg_size
from autorec.io.logfile import LogReader, LogWriter
from autorec.proto import PurpleDropEvent
from tests.support import eventbuilder as build


def info_json(capsys, *paths: Path) -> tuple[int, object]:
    code = main(["info", "--json", *map(str, paths)])
    return code, json.loads(capsys.readouterr().out)


def test_fixture_counts_match_upstream_exactly(upstream_log: Path, upstream_counts: dict, capsys) -> None:
    code, out = info_json(capsys, upstream_log)
    assert code == 0
    projected = {
        "kinds": {k: v["count"] for k, v in out["kinds"].items()},
        "records": out["records"],
        "trailing_bytes": out["trailing_bytes"],
    }
    assert projected == upstream_counts
    assert out["truncated"] is None and out["corrupt"] is None
    # bytes and time span agree with a full decode of every record
    stamps = []
    sizes: dict[str, int] = {}
    for record, event in LogReader(upstream_log).events():
        sizes[events.kind(event)] = sizes.get(events.kind(event), 0) + len(record.payload)
        t = events.timestamp(event)
        if t is not None:
            stamps.append(t)
    assert {k: v["bytes"] for k, v in out["kinds"].items()} == sizes
    assert out["start"] == pytest.approx(min(stamps), abs=1e-6)
    assert out["end"] == pytest.approx(max(stamps), abs=1e-6)
    assert out["images"]["count"] == 0


def sample_events(photo: bytes) -> list[PurpleDropEvent]:
    """One event of every kind, timestamps where the kind has one, in stream-like order."""
    t0 = 1_750_000_000.25
    filled: dict[str, Callable[[float], PurpleDropEvent]] = {
        "image": lambda t: build.image(t, photo),
        "image_transform": lambda t: build.image_transform(t, 1024, 768, [1.0] * 9),
        # 12 channels push the timestamp past the head
        "temperature_control": lambda t: build.temperature(t, [25.0] * 12, [0.5] * 12),
        "hv_regulator": lambda t: build.hv(t, 120.0, target=1.5),
        "device_info": lambda t: build.device_info(connected=False, serial="PD-0042"),
        "electrode_state": lambda t: build.drive_group([True] * 128, t),
    }
    return [
        filled[kind](t0 + i) if kind in filled else build.event(kind, t0 + i) for i, kind in enumerate(events.KINDS)
    ]


def test_head_timestamp_agrees_with_full_decode(upstream_log: Path, board_photo_1: Path) -> None:
    payloads = [r.payload for r in LogReader(upstream_log)]
    payloads += [e.SerializeToString() for e in sample_events(board_photo_1.read_bytes())]
    unknown = 0
    for payload in payloads:
        kind = events.peek_kind(payload)
        expected = events.timestamp(events.decode(payload))
        got = head_timestamp(kind, payload[:HEAD])
        if isinstance(got, float):
            assert got == pytest.approx(expected, abs=1e-6), kind
        elif got is ABSENT:
            assert expected is None, kind
        else:
            unknown += 1
            assert kind == "temperature_control"  # the only one built to overflow the head
        whole = head_timestamp(kind, payload)  # with the whole payload as head it always knows
        assert whole is ABSENT if expected is None else whole == pytest.approx(expected, abs=1e-6), kind
    assert unknown == 1


@pytest.mark.parametrize("photo_name", ["board_photo_1", "board_photo_2"])
def test_images_counted_and_first_resolution_read_from_header(photo_name: str, request, tmp_path: Path, capsys) -> None:
    photo = request.getfixturevalue(photo_name).read_bytes()
    assert jpeg_size(photo) == (1024, 768)
    log = tmp_path / "cam.bin"
    sample = sample_events(photo)
    with LogWriter(log) as w:
        for _ in range(3):
            for e in sample:
                w.write(e.SerializeToString())
    code, out = info_json(capsys, log)
    assert code == 0
    assert out["records"] == 3 * len(events.KINDS)
    assert set(out["kinds"]) == set(events.KINDS) and all(v["count"] == 3 for v in out["kinds"].values())
    image_bytes = len(next(e for e in sample if events.kind(e) == "image").SerializeToString())
    assert out["images"] == {"count": 3, "mean_bytes": image_bytes, "width": 1024, "height": 768}
    stamps = [events.timestamp(e) for e in sample if events.timestamp(e) is not None]
    assert out["start"] == pytest.approx(min(stamps)) and out["end"] == pytest.approx(max(stamps))
    main(["info", str(log)])
    text = capsys.readouterr().out
    assert "images: 3 frames" in text and "first frame 1024x768" in text


def test_truncated_log_is_reported_and_exit_0(upstream_log: Path, tmp_path: Path, capsys) -> None:
    data = upstream_log.read_bytes()
    log = tmp_path / "cut.bin"
    log.write_bytes(data[:-100])
    last = list(LogReader(upstream_log))[-1]
    code, out = info_json(capsys, log)
    assert code == 0
    assert out["records"] == 248
    assert out["truncated"] == {"offset": last.offset, "missing_bytes": 100}
    assert out["trailing_bytes"] == len(data) - 100 - last.offset
    main(["info", str(log)])
    assert "TRUNCATED" in capsys.readouterr().out


def test_corrupt_log_exit_1_with_offset(upstream_log: Path, tmp_path: Path, capsys) -> None:
    records = list(LogReader(upstream_log))
    data = bytearray(upstream_log.read_bytes())
    bad = records[10].offset
    data[bad : bad + 4] = struct.pack("<I", 0xFFFFFFF0)  # an absurd length prefix
    log = tmp_path / "bad.bin"
    log.write_bytes(bytes(data))
    code, out = info_json(capsys, log)
    assert code == 1
    assert out["records"] == 10 and out["corrupt"]["offset"] == bad
    assert out["trailing_bytes"] == len(data) - bad


def test_several_logs_give_a_list_and_unreadable_exit_1(upstream_log: Path, tmp_path: Path, capsys) -> None:
    code, out = info_json(capsys, upstream_log, tmp_path / "missing.bin", tmp_path)
    assert code == 1
    assert isinstance(out, list) and len(out) == 3
    assert out[0]["records"] == 249
    assert out[1] == {"path": str(tmp_path / "missing.bin"), "error": "No such file or directory"}
    assert "error" in out[2]


def test_empty_and_garbage_records(tmp_path: Path, capsys) -> None:
    log = tmp_path / "odd.bin"
    with LogWriter(log) as w:
        w.write(b"")
        w.write(b"\xff\xff garbage")
    code, out = info_json(capsys, log)
    assert code == 0
    assert out["records"] == 2 and out["kinds"] == {"unknown": {"count": 2, "bytes": 10}}
    assert out["start"] is None and out["end"] is None
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    code, out = info_json(capsys, empty)
    assert code == 0 and out["records"] == 0 and out["kinds"] == {}


def test_span_follows_the_recorders_clock_rule(tmp_path: Path, capsys) -> None:
    """One damaged timestamp (a valid date, centuries off) does not stretch `info`'s span, nor the
    span recovery writes for a partial segment: both use the recorder's own clock rule."""
    from autorec.io.recovery import summarize

    t0 = 1_795_520_000.0
    times = [t0 + i for i in range(10)]
    times[4] = 16_725_225_600.0  # year 2500: one damaged record
    log = tmp_path / "span.bin"
    with LogWriter(log) as w:
        for t in times:
            w.write(build.hv(t, 100.0).SerializeToString())
    assert main(["info", "--json", str(log)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["start"], info["end"]) == (t0, t0 + 9)
    summary = summarize(log)
    assert (summary.start, summary.end) == (t0, t0 + 9)
