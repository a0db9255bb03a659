"""Small JPEG thumbnails of a segment's camera frames: the contact strip of the report and the web UI.

`contact_strip(path, start, end, count, evidence_time, bbox)` returns up to
`count` thumbnails of one segment log: the frame nearest `evidence_time` (the
first firing; `bbox`, in full-frame pixels, is drawn on it) and frames spaced
evenly over `[start, end]`. It reads the first bytes of each record for the
frame times (one small `pread` each), then only the chosen frames, so
neither memory nor disk reads grow with the size of the frames. Frames are
decoded at reduced scale inside the JPEG decoder (FFmpeg's `lowres`), scaled
to `width` pixels wide and re-encoded as small JPEGs (`quality` is the fixed
quantiser, 2 = best, 31 = smallest).

Bad frames never raise: a frame that is not a whole JPEG, one whose header
claims more than `MAX_PIXELS` pixels (a decompression bomb: a few KB on the
wire, gigabytes decoded), or one the decoder rejects is skipped and counted
in `Strip.skipped`; the slot takes the next nearest usable frame instead.
"""

from __future__ import annotations

import bisect
import logging
import os
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from autorec import events
from autorec.frames.jpeg import JpegError, jpeg_complete, jpeg_header

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


class Thumbnailer:
    """Makes small JPEGs; keeps its FFmpeg decoders and encoders between frames. Not thread-safe."""

    def __init__(self, width: int = 192, quality: int = 6) -> None:
        self.width = width
        self.quality = quality
        self._decoders: dict[int, av.CodecContext] = {}
        self._encoders: dict[tuple[int, int], av.CodecContext] = {}
        self._scale = VideoReformatter()
        self._to_rgb = VideoReformatter()
        self._to_yuv = VideoReformatter()

    def _decoder(self, lowres: int) -> av.CodecContext:
        dec = self._decoders.get(lowres)
        if dec is None:
            dec = av.CodecContext.create("mjpeg", "r")
            dec.options = {"lowres": str(lowres), "err_detect": "explode"}
            dec.thread_count = 1
            self._decoders[lowres] = dec
        return dec

    def _encoder(self, width: int, height: int) -> av.CodecContext:
        enc = self._encoders.get((width, height))
        if enc is None:
            enc = av.CodecContext.create("mjpeg", "w")
            enc.width, enc.height = width, height
            enc.pix_fmt = "yuvj420p"
            enc.time_base = Fraction(1, 25)
            enc.qmin = enc.qmax = self.quality  # a fixed quantiser: the size follows the picture, not a bit rate
            self._encoders[(width, height)] = enc
        return enc

    def make(self, jpeg: bytes, bbox: list[int] | tuple[int, ...] | None = None) -> tuple[bytes, int, int] | None:
        """A small JPEG of `jpeg`, `width` wide, with `bbox` (full-frame x, y, w, h) drawn; None if unusable."""
        size = _usable(jpeg)
        if size is None:
            return None
        full_w, full_h = size
        width = self.width
        lowres = next((lr for factor, lr in _LOWRES_FOR if full_w // factor >= width), 0)
        height = max(2, round(full_h * width / full_w / 2) * 2)
        try:
            frames = self._decoder(lowres).decode(av.Packet(jpeg))
        except (av.FFmpegError, ValueError, MemoryError) as exc:
            log.debug("thumbnail: cannot decode: %s", exc)
            self._decoders.pop(lowres, None)  # a failed decode can leave the context unusable
            return None
        if len(frames) != 1:
            self._decoders.pop(lowres, None)
            return None
        try:
            # One kept reformatter per conversion: PyAV then reuses its scaler (2.4 ms a call without,
            # measured) and AREA scaling is 0.2 ms for 256x192 -> 160x120 against 3-5 ms for bicubic.
            if bbox is not None and len(bbox) == 4:
                rgb = self._to_rgb.reformat(
                    frames[0], width=width, height=height, format="rgb24", interpolation="AREA"
                ).to_ndarray()
                rgb = rgb.copy()
                scale = width / full_w
                _draw_box(rgb, tuple(round(v * scale) for v in bbox))  # type: ignore[arg-type]
                small = self._to_yuv.reformat(av.VideoFrame.from_ndarray(rgb, format="rgb24"), format="yuvj420p")
            else:
                small = self._scale.reformat(
                    frames[0], width=width, height=height, format="yuvj420p", interpolation="AREA"
                )
            packets = self._encoder(width, height).encode(small)
        except (av.FFmpegError, ValueError, MemoryError) as exc:
            log.debug("thumbnail: cannot encode: %s", exc)
            self._encoders.pop((width, height), None)
            return None
        data = b"".join(bytes(p) for p in packets)
        return (data, width, height) if data else None


_HEAD = 48  # bytes of a record's payload that hold its kind and (for images) its timestamp


def frame_index(path: str | os.PathLike[str], strip: Strip) -> list[tuple[float, int, int]]:
    """(time, offset, length) of each camera frame record of a log, from record heads only."""
    from autorec.io.logfile import DEFAULT_MAX_RECORD, HEADER

    frames: list[tuple[float, int, int]] = []
    fd = _open_log(path)  # a symlink planted in the directory is not read, a FIFO never blocks
    try:
        size = os.fstat(fd).st_size
        offset = 0
        while offset + 4 <= size:
            buf = os.pread(fd, 4 + _HEAD, offset)
            (length,) = HEADER.unpack_from(buf)
            if length > DEFAULT_MAX_RECORD or offset + 4 + length > size:
                break  # corrupt or cut off: what came before is still used
            head = buf[4 : 4 + min(length, _HEAD)]
            if events.peek_kind(head) == "image":
                t = events.head_timestamp("image", head)
                if isinstance(t, float):
                    frames.append((t, offset, length))
                else:
                    strip.skipped += 1
            offset += 4 + length
    finally:
        os.close(fd)
    return frames


def _open_log(path: str | os.PathLike[str]) -> int:
    """A read descriptor of a regular file (no link followed, a FIFO or device refused without blocking)."""
    from autorec.io.boundedread import open_regular

    f = open_regular(path)
    try:
        return os.dup(f.fileno())
    finally:
        f.close()


def read_frame(path: str | os.PathLike[str], offset: int, length: int) -> bytes | None:
    """The JPEG of the camera-frame record at `offset` (`length` payload bytes, as `frame_index` gives),
    read without following a symlink; None if the record does not decode. OSError if the file cannot be read."""
    fd = _open_log(path)
    try:
        payload = os.pread(fd, length, offset + 4)
    finally:
        os.close(fd)
    try:
        return events.decode(payload).image.image_data
    except events.DecodeError:
        return None


def contact_strip(
    path: str | os.PathLike[str],
    start: float,
    end: float,
    count: int = 4,
    evidence_time: float | None = None,
    bbox: list[int] | None = None,
    width: int = 192,
    thumbnailer: Thumbnailer | None = None,
) -> Strip:
    """Thumbnails of one segment (see the module docstring). Never raises for bad content."""
    if thumbnailer is None or thumbnailer.width != width:
        thumbnailer = Thumbnailer(width)

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
    # Pass 1: the time of every camera frame from the first bytes of its record: one small pread per
    # record, so a 60 MB segment costs a page per record from the disk, not 60 MB.
    try:
        frames = frame_index(path, strip)
    except OSError as exc:
        strip.problem = f"cannot read {path}: {exc.strerror or exc}"
        return strip
    strip.frames = len(frames)
    if not frames or not targets:
        return strip
    times = [f[0] for f in frames]
    # Pass 2: for each slot, the frame nearest its time that decodes; the next ones if it does not.
    order = sorted(range(len(frames)), key=lambda i: times[i])
    sorted_times = [times[i] for i in order]
    used: set[int] = set()
    try:
        for target, is_evidence in targets:
            k = bisect.bisect_left(sorted_times, target)
            candidates = sorted(
                range(max(0, k - 3), min(len(order), k + 3)), key=lambda j: abs(sorted_times[j] - target)
            )
            for j in candidates:
                i = order[j]
                if i in used and not is_evidence:
                    continue
                t, offset, length = frames[i]
                jpeg = read_frame(path, offset, length)
                thumb = None if jpeg is None else thumbnailer.make(jpeg, bbox=bbox if is_evidence else None)
                if thumb is None:
                    strip.skipped += 1
                    continue
                used.add(i)
                strip.thumbs.append(Thumb(t, thumb[0], thumb[1], thumb[2], is_evidence))
                break
    except OSError as exc:
        strip.problem = f"cannot read {path}: {exc.strerror or exc}"
    strip.thumbs.sort(key=lambda th: (th.time, not th.evidence))
    # a spaced frame within a second of the evidence frame shows the same moment again: leave it out
    evidence = [th.time for th in strip.thumbs if th.evidence]
    strip.thumbs = [th for th in strip.thumbs if th.evidence or all(abs(th.time - t) >= 1.0 for t in evidence)]
    return strip


def filmstrip(
    paths: list[str | os.PathLike[str]],
    count: int = 48,
    since: float | None = None,
    until: float | None = None,
    thumbnailer: Thumbnailer | None = None,
) -> Strip:
    """Up to `count` thumbnails spread evenly (by frame, in time order) over the camera frames of
    `paths` (the night's timelapse logs). Never raises for bad content; a file that cannot be
    read is named in `Strip.problem` and the others are used."""
    thumbnailer = thumbnailer or Thumbnailer(192)
    strip = Strip()
    frames: list[tuple[float, str, int, int]] = []
    for path in paths:
        try:
            frames += [(t, os.fspath(path), off, n) for t, off, n in frame_index(path, strip)]
        except OSError as exc:
            strip.problem = f"cannot read {path}: {exc.strerror or exc}"
    frames = [f for f in frames if (since is None or f[0] >= since) and (until is None or f[0] <= until)]
    frames.sort()
    strip.frames = len(frames)
    if not frames:
        return strip
    step = max(1.0, len(frames) / count)
    picked = sorted({int(i * step) for i in range(min(count, len(frames)))})
    for i in picked:
        t, path, offset, length = frames[i]
        try:
            jpeg = read_frame(path, offset, length)
        except OSError:
            jpeg = None
        thumb = None if jpeg is None else thumbnailer.make(jpeg)
        if thumb is None:
            strip.skipped += 1
            continue
        strip.thumbs.append(Thumb(t, thumb[0], thumb[1], thumb[2]))
    return strip
