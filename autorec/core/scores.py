"""The score track and near-misses: how close each rule came to firing, all night.

Sans-I/O: fed the scores the rule engine collected (`RuleEngine.take_scores()`)
and the firings, in stream-time order; returns what to write. The I/O edge
(`autorec.io.scorelog`) writes it.

Contracts:
- `feed(time, scores, firings)` / `advance(time)` return a `ScoreOutput`:
  `rows`, one `ScoreRow` per rule and whole second of stream time (the
  maximum score in that second, with the threshold of its latest score),
  handed out once the second is over; and `near_misses`, each handed out
  once it is over.
- A near-miss is a score that came close to firing *from where it usually
  is*. A rule's baseline is the median of its per-second maxima over the
  last `window` seconds (30 min; since the start until then); its near-miss
  level is `baseline + fraction x (threshold - baseline)`: `fraction` of the
  way from the usual score to the threshold. A near-miss is a period in
  which the score stayed above that level (pauses under it shorter than
  `gap` seconds do not end it; nor do scores that arrive only once a second)
  without the rule firing. So a temperature held at 37 under `above: 45`
  needs 41 (fraction 0.5) to count, not 22.5, and a camera score that is
  usually ~0 needs half the threshold, as before. A firing discards the
  period it falls in, and no new period starts until the score has dropped
  back under the level (the same excursion is not a miss); nor is a period
  that ended less than `RUN_UP` seconds before a firing of its rule (its
  run-up), so a near-miss is handed out `gap + RUN_UP` seconds after it
  ended. No near-miss before the first second of a rule's scores is over
  (there is no baseline yet), none while the baseline is at or above the
  threshold (the rule is past it already). `fraction` 0 turns near-misses
  off for a rule; a rule whose threshold is not above 0 has none.
- `finish()` hands out every row and near-miss still held.
- `latest[rule]` is the rule's latest `Score`.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from autorec.dates import utc_iso
from autorec.triggers.base import Firing, Score

DEFAULT_FRACTION = 0.5
DEFAULT_GAP = 1.0
# Seconds of per-second maxima whose median is a rule's baseline ("where its score usually is"):
# long enough that a slow drift towards the threshold still counts, short enough that a new
# steady state (a heater set to a new hold) becomes the usual within the hour.
DEFAULT_WINDOW = 1800.0
# A near-miss whose rule stopped reporting scores (its source went quiet) ends this long after its last one.
STALE_GAP = 30.0
# A close call that ends this short a time before its rule fires is the firing's run-up (a camera score over
# the threshold on one frame, then `min_frames` in a row), not a miss: near-misses are handed out this late.
RUN_UP = 5.0


@dataclass(frozen=True, slots=True)
class ScoreRow:
    """The maximum score of `rule` in the second starting at `second` (epoch seconds, whole)."""

    second: int
    rule: str
    max: float
    threshold: float


@dataclass(frozen=True)
class NearMiss:
    """A period in which `rule`'s score came `fraction` of the way from its `baseline` to its threshold
    without firing. `baseline` None: written by an autorec before baselines (read back from an old file)."""

    rule: str
    start: float
    end: float
    peak: float
    threshold: float
    peak_time: float
    baseline: float | None = None

    @property
    def ratio(self) -> float:
        """The peak against the threshold (1.0 would have fired)."""
        return self.peak / self.threshold if self.threshold else math.inf

    @property
    def closeness(self) -> float:
        """How far the peak came from the baseline towards the threshold (0: usual, 1: would have fired)."""
        base = self.baseline if self.baseline is not None else 0.0
        span = self.threshold - base
        return (self.peak - base) / span if span > 0 else math.inf

    def clip_evidence(self) -> dict[str, Any]:
        """The evidence of the firing a near-miss clip (`near_miss_clip`) opens its segment with."""
        return {
            "near_miss": True,
            "peak": self.peak,
            "threshold": self.threshold,
            "baseline": self.baseline,
            "ratio": round(self.ratio, 4),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "start_iso": utc_iso(self.start, digits=2),
            "end_iso": utc_iso(self.end, digits=2),
            "rule": self.rule,
            "peak": self.peak,
            "peak_time": self.peak_time,
            "threshold": self.threshold,
            "baseline": self.baseline,
            "ratio": round(self.ratio, 4),
            "closeness": round(self.closeness, 4),
        }


@dataclass
class ScoreOutput:
    rows: list[ScoreRow] = field(default_factory=list)
    near_misses: list[NearMiss] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.rows or self.near_misses)


@dataclass
class _Second:
    second: int
    max: float
    threshold: float


@dataclass
class _Episode:
    start: float
    last_above: float
    peak: float
    peak_time: float
    threshold: float
    baseline: float
    below_since: float | None = None  # the score went back under the level at this time (a pause, or the end)


class _Baseline:
    """The running median of a rule's per-second maxima over the last `window` seconds."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._order: deque[tuple[int, float]] = deque()
        self._sorted: list[float] = []

    def add(self, second: int, value: float) -> None:
        if not math.isfinite(value):
            return  # a NaN would make the order meaningless; an infinity would stick for the whole window
        self._order.append((second, value))
        bisect.insort(self._sorted, value)
        while self._order and self._order[0][0] <= second - self.window:
            _, old = self._order.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]

    def median(self) -> float | None:
        n = len(self._sorted)
        if not n:
            return None
        return self._sorted[n // 2] if n % 2 else (self._sorted[n // 2 - 1] + self._sorted[n // 2]) / 2


class ScoreTrack:
    """See the module docstring. `fractions`: rule -> near-miss fraction (unlisted: `default`)."""

    def __init__(
        self,
        fractions: Mapping[str, float] | None = None,
        default: float = DEFAULT_FRACTION,
        gap: float = DEFAULT_GAP,
        window: float = DEFAULT_WINDOW,
    ) -> None:
        self.fractions = dict(fractions or {})
        self.default = default
        self.gap = gap
        self.window = window
        self._baselines: dict[str, _Baseline] = {}
        self.latest: dict[str, Score] = {}
        self._seconds: dict[str, _Second] = {}
        self._episodes: dict[str, _Episode] = {}
        self._blocked: set[str] = set()  # fired: no new period until the score drops under the level
        self._held: dict[str, list[NearMiss]] = {}  # over, handed out once no firing followed within RUN_UP

    def fraction(self, rule: str) -> float:
        return self.fractions.get(rule, self.default)

    def feed(self, time: float, scores: Iterable[Score], firings: Iterable[Firing] = ()) -> ScoreOutput:
        out = self.advance(time)
        for s in scores:
            self._score(s, out)
        for f in firings:
            self._episodes.pop(f.rule, None)  # it fired: whatever came close was not a miss
            self._held.pop(f.rule, None)  # nor was a close call just before it (the firing's run-up)
            self._blocked.add(f.rule)
        return out

    def advance(self, time: float) -> ScoreOutput:
        """Hand out the seconds and near-misses that are over at `time`."""
        out = ScoreOutput()
        if not self._seconds and not self._episodes and not self._held:
            return out  # nothing pending (most messages of a rule file without scores)
        now = math.floor(time)
        for rule, sec in list(self._seconds.items()):
            if sec.second < now:
                self._close_second(rule, sec, out)
                del self._seconds[rule]
        for rule, ep in list(self._episodes.items()):
            paused = ep.below_since is not None and time - ep.below_since > self.gap
            if paused or time - ep.last_above > STALE_GAP:
                self._held.setdefault(rule, []).append(self._near_miss(rule, ep))
                del self._episodes[rule]
        for rule, held in list(self._held.items()):
            while held and time - held[0].end > self.gap + RUN_UP:
                out.near_misses.append(held.pop(0))
            if not held:
                del self._held[rule]
        return out

    def finish(self) -> ScoreOutput:
        out = ScoreOutput()
        for rule, sec in self._seconds.items():
            self._close_second(rule, sec, out)
        out.near_misses = [nm for held in self._held.values() for nm in held]
        out.near_misses += [self._near_miss(r, ep) for r, ep in self._episodes.items()]
        out.near_misses.sort(key=lambda nm: nm.start)
        self._seconds.clear()
        self._episodes.clear()
        self._held.clear()
        return out

    def baseline(self, rule: str) -> float | None:
        """Where `rule`'s score usually is (see the module docstring); None before its first second is over."""
        b = self._baselines.get(rule)
        return None if b is None else b.median()

    def level(self, rule: str, threshold: float) -> float | None:
        """The score above which `rule` is having a near-miss; None when it cannot have one now."""
        fraction = self.fraction(rule)
        base = self.baseline(rule)
        if fraction <= 0 or threshold <= 0 or base is None or base >= threshold:
            return None
        return base + fraction * (threshold - base)

    def _close_second(self, rule: str, sec: _Second, out: ScoreOutput) -> None:
        out.rows.append(ScoreRow(sec.second, rule, sec.max, sec.threshold))
        baseline = self._baselines.get(rule)
        if baseline is None:
            baseline = self._baselines[rule] = _Baseline(self.window)
        baseline.add(sec.second, sec.max)

    def _score(self, s: Score, out: ScoreOutput) -> None:
        self.latest[s.rule] = s
        second = math.floor(s.time)
        sec = self._seconds.get(s.rule)
        if sec is not None and sec.second != second:
            self._close_second(s.rule, sec, out)
            sec = None
        if sec is None:
            self._seconds[s.rule] = _Second(second, s.value, s.threshold)
        else:
            sec.max = max(sec.max, s.value)
            sec.threshold = s.threshold
        level = self.level(s.rule, s.threshold)
        if level is None:
            return
        ep = self._episodes.get(s.rule)
        if s.value <= level:
            self._blocked.discard(s.rule)
            if ep is not None and ep.below_since is None:
                ep.below_since = s.time
            return
        if s.rule in self._blocked:
            return
        if ep is None:
            base = self.baseline(s.rule)
            self._episodes[s.rule] = _Episode(s.time, s.time, s.value, s.time, s.threshold, base or 0.0)
            return
        ep.last_above = max(ep.last_above, s.time)
        ep.below_since = None
        if s.value > ep.peak:
            ep.peak, ep.peak_time, ep.threshold = s.value, s.time, s.threshold

    @staticmethod
    def _near_miss(rule: str, ep: _Episode) -> NearMiss:
        return NearMiss(rule, ep.start, ep.last_above, ep.peak, ep.threshold, ep.peak_time, ep.baseline)
