"""ExportQueue: segments exported to video in a background child process, never blocking the caller."""

from __future__ import annotations

import time

import pytest

from autorec.media import video
from autorec.services.exportqueue import ExportQueue
from tests.support.videolog import T0, decoded_times, frames_log, make_jpeg, sensor_event, write_log


def test_submitted_logs_are_exported_in_the_background(tmp_path):
    a = frames_log(tmp_path / "seg-1.bin", [T0 + i * 0.1 for i in range(5)])
    b = frames_log(tmp_path / "seg-2.bin", [T0 + i * 0.2 for i in range(3)])
    telemetry = write_log(tmp_path / "telemetry.bin", [sensor_event(T0)])
    seen = []
    q = ExportQueue("h264", on_done=seen.append)
    began = time.monotonic()
    for log in (a, b, telemetry):
        q.submit(log)
    submit_seconds = time.monotonic() - began
    # a child process takes far longer than this to even start: the caller did not wait for it
    assert q.pending >= 2, f"submit returned after {submit_seconds:.3f} s with the jobs already done"
    assert q.close(grace=90)
    assert (q.exported, q.skipped, q.failed, q.dropped) == (2, 1, 0, 0)
    assert [o.status for o in seen] == ["exported", "exported", "skipped"]
    times, _, _ = decoded_times(tmp_path / "seg-1.mp4")
    assert times == pytest.approx([i * 0.1 for i in range(5)], abs=0.001)
    assert not (tmp_path / "telemetry.mp4").exists()


def test_copy_mode_into_out_dir_and_failure_is_reported(tmp_path):
    good = frames_log(tmp_path / "seg.bin", [T0, T0 + 0.1], [make_jpeg(1), make_jpeg(2)])
    bad = frames_log(tmp_path / "bad.bin", [T0], [b"\xff\xd8 not really"])
    out = tmp_path / "videos"
    out.mkdir()
    q = ExportQueue("copy", out_dir=out)
    q.submit(good)
    q.submit(bad)
    q.submit(tmp_path / "missing.bin")
    assert not q.close(grace=90)
    assert (out / "seg.mkv").is_file()
    statuses = {o.log.name: (o.status, o.message) for o in q.outcomes}
    assert statuses["seg.bin"][0] == "exported"
    assert statuses["bad.bin"] == ("failed", f"{bad}: no exportable camera frames (1 images: 1 corrupt)")
    assert statuses["missing.bin"][0] == "failed"
    assert not list(out.glob("*.partial"))


def test_close_after_grace_kills_the_export_and_leaves_no_file(tmp_path):
    jpegs = [make_jpeg(i, 640, 480) for i in range(4)]
    n = 600
    big = frames_log(tmp_path / "big.bin", [T0 + i * 0.1 for i in range(n)], [jpegs[i % 4] for i in range(n)])
    second = frames_log(tmp_path / "second.bin", [T0])
    q = ExportQueue("h264", preset="veryslow")
    q.submit(big)
    q.submit(second)
    began = time.monotonic()
    assert not q.close(grace=0.2)
    assert time.monotonic() - began < 15
    assert [o.status for o in q.outcomes] == ["failed", "dropped"]
    assert q.outcomes[0].message == "killed at shutdown"
    assert not (tmp_path / "big.mp4").exists()
    assert not video.partial_path(tmp_path / "big.mp4").exists()
    q.submit(second)  # after close: dropped, never raises
    assert q.dropped == 2


def test_off_does_nothing_and_bad_mode_is_refused(tmp_path):
    log = frames_log(tmp_path / "seg.bin", [T0])
    q = ExportQueue("off")
    q.submit(log)
    assert q.pending == 0 and q.close(grace=0)
    assert not (tmp_path / "seg.mp4").exists()
    with pytest.raises(ValueError, match="h264, copy, off"):
        ExportQueue("mpeg2")  # type: ignore[arg-type]


def test_export_works_from_a_directory_holding_a_folder_named_autorec(tmp_path, monkeypatch):
    # Started from the folder that holds the clone, `python -m autorec` would import the clone's
    # top folder (or any `autorec` folder there) instead of the installed package.
    shadow = tmp_path / "cwd" / "autorec"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")  # no __version__, no cli: the child would fail to import
    monkeypatch.chdir(shadow.parent)
    log = frames_log(tmp_path / "seg.bin", [T0, T0 + 0.1])
    q = ExportQueue("copy")
    q.submit(log)
    assert q.close(grace=90), [o.message for o in q.outcomes]
    assert [o.status for o in q.outcomes] == ["exported"]
    assert (tmp_path / "seg.mkv").is_file()
