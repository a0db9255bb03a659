"""The night model (`autorec.report.night`), `autorec ls` and `autorec info DIR` on real and damaged directories."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from autorec.cli import main
from autorec.io.logfile import LogWriter
from autorec.report.night import load_night, parse_when, read_journal
from autorec.services.journal import JournalFile


def make_segment(directory: Path, name: str, start: float, end: float, rules=("r",), records: int = 1, **sidecar):
    """A closed segment as the writer leaves it: NAME.bin, NAME.json and its index line."""
    with LogWriter(directory / f"{name}.bin") as w:
        for _ in range(records):
            w.write(b"\x52\x00")  # an empty device_info
    side = {
        "version": 1,
        "autorec": "0.1.0",
        "name": name,
        "path": f"{name}.bin",
        "start": start,
        "end": end,
        "rules": list(rules),
        "firings": [{"rule": rules[0], "time": start + 1, "evidence": {"pins": [3]}}],
        "records": records,
        "bytes": 6 * records,
        "close_reason": "post_roll",
    }
    side.update(sidecar)
    (directory / f"{name}.json").write_text(json.dumps(side))
    line = {k: side[k] for k in ("name", "start", "end", "rules", "records", "bytes", "close_reason")}
    line.update(path=f"{name}.bin", sidecar=f"{name}.json", part=1, recovered=False, gaps=0, dropped=0)
    with open(directory / "index.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


def test_a_healthy_directory_lists_in_time_order(tmp_path: Path, capsys):
    make_segment(tmp_path, "b", 2000.0, 2030.0, rules=("motion",))
    make_segment(tmp_path, "a", 1000.0, 1010.5, rules=("electrodes", "motion"))
    night = load_night(tmp_path)
    assert [s.name for s in night.segments] == ["a", "b"]
    assert night.problems == []
    assert night.segments_per_rule() == {"electrodes": 1, "motion": 2}
    assert main(["ls", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 segment(s)" in out and "electrodes+motion" in out and "10.5s" in out
    assert main(["ls", str(tmp_path), "--rule", "electrodes", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in data["segments"]] == ["a"]
    assert data["segments"][0]["start_iso"].startswith("1970-01-01T00:16:40")
    assert data["totals"] == {"segments": 1, "bytes": 6, "duration_s": 10.5}
    # info DIR prints the same listing as ls
    assert main(["info", str(tmp_path), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["segments"]) == 2


def test_from_to_filters_keep_overlapping_segments(tmp_path: Path, capsys):
    make_segment(tmp_path, "a", 1000.0, 1010.0)
    make_segment(tmp_path, "b", 2000.0, 2030.0)
    make_segment(tmp_path, "c", 3000.0, 3030.0)
    assert main(["ls", str(tmp_path), "--from", "2010", "--to", "2999", "--json"]) == 0
    assert [s["name"] for s in json.loads(capsys.readouterr().out)["segments"]] == ["b"]
    assert main(["ls", str(tmp_path), "--from", "yesterday"]) == 2
    assert "not understood" in capsys.readouterr().err


def test_damaged_directory_is_read_with_every_problem_named(tmp_path: Path, capsys):
    make_segment(tmp_path, "ok", 1000.0, 1010.0)
    make_segment(tmp_path, "corrupt-sidecar", 1100.0, 1110.0)
    (tmp_path / "corrupt-sidecar.json").write_text("{ not json")
    make_segment(tmp_path, "missing-log", 1200.0, 1210.0)
    (tmp_path / "missing-log.bin").unlink()
    make_segment(tmp_path, "future", 1300.0, 1310.0, version=99)
    with open(tmp_path / "index.jsonl", "a") as f:
        f.write('{"name": "half", "start": 1\n')  # a cut-off line
        f.write(json.dumps({"name": "evil", "path": "../../etc/passwd", "start": 1, "end": 2}) + "\n")
        f.write("[1, 2]\n")
    (tmp_path / "open.bin.partial").write_bytes(b"")
    night = load_night(tmp_path)
    names = [s.name for s in night.segments]
    assert names == ["ok", "corrupt-sidecar", "missing-log", "future"]
    text = "\n".join(night.problems)
    assert "corrupt-sidecar.json: sidecar not valid JSON" in text
    assert "missing-log.bin: segment file missing" in text
    assert "sidecar version 99 is newer" in text
    assert "index.jsonl:5: not a JSON line" in text
    assert "index.jsonl:6: segment path '../../etc/passwd' is not a file name" in text
    assert "index.jsonl:7: not an index entry" in text
    assert len(night.problems) == 6
    assert not night.segments[2].exists and night.segments[3].sidecar is None
    assert [p.name for p in night.partials] == ["open.bin.partial"]
    assert main(["ls", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "[file missing]" in captured.out and "open: open.bin.partial" in captured.out
    assert captured.err.count("autorec ls: ") == 6


def test_empty_and_missing_directories(tmp_path: Path, capsys):
    assert load_night(tmp_path).segments == []
    assert main(["ls", str(tmp_path)]) == 0
    assert "no segments" in capsys.readouterr().out
    assert main(["ls", str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_info_on_a_sidecar_names_its_log(tmp_path: Path, capsys):
    make_segment(tmp_path, "seg", 1000.0, 1010.0)
    assert main(["info", str(tmp_path / "seg.json")]) == 1
    captured = capsys.readouterr()
    assert "a segment's sidecar (JSON), not a log; its log is " + str(tmp_path / "seg.bin") in captured.err
    assert "CORRUPT" not in captured.out + captured.err


def test_journal_never_follows_a_planted_symlink_and_counts_failures(tmp_path: Path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    (tmp_path / "journal.jsonl").symlink_to(target)
    journal = JournalFile(tmp_path / "journal.jsonl")
    assert not journal.append({"event": "start", "time": 1.0})
    assert journal.errors == 1
    assert target.read_text() == "keep me"


def test_journal_reader_skips_damaged_lines(tmp_path: Path):
    path = tmp_path / "journal.jsonl"
    path.write_text(
        '{"event": "start", "time": 1.5}\n{"event": "connected"\n[]\n{"event": "stats", "time": "x"}\n'
        '{"event": "stop", "time": 9}\n'
    )
    entries, problems = read_journal(path)
    assert [e["event"] for e in entries] == ["start", "stop"]
    assert [p.split(":")[-2] for p in problems] == ["2", "3", "4"]


def test_journal_figures_connections_alerts_and_seen_bytes(tmp_path: Path):
    lines = [
        {"event": "start", "time": 100, "wall": 100, "disk_free": 5000},
        {"event": "connected", "time": 101, "wall": 101},
        {"event": "alert", "time": 150, "wall": 150, "state": "raised", "key": "disk_floor", "message": "low"},
        {"event": "disconnected", "time": 200, "wall": 200},
        {"event": "connected", "time": 230, "wall": 230},
        {"event": "alert", "time": 240, "wall": 240, "state": "cleared", "key": "disk_floor", "message": "back"},
        {"event": "stop", "time": 300, "wall": 300, "messages": 10, "bytes_seen": 1000, "disk_free": 4000},
    ]
    (tmp_path / "journal.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    night = load_night(tmp_path)
    assert night.connections() == [(101, 200), (230, 300)]
    assert night.disconnections() == [(200, 230)]
    [alert] = night.alerts()
    assert (alert.key, alert.raised, alert.cleared) == ("disk_floor", 150, 240)
    assert night.seen() == (10, 1000) and night.pdrecord_bytes() == 1040
    assert night.disk() == (5000, 4000)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("1700000000", 1700000000.0),
        ("2023-11-14T22:13:20Z", 1700000000.0),
        ("2023-11-14T23:13:20+01:00", 1700000000.0),
    ],
)
def test_parse_when(text: str, want: float):
    assert parse_when(text) == want


def test_parse_when_local_and_time_of_day():
    now = dt.datetime(2026, 11, 30, 9, 0)
    assert parse_when("22:00", now=now) == dt.datetime(2026, 11, 30, 22, 0).astimezone().timestamp()
    assert parse_when("2026-11-30 22:00") == dt.datetime(2026, 11, 30, 22, 0).astimezone().timestamp()
    for bad in ("", "tomorrow", "nan", "1e300"):
        with pytest.raises(ValueError):
            parse_when(bad)


def test_near_misses_reader_keeps_good_lines_and_names_bad_ones(tmp_path: Path):
    from autorec.report.night import read_near_misses

    path = tmp_path / "near-misses.jsonl"
    good = {"rule": "cam", "start": 10.0, "end": 12.0, "peak": 0.0002, "threshold": 0.0003, "peak_time": 11.0}
    path.write_text(json.dumps(good) + '\n{"rule": "cam", "start"\n' + json.dumps({"rule": "cam", "start": 1}) + "\n")
    problems: list[str] = []
    [nm] = read_near_misses(path, problems)
    assert (nm.rule, nm.start, nm.end, nm.peak, nm.threshold) == ("cam", 10.0, 12.0, 0.0002, 0.0003)
    assert [p.split(":")[-2] for p in problems] == ["2", "3"]
