"""The log lines about one thing that keeps failing (a file written, a connection refused): said once, then
rate-limited, then "works again".

A full disk fails every write, hundreds a second: the recorder's log must say so at once, then remind at
most once every `every` seconds while it goes on, and say when writes work again, never one line per write.
`FailureLog` owns that decision for every writer that can fail (the segment writer, the daily tracks, the
score log, the journal, the status file, the whole-stream capture, the web guard); what a line says, and the
counters it quotes (records lost so far...), stay with the caller.

Contract:
- `failed(message, *args, still=None)` for every failure. It is logged at `level` (ERROR unless told) when
  it is the first, or when `every` seconds of `clock` (monotonic; injectable for tests) have passed since
  the last failure line: `message` if it begins a failure (the first, or the first since `worked()`),
  `still` (default `message`) if the failure that was already said goes on. A `message` line that comes
  after failures left unsaid ends with "; N more failure(s) since the last line" (each `failed()` call
  counts: a disk failing on and off between two lines is not hidden) unless `count_unsaid=False`; a `still`
  line quotes the caller's own running count instead (records lost so far). With `args`, `message` and
  `still` are %-formats, formatted only when logged; without, a text as is. True if the line was logged.
- `worked(message, *args)` for every success that proves the thing works (a write that really wrote). If it
  ends a failure that was said, `message` is logged at INFO and True returned; a failure never said (it
  began and ended between two lines) is not said to be over either, so recoveries are paced with failures.
- `sibling()`: a FailureLog for another thing that fails for the same cause (a capture's log and its
  rejected sidecar on one disk): each is failing and works again on its own, but their failure lines share
  one pace (one line every `every` s for both) and one count of failures left unsaid.
- `failing` says whether the last call was `failed()`; `unsaid` counts the failures not logged since the
  last line. Not thread-safe: one owner thread (each user calls it from its writing thread only).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

EVERY = 60.0  # seconds between two lines about one failing thing


class FailureLog:
    """See the module docstring."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        every: float = EVERY,
        level: int = logging.ERROR,
        count_unsaid: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.every = every
        self.level = level
        self.count_unsaid = count_unsaid
        self.clock = clock
        self.failing = False
        self._said = False  # the failure going on now was logged (so its end is logged too)
        self._pace = _Pace()  # shared with siblings

    @property
    def unsaid(self) -> int:
        """Failures since the last line (of this log or a sibling) that were not logged."""
        return self._pace.unsaid

    def sibling(self) -> FailureLog:
        """Another thing failing for the same cause; see the module docstring."""
        other = FailureLog(
            self.logger, every=self.every, level=self.level, count_unsaid=self.count_unsaid, clock=self.clock
        )
        other._pace = self._pace
        return other

    def failed(self, message: str, *args: object, still: str | None = None) -> bool:
        """A failure: logged now if due (see the module docstring); True if it was. With `args`, `message`
        and `still` are %-formats of them, formatted only when logged (a flood of failures costs no text)."""
        self.failing = True
        now = self.clock()
        pace = self._pace
        if pace.said_at is not None and now - pace.said_at < self.every:
            pace.unsaid += 1
            return False
        if still is not None and self._said:  # the failure that was said goes on
            line, unsaid = still, 0
        else:
            line, unsaid = message, pace.unsaid if self.count_unsaid else 0
        if not args:  # a finished text: a "%" in it (an error's own text) is not a format
            line, args = "%s", (line,)
        if unsaid:
            line, args = f"{line}; %d more failure(s) since the last line", (*args, unsaid)
        self.logger.log(self.level, line, *args, stacklevel=2)  # the line is the caller's
        pace.said_at, pace.unsaid, self._said = now, 0, True
        return True

    def worked(self, message: str, *args: object) -> bool:
        """A success: `message % args` logged at INFO if it ends a failure that was logged; True if it was.
        (Formatted only then: a success is the common case, called per write.)"""
        said = self.failing and self._said
        self.failing = self._said = False
        if said:
            self.logger.info(message, *args, stacklevel=2)
        return said


@dataclass
class _Pace:
    """When a FailureLog (and its siblings) last said a failure, and how many failed unsaid since."""

    said_at: float | None = None  # `clock` time of the last failure line
    unsaid: int = 0
