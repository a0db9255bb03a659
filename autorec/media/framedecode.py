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
  (PyAV copies them once into its packet).
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np

from autorec.media.jpeg import JpegError, jpeg_complete, jpeg_header

SCALES = (1, 2, 4, 8)
_LOWRES = {1: 0, 2: 1, 4: 2, 8: 3}


class FrameDecodeError(ValueError):
    """The bytes are not a whole, decodable JPEG."""


@dataclass(frozen=True)
class GrayImage:
    """Reduced luma (`pixels`, h x w uint8) of a JPEG whose full size is `full_width` x `full_height`."""

    pixels: np.ndarray
    full_width: int
    full_height: int
    progressive: bool


class GrayDecoder:
    """Decodes JPEGs to reduced grayscale. One instance per stream; not thread-safe."""

    def __init__(self, scale: int = 4) -> None:
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(map(str, SCALES))}, got {scale!r}")
        self.scale = scale
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
