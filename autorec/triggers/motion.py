"""`motion`: something visibly moved in the camera picture (frame difference against a slow background).

Contract (sans-I/O: no clock, no files while fed; a `mask` image is read once, at construction):
- Fed `image` events. At most `detect_fps` frames per second of stream time are
  analysed (0: every frame); the others are ignored here (the segmenter buffers
  them like any message), so backtests of long logs stay fast. Which frames is
  decided by a `FrameGrid` (`autorec.triggers.framegrid`, the attribute `grid`).
- Idle rate: after `idle_after` of stream time without a sign of activity, only
  `idle_fps` frames a second are analysed (0 in either: never). Signs: a score
  above `idle_wake` x `threshold`, a change of the driven electrodes (the
  `StateView`'s `driven_pins`), frames stopping and coming back (a reconnection),
  the clock going back. The first sign brings back the full rate from the next
  full-rate slot; the run of `min_frames` that fires is then at full rate, and a
  firing's onset (the first analysed frame above threshold) is at most one idle
  interval late, which the pre-roll covers. Decided from stream time only, so
  live runs and backtests analyse the same frames.
- Each analysed frame is decoded to a small grayscale picture (1/`scale` of the
  size, DCT-scaled inside the JPEG decoder: see `autorec.frames.graydecode`), and
  compared with a background that follows the scene with time constant
  `background_time`. Before differencing, the frame's brightness is mapped onto
  the background's by a least-squares gain + offset fit, so a lamp change or
  auto-exposure step is not a difference; pixels saturated in the frame are
  not counted.
- score = fraction of the watched pixels (`region` and/or `mask`; default the
  whole frame) whose normalised level differs from the background by more than
  `pixel_threshold` (levels 0-255). A frame whose score exceeds `max_fraction`
  is a global change (light switched, camera bumped), not motion: it never
  counts, and the background is re-learnt from it at once.
- Fires on every analysed frame once the score has exceeded `threshold` on
  `min_frames` consecutive analysed frames. Evidence: `score`, `bbox`
  ([x, y, w, h] of the changed pixels, full-frame pixels) and `frames` (the run length).
  The firing's onset is the first analysed frame of that run (pre-roll counts from
  there, not from the frame that confirmed it); `max_onset_lag` bounds it by
  `min_frames` analysis intervals plus a second of slack.
- Corrupt or truncated JPEGs are counted (`counters["corrupt"]`) and skipped;
  a change of frame size re-learns the background (`counters["resolution_changes"]`).
- Stream time may jump: a backwards jump just resumes analysis, a long gap
  makes the background snap to the next frame.
- Reports every analysed frame's score against `threshold` (`Trigger.score`).
- Hook for decoding ahead (`autorec.runs.predecode`, backtests on several cores): when
  `decoded_ahead` is set, each frame due for analysis is first looked up there with
  its event; a `GrayImage` (or a `FrameDecodeError`) found is used as this
  trigger's own `GrayDecoder(scale)` would have produced it for the same bytes,
  None means "not decoded ahead" and the frame is decoded here. Which frames are
  due is decided here as always, so results never depend on what was decoded
  ahead (the decode is a pure function of the bytes), only the speed does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from autorec.frames.graydecode import SCALES, FrameDecodeError, GrayDecoder, GrayImage
from autorec.proto import PurpleDropEvent
from autorec.triggers.base import Firing, FiringResult, Option, Score, StateView, Trigger
from autorec.triggers.framegrid import FrameGrid

# Levels at or beyond these are clipped by the sensor/encoder: their brightness cannot be normalised.
_DARK, _BRIGHT = 8, 245


def load_mask(path: str) -> np.ndarray:
    """A mask image (any format FFmpeg reads: PNG, JPEG, BMP, ...) as a bool array; True = watched.

    Raises ValueError("mask: ...") when the file cannot be read, or watches nothing.
    """
    import av  # only needed when a mask is configured

    try:
        with av.open(path) as container:
            frame = next(container.decode(video=0))
            gray = frame.to_ndarray(format="gray")
    except (OSError, av.FFmpegError, StopIteration, ValueError) as exc:
        raise ValueError(f"mask: cannot read {path} as an image ({exc})") from None
    mask = gray > 127
    if not mask.any():
        raise ValueError(f"mask: {path} has no white (watched) pixels")
    return mask


def _brightness_fit(bg: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """(gain, offset) with cur ~= gain * bg + offset: least squares over unclipped pixels.

    `bg`, `cur`: the 1-in-16 subsample (`[::4, ::4]`) of the background and of the frame (two
    numbers need few samples). Pixels clipped in either picture are left out: they would bias
    the gain. Falls back to (1, 0) when the picture is flat.
    """
    b = bg.astype(np.float64).ravel()
    c = cur.astype(np.float64).ravel()
    # Both in (_DARK, _BRIGHT): 2 comparisons on the min and max instead of 4 (same pixels).
    keep = np.minimum(b, c) > _DARK
    keep &= np.maximum(b, c) < _BRIGHT
    b, c = b[keep], c[keep]
    n = b.size
    if n < 16:
        return 1.0, 0.0
    mb, mc = float(np.add.reduce(b)) / n, float(np.add.reduce(c)) / n  # what mean() computes
    b -= mb
    c -= mc
    var = float(np.dot(b, b))
    gain = float(np.dot(b, c)) / var if var > 1e-3 * n else 1.0
    if not (math.isfinite(gain) and 0.2 <= gain <= 5.0):
        gain = 1.0
    return gain, float(mc - gain * mb)


def _resample(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resampling of a full-frame mask to the analysis size."""
    ys = (np.arange(height) * mask.shape[0]) // height
    xs = (np.arange(width) * mask.shape[1]) // width
    return mask[ys[:, None], xs[None, :]]


DecodedAhead = Callable[[PurpleDropEvent], "GrayImage | FrameDecodeError | None"]


class MotionTrigger(Trigger):
    name: ClassVar[str] = "motion"
    description: ClassVar[str] = "something moved in the camera picture (frame difference, lighting changes ignored)"
    options: ClassVar[tuple[Option, ...]] = (
        Option(
            "threshold", "float", default=0.0003, min=0.0, max=1.0, help="fire above this fraction of changed pixels"
        ),
        Option("pixel_threshold", "float", default=25.0, min=1.0, max=255.0, help="a pixel changed by more levels"),
        Option("min_frames", "int", default=2, min=1, help="consecutive analysed frames above threshold"),
        Option("region", "list[int]", default=[], help="[x, y, w, h] in full-frame pixels to watch (empty: all)"),
        Option("mask", "path", default="", help="image file, white = watched (scaled to the frame)"),
        Option("max_fraction", "float", default=0.3, min=0.0, max=1.0, help="more changed than this is lighting"),
        Option("detect_fps", "float", default=5.0, min=0.0, help="analyse at most this many frames/s (0: all)"),
        Option("idle_fps", "float", default=1.0, min=0.0, help="frames/s analysed when idle (0: no idle rate)"),
        Option("idle_after", "duration", default=60.0, min=0.0, help="idle after this long with no sign (0: never)"),
        Option("idle_wake", "float", default=0.3, min=0.0, max=1.0, help="a score above this x threshold ends idling"),
        Option("background_time", "duration", default=2.0, min=0.0, help="how fast the background follows"),
        Option("scale", "int", default=4, choices=SCALES, help="analyse at 1/scale of the frame size"),
    )
    kinds: ClassVar[frozenset[str] | None] = frozenset({"image"})
    threshold_option: ClassVar[str | None] = "threshold"

    def __init__(self, rule: str, **options: Any) -> None:
        super().__init__(rule, **options)
        if self.region:
            if len(self.region) != 4:
                raise ValueError(f"region: expected [x, y, w, h], got {self.region!r}")
            x, y, w, h = self.region
            if x < 0 or y < 0 or w <= 0 or h <= 0:
                raise ValueError(f"region: x, y must be >= 0 and w, h > 0, got {self.region!r}")
        self._mask_full = load_mask(self.mask) if self.mask else None
        self._decoder = GrayDecoder(self.scale)
        self._interval = 1.0 / self.detect_fps if self.detect_fps > 0 else 0.0
        idle = self.idle_fps > 0 and self.idle_after > 0
        self.grid = FrameGrid(
            self._interval, idle_interval=1.0 / self.idle_fps if idle else 0.0, idle_after=self.idle_after
        )
        self._idle_rate = idle
        self._wake_score = self.idle_wake * self.threshold
        self._pins: frozenset[int] | None = None  # the driven electrodes last seen (idle rate only)
        self.counters: dict[str, int] = {
            "frames": 0,  # image events seen
            "analysed": 0,
            "corrupt": 0,
            "global_changes": 0,
            "resolution_changes": 0,
            "idle_frames": 0,  # frames due at the idle rate (of "frames")
        }
        self.last_score: float | None = None
        self._last_time: float | None = None  # of the last analysed frame
        self.decoded_ahead: DecodedAhead | None = None  # see the module docstring
        self._geometry: tuple[int, int, int, int] | None = None  # full w, h, reduced w, h
        self._crop: tuple[slice, slice] = (slice(0), slice(0))
        self._crop_mask: np.ndarray | None = None
        self._watched = 0
        self._background: np.ndarray | None = None  # float32, crop-sized; updated in place
        self._background_sub = np.empty((0, 0), np.float32)  # its [::4, ::4], contiguous (for the fit)
        # Scratch pictures of the crop's size, reused by every analysis (see `analyse`).
        self._scratch = np.empty((0, 0), np.float32)
        self._above = np.empty((0, 0), np.bool_)
        self._streak = 0
        self._streak_start = 0.0  # time of the first analysed frame of the current run above threshold

    @property
    def max_onset_lag(self) -> float:  # type: ignore[override]
        """A run of `min_frames` analysed frames spans (min_frames - 1) intervals; with every
        frame analysed (detect_fps 0) the camera's rate is unknown: assume at least 1 fps."""
        interval = self._interval if self._interval > 0 else 1.0
        return self.min_frames * interval + 1.0

    def decider(self, threshold: float) -> _MotionDecider:
        """The firing decision of `analyse` from the reported scores (the background and the
        scores do not depend on `threshold`, only the run of frames above it does).

        With the idle rate, which frames are analysed depends on the threshold (a score above
        `idle_wake` x threshold is a sign): a sweep asks for its deciders before feeding, so the
        trigger wakes from then on at the lowest threshold asked for, and no lane analyses fewer
        frames than its own run would (a lane above it may see a frame more at a wake-up)."""
        if self._idle_rate:
            self._wake_score = min(self._wake_score, self.idle_wake * threshold)
        return _MotionDecider(self.rule, threshold, self.min_frames, self.max_fraction)

    # -- feeding -----------------------------------------------------------------------------

    def feed(self, time: float, event: PurpleDropEvent, state: StateView) -> FiringResult:
        self.counters["frames"] += 1
        grid = self.grid
        if self._idle_rate:
            pins = state.driven_pins if state is not None else self._pins  # None: a bare test harness
            if pins is not self._pins:  # a new electrode_state (the tracker makes a new set for each)
                if self._pins is not None and pins != self._pins:
                    grid.wake(time)
                self._pins = pins
            if not grid.due(time):
                return None
            if grid.idle_at(time):
                self.counters["idle_frames"] += 1
        elif not grid.due(time):
            return None
        if self.decoded_ahead is not None:
            image = self.decoded_ahead(event)
            if image is not None:
                return self.analyse(time, b"", image)
        # One read of the field: protobuf hands out the bytes object, which goes straight to the decoder.
        return self.analyse(time, event.image.image_data)

    def analyse(self, time: float, jpeg: bytes, image: GrayImage | FrameDecodeError | None = None) -> FiringResult:
        """Analyse one frame now, whatever `detect_fps` says; the core of `feed`. `image`: the
        frame already decoded (or found corrupt) by `GrayDecoder(scale)`; None: decode `jpeg` here."""
        if image is None:
            try:
                image = self._decoder.decode(jpeg)
            except FrameDecodeError as exc:
                image = exc
        if isinstance(image, FrameDecodeError):
            self.counters["corrupt"] += 1
            return None
        previous = self._last_time
        self._last_time = time
        self.counters["analysed"] += 1
        cur = self._prepare(image)
        bg = self._background
        if bg is None or cur is None:
            self._relearn(cur)
            self._streak = 0
            self.last_score = None
            self.score(time, 0.0, self.threshold)  # nothing to compare with yet: no change seen
            return None

        # The background's subsample was kept compact when the background last changed: read
        # [::4, ::4] straight from the background, every 4th row is a new memory stream that the
        # prefetcher does not follow, and the decode has just pushed the background out of the
        # cache (measured on the loaded machine, fit after a decode: 353 us median that way, 266 us
        # from the compact copy).
        gain, offset = _brightness_fit(self._background_sub, cur[::4, ::4])
        # |(cur - offset) / gain - bg| > t  <=>  |cur - (gain * bg + offset)| > t * gain.
        # Every step writes into the trigger's own scratch picture: a fresh 196 KB temporary per
        # step (256x192 float32) is above glibc's default mmap threshold, so each one cost an
        # mmap, ~48 page faults and an munmap (measured: the analysis took 1.05 ms a frame with
        # temporaries, 0.34 ms in a process whose malloc threshold had been raised by chance).
        # Same float32 operations in the same order as before, so the results are bit-identical.
        diff = self._scratch
        np.multiply(bg, np.float32(gain), out=diff)
        np.add(diff, np.float32(offset), out=diff)  # the prediction of this frame from the background
        np.subtract(cur, diff, out=diff)  # uint8 - float32: cur is converted exactly, chunk by chunk
        np.abs(diff, out=diff)
        above = np.greater(diff, np.float32(self.pixel_threshold * gain), out=self._above)
        # Flat indices of the changed pixels: motion is a few pixels, so the checks below run on
        # those only instead of on whole pictures (measured: -0.15 ms a frame at 256x192).
        changed = np.flatnonzero(above)
        if changed.size:
            # Where the frame or the prediction is clipped, brightness cannot be mapped: not evidence.
            c = cur.ravel()[changed]  # a view when no region crops the picture, else a small copy
            p = bg.ravel()[changed] * np.float32(gain)
            p += np.float32(offset)
            keep = (c > _DARK) & (c < _BRIGHT) & (p > _DARK) & (p < _BRIGHT)
            if self._crop_mask is not None:
                keep &= self._crop_mask.ravel()[changed]
            changed = changed[keep]
        count = int(changed.size)
        score = count / self._watched if self._watched else 0.0
        self.last_score = score
        self.score(time, score, self.threshold)
        if score > self._wake_score and self._idle_rate:
            self.grid.wake(time)  # near the threshold (or lighting): full rate until idle_after passes

        if score > self.max_fraction:
            # Most of the picture changed at once: lighting or a bumped camera, not a drop.
            self.counters["global_changes"] += 1
            self._relearn(cur)
            self._streak = 0
            return None

        self._learn(cur, time, previous)
        if score <= self.threshold:
            self._streak = 0
            return None
        if self._streak == 0:
            self._streak_start = time
        self._streak += 1
        if self._streak < self.min_frames:
            return None
        return self.fire(
            time, onset=self._streak_start, score=round(score, 6), bbox=self.evidence_bbox(changed), frames=self._streak
        )

    # -- helpers -----------------------------------------------------------------------------

    def _prepare(self, image: GrayImage) -> np.ndarray | None:
        """The watched part of the frame (a uint8 view, not a copy); resets the background and the
        scratch pictures when the size changes."""
        h, w = image.pixels.shape
        geometry = (image.full_width, image.full_height, w, h)
        if geometry != self._geometry:
            if self._geometry is not None:
                self.counters["resolution_changes"] += 1
            self._geometry = geometry
            self._set_roi(geometry)
            self._background = None
            ys, xs = self._crop
            shape = (ys.stop - ys.start, xs.stop - xs.start)
            self._scratch = np.empty(shape, np.float32)
            self._above = np.empty(shape, np.bool_)
        ys, xs = self._crop
        if self._watched == 0:
            return None
        return image.pixels[ys, xs]

    def _relearn(self, cur: np.ndarray | None) -> None:
        """The background becomes `cur` (None: no background), in a float32 picture of its own."""
        if cur is None:
            self._background = None
            return
        if self._background is None or self._background.shape != cur.shape:
            self._background = cur.astype(np.float32)
        else:
            np.copyto(self._background, cur)
        self._background_sub = self._background[::4, ::4].copy()

    def _set_roi(self, geometry: tuple[int, int, int, int]) -> None:
        full_w, full_h, w, h = geometry
        sx, sy = w / full_w, h / full_h
        if self.region:
            x, y, rw, rh = self.region
            x0, y0 = max(0, math.floor(x * sx)), max(0, math.floor(y * sy))
            x1, y1 = min(w, math.ceil((x + rw) * sx)), min(h, math.ceil((y + rh) * sy))
        else:
            x0, y0, x1, y1 = 0, 0, w, h
        x1, y1 = max(x0, x1), max(y0, y1)
        self._crop = (slice(y0, y1), slice(x0, x1))
        self._crop_mask = None
        self._watched = (x1 - x0) * (y1 - y0)
        if self._mask_full is not None and self._watched:
            mask = _resample(self._mask_full, h, w)[y0:y1, x0:x1]
            self._crop_mask = mask
            self._watched = int(np.count_nonzero(mask))

    def _learn(self, cur: np.ndarray, time: float, previous: float | None) -> None:
        """Move the background towards the frame by the share of `background_time` that passed."""
        bg = self._background
        assert bg is not None
        if previous is None or time < previous or self.background_time <= 0:
            alpha = 1.0 if self.background_time <= 0 else min(1.0, max(self._interval, 0.1) / self.background_time)
        else:
            alpha = min(1.0, (time - previous) / self.background_time)
        if alpha >= 1.0:
            self._relearn(cur)
            return
        # bg += alpha * (cur - bg), in place, through the scratch picture (no temporaries).
        delta = np.subtract(cur, bg, out=self._scratch)
        delta *= np.float32(alpha)
        bg += delta
        np.copyto(self._background_sub, bg[::4, ::4])  # while bg is still in the cache

    def evidence_bbox(self, changed: np.ndarray) -> list[int]:
        """[x, y, w, h] in full-frame pixels of the changed pixels (flat indices into the crop)."""
        full_w, full_h, w, h = self._geometry or (1, 1, 1, 1)
        if not changed.size:
            return [0, 0, 0, 0]
        crop_w = self._crop[1].stop - self._crop[1].start
        cols = changed % crop_w
        first, last = int(changed[0]) // crop_w, int(changed[-1]) // crop_w  # flat indices ascend: so do rows
        y0c, x0c = self._crop[0].start, self._crop[1].start
        sx, sy = full_w / w, full_h / h
        x0 = math.floor((x0c + int(cols.min())) * sx)
        y0 = math.floor((y0c + first) * sy)
        x1 = min(full_w, math.ceil((x0c + int(cols.max()) + 1) * sx))
        y1 = min(full_h, math.ceil((y0c + last + 1) * sy))
        return [x0, y0, x1 - x0, y1 - y0]

    def tick(self, time: float, state: StateView) -> FiringResult:
        return None


class _MotionDecider:
    """`MotionTrigger.analyse`'s decision, replayed from scores: see `Trigger.decider`."""

    def __init__(self, rule: str, threshold: float, min_frames: int, max_fraction: float) -> None:
        self.rule, self.threshold, self.min_frames, self.max_fraction = rule, threshold, min_frames, max_fraction
        self._streak = 0
        self._start = 0.0

    def feed(self, score: Score) -> Firing | None:
        if score.value > self.max_fraction or score.value <= self.threshold:
            self._streak = 0  # lighting (re-learnt), or not above the threshold
            return None
        if self._streak == 0:
            self._start = score.time
        self._streak += 1
        if self._streak < self.min_frames:
            return None
        return Firing(self.rule, score.time, {"score": score.value, "frames": self._streak}, onset=self._start)
