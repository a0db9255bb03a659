"""Serving a recorded log as a live stream, with its original timing.

`playback_offsets(payloads)` (sans-I/O) gives each record the moment it is
due, in seconds of log time after the log's first timestamp:
- a record is due at its stream time, by the one clock rule every reader of a
  log uses (`autorec.core.timeline.stream_times`, the recorder's own rule): a
  record without a timestamp (`device_info`, pdserver's `electrode_state`, or a
  record that does not decode) keeps its place, due with the record before it;
  a damaged timestamp (one record years off) is an outlier, due with the
  record before it, so it makes nobody wait; a confirmed clock step back plays
  on at once, one forward is a quiet stretch;
- with `max_gap` a quiet stretch longer than that is shortened to it.
The payloads themselves are sent unchanged, byte for byte.

`long_gaps(offsets, threshold)` lists the quiet stretches longer than
`threshold` (log seconds) in those offsets. A log spanning days, or a rig
clock that stepped forward, can make one last days, even at `--speed 1000`, so the
server warns about them (longer than an hour) before it starts playing and
suggests `--max-gap`.

`ReplayServer(path, speed, loop, host, port)` is the async context manager
that plays a log to every websocket client through `autorec.io.broadcast`, at
`speed` times real time, from the top again with `loop`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Iterable, Iterator

from autorec import events
from autorec.core.timeline import stream_times
from autorec.io.broadcast import Broadcaster, StreamServer
from autorec.io.logfile import LogReader
from autorec.units import format_duration

log = logging.getLogger(__name__)

MIN_SLEEP = 0.004  # messages due closer together than this go out in one batch
MAX_BATCH = 512  # ...but never more than this many before letting clients' writers run
LOOP_GAP = 1.0  # log seconds between the end of a pass and the start of the next one
WARN_GAP = 3600.0  # quiet stretches longer than this are announced before playing


def playback_offsets(payloads: Iterable[bytes], max_gap: float | None = None) -> Iterator[tuple[float, bytes]]:
    """`(due, payload)` per record, `due` in log seconds after the first timestamp. See the module docstring."""

    def timed() -> Iterator[tuple[float | None, bytes]]:
        for payload in payloads:
            try:
                yield events.timestamp(events.decode(payload)), payload
            except events.DecodeError:
                yield None, payload

    first: float | None = None
    last = 0.0
    shift = 0.0  # time removed by max_gap
    for t, payload in stream_times(timed()):
        if t is not None:
            if first is None:
                first = t
            due = t - first - shift
            if max_gap is not None and due - last > max_gap:
                shift += due - last - max_gap
                due = last + max_gap
            last = max(last, due)
        yield last, payload


def long_gaps(offsets: Iterable[tuple[float, bytes]], threshold: float = WARN_GAP) -> list[tuple[float, float]]:
    """`(due, length)` of every quiet stretch longer than `threshold` seconds in `playback_offsets` output."""
    gaps = []
    last: float | None = None
    for due, _payload in offsets:
        if last is not None and due - last > threshold:
            gaps.append((last, due - last))
        last = due
    return gaps


def describe_long_gaps(path: str | os.PathLike[str], gaps: list[tuple[float, float]], speed: float) -> str:
    """The warning for `long_gaps`, with what they cost at `speed` and the way out."""
    at, longest = max(gaps, key=lambda g: g[1])
    total = sum(length for _, length in gaps)
    return (
        f"replay: {path} has {len(gaps)} quiet stretch(es) longer than {format_duration(WARN_GAP)} "
        f"(the longest: {format_duration(longest)}, {format_duration(at)} into the log; a clock step?): "
        f"at --speed {speed:g} they take {format_duration(total / speed)} of waiting; "
        "--max-gap 10s shortens every quiet stretch to 10 s"
    )


class ReplayServer(StreamServer):
    """Plays one log to all clients. See the module docstring.

    `wait_for_clients`: hold playback until that many clients are connected.
    `passes` counts completed passes over the log; `await wait_finished()`
    returns when the (last) pass has been published.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        speed: float = 1.0,
        loop: bool = False,
        host: str = "127.0.0.1",
        port: int = 7001,
        max_gap: float | None = None,
        wait_for_clients: int = 0,
        max_queue_bytes: int = 32 * 1024 * 1024,
    ):
        if not 0 < speed < math.inf:  # also rejects nan
            raise ValueError("--speed must be above zero and finite")
        if not 0 <= port <= 65535:  # else bind() raises OverflowError, not OSError
            raise ValueError(f"--port must be 0-65535 (0: any free port), got {port}")
        self.path = path
        self.speed = speed
        self.loop = loop
        self.max_gap = max_gap
        self.wait_for_clients = wait_for_clients
        super().__init__(Broadcaster(max_queue_bytes, name="replay"), host, port)
        self.passes = 0
        self.records = 0
        self.error: str | None = None

    async def __aenter__(self) -> ReplayServer:
        with open(self.path, "rb"):  # fail early (OSError) on a missing or unreadable log
            pass
        await super().__aenter__()
        return self

    @property
    def stats(self) -> dict:
        s = self.broadcaster.stats()
        s["passes"] = self.passes
        s["records"] = self.records
        return s

    def _long_gaps(self) -> list[tuple[float, float]]:
        reader = LogReader(self.path)
        return long_gaps(playback_offsets((r.payload for r in reader.records()), self.max_gap))

    async def _play(self) -> None:
        loop = asyncio.get_running_loop()
        publish = self.broadcaster.publish
        try:
            if self.max_gap is None or self.max_gap > WARN_GAP:
                gaps = await asyncio.to_thread(self._long_gaps)
                if gaps:
                    log.warning("%s", describe_long_gaps(self.path, gaps, self.speed))
            if self.wait_for_clients > 0:
                await self.broadcaster.wait_for_clients(self.wait_for_clients)
            real0 = loop.time()
            base = 0.0  # log seconds of the passes already played
            while True:
                reader = LogReader(self.path)
                batch: list[bytes] = []
                due = 0.0
                for due, payload in playback_offsets((r.payload for r in reader.records()), self.max_gap):
                    wait = (base + due) / self.speed - (loop.time() - real0)
                    if wait > MIN_SLEEP or len(batch) >= MAX_BATCH:
                        publish(batch)
                        batch = []
                        await asyncio.sleep(max(wait, 0))
                    batch.append(payload)
                    self.records += 1
                publish(batch)
                if reader.truncated is not None:
                    log.warning(
                        "replay: %s ends inside a record at offset %d: played up to there",
                        self.path,
                        reader.truncated.offset,
                    )
                if reader.corrupt is not None and self.records == 0:
                    # Not a log at all (a JPEG, a text file): a failed job, as in `autorec info`.
                    self.error = f"{self.path} is not an upstream log: {reader.corrupt.reason}"
                    break
                if reader.corrupt is not None:
                    log.warning(
                        "replay: %s: %s at offset %d: stopped there",
                        self.path,
                        reader.corrupt.reason,
                        reader.corrupt.offset,
                    )
                self.passes += 1
                if not self.loop:
                    break
                if self.records == 0:
                    self.error = "the log holds no records"
                    break
                base += due + LOOP_GAP
        except OSError as exc:
            self.error = f"cannot read {self.path}: {exc.strerror or exc}"
            log.error("replay: %s", self.error)
        finally:
            if self._finished is not None:
                self._finished.set()
