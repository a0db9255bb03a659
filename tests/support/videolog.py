"""Test helpers for video export: small logs of real JPEG frames with known timestamps."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from autorec.io.logfile import LogWriter
from tests.support import eventbuilder as build

T0 = 1_790_000_000.25  # an epoch time in 2026, with a fraction


def make_jpeg(value: int, width: int = 320, height: int = 240) -> bytes:
    """A real JPEG (PyAV's mjpeg encoder) whose picture encodes `value` as a grey level and a bar."""
    rgb = np.full((height, width, 3), (value * 37) % 200 + 20, dtype=np.uint8)
    x = (value * 13) % max(1, width - 16)
    rgb[:, x : x + 16, 0] = 250
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuvj420p"
    ctx.time_base = Fraction(1, 25)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuvj420p")
    packets = list(ctx.encode(frame)) + list(ctx.encode(None))
    return bytes(packets[0])


def image_event(jpeg: bytes, t: float | None) -> bytes:
    """A serialized camera frame (t None: unstamped)."""
    return build.image(t, jpeg).SerializeToString()


def transform_event(t: float | None, width: int = 320, height: int = 240) -> bytes:
    """A serialized image_transform of a `width` x `height` frame, no homography."""
    return build.image_transform(t, width, height).SerializeToString()


def sensor_event(t: float) -> bytes:
    """A serialized sensor reading (hv_regulator) between frames, as pdserver interleaves them."""
    return build.hv(t, 200.0).SerializeToString()


def write_log(path: Path, payloads: list[bytes]) -> Path:
    with LogWriter(path, mode="overwrite") as w:
        for p in payloads:
            w.write(p)
    return path


def frames_log(path: Path, times: list[float | None], jpegs: list[bytes] | None = None, **size) -> Path:
    """A pdserver-like log: per frame an image_transform + image pair, sensors in between."""
    payloads: list[bytes] = []
    last = T0
    for i, t in enumerate(times):
        jpeg = jpegs[i] if jpegs is not None else make_jpeg(i, **size)
        payloads.append(transform_event(t))
        payloads.append(image_event(jpeg, t))
        if t is not None:
            last = t
        payloads.append(sensor_event(last + 0.01))
    return write_log(path, payloads)


def decoded_times(path: Path) -> tuple[list[float], float, tuple[int, int]]:
    """(per-frame presentation times, file duration in seconds, (width, height)) decoded with PyAV."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        times = [float(f.pts * f.time_base) for f in c.decode(stream)]
        size = (stream.codec_context.width, stream.codec_context.height)
        duration = c.duration / av.time_base if c.duration is not None else float("nan")
    return times, duration, size


def packet_payloads(path: Path) -> list[tuple[float, bytes]]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return [(float(p.pts * p.time_base), bytes(p)) for p in c.demux(stream) if p.size]


def flat_jpeg(width: int, height: int) -> bytes:
    """A valid grey baseline JPEG of any size, built by hand without encoding a picture.

    One component, Huffman tables with a single 1-bit code each (DC difference 0, end of block), so
    every 8x8 block is two zero bits: a 12000x12000 picture is 560 kB on the wire and 144 MB decoded
    (a decompression bomb that FFmpeg decodes for real).
    """

    def seg(marker: int, body: bytes) -> bytes:
        return b"\xff" + bytes([marker]) + struct.pack(">H", len(body) + 2) + body

    dqt = seg(0xDB, b"\x00" + b"\x01" * 64)
    sof = seg(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    dht_dc = seg(0xC4, b"\x00" + bytes([1] + [0] * 15) + b"\x00")
    dht_ac = seg(0xC4, b"\x10" + bytes([1] + [0] * 15) + b"\x00")
    sos = seg(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    return b"\xff\xd8" + dqt + sof + dht_dc + dht_ac + sos + b"\x00" * ((blocks * 2 + 7) // 8) + b"\xff\xd9"
