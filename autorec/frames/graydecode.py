"""Cheap JPEG -> small grayscale decoding, for analysing camera frames (not for viewing them).

Contracts:
- `GrayDecoder(scale).decode(jpeg)` returns a `GrayImage`: the luma of the
  JPEG at 1/`scale` of its size (scale 1, 2, 4 or 8), as a read-only uint8
  array, plus the full size from the JPEG header. The reduction happens inside
  the decoder (JPEG DCT scaling, FFmpeg's `lowres`), which costs little more
  than the entropy decoding: measured in benchmarks/decode_options.py, it beat
  full decoding plus numpy downscaling, the `gray` flag and `flags2=fast`.
- Anything that is not a whole JPEG raises `FrameDecodeError` (never another
  exception): empty input, no SOI marker or frame header, no EOI marker near
  the end (a cut-off frame, which FFmpeg would otherwise decode silently with
  the missing part filled in), and entropy-coded data the decoder rejects
  (`err_detect=explode` makes corrupt data an error instead of a garbled
  picture). After an error the decoder is rebuilt, so the next frame decodes
  normally.
- The JPEG bytes go to the decoder without an intermediate copy in Python
  (PyAV copies them once into its packet; simplejpeg reads them in place).

Two decoders, one contract (`GrayDecoder.backend`, or per frame `GrayImage.decoder`):
- `turbo`: libjpeg-turbo through simplejpeg (its wheels bundle the library),
  DCT-scaled to 1/`scale` with gray output (the chroma components are
  entropy-decoded but never inverse-transformed), `strict` so that the
  library's "recoverable" warnings (corrupt data, premature end) are errors.
  Used for baseline JPEGs: 1.13-1.19x PyAV's lowres decode at 1/4, 1.4x at 1/8
  on board-photo-1 (benchmarks/decode_options.py).
- `pyav`: FFmpeg's mjpeg decoder with `lowres`. Used for progressive JPEGs,
  where it is ~1.4x faster than libjpeg-turbo, for frames larger than
  `TURBO_MAX_PIXELS` (simplejpeg allocates the output from the header's claim
  before reading a byte of data), and whenever simplejpeg is not importable.
The two differ by a level or two on some pixels (different inverse DCTs);
the motion trigger's thresholds are far coarser than that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import av
import numpy as np

try:  # a core dependency; the fallback keeps `--no-deps` installs and exotic platforms working
    import simplejpeg
except ImportError:  # pragma: no cover - exercised by forcing backend="pyav" in the tests
    simplejpeg = None

from autorec.frames.jpeg import JpegError, jpeg_complete, jpeg_header

SCALES = (1, 2, 4, 8)
_LOWRES = {1: 0, 2: 1, 4: 2, 8: 3}
# Above this (full-size pixels) frames go to PyAV: a damaged header claiming 60000x60000 must not
# make simplejpeg allocate gigabytes before it finds out the data is not there. 8K camera is plenty.
TURBO_MAX_PIXELS = 8192 * 8192

Backend = Literal["auto", "turbo", "pyav"]


def turbo_available() -> bool:
    """Whether libjpeg-turbo (simplejpeg) can be used in this environment."""
    return simplejpeg is not None


class FrameDecodeError(ValueError):
    """The bytes are not a whole, decodable JPEG."""


@dataclass(frozen=True)
class GrayImage:
    """Reduced luma (`pixels`, h x w uint8) of a JPEG whose full size is `full_width` x `full_height`."""

    pixels: np.ndarray
    full_width: int
    full_height: int
    progressive: bool
    decoder: str = "pyav"  # which decoder made `pixels`: "turbo" or "pyav"


class GrayDecoder:
    """Decodes JPEGs to reduced grayscale. One instance per stream; not thread-safe.

    `backend`: "auto" (libjpeg-turbo for baseline JPEGs when available, else PyAV),
    "turbo" (ValueError if simplejpeg is missing; progressive and huge frames still go
    to PyAV) or "pyav" (PyAV only: the benchmark baseline and the fallback's tests).
    """

    def __init__(self, scale: int = 4, backend: Backend = "auto") -> None:
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(map(str, SCALES))}, got {scale!r}")
        if backend not in ("auto", "turbo", "pyav"):
            raise ValueError(f"backend must be auto, turbo or pyav, got {backend!r}")
        if backend == "turbo" and simplejpeg is None:
            raise ValueError("backend turbo: simplejpeg is not installed")
        self.scale = scale
        self.backend = "turbo" if backend != "pyav" and simplejpeg is not None else "pyav"
        self._ctx = self._open()

    def _open(self) -> av.CodecContext:
        ctx = av.CodecContext.create("mjpeg", "r")
        ctx.options = {"lowres": str(_LOWRES[self.scale]), "err_detect": "explode"}
        # One thread: the caller decides how many cores analysis may use.
        ctx.thread_count = 1
        return ctx

    def decode(self, jpeg: bytes) -> GrayImage:
        """The reduced luma of one JPEG; FrameDecodeError if it is not a whole, decodable JPEG."""
        try:
            width, height, progressive = jpeg_header(jpeg)  # also the cheap check for "not a JPEG at all"
        except JpegError as exc:
            raise FrameDecodeError(str(exc)) from None
        if not jpeg_complete(jpeg):
            raise FrameDecodeError(f"JPEG cut off (no EOI marker; {len(jpeg)} bytes)")
        if self.backend == "turbo" and not progressive and width * height <= TURBO_MAX_PIXELS:
            return self._decode_turbo(jpeg, width, height)
        try:
            frames = self._ctx.decode(av.Packet(jpeg))
        except (av.FFmpegError, ValueError, MemoryError) as exc:
            # A failed send can leave the context unusable (e.g. at end of stream): start afresh.
            self._ctx = self._open()
            raise FrameDecodeError(f"corrupt JPEG: {exc}") from None
        if len(frames) != 1:
            self._ctx = self._open()
            raise FrameDecodeError(f"corrupt JPEG: decoder returned {len(frames)} pictures")
        frame = frames[0]
        plane = frame.planes[0]
        # The plane's buffer is referenced, not copied; rows may be padded to line_size.
        pixels = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: frame.height, : frame.width]
        pixels.flags.writeable = False
        return GrayImage(pixels, width, height, progressive)

    def _decode_turbo(self, jpeg: bytes, width: int, height: int) -> GrayImage:
        scale = self.scale
        try:
            # min_width/min_height pick the DCT scaling n/8 whose output is ceil(size / scale): the
            # same size FFmpeg's lowres gives, so a stream that mixes both decoders keeps one geometry.
            out = simplejpeg.decode_jpeg(
                jpeg, colorspace="GRAY", min_width=-(-width // scale), min_height=-(-height // scale), strict=True
            )
        except (ValueError, MemoryError, RuntimeError) as exc:
            raise FrameDecodeError(f"corrupt JPEG: {exc}") from None
        pixels = out.reshape(out.shape[0], out.shape[1])
        pixels.flags.writeable = False
        return GrayImage(pixels, width, height, False, "turbo")
