"""The dry run's sink: the segments a backtest would write, listed instead of written.

`DryRun` takes the segmenter's actions like `autorec.io.writer.SegmentWriter` does and keeps a
`PlannedSegment` per segment (start, end, rules, records, bytes, why it closed); it prints each
as it closes (`out` or `say`) and, at the end, the total kept against the log's size
(`report`) and each rule's score distribution and near-misses (`report_scores`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from autorec.core.scores import NearMiss
from autorec.core.segmenter import Action, CloseSegment, OpenSegment, Write
from autorec.readable import local_and_utc
from autorec.units import format_size

log = logging.getLogger(__name__)


@dataclass
class PlannedSegment:
    """A segment a dry run would have written."""

    start: float
    end: float = 0.0
    rules: tuple[str, ...] = ()
    records: int = 0
    bytes: int = 0  # as a log file: payloads plus 4-byte headers
    reason: str = ""
    part: int = 1
    near_miss: bool = False  # only near-miss clips in it


class DryRun:
    """A sink that writes nothing and lists the segments that would have been written.

    With `out`, each segment's line is printed the moment the segment closes (a night's log
    takes minutes on a Raspberry Pi: the first results show at once), through `say` when given
    (a progress bar's `write`, so the bar is not torn).
    """

    def __init__(self, out: TextIO | None = None, say: Callable[[str], None] | None = None) -> None:
        self.segments: list[PlannedSegment] = []
        self._current: PlannedSegment | None = None
        self._out = out
        self._say = say
        self.score_maxima: dict[str, list[float]] = {}  # rule -> its per-second maxima, in order
        self.thresholds: dict[str, float] = {}  # rule -> its latest threshold
        self.found_near_misses: list[NearMiss] = []

    def score_rows(self, rows: Sequence[Any]) -> None:
        for r in rows:
            self.score_maxima.setdefault(r.rule, []).append(r.max)
            self.thresholds[r.rule] = r.threshold

    def near_misses(self, items: Sequence[NearMiss]) -> None:
        self.found_near_misses.extend(items)

    def score_summary(self) -> dict[str, dict[str, float]]:
        """Per rule: the distribution of its per-second maximum scores (peak, p50, p90, p99),
        the threshold, and the seconds whose maximum was above it."""
        import numpy as np

        out = {}
        for rule, maxima in self.score_maxima.items():
            a = np.asarray(maxima, dtype=np.float64)
            threshold = self.thresholds[rule]
            p50, p90, p99 = (float(x) for x in np.percentile(a, [50, 90, 99]))
            out[rule] = {
                "threshold": threshold,
                "seconds": int(a.size),
                "peak": float(a.max()),
                "p50": p50,
                "p90": p90,
                "p99": p99,
                "seconds_above": int(np.count_nonzero(a > threshold)),
            }
        return out

    def report_scores(self, out: TextIO) -> None:
        """Print each rule's score distribution against its threshold, and the near-misses."""
        summary = self.score_summary()
        if not summary:
            return
        print("scores (per-second maxima):", file=out)
        for rule, d in summary.items():
            th = d["threshold"]

            def x(v: float, th: float = th) -> str:
                return f"{v:.4g} ({v / th:.2f}x)" if th > 0 else f"{v:.4g}"

            print(
                f"  {rule}: threshold {th:.4g}  peak {x(d['peak'])}  p50 {x(d['p50'])}  p90 {x(d['p90'])}  "
                f"p99 {x(d['p99'])}  above threshold {d['seconds_above']} s of {d['seconds']} s",
                file=out,
            )
        print(f"{len(self.found_near_misses)} near-miss(es)", file=out)
        for nm in self.found_near_misses:
            # A score can pass the threshold without the rule firing (one frame of `min_frames`, a move
            # that did not `settle`, the log ending first): "300% of the way" would read as a slip.
            how = f"{nm.closeness:.0%} of the way" if nm.closeness < 1 else "past it, did not fire"
            print(
                f"  {_iso(nm.start)}  {nm.end - nm.start:6.1f} s  {nm.rule}  peak {nm.peak:.4g} "
                f"(usually {_num(nm.baseline)}, fires at {nm.threshold:.4g}: {how})",
                file=out,
            )

    def submit(self, actions: Iterable[Action]) -> None:
        for a in actions:
            if isinstance(a, Write):
                cur = self._current
                if cur is not None:
                    cur.records += 1
                    cur.bytes += 4 + len(a.payload)
            elif isinstance(a, OpenSegment):
                self._current = PlannedSegment(start=a.start, rules=a.rules, part=a.part)
            elif isinstance(a, CloseSegment) and self._current is not None:
                self._current.end = a.end
                self._current.rules = a.rules
                self._current.reason = a.reason
                self._current.near_miss = bool(a.firings) and all(
                    f.evidence.get("near_miss") is True for f in a.firings
                )
                self.segments.append(self._current)
                self._show(self._current)
                self._current = None

    def _show(self, s: PlannedSegment) -> None:
        if self._say is not None:
            self._say(segment_line(s))
        elif self._out is not None:
            print(segment_line(s), file=self._out, flush=True)

    def telemetry(self, time: float, payload: bytes) -> None:
        pass

    def close(self, timeout: float | None = None) -> bool:
        return True

    @property
    def kept_bytes(self) -> int:
        return sum(s.bytes for s in self.segments)

    def report(self, log_bytes: int, out: TextIO) -> None:
        """Print the line of each segment not printed as it closed, then the total kept against the log's size."""
        if self._out is None and self._say is None:
            for s in self.segments:
                print(segment_line(s), file=out)
        pct = 100.0 * self.kept_bytes / log_bytes if log_bytes else 0.0
        print(
            f"{len(self.segments)} segment(s), {format_size(self.kept_bytes)} kept of "
            f"{format_size(log_bytes)} ({pct:.1f} %)",
            file=out,
        )


def _num(v: float | None) -> str:
    return "?" if v is None else f"{v:.4g}"


def _iso(t: float) -> str:
    return local_and_utc(t, 1)


def segment_line(s: PlannedSegment) -> str:
    """One planned segment as `--dry-run` lists it: start (local, UTC beside), length, size, rules, why it closed."""
    part = f" part {s.part}" if s.part > 1 else ""
    rules = "+".join(s.rules)
    near = " near miss" if s.near_miss else ""
    return f"{_iso(s.start)}  {s.end - s.start:8.1f} s  {format_size(s.bytes):>10}  {rules}{part} ({s.reason}){near}"


# -- drivers -------------------------------------------------------------------
