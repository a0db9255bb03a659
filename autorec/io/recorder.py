"""Start/stop recording of the event stream from a script (the cookbook's `EventRecorder`).

    from autorec import EventRecorder

    rec = EventRecorder("ws://localhost:7001")
    for i in range(3):
        rec.start(f"log{i}.bin")   # returns once connected and recording
        time.sleep(10)
        print(rec.stop(), "messages")  # flushed and closed

Contracts (`EventRecorder`, background thread; `AsyncEventRecorder`, same
methods as coroutines on the caller's loop):

- `start(path)` connects (retrying refusals until `connect_timeout`, default
  5 s), opens the log, and returns only then: every frame the server sends
  after `start()` returns is in the log. It raises `RecorderConnectError` if
  no connection was made in time, `RecorderError` when already recording, and
  OSError (e.g. FileExistsError with mode="new") if the log cannot be opened.
  No file is created or truncated unless the connection succeeded.
- `stop(timeout=5.0)` ends the capture, flushes and closes the log, and
  returns the number of events written. If that does not finish in time it
  raises `RecorderTimeout`; the capture keeps finishing in the background
  and a later `stop()` waits for it again.
- A failure in the background (a lost connection that does not come back
  within `reconnect_timeout`, a disk error) ends the capture (everything
  received up to then is in the log) and is raised, once, as `RecorderError`
  by the next `start()` or `stop()` (with `.count` = events saved). A
  connection that comes back in time just leaves a gap, listed in `gaps`.
- Files are upstream-format logs, exactly as `autorec record` writes them:
  frames that do not parse as `PurpleDropEvent` go to `<path>.rejected`
  (created only when there is one) and are counted in `rejected`.
- `mode`: "overwrite" (default, as the cookbook's recorder), "new" (refuse an
  existing file) or "append".
- `close()` stops a running capture; both classes are context managers
  (`with` / `async with`).

From code that runs its own asyncio loop use `AsyncEventRecorder` (`await
rec.start(path)`, `await rec.stop()`): it records as a task on that loop. The
threaded `EventRecorder` also works there, but its `start()`/`stop()` block
for up to their timeouts, so call them through `await
asyncio.to_thread(rec.start, path)`.

`CaptureLog` (a log plus its `.rejected` sidecar) is also what `autorec
record` writes through.
"""

from __future__ import annotations

import asyncio
import atexit
import errno
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from autorec.io.logfile import LogWriteError, LogWriter
from autorec.io.mainloop import StopRequest, run_main
from autorec.io.source import DEFAULT_URI, Connected, ConnectionGap, Disconnected, Message, WebsocketSource

log = logging.getLogger(__name__)

Mode = Literal["new", "append", "overwrite"]


class CaptureLog:
    """An upstream-format log being recorded, plus `<path>.rejected` for frames that do not parse.

    `write(message)` sends a parsed frame to the log and a rejected one to the
    sidecar (opened on first use), both framed the same way. The buffers are
    flushed at least every `flush_interval` seconds of writing, and by
    `flush()`/`close()`. Write errors surface as `LogWriteError` (the files
    still end on whole records; `lost` counts what could not be written).

    With mode "new" an existing sidecar is refused like an existing log; with
    "overwrite" a stale sidecar of the replaced log is removed.
    """

    def __init__(self, path: str | os.PathLike[str], mode: Mode = "new", flush_interval: float = 1.0):
        self.path = Path(path)
        self.rejected_path = Path(f"{self.path}.rejected")
        self.mode = mode
        if mode == "new" and self.rejected_path.exists():
            raise FileExistsError(errno.EEXIST, "rejected-frames file already exists", str(self.rejected_path))
        self.log = LogWriter(self.path, mode)
        if mode == "overwrite":
            self.rejected_path.unlink(missing_ok=True)
        self._rejected: LogWriter | None = None
        self.flush_interval = flush_interval
        self._last_flush = time.monotonic()
        self.messages = 0  # parsed frames handed to the log
        self.rejected = 0  # frames handed to the sidecar

    @property
    def lost(self) -> int:
        """Records that could not be written (disk full, I/O error)."""
        return self.log.dropped + (self._rejected.dropped if self._rejected else 0)

    @property
    def bytes(self) -> int:
        return self.log.bytes

    @property
    def written(self) -> int:
        """Records durably handed to the OS so far (log and rejected sidecar)."""
        return self.log.records + (self._rejected.records if self._rejected else 0)

    def write(self, message: Message) -> None:
        if message.rejected is None:
            self.messages += 1
            self.log.write(message.payload)
        else:
            if self._rejected is None:
                self._rejected = LogWriter(self.rejected_path, "append")
            self.rejected += 1
            self._rejected.write(message.payload)
        if time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        try:
            self.log.flush()
        finally:
            if self._rejected is not None:
                self._rejected.flush()

    def close(self) -> None:
        try:
            self.log.close()
        finally:
            if self._rejected is not None:
                self._rejected.close()


class RecorderError(RuntimeError):
    """A capture could not start or failed; `count` is the number of events saved (if any)."""

    def __init__(self, message: str, count: int = 0, path: Path | None = None):
        super().__init__(message)
        self.count = count
        self.path = path


class RecorderConnectError(RecorderError, ConnectionError):
    """`start()` could not connect within its timeout."""


class RecorderTimeout(RecorderError, TimeoutError):
    """`stop()` could not finish within its timeout; the capture is still finishing."""


class _Capture:
    """One capture from connect to closed log, run as a coroutine on some loop.

    Never raises: the outcome is `error` (None on a clean stop) and `count`.
    `on_ready` runs once the connection is up and the log is open.
    """

    def __init__(
        self,
        uri: str,
        path: Path,
        mode: Mode,
        connect_timeout: float,
        reconnect_timeout: float,
        source_options: dict[str, Any],
    ):
        self.uri = uri
        self.path = path
        self.mode = mode
        self.connect_timeout = connect_timeout
        self.reconnect_timeout = reconnect_timeout
        self.source = WebsocketSource(uri, **source_options)
        self.log: CaptureLog | None = None
        self.error: BaseException | None = None
        self.ready = False
        self.stop_requested = False  # set by the caller's thread too, before the loop sees the request
        self.phase = "connecting"
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_request: StopRequest | None = None  # the capture thread's (autorec.io.mainloop)
        self._last_cause = "no answer"

    @property
    def count(self) -> int:
        return self.log.messages if self.log else 0

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.source.stop()

    def request_stop(self) -> None:
        """Ask the capture to end (call on its loop)."""
        self.stop_requested = True
        if self.phase == "recording":
            self.phase = "stopping (closing the connection)"
        self.source.stop()

    def _connect_timed_out(self) -> None:
        self._fail(
            RecorderConnectError(
                f"could not connect to {self.uri} within {self.connect_timeout:g}s: {self._last_cause}", path=self.path
            )
        )

    def _gave_up(self, cause: str) -> None:
        self._fail(
            RecorderError(
                f"lost the connection to {self.uri} ({cause}) and it did not come back within "
                f"{self.reconnect_timeout:g}s",
                path=self.path,
            )
        )

    async def run(self, on_ready: Callable[[], None], stop: StopRequest | None = None) -> None:
        """Capture until the source ends or a stop is requested (`request_stop` on the loop, or `stop`)."""
        self.loop = loop = asyncio.get_running_loop()
        if stop is not None:
            self.stop_request = stop
            stop.on_stop(self.request_stop)
        timer = loop.call_later(self.connect_timeout, self._connect_timed_out)
        try:
            async for item in self.source:
                if isinstance(item, Message):
                    assert self.log is not None
                    self.log.write(item)
                elif isinstance(item, Connected):
                    timer.cancel()
                    if self.log is None:
                        # Open only now: a failed start leaves no file behind.
                        self.log = CaptureLog(self.path, self.mode)
                        self.ready = True
                        self.phase = "recording"
                        on_ready()
                elif isinstance(item, Disconnected):
                    self._last_cause = item.cause
                    if self.log is not None:
                        timer.cancel()
                        timer = loop.call_later(self.reconnect_timeout, self._gave_up, item.cause)
        except asyncio.CancelledError:
            self._fail(RecorderError(f"recording to {self.path} was cancelled", path=self.path))
            raise
        except LogWriteError as exc:
            self._fail(RecorderError(f"could not write {self.path}: {exc}", path=self.path))
        except Exception as exc:
            self._fail(exc)
        finally:
            timer.cancel()
            self.phase = "closing the log"
            if self.log is not None:
                try:
                    self.log.close()
                except OSError as exc:
                    self._fail(RecorderError(f"could not write {self.path}: {exc}", path=self.path))
            self.phase = "closing the connection"
            await self.source.close()
            self.phase = "done"

    def outcome(self) -> int:
        """The event count of a finished capture, or its error raised as RecorderError."""
        error = self.error
        if error is None:
            return self.count
        if isinstance(error, RecorderError):
            error.count = self.count
            raise error
        raise RecorderError(f"recording to {self.path} failed: {error}", self.count, self.path) from error


def _raise_start_error(capture: _Capture) -> None:
    # The log could not be opened (exists, no permission): the caller's own mistake, raised as the OSError it is.
    if isinstance(capture.error, OSError) and not isinstance(capture.error, (LogWriteError, RecorderError)):
        raise capture.error
    capture.outcome()


def _split_options(options: dict[str, Any]) -> dict[str, Any]:
    allowed = {
        "max_size",
        "min_backoff",
        "max_backoff",
        "open_timeout",
        "close_timeout",
        "ping_interval",
        "ping_timeout",
    }
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    return options


class _RecorderBase:
    """What `EventRecorder` and `AsyncEventRecorder` share: settings, the current/last capture and its counters."""

    def __init__(
        self,
        uri: str = DEFAULT_URI,
        *,
        connect_timeout: float = 5.0,
        reconnect_timeout: float = 10.0,
        mode: Mode = "overwrite",
        **source_options: Any,
    ):
        WebsocketSource(uri)  # validates the URI now rather than at start()
        self.uri = uri
        self.connect_timeout = connect_timeout
        self.reconnect_timeout = reconnect_timeout
        self.mode = mode
        self._source_options = _split_options(source_options)
        self._capture: _Capture | None = None
        self._last: _Capture | None = None
        self._lock = threading.Lock()  # serialises the threaded recorder's start/stop

    @property
    def recording(self) -> bool:
        capture = self._capture
        return (
            capture is not None
            and capture.error is None
            and capture.phase == "recording"
            and not capture.stop_requested
        )

    @property
    def count(self) -> int:
        """Events written so far by the current (or last) capture."""
        capture = self._capture or self._last
        return capture.count if capture else 0

    @property
    def rejected(self) -> int:
        capture = self._capture or self._last
        return capture.log.rejected if capture and capture.log else 0

    @property
    def gaps(self) -> list[ConnectionGap]:
        capture = self._capture or self._last
        return list(capture.source.stats.gaps) if capture else []

    def _new_capture(self, path: str | os.PathLike[str]) -> _Capture:
        """A capture to `path`; RecorderError if one is still running."""
        if self._capture is not None:
            state = "stopping" if self._capture.stop_requested else "recording"
            raise RecorderError(f"already {state} to {self._capture.path}; call stop() first")
        return _Capture(
            self.uri, Path(path), self.mode, self.connect_timeout, self.reconnect_timeout, self._source_options
        )


def _stop_timeout(capture: _Capture, timeout: float) -> RecorderTimeout:
    """The error `stop()` raises (sync and async alike) when a capture does not finish in time."""
    return RecorderTimeout(
        f"recording to {capture.path} did not finish within {timeout:g}s (still {capture.phase}); "
        "call stop() again to wait for it",
        capture.count,
        capture.path,
    )


class EventRecorder(_RecorderBase):
    """Records the event stream in a background thread. See the module docstring."""

    _thread: threading.Thread | None = None  # runs the current capture

    def _finish_failed(self) -> None:
        """Raise (once) the error of a capture that ended on its own."""
        capture, thread = self._capture, self._thread
        if capture is None or thread is None:
            return
        if thread.is_alive() and capture.error is not None:
            # The capture has failed (`recording` is already False) and its thread is unwinding its
            # event loop: wait for that, so start() raises the error instead of "already recording".
            thread.join(capture.source.close_timeout + 5)
        if thread.is_alive():
            return
        self._capture = self._thread = None
        self._last = capture
        capture.outcome()

    def start(self, path: str | os.PathLike[str]) -> None:
        with self._lock:
            self._finish_failed()
            capture = self._new_capture(path)
            ready = threading.Event()
            thread = threading.Thread(
                target=self._run, args=(capture, ready), name="autorec-EventRecorder", daemon=True
            )
            thread.start()
            # The capture enforces connect_timeout itself; the margin only guards against a stuck thread.
            ready.wait(self.connect_timeout + 30)
            if not capture.ready:
                self._request_stop(capture)
                thread.join(capture.source.close_timeout + 5)
                self._last = capture
                if capture.error is None:
                    capture.error = RecorderConnectError(f"could not connect to {self.uri}", path=capture.path)
                _raise_start_error(capture)
            self._capture, self._thread = capture, thread
            _running.add(self)

    @staticmethod
    def _run(capture: _Capture, ready: threading.Event) -> None:
        try:
            # The one asyncio main (autorec.io.mainloop): off the main thread it installs no signal
            # handler (the embedding program owns signals); stop() reaches it through the StopRequest.
            run_main(lambda stop: capture.run(ready.set, stop))
        except BaseException as exc:  # pragma: no cover - run() catches everything it can
            capture.error = capture.error or exc
        finally:
            ready.set()

    @staticmethod
    def _request_stop(capture: _Capture) -> None:
        if capture.stop_request is not None:
            capture.stop_request.request_threadsafe("stop() called")

    def stop(self, timeout: float = 5.0) -> int:
        with self._lock:
            capture, thread = self._capture, self._thread
            if capture is None or thread is None:
                raise RecorderError("not recording")
            capture.stop_requested = True
            self._request_stop(capture)
            thread.join(timeout)
            if thread.is_alive():
                raise _stop_timeout(capture, timeout)
            self._capture = self._thread = None
            self._last = capture
            _running.discard(self)
            return capture.outcome()

    def close(self, timeout: float = 5.0) -> None:
        """Stop a running capture (if any); raises like `stop()`."""
        if self._capture is not None:
            self.stop(timeout)

    def __enter__(self) -> EventRecorder:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except RecorderError as err:  # don't hide the exception that is already propagating
            log.error("%s", err)


class AsyncEventRecorder(_RecorderBase):
    """`EventRecorder` for code running its own asyncio loop: same contract, coroutines."""

    _task: asyncio.Task[None] | None = None  # runs the current capture

    async def start(self, path: str | os.PathLike[str]) -> None:
        capture, task = self._capture, self._task
        if capture is not None and task is not None and task.done():
            self._capture = self._task = None
            self._last = capture
            capture.outcome()
        capture = self._new_capture(path)
        ready = asyncio.Event()
        task = asyncio.ensure_future(capture.run(ready.set))
        waiter = asyncio.ensure_future(ready.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not capture.ready:
            await task
            self._last = capture
            if capture.error is None:
                capture.error = RecorderConnectError(f"could not connect to {self.uri}", path=capture.path)
            _raise_start_error(capture)
        self._capture, self._task = capture, task

    async def stop(self, timeout: float = 5.0) -> int:
        capture, task = self._capture, self._task
        if capture is None or task is None:
            raise RecorderError("not recording")
        capture.request_stop()
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            raise _stop_timeout(capture, timeout)
        self._capture = self._task = None
        self._last = capture
        return capture.outcome()

    async def close(self, timeout: float = 5.0) -> None:
        if self._capture is not None:
            await self.stop(timeout)

    async def __aenter__(self) -> AsyncEventRecorder:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            await self.close()
            return
        try:
            await self.close()
        except RecorderError as err:
            log.error("%s", err)


# Recorders still capturing when the interpreter exits: their threads are
# daemons (a forgotten stop() must not hang the script), so stop them here to
# flush what they hold.
_running: weakref.WeakSet[EventRecorder] = weakref.WeakSet()


@atexit.register
def _stop_running_recorders() -> None:
    for rec in list(_running):
        try:
            rec.close()
        except Exception as exc:
            log.error("at exit: %s", exc)
