"""Turns the simulation's timed items into websocket payloads (still sans-I/O).

`StreamEncoder.encode(t, item)` returns the messages to send for one item:
serialized `PurpleDropEvent`s (bytes), a text frame (str) for the `text`
fault, or `CLOSE` for the `close` fault, which the I/O edge turns into
closing every connection. A `CameraFrame` becomes an `image_transform` and
an `image` event with the same timestamp, as pdserver relays them from pdcam;
without a renderer camera frames produce nothing.
"""

from __future__ import annotations

import random
import struct
from typing import Protocol

from autorec import events
from autorec.proto import PurpleDropEvent
from autorec.sim.core import CameraFrame, Fault, Item


class Renderer(Protocol):
    width: int
    height: int

    @property
    def transform(self) -> list[float]: ...

    def frame(self, drops, gain: float = 1.0, offset: float = 0.0, spot=None) -> bytes: ...


class _Close:
    def __repr__(self) -> str:
        return "CLOSE"


CLOSE = _Close()
Message = bytes | str | _Close

OVERSIZED_BYTES = (1 << 20) + 64 * 1024  # just over websockets' default 1 MiB max_size


def pad_jpeg(jpeg: bytes, size: int) -> bytes:
    """`jpeg` grown to at least `size` bytes with comment (COM) segments, which decoders skip."""
    if not jpeg.startswith(b"\xff\xd8"):
        jpeg = b"\xff\xd8\xff\xd9"
    chunks = [b"\xff\xd8"]
    need = size - len(jpeg)
    while need > 0:
        n = min(need, 65533)
        chunks.append(b"\xff\xfe" + struct.pack(">H", n + 2) + b"\0" * n)
        need -= n + 4
    chunks.append(jpeg[2:])
    return b"".join(chunks)


class StreamEncoder:
    """See the module docstring. `renderer` is a `camera.CameraRenderer` or None."""

    def __init__(self, renderer: Renderer | None = None, seed: int = 0):
        self.renderer = renderer
        self._rng = random.Random(f"{seed}:faults")
        self._last_jpeg = b""
        self._transform: list[float] = list(renderer.transform) if renderer is not None else []

    def encode(self, t: float, item: Item) -> list[Message]:
        if isinstance(item, PurpleDropEvent):
            return [item.SerializeToString()]
        if isinstance(item, CameraFrame):
            if self.renderer is None:
                return []
            if item.spot is None:
                jpeg = self.renderer.frame(item.drops, gain=item.gain, offset=item.offset)
            else:
                jpeg = self.renderer.frame(item.drops, gain=item.gain, offset=item.offset, spot=item.spot)
            self._last_jpeg = jpeg
            return [self._image_transform(t), self._image(t, jpeg)]
        if isinstance(item, Fault):
            return self._fault(t, item.kind)
        raise TypeError(f"not a simulation item: {item!r}")

    def _image_transform(self, t: float) -> bytes:
        ev = PurpleDropEvent()
        it = ev.image_transform
        it.transform.extend(self._transform)
        if self.renderer is not None:
            it.image_width = getattr(self.renderer, "width", 1024)
            it.image_height = getattr(self.renderer, "height", 768)
        events.set_timestamp(ev, t)
        return ev.SerializeToString()

    def _image(self, t: float, jpeg: bytes) -> bytes:
        ev = PurpleDropEvent()
        ev.image.image_data = jpeg
        events.set_timestamp(ev, t)
        return ev.SerializeToString()

    def _fault(self, t: float, kind: str) -> list[Message]:
        if kind == "close":
            return [CLOSE]
        if kind == "text":
            return ["autorec sim: a text frame (fault injection)"]
        if kind == "garbage":
            # A run of 0xff is an over-long varint: no protobuf parser accepts it.
            return [b"\xff" * 12 + self._rng.randbytes(52)]
        if kind == "truncated":
            ev = PurpleDropEvent()
            ev.hv_regulator.voltage = 100.0
            events.set_timestamp(ev, t)
            whole = ev.SerializeToString()
            return [whole[: len(whole) - 5]]
        if kind == "oversized":
            return [self._image(t, pad_jpeg(self._last_jpeg, OVERSIZED_BYTES))]
        raise ValueError(f"unknown fault {kind!r}")
