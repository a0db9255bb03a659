"""Small JPEG thumbnails of a segment's camera frames: the contact strip of the report and the web UI.

`contact_strip(path, start, end, count, evidence_time, bbox)` reads one
segment log in a single pass and returns up to `count` thumbnails: the frame
nearest `evidence_time` (the first firing; `bbox`, in full-frame pixels, is
drawn on it) and frames spaced evenly over `[start, end]`. Only the chosen
frames' JPEG bytes are held (one per slot), so memory does not grow with the
segment. Frames are decoded at reduced scale inside the JPEG decoder
(FFmpeg's `lowres`), scaled to `width` pixels wide and re-encoded as small
JPEGs (`quality` is FFmpeg's qscale, 2 = best, 31 = smallest).

Bad frames never raise: a frame that is not a whole JPEG, one whose header
claims more than `MAX_PIXELS` pixels (a decompression bomb: a few KB on the
wire, gigabytes decoded), or one the decoder rejects is skipped and counted
in `Strip.skipped`; the slot takes the next usable frame instead.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from autorec import events
from autorec.jpeg import JpegError, jpeg_complete, jpeg_header
from autorec.logfile import LogReader

log = logging.getLogger(__name__)

MAX_PIXELS = 4096 * 4096
_LOWRES_FOR = ((8, 3), (4, 2), (2, 1))  # (reduction, FFmpeg lowres) from the largest


@dataclass
class Thumb:
    time: float
    jpeg: bytes
    width: int
    height: int
    evidence: bool = False  # the frame at the first firing, with the evidence box drawn


@dataclass
class Strip:
    thumbs: list[Thumb] = field(default_factory=list)
    frames: int = 0  # camera frames in the segment
    skipped: int = 0  # frames that could not be used
    problem: str | None = None


def _usable(jpeg: bytes) -> tuple[int, int] | None:
    try:
        w, h, _ = jpeg_header(jpeg)
    except JpegError:
        return None
    if w <= 0 or h <= 0 or w * h > MAX_PIXELS or not jpeg_complete(jpeg):
        return None
    return w, h


def _draw_box(rgb: np.ndarray, box: tuple[int, int, int, int], color=(255, 40, 200), thickness: int = 2) -> None:
    h, w = rgb.shape[:2]
    x0, y0, bw, bh = box
    x0, y0 = max(0, min(w - 1, x0)), max(0, min(h - 1, y0))
    x1, y1 = max(0, min(w - 1, x0 + max(bw, thickness * 2))), max(0, min(h - 1, y0 + max(bh, thickness * 2)))
    for t in range(thickness):
        rgb[max(0, y0 - t), x0 : x1 + 1] = color
        rgb[min(h - 1, y1 + t), x0 : x1 + 1] = color
        rgb[y0 : y1 + 1, max(0, x0 - t)] = color
        rgb[y0 : y1 + 1, min(w - 1, x1 + t)] = color


def make_thumbnail(
    jpeg: bytes, width: int = 192, quality: int = 8, bbox: list[int] | tuple[int, ...] | None = None
) -> tuple[bytes, int, int] | None:
    """A small JPEG of `jpeg`, `width` pixels wide, with `bbox` (full-frame x, y, w, h) drawn; None if unusable."""
    size = _usable(jpeg)
    if size is None:
        return None
    full_w, full_h = size
    lowres = next((lr for factor, lr in _LOWRES_FOR if full_w // factor >= width), 0)
    try:
        dec = av.CodecContext.create("mjpeg", "r")
        dec.options = {"lowres": str(lowres), "err_detect": "explode"}
        dec.thread_count = 1
        frames = dec.decode(av.Packet(jpeg))
        if len(frames) != 1:
            return None
        height = max(2, round(full_h * width / full_w / 2) * 2)
        rgb = frames[0].reformat(width=width, height=height, format="rgb24").to_ndarray().copy()
        if bbox is not None and len(bbox) == 4:
            scale = width / full_w
            _draw_box(rgb, tuple(round(v * scale) for v in bbox))  # type: ignore[arg-type]
        enc = av.CodecContext.create("mjpeg", "w")
        enc.width, enc.height = width, height
        enc.pix_fmt = "yuvj420p"
        enc.time_base = Fraction(1, 25)
        enc.qmin = enc.qmax = quality  # a fixed quantiser: the size follows the picture, not a bit rate
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuvj420p")
        packets = enc.encode(frame) + enc.encode(None)
    except (av.FFmpegError, ValueError, MemoryError) as exc:
        log.debug("thumbnail failed: %s", exc)
        return None
    data = b"".join(bytes(p) for p in packets)
    return (data, width, height) if data else None


def contact_strip(
    path: str | os.PathLike[str],
    start: float,
    end: float,
    count: int = 4,
    evidence_time: float | None = None,
    bbox: list[int] | None = None,
    width: int = 192,
) -> Strip:
    """Thumbnails of one segment (see the module docstring). Never raises for bad content."""
    strip = Strip()
    spaced = max(0, count - (1 if evidence_time is not None else 0))
    targets: list[tuple[float, bool]] = []
    if evidence_time is not None:
        targets.append((evidence_time, True))
    if spaced == 1:
        targets.append(((start + end) / 2, False))
    elif spaced > 1:
        step = (end - start) / spaced
        targets += [(start + step * (i + 0.5), False) for i in range(spaced)]
    best: list[tuple[float, float, bytes] | None] = [None] * len(targets)  # (distance, time, jpeg)
    reader = LogReader(path)
    try:
        for record in reader.records():
            if events.peek_kind(record.payload) != "image":
                continue
            try:
                event = events.decode(record.payload)
            except events.DecodeError:
                strip.skipped += 1
                continue
            t = events.timestamp(event)
            if t is None:
                continue
            strip.frames += 1
            jpeg = event.image.image_data
            if _usable(jpeg) is None:
                strip.skipped += 1
                continue
            for i, (target, _) in enumerate(targets):
                d = abs(t - target)
                if best[i] is None or d < best[i][0]:  # type: ignore[index]
                    best[i] = (d, t, jpeg)
    except OSError as exc:
        strip.problem = f"cannot read {path}: {exc.strerror or exc}"
        return strip
    used: set[float] = set()
    for (_, is_evidence), chosen in zip(targets, best):
        if chosen is None or (chosen[1] in used and not is_evidence):
            continue
        used.add(chosen[1])
        thumb = make_thumbnail(chosen[2], width=width, bbox=bbox if is_evidence else None)
        if thumb is None:
            strip.skipped += 1
            continue
        strip.thumbs.append(Thumb(chosen[1], thumb[0], thumb[1], thumb[2], is_evidence))
    strip.thumbs.sort(key=lambda th: th.time)
    return strip
