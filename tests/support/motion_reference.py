"""The motion trigger's analysis as round 1 wrote it: the reference for the faster one.

`RoundOneMotion` is `MotionTrigger` with `analyse` and its helpers as they were before
issue 21 (commit c02976e): straightforward numpy, a fresh float32 picture per step, the
clipping masks on whole pictures, the bounding box from `any()` along each axis. The
pacing (`feed`, `detect_fps`), options and counters are `MotionTrigger`'s own.

Used by tests/test_motion.py (scores, firings and evidence must match the optimised
analysis) and by benchmarks/motion_speed.py (the round-1 trigger, with the PyAV decoder,
is the in-process stand-in for the issue's 693 frames/s baseline).
"""

from __future__ import annotations

import math

import numpy as np

from autorec.frames.graydecode import FrameDecodeError, GrayImage
from autorec.triggers.base import FiringResult
from autorec.triggers.motion import _BRIGHT, _DARK, MotionTrigger


def brightness_fit(bg: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """Round 1's least-squares (gain, offset) on the whole pictures' 1-in-16 subsample."""
    b = bg[::4, ::4].astype(np.float64).reshape(-1)
    c = cur[::4, ::4].astype(np.float64).reshape(-1)
    keep = (b > _DARK) & (b < _BRIGHT) & (c > _DARK) & (c < _BRIGHT)
    b, c = b[keep], c[keep]
    n = b.size
    if n < 16:
        return 1.0, 0.0
    mb, mc = b.mean(), c.mean()
    b -= mb
    c -= mc
    var = float(np.dot(b, b))
    gain = float(np.dot(b, c)) / var if var > 1e-3 * n else 1.0
    if not (math.isfinite(gain) and 0.2 <= gain <= 5.0):
        gain = 1.0
    return gain, float(mc - gain * mb)


class RoundOneMotion(MotionTrigger):
    """`MotionTrigger` with round 1's analysis (see the module docstring)."""

    def analyse(self, time: float, jpeg: bytes, image: GrayImage | FrameDecodeError | None = None) -> FiringResult:
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
            self._background = cur
            self._streak = 0
            self.last_score = None
            self.score(time, 0.0, self.threshold)
            return None

        gain, offset = brightness_fit(bg, cur)
        predicted = bg * np.float32(gain)
        predicted += np.float32(offset)
        diff = np.subtract(cur, predicted)
        np.abs(diff, out=diff)
        changed = diff > np.float32(self.pixel_threshold * gain)
        count = int(np.count_nonzero(changed))
        if count:
            changed &= (cur > _DARK) & (cur < _BRIGHT) & (predicted > _DARK) & (predicted < _BRIGHT)
            if self._crop_mask is not None:
                changed &= self._crop_mask
            count = int(np.count_nonzero(changed))
        score = count / self._watched if self._watched else 0.0
        self.last_score = score
        self.score(time, score, self.threshold)

        if score > self.max_fraction:
            self.counters["global_changes"] += 1
            self._background = cur
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

    def _prepare(self, image: GrayImage) -> np.ndarray | None:
        h, w = image.pixels.shape
        geometry = (image.full_width, image.full_height, w, h)
        if geometry != self._geometry:
            if self._geometry is not None:
                self.counters["resolution_changes"] += 1
            self._geometry = geometry
            self._set_roi(geometry)
            self._background = None
        ys, xs = self._crop
        if self._watched == 0:
            return None
        return image.pixels[ys, xs].astype(np.float32)

    def _learn(self, cur: np.ndarray, time: float, previous: float | None) -> None:
        bg = self._background
        assert bg is not None
        if previous is None or time < previous or self.background_time <= 0:
            alpha = 1.0 if self.background_time <= 0 else min(1.0, max(self._interval, 0.1) / self.background_time)
        else:
            alpha = min(1.0, (time - previous) / self.background_time)
        if alpha >= 1.0:
            self._background = cur
            return
        delta = cur - bg
        delta *= np.float32(alpha)
        bg += delta

    def evidence_bbox(self, changed: np.ndarray) -> list[int]:
        full_w, full_h, w, h = self._geometry or (1, 1, 1, 1)
        ys_any = np.flatnonzero(changed.any(axis=1))
        xs_any = np.flatnonzero(changed.any(axis=0))
        if not len(xs_any):
            return [0, 0, 0, 0]
        y0c, x0c = self._crop[0].start, self._crop[1].start
        sx, sy = full_w / w, full_h / h
        x0 = math.floor((x0c + xs_any[0]) * sx)
        y0 = math.floor((y0c + ys_any[0]) * sy)
        x1 = min(full_w, math.ceil((x0c + xs_any[-1] + 1) * sx))
        y1 = min(full_h, math.ceil((y0c + ys_any[-1] + 1) * sy))
        return [x0, y0, x1 - x0, y1 - y0]
