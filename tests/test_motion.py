"""The camera motion trigger, on simulated frames and on the real board photos.

Frames are real JPEGs: from the simulated camera (autorec.sim.camera) or made from the
board photos by decoding with PyAV, editing pixels with numpy and re-encoding with PyAV.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from autorec.frames.graydecode import FrameDecodeError, GrayDecoder, jpeg_header, turbo_available
from autorec.proto import PurpleDropEvent
from autorec.sim.camera import CameraRenderer, drop_pixel_position
from autorec.triggers.base import Firing, as_firings
from autorec.triggers.motion import MotionTrigger
from tests.support.eventbuilder import image
from tests.support.motion_reference import RoundOneMotion

REPO = Path(__file__).resolve().parent.parent
FPS = 10.0


def image_event(jpeg: bytes) -> PurpleDropEvent:
    """A camera frame without a timestamp: the triggers get the time alongside."""
    return image(None, jpeg)


def feed_all(trigger: MotionTrigger, frames: Iterable[tuple[float, bytes]]) -> list[Firing]:
    fired: list[Firing] = []
    for t, jpeg in frames:
        fired += as_firings(trigger.feed(t, image_event(jpeg), None))  # type: ignore[arg-type]
    return fired


@pytest.fixture(scope="module")
def cam() -> CameraRenderer:
    return CameraRenderer(14, 8, seed=5)


def still(cam: CameraRenderer, seconds: float, t0: float = 0.0, drops: Sequence = ((4, 3, 0.5),), **light):
    return [(t0 + i / FPS, cam.frame(drops, **light)) for i in range(int(seconds * FPS))]


def moving(cam: CameraRenderer, t0: float, cells: int, row: float = 3.0, col0: float = 4.0, step_s: float = 0.5):
    """A drop stepping one electrode every `step_s`, sliding smoothly (as the simulator shows it)."""
    frames = []
    n = int(cells * step_s * FPS)
    for i in range(n + 1):
        frames.append((t0 + i / FPS, cam.frame([(col0 + i / (step_s * FPS), row, 0.5)])))
    return frames


# -- simulated camera ------------------------------------------------------------------------


@pytest.mark.parametrize("min_frames", [1, 2, 3])
def test_moving_drop_fires_within_min_frames(cam: CameraRenderer, min_frames: int) -> None:
    trig = MotionTrigger("m", min_frames=min_frames)
    assert feed_all(trig, still(cam, 2.0)) == []
    start = 2.0
    fired = feed_all(trig, moving(cam, start, cells=3))
    assert fired, "a drop moving three electrodes must fire"
    first = fired[0]
    # Analysed at detect_fps 5: the motion shows on the first analysed frame after it starts.
    assert first.time <= start + min_frames / 5.0 + 1e-6
    assert first.evidence["frames"] == min_frames
    assert first.evidence["score"] > trig.threshold
    # The bounding box covers where the drop is (full-frame pixels).
    x, y, w, h = first.evidence["bbox"]
    col = 4.0 + (first.time - start) / 0.5
    px, py = drop_pixel_position(cam.transform, col, 3.0)
    assert x - 4 <= px <= x + w + 4 and y - 4 <= py <= y + h + 4
    assert w < 300 and h < 120  # a drop, not the frame


def test_still_scene_with_sensor_noise_never_fires(cam: CameraRenderer) -> None:
    trig = MotionTrigger("m", min_frames=1, detect_fps=0.0)
    frames = still(cam, 12.0, drops=[(2, 2, 0.5), (9, 5, 0.6)])
    assert len(set(j for _, j in frames)) > 1  # the noise really changes from frame to frame
    assert feed_all(trig, frames) == []
    assert trig.counters["analysed"] == len(frames)
    assert trig.last_score is not None and trig.last_score < trig.threshold / 4


def test_lighting_steps_and_flicker_never_fire(cam: CameraRenderer) -> None:
    # As the simulator's scenario entries: `lighting: 0.8`, `lighting: 1.2`,
    # `flicker: {amplitude: 0.06, period: 1.5s}`; plus an offset step.
    trig = MotionTrigger("m", min_frames=1)
    frames = still(cam, 3.0)
    frames += still(cam, 3.0, t0=3.0, gain=0.8)
    frames += still(cam, 3.0, t0=6.0, gain=1.2)
    frames += still(cam, 3.0, t0=9.0, offset=-15)
    frames += [
        (12.0 + i / FPS, cam.frame([(4, 3, 0.5)], gain=round(1 + 0.06 * math.sin(2 * math.pi * i / FPS / 1.5), 2)))
        for i in range(100)
    ]
    assert feed_all(trig, frames) == []
    # Nothing needed a re-learn: the brightness fit absorbed every change.
    assert trig.counters["global_changes"] == 0


def test_global_change_is_not_motion_and_background_relearns(cam: CameraRenderer) -> None:
    trig = MotionTrigger("m", min_frames=1, detect_fps=0.0, max_fraction=0.02)
    frames = still(cam, 1.0)
    # A drastic non-uniform change (a shadow over the left half): more than max_fraction of the frame.
    dark = CameraRenderer(14, 8, seed=5)
    shadow = _shadowed(dark.frame([(4, 3, 0.5)]))
    frames += [(1.0 + i / FPS, shadow) for i in range(5)]
    assert feed_all(trig, frames) == []
    assert trig.counters["global_changes"] == 1  # once: then the background is the shadowed scene
    # After re-learning, a real move in the shadowed scene is still seen.
    moved = _shadowed(dark.frame([(8, 3, 0.5)]))
    assert feed_all(trig, [(2.0, moved)]) != []


def _shadowed(jpeg: bytes) -> bytes:
    frame = av.CodecContext.create("mjpeg", "r").decode(av.Packet(jpeg))[0]
    planes = frame.to_ndarray()
    planes[: frame.height, : frame.width // 2] //= 2
    return _encode(planes, frame.width, frame.height)


def test_region_excludes_motion_outside_it(cam: CameraRenderer) -> None:
    x0, y0 = drop_pixel_position(cam.transform, 0, 0)
    x1, y1 = drop_pixel_position(cam.transform, 5, 7)
    left = [int(x0) - 30, int(y0) - 30, int(x1 - x0) + 30, int(y1 - y0) + 60]  # columns 0-5 only
    frames = still(cam, 1.0, drops=[(10, 3, 0.5)]) + moving(cam, 1.0, cells=3, col0=10)
    assert feed_all(MotionTrigger("m", region=left), frames) == []
    assert feed_all(MotionTrigger("m"), frames) != []
    # The same region watching the right side sees it, with the bbox inside the region.
    right = [int(x1) + 40, 0, 1024 - int(x1) - 40, 768]
    fired = feed_all(MotionTrigger("m", region=right), frames)
    assert fired
    bx, _, bw, _ = fired[0].evidence["bbox"]
    assert bx >= right[0] - 4 and bx + bw <= 1024


def test_mask_file_excludes_motion_outside_it(cam: CameraRenderer, tmp_path: Path) -> None:
    x1, _ = drop_pixel_position(cam.transform, 6, 0)
    mask = np.zeros((768, 1024), np.uint8)
    mask[:, : int(x1)] = 255  # watch the left part only
    path = tmp_path / "mask.png"
    _write_png(mask, path)
    frames = still(cam, 1.0, drops=[(10, 3, 0.5)]) + moving(cam, 1.0, cells=3, col0=10)
    assert feed_all(MotionTrigger("m", mask=str(path)), frames) == []
    frames = still(cam, 1.0, drops=[(1, 3, 0.5)]) + moving(cam, 1.0, cells=3, col0=1)
    assert feed_all(MotionTrigger("m", mask=str(path)), frames) != []


def test_corrupt_and_truncated_frames_are_counted_and_skipped(cam: CameraRenderer) -> None:
    trig = MotionTrigger("m", detect_fps=0.0)
    good = cam.frame([(4, 3, 0.5)])
    flipped = bytearray(good)
    for i in range(2000, len(flipped) - 100, 997):
        flipped[i] ^= 0x5A
    bad = [good[: len(good) // 2], b"", b"not a jpeg at all", good[:400], bytes(flipped)]
    frames = still(cam, 0.5) + [(0.5 + i / FPS, b) for i, b in enumerate(bad)] + still(cam, 0.5, t0=1.0)
    assert feed_all(trig, frames) == []
    assert trig.counters["corrupt"] == len(bad)
    assert trig.counters["analysed"] == len(frames) - len(bad)
    # And the trigger still works afterwards.
    assert feed_all(trig, moving(cam, 1.5, cells=2)) != []


def test_random_damage_never_raises(cam: CameraRenderer) -> None:
    """Whatever arrives as image_data, feeding returns (counted as corrupt or analysed), never raises."""
    rng = np.random.default_rng(7)
    good = cam.frame([(4, 3, 0.5)])
    trig = MotionTrigger("m", detect_fps=0.0)
    trig.analyse(0.0, good)
    for i in range(40):
        data = bytearray(good[: int(rng.integers(0, len(good) + 1))])
        for pos in rng.integers(0, max(1, len(data)), size=int(rng.integers(0, 6))):
            if data:
                data[pos] = int(rng.integers(0, 256))
        if i % 3 == 0:
            data += good[-2:]  # keep an EOI so the decoder itself has to judge the damage
        trig.analyse(0.1 * (i + 1), bytes(data))
    assert trig.counters["corrupt"] + trig.counters["analysed"] == 41
    assert trig.counters["corrupt"] >= 25


def test_resolution_change_resets_background() -> None:
    big = CameraRenderer(8, 6, width=640, height=480, seed=1)
    small = CameraRenderer(8, 6, width=320, height=240, seed=1)
    trig = MotionTrigger("m", min_frames=1, detect_fps=0.0)
    frames = [(i / FPS, big.frame([(2, 2, 0.5)])) for i in range(5)]
    frames += [(0.5 + i / FPS, small.frame([(5, 2, 0.5)])) for i in range(5)]
    assert feed_all(trig, frames) == []
    assert trig.counters["resolution_changes"] == 1
    # Motion at the new size is seen against the re-learnt background.
    assert feed_all(trig, [(1.0 + i / FPS, small.frame([(5 + i * 0.5, 2, 0.5)])) for i in range(1, 4)]) != []


def test_detect_fps_caps_analysis(cam: CameraRenderer) -> None:
    frames = still(cam, 4.0)
    capped = MotionTrigger("m")
    feed_all(capped, frames)
    assert capped.counters["frames"] == 40 and capped.counters["analysed"] == 20
    every = MotionTrigger("m", detect_fps=0.0)
    feed_all(every, frames)
    assert every.counters["analysed"] == 40
    # Jittery frame times (the simulator's and a real camera's) still give detect_fps analyses per second.
    rng = np.random.default_rng(0)
    jittery = MotionTrigger("m")
    feed_all(jittery, [(i / FPS + rng.uniform(-0.02, 0.02), frames[i % 40][1]) for i in range(100)])
    assert 48 <= jittery.counters["analysed"] <= 51
    # A clock jumping backwards resumes analysis rather than stalling.
    feed_all(capped, [(0.0, frames[0][1]), (0.05, frames[1][1])])
    assert capped.counters["analysed"] == 21


def test_option_errors_name_the_option(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^region: "):
        MotionTrigger("m", region=[1, 2, 3])
    with pytest.raises(ValueError, match=r"^region: "):
        MotionTrigger("m", region=[0, 0, 0, 10])
    with pytest.raises(ValueError, match=r"^mask: cannot read"):
        MotionTrigger("m", mask=str(tmp_path / "missing.png"))
    (tmp_path / "junk.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"^mask: cannot read"):
        MotionTrigger("m", mask=str(tmp_path / "junk.png"))
    black = tmp_path / "black.png"
    _write_png(np.zeros((48, 64), np.uint8), black)
    with pytest.raises(ValueError, match=r"^mask: .*no white"):
        MotionTrigger("m", mask=str(black))


# -- the real board photos ---------------------------------------------------------------------


def _encode(planes: np.ndarray, width: int, height: int) -> bytes:
    enc = av.CodecContext.create("mjpeg", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuvj420p"
    enc.qmin = enc.qmax = 2
    enc.time_base = Fraction(1, 10)
    frame = av.VideoFrame.from_ndarray(planes, format="yuvj420p")
    return b"".join(bytes(p) for p in enc.encode(frame))


def _write_png(gray: np.ndarray, path: Path) -> None:
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = gray.shape[1], gray.shape[0], "gray"
        frame = av.VideoFrame.from_ndarray(gray, format="gray")
        for pkt in stream.encode(frame):
            out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)


def photo_frames(photo: Path, blob_path: Sequence[tuple[int, int] | None], seed: int = 0) -> list[bytes]:
    """One re-encoded frame per entry: sensor noise, plus a dark drop-sized blob at (x, y) if given."""
    with av.open(str(photo)) as container:
        frame = next(container.decode(video=0)).reformat(format="yuvj420p")
    planes = frame.to_ndarray()
    h, w = frame.height, frame.width
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for pos in blob_path:
        p = planes.astype(np.int16)
        p[:h] += np.rint(rng.normal(0, 2.5, size=(h, w))).astype(np.int16)
        if pos is not None:
            r2 = (xx - pos[0]) ** 2 + (yy - pos[1]) ** 2
            p[:h][r2 < 14**2] -= 50  # a drop ~1 electrode across on this board
        out.append(_encode(np.clip(p, 0, 255).astype(np.uint8), w, h))
    return out


@pytest.mark.parametrize("which", ["board_photo_1", "board_photo_2"])
def test_real_photo_blob_moving_fires_and_noise_alone_does_not(which: str, request: pytest.FixtureRequest) -> None:
    photo: Path = request.getfixturevalue(which)
    original = photo.read_bytes()
    assert jpeg_header(original)[:2] == (1024, 768)
    quiet = photo_frames(photo, [None] * 8, seed=1)
    # Over the electrode array (see the photo): 10 px per frame, left to right.
    path = [(470 + 10 * i, 400) for i in range(6)]
    moved = photo_frames(photo, path, seed=2)

    trig = MotionTrigger("m", detect_fps=0.0)
    # The untouched photo first (progressive for board-photo-2), then noisy re-encodes of it.
    frames = [(0.0, original)] + [(0.1 * (i + 1), j) for i, j in enumerate(quiet)]
    assert feed_all(trig, frames) == []
    assert trig.counters["corrupt"] == 0
    fired = feed_all(trig, [(1.0 + 0.1 * i, j) for i, j in enumerate(moved)])
    assert fired
    assert fired[0].time <= 1.0 + 0.1 * (trig.min_frames - 1) + 1e-6
    bx, by, bw, bh = fired[0].evidence["bbox"]
    assert bx <= 470 + 14 and bx + bw >= 470 and by <= 400 <= by + bh and bw < 200


# -- the optimised analysis against round 1's ------------------------------------------------


def _same_as_round_one(frames: Sequence[tuple[float, bytes]], **options) -> list[Firing]:
    """Feeds the same decoded frames to MotionTrigger and to round 1's analysis (RoundOneMotion):
    every score, firing (time, onset, evidence), counter and the final background must be equal."""
    fast, reference = MotionTrigger("m", **options), RoundOneMotion("m", **options)
    decoder = GrayDecoder(fast.scale)
    fired: list[Firing] = []
    for t, jpeg in frames:
        try:
            image = decoder.decode(jpeg)
        except FrameDecodeError as exc:
            image = exc
        got, want = as_firings(fast.analyse(t, b"", image)), as_firings(reference.analyse(t, b"", image))
        assert fast.last_score == pytest.approx(reference.last_score, abs=1e-12), t
        assert [(f.time, f.onset, f.evidence) for f in got] == [(f.time, f.onset, f.evidence) for f in want], t
        fired += got
    assert fast.counters == reference.counters
    assert (fast._background is None) == (reference._background is None)
    if fast._background is not None:
        assert np.array_equal(fast._background, reference._background)
    return fired


def test_analysis_matches_round_one_on_board_photo_frames(board_photo_1: Path) -> None:
    # As benchmarks/motion_speed.py: noise, then a blob moving 10 px a frame, then still again.
    path = [None] * 3 + [(470 + 10 * i, 400) for i in range(8)] + [None] * 3
    jpegs = photo_frames(board_photo_1, path, seed=3)
    frames = [(0.1 * i, j) for i, j in enumerate(jpegs)]
    assert _same_as_round_one(frames, detect_fps=0.0)  # it fires: the comparison covers firings
    assert _same_as_round_one(frames, detect_fps=0.0, region=[400, 300, 300, 200], threshold=0.001)
    assert _same_as_round_one(frames, detect_fps=0.0, scale=8, background_time=0.0)  # alpha 1: re-learn each frame


def test_analysis_matches_round_one_on_simulated_camera(cam: CameraRenderer, tmp_path: Path) -> None:
    frames = still(cam, 1.0)
    frames += moving(cam, 1.0, cells=2)
    frames += still(cam, 1.0, t0=2.2, gain=0.8)  # a lighting step: the brightness fit absorbs it
    frames += still(cam, 0.5, t0=3.2, offset=-90)  # a global change: re-learnt at once
    frames += [(3.7, b"\xff\xd8 not a whole JPEG")]  # counted corrupt, skipped
    frames += moving(cam, 3.8, cells=2, row=5.0)
    assert _same_as_round_one(frames, detect_fps=0.0, min_frames=1)
    assert _same_as_round_one(frames, min_frames=1, max_fraction=0.05)  # detect_fps 5, global changes
    mask = np.zeros((48, 64), np.uint8)
    mask[10:40, 5:50] = 255
    _write_png(mask, tmp_path / "mask.png")
    assert _same_as_round_one(frames, detect_fps=0.0, min_frames=1, mask=str(tmp_path / "mask.png"))


# -- decoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_gray_decoder_sizes_and_errors(board_photo_1: Path, board_photo_2: Path, backend: str) -> None:
    for photo, progressive in ((board_photo_1, False), (board_photo_2, True)):
        data = photo.read_bytes()
        for scale in (1, 2, 4, 8):
            img = GrayDecoder(scale, backend).decode(data)  # type: ignore[arg-type]
            assert img.pixels.shape == (768 // scale, 1024 // scale)
            assert (img.full_width, img.full_height, img.progressive) == (1024, 768, progressive)
            assert 100 < img.pixels.mean() < 200
            assert not img.pixels.flags.writeable
            # libjpeg-turbo for baseline frames when it is installed; PyAV for progressive ones
            expected = "turbo" if backend == "auto" and turbo_available() and not progressive else "pyav"
            assert img.decoder == expected
    dec = GrayDecoder(4, backend)  # type: ignore[arg-type]
    data = board_photo_1.read_bytes()
    # entropy-coded data damaged in the middle (the header and EOI intact)
    middle = bytearray(data)
    middle[len(data) // 2 : len(data) // 2 + 400] = bytes(range(200)) * 2
    bads = [b"", data[:-200], data[3:], b"\xff\xd8" + b"\x00" * 100]
    if dec.backend == "turbo":
        # libjpeg-turbo's strict mode rejects this; FFmpeg (even with err_detect=explode) decodes it garbled
        bads.append(bytes(middle))
    for bad in bads:
        with pytest.raises(FrameDecodeError):
            dec.decode(bad)
    assert dec.decode(data).pixels.shape == (192, 256)  # a failure leaves the decoder usable


@pytest.mark.skipif(not turbo_available(), reason="simplejpeg is not installed")
@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_turbo_and_pyav_decoders_agree(board_photo_1: Path, scale: int) -> None:
    """Same size and (but for inverse-DCT rounding) the same levels: a stream may mix the two."""
    data = board_photo_1.read_bytes()
    turbo = GrayDecoder(scale, "turbo").decode(data)
    pyav = GrayDecoder(scale, "pyav").decode(data)
    assert (turbo.decoder, pyav.decoder) == ("turbo", "pyav")
    assert turbo.pixels.shape == pyav.pixels.shape
    diff = np.abs(turbo.pixels.astype(np.int16) - pyav.pixels.astype(np.int16))
    assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 12
    with pytest.raises(ValueError, match="scale"):
        GrayDecoder(3)


# -- the shipped rule file --------------------------------------------------------------------


def test_rules_motion_yaml_loads_with_the_motion_trigger() -> None:
    from autorec.rules import load_rules

    ruleset = load_rules(REPO / "rules" / "motion.yaml")
    motion = [r for r in ruleset.rules if r.trigger_name == "motion"]
    assert motion and motion[0].trigger is MotionTrigger
    trig = motion[0].make_trigger()
    assert isinstance(trig, MotionTrigger)


# -- the simulator's own scenario and truth ---------------------------------------------------


def test_simulated_rig_lighting_from_truth_never_fires_and_moves_do() -> None:
    from autorec.sim.core import CameraFrame, Simulation
    from autorec.sim.scenario import parse_scenario

    scenario = parse_scenario(
        "board: misl_v4.1\n"
        "drops: [[3, 3]]\n"
        "timeline:\n"
        "  - idle: 3s\n"
        "  - lighting: 0.8\n"
        "  - idle: 3s\n"
        "  - flicker: {amplitude: 0.06, period: 1.5s, for: 6s}\n"
        "  - idle: 7s\n"
        "  - lighting: 1.2\n"
        "  - idle: 3s\n"
        "  - move: {drop: 0, path: [[4, 3], [5, 3], [6, 3]]}\n"
        "  - idle: 60s\n",
        "test-scenario",
    )
    sim = Simulation(scenario, seed=3, start_time=1000.0, duration=24.0)
    cam = CameraRenderer(scenario.board.cols, scenario.board.rows, seed=3)
    trig = MotionTrigger("m")
    fired: list[Firing] = []
    for t, item in sim.advance(1024.0):
        if isinstance(item, CameraFrame):
            fired += as_firings(trig.feed(t, image_event(cam.frame(item.drops, item.gain, item.offset)), None))  # type: ignore[arg-type]
    truth = sim.truth.as_dict(until=1024.0)
    assert len(truth["lighting"]) == 3 and truth["activity"], truth
    first_move = min(a["start"] for a in truth["activity"])
    assert first_move > max(e["end"] for e in truth["lighting"])
    # Nothing fires before the drop moves (lighting steps and flicker included)...
    assert [f.time for f in fired if f.time < first_move] == []
    # ...and the move fires soon after it starts, inside the activity window (+ background catch-up).
    assert fired and fired[0].time < first_move + 1.5
    last_end = max(a["end"] for a in truth["activity"])
    assert all(f.time <= last_end + 2 * trig.background_time for f in fired)


def test_mask_path_in_a_rule_file_is_relative_to_that_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autorec.rules import ConfigError, load_rules

    rules_dir = tmp_path / "lab" / "rules"
    (rules_dir / "masks").mkdir(parents=True)
    _write_png(np.full((48, 64), 255, np.uint8), rules_dir / "masks" / "roi.png")
    rule_file = rules_dir / "cam.yaml"
    rule_file.write_text("rules:\n  - name: cam\n    trigger: motion\n    mask: masks/roi.png\n")
    monkeypatch.chdir(tmp_path)  # started from elsewhere: the mask is still found beside the rules
    [rule] = load_rules(rule_file).rules
    assert rule.options["mask"] == str(rules_dir / "masks" / "roi.png")
    rule_file.write_text("rules:\n  - name: cam\n    trigger: motion\n    mask: masks/missing.png\n")
    with pytest.raises(ConfigError, match=r"cam.yaml:4: rules\[cam\]\.mask: cannot read"):
        load_rules(rule_file)
