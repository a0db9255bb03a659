"""JPEG frame headers: a camera frame's size without decoding its pixels.

`autorec info` (first frame's resolution), `autorec video` (frame sizes while
exporting) and the motion trigger's decoder (`autorec.frames.graydecode`) all read
frame sizes here. Pure Python, no FFmpeg or numpy: cheap enough for the CLI.

Contracts:
- `jpeg_header(data)` returns `(width, height, progressive)` from the first
  start-of-frame (SOF) marker, walking the marker segments from SOI; a handful
  of steps, no entropy-coded data read. Anything without SOI or a readable,
  non-zero-sized SOF before the first scan raises `JpegError`.
- `jpeg_size(data)` is `(width, height)`, or None where `jpeg_header` raises.
- `jpeg_complete(data)` is True when an EOI marker ends the data (allowing
  the little padding some encoders add after it): False for a frame cut off
  in transit, which FFmpeg would otherwise decode with the rest made up.
"""

from __future__ import annotations

import struct

# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic).
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
# Some encoders pad after EOI; look for it this far from the end.
_EOI_SLACK = 64


class JpegError(ValueError):
    """The bytes are not a JPEG with a readable frame header."""


def jpeg_header(data: bytes | memoryview) -> tuple[int, int, bool]:
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        raise JpegError("not a JPEG (no SOI marker)")
    pos = 2
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            raise JpegError(f"not a JPEG (bad marker at byte {pos})")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # EOI or scan data before any frame header
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in _SOF:
            if pos + 9 > n:
                break
            height, width = struct.unpack_from(">HH", data, pos + 5)
            if width == 0 or height == 0:
                raise JpegError("JPEG frame header has a zero size")
            return width, height, marker in _PROGRESSIVE
        pos += 2 + length
    raise JpegError("not a whole JPEG (no frame header)")


def jpeg_size(data: bytes | memoryview) -> tuple[int, int] | None:
    try:
        width, height, _ = jpeg_header(data)
    except JpegError:
        return None
    return width, height


def jpeg_complete(data: bytes | memoryview) -> bool:
    return bytes(data[-_EOI_SLACK:]).find(b"\xff\xd9") != -1
