"""The whole-stream capture loop: every frame of a live stream into one upstream-format log.

`autorec record` (arguments, this loop, a summary) and the library's `EventRecorder` /
`AsyncEventRecorder` (this loop in a thread or a task, plus start/stop) both record through
`StreamCapture`, so they write the same files and treat a failing disk the same way.

What the loop does (on one asyncio loop, the single consumer of a `WebsocketSource`):

- Every `Message` goes to the `CaptureLog`: a frame that parses as a `PurpleDropEvent` into the
  log exactly as received, one that does not into `<path>.rejected` (counted in `rejected`).
- The log is opened before the loop by `open()` (`record`: a bad OUT is refused before any
  connection) or else at the first connection (`EventRecorder`: a failed start leaves no file).
- The buffers are flushed at least every `flush_interval` s (1 s), also while the stream is
  quiet, so a live log is current for `autorec info` and little is at stake when the disk fills.
- The source retries lost connections for ever; an owner that wants to give up (EventRecorder's
  `connect_timeout`/`reconnect_timeout`) does so in the `connected`/`disconnected` hooks with
  `fail(error)`.
- `request_stop()` (on the loop), or the `StopRequest` handed to `run`, ends the capture: frames
  already received are still written, then the log is flushed and closed, then the connection.
  `run` never raises (except CancelledError): what ended a capture early is in `error`.

Disk-error policy (disk full, I/O error), the same for the command and the library:

- The recording goes on. A failed write loses only the records it held (those buffered since
  the last flush: about a second's, at most 1 MiB); they are counted in `lost`. The file is cut
  back to its last whole record (`LogWriter`), so the log always ends on a whole record that
  upstream's reader reads, and what arrives once the disk has room again is written after it.
- One ERROR line (logger `autorec.io.capture`) when writes start failing, naming the file and the
  cause. After that at most one line every `report_every` s (60 s), while writes keep failing
  or when they fail again after recovering, with the number of records lost so far; one INFO line
  "works again" once a flush has really written records to the file that failed (a flush of an
  empty buffer proves nothing; the log and its rejected sidecar fail and recover each on its own).
- `lost` can be read at any time (plain ints: safe from another thread). At the end the owner
  says it: `autorec record` prints "NOT WRITTEN (disk/I-O errors): N records" in its summary and
  exits 1; `EventRecorder.stop()` closes the log and then raises `RecorderDiskError` (with `.lost`
  and `.count`), and `EventRecorder.lost` reads the count.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from autorec.core.streamitems import Connected, Disconnected, Message
from autorec.io.failurelog import FailureLog
from autorec.io.logfile import LogWriteError, LogWriter
from autorec.io.mainloop import StopRequest
from autorec.io.source import WebsocketSource

log = logging.getLogger(__name__)

Mode = Literal["new", "append", "overwrite"]


class CaptureLog:
    """An upstream-format log being recorded, plus `<path>.rejected` for frames that do not parse.

    `write(message)` sends a parsed frame to the log and a rejected one to the
    sidecar (opened on first use), both framed the same way. The buffers are
    flushed at least every `flush_interval` seconds of writing, and by
    `flush()`/`close()`. Write errors surface as `LogWriteError` (the files
    still end on whole records; `lost` counts what could not be written,
    including rejected frames whose sidecar could not be opened; `failure` is
    the file and cause of the last failed write, for the error line).

    With mode "new" an existing sidecar is refused like an existing log; with
    "overwrite" a stale sidecar of the replaced log is removed.
    """

    def __init__(self, path: str | os.PathLike[str], mode: Mode = "new", flush_interval: float = 1.0):
        self.path = Path(path)
        self.rejected_path = Path(f"{self.path}.rejected")
        self.mode = mode
        if mode == "new" and self.rejected_path.exists():
            raise FileExistsError(errno.EEXIST, "rejected-frames file already exists", str(self.rejected_path))
        if mode == "overwrite":  # first: a sidecar that cannot be removed must not cost the log it belongs to
            self.rejected_path.unlink(missing_ok=True)
        self.writer = LogWriter(self.path, mode)
        self._rejected: LogWriter | None = None
        self._rejected_unopened = 0  # rejected frames lost because the sidecar could not be opened
        self.flush_interval = flush_interval
        self._last_flush = time.monotonic()
        self.messages = 0  # parsed frames handed to the log
        self.rejected = 0  # frames handed to the sidecar
        # The file and cause of the last failed write: the log, or the sidecar while the log is fine.
        self.failure: tuple[Path, str] | None = None

    @property
    def lost(self) -> int:
        """Records that could not be written (disk full, I/O error), in the log and the sidecar."""
        return self.writer.dropped + (self._rejected.dropped if self._rejected else 0) + self._rejected_unopened

    @property
    def saved(self) -> int:
        """Parsed frames written to the log or waiting in its buffer (`messages` minus those lost)."""
        return self.messages - self.writer.dropped

    @property
    def bytes(self) -> int:
        return self.writer.bytes

    def written_to(self, path: Path) -> int:
        """Records durably handed to the OS so far in `path` (the log or the rejected sidecar)."""
        if path == self.path:
            return self.writer.records
        return self._rejected.records if self._rejected is not None and path == self.rejected_path else 0

    def write(self, message: Message) -> None:
        if message.rejected is None:
            self.messages += 1
            self._on(self.writer, LogWriter.write, message.payload)
        else:
            self.rejected += 1
            if self._rejected is None:
                try:
                    self._rejected = LogWriter(self.rejected_path, "append")
                except OSError as exc:  # e.g. a corrupt sidecar to append to: this frame is lost, not the recording
                    self._rejected_unopened += 1
                    reason = exc.strerror or str(exc)
                    self.failure = (self.rejected_path, reason)
                    raise LogWriteError(exc.errno, f"{self.rejected_path}: 1 record(s) not written: {reason}") from exc
            self._on(self._rejected, LogWriter.write, message.payload)
        if time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        self._both(LogWriter.flush)

    def close(self) -> None:
        self._both(LogWriter.close)

    def _both(self, action: Callable[[LogWriter], None]) -> None:
        """`action` on the log, then on the sidecar even if the log's failed; the first error is raised."""
        error: OSError | None = None
        failure = None
        for writer in (self.writer, self._rejected):
            if writer is None:
                continue
            try:
                self._on(writer, action)
            except OSError as exc:
                if error is None:
                    error, failure = exc, self.failure
        if error is not None:
            self.failure = failure  # the one raised
            raise error

    def _on(self, writer: LogWriter, action: Callable[..., None], *args: object) -> None:
        """`action(writer, *args)`; when it fails, `failure` says which file and why."""
        try:
            action(writer, *args)
        except OSError as exc:
            # A LogWriteError's text repeats the file and the count; the errno says the cause alone.
            self.failure = (writer.path, os.strerror(exc.errno) if exc.errno else str(exc))
            raise


class DiskTrouble:
    """The disk-error lines of a capture (the policy in the module docstring): sibling `FailureLog`s, one a file.

    `failed(exc, lost, failure)` for every failed write, `wrote(lost, path)` for every
    one that really wrote records to `path`. Each file (the log, its rejected sidecar)
    is failing or not on its own: the log's writes say nothing of a sidecar that cannot
    be opened. The first failure is logged at once; after any logged line (about either
    file: one full disk is one line) the next one comes `repeat` s later at the earliest:
    a disk that keeps failing gets a "still" line with the records lost so far, one that
    fails and recovers over and over gets the count of failures in between. "Works again"
    is logged only when the failure it ends was.
    """

    def __init__(self, path: Path, repeat: float = 60.0, clock: Callable[[], float] | None = None) -> None:
        self.path, self.repeat = path, repeat
        self.clock = clock or time.monotonic
        self.cause: str | None = None  # the last failure's cause, e.g. "No space left on device"
        self.failed_path = path  # the file the last failure was in (the log, or its rejected sidecar)
        self._lines = FailureLog(log, every=repeat, clock=self.clock)  # the pace the files' lines share
        self._files: dict[Path, FailureLog] = {}  # every file that failed once -> its lines

    @property
    def failing(self) -> tuple[Path, ...]:
        """The files whose writes fail now (empty: all is well)."""
        return tuple(path for path, lines in self._files.items() if lines.failing)

    def failed(self, exc: OSError, lost: int, failure: tuple[Path, str] | None = None) -> None:
        """A write failed; `failure` (file, cause) when known better than the log's path and `exc`'s errno."""
        path, self.cause = failure or (self.path, os.strerror(exc.errno) if exc.errno else str(exc))
        self.failed_path = path
        lines = self._files.get(path)
        if lines is None:
            lines = self._files[path] = self._lines.sibling()
        lines.failed(
            "cannot write %s: %s; recording continues, %d records lost so far",
            path,
            self.cause,
            lost,
            still="still cannot write %s: %s; %d records lost so far",
        )

    def wrote(self, lost: int, path: Path | None = None) -> None:
        """A write really wrote records to `path` (the log by default)."""
        lines = self._files.get(path or self.path)
        if lines is not None:
            lines.worked("writing to %s works again (%d records lost so far)", path or self.path, lost)


class StreamCapture:
    """One capture of a whole stream into one log, from connect to closed log. See the module docstring.

    Counters (`messages`, `count`, `rejected`, `lost`) are plain ints, readable from any thread.
    Subclasses may override `connected(item)` and `disconnected(item)`, which run on the loop after
    the capture has handled the item.
    """

    def __init__(
        self,
        source: WebsocketSource,
        path: str | os.PathLike[str],
        mode: Mode = "new",
        *,
        flush_interval: float = 1.0,
        report_every: float = 60.0,
        on_message: Callable[[Message], object] | None = None,
    ) -> None:
        self.source = source
        self.path = Path(path)
        self.mode = mode
        self.flush_interval = flush_interval
        self.on_message = on_message
        self.trouble = DiskTrouble(self.path, report_every)
        self.files: CaptureLog | None = None
        self.error: BaseException | None = None  # what ended the capture before a stop was asked
        self.ready = False  # connected with the log open
        self.stop_requested = False  # set by an owner's thread too, before the loop sees the request
        self.phase = "connecting"
        self.stop_request: StopRequest | None = None
        self._flusher: asyncio.TimerHandle | None = None

    # -- counters ------------------------------------------------------------

    @property
    def messages(self) -> int:
        """Parsed frames received (written or lost)."""
        return self.files.messages if self.files else 0

    @property
    def count(self) -> int:
        """Events in the log or on their way there (received, minus those lost to write errors)."""
        return self.files.saved if self.files else 0

    @property
    def rejected(self) -> int:
        return self.files.rejected if self.files else 0

    @property
    def lost(self) -> int:
        """Records that could not be written (disk full, I/O error)."""
        return self.files.lost if self.files else 0

    # -- control -------------------------------------------------------------

    def open(self) -> CaptureLog:
        """Open the log now rather than at the first connection; raises OSError (FileExistsError...)."""
        self.files = CaptureLog(self.path, self.mode, self.flush_interval)
        return self.files

    def fail(self, error: BaseException) -> None:
        """End the capture early because of `error` (the first one is kept). Call on the loop."""
        if self.error is None:
            self.error = error
        self.source.stop()

    def request_stop(self) -> None:
        """End the capture (call on its loop). Idempotent."""
        self.stop_requested = True
        if self.phase == "recording":
            self.phase = "stopping (closing the connection)"
        self.source.stop()

    def connected(self, item: Connected) -> None:
        """Hook: a connection was made (the log is open by now unless opening it failed)."""

    def disconnected(self, item: Disconnected) -> None:
        """Hook: a gap began."""

    # -- the loop ------------------------------------------------------------

    async def run(self, on_ready: Callable[[], object] | None = None, stop: StopRequest | None = None) -> None:
        """Capture until the source ends or a stop is requested; `on_ready()` once connected with the log open."""
        loop = asyncio.get_running_loop()
        if stop is not None:
            self.stop_request = stop
            stop.on_stop(self.request_stop)
        self._flusher = loop.call_later(self.flush_interval, self._flush_tick, loop)
        log.info("recording %s to %s", self.source.uri, self.path)
        try:
            async for item in self.source:
                if isinstance(item, Message):
                    if self.files is not None:  # None only after a failed open: the capture is ending
                        self._guarded(self.files.write, item)
                        if self.on_message is not None:
                            self.on_message(item)
                elif isinstance(item, Connected):
                    self._open_at_connect(on_ready)
                    self.connected(item)
                elif isinstance(item, Disconnected):
                    self.disconnected(item)
        except asyncio.CancelledError:
            self.fail(RuntimeError("cancelled"))
            raise
        except Exception as exc:  # a bug: end the capture, keep what was received, and say it
            self.fail(exc)
        finally:
            self._flusher.cancel()
            self.phase = "closing the log"
            if self.files is not None:
                self._guarded(self.files.close)
            self.phase = "closing the connection"
            await self.source.close()
            self.phase = "done"

    def _open_at_connect(self, on_ready: Callable[[], object] | None) -> None:
        if self.ready:
            return
        if self.files is None:
            try:
                self.open()
            except OSError as exc:
                self.fail(exc)
                return
        self.ready = True
        self.phase = "recording"
        if on_ready is not None:
            on_ready()

    def _flush_tick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.files is not None:
            self._guarded(self.files.flush)
        self._flusher = loop.call_later(self.flush_interval, self._flush_tick, loop)

    def _guarded(self, action: Callable[..., object], *args: object) -> None:
        """Run a write/flush/close of the log under the disk-error policy: never raises OSError."""
        capture_log = self.files
        assert capture_log is not None
        # A failing file works again when it takes records (the log's flushes prove nothing about a
        # sidecar that cannot be opened, nor the sidecar's about the log).
        failing = self.trouble.failing
        before = [capture_log.written_to(path) for path in failing]
        try:
            action(*args)
        except OSError as exc:
            self.trouble.failed(exc, capture_log.lost, capture_log.failure)
            return
        for path, records in zip(failing, before, strict=True):
            if capture_log.written_to(path) > records:
                self.trouble.wrote(capture_log.lost, path)
