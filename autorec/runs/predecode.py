"""Decoding the motion trigger's frames ahead, on other cores, for backtests (`run --log --jobs N`).

A backtest of a camera log spends most of its time decoding the JPEGs the
motion trigger analyses. The decode is a pure function of the frame's bytes;
everything after it (background, scores, firings, segments) depends on the
frames before and stays in the single pipeline thread. So `Predecoder` wraps
the message iterator given to `run_file`: it reads messages ahead, asks each
motion trigger's own frame grid which frames it will analyse (a copy of the
trigger's `autorec.triggers.framegrid.FrameGrid`, run on the log's timestamps
and following the trigger's signs of activity, so the idle rate is included),
decodes those in a thread pool
(libjpeg-turbo and FFmpeg release the GIL while decoding), and hands the
results to the triggers through their `decoded_ahead` hook
(`autorec.triggers.motion`).

Contracts:
- The segments, scores and counters are the same as without it, whatever
  `jobs` is: a trigger decides which frames it analyses as always; a frame it
  analyses that was not decoded ahead (a wrong guess: after the timeline
  corrected a damaged timestamp, or when the trigger leaves its idle rate on a
  sign in the frames read ahead) is decoded in the pipeline thread, and one
  decoded ahead but never asked for is dropped after `keep` messages. Tested
  against the single-threaded run (tests/test_predecode.py).
- Memory: at most `ahead` messages read ahead plus the reduced gray pictures
  of the frames not yet consumed (~50 kB each at 1024x768 / 4).
- The wrapped source's other attributes (a `FileSource`'s `bytes`, `records`,
  `truncated`, `corrupt`) read through the wrapper.
- With no motion trigger, or `jobs <= 1`, `predecoded()` returns the source as
  it is: nothing to gain.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from threading import local

from autorec import events
from autorec.core.engine import RuleEngine
from autorec.core.streamitems import Message
from autorec.frames.graydecode import FrameDecodeError, GrayDecoder, GrayImage
from autorec.proto import PurpleDropEvent
from autorec.triggers.framegrid import FrameGrid
from autorec.triggers.motion import MotionTrigger

log = logging.getLogger(__name__)


def default_jobs() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class _Guess:
    """The trigger's grid run ahead on the log's own timestamps: which frames the trigger will analyse.

    The pipeline's timeline carries a damaged timestamp (one far behind) forward instead of
    going back: such a frame is not due here either, unless `STEP_FRAMES` frames in a row are
    behind (a real clock step, which the timeline follows too). Before each frame the copy takes
    the trigger's latest signs of activity (`FrameGrid.follow`); when the trigger analyses a frame
    that was not guessed, `resync` puts the copy back in phase with the trigger's grid.
    """

    STEP_FRAMES = 3

    def __init__(self, trigger_grid: FrameGrid) -> None:
        self.trigger_grid = trigger_grid
        self.grid = trigger_grid.copy()
        self._behind = 0

    def due(self, time: float) -> bool:
        grid = self.grid
        if grid.last is not None and time < grid.last:
            self._behind += 1
            if self._behind < self.STEP_FRAMES:
                return False
        self._behind = 0
        grid.follow(self.trigger_grid)
        return grid.due(time)

    def resync(self) -> None:
        self.grid.resync(self.trigger_grid)


class _Ahead:
    """One motion trigger's frames decoded ahead: event id -> (event, future). The event is held
    so that its id cannot be reused by another object while the entry exists."""

    def __init__(self, trigger: MotionTrigger) -> None:
        self.trigger = trigger
        self.scale = trigger.scale
        self.guess = _Guess(trigger.grid)
        self.pending: dict[int, tuple[PurpleDropEvent, Future]] = {}
        self.hits = 0
        self.misses = 0
        trigger.decoded_ahead = self.take

    def take(self, event: PurpleDropEvent) -> GrayImage | FrameDecodeError | None:
        entry = self.pending.pop(id(event), None)
        if entry is None or entry[0] is not event:
            self.misses += 1
            self.guess.resync()
            return None
        self.hits += 1
        return entry[1].result()


class Predecoder:
    """Iterable over `source`'s messages that decodes the motion triggers' frames ahead. See the module docstring."""

    def __init__(
        self, source: Iterable[Message], triggers: list[MotionTrigger], jobs: int, ahead: int = 64, keep: int = 512
    ) -> None:
        self.source = source
        self.jobs = max(1, jobs)
        self.ahead = ahead  # messages read ahead of the one handed on
        self.keep = keep  # messages after which a frame decoded ahead and not asked for is dropped
        self.streams = [_Ahead(t) for t in triggers]
        self._local = local()

    def __getattr__(self, name: str):
        # The wrapped source's own attributes (a FileSource's bytes, records, truncated, corrupt)
        # read through, so the caller can keep using the wrapper in its place.
        if name == "source":  # not set yet (during construction): no recursion
            raise AttributeError(name)
        return getattr(self.source, name)

    @property
    def counters(self) -> dict[str, int]:
        """Frames found decoded ahead (`hits`) and decoded in the pipeline thread after all (`misses`)."""
        return {"hits": sum(s.hits for s in self.streams), "misses": sum(s.misses for s in self.streams)}

    def _decode(self, scale: int, jpeg: bytes) -> GrayImage | FrameDecodeError:
        decoders = getattr(self._local, "decoders", None)
        if decoders is None:
            decoders = self._local.decoders = {}
        decoder = decoders.get(scale)
        if decoder is None:
            decoder = decoders[scale] = GrayDecoder(scale)
        try:
            return decoder.decode(jpeg)
        except FrameDecodeError as exc:
            return exc

    def __iter__(self) -> Iterator[Message]:
        read: deque[Message] = deque()
        handed: deque[tuple[PurpleDropEvent | None, list[_Ahead]]] = deque()  # handed on, and who holds it
        with ThreadPoolExecutor(self.jobs, thread_name_prefix="predecode") as pool:
            try:
                for msg in self.source:
                    self._submit(pool, msg)
                    read.append(msg)
                    if len(read) > self.ahead:
                        yield self._hand(read.popleft(), handed)
                while read:
                    yield self._hand(read.popleft(), handed)
            finally:
                for stream in self.streams:
                    for _, future in stream.pending.values():
                        future.cancel()
                    stream.pending.clear()
        log.debug("predecode: %s", self.counters)

    def _submit(self, pool: ThreadPoolExecutor, msg: Message) -> None:
        event = msg.event
        if event is None or msg.kind != "image":
            return
        t = events.timestamp(event)
        if t is None:
            return
        jpeg: bytes | None = None
        for stream in self.streams:
            if stream.guess.due(t):
                if jpeg is None:
                    jpeg = event.image.image_data
                stream.pending[id(event)] = (event, pool.submit(self._decode, stream.scale, jpeg))

    def _hand(self, msg: Message, handed: deque[tuple[PurpleDropEvent | None, list[_Ahead]]]) -> Message:
        event = msg.event
        handed.append((event, [s for s in self.streams if id(event) in s.pending]))
        if len(handed) > self.keep:
            # Not asked for in `keep` messages: the trigger did not analyse it (or the timeline still
            # holds it, and it will be decoded in the pipeline thread after all). Free the picture.
            old, streams = handed.popleft()
            for stream in streams:
                entry = stream.pending.get(id(old))
                if entry is not None and entry[0] is old:
                    del stream.pending[id(old)]
        return msg


def predecoded(source: Iterable[Message], engine: RuleEngine, jobs: int) -> Iterable[Message]:
    """`source`, decoding the frames of `engine`'s motion triggers ahead in `jobs` threads (each
    trigger's own frame grid says which frames it will analyse); `source` itself when there is
    nothing to gain (no motion trigger, or one job)."""
    triggers = [t for t in engine.triggers.values() if isinstance(t, MotionTrigger)]
    if jobs <= 1 or not triggers:
        return source
    return Predecoder(source, triggers, jobs)
