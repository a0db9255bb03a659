"""One way to append: every file of the output directory is written through the same careful helper.

A link or a FIFO planted under the name of every kind of file the directory holds is refused (the target
outside stays byte for byte as it was, and no write ever blocks); a score-track member cut short (a full
disk, a crash) is cut back, so gzip readers read the whole track; a daily file deleted or replaced while
a run writes it is started again under its name; a near-miss flood is thinned; a failing write is one
log line a minute, not one per write.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autorec.core.scores import NearMiss, ScoreRow
from autorec.io import dailytrack as dailytrack_module
from autorec.io.atomicfile import NotRegularFile, SymlinkRefused, append_bytes, append_json_line, write_json
from autorec.io.dailytrack import DailyTrack
from autorec.io.logfile import LogReader, LogWriter
from autorec.io.scorelog import ScoreLog
from autorec.outdir import TELEMETRY_PREFIX
from autorec.services.journal import JournalFile
from tests.support.polling import wait_until
from tests.test_enospc import small_disk  # noqa: F401  (a real 2 MB tmpfs; skipped without root)

PRECIOUS = b"precious data outside the output directory\n"
T0 = 1_795_520_000.0  # 2026-11-24 UTC


def rows(second: float, n: int, rule: str = "el") -> list[ScoreRow]:
    return [ScoreRow(int(second) + i, rule, 0.5 + i % 7 / 10, 1.0) for i in range(n)]


def read_track(path: Path) -> list[list[str]]:
    with gzip.open(path, "rt") as f:
        return [line.rstrip("\n").split(",") for line in f if not line.startswith("time,")]


def plant_link(link: Path, outside: Path) -> Path:
    target = outside / f"target-{link.name}"
    target.write_bytes(PRECIOUS)
    link.symlink_to(target)
    return target


def test_the_append_helper_refuses_links_fifos_and_devices(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = plant_link(tmp_path / "link", outside)
    os.mkfifo(tmp_path / "fifo")
    for path, error in ((tmp_path / "link", SymlinkRefused), (tmp_path / "fifo", NotRegularFile)):
        began = time.monotonic()
        with pytest.raises(error):
            append_bytes(path, b"x")
        with pytest.raises(error):
            append_json_line(path, {"a": 1})
        with pytest.raises(error):
            LogWriter(path, mode="append")
        assert time.monotonic() - began < 2  # a FIFO without a reader never blocks the open
    with pytest.raises(NotRegularFile):
        append_bytes("/dev/null", b"x")
    with pytest.raises(OSError):
        append_bytes(tmp_path, b"x")  # a directory
    assert target.read_bytes() == PRECIOUS


def test_a_line_cut_by_a_crash_is_never_glued_to_the_next(tmp_path: Path):
    path = tmp_path / "index.jsonl"
    path.write_bytes(b'{"name": "a"}\n{"name": "b", "sta')
    append_json_line(path, {"name": "c", "start": float("nan"), "x": [float("inf"), 1.5]})
    lines = path.read_text().splitlines()
    assert lines[1] == '{"name": "b", "sta'
    assert json.loads(lines[2]) == {"name": "c", "start": None, "x": [None, 1.5]}  # no NaN or Infinity written
    write_json(tmp_path / "s.json", {"t": float("-inf")})
    assert json.loads((tmp_path / "s.json").read_text()) == {"t": None}


def _today_names() -> list[str]:
    days = {(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=d)).strftime("%Y%m%d") for d in (-1, 0, 1)}
    out = []
    for day in sorted(days):
        out += [f"telemetry-{day}.bin", f"timelapse-{day}.bin", f"scores-{day}.csv.gz"]
    return out


SIM_RULES = """
output:
  telemetry: true
  timelapse: 2s
  status_file: status.json
segments:
  pre_roll: 2s
  post_roll: 3s
rules:
  - name: electrodes
    trigger: electrodes
  - name: too-hot
    trigger: threshold
    field: temperature_control.temperatures[0]
    above: 30
"""


@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_a_run_writes_through_no_planted_link_or_fifo_of_any_kind(tmp_path: Path, kind: str):
    """Every name a run writes or appends to, planted as a link to a precious file outside (or as a FIFO):
    the run finishes (exit 0, within its time), the files outside are untouched, and the refusals are named."""
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    names = ["index.jsonl", "journal.jsonl", "status.json", ".status.json.tmp", "near-misses.jsonl", *_today_names()]
    targets = []
    for name in names:
        if kind == "link":
            targets.append(plant_link(out / name, outside))
        else:
            os.mkfifo(out / name)
    rules = tmp_path / "rules.yaml"
    rules.write_text(SIM_RULES)
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "autorec", "run", "--rules", str(rules), "--sim", "--speed", "30"),
            *("--duration", "60s", "--fps", "5", "--seed", "2", "--out", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(t.read_bytes() == PRECIOUS for t in targets)
    assert sorted(p.name for p in outside.iterdir()) == sorted(t.name for t in targets)
    word = "symbolic link" if kind == "link" else "not a regular file"
    assert word in proc.stderr
    assert "Traceback" not in proc.stderr
    # segments were still written, each whole, beside the refused names
    segments = [p for p in out.glob("*.bin") if not p.name.startswith(("telemetry-", "timelapse-"))]
    assert segments
    for seg in segments:
        reader = LogReader(seg)
        assert sum(1 for _ in reader) > 0 and reader.truncated is None and reader.corrupt is None


def test_a_damaged_last_gzip_member_is_cut_before_appending(tmp_path: Path, caplog):
    log = ScoreLog(tmp_path, flush_interval=3600)
    log.score_rows(rows(T0, 50))
    assert log.close()
    path = next(tmp_path.glob("scores-*.csv.gz"))
    whole = path.read_bytes()
    member = gzip.compress(b"".join(f"{T0 + 100 + i},el,0.9,1\n".encode() for i in range(500)), mtime=0)
    path.write_bytes(whole + member[: len(member) // 2])  # a flush cut short (before this check existed)
    with pytest.raises(EOFError):
        read_track(path)
    with caplog.at_level(logging.WARNING):
        log = ScoreLog(tmp_path, flush_interval=3600)
        log.score_rows(rows(T0 + 1000, 30))
        assert log.close()
    assert log.tails_cut == 1 and "damaged last gzip member" in caplog.text
    got = read_track(path)
    assert len(got) == 80 and got[0][0] == str(int(T0)) and got[-1][0] == str(int(T0 + 1029))


def test_a_full_disk_leaves_no_partial_gzip_member(small_disk: Path):  # noqa: F811
    d = small_disk
    log = ScoreLog(d, flush_interval=3600)
    log.score_rows(rows(T0, 100))
    assert log.close()
    path = next(d.glob("scores-*.csv.gz"))
    before = path.read_bytes()
    filler = d / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, os.urandom(4096))
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - 6000))  # a few kB free: the next member does not fit
    log = ScoreLog(d, flush_interval=3600)
    # incompressible rule names make a member of ~40 kB
    log.score_rows([ScoreRow(int(T0) + 200 + i, os.urandom(16).hex(), 0.5, 1.0) for i in range(1000)])
    assert log.close()
    assert log.errors >= 1 and log.rows_written == 0
    assert path.read_bytes() == before  # cut back: gzip readers read the file as before
    assert len(read_track(path)) == 100
    filler.unlink()
    log = ScoreLog(d, flush_interval=3600)
    log.score_rows(rows(T0 + 5000, 10))
    assert log.close()
    assert len(read_track(path)) == 110


def test_a_daily_file_deleted_or_replaced_while_written_is_started_again(tmp_path: Path, monkeypatch, caplog):
    monkeypatch.setattr(dailytrack_module, "CHECK_EVERY", 0.0)
    track = DailyTrack(tmp_path, TELEMETRY_PREFIX)
    for i in range(10):
        track.write(T0 + i, b"record-%d" % i)
    track.flush()
    path = track.path
    assert path is not None and sum(1 for _ in LogReader(path)) == 10
    path.unlink()  # a cleanup script
    with caplog.at_level(logging.WARNING):
        for i in range(10, 15):
            track.write(T0 + i, b"record-%d" % i)
        track.flush()
    assert path.exists() and [r.payload for r in LogReader(path)] == [b"record-%d" % i for i in range(10, 15)]
    assert "deleted or replaced" in caplog.text and track.reopened == 1
    # replaced by another file (a user's copy moved over it): the new file is appended to, not the old inode
    other = tmp_path / "other.bin"
    with LogWriter(other) as w:
        w.write(b"theirs")
    os.replace(other, path)
    track.write(T0 + 20, b"record-20")
    track.flush()
    track.close()
    assert [r.payload for r in LogReader(path)] == [b"theirs", b"record-20"]
    assert track.reopened == 2 and track.dropped == 0


def test_a_near_miss_flood_is_thinned_per_rule_and_hour(tmp_path: Path):
    log = ScoreLog(tmp_path, flush_interval=3600)
    flood = [NearMiss("noisy", T0 + i, T0 + i + 0.5, 0.9, 1.0, T0 + i) for i in range(3000)]  # one per second
    log.near_misses([*flood, NearMiss("quiet", T0 + 5, T0 + 6, 0.8, 1.0, T0 + 5)])
    assert log.close()
    lines = [json.loads(line) for line in (tmp_path / "near-misses.jsonl").read_text().splitlines()]
    noisy = [e for e in lines if e["rule"] == "noisy"]
    # 3000 s span the hour starting at T0's hour and the next: at most 60 in each
    hours = {int(e["start"] // 3600) for e in noisy}
    assert len(noisy) == 60 * len(hours) and len(hours) == 2
    assert any(e["rule"] == "quiet" for e in lines)
    assert log.near_misses_thinned == 3000 - len(noisy)


def test_a_repeated_write_error_is_one_log_line_a_minute(tmp_path: Path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    (out / "journal.jsonl").mkdir()  # every append fails
    os.mkfifo(out / "near-misses.jsonl")
    journal = JournalFile(out / "journal.jsonl")
    with caplog.at_level(logging.INFO):
        for i in range(200):
            journal.append({"event": "stats", "time": T0 + i})
        log = ScoreLog(out, flush_interval=3600)
        for i in range(200):
            log.near_misses([NearMiss("r", T0 + i * 4000, T0 + i * 4000 + 1, 0.9, 1.0, T0 + i * 4000)])
        assert log.close()
    assert journal.errors == 200 and log.errors == 200
    assert caplog.text.count("journal: cannot append") == 1
    assert len([r for r in caplog.records if r.name == "autorec.io.scorelog"]) == 1


def test_a_journal_and_near_misses_that_work_again_say_so_once(tmp_path: Path, caplog):
    """A directory in each file's place (every append fails), then taken away: one ERROR, one INFO each."""
    out = tmp_path / "out"
    (out / "journal.jsonl").mkdir(parents=True)
    (out / "near-misses.jsonl").mkdir()
    journal = JournalFile(out / "journal.jsonl")
    log = ScoreLog(out, flush_interval=3600)
    near = [NearMiss("r", T0 + i * 4000, T0 + i * 4000 + 1, 0.9, 1.0, T0 + i * 4000) for i in range(6)]
    with caplog.at_level(logging.INFO):
        for i in range(3):
            journal.append({"event": "stats", "time": T0 + i})
            log.near_misses(near[i : i + 1])
        wait_until(lambda: log.errors == 3, 10, "the score log's thread to fail the three near-misses")
        (out / "journal.jsonl").rmdir()
        (out / "near-misses.jsonl").rmdir()
        for i in range(3, 6):
            journal.append({"event": "stats", "time": T0 + i})
            log.near_misses(near[i : i + 1])
        assert log.close()
    lines = [f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.name.startswith("autorec.")]
    assert [line.split(" ")[0] for line in lines if line.split(" ")[1] == "journal:"] == ["ERROR", "INFO"], lines
    assert f"INFO journal: writing to {out / 'journal.jsonl'} works again (3 failed so far)" in lines
    assert journal.errors == 3 and journal.lines == 3 and log.near_misses_written == 3
    assert next(line for line in lines if line.split(" ")[1] == "near-misses").startswith("ERROR "), lines
    assert f"INFO writing to {out / 'near-misses.jsonl'} works again (3 write error(s) so far)" in lines
    assert len(lines) == 4, lines


def test_the_writer_logs_one_kind_of_error_once_a_minute(tmp_path: Path, caplog):
    """The index cannot be appended to (a directory in its place): every segment's close fails the same
    way; the writer counts each and logs the first, not one line per segment."""
    from autorec.core.pipeline import Pipeline
    from autorec.io.writer import SegmentWriter
    from autorec.rules import load_rules
    from autorec.runs.dispatch import Dispatcher
    from tests.support.eventbuilder import message, payload

    d = tmp_path / "out"
    d.mkdir()
    (d / "index.jsonl").mkdir()
    rules = tmp_path / "r.yaml"
    rules.write_text("rules:\n  - name: el\n    trigger: electrodes\n    post_roll: 2s\n")
    writer = SegmentWriter(d, "seg-{seq}").start()
    pipe = Dispatcher(Pipeline(load_rules(rules), offline=True), writer)
    for i in range(400):
        t = T0 + i * 0.25
        for p in (payload("scan_capacitance", t, i),) + (
            (payload("electrode_state", None, (i // 40) % 7 + 1),) if i % 40 == 5 else ()
        ):
            pipe.message(message(p))

    pipe.finish()
    with caplog.at_level(logging.ERROR):
        assert writer.close(10)
    assert writer.stats.segments >= 5 and writer.stats.errors >= 5
    lines = [r for r in caplog.records if r.name == "autorec.io.writer" and "index.jsonl" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
