"""The simulated camera: real JPEGs, decoded with PyAV, drops where asked, lighting that shows."""

from __future__ import annotations

import av
import numpy as np
import pytest

from autorec.sim.camera import CameraRenderer, drop_pixel_position, grid_to_pixel


def decode_gray(jpeg: bytes) -> np.ndarray:
    """Full-size luma of a JPEG, decoded by PyAV's mjpeg decoder (independent of autorec)."""
    ctx = av.CodecContext.create("mjpeg", "r")
    frames = ctx.decode(av.Packet(jpeg))
    assert len(frames) == 1
    return frames[0].to_ndarray(format="gray").astype(np.float32)


@pytest.fixture(scope="module")
def small() -> CameraRenderer:
    return CameraRenderer(10, 8, width=320, height=240, seed=1)


@pytest.fixture(scope="module")
def full() -> CameraRenderer:
    return CameraRenderer(14, 8, seed=2)


def test_frames_decode_at_configured_size_and_reference_rig_weight(full: CameraRenderer) -> None:
    jpeg = full.frame([(3.0, 4.0, 0.45)])
    assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"
    gray = decode_gray(jpeg)
    assert gray.shape == (768, 1024)
    # The reference rig's frames are ~100-160 KB; the renderer should weigh about the same.
    assert 70_000 < len(jpeg) < 200_000, len(jpeg)


def test_other_sizes_decode(small: CameraRenderer) -> None:
    assert decode_gray(small.frame()).shape == (240, 320)


def test_transform_is_a_plausible_grid_to_pixel_homography(full: CameraRenderer) -> None:
    t = full.transform
    assert len(t) == 9 and t[8] == pytest.approx(1.0)
    corners = [grid_to_pixel(t, x, y) for x, y in ((0, 0), (14, 0), (14, 8), (0, 8))]
    for x, y in corners:
        assert 0 < x < 1024 and 0 < y < 768
    (tlx, tly), (trx, _), (brx, bry), (blx, _) = corners
    assert trx - tlx < brx - blx  # seen in perspective: the far edge is narrower
    assert bry > tly
    assert drop_pixel_position(t, 2, 3) == grid_to_pixel(t, 2.5, 3.5)
    assert 20 < full.cell_pixels() < 60


@pytest.mark.parametrize(("col", "row"), [(2.0, 3.0), (7.25, 1.5)])
def test_drop_appears_where_asked(col: float, row: float) -> None:
    # One noise field, so the two pictures differ by the drop alone (plus JPEG ringing).
    small = CameraRenderer(10, 8, width=320, height=240, seed=1, noise_variants=1)
    empty = decode_gray(small.frame([]))
    with_drop = decode_gray(small.frame([(col, row, 0.5)]))
    diff = np.abs(with_drop - empty)
    changed = diff > 20
    ys, xs = np.nonzero(changed)
    assert len(xs) > 20
    x, y = drop_pixel_position(small.transform, col, row)
    pitch = small.cell_pixels()
    assert abs(xs.mean() - x) < 0.3 * pitch and abs(ys.mean() - y) < 0.3 * pitch
    # Nothing changes far from the drop.
    far = np.hypot(xs - x, ys - y) > 1.5 * pitch
    assert not far.any()


def test_drop_moving_smoothly_gives_distinct_pictures(small: CameraRenderer) -> None:
    a = decode_gray(small.frame([(2.0, 3.0, 0.5)]))
    b = decode_gray(small.frame([(2.5, 3.0, 0.5)]))
    assert np.abs(a - b).max() > 30


def test_lighting_step_changes_mean_brightness(small: CameraRenderer) -> None:
    base = decode_gray(small.frame([(2, 2, 0.5)])).mean()
    brighter = decode_gray(small.frame([(2, 2, 0.5)], gain=1.25)).mean()
    darker = decode_gray(small.frame([(2, 2, 0.5)], offset=-25)).mean()
    assert brighter > base + 15
    assert darker < base - 15


def test_sensor_noise_varies_but_pictures_are_cached() -> None:
    cam = CameraRenderer(6, 4, width=160, height=120, seed=3, noise_variants=3)
    frames = [cam.frame([(1, 1, 0.5)]) for _ in range(9)]
    assert len(set(frames)) == 3  # three noise variants, each encoded once
    assert cam.misses == 3 and cam.hits == 6
    a, b = decode_gray(frames[0]), decode_gray(frames[1])
    d = np.abs(a - b)
    assert 0.3 < d.mean() < 4  # visible sensor noise, no structure change
    # Sub-step position jitter maps to the same cached picture.
    cam.frame([(1.01, 1.0, 0.5)])
    assert cam.misses == 3


def test_same_seed_same_bytes() -> None:
    a = CameraRenderer(5, 5, width=128, height=96, seed=7)
    b = CameraRenderer(5, 5, width=128, height=96, seed=7)
    assert [a.frame([(1, 1, 0.4)]) for _ in range(2)] == [b.frame([(1, 1, 0.4)]) for _ in range(2)]


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="grid"):
        CameraRenderer(0, 4)
    with pytest.raises(ValueError, match="even"):
        CameraRenderer(4, 4, width=101)
    with pytest.raises(ValueError, match="quality"):
        CameraRenderer(4, 4, quality=0)
