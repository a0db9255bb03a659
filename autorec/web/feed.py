"""What the web UI pushes to browsers: the live state, fanned out to bounded per-browser queues.

Two feeds, one interface (`Feed`): browsers subscribe (`subscribe()` ->
`Subscriber`), read events from their own queue, and ask for the current
`status()` and `latest_frame()`.

- `LiveFeed` is attached to a running `autorec run --http`: a stream listener
  (connection, messages, ticks, firings), a frame listener (the latest camera
  frame, kept as the decoded event it already is: never copied or decoded
  for this), and `segment_closed` (from the writer's thread, handed over with
  `call_soon_threadsafe`). It is called on the recorder's event loop thread.
- `DirectoryFeed` serves `autorec serve DIR`: it polls the directory's
  `status.json` and `index.jsonl` (small reads, in a worker thread) and
  pushes what changed.

Contracts:
- A push never blocks and never grows without bound: each subscriber has a
  queue of `QUEUE_MAX` events; when it is full (a browser that stalls) the
  oldest event is dropped and counted in `Subscriber.dropped`. The recorder
  pays one `put_nowait` per subscriber per pushed event.
- Status is pushed at most every `status_interval` s (and at once on a
  connection change or a segment event); `frame` notices go to each
  subscriber at most every `frame_interval` s (2 frames/s by default).
- Events are `(name, data)`: `status` (the status dict), `segment` (a closed
  segment's index line), `fired` (rule, time, onset, and `seen`: the computer's clock when the
  recorder processed it), `frame` (sequence
  number and time of the latest frame).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autorec.core.streamitems import StreamListener
from autorec.io.boundedread import open_regular, read_capped
from autorec.outdir import INDEX_NAME, JOURNAL_NAME, STATUS_NAME, IndexLine, check_journal_entry, check_status

log = logging.getLogger(__name__)

QUEUE_MAX = 64
MAX_SUBSCRIBERS = 32


@dataclass(eq=False)  # identity: each browser is its own subscriber
class Subscriber:
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    dropped: int = 0
    last_frame: float = 0.0  # monotonic time of the last frame notice sent

    def push(self, name: str, data: Any) -> None:
        if self.queue.full():
            try:
                self.queue.get_nowait()
            except asyncio.QueueEmpty:
                pass
            self.dropped += 1
        self.queue.put_nowait((name, data))


class Feed:
    """Common part: subscribers and pushing."""

    def __init__(
        self, *, status_interval: float = 0.5, frame_interval: float = 0.5, clock: Callable[[], float] = _time.monotonic
    ) -> None:
        self.subscribers: set[Subscriber] = set()
        self.status_interval = status_interval
        self.frame_interval = frame_interval
        self.clock = clock
        self._last_status = -1e9
        self.frame_seq = 0
        self.frame_time: float | None = None

    def subscribe(self) -> Subscriber | None:
        """A new subscriber, or None when `MAX_SUBSCRIBERS` are already connected."""
        if len(self.subscribers) >= MAX_SUBSCRIBERS:
            return None
        sub = Subscriber()
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def push(self, name: str, data: Any) -> None:
        for sub in self.subscribers:
            sub.push(name, data)

    def push_status(self, force: bool = False) -> None:
        now = self.clock()
        if not self.subscribers or (not force and now - self._last_status < self.status_interval):
            return
        self._last_status = now
        try:
            status = self.status()
        except Exception:  # a broken figure must never reach the recorder
            log.exception("web: cannot collect the status")
            return
        self.push("status", status)

    def push_frame_notice(self) -> None:
        now = self.clock()
        notice = None
        for sub in self.subscribers:
            if now - sub.last_frame >= self.frame_interval:
                sub.last_frame = now
                if notice is None:
                    notice = {"seq": self.frame_seq, "time": self.frame_time}
                sub.push("frame", notice)

    # -- what subclasses provide ---------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        raise NotImplementedError

    def latest_frame(self) -> tuple[int, float, bytes] | None:
        """(sequence, time, JPEG bytes) of the latest camera frame, or None."""
        return None


class LiveFeed(Feed, StreamListener):
    """The feed of a running recorder. See the module docstring.

    `snapshot()` returns the recorder's status dict (the status file's fields); `holds(t)` which
    rules hold the open segment open and for how long; `recent()` the last closed segments.
    """

    def __init__(
        self,
        snapshot: Callable[[], dict[str, Any]],
        holds: Callable[[float], dict[str, float]] | None = None,
        recent: Callable[[], list[dict[str, Any]]] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.snapshot = snapshot
        self.holds = holds
        self.recent = recent
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stream_time: float | None = None
        self._frame_event: Any = None
        self.connected_now = False

    def status(self) -> dict[str, Any]:
        status = dict(self.snapshot())
        status["connected"] = self.connected_now
        status["stream_time"] = self.stream_time
        status["live"] = True
        if self.holds is not None and self.stream_time is not None and status.get("open_segment"):
            status["open_segment"] = dict(status["open_segment"])
            status["open_segment"]["holds"] = {
                rule: round(left, 1) for rule, left in self.holds(self.stream_time).items()
            }
        if self.recent is not None:
            status["recent_segments"] = self.recent()
        status["frame"] = {"seq": self.frame_seq, "time": self.frame_time} if self.frame_time is not None else None
        return status

    def latest_frame(self) -> tuple[int, float, bytes] | None:
        event = self._frame_event
        if event is None or self.frame_time is None:
            return None
        return self.frame_seq, self.frame_time, event.image.image_data

    # -- the pipeline's listener interfaces (event loop thread) -----------------------------------
    def connected(self, t: float) -> None:
        self.connected_now = True
        self.push_status(force=True)

    def disconnected(self, t: float) -> None:
        self.connected_now = False
        self.push_status(force=True)

    def message(self, t: float, kind: str | None) -> None:
        self.stream_time = t
        self.connected_now = True
        self.push_status()

    def tick(self, t: float) -> None:
        self.stream_time = t
        self.push_status()

    def fired(self, t: float, firings: Sequence[Any]) -> None:
        if not self.subscribers:
            return
        for f in firings:
            self.push(
                "fired",
                {"rule": f.rule, "time": f.time, "onset": getattr(f, "onset", f.time), "seen": _time.time()},
            )
        self.push_status(force=True)

    def frame(self, t: float, event: Any) -> None:
        self._frame_event = event
        self.frame_seq += 1
        self.frame_time = t
        if self.subscribers:
            self.push_frame_notice()

    # -- the writer's observer interface (writer thread) -----------------------------------------
    def segment_opened(self, segment: Any) -> None:
        self._on_loop(self.push_status, True)

    def segment_closed(self, segment: Any) -> None:
        self._on_loop(self._segment_closed, dict(segment.summary))

    def _on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        # From the writer thread. The writer closes the last segment after the web server and
        # its loop have ended (Ctrl-C during a segment): nobody is left to tell, and calling into
        # the closed loop raised, which the writer logged as an ERROR with a traceback.
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # closed between the check and the call
            log.debug("web feed: loop closed, %s not delivered", getattr(fn, "__name__", fn))

    def _segment_closed(self, summary: dict[str, Any]) -> None:
        self.push("segment", summary)
        self.push_status(force=True)


def _read_small(path: Path, limit: int = 1 << 20) -> bytes | None:
    data, _ = read_capped(path, limit)  # a regular file only: a FIFO is never a blocked worker
    return data


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


INDEX_READ = 1 << 20  # bytes of new index lines read per poll (a longer line is skipped over, never re-read)


class DirectoryFeed(Feed):
    """The feed of `autorec serve DIR`: the status file and the index, polled. See the module docstring."""

    def __init__(self, directory: str | os.PathLike[str], status_name: str = STATUS_NAME, **kw: Any) -> None:
        super().__init__(**kw)
        self.directory = Path(directory)
        self.status_path = self.directory / status_name
        self.index_path = self.directory / INDEX_NAME
        self.journal_path = self.directory / JOURNAL_NAME
        self._status: dict[str, Any] = {}
        self._stopped: dict[str, Any] | None = None
        self._index_size = 0
        self._index_lines = 0
        self._status_key: tuple[int, int, int] | None = None
        self._skipping = False  # inside an index line longer than INDEX_READ: skip to its end

    def status(self) -> dict[str, Any]:
        status = dict(self._status)
        status["live"] = False
        updated = status.get("updated")
        status["stale_s"] = round(_time.time() - updated, 1) if isinstance(updated, (int, float)) else None
        if self._stopped is not None:
            # the run is over: its figures are its last ones, not a live rate (the page says so)
            status["stopped"] = self._stopped
        return status

    def last_stop(self) -> dict[str, Any] | None:
        """The journal's `stop` line (`wall`, `time`, `reason`) if it is the journal's last line: the recorder
        that wrote this directory has stopped and none has started since. None otherwise (running, or no
        journal). Reads only the journal's tail (blocking: call it in a worker thread)."""
        try:
            with open_regular(self.journal_path) as f:  # a FIFO planted as the journal never blocks a poll
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - 65536))
                tail = f.read()
        except OSError:
            return None
        return stop_of_journal_tail(tail)

    def poll_once(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """Read the status file (when it changed) and new index lines (blocking: call it in a worker thread).

        Only what changed is read: the status file when its inode, size or mtime changed, the index from
        where the last poll stopped, at most INDEX_READ bytes a poll (a line longer than that, such as a
        NUL-filled tail, is skipped over once, never read again). Index lines are pushed as validated
        `IndexLine`s; anything else is left out.
        """
        status = None
        key = _stat_key(self.status_path)
        if key != self._status_key:
            self._status_key = key
            data = _read_small(self.status_path)
            if data is not None:
                try:
                    status, _ = check_status(json.loads(data))  # typed: the page gets numbers where it expects them
                except (ValueError, RecursionError):
                    pass  # being replaced, or damaged: keep the last good one
        new: list[dict[str, Any]] = []
        index = _stat_key(self.index_path)
        size = index[1] if index is not None else 0
        if size < self._index_size:  # retention rewrote the index
            self._index_size = 0
            self._skipping = False
        if size > self._index_size:
            try:
                with open_regular(self.index_path) as f:
                    f.seek(self._index_size)
                    chunk = f.read(min(size - self._index_size, INDEX_READ))
            except OSError:
                chunk = b""
            end = chunk.rfind(b"\n") + 1  # only whole lines
            if end == 0 and len(chunk) == INDEX_READ:  # no line end in a whole read: a line too long to be ours
                self._index_size += len(chunk)
                self._skipping = True
                return status, new
            self._index_size += end
            lines = chunk[:end].split(b"\n")
            if self._skipping:  # the rest of a skipped line
                lines = lines[1:]
                self._skipping = False
            for line in lines:
                try:
                    entry = IndexLine.from_json(json.loads(line))
                except (ValueError, RecursionError):
                    continue
                if not isinstance(entry, str):
                    new.append(entry.to_json())
        return status, new

    async def run(self, interval: float = 0.5) -> None:
        """Poll until cancelled; the first poll only learns where the index ends (no old segments pushed)."""
        loop = asyncio.get_running_loop()
        first = True
        while True:
            try:
                status, new = await loop.run_in_executor(None, self.poll_once)
                stopped = await loop.run_in_executor(None, self.last_stop)
            except Exception:
                log.exception("web: cannot read %s", self.directory)
                status, new, stopped = None, [], self._stopped
            if (status is not None and status != self._status) or stopped != self._stopped:
                self._status = status if status is not None else self._status
                self._stopped = stopped
                self.push_status(force=True)
            if not first:
                for entry in new:
                    self.push("segment", entry)
            first = False
            await asyncio.sleep(interval)


def stop_of_journal_tail(tail: bytes) -> dict[str, Any] | None:
    """The `stop` line (`wall`, `time`, `reason`) if it is the last whole line of a journal's `tail`
    (its last bytes, from a file or the object store), else None: running, or nothing read. A cut
    first or last line is skipped; the entry is read through the journal's typed record."""
    for line in reversed(tail.splitlines()):
        try:
            entry = check_journal_entry(json.loads(line))  # typed: finite times, a text event
        except (ValueError, RecursionError):
            continue  # a half-written last line, or the cut first one
        if isinstance(entry, str):
            continue
        if entry.get("event") != "stop":
            return None
        reason = entry.get("reason")
        return {"wall": entry.get("wall"), "time": entry["time"], "reason": reason if isinstance(reason, str) else None}
    return None
