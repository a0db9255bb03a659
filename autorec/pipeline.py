"""The recording pipeline: source -> timeline -> rule engine -> segmenter -> writer.

One pipeline serves every way of running autorec: live against a rig, against
the built-in simulator (`run --sim`), and offline over a log (`run --replay`,
with or without `--dry-run`). Only the drivers differ:

- `Pipeline` itself is synchronous glue without a clock: it is handed source
  items (`Message`, `Connected`, `Disconnected`) and ticks, and passes the
  segmenter's actions to a sink (`SegmentWriter`, or `DryRun`).
- `run_live(pipeline, source, ...)` drives it from an async source with a
  tick every `tick_interval` seconds and a status line.
- `run_file(pipeline, path)` drives it from a log file as fast as possible.

Contracts of `Pipeline`:
- Messages whose payload did not parse (`rejected`) are counted and never
  reach a segment. Messages that arrive before any timestamp is known are
  held (bounded) and fed with the first known time.
- Live, a tick's stream time is the last event time plus the monotonic time
  elapsed since it arrived (times `rate`), minus `tick_lag` real seconds so
  that a message already on its way is not shut out of a segment whose
  post-roll has just ended.
- Extension points for later features, so they plug in without rewrites:
  `SegmentObserver`s on the writer (hooks, video export on close, retention,
  status), `StreamListener`s here (alerts, status: connected/disconnected,
  every message's time and kind, ticks, firings), and
  `segmenter.pause()/resume()` (the disk floor).
- The timelapse track (`output.timelapse`, `autorec.timelapse`): every message
  also goes through a `TimelapsePicker`; the records it picks go to
  `sink.timelapse(time, payload)` (sinks without that method get none), and
  nothing is picked while the disk floor has paused the segmenter.
- Budgets and flap control (`autorec.budget`, configured in the rule file):
  firings of a rule whose budget is spent do not reach the segmenter; they
  are listed in the open segment's sidecar (evidence `budget_blocked: true`)
  if one is open, and counted. Camera records of a flapping rule's segment
  are thinned (`flap_keep_fps`); each segment that lost frames to it gets a
  `flap_thinned` gap with the records and bytes left out. When a rule starts
  flapping its open segment is closed (reason `flapping`). State changes go
  to `on_budget_change` (the alerts), or to the log without one.
- `finish()` closes the open segment (reason `shutdown`, or `end_of_log`
  offline) and hands the close to the sink; the caller then closes the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as _dt
import logging
import sys
import time as _time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from autorec import events
from autorec.budget import BudgetKeeper, Change
from autorec.diskfloor import PAUSE_REASON as DISK_FLOOR_PAUSE
from autorec.diskfloor import disk_usage
from autorec.engine import RuleEngine
from autorec.filesource import FileSource
from autorec.rules import RuleSet
from autorec.segmenter import Action, CloseSegment, Gap, OpenSegment, Segmenter, Write
from autorec.source import Connected, Disconnected, Message
from autorec.telemetry import is_telemetry_kind
from autorec.timelapse import TimelapsePicker
from autorec.timeline import Timeline
from autorec.triggers.base import Firing
from autorec.units import format_size

log = logging.getLogger("autorec.pipeline")

MAX_HELD = 10_000  # messages held while no timestamp is known yet


class Sink(Protocol):
    """Where the segmenter's actions go: a `SegmentWriter` or a `DryRun`."""

    def submit(self, actions: Iterable[Action]) -> None: ...

    def telemetry(self, time: float, payload: bytes) -> None: ...

    def close(self, timeout: float | None = None) -> bool: ...


class StreamListener:
    """Base class for things that watch the stream (alerts, status). Times are stream time. Override what you need."""

    def connected(self, t: float) -> None: ...

    def disconnected(self, t: float) -> None: ...

    def message(self, t: float, kind: str | None) -> None: ...

    def tick(self, t: float) -> None: ...

    def fired(self, t: float, firings: Sequence[Firing]) -> None: ...


@dataclass
class PipelineStats:
    """Counters of one pipeline (plain attributes: safe to read from another thread)."""

    messages: int = 0
    bytes: int = 0
    rejected: int = 0
    held: int = 0  # messages dropped because no timestamp ever came within MAX_HELD
    firings: int = 0
    segments: int = 0  # opened, parts included
    connected: bool = False
    first_time: float | None = None
    last_time: float | None = None
    kinds: dict[str, int] = field(default_factory=dict)


class Pipeline:
    """Glue from source items to sink actions. See the module docstring."""

    def __init__(
        self,
        ruleset: RuleSet,
        sink: Sink,
        *,
        offline: bool = False,
        rate: float = 1.0,
        telemetry: bool | None = None,
        tick_lag: float = 0.25,
        listeners: Sequence[StreamListener] = (),
        timelapse: bool = True,
    ) -> None:
        self.ruleset = ruleset
        self.sink = sink
        self.offline = offline
        self.engine = RuleEngine(ruleset)
        self.segmenter = Segmenter({r.name: r.segments for r in ruleset.rules}, ruleset.segments)
        self.timeline = Timeline(rate=rate)
        self.telemetry = ruleset.output.telemetry if telemetry is None else telemetry
        self.tick_lag = tick_lag * rate
        self.listeners: list[StreamListener] = list(listeners)
        self.stats = PipelineStats()
        self._held: list[tuple[bytes, str, Any]] = []  # (payload, kind, event) awaiting a first time
        self._segment_time: float | None = None  # last time fed to the segmenter
        # `timelapse` False (run --no-timelapse, replays) or `output.timelapse: off`: no track.
        interval = ruleset.output.timelapse
        self._timelapse_out = getattr(sink, "timelapse", None) if timelapse and interval else None
        self.timelapse = TimelapsePicker(interval) if self._timelapse_out is not None and interval else None
        self.budget: BudgetKeeper | None = _budget_keeper(ruleset)
        self.on_budget_change: Callable[[Change], None] | None = None
        self._budget_rules: tuple[str, ...] = ()  # rules of the open segment, as the last actions left it
        self._thinned: list[Any] = [0, 0, None, None]  # records, bytes, first and last time in the open segment
        self._budget_next_check: float | None = None

    # -- inputs --------------------------------------------------------
    def handle(self, item: Message | Connected | Disconnected) -> None:
        if isinstance(item, Message):
            self.message(item)
        elif isinstance(item, Connected):
            self.connected(item.monotonic, item.time)
        elif isinstance(item, Disconnected):
            self.disconnected(item.monotonic, item.time)

    def message(self, msg: Message) -> None:
        if msg.rejected is not None:
            self.stats.rejected += 1
            if self.stats.rejected == 1:
                log.warning(
                    "rejected a frame that is not a PurpleDropEvent (%s); such frames are counted", msg.rejected
                )
            return
        event = msg.event
        if event is None:
            try:
                event = events.decode(msg.payload)
            except events.DecodeError:
                self.stats.rejected += 1
                return
        t = self.timeline.stamp(events.timestamp(event), None if self.offline else msg.monotonic)
        kind = msg.kind or event.WhichOneof("msg") or ""
        if t is None:
            if len(self._held) < MAX_HELD:
                self._held.append((msg.payload, kind, event))
            else:
                self.stats.held += 1
            return
        if self._held:
            held, self._held = self._held, []
            for payload, held_kind, held_event in held:
                self._process(t, payload, held_kind, held_event)
        self._process(t, msg.payload, kind, event)

    def _process(self, t: float, payload: bytes, kind: str, event: Any) -> None:
        stats = self.stats
        stats.messages += 1
        stats.bytes += len(payload)
        stats.kinds[kind] = stats.kinds.get(kind, 0) + 1
        if stats.first_time is None:
            stats.first_time = t
        stats.last_time = t
        firings = self.engine.feed(t, event)
        if self.budget is None:
            actions = self.segmenter.feed(t, payload, kind, firings)
        else:
            actions = self._budgeted(t, firings, lambda allowed: self.segmenter.feed(t, payload, kind, allowed))
        self._segment_time = t
        if actions:
            self._submit(actions)
        if self.budget is not None:
            self._budget_check(t)
        if self.telemetry and is_telemetry_kind(kind):
            self.sink.telemetry(t, payload)
        if self.timelapse is not None:
            blocked = self.segmenter.paused == DISK_FLOOR_PAUSE
            # A frame is scheduled by its own timestamp: stream time can run ahead of it when untimed
            # messages are carried forward on the tick clock (a busy recorder under --sim --speed).
            own = events.timestamp(event) if kind == "image" else None
            for record_time, record in self.timelapse.feed(own if own is not None else t, kind, payload, blocked):
                self._timelapse_out(record_time, record)
        if firings:
            self._fired(t, firings)
        for listener in self.listeners:
            listener.message(t, kind)

    def tick(self, monotonic: float | None = None, time: float | None = None, wall: float | None = None) -> None:
        """Time passes without a message: live give `monotonic`, offline give stream `time`.

        Before any stream time is known (never connected, or nothing timestamped yet) only the
        listeners are ticked, with the local `wall` clock: the alert for a rig that never
        answered needs a clock, and there is no other."""
        t = time
        if t is None:
            if monotonic is None:
                return
            t = self.timeline.tick(monotonic)
            if t is None:
                if wall is not None:
                    for listener in self.listeners:
                        listener.tick(wall)
                return
            t -= self.tick_lag
        if self._segment_time is not None and t <= self._segment_time:
            return
        firings = self.engine.tick(t)
        if self.budget is None:
            actions = self.segmenter.tick(t, firings)
        else:
            actions = self._budgeted(t, firings, lambda allowed: self.segmenter.tick(t, allowed))
        self._segment_time = t
        if actions:
            self._submit(actions)
        if self.budget is not None:
            self._budget_check(t, force=True)
        if firings:
            self._fired(t, firings)
        for listener in self.listeners:
            listener.tick(t)

    def connected(self, monotonic: float | None = None, wall: float | None = None) -> None:
        """The source connected. `wall` (the local clock) stands in while no stream time is known."""
        self.stats.connected = True
        t = self._now(monotonic)
        if t is not None:
            self._submit(self.segmenter.connected(t))
        elif wall is None:
            return
        for listener in self.listeners:
            listener.connected(t if t is not None else wall)

    def disconnected(self, monotonic: float | None = None, wall: float | None = None) -> None:
        """A gap in the stream starts. `wall` (the local clock) stands in while no stream time is known."""
        self.stats.connected = False
        t = self._now(monotonic)
        if t is not None:
            self._submit(self.segmenter.disconnected(t))
        elif wall is None:
            return
        for listener in self.listeners:
            listener.disconnected(t if t is not None else wall)

    def finish(self, reason: str | None = None) -> None:
        """Close the open segment (end of stream or shutdown)."""
        reason = reason or ("end_of_log" if self.offline else "shutdown")
        t = self._segment_time if self._segment_time is not None else self.timeline.time
        self._submit(self.segmenter.close(t, reason))

    def reload(self, ruleset: RuleSet) -> None:
        """Use a new, already validated rule set (SIGHUP). Triggers restart with fresh state, fed
        the latest state of the stream as it stands; the open segment goes on under its old end.
        Output settings (directory, names, hooks) are not changed by a reload."""
        engine = RuleEngine(ruleset)
        old = self.engine.state
        for _kind, (t, event) in old.snapshot().items():
            engine.state.update(t, event)
        self.engine = engine
        self.ruleset = ruleset
        volume = self.budget.volume_bytes if self.budget is not None else None
        self.budget = _budget_keeper(ruleset)  # budgets start afresh with the new rules
        if self.budget is not None:
            self.budget.volume_bytes = volume
        self.segmenter.set_policies({r.name: r.segments for r in ruleset.rules}, ruleset.segments)

    # -- status --------------------------------------------------------
    def status(self) -> dict[str, Any]:
        seg = self.segmenter
        return {
            "connected": self.stats.connected,
            "messages": self.stats.messages,
            "rejected": self.stats.rejected,
            "time": self.timeline.time,
            "open_segment": None
            if not seg.is_open
            else {"rules": list(seg.open_rules), "start": seg.open_start, "until": seg.open_end},
            "segments": seg.segments,
            "firings": self.stats.firings,
            "pre_roll_dropped": seg.pre_roll_dropped[0],
            "clock_jumps": len(self.timeline.jumps),
            "rule_errors": dict(self.engine.errors),
            "rules_disabled": dict(self.engine.disabled),
        }

    # -- internals -----------------------------------------------------
    def _now(self, monotonic: float | None) -> float | None:
        if self.offline or monotonic is None:
            return self._segment_time if self._segment_time is not None else self.timeline.time
        # No tick lag here: a (dis)connection is ordered after every message of the old
        # connection, so nothing can still be on its way, and the gap keeps its true length.
        t = self.timeline.tick(monotonic)
        if t is None:
            return None
        return max(t, self._segment_time) if self._segment_time is not None else t

    def _submit(self, actions: list[Action]) -> None:
        if not actions:
            return
        if self.budget is not None:
            actions = self._budget_actions(actions)
        self.stats.segments = self.segmenter.segments  # copied, not counted again: plain attributes for other threads
        self.sink.submit(actions)

    # -- budgets and flap control (decisions in autorec.budget) --------
    def _budgeted(self, t: float, firings: list[Firing], feed: Callable[[list[Firing]], list[Action]]) -> list[Action]:
        assert self.budget is not None
        if not firings:
            return feed(firings)
        allowed, blocked = self.budget.firings(t, firings)
        actions = feed(allowed)
        if blocked:
            # After the feed: a segment the allowed firings just opened lists them too.
            self.segmenter.note([Firing(f.rule, f.time, {**f.evidence, "budget_blocked": True}) for f in blocked])
        return actions

    def _budget_actions(self, actions: list[Action]) -> list[Action]:
        """Charge written bytes and opened segments to the budgets; thin a flapping rule's camera records."""
        budget = self.budget
        assert budget is not None
        out: list[Action] = []
        rules = self._budget_rules
        thinned = self._thinned
        for a in actions:
            if isinstance(a, Write):
                size = len(a.payload)
                if rules and a.kind in _CAMERA_KINDS and not budget.keep_frame(a.time, a.kind, rules, size):
                    thinned[0] += 1
                    thinned[1] += size
                    thinned[2] = a.time if thinned[2] is None else thinned[2]
                    thinned[3] = a.time
                    continue
                budget.wrote(a.time, size + 4, rules)
            elif isinstance(a, OpenSegment):
                rules = a.rules
                self._thinned = thinned = [0, 0, None, None]
                if a.reason == "trigger":
                    budget.opened(a.start, a.rules)
            elif isinstance(a, CloseSegment):
                if thinned[0]:
                    gap = Gap(thinned[2], thinned[3], "flap_thinned", records=thinned[0], bytes=thinned[1])
                    a = dataclasses.replace(a, gaps=(*a.gaps, gap))
                self._thinned = thinned = [0, 0, None, None]
                budget.segment_closed(a.rules, a.reason)
                rules = ()
            out.append(a)
        self._budget_rules = self.segmenter.open_rules
        return out

    def _budget_check(self, t: float, force: bool = False) -> None:
        """Budget and flapping state changes, at most once a second of stream time on messages."""
        assert self.budget is not None
        due = self._budget_next_check
        if not force and due is not None and due - 2.0 < t < due:
            return
        self._budget_next_check = t + 1.0
        for change in self.budget.check(t, self.segmenter.open_rules):
            if change.name == "flapping" and change.state == "raised" and change.rule in self.segmenter.open_rules:
                # The flapping period gets a segment of its own (thinned as the rule says).
                self._submit(self.segmenter.close(t, "flapping"))
            if self.on_budget_change is not None:
                self.on_budget_change(change)
            elif change.state == "raised":
                log.warning("%s: %s", change.key, change.message)
            else:
                log.info("%s: %s", change.key, change.message)

    def _fired(self, t: float, firings: list[Firing]) -> None:
        self.stats.firings += len(firings)
        for listener in self.listeners:
            listener.fired(t, firings)


_CAMERA_KINDS = frozenset({"image", "image_transform"})


def _budget_keeper(ruleset: RuleSet) -> BudgetKeeper | None:
    """The rule file's budgets and flap policies, or None when it sets none (no cost at all then)."""
    keeper = BudgetKeeper(
        ruleset.budget,
        {r.name: r.budget for r in ruleset.rules},
        {r.name: r.flap for r in ruleset.rules},
    )
    return keeper if keeper.active else None


# -- dry run -----------------------------------------------------------------


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


class DryRun:
    """A sink that writes nothing and lists the segments that would have been written."""

    def __init__(self) -> None:
        self.segments: list[PlannedSegment] = []
        self._current: PlannedSegment | None = None

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
                self.segments.append(self._current)
                self._current = None

    def telemetry(self, time: float, payload: bytes) -> None:
        pass

    def close(self, timeout: float | None = None) -> bool:
        return True

    @property
    def kept_bytes(self) -> int:
        return sum(s.bytes for s in self.segments)

    def report(self, log_bytes: int, out: TextIO) -> None:
        """Print one line per segment and the total kept against the log's size."""
        for s in self.segments:
            part = f" part {s.part}" if s.part > 1 else ""
            print(
                f"{_iso(s.start)}  {s.end - s.start:8.1f} s  {format_size(s.bytes):>10}  "
                f"{'+'.join(s.rules)}{part} ({s.reason})",
                file=out,
            )
        pct = 100.0 * self.kept_bytes / log_bytes if log_bytes else 0.0
        print(
            f"{len(self.segments)} segment(s), {format_size(self.kept_bytes)} kept of "
            f"{format_size(log_bytes)} ({pct:.1f} %)",
            file=out,
        )


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


# -- drivers -------------------------------------------------------------------


def run_file(pipeline: Pipeline, source: FileSource) -> None:
    """Feed a whole log through `pipeline` as fast as possible, then close the open segment."""
    handle = pipeline.message
    for msg in source:
        handle(msg)
    pipeline.finish()


class StatusLine:
    """The live status: a line rewritten in place on a terminal, a log line every `log_every` s otherwise."""

    def __init__(
        self,
        pipeline: Pipeline,
        out_dir: Path | None,
        stream: TextIO | None = None,
        interval: float = 2.0,
        log_every: float = 60.0,
        writer_stats: Callable[[], Any] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.out_dir = out_dir
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if self.tty else log_every
        self.writer_stats = writer_stats
        self._next = _time.monotonic() + self.interval
        self._last_count = 0
        self._last_mono = _time.monotonic()

    def maybe_show(self, now: float) -> None:
        if now < self._next:
            return
        self._next = now + self.interval
        text = self.text(now)
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
            self.stream.flush()
        else:
            log.info("%s", text)

    def text(self, now: float) -> str:
        p = self.pipeline
        rate = (p.stats.messages - self._last_count) / max(now - self._last_mono, 1e-9)
        self._last_count, self._last_mono = p.stats.messages, now
        parts = ["connected" if p.stats.connected else "DISCONNECTED", f"{rate:.0f} msg/s"]
        seg = p.segmenter
        if seg.paused:
            parts.append(f"paused ({seg.paused})")
        elif seg.is_open:
            parts.append(f"recording ({'+'.join(seg.open_rules)})")
        else:
            parts.append("idle")
        ws = self.writer_stats() if self.writer_stats else None
        if ws is not None:
            parts.append(f"{ws.segments} segment(s) {format_size(ws.bytes)} written")
            if ws.dropped:
                parts.append(f"{ws.dropped} dropped")
        if self.out_dir is not None:
            with contextlib.suppress(OSError):
                parts.append(f"{format_size(disk_usage(self.out_dir)[0])} free")
        return "  ".join(parts)

    def end(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


async def run_live(
    pipeline: Pipeline,
    source: Any,
    *,
    stop: asyncio.Event,
    tick_interval: float = 0.1,
    status: StatusLine | None = None,
) -> None:
    """Drive `pipeline` from an async `source` until `stop` is set; then stop the source and drain it.

    A tick runs every `tick_interval` real seconds so post-roll ends on time when the stream is quiet.
    """

    async def ticker() -> None:
        while True:
            await asyncio.sleep(tick_interval)
            now = _time.monotonic()
            pipeline.tick(now, wall=_time.time())
            if status is not None:
                status.maybe_show(now)

    async def stopper() -> None:
        await stop.wait()
        source.stop()

    tasks = [asyncio.ensure_future(ticker()), asyncio.ensure_future(stopper())]
    try:
        async for item in source:
            pipeline.handle(item)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pipeline.tick(_time.monotonic())
        pipeline.finish()
        if status is not None:
            status.end()
