"""Waiting for a condition in tests: poll with a deadline, never sleep for a result.

`wait_until(predicate, timeout, what)` polls `predicate` every few
milliseconds and fails the test (AssertionError naming `what`) once `timeout`
seconds have passed without it becoming true.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll `predicate` until true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)  # the poll interval, not a wait for the result


async def wait_until_async(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """`wait_until` inside an event loop: polls without blocking the loop (no worker thread either)."""
    import asyncio

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)  # the poll interval, not a wait for the result
