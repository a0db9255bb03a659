"""`autorec video`: real PyAV round trips (JPEGs with known timestamps -> log -> export -> decode)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.frame import PictureType

from autorec.cli import main
from autorec.media import video
from tests.support import eventbuilder as build
from tests.support.polling import wait_until
from tests.support.videolog import (
    T0,
    decoded_times,
    frames_log,
    image_event,
    make_jpeg,
    packet_payloads,
    sensor_event,
    transform_event,
    write_log,
)

MODES = ("h264", "copy")


def export(log: Path, mode: str = "h264", **kw) -> video.ExportResult:
    return video.export(log, None, video.ExportOptions(mode=mode, **kw))


def assert_times(got: list[float], want_log_times: list[float]) -> None:
    want = [t - want_log_times[0] for t in want_log_times]
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert abs(g - w) <= 0.001, f"frame {i}: {g:.6f} s in the file, {w:.6f} s in the log"


@pytest.mark.parametrize("mode", MODES)
def test_round_trip_regular_frames_keep_their_times(tmp_path, mode):
    times = [T0 + i * 0.1 for i in range(12)]
    log = frames_log(tmp_path / "cam.bin", times)
    result = export(log, mode)
    assert result.output == tmp_path / f"cam{video.SUFFIX[mode]}"
    assert result.frames == 12 and result.corrupt == 0
    got, duration, size = decoded_times(result.output)
    assert_times(got, times)
    assert size == (320, 240)
    assert duration == pytest.approx(times[-1] - times[0] + 0.1, abs=0.002)
    assert result.duration == pytest.approx(1.2, abs=0.002)
    assert not video.partial_path(result.output).exists()


def test_h264_keeps_the_cameras_brightness_and_contrast(tmp_path):
    # JPEGs are full range: a range mix-up would lift blacks and dim whites by ~10 levels
    jpegs = [make_jpeg(i) for i in range(3)]
    log = frames_log(tmp_path / "levels.bin", [T0, T0 + 0.1, T0 + 0.2], jpegs)
    result = export(log)
    with av.open(str(result.output)) as c:
        decoded = [f.to_ndarray(format="rgb24").astype(float) for f in c.decode(video=0)]
    for jpeg, picture in zip(jpegs, decoded):
        ctx = av.CodecContext.create("mjpeg", "r")
        source = ctx.decode(av.Packet(jpeg))[0].to_ndarray(format="rgb24").astype(float)
        assert abs(picture.mean() - source.mean()) < 1.5
        assert abs(picture.std() - source.std()) < 1.5


@pytest.mark.parametrize("mode", MODES)
def test_irregular_intervals_and_camera_stall_keep_true_timing(tmp_path, mode):
    deltas = [0.1, 0.07, 0.13, 0.1, 0.25, 0.1, 3.0, 0.1, 0.05, 0.15, 0.1]  # a 3 s stall in the middle
    times = [T0]
    for d in deltas:
        times.append(times[-1] + d)
    log = frames_log(tmp_path / "irregular.bin", times)
    result = export(log, mode)
    got, duration, _ = decoded_times(result.output)
    assert_times(got, times)
    # the last frame lasts one typical interval (the median), not the stall
    assert duration == pytest.approx(times[-1] - times[0] + 0.1, abs=0.002)


def test_copy_mode_is_bit_exact_per_frame(tmp_path):
    jpegs = [make_jpeg(i) for i in range(6)]
    times = [T0 + i * 0.2 for i in range(6)]
    log = frames_log(tmp_path / "exact.bin", times, jpegs)
    result = export(log, "copy")
    packets = packet_payloads(result.output)
    assert [p for _, p in packets] == jpegs
    assert_times([t for t, _ in packets], times)


@pytest.mark.parametrize("mode", MODES)
def test_corrupt_frames_are_skipped_and_counted(tmp_path, mode):
    good = make_jpeg(1)
    truncated = good[: len(good) // 2]
    garbage = b"\x00\x01not a jpeg at all" * 50
    jpegs = [good, garbage, make_jpeg(2), truncated, make_jpeg(3)]
    times = [T0 + i * 0.1 for i in range(5)]
    log = frames_log(tmp_path / "corrupt.bin", times, jpegs)
    result = export(log, mode)
    assert result.corrupt == 2
    assert result.frames == 3
    got, _, _ = decoded_times(result.output)
    assert_times(got, [times[0], times[2], times[4]])
    assert "2 corrupt frames skipped" in result.summary()


def test_a_corrupt_first_frame_does_not_stop_the_export(tmp_path):
    times = [T0 + i * 0.1 for i in range(4)]
    log = frames_log(tmp_path / "bad-first.bin", times, [b"\xff\xd8junk", make_jpeg(1), make_jpeg(2), make_jpeg(3)])
    result = export(log)
    assert (result.frames, result.corrupt) == (3, 1)


@pytest.mark.parametrize("mode", MODES)
def test_log_without_frames_is_a_clear_error_and_leaves_no_file(tmp_path, mode):
    log = write_log(tmp_path / "telemetry.bin", [sensor_event(T0 + i) for i in range(5)])
    with pytest.raises(video.ExportError, match="no camera frames"):
        export(log, mode)
    assert list(tmp_path.iterdir()) == [log]
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(video.ExportError, match="no camera frames"):
        export(empty, mode)


def test_cli_log_without_frames_exits_1_with_message(tmp_path, capsys):
    log = write_log(tmp_path / "telemetry.bin", [sensor_event(T0)])
    assert main(["video", str(log)]) == 1
    assert "no camera frames" in capsys.readouterr().err


def test_frames_without_timestamp_get_the_carried_forward_time(tmp_path):
    jpegs = [make_jpeg(i) for i in range(4)]
    payloads = [
        image_event(jpegs[0], T0),
        sensor_event(T0 + 0.4),
        image_event(jpegs[1], None),  # takes T0 + 0.4
        image_event(jpegs[2], T0 + 0.9),
        image_event(jpegs[3], None),  # nothing since: carried T0 + 0.9, nudged 1 ms later
    ]
    log = write_log(tmp_path / "untimed.bin", payloads)
    result = export(log, "copy")
    got = [t for t, _ in packet_payloads(result.output)]
    assert got == pytest.approx([0.0, 0.4, 0.9, 0.901], abs=0.0011)
    assert result.selection.no_timestamp == 2


def test_snapshot_image_at_segment_start_is_not_a_frame(tmp_path):
    start = T0 - 1.0
    layout = build.electrode_layout(start, "{}")
    snapshot = [
        layout.SerializeToString(),
        transform_event(start),
        sensor_event(start),
        image_event(make_jpeg(9), start),
    ]
    times = [T0 + i * 0.1 for i in range(3)]
    live = [image_event(make_jpeg(i), t) for i, t in enumerate(times)]
    log = write_log(tmp_path / "segment.bin", snapshot + live)
    result = export(log, "copy")
    assert result.selection.snapshot == 1
    assert_times([t for t, _ in packet_payloads(result.output)], times)

    # the same records with the sidecar's declared snapshot extent
    (tmp_path / "segment.json").write_text(json.dumps({"snapshot": {"records": 4, "items": []}}))
    assert video.snapshot_records_from_sidecar(log) == 4
    assert export(log, "copy").frames == 3


def test_pdserver_like_start_is_not_mistaken_for_a_snapshot(tmp_path):
    # image_transform + image stamped alike at the start of a plain log: a real frame
    payloads = [transform_event(T0), image_event(make_jpeg(0), T0), sensor_event(T0 + 0.05)]
    payloads += [transform_event(T0 + 0.1), image_event(make_jpeg(1), T0 + 0.1)]
    log = write_log(tmp_path / "plain.bin", payloads)
    assert export(log, "copy").frames == 2


def test_resolution_change_is_scaled_to_the_first_size(tmp_path):
    jpegs = [make_jpeg(0), make_jpeg(1, 160, 120), make_jpeg(2, 330, 250), make_jpeg(3)]
    times = [T0 + i * 0.1 for i in range(4)]
    log = frames_log(tmp_path / "sizes.bin", times, jpegs)
    result = export(log)
    assert (result.frames, result.rescaled) == (4, 2)
    got, _, size = decoded_times(result.output)
    assert size == (320, 240)
    assert_times(got, times)


@pytest.mark.parametrize("mode", MODES)
def test_start_and_end_select_frames_by_log_time(tmp_path, mode):
    times = [T0 + i * 0.5 for i in range(10)]  # 0 .. 4.5 s
    log = frames_log(tmp_path / "range.bin", times)
    result = export(log, mode, start=video.TimeRef.parse("1s"), end=video.TimeRef.parse("2.9"))
    got, _, _ = decoded_times(result.output)
    assert_times(got, times[2:6])
    absolute = video.TimeRef(times[7], absolute=True)
    assert export(log, mode, start=absolute).frames == 3


def test_time_ref_parses_durations_and_iso_times():
    assert video.TimeRef.parse("90") == video.TimeRef(90.0)
    assert video.TimeRef.parse("5min") == video.TimeRef(300.0)
    assert video.TimeRef.parse("2026-09-21T12:00:00Z") == video.TimeRef(1789992000.0, absolute=True)
    with pytest.raises(ValueError, match="ISO time"):
        video.TimeRef.parse("yesterday")


def test_timestamp_overlay_is_burned_into_frames(tmp_path):
    times = [T0 + i * 0.1 for i in range(3)]
    log = frames_log(tmp_path / "ts.bin", times)
    plain = video.export(log, tmp_path / "plain.mp4")
    stamped = video.export(log, tmp_path / "stamped.mp4", video.ExportOptions(timestamp=True))

    def corner(path: Path):
        with av.open(str(path)) as c:
            return next(c.decode(video=0)).to_ndarray(format="gray")[:20, :100].astype(int)

    a, b = corner(plain.output), corner(stamped.output)
    assert abs(a - b).mean() > 20  # text pixels differ a lot from the flat picture
    assert b.max() > 200 and b.min() < 40  # white glyphs on a black box


@pytest.mark.parametrize("mode", MODES)
def test_fixed_playback_rate_spaces_frames_evenly_whatever_their_times(tmp_path, mode):
    # A timelapse: frames 30 s apart (one 5 min camera stall) become a 10 fps movie.
    times = [T0, T0 + 30, T0 + 60, T0 + 360, T0 + 390]
    log = frames_log(tmp_path / "night.bin", times)
    result = export(log, mode, fps=10)
    got, duration, _ = decoded_times(result.output)
    assert_times(got, [i * 0.1 for i in range(5)])
    assert duration == pytest.approx(0.5, abs=0.002)
    assert result.first_time == T0 and result.last_time == T0 + 390  # the log times, for the overlay
    assert main(["video", "-q", "--fps", "10", "--timestamp", "-o", str(tmp_path / "n.mp4"), str(log)]) == 0
    assert decoded_times(tmp_path / "n.mp4")[1] == pytest.approx(0.5, abs=0.002)


def test_a_timelapse_track_plays_at_10_fps_unless_told_otherwise(tmp_path, capsys):
    """`autorec video DIR` (what a run suggests at its end) on an output directory: its timelapse
    track is not exported at true timing (a video as long as the night) but at 10 frames a second;
    `--fps` still chooses. A segment in the same directory keeps its own timing."""
    out = tmp_path / "recordings"
    out.mkdir()
    frames_log(out / "timelapse-20261207.bin", [T0 + 30 * i for i in range(20)])  # 10 min of night
    frames_log(out / "seg.bin", [T0 + 0.5 * i for i in range(5)])
    assert main(["video", str(out)]) == 0
    said = capsys.readouterr().out
    assert "a timelapse track: 10 frames a second (--fps to choose)" in said
    assert decoded_times(out / "timelapse-20261207.mp4")[1] == pytest.approx(2.0, abs=0.002)
    assert decoded_times(out / "seg.mp4")[1] == pytest.approx(2.5, abs=0.01)  # true timing
    assert main(["video", "-q", "--force", "--fps", "4", str(out / "timelapse-20261207.bin")]) == 0
    assert decoded_times(out / "timelapse-20261207.mp4")[1] == pytest.approx(5.0, abs=0.002)


def test_clock_step_back_keeps_frames_in_order():
    stats = video.SelectionStats()
    clock = video.FrameClock(stats)
    got = [clock.frame_time(t) for t in (100.0, 100.1, 100.2, 50.0, 50.1, 100.15)]
    assert got == pytest.approx([100.0, 100.1, 100.2, 100.3, 100.4, 150.45])
    assert stats.clock_steps == 1
    assert clock.frame_time(100.15) == pytest.approx(150.451)  # the same time again: nudged 1 ms
    assert stats.nudged == 1


def test_jpeg_size_reads_the_frame_header(board_photo_1, board_photo_2):
    assert video.jpeg_size(board_photo_1.read_bytes()) == (1024, 768)
    assert video.jpeg_size(board_photo_2.read_bytes()) == (1024, 768)  # progressive
    assert video.jpeg_size(make_jpeg(0, 64, 48)) == (64, 48)
    assert video.jpeg_size(b"\xff\xd8\xff\xe0") is None
    assert video.jpeg_size(b"GIF89a") is None


def test_cli_batch_directory_skips_up_to_date_and_reports_failures(tmp_path, capsys):
    logs = tmp_path / "logs"
    (logs / "night").mkdir(parents=True)
    frames_log(logs / "a.bin", [T0, T0 + 0.1])
    frames_log(logs / "night" / "b.bin", [T0, T0 + 0.2, T0 + 0.3])
    write_log(logs / "telemetry-2026-09-21.bin", [sensor_event(T0)])  # no frames: passed over
    out = tmp_path / "videos"
    assert main(["video", str(logs), "--out-dir", str(out)]) == 0
    assert (out / "a.mp4").is_file() and (out / "night" / "b.mp4").is_file()
    assert not (out / "telemetry-2026-09-21.mp4").exists()
    text = capsys.readouterr().out
    assert "2 exported, 0 up to date, 1 without camera frames passed over, 0 failed" in text

    first_mtime = (out / "a.mp4").stat().st_mtime_ns
    assert main(["video", str(logs), "--out-dir", str(out)]) == 0
    assert "0 exported, 2 up to date" in capsys.readouterr().out
    assert (out / "a.mp4").stat().st_mtime_ns == first_mtime

    bad = write_log(tmp_path / "bad.bin", [image_event(b"junk", T0)])
    assert main(["video", "--copy", str(logs / "a.bin"), str(bad), "--out-dir", str(out)]) == 1
    captured = capsys.readouterr()
    assert (out / "a.mkv").is_file()
    assert "1 exported, 0 up to date, 1 failed" in captured.err
    assert f"failed: {bad}: no exportable camera frames (1 images: 1 corrupt)" in captured.err


def test_cli_batch_of_a_directory_with_one_log_says_what_it_did(tmp_path, capsys):
    """A directory holding one log (a backtest's segment) is a batch too: a second run says the video
    is up to date, and a directory of telemetry says it was passed over (both printed nothing)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    frames_log(logs / "a.bin", [T0, T0 + 0.1])
    out = tmp_path / "videos"
    assert main(["video", str(logs), "--out-dir", str(out)]) == 0
    assert "1 exported, 0 up to date, 0 failed" in capsys.readouterr().out
    assert main(["video", str(logs), "--out-dir", str(out)]) == 0
    assert capsys.readouterr().out == "autorec video: 0 exported, 1 up to date, 0 failed\n"
    telemetry = tmp_path / "telemetry"
    telemetry.mkdir()
    write_log(telemetry / "telemetry-2026-09-21.bin", [sensor_event(T0)])
    assert main(["video", str(telemetry)]) == 0
    assert "0 exported, 0 up to date, 1 without camera frames passed over, 0 failed" in capsys.readouterr().out


def test_cli_usage_errors_exit_2(tmp_path):
    log = frames_log(tmp_path / "u.bin", [T0])
    assert main(["video", "--copy", "--timestamp", str(log)]) == 2
    assert main(["video", "--start", "yesterday", str(log)]) == 2
    assert main(["video", "--start", "10s", "--end", "5s", str(log)]) == 2  # an empty window, for every log
    assert main(["video", "--start", "2026-11-24T10:00:05Z", "--end", "2026-11-24T10:00:00Z", str(log)]) == 2
    assert main(["video", "-o", str(tmp_path / "x.mp4"), str(log), str(log)]) == 2
    assert main(["video", "--copy", "-o", str(tmp_path / "x.mp4"), str(log)]) == 2
    assert main(["video", "--crf", "99", str(log)]) == 2
    assert main(["video", "--fps", "0", str(log)]) == 2
    assert main(["video", "--fps", "nan", str(log)]) == 2


def test_killed_export_leaves_no_file_under_the_output_name(tmp_path):
    # Big enough to take a few seconds at the slowest preset, made of a few reused JPEGs.
    jpegs = [make_jpeg(i, 640, 480) for i in range(4)]
    n = 600
    log = frames_log(tmp_path / "long.bin", [T0 + i * 0.1 for i in range(n)], [jpegs[i % 4] for i in range(n)])
    out = tmp_path / "long.mp4"
    partial = video.partial_path(out)
    cmd = [sys.executable, "-m", "autorec", "video", "-q", "--preset", "veryslow", "--threads", "1", str(log)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:

        def writing() -> bool:
            assert proc.poll() is None, f"export ended before it could be killed: {proc.stderr.read()!r}"
            return partial.exists() and partial.stat().st_size > 0

        wait_until(writing, 60, "the export to start writing")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert not out.exists()
    # the next run replaces the stale partial file and completes
    result = video.export(log, out, video.ExportOptions(preset="ultrafast"))
    assert result.frames == n and out.is_file() and not partial.exists()


def test_serial_and_pooled_decoding_give_the_same_video(tmp_path):
    times = [T0 + i * 0.1 for i in range(8)]
    jpegs = [make_jpeg(i) for i in range(7)] + [b"junk"]
    log = frames_log(tmp_path / "same.bin", times, jpegs)
    serial = video.export(log, tmp_path / "serial.mp4", video.ExportOptions(decode_threads=0))
    pooled = video.export(log, tmp_path / "pooled.mp4", video.ExportOptions(decode_threads=3))
    assert (serial.frames, serial.corrupt) == (pooled.frames, pooled.corrupt) == (7, 1)
    with av.open(str(serial.output)) as a, av.open(str(pooled.output)) as b:
        for fa, fb in zip(a.decode(video=0), b.decode(video=0), strict=True):
            assert fa.pts == fb.pts
            assert (fa.to_ndarray() == fb.to_ndarray()).all()


@pytest.mark.parametrize("mode", MODES)
def test_a_damaged_frame_timestamp_does_not_stretch_the_video(tmp_path, mode):
    """The recorder's clock rule: one frame stamped centuries off is an outlier at the time before it
    (it used to open a gap cut to a 5 s still and shift every later frame)."""
    payloads = []
    for i in range(10):
        t = T0 + i * 0.1
        payloads.append(transform_event(t))
        payloads.append(image_event(make_jpeg(i), 16_725_225_600.0 if i == 5 else t))  # frame 5: year 2500
        payloads.append(sensor_event(t + 0.01))
    log = write_log(tmp_path / "damaged.bin", payloads)
    result = export(log, mode)
    got, duration, _ = decoded_times(result.output)
    assert len(got) == 10 and duration < 1.1, (got, duration)
    assert result.selection.clock_outliers == 1 and result.gaps_cut == 0
    assert "1 damaged timestamps replaced by the time before them" in result.summary()


def test_default_encoder_settings_and_x264_threads(tmp_path):
    # ultrafast at crf 28 by default, x264's own settings; the mb-tree params only with superfast
    default = video.ExportOptions()
    assert video.x264_options(default) == {"crf": "28", "preset": "ultrafast"}
    superfast = video.x264_options(video.ExportOptions(preset="superfast", crf=23))
    assert superfast["x264-params"] == video.FAST_PRESET_PARAMS
    assert "x264-params" not in video.x264_options(video.ExportOptions(preset="superfast", x264_params=""))
    assert video.default_encode_threads("ultrafast") >= 1 and video.default_encode_threads("superfast") == 0
    # Any x264 thread count (0: x264's own) gives the same frames at the same times.
    times = [T0 + i * 0.1 for i in range(6)]
    log = frames_log(tmp_path / "threads.bin", times, [make_jpeg(i) for i in range(6)])
    pts = []
    for threads in (0, 1, 3):
        out = tmp_path / f"t{threads}.mp4"
        result = video.export(log, out, video.ExportOptions(encode_threads=threads))
        assert result.frames == 6
        with av.open(str(out)) as c:
            pts.append([f.pts for f in c.decode(video=0)])
    assert pts[0] == pts[1] == pts[2] and len(pts[0]) == 6


def test_a_clock_step_back_of_seconds_keeps_the_frames_spaced():
    """The rig's clock steps back 3 s (an NTP correction) under a 10 fps camera: the footage after it
    goes on at its own pace, one step counted (not 30 frames squeezed into 1 ms nudges)."""
    from autorec.media.frametiming import FrameClock, Item, SelectionStats, select_frames

    stamps = [T0 + i * 0.1 for i in range(20)] + [T0 - 1.0 + i * 0.1 for i in range(60)]
    items = []
    for i, t in enumerate(stamps):
        items.append(Item(i, "image", t, build.image(None, b"x")))
    stats = SelectionStats()
    frames = list(select_frames(items, stats, FrameClock(stats)))
    times = [f.time - frames[0].time for f in frames]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(frames) == 80 and stats.clock_steps == 1
    assert times[-1] > 7.5 and sum(g < 0.05 for g in gaps) <= 1, (times[-1], gaps)


def test_the_video_commands_defaults_are_the_exporters():
    from autorec.commands import video as command

    assert command.DEFAULT_CRF == video.ExportOptions.crf and command.DEFAULT_PRESET == video.ExportOptions.preset


def noisy_pictures(n: int, noise: float, width: int = 320, height: int = 240) -> list[av.VideoFrame]:
    """`n` full-range 4:2:0 pictures of a still scene (a gradient with a square) under sensor noise."""
    rng = np.random.default_rng(7)
    scene = np.add.outer(np.arange(height) // 2, np.arange(width) // 3).astype(np.float32) % 200 + 20
    scene[60:120, 100:200] = 230
    pictures = []
    for _ in range(n):
        luma = np.clip(scene + rng.normal(0, noise, scene.shape), 0, 255).astype(np.uint8)
        picture = av.VideoFrame.from_ndarray(np.dstack([luma] * 3), format="rgb24").reformat(format="yuvj420p")
        picture.pict_type = PictureType.NONE
        pictures.append(picture)
    return pictures


def probed_qp(pictures: list[av.VideoFrame], crf: int) -> int | None:
    return video.crf_probe_qp(pictures, [i * 9000 for i in range(len(pictures))], video.ExportOptions(crf=crf))


def test_the_crf_probe_finds_the_qp_crf_settles_on():
    """The probed QP follows --crf and, like CRF, rises on a noisier camera (fewer bits on noise)."""
    clean = noisy_pictures(video.CRF_PROBE_FRAMES, noise=1.0)
    qps = [probed_qp(clean, crf) for crf in (18, 28, 38)]
    assert all(qp is not None and 0 <= qp <= 51 for qp in qps), qps
    assert qps[0] < qps[1] < qps[2], qps
    noisy = probed_qp(noisy_pictures(video.CRF_PROBE_FRAMES, noise=8.0), 28)
    assert noisy is not None and noisy > qps[1], (noisy, qps)
    assert probed_qp(clean[:1], 28) is None  # an I-frame alone shows no settled QP


def test_a_probed_qp_cut_at_the_probes_qp_range_gives_no_answer(monkeypatch):
    """The probe's encoder only has the QPs crf +- CRF_PROBE_RANGE: a QP at an end may have been cut."""
    clean = noisy_pictures(video.CRF_PROBE_FRAMES, noise=1.0)
    settled = probed_qp(clean, 28)
    assert settled is not None and settled < 27
    monkeypatch.setattr(video, "CRF_PROBE_RANGE", 28 - settled)  # CRF's QP is now the range's low end
    assert probed_qp(clean, 28) is None
    monkeypatch.setattr(video, "CRF_PROBE_RANGE", 28 - settled + 1)
    assert probed_qp(clean, 28) == settled


def test_a_failing_crf_probe_leaves_plain_crf():
    """The probe only saves time: an encoder that cannot open (here: a 0x0 picture) gives no QP, no error."""
    probe = video.CrfProbe(0, 0, video.ExportOptions())
    for i, picture in enumerate(noisy_pictures(4, noise=1.0)):
        probe.feed(picture, i * 9000)
    assert probe.finish() is None


def test_which_exports_probe_the_crf():
    assert video.probes_crf(video.ExportOptions())
    assert not video.probes_crf(video.ExportOptions(crf_probe=False))
    assert not video.probes_crf(video.ExportOptions(preset="superfast"))
    assert not video.probes_crf(video.ExportOptions(x264_params=""))  # x264's own settings: plain CRF
    assert video.probe_frames(1024, 768) == video.CRF_PROBE_FRAMES == video.probe_frames(1920, 1080)
    assert video.probe_frames(4096, 4096) == 0  # the pictures held would be too big: plain CRF
    assert video.x264_options(video.ExportOptions(), qp=24) == {"qp": "24", "preset": "ultrafast"}


@pytest.mark.parametrize("count", [1, 2, 3, video.CRF_PROBE_FRAMES, video.CRF_PROBE_FRAMES + 3])
def test_short_and_long_logs_keep_every_frame_and_time_around_the_crf_probe(tmp_path, count):
    """The first frames are held for the probe: fewer than it holds, exactly as many, or more."""
    times = [T0 + i * 0.1 + (0.05 if i == 2 else 0.0) for i in range(count)]
    log = frames_log(tmp_path / "probe.bin", times, [make_jpeg(i) for i in range(count)])
    result = export(log)
    got, _, _ = decoded_times(result.output)
    assert result.frames == count
    assert_times(got, times)


def test_probed_qp_export_matches_plain_crf_in_size_and_quality(tmp_path):
    pictures = noisy_pictures(20, noise=3.0)
    jpegs = []
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 320, 240, "yuvj420p", Fraction(1, 10)
    for picture in pictures:
        jpegs.extend(bytes(p) for p in ctx.encode(picture))
    jpegs.extend(bytes(p) for p in ctx.encode(None))
    times = [T0 + i * 0.1 for i in range(len(jpegs))]
    log = frames_log(tmp_path / "noisy.bin", times, jpegs)
    probed = video.export(log, tmp_path / "probed.mp4", video.ExportOptions())
    plain = video.export(log, tmp_path / "plain.mp4", video.ExportOptions(crf_probe=False))
    assert probed.frames == plain.frames == len(jpegs)
    assert probed.qp is not None and plain.qp is None
    assert 0.5 < probed.bytes / plain.bytes < 1.5, (probed.bytes, plain.bytes)
    sources = [av.CodecContext.create("mjpeg", "r").decode(av.Packet(j))[0].to_ndarray(format="gray") for j in jpegs]

    def psnr(path: Path) -> float:
        with av.open(str(path)) as c:
            pairs = zip(c.decode(video=0), sources, strict=True)
            errors = [((f.to_ndarray(format="gray").astype(float) - s) ** 2).mean() for f, s in pairs]
        return 10 * np.log10(255**2 / np.mean(errors))

    assert psnr(probed.output) > psnr(plain.output) - 1.0


def test_the_video_says_its_colours_are_full_range_bt601(tmp_path):
    """Camera JPEGs are full-range BT.601 YCbCr; unflagged, players guess limited range and BT.709 for HD."""
    log = frames_log(tmp_path / "colours.bin", [T0 + i * 0.1 for i in range(4)])
    with av.open(str(export(log).output)) as c:
        picture = next(c.decode(video=0))
    assert (picture.color_range, picture.colorspace) == (2, 5)  # AVCOL_RANGE_JPEG, AVCOL_SPC_BT470BG
