"""Waiting for a condition in tests: poll with a deadline, never sleep for a result.

`wait_until(predicate, timeout, what)` polls `predicate` every few
milliseconds and fails the test (AssertionError naming `what`) once `timeout`
seconds have passed without it becoming true; `wait_until_async` does the same
inside an event loop. `what` may be a function, called only on failure, for a
message that shows the state at that moment. The one polling helper of the suite.
"""

from __future__ import annotations

import time
from collections.abc import Callable

What = str | Callable[[], str]


def _say(what: What) -> str:
    return what() if callable(what) else what


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: What = "condition") -> None:
    """Poll `predicate` until true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {_say(what)}")
        time.sleep(0.005)  # the poll interval, not a wait for the result


async def wait_until_async(
    predicate: Callable[[], object], timeout: float = 10.0, what: What = "condition", interval: float = 0.005
) -> None:
    """`wait_until` inside an event loop: polls without blocking the loop (no worker thread either).
    `interval=0` only yields to the loop between polls (a test that must keep pace with a sender)."""
    import asyncio

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {_say(what)}")
        await asyncio.sleep(interval)  # the poll interval, not a wait for the result
