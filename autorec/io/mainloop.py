"""One asyncio main for every long-running command, with one signal policy.

`run_main(body, duration=..., on_reload=...)` runs the coroutine `body(stop)` in a new event loop
and returns its result. `run`, `record`, `replay`, `sim`, `serve` and `EventRecorder`'s capture
thread all start this way, so they stop alike:

- SIGINT and SIGTERM request a stop: `stop.reason` is "SIGINT received" (or SIGTERM), and
  `stop.signal` the signal's name. The handlers are installed explicitly: a shell starts a
  background job (`autorec run ... &` in a script) with SIGINT ignored, and SIGTERM would
  otherwise kill the process with no summary (exit 143). The body ends cleanly and says why.
- `duration` (seconds) requests a stop with "duration reached".
- SIGHUP calls `on_reload()` when given (`run` reloads its rules); otherwise it is left alone.
- Off the main thread (the capture thread of `EventRecorder`, a program embedding autorec) no
  handler is installed: signals belong to the main thread. The owner stops the body with
  `stop.request_threadsafe(reason)`.
- A KeyboardInterrupt that arrives while no handler is in place (before the loop starts, or off
  a terminal where the handler could not be installed) ends `run_main` with `interrupted`.
- The handlers are removed when the body returns.

The body learns of the stop by awaiting `stop.wait()`, or through callbacks registered with
`stop.on_stop(fn)` (a source's `stop()`), which run once, on the loop, at the first request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Why and whether a command should stop; made by `run_main` for its loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.reasons: list[str] = []
        self.signal: str | None = None  # "SIGINT" / "SIGTERM" when a signal asked first
        self._event = asyncio.Event()
        self._callbacks: list[Callable[[], object]] = []

    @property
    def reason(self) -> str | None:
        """The first reason given (the one a summary reports), or None."""
        return self.reasons[0] if self.reasons else None

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()

    def on_stop(self, callback: Callable[[], object]) -> None:
        """Call `callback()` at the first stop request (at once if one came already)."""
        if self._event.is_set():
            callback()
        else:
            self._callbacks.append(callback)

    def request(self, reason: str) -> None:
        """Ask the body to stop (on the loop's thread). Later requests only add their reason."""
        self.reasons.append(reason)
        if self._event.is_set():
            return
        self._event.set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def request_threadsafe(self, reason: str) -> None:
        """`request` from another thread; a loop already closed is a stop that already happened."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.request, reason)

    def _signalled(self, sig: signal.Signals) -> None:
        if self.signal is None and not self._event.is_set():
            self.signal = sig.name
        self.request(f"{sig.name} received")


def run_main(
    body: Callable[[StopRequest], Awaitable[T]],
    *,
    duration: float | None = None,
    on_reload: Callable[[], object] | None = None,
    interrupted: T | None = None,
    on_start: Callable[[StopRequest], object] | None = None,
) -> T | None:
    """Run `body(stop)` in a new event loop under the signal policy above; its result, or `interrupted`.

    `on_start(stop)` runs on the loop before the body, so another thread can hold the
    `StopRequest` (EventRecorder)."""

    async def main() -> T:
        loop = asyncio.get_running_loop()
        stop = StopRequest(loop)
        installed: list[int] = []
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, stop._signalled, signal.Signals(sig))
                    installed.append(sig)
            hup = getattr(signal, "SIGHUP", None)
            if on_reload is not None and hup is not None:
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(hup, on_reload)
                    installed.append(hup)
        timer = loop.call_later(duration, stop.request, "duration reached") if duration is not None else None
        if on_start is not None:
            on_start(stop)
        try:
            return await body(stop)
        finally:
            if timer is not None:
                timer.cancel()
            for sig in installed:
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        log.debug("interrupted before the signal handlers were in place")
        return interrupted


def on_loop(fn: Callable[[], Any], loop: asyncio.AbstractEventLoop, timeout: float = 5.0) -> Callable[[], Any]:
    """`fn` made callable from any thread: it runs on `loop` (where the pipeline and its counters live,
    so nothing is read while it changes), the caller waiting up to `timeout` s. On the loop's own
    thread it runs at once; after the loop has closed, here (the recorder is done: nothing changes)."""
    import concurrent.futures
    import contextlib

    def call() -> Any:
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is loop:
                return fn()
        result: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                result.set_result(fn())
            except BaseException as exc:
                result.set_exception(exc)

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop is closed
            return fn()
        return result.result(timeout)

    return call
