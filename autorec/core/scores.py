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
- A near-miss of a rule is a period in which its score stayed above
  `fraction` x threshold (with pauses under `gap` seconds) without the rule
  firing. A firing discards the period it falls in, and no new period starts
  until the score has dropped back under the level (the same excursion is
  not a miss). `fraction` 0 turns near-misses off for a rule; a rule whose
  threshold is not above 0 has none (a ratio to it means nothing).
- `finish()` hands out every row and near-miss still held.
- `latest[rule]` is the rule's latest `Score`.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from autorec.triggers.base import Firing, Score

DEFAULT_FRACTION = 0.5
DEFAULT_GAP = 1.0


@dataclass(frozen=True, slots=True)
class ScoreRow:
    """The maximum score of `rule` in the second starting at `second` (epoch seconds, whole)."""

    second: int
    rule: str
    max: float
    threshold: float


@dataclass(frozen=True)
class NearMiss:
    """A period in which `rule` came within `fraction` of its threshold without firing."""

    rule: str
    start: float
    end: float
    peak: float
    threshold: float
    peak_time: float

    @property
    def ratio(self) -> float:
        return self.peak / self.threshold if self.threshold else math.inf

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "start_iso": _iso(self.start),
            "end_iso": _iso(self.end),
            "rule": self.rule,
            "peak": self.peak,
            "peak_time": self.peak_time,
            "threshold": self.threshold,
            "ratio": round(self.ratio, 4),
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


class ScoreTrack:
    """See the module docstring. `fractions`: rule -> near-miss fraction (unlisted: `default`)."""

    def __init__(
        self, fractions: Mapping[str, float] | None = None, default: float = DEFAULT_FRACTION, gap: float = DEFAULT_GAP
    ) -> None:
        self.fractions = dict(fractions or {})
        self.default = default
        self.gap = gap
        self.latest: dict[str, Score] = {}
        self._seconds: dict[str, _Second] = {}
        self._episodes: dict[str, _Episode] = {}
        self._blocked: set[str] = set()  # fired: no new period until the score drops under the level

    def fraction(self, rule: str) -> float:
        return self.fractions.get(rule, self.default)

    def feed(self, time: float, scores: Iterable[Score], firings: Iterable[Firing] = ()) -> ScoreOutput:
        out = self.advance(time)
        for s in scores:
            self._score(s, out)
        for f in firings:
            self._episodes.pop(f.rule, None)  # it fired: whatever came close was not a miss
            self._blocked.add(f.rule)
        return out

    def advance(self, time: float) -> ScoreOutput:
        """Hand out the seconds and near-misses that are over at `time`."""
        out = ScoreOutput()
        if not self._seconds and not self._episodes:
            return out  # nothing pending (most messages of a rule file without scores)
        now = math.floor(time)
        for rule, sec in list(self._seconds.items()):
            if sec.second < now:
                out.rows.append(ScoreRow(sec.second, rule, sec.max, sec.threshold))
                del self._seconds[rule]
        for rule, ep in list(self._episodes.items()):
            if time - ep.last_above > self.gap:
                out.near_misses.append(self._near_miss(rule, ep))
                del self._episodes[rule]
        return out

    def finish(self) -> ScoreOutput:
        out = ScoreOutput()
        out.rows = [ScoreRow(s.second, r, s.max, s.threshold) for r, s in self._seconds.items()]
        out.near_misses = [self._near_miss(r, ep) for r, ep in self._episodes.items()]
        self._seconds.clear()
        self._episodes.clear()
        return out

    def _score(self, s: Score, out: ScoreOutput) -> None:
        self.latest[s.rule] = s
        second = math.floor(s.time)
        sec = self._seconds.get(s.rule)
        if sec is not None and sec.second != second:
            out.rows.append(ScoreRow(sec.second, s.rule, sec.max, sec.threshold))
            sec = None
        if sec is None:
            self._seconds[s.rule] = _Second(second, s.value, s.threshold)
        else:
            sec.max = max(sec.max, s.value)
            sec.threshold = s.threshold
        fraction = self.fraction(s.rule)
        if fraction <= 0 or s.threshold <= 0:
            return
        if s.value <= fraction * s.threshold:
            self._blocked.discard(s.rule)
            return
        if s.rule in self._blocked:
            return
        ep = self._episodes.get(s.rule)
        if ep is None:
            self._episodes[s.rule] = _Episode(s.time, s.time, s.value, s.time, s.threshold)
            return
        ep.last_above = max(ep.last_above, s.time)
        if s.value > ep.peak:
            ep.peak, ep.peak_time, ep.threshold = s.value, s.time, s.threshold

    @staticmethod
    def _near_miss(rule: str, ep: _Episode) -> NearMiss:
        return NearMiss(rule, ep.start, ep.last_above, ep.peak, ep.threshold, ep.peak_time)


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
