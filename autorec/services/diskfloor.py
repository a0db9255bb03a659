"""The free-space floor (`output.min_free`): below it no segment opens.

Sans-I/O core: `DiskFloor` is fed `(free_bytes, total_bytes)` samples and
returns a `FloorChange` only when the state flips, so the caller raises one
alert when space runs out and one "cleared" message when it returns.
The edges around it: `disk_usage(path)` (one `os.statvfs` call), `DiskWatch`
(samples it at most every `interval` seconds of a time the caller passes in)
and `DiskFloorGuard` (acts on a pipeline; reads the monotonic clock it is given).

Contract:
- `MinFree.parse(value)` (`autorec.core.ruleset`) accepts a size (`2GB`, `500MiB`, bytes as a
  number), a percentage of the filesystem (`5%`), or None for the default:
  1 GB or 5 % of the filesystem, whichever is larger. Errors are ValueError
  with a message ready for a file:line prefix.
- The floor is crossed downwards when `free < floor`; it is only cleared
  when `free >= floor + margin` (`margin` = 5 % of the floor by default), so
  a recorder hovering at the floor does not open and close segments in a
  flapping loop.
- `free` is what an unprivileged writer can use (`f_bavail`), not `f_bfree`:
  the root-reserved blocks are no use to a recorder running as a user.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from autorec.core.ruleset import MinFree
from autorec.core.streamitems import StreamListener
from autorec.units import format_size

log = logging.getLogger(__name__)

DEFAULT_MARGIN_FRACTION = 0.05


@dataclass(frozen=True)
class FloorChange:
    """The floor was crossed: `state` is "below" (stop opening segments) or "above" (resume)."""

    state: Literal["below", "above"]
    free_bytes: int
    floor_bytes: int

    def message(self) -> str:
        if self.state == "below":
            return (
                f"disk floor reached: {format_size(self.free_bytes)} free, below the "
                f"{format_size(self.floor_bytes)} floor; no new segments until space returns"
            )
        return f"disk space back: {format_size(self.free_bytes)} free; recording segments again"


@dataclass
class DiskFloor:
    """Tracks whether free space is below the floor. Feed it samples; it has no clock and no I/O."""

    min_free: MinFree = field(default_factory=MinFree)
    margin_fraction: float = DEFAULT_MARGIN_FRACTION
    below: bool = False
    times_below: int = 0  # how often the floor was reached (a counter for the status file)
    last_free: int | None = None
    last_total: int | None = None

    def floor_bytes(self, total_bytes: int) -> int:
        return self.min_free.floor(total_bytes)

    def update(self, free_bytes: int, total_bytes: int) -> FloorChange | None:
        """Record one sample; a `FloorChange` when this sample crosses the floor, else None."""
        self.last_free, self.last_total = free_bytes, total_bytes
        floor = self.floor_bytes(total_bytes)
        if not self.below and free_bytes < floor:
            self.below = True
            self.times_below += 1
            return FloorChange("below", free_bytes, floor)
        if self.below and free_bytes >= floor + int(floor * self.margin_fraction):
            self.below = False
            return FloorChange("above", free_bytes, floor)
        return None

    def force_below(self, free_bytes: int = 0) -> FloorChange | None:
        """Enter the below-floor state now, e.g. after a write failed with ENOSPC."""
        total = self.last_total or 0
        if self.below:
            return None
        self.below = True
        self.times_below += 1
        self.last_free = free_bytes
        return FloorChange("below", free_bytes, self.floor_bytes(total))


def disk_usage(path: str | os.PathLike[str]) -> tuple[int, int]:
    """`(free_bytes, total_bytes)` of the filesystem holding `path`, as an unprivileged writer sees it."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


@dataclass
class DiskWatch:
    """The edge around `DiskFloor`: samples `directory`'s filesystem at most every `interval` seconds.

    `poll(now)` takes the caller's monotonic time and returns the floor change
    of this sample, if any. It never raises: a failed `statvfs` is counted in
    `errors` (message in `last_error`) and changes nothing.
    """

    directory: str | os.PathLike[str]
    floor: DiskFloor = field(default_factory=DiskFloor)
    # statvfs costs microseconds; at 10 fps a camera segment grows ~1 MB/s, so a 5 s interval
    # let it write ~5 MB past the floor before the check, and kept a paused recorder waiting
    # that long after space came back.
    interval: float = 1.0
    errors: int = 0
    last_error: str | None = None
    _last: float | None = None

    def poll(self, now: float, force: bool = False) -> FloorChange | None:
        if not force and self._last is not None and now - self._last < self.interval:
            return None
        self._last = now
        try:
            free, total = disk_usage(self.directory)
        except OSError as exc:
            self.errors += 1
            self.last_error = f"disk usage of {self.directory}: {exc.strerror or exc}"
            return None
        return self.floor.update(free, total)

    @property
    def below(self) -> bool:
        return self.floor.below


PAUSE_REASON = "disk_floor"


class DiskFloorGuard(StreamListener):
    """Keeps a pipeline from opening segments while the disk is below the floor.

    A stream listener (the dispatcher calls `message`/`tick`/...; only time
    matters here). `pipeline` is the `autorec.runs.dispatch.Dispatcher` that
    delivers to it: its `pause`/`resume` deliver their outputs at once (a bare
    `Pipeline` would return the closing segment to nobody). On each call it
    polls `watch` (rate-limited on `clock`, a monotonic clock) and, sooner,
    whenever `write_errors()` has grown (a write failed, perhaps ENOSPC).
    Crossing below the floor closes the open segment cleanly with reason
    "disk_floor" (`pipeline.pause`) and suppresses new ones, also for the
    records the timeline released together with the one being delivered;
    crossing back above resumes (`pipeline.resume`). Each change goes to
    `on_change(t, change)` (raise/clear the alert there); without a callback
    it is logged. It never touches the segmenter or the sink itself.
    """

    def __init__(
        self,
        pipeline: Any,
        watch: DiskWatch,
        on_change: Callable[[float, FloorChange], None] | None = None,
        write_errors: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pipeline = pipeline
        self.watch = watch
        self.on_change = on_change
        self.write_errors = write_errors
        self.clock = clock
        self._errors_seen = 0

    def check(self, t: float) -> FloorChange | None:
        """Sample if due (or forced by new write errors) and act on a crossing at stream time `t`."""
        force = False
        if self.write_errors is not None:
            errors = self.write_errors()
            force = errors > self._errors_seen
            self._errors_seen = errors
        change = self.watch.poll(self.clock(), force=force)
        if change is None:
            return None
        if change.state == "below":
            self.pipeline.pause(t, PAUSE_REASON)
        else:
            self.pipeline.resume(PAUSE_REASON)
        if self.on_change is not None:
            self.on_change(t, change)
        else:
            log.warning("%s", change.message())
        return change

    # -- the pipeline's StreamListener interface ---------------------------------------------
    def message(self, t: float, kind: str | None) -> None:
        self.check(t)

    def tick(self, t: float) -> None:
        self.check(t)
