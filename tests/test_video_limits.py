"""Video export under hostile frames and clocks: decompression bombs, camera gaps of hours."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from autorec.cli import main
from autorec.frames.jpeg import jpeg_size
from autorec.media import video
from tests.support.videolog import T0, decoded_times, flat_jpeg, frames_log, make_jpeg

HOUR = 3600.0


def test_the_bomb_is_a_real_12000x12000_jpeg():
    bomb = flat_jpeg(12000, 12000)
    assert jpeg_size(bomb) == (12000, 12000) and len(bomb) < 600_000
    small = flat_jpeg(64, 48)
    import av

    [picture] = av.CodecContext.create("mjpeg", "r").decode(av.Packet(small))
    assert (picture.width, picture.height) == (64, 48)


@pytest.mark.parametrize("mode", ["h264", "copy"])
def test_frames_over_the_pixel_cap_are_skipped_counted_and_warned_once(tmp_path: Path, mode, caplog):
    bomb = flat_jpeg(12000, 12000)
    jpegs = [make_jpeg(0), bomb, make_jpeg(1), bomb, bomb, make_jpeg(2), bomb]
    log = frames_log(tmp_path / "bombs.bin", [T0 + i * 0.1 for i in range(len(jpegs))], jpegs)
    out = tmp_path / ("b.mp4" if mode == "h264" else "b.mkv")
    with caplog.at_level(logging.WARNING, logger="autorec.media.video"):
        result = video.export(log, out, video.ExportOptions(mode=mode))
    assert result.too_large == 4 and result.frames == 3 and result.corrupt == 0
    assert len([r for r in caplog.records if "over the cap" in r.getMessage()]) == 1
    assert "4 frames over the pixel cap skipped" in result.summary()
    times, _, size = decoded_times(out)
    assert len(times) == 3 and size == (320, 240)
    # the cap is an option: raised, the bombs are frames (copy mode keeps them as they are)
    if mode == "copy":
        big = video.export(log, tmp_path / "c.mkv", video.ExportOptions(mode="copy", max_pixels=12000 * 12000))
        assert big.too_large == 0 and big.frames == 7


def test_max_pixels_option_on_the_command_line(tmp_path: Path, capsys):
    log = frames_log(tmp_path / "cam.bin", [T0 + i * 0.1 for i in range(4)])
    assert main(["video", str(log), "--max-pixels", "100x100", "-q"]) == 1  # every 320x240 frame is over it
    err = capsys.readouterr().err
    assert "is over the cap of 0.0 megapixels (--max-pixels)" in err and "no exportable camera frames" in err
    assert main(["video", str(log), "--max-pixels", "lots"]) == 2
    assert "--max-pixels" in capsys.readouterr().err
    assert main(["video", str(log), "--max-pixels", "0.1M", "--force"]) == 0


@pytest.mark.parametrize("mode", ["h264", "copy"])
def test_a_seven_hour_camera_gap_exports_as_a_short_still(tmp_path: Path, mode, caplog):
    times = [T0, T0 + 0.1, T0 + 0.2, T0 + 7 * HOUR, T0 + 7 * HOUR + 0.1, T0 + 14 * HOUR]
    log = frames_log(tmp_path / "gap.bin", times)
    out = tmp_path / ("g.mp4" if mode == "h264" else "g.mkv")
    with caplog.at_level(logging.INFO, logger="autorec.media.video"):
        result = video.export(log, out, video.ExportOptions(mode=mode))
    assert result.frames == 6 and result.gaps_cut == 2
    assert len([r for r in caplog.records if "camera gap of 7.0h" in r.getMessage()]) == 2
    decoded, _, _ = decoded_times(out)
    expected = [0.0, 0.1, 0.2, 0.2 + video.CUT_GAP_TO, 0.3 + video.CUT_GAP_TO, 0.3 + 2 * video.CUT_GAP_TO]
    assert decoded == pytest.approx(expected, abs=0.002)


def test_a_five_hour_camera_gap_keeps_its_length(tmp_path: Path):
    times = [T0, T0 + 0.1, T0 + 5 * HOUR, T0 + 5 * HOUR + 0.1]
    log = frames_log(tmp_path / "gap5.bin", times)
    result = video.export(log, tmp_path / "g5.mp4", video.ExportOptions())
    assert result.gaps_cut == 0
    decoded, _, _ = decoded_times(tmp_path / "g5.mp4")
    assert decoded == pytest.approx([0.0, 0.1, 5 * HOUR, 5 * HOUR + 0.1], abs=0.002)
