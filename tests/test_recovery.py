"""Crash recovery: partial segments cut to their last whole record, finalized, indexed, never overclaimed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from autorec import events
from autorec.dates import utc_iso
from autorec.io.logfile import LogReader, LogWriter, frame
from autorec.io.recovery import recover_directory, recover_partial, summarize
from autorec.outdir import INDEX_NAME
from tests.support.eventbuilder import device_info, hv
from tests.support.polling import wait_until

T0 = 1_763_000_000.0


def _hv(t: float, v: float = 100.0) -> bytes:
    return hv(t, v).SerializeToString()


def _device() -> bytes:
    return device_info(connected=True, serial="sim").SerializeToString()


def _write_partial(path: Path, payloads: list[bytes], tail: bytes = b"") -> None:
    with LogWriter(path) as w:
        for p in payloads:
            w.write(p)
    if tail:
        with open(path, "ab") as f:
            f.write(tail)


def _index(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / INDEX_NAME).read_text().splitlines()]


def test_summary_counts_what_the_file_holds(upstream_log, upstream_counts):
    s = summarize(upstream_log)
    assert s.records == sum(s.counts.values())
    assert s.bytes == upstream_log.stat().st_size
    assert s.cut_reason is None
    assert s.counts == upstream_counts["kinds"]
    assert s.records == upstream_counts["records"]
    assert s.start is not None and s.end is not None and s.end - s.start > 20


def test_cut_record_is_removed_and_sidecar_matches_file(tmp_path):
    payloads = [_device()] + [_hv(T0 + i * 0.5, i) for i in range(20)]
    cut = frame(_hv(T0 + 10.0))[:-5]  # the record the crash interrupted
    partial = tmp_path / "seg-0001.bin.partial"
    _write_partial(partial, payloads, cut)

    result = recover_partial(partial)
    assert result.error is None, result.error
    log = tmp_path / "seg-0001.bin"
    assert result.log == log and not partial.exists()
    assert result.cut_bytes == len(cut)
    assert [r.payload for r in LogReader(log).records()] == payloads
    reader = LogReader(log)
    list(reader.records())
    assert reader.truncated is None and reader.corrupt is None

    sidecar = json.loads((tmp_path / "seg-0001.json").read_text())
    assert sidecar["records"] == 21
    assert sidecar["bytes"] == log.stat().st_size
    assert sidecar["counts"] == {"device_info": 1, "hv_regulator": 20}
    assert sidecar["bytes_per_kind"]["device_info"] == len(payloads[0])  # payload bytes, as the writer counts
    assert sidecar["start"] == T0 and abs(sidecar["end"] - (T0 + 9.5)) < 1e-6  # the cut record's time is not claimed
    assert sidecar["recovered"] is True and sidecar["close_reason"] == "recovered"
    assert sidecar["recovery"]["cut_bytes"] == len(cut)
    assert sidecar["recovery"]["cut_reason"].startswith("truncated")
    # the times for people are computed from what the file holds, like start and end
    assert sidecar["start_iso"] == utc_iso(T0) and sidecar["end_iso"] == utc_iso(sidecar["end"])
    assert sidecar["duration_s"] == 9.5

    [line] = _index(tmp_path)
    assert line["start_iso"] == utc_iso(T0) and line["duration_s"] == 9.5
    assert line["path"] == "seg-0001.bin"
    assert line["records"] == 21 and line["recovered"] is True and line["sidecar"] == "seg-0001.json"
    assert sidecar["recovery"]["from"] == "seg-0001.bin.partial"
    assert "bin.partial" in result.message() and "21 records" in result.message()


def test_descriptive_fields_kept_content_fields_recomputed(tmp_path):
    partial = tmp_path / "seg-0002.bin.partial"
    _write_partial(partial, [_hv(T0), _hv(T0 + 1)])
    # A sidecar the writer left that claims far more than the file holds.
    (tmp_path / "seg-0002.json.partial").write_text(
        json.dumps({"rules": ["moves"], "firings": [{"rule": "moves", "time": T0}], "records": 999, "end": T0 + 500})
    )
    recover_partial(partial)
    sidecar = json.loads((tmp_path / "seg-0002.json").read_text())
    assert sidecar["rules"] == ["moves"] and sidecar["firings"][0]["rule"] == "moves"
    assert sidecar["records"] == 2 and sidecar["end"] == T0 + 1
    assert not (tmp_path / "seg-0002.json.partial").exists()
    assert _index(tmp_path)[0]["rules"] == ["moves"]


def test_corrupt_header_and_undecodable_records(tmp_path):
    partial = tmp_path / "seg-0003.bin.partial"
    good = [_hv(T0), b"\xff\xff garbage", _hv(T0 + 2)]
    _write_partial(partial, good, b"\xff\xff\xff\x7f" + b"x" * 100)  # a 2 GB length: corrupt
    result = recover_partial(partial)
    assert result.summary.records == 3 and result.summary.undecodable == 1
    assert result.summary.cut_reason.startswith("corrupt")
    assert [r.payload for r in LogReader(result.log).records()] == good  # whole records are never dropped
    assert json.loads(result.sidecar.read_text())["counts"] == {"hv_regulator": 2, "undecodable": 1}


def test_empty_partial_is_removed_and_names_never_clobber(tmp_path):
    (tmp_path / "seg-0004.bin.partial").write_bytes(b"\x10\x00")  # only a cut header
    _write_partial(tmp_path / "seg-0005.bin.partial", [_hv(T0)])
    (tmp_path / "seg-0005.bin").write_bytes(b"already here")  # must not be overwritten
    (tmp_path / "telemetry-20261124.bin").write_bytes(b"")  # the telemetry track: untouched
    results = {r.partial.name: r for r in recover_directory(tmp_path)}
    assert results["seg-0004.bin.partial"].empty and not (tmp_path / "seg-0004.bin.partial").exists()
    assert results["seg-0005.bin.partial"].log.name == "seg-0005.recovered-1.bin"
    assert (tmp_path / "seg-0005.bin").read_bytes() == b"already here"
    assert (tmp_path / "seg-0005.recovered-1.json").exists()
    assert [e["path"] for e in _index(tmp_path)] == ["seg-0005.recovered-1.bin"]
    # seg-0005.bin has no sidecar: not a segment (here not even a log), so it is never adopted.
    assert not (tmp_path / "seg-0005.json").exists()
    assert not (tmp_path / "telemetry-20261124.json").exists()
    assert recover_directory(tmp_path) == []  # nothing left to do
    assert recover_directory(tmp_path / "missing") == []


# Builds its event by hand: the child process imports autorec alone, not the tests' support package.
WRITER_SCRIPT = """
import sys
from autorec import events
from autorec.io.logfile import LogWriter
from autorec.proto import PurpleDropEvent
w = LogWriter(sys.argv[1], buffer_bytes=1)  # every record reaches the OS at once
e = PurpleDropEvent()
e.image.image_data = bytes(range(256)) * 200
i = 0
while True:
    events.set_timestamp(e, 1763000000.0 + i * 0.1)
    w.write(e.SerializeToString())
    i += 1
    if i == 50:
        print("writing", flush=True)
"""


def test_sigkilled_writer_is_recovered_whole(tmp_path):
    partial = tmp_path / "seg-0006.bin.partial"
    proc = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(partial)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    started = time.monotonic()
    [result] = recover_directory(tmp_path)
    assert result.error is None
    assert time.monotonic() - started < 30
    records = list(LogReader(result.log).records())
    assert len(records) >= 50
    for r in records:
        e = events.decode(r.payload)
        assert len(e.image.image_data) == 256 * 200
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["records"] == len(records) == sidecar["counts"]["image"]
    assert sidecar["bytes"] == result.log.stat().st_size


def test_finalized_log_missing_its_index_line_gets_it(tmp_path):
    """A crash between the writer's rename and its index append: sidecar there, index line not."""
    payloads = [_hv(T0 + i) for i in range(3)]
    _write_partial(tmp_path / "seg-0007.bin", payloads)
    (tmp_path / "seg-0007.json").write_text(json.dumps({"rules": ["moves"], "records": 99}))
    _write_partial(tmp_path / "seg-0008.bin", payloads)  # listed in the index: left alone
    (tmp_path / "seg-0008.json").write_text("{}")
    (tmp_path / INDEX_NAME).write_text(json.dumps({"path": "seg-0008.bin"}) + "\n")
    before = (tmp_path / "seg-0007.bin").read_bytes()
    [result] = recover_directory(tmp_path)
    assert result.log == tmp_path / "seg-0007.bin"
    assert (tmp_path / "seg-0007.bin").read_bytes() == before  # a finalized log is never modified
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["records"] == 3 and sidecar["rules"] == ["moves"]
    assert [e["path"] for e in _index(tmp_path)] == ["seg-0008.bin", "seg-0007.bin"]


def test_a_users_own_bin_file_is_never_adopted(tmp_path):
    """Only the writer's segments are recovered and indexed, so retention can never delete a user's file."""
    _write_partial(tmp_path / "my-copy-of-last-night.bin", [_hv(T0 + i) for i in range(3)])
    (tmp_path / "notes.bin").write_bytes(b"not a log at all")
    assert recover_directory(tmp_path) == []
    assert not (tmp_path / INDEX_NAME).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-copy-of-last-night.bin", "notes.bin"]


def test_matches_the_writers_sidecar_and_index_format(tmp_path):
    """A segment cut short by a crash recovers to the same shapes the writer produces on close."""
    from autorec.core.segmenter import CloseSegment, OpenSegment, PreRollExtent, Write
    from autorec.io import writer as writer_mod
    from autorec.triggers.base import Firing

    def segment(directory: Path):
        w = writer_mod.SegmentWriter(directory, "seg-{seq}", telemetry=False, flush_interval=0.01).start()
        firing = Firing("moved", T0, {"pins": [3]})
        w.submit([OpenSegment(1, 1, T0, "trigger", ("moved",), (firing,), (), PreRollExtent(None, None, 0, 0))])
        w.submit([Write(T0 + i, _hv(T0 + i), "hv_regulator") for i in range(10)])
        return w, firing

    done, crash = tmp_path / "done", tmp_path / "crash"
    done.mkdir()
    crash.mkdir()
    w, firing = segment(done)
    partial = done / "seg-1.bin.partial"
    wait_until(
        lambda: partial.exists() and partial.stat().st_size > 0 and len(list(LogReader(partial))) == 10,
        30,
        "the writer to flush",
    )
    image = partial.read_bytes()
    w.submit([CloseSegment(1, 1, T0, T0 + 9, "post_roll", ("moved",), (firing,), ())])
    assert w.close(30)
    (crash / "seg-1.bin.partial").write_bytes(image + image[:7])  # plus a cut record

    [result] = recover_directory(crash)
    normal = json.loads((done / "seg-1.json").read_text())
    recovered = json.loads(result.sidecar.read_text())
    assert set(normal) <= set(recovered)
    assert set(recovered) - set(normal) == {"recovery"}
    for key in ("records", "bytes", "counts", "bytes_per_kind", "start", "end"):
        assert recovered[key] == normal[key], key
    assert list(recovered)[:-1] == list(normal)  # same keys in the same order, plus `recovery`
    [normal_line] = _index(done)
    [recovered_line] = _index(crash)
    assert list(normal_line) == list(recovered_line)
    assert '"recovered":true' in (crash / INDEX_NAME).read_text()  # the writer's compact form
    assert recovered_line["recovered"] is True and normal_line["recovered"] is False


def test_sigkilled_autorec_run_leaves_a_recoverable_partial(tmp_path):
    """Against the real recorder and simulator: SIGKILL mid-segment, then recover: every record whole."""
    rules = Path(__file__).resolve().parent.parent / "rules" / "electrodes.yaml"
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "autorec", "run", "--rules", str(rules), "--sim", "--speed", "20"]
    cmd += ["--duration", "30min", "--out", str(out), "--no-telemetry"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def half_written() -> bool:
            assert proc.poll() is None, "recorder exited before a segment was half written"
            partials = list(out.glob("*.bin.partial")) if out.exists() else []
            return bool(partials) and partials[0].stat().st_size > 2_000_000

        wait_until(half_written, 90, "a segment being written")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    closed_before = {p.name: p.stat().st_size for p in out.glob("*.bin")}
    results = recover_directory(out)
    assert results and all(r.error is None for r in results)
    for r in results:
        reader = LogReader(r.log)
        kinds: dict[str, int] = {}
        for _, event in reader.events():
            kinds[events.kind(event)] = kinds.get(events.kind(event), 0) + 1
        assert reader.truncated is None and reader.corrupt is None and reader.undecodable == 0
        sidecar = json.loads(r.sidecar.read_text())
        assert sidecar["counts"] == kinds and sidecar["recovered"] is True
        assert sidecar["bytes"] == r.log.stat().st_size
    # Segments closed before the kill are untouched.
    for name, size in closed_before.items():
        assert (out / name).stat().st_size == size
    assert {e["path"] for e in _index(out) if e["recovered"]} == {r.log.name for r in results}
