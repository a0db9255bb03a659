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
- A lost connection that does not come back within `reconnect_timeout` ends
  the capture (everything received up to then is in the log) and is raised,
  once, as `RecorderError` by the next `start()` or `stop()` (with `.count` =
  events saved). A connection that comes back in time just leaves a gap,
  listed in `gaps`.
- A disk error (disk full, I/O error) does not end the capture: the policy
  of `autorec record`, in `autorec.io.capture` (the loop both record through).
  The records that could not be written are counted in `lost` (readable while
  recording), one log line says so (rate-limited), and `stop()` closes the
  log, which ends on a whole record, and then raises `RecorderDiskError`
  (a `RecorderError`; `.lost`, `.count`).
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

"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autorec.io.capture import Mode, StreamCapture
from autorec.io.logfile import LogWriteError
from autorec.io.mainloop import StopRequest, run_main
from autorec.io.source import DEFAULT_URI, Connected, ConnectionGap, Disconnected, WebsocketSource

log = logging.getLogger(__name__)


class RecorderError(RuntimeError):
    """A capture could not start or failed; `count` is the number of events saved (if any), `lost`
    the number of records that could not be written."""

    def __init__(self, message: str, count: int = 0, path: Path | None = None, lost: int = 0):
        super().__init__(message)
        self.count = count
        self.path = path
        self.lost = lost


class RecorderDiskError(RecorderError):
    """Records could not be written (disk full, I/O error): `lost` of them. The capture went on
    meanwhile; `count` events are in the log, which ends on a whole record."""


class RecorderConnectError(RecorderError, ConnectionError):
    """`start()` could not connect within its timeout."""


class RecorderTimeout(RecorderError, TimeoutError):
    """`stop()` could not finish within its timeout; the capture is still finishing."""


class _Capture(StreamCapture):
    """One capture of a recorder: the shared loop (`autorec.io.capture`), which gives up when no
    connection is made within `connect_timeout` or a gap lasts longer than `reconnect_timeout`.

    `run` never raises (but CancelledError): the outcome is `error` (None on a clean stop), `count`
    and `lost`.
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
        super().__init__(WebsocketSource(uri, **source_options), path, mode)
        self.uri = uri
        self.connect_timeout = connect_timeout
        self.reconnect_timeout = reconnect_timeout
        self._timer: asyncio.TimerHandle | None = None
        self._last_cause = "no answer"

    async def run(self, on_ready: Callable[[], object] | None = None, stop: StopRequest | None = None) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.connect_timeout, self._connect_timed_out)
        try:
            await super().run(on_ready, stop)
        finally:
            self._timer.cancel()

    def connected(self, item: Connected) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def disconnected(self, item: Disconnected) -> None:
        self._last_cause = item.cause
        if self.files is not None and self._timer is not None:
            self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_later(self.reconnect_timeout, self._gave_up, item.cause)

    def _connect_timed_out(self) -> None:
        self.fail(
            RecorderConnectError(
                f"could not connect to {self.uri} within {self.connect_timeout:g}s: {self._last_cause}", path=self.path
            )
        )

    def _gave_up(self, cause: str) -> None:
        self.fail(
            RecorderError(
                f"lost the connection to {self.uri} ({cause}) and it did not come back within "
                f"{self.reconnect_timeout:g}s",
                path=self.path,
            )
        )

    def outcome(self) -> int:
        """The event count of a finished capture, or its error raised as RecorderError."""
        error = self.error
        if error is None and self.lost:
            error = RecorderDiskError(
                f"{self.lost} record(s) could not be written to {self.trouble.failed_path} ({self.trouble.cause}); "
                "the recording went on and the log ends on a whole record",
                path=self.path,
            )
        if error is None:
            return self.count
        if isinstance(error, RecorderError):
            error.count, error.lost = self.count, self.lost
            raise error
        raise RecorderError(f"recording to {self.path} failed: {error}", self.count, self.path, self.lost) from error


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
        "read_interval",
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
        return capture.rejected if capture else 0

    @property
    def lost(self) -> int:
        """Records the current (or last) capture could not write (disk full, I/O error)."""
        capture = self._capture or self._last
        return capture.lost if capture else 0

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
        self._last = capture  # first: `count` and `lost` read `_capture or _last` from any thread
        self._capture = self._thread = None
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
            self._last = capture  # first: `count` and `lost` read `_capture or _last` from any thread
            self._capture = self._thread = None
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
            self._last = capture  # first: `count` and `lost` read `_capture or _last` from any thread
            self._capture = self._task = None
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
        self._last = capture  # first: `count` and `lost` read `_capture or _last` from any thread
        self._capture = self._task = None
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
