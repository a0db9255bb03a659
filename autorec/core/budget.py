"""Budgets and flap control: one bad rule must not fill the disk before morning.

Sans-I/O: `BudgetKeeper` is fed stream times, firings, segment openings and
byte counts, and decides; it has no clock, no files, no sockets. The pipeline
glues it in (see `autorec.core.pipeline`).

Budgets (per rule, and `overall` for all segments together):
- `max_segments_per_hour`: segments opened by a trigger (not `max_length`
  parts) in the last hour;
- `max_bytes_per_hour`: segment bytes written in the last hour (a segment's
  bytes count for every rule it lists);
- `max_share`: segment bytes written in the last 24 hours, as a fraction of
  the output filesystem's size (`volume_bytes`; unknown -> not checked).
A rule whose budget (or the overall budget) is spent is *exhausted*: its
firings are blocked (they neither open nor extend a segment; the pipeline
lists them in the open segment's sidecar, if any, and counts them) until the
sliding window has room again: bytes below `1 - REFILL_MARGIN` (80 %) of the
limit, segments below the limit. The margin keeps a rule that fires all the
time from being let through for a few bytes each minute, alerting each time.
The segment open when a budget runs out goes on to its own end, so a budget
holds to within one segment.

Flapping (per rule): a rule is flapping when it fired more than `flap_rate`
times in each of the last `flap_for` minutes (whole UTC minutes), or when
segments holding it have been open for more than `max_open` without a break.
It stops flapping after a whole minute with at most `flap_rate` firings (none
without `flap_rate`). While a rule flaps, the segments it is in keep at most
`keep_fps` camera frames a second (`keep_frame`), and the pipeline closes the
open segment when flapping starts (reason `flapping`), so the flapping period
is a segment of its own.

State changes come back from `check(time, open_rules)` as `Change`s, each
once: `budget_exhausted` raised when a budget is spent and cleared when it has
room again (key `budget_exhausted:RULE`, or `budget_exhausted:*` for the
overall budget), `flapping` raised and cleared (key `flapping:RULE`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from autorec.triggers.base import Firing
from autorec.units import format_duration, format_size

REFILL_MARGIN = 0.2
HOUR = 3600.0
DAY = 86400.0
OVERALL = "*"


@dataclass(frozen=True)
class Budget:
    """Limits on what segments may cost; None: no limit."""

    max_segments_per_hour: int | None = None
    max_bytes_per_hour: int | None = None
    max_share: float | None = None  # fraction (0-1] of the output filesystem, per 24 h

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.max_segments_per_hour, self.max_bytes_per_hour, self.max_share))


@dataclass(frozen=True)
class FlapPolicy:
    """When a rule counts as flapping, and what happens to its segments then."""

    max_open: float | None = None  # seconds
    flap_rate: int | None = None  # firings a minute
    flap_for: float = 300.0  # seconds (whole minutes) the rate must hold
    keep_fps: float | None = None  # camera frames a second kept while flapping; None: all

    @property
    def active(self) -> bool:
        return self.max_open is not None or self.flap_rate is not None


@dataclass(frozen=True)
class Change:
    """An alert-worthy state change: `name` budget_exhausted or flapping, for `rule` (`*`: overall)."""

    state: Literal["raised", "cleared"]
    name: str
    rule: str
    time: float
    message: str

    @property
    def key(self) -> str:
        return f"{self.name}:{self.rule}"


class _Window:
    """Amounts over a sliding `span`, in `bucket`-second buckets (memory bounded by span/bucket)."""

    def __init__(self, span: float, bucket: float) -> None:
        self.span, self.bucket = span, bucket
        self._items: deque[list[float]] = deque()  # [bucket start, amount]
        self._total = 0.0

    def add(self, t: float, amount: float) -> None:
        start = math.floor(t / self.bucket) * self.bucket
        if self._items and self._items[-1][0] == start:
            self._items[-1][1] += amount
        elif self._items and start < self._items[-1][0]:
            self._items[-1][1] += amount  # the clock went back: count it with the newest
        else:
            self._items.append([start, amount])
        self._total += amount
        self._expire(t)

    def total(self, t: float) -> float:
        self._expire(t)
        return self._total

    def _expire(self, t: float) -> None:
        while self._items and self._items[0][0] + self.bucket <= t - self.span:
            self._total -= self._items.popleft()[1]
        if not self._items:
            self._total = 0.0


@dataclass
class _Account:
    budget: Budget
    segments: _Window = field(default_factory=lambda: _Window(HOUR, 60.0))
    bytes_hour: _Window = field(default_factory=lambda: _Window(HOUR, 60.0))
    bytes_day: _Window = field(default_factory=lambda: _Window(DAY, 3600.0))
    exhausted: str | None = None  # why, while exhausted
    blocked: int = 0  # firings blocked so far
    segments_total: int = 0
    bytes_total: int = 0

    def spent(self, t: float, volume: int | None) -> str | None:
        """Why this budget is spent at `t`, or None (while exhausted: until it has refilled past the margin)."""
        b = self.budget
        fill = 1.0 - REFILL_MARGIN if self.exhausted else 1.0
        if b.max_segments_per_hour is not None and self.segments.total(t) >= b.max_segments_per_hour:
            return f"{b.max_segments_per_hour} segments in the last hour"
        if b.max_bytes_per_hour is not None and self.bytes_hour.total(t) >= b.max_bytes_per_hour * fill:
            return f"{format_size(b.max_bytes_per_hour)} written in the last hour"
        if b.max_share is not None and volume and self.bytes_day.total(t) >= b.max_share * volume * fill:
            return f"{b.max_share * 100:g}% of the disk ({format_size(int(b.max_share * volume))}) in the last 24 h"
        return None


@dataclass
class _Flap:
    policy: FlapPolicy
    minutes: _Window = field(init=False)
    flapping: bool = False
    open_since: float | None = None
    thinned: int = 0  # camera records left out while flapping
    thinned_bytes: int = 0

    def __post_init__(self) -> None:
        self.minutes = _Window(self.policy.flap_for + 120.0, 60.0)

    def counts(self, t: float, n: int) -> list[float]:
        """Firings in each of the `n` whole minutes before the current one (missing minutes are 0)."""
        self.minutes._expire(t)
        now = math.floor(t / 60.0) * 60.0
        by_start = {start: amount for start, amount in self.minutes._items}
        return [by_start.get(now - 60.0 * (i + 1), 0.0) for i in range(n)]


class BudgetKeeper:
    """See the module docstring. `rules`, `flaps`: rule name -> its settings (inactive ones are ignored)."""

    def __init__(
        self,
        overall: Budget | None = None,
        rules: Mapping[str, Budget] | None = None,
        flaps: Mapping[str, FlapPolicy] | None = None,
        volume_bytes: int | None = None,
    ) -> None:
        self.volume_bytes = volume_bytes
        self._overall = _Account(overall or Budget())
        self._rules = {name: _Account(b) for name, b in (rules or {}).items() if b.active}
        self._flaps = {name: _Flap(p) for name, p in (flaps or {}).items() if p.active}
        self._last_kept: float | None = None  # last camera frame kept while thinning

    @property
    def active(self) -> bool:
        return self._overall.budget.active or bool(self._rules) or bool(self._flaps)

    # -- inputs ----------------------------------------------------------------------------

    def firings(self, t: float, firings: Sequence[Firing]) -> tuple[list[Firing], list[Firing]]:
        """(allowed, blocked): blocked firings are those of an exhausted rule (or all, overall exhausted)."""
        allowed: list[Firing] = []
        blocked: list[Firing] = []
        overall = self._spent(self._overall, t)
        for f in firings:
            flap = self._flaps.get(f.rule)
            if flap is not None:
                flap.minutes.add(f.time if math.isfinite(f.time) else t, 1.0)
            account = self._rules.get(f.rule)
            why = overall or (self._spent(account, t) if account is not None else None)
            if why:
                blocked.append(f)
                (account or self._overall).blocked += 1
                if account is not None and overall:
                    self._overall.blocked += 1
            else:
                allowed.append(f)
        return allowed, blocked

    def opened(self, t: float, rules: Iterable[str]) -> None:
        """A trigger opened a segment listing `rules` (not a max_length part)."""
        self._overall.segments.add(t, 1.0)
        self._overall.segments_total += 1
        for r in rules:
            account = self._rules.get(r)
            if account is not None:
                account.segments.add(t, 1.0)
                account.segments_total += 1

    def wrote(self, t: float, nbytes: int, rules: Iterable[str]) -> None:
        """`nbytes` went into the segment of `rules`."""
        for account in (self._overall, *(self._rules[r] for r in rules if r in self._rules)):
            account.bytes_hour.add(t, nbytes)
            account.bytes_day.add(t, nbytes)
            account.bytes_total += nbytes

    def keep_frame(self, t: float, kind: str, rules: Iterable[str], nbytes: int = 0) -> bool:
        """Whether a camera record (`image` or `image_transform`) at `t` stays in a segment of `rules`.

        An `image_transform` is decided like the `image` with the same timestamp that follows it.
        """
        fps = None
        flapping = None
        for r in rules:
            flap = self._flaps.get(r)
            if flap is not None and flap.flapping and flap.policy.keep_fps is not None:
                if fps is None or flap.policy.keep_fps > fps:
                    fps, flapping = flap.policy.keep_fps, flap
        if fps is None or flapping is None:
            return True
        last = self._last_kept
        keep = last is None or t - last >= 1.0 / fps - 1e-6 or t < last
        if kind == "image" and keep:
            self._last_kept = t
        if not keep:
            flapping.thinned += 1
            flapping.thinned_bytes += nbytes
        return keep

    def segment_closed(self, rules: Iterable[str], reason: str) -> None:
        """A segment closed; anything but a flapping split breaks `max_open`'s continuity."""
        if reason == "flapping":
            return
        for r in rules:
            flap = self._flaps.get(r)
            if flap is not None:
                flap.open_since = None

    def check(self, t: float, open_rules: Sequence[str] = ()) -> list[Change]:
        """Budget and flapping state changes at `t` (each raised once until cleared)."""
        changes: list[Change] = []
        for name, account in ((OVERALL, self._overall), *self._rules.items()):
            why = self._spent(account, t)
            if why and not account.exhausted:
                account.exhausted = why
                who = "all rules" if name == OVERALL else f"rule {name!r}"
                changes.append(
                    Change(
                        "raised",
                        "budget_exhausted",
                        name,
                        t,
                        f"{who}: budget spent ({why}); no new segments until it refills",
                    )
                )
            elif not why and account.exhausted:
                account.exhausted = None
                who = "all rules" if name == OVERALL else f"rule {name!r}"
                changes.append(Change("cleared", "budget_exhausted", name, t, f"{who}: budget has room again"))
        for name, flap in self._flaps.items():
            p = flap.policy
            if name in open_rules:
                if flap.open_since is None or t < flap.open_since:
                    flap.open_since = t
            if not flap.flapping:
                why = None
                if p.flap_rate is not None:
                    n = max(1, math.ceil(p.flap_for / 60.0 - 1e-9))
                    counts = flap.counts(t, n)
                    if all(c > p.flap_rate for c in counts):
                        why = f"more than {p.flap_rate} firings a minute for {format_duration(n * 60.0)}"
                if why is None and p.max_open is not None and flap.open_since is not None:
                    if t - flap.open_since > p.max_open:
                        why = f"segments open for {format_duration(t - flap.open_since)} without a break"
                if why:
                    flap.flapping = True
                    thin = f"; keeping {p.keep_fps:g} frame(s)/s" if p.keep_fps is not None else ""
                    changes.append(Change("raised", "flapping", name, t, f"rule {name!r} is flapping: {why}{thin}"))
            else:
                (last_minute,) = flap.counts(t, 1)
                if last_minute <= (p.flap_rate or 0):
                    flap.flapping = False
                    flap.open_since = None
                    changes.append(Change("cleared", "flapping", name, t, f"rule {name!r} calm again"))
        return changes

    # -- status ----------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """Counters for the status file: per rule `RULE.budget_blocked`, `RULE.flap_thinned`, and totals."""
        out = {"budget_blocked": self._overall.blocked + sum(a.blocked for a in self._rules.values())}
        for name, account in self._rules.items():
            out[f"{name}.budget_blocked"] = account.blocked
        thinned = 0
        for name, flap in self._flaps.items():
            out[f"{name}.flap_thinned"] = flap.thinned
            thinned += flap.thinned
        out["flap_thinned"] = thinned
        return out

    def is_exhausted(self, rule: str = OVERALL) -> bool:
        account = self._overall if rule == OVERALL else self._rules.get(rule)
        return bool(account is not None and account.exhausted)

    def is_flapping(self, rule: str) -> bool:
        flap = self._flaps.get(rule)
        return bool(flap is not None and flap.flapping)

    # -- internals -------------------------------------------------------------------------

    def _spent(self, account: _Account, t: float) -> str | None:
        return account.spent(t, self.volume_bytes)
