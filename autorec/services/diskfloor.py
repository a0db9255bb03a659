"""The free-space floor (`output.min_free`): below it no segment opens.

Sans-I/O core: `DiskFloor` is fed `(free_bytes, total_bytes)` samples and
returns a `FloorChange` only when the state flips, so the caller raises one
alert when space runs out and one "cleared" message when it returns.
The edges around it: `disk_usage(path)` (one `os.statvfs` call), `DiskWatch`
(samples it at most every `interval` seconds of a time the caller passes in)
and `DiskFloorSampler` (says when to sample: on the monotonic clock it is given,
and at once after a write error). The floor acts on nothing itself: the driver
(`autorec.runs.dispatch.Dispatcher`) asks the sampler before each input it feeds
the pipeline and feeds a crossing as an input of its own (`Pipeline.floor_crossed`),
whose `FloorCrossed` output reaches the alerts like any other.

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
from typing import Literal

from autorec.core.ruleset import MinFree

log = logging.getLogger(__name__)

DEFAULT_MARGIN_FRACTION = 0.05


@dataclass(frozen=True)
class FloorChange:
    """The floor was crossed: `state` is "below" (stop opening segments) or "above" (resume)."""

    state: Literal["below", "above"]
    free_bytes: int
    floor_bytes: int


@dataclass
class DiskFloor:
    """Tracks whether free space is below the floor. Feed it samples; it has no clock and no I/O."""

    min_free: MinFree = field(default_factory=MinFree)
    margin_fraction: float = DEFAULT_MARGIN_FRACTION
    below: bool = False
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
            return FloorChange("below", free_bytes, floor)
        if self.below and free_bytes >= floor + int(floor * self.margin_fraction):
            self.below = False
            return FloorChange("above", free_bytes, floor)
        return None


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


class DiskFloorSampler:
    """When to sample the disk floor, for the driver that feeds the pipeline.

    `sample()` polls `watch` (rate-limited on `clock`, a monotonic clock) and, sooner, whenever
    `write_errors()` has grown since the last call (a write failed, perhaps ENOSPC); it returns
    the crossing this sample made (a `FloorChange`), else None. `wall` is the local clock, for a
    crossing before the stream has given any time. It acts on nothing: the driver feeds a crossing
    to the pipeline (`autorec.runs.dispatch.Dispatcher`).
    """

    def __init__(
        self,
        watch: DiskWatch,
        write_errors: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.watch = watch
        self.write_errors = write_errors
        self.clock = clock
        self.wall = wall
        self._errors_seen = 0

    def sample(self) -> FloorChange | None:
        """Sample if due (or forced by new write errors): the crossing, if this sample made one."""
        force = False
        if self.write_errors is not None:
            errors = self.write_errors()
            force = errors > self._errors_seen
            self._errors_seen = errors
        return self.watch.poll(self.clock(), force=force)
