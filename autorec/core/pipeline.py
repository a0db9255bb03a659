"""The recording pipeline: source items in, actions out (sans-I/O, in the style of the websockets `Protocol`).

`Pipeline` is the one state machine behind every way of running autorec: live against a rig,
against the built-in simulator (`run --sim`), and offline over a log (`run --log`, with or
without `--dry-run`). It reads no clock, opens no file and calls nobody. It has one input API:
each input method (`receive`/`message`, `tick`, `connected`, `disconnected`, `finish`,
`floor_crossed`, `reload`) runs to the end and returns the list of `Output`s it caused, in
order, and the caller delivers them. Nothing the caller does with an output feeds back into
the input that made it: what changes the pipeline's course from outside (the disk floor) is an
input of its own, fed by the driver between two inputs.
`autorec.runs.dispatch.Dispatcher` is that driver for every loop (the file loop `run_file`, the live loop in
`autorec.runs.live`): it hands `SegmentActions` to the writer (or the dry run),
`TelemetryRecord`/`TimelapseRecord` to the writer's daily tracks, `ScoreUpdate` to the score
sinks, and `Processed`/`Ticked`/`LinkChanged`/`Fired`/`FloorCrossed` (and the state changes) to
the `StreamListener`s (alerts, status, journal, web UI), so services attach identically live and
offline; before each input it samples the disk floor and feeds a crossing as `floor_crossed`.

Contracts:
- Messages whose payload did not parse (`rejected`) are counted and never
  reach a segment. Messages that arrive before any timestamp is known, or
  whose timestamp is far off the stream clock, are held (bounded) by the
  timeline until it knows their time (see `autorec.core.timeline`): a damaged
  timestamp is an outlier that moves no clock, a confirmed clock step is
  followed.
- Live, a tick's stream time is the last event time plus the monotonic time
  elapsed since it arrived (times `rate`), minus `tick_lag` real seconds so
  that a message already on its way is not shut out of a segment whose
  post-roll has just ended (a live source that reads its socket at intervals adds
  its interval: `autorec.io.source`). Monotonic and wall times are inputs, given by the driver.
- Every processed message gives one `Processed(time, kind, event)`, after the
  segment actions and tracks it caused. A tick gives `Ticked`; before any stream
  time is known, a tick or (dis)connection given a `wall` time gives the listeners'
  outputs at that wall time (the alert for a rig that never answered needs a clock).
- `floor_crossed(below=True, ...)` (the disk floor) opens no segment from then on and closes
  the open one at the pipeline's stream time (reason `disk_floor`); while paused the telemetry
  track is paused too (it would fill the disk the floor protects; counted in
  `stats.telemetry_paused`), and the timelapse picks nothing. `floor_crossed(below=False, ...)`
  resumes. Each crossing is also a `FloorCrossed` output (the alert, the journal). A crossing
  takes effect from the next input on: the records one input releases together are all
  processed on the same side of it.
- The timelapse track (`output.timelapse`, `autorec.core.timelapse`): every message
  also goes through a `TimelapsePicker` (unless `timelapse=False`); what it picks is a `TimelapseRecord`.
- Budgets and flap control (`autorec.core.budget`, configured in the rule file):
  firings of a rule whose budget is spent do not reach the segmenter; they
  are listed in the open segment's sidecar (evidence `budget_blocked: true`)
  if one is open, and counted. Camera records of a flapping rule's segment
  are thinned (`flap_keep_fps`); each segment that lost frames to it gets a
  `flap_thinned` gap with the records and bytes left out. When a rule starts
  flapping its open segment is closed (reason `flapping`). State changes are
  `BudgetChanged` outputs.
- `finish()` closes the open segment (reason `shutdown`, or `end_of_log`
  offline); the caller delivers that and then closes its sink.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autorec import events
from autorec.core.budget import BudgetKeeper, Change
from autorec.core.engine import RuleEngine
from autorec.core.ruleset import RuleSet
from autorec.core.scores import RUN_UP, ScoreOutput, ScoreTrack
from autorec.core.segmenter import Action, CloseSegment, Gap, OpenSegment, Segmenter, Write
from autorec.core.streamitems import Connected, Disconnected, Message
from autorec.core.timelapse import TimelapsePicker
from autorec.core.timeline import Timeline
from autorec.triggers.base import Firing
from autorec.units import format_size

log = logging.getLogger(__name__)

DISK_FLOOR = "disk_floor"  # why segments are paused below the disk floor (and the open one's close reason)
MAX_HELD = 10_000  # messages held while no timestamp is known yet
TICK_LAG = 0.25  # real seconds a live tick stays behind the projected stream time (see Contracts)
# A near-miss clip's pre-roll reaches back to the near-miss's start, up to this long before it is
# reported (a longer one keeps its last part): bounds what the pre-roll buffer must hold for it.
NEAR_MISS_CLIP_SPAN = 10.0


# -- outputs -----------------------------------------------------------------


@dataclass(slots=True)
class SegmentActions:
    """The segmenter's actions of one step (open, write, close), for the writer or the dry run, in order."""

    actions: list[Action]


@dataclass(frozen=True, slots=True)
class TelemetryRecord:
    """A telemetry message for the daily telemetry track."""

    time: float
    payload: bytes


@dataclass(frozen=True, slots=True)
class TimelapseRecord:
    """A record the timelapse picker chose for the daily timelapse track."""

    time: float
    payload: bytes


@dataclass(frozen=True, slots=True)
class ScoreUpdate:
    """Per-second score maxima and near-misses that are final, for the score sinks."""

    output: ScoreOutput


@dataclass(frozen=True, slots=True)
class Processed:
    """A message went through the pipeline at stream time `time` (after everything it caused)."""

    time: float
    kind: str
    event: Any


@dataclass(frozen=True, slots=True)
class Ticked:
    """Time passed without a message (stream time; wall time before any stream time is known)."""

    time: float


@dataclass(frozen=True, slots=True)
class LinkChanged:
    """The source connected (`up`) or a gap started."""

    time: float
    up: bool


@dataclass(frozen=True, slots=True)
class Fired:
    """Rules fired at `time` (before budgets: every firing the triggers made)."""

    time: float
    firings: list[Firing]


@dataclass(frozen=True, slots=True)
class BudgetChanged:
    """A budget or flapping state was raised or cleared."""

    change: Change


@dataclass(frozen=True, slots=True)
class RuleStateChanged:
    """A rule's trigger was disabled by the engine (too many errors: `reason` says which) or is
    running again (`enabled`: a reload brought the rule back with a fresh trigger, or removed it)."""

    time: float
    rule: str
    enabled: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class FloorCrossed:
    """The output disk's free space crossed the floor at `time`: `below` it no segment opens (the
    open one was closed), back above it recording resumes. Sizes in bytes, for the alert."""

    time: float
    below: bool
    free_bytes: int
    floor_bytes: int

    def message(self) -> str:
        """The words of the crossing: the disk_floor alert's text and, without listeners, the log line."""
        if self.below:
            return (
                f"disk floor reached: {format_size(self.free_bytes)} free, floor {format_size(self.floor_bytes)};"
                " no new segments"
            )
        return f"disk space back: {format_size(self.free_bytes)} free, recording resumes"


Output = (
    SegmentActions
    | TelemetryRecord
    | TimelapseRecord
    | ScoreUpdate
    | Processed
    | Ticked
    | LinkChanged
    | Fired
    | BudgetChanged
    | RuleStateChanged
    | FloorCrossed
)


@dataclass
class PipelineStats:
    """Counters of one pipeline (plain attributes: safe to read from another thread)."""

    messages: int = 0
    bytes: int = 0
    rejected: int = 0
    held: int = 0  # messages dropped because no timestamp ever came within MAX_HELD
    firings: int = 0
    segments: int = 0  # opened, parts included
    telemetry_paused: int = 0  # telemetry messages not written while recording was paused (disk floor)
    connected: bool = False
    first_time: float | None = None
    last_time: float | None = None
    kinds: dict[str, int] = field(default_factory=dict)

    @property
    def seen_bytes(self) -> int:
        """What the messages seen would take in a log (payloads plus 4-byte headers): comparable with kept bytes."""
        return self.bytes + 4 * self.messages


class Pipeline:
    """Source items in, `Output`s out. See the module docstring."""

    def __init__(
        self,
        ruleset: RuleSet,
        *,
        offline: bool = False,
        rate: float = 1.0,
        telemetry: bool | None = None,
        tick_lag: float = TICK_LAG,
        timelapse: bool = True,
        engine: Any = None,
    ) -> None:
        self.ruleset = ruleset
        self.offline = offline
        # `engine`: a stand-in with RuleEngine's feed/tick/take_scores/onset_lags (a threshold sweep's
        # lane, `autorec.core.sweep`); the rule file's own engine by default.
        self.engine = engine if engine is not None else RuleEngine(ruleset)
        self.segmenter = Segmenter({r.name: r.segments for r in ruleset.rules}, ruleset.segments)
        self.scores = ScoreTrack()
        self.near_miss_clips = 0  # near-misses that opened or extended a segment (near_miss_clip)
        self._use_rules(ruleset)
        # held items: (payload, kind, event, raw timestamp)
        self.timeline: Timeline[tuple[bytes, str, Any, float | None]] = Timeline(rate=rate, max_held=MAX_HELD)
        self.telemetry = ruleset.output.telemetry if telemetry is None else telemetry
        self.tick_lag = tick_lag * rate
        self.stats = PipelineStats()
        self._segment_time: float | None = None  # last time fed to the segmenter
        # `timelapse` False (run --no-timelapse, backtests, a sink without the track) or `output.timelapse: off`.
        interval = ruleset.output.timelapse
        self.timelapse = TimelapsePicker(interval) if timelapse and interval else None
        self.budget: BudgetKeeper | None = _budget_keeper(ruleset)
        self._budget_rules: tuple[str, ...] = ()  # rules of the open segment, as the last actions left it
        self._thinned: list[Any] = [0, 0, None, None]  # records, bytes, first and last time in the open segment
        self._budget_next_check: float | None = None
        self._out: list[Output] = []

    def _take(self) -> list[Output]:
        out, self._out = self._out, []
        return out

    def _release(self, released: list[tuple[float, tuple[bytes, str, Any, float | None]]]) -> None:
        """Process the records the timeline released, in order."""
        for t, (payload, kind, event, stamp) in released:
            self._process(t, payload, kind, event, stamp)

    def _stream_time(self) -> float | None:
        """Where the pipeline stands: the last time it fed the segmenter, else the timeline's clock."""
        return self._segment_time if self._segment_time is not None else self.timeline.time

    # -- inputs ----------------------------------------------------------------
    # Each input runs to the end and returns every output it caused, in order: the records the
    # timeline released (it may release several at once: untimed records waiting for a first
    # time, a decided run of odd timestamps), then the input's own (a tick, a (dis)connection,
    # the end, a disk floor crossing). Nothing a listener does can reach back in between: what
    # must change the pipeline's course (the disk floor) is an input of its own.
    def receive(self, item: Message | Connected | Disconnected) -> list[Output]:
        """A source item (live sources give all three kinds; a log gives messages)."""
        if isinstance(item, Message):
            return self.message(item)
        if isinstance(item, Connected):
            return self.connected(item.monotonic, item.time)
        if isinstance(item, Disconnected):
            return self.disconnected(item.monotonic, item.time)
        return []

    def message(self, msg: Message) -> list[Output]:
        """A message from the source: the records the timeline releases with it, processed in order."""
        if msg.rejected is not None:
            self.stats.rejected += 1
            if self.stats.rejected == 1:
                log.warning(
                    "rejected a frame that is not a PurpleDropEvent (%s); such frames are counted", msg.rejected
                )
            return []
        decoded = msg.decoded()
        if decoded is None:
            self.stats.rejected += 1
            return []
        event, kind = decoded
        # The timeline may hold a record (no clock yet, or a timestamp far off the clock) until the
        # next records decide what it was; it hands back every record it releases, in order.
        stamp = events.timestamp(event)
        released = self.timeline.push(stamp, None if self.offline else msg.monotonic, (msg.payload, kind, event, stamp))
        self.stats.held = self.timeline.dropped
        self._release(released)
        return self._take()

    def tick(self, monotonic: float, wall: float | None = None) -> list[Output]:
        """Live: time passes without a message. `monotonic` is the tick clock; stream time is the
        timeline's projection of it (minus `tick_lag`). Offline there are no ticks: a log's
        records carry all the time there is.

        Before any stream time is known (never connected, or nothing timestamped yet) the only
        output is `Ticked(wall)` when the local `wall` clock is given: the alert for a rig that
        never answered needs a clock, and there is no other."""
        self._release(self.timeline.expire(monotonic))
        self._tick(monotonic, wall)
        return self._take()

    def connected(self, monotonic: float | None = None, wall: float | None = None) -> list[Output]:
        """The source connected. `wall` (the local clock) stands in while no stream time is known."""
        self._release(self.timeline.flush())
        self._link(True, monotonic, wall)
        return self._take()

    def disconnected(self, monotonic: float | None = None, wall: float | None = None) -> list[Output]:
        """A gap in the stream starts. `wall` (the local clock) stands in while no stream time is known."""
        self._release(self.timeline.flush())
        self._link(False, monotonic, wall)
        return self._take()

    def finish(self, reason: str | None = None) -> list[Output]:
        """Close the open segment (end of stream or shutdown)."""
        self._release(self.timeline.flush())
        self._finish(reason)
        return self._take()

    def floor_crossed(self, below: bool, free_bytes: int, floor_bytes: int, *, wall: float) -> list[Output]:
        """The output disk's free space crossed the floor (`output.min_free`): `below` it, open no
        segment from now on and close the open one (reason `disk_floor`); back above it, open
        segments again. The crossing happens at the pipeline's own stream time (that of the last
        record or tick it processed), or at `wall` (the local clock) while no stream time is known,
        as a tick's. Returns the closing `SegmentActions` (if one was open), then
        `FloorCrossed(time, below, free_bytes, floor_bytes)` for the alerts. A crossing to where
        the pipeline already is changes nothing and returns nothing."""
        if below == (self.segmenter.paused == DISK_FLOOR):
            return []
        t = self._stream_time()
        if below:
            # Before any stream time nothing is open, and the wall clock must not become the segmenter's.
            self._submit(self.segmenter.pause(t, DISK_FLOOR))
        else:
            self.segmenter.resume()
        self._out.append(FloorCrossed(t if t is not None else wall, below, free_bytes, floor_bytes))
        return self._take()

    def _process(self, t: float, payload: bytes, kind: str, event: Any, stamp: float | None) -> None:
        stats = self.stats
        out = self._out
        stats.messages += 1
        stats.bytes += len(payload)
        stats.kinds[kind] = stats.kinds.get(kind, 0) + 1
        if stats.first_time is None:
            stats.first_time = t
        stats.last_time = t
        firings = self.engine.feed(t, event)
        scored = self._scored(t, firings)
        if self.budget is None:
            actions = self.segmenter.feed(t, payload, kind, scored)
        else:
            actions = self._budgeted(t, scored, lambda allowed: self.segmenter.feed(t, payload, kind, allowed))
        self._segment_time = t
        if actions:
            self._submit(actions)
        if self.budget is not None:
            self._budget_check(t)
        if self.telemetry and events.is_telemetry_kind(kind):
            if self.segmenter.paused:
                stats.telemetry_paused += 1
            else:
                out.append(TelemetryRecord(t, payload))
        if self.timelapse is not None:
            blocked = bool(self.segmenter.paused)  # the disk floor: the daily tracks would fill the disk too
            # A frame is scheduled by its own timestamp: stream time can run ahead of it when untimed
            # messages are carried forward on the tick clock (a busy recorder under --sim --speed).
            own = stamp if kind == "image" and stamp is not None else t
            for record_time, record in self.timelapse.feed(own, kind, payload, blocked):
                out.append(TimelapseRecord(record_time, record))
        if firings:
            self._fired(t, firings)
        if self.engine.disabled_pending:
            self._rules_disabled(t)
        out.append(Processed(t, kind, event))

    def _tick(self, monotonic: float, wall: float | None) -> None:
        t = self.timeline.tick(monotonic)
        if t is None:
            if wall is not None:
                self._out.append(Ticked(wall))
            return
        t -= self.tick_lag
        if self._segment_time is not None and t <= self._segment_time:
            return
        firings = self.engine.tick(t)
        scored = self._scored(t, firings)
        if self.budget is None:
            actions = self.segmenter.tick(t, scored)
        else:
            actions = self._budgeted(t, scored, lambda allowed: self.segmenter.tick(t, allowed))
        self._segment_time = t
        if actions:
            self._submit(actions)
        if self.budget is not None:
            self._budget_check(t, force=True)
        if firings:
            self._fired(t, firings)
        if self.engine.disabled_pending:
            self._rules_disabled(t)
        self._out.append(Ticked(t))

    def _link(self, up: bool, monotonic: float | None, wall: float | None) -> None:
        self.stats.connected = up
        t = self._now(monotonic)
        if t is not None:
            self._submit(self.segmenter.connected(t) if up else self.segmenter.disconnected(t))
            self._out.append(LinkChanged(t, up))
        elif wall is not None:
            self._out.append(LinkChanged(wall, up))

    def _finish(self, reason: str | None) -> None:
        reason = reason or ("end_of_log" if self.offline else "shutdown")
        t = self._stream_time()
        self._submit(self.segmenter.close(t, reason))
        self._score_update(self.scores.finish())

    @property
    def paused(self) -> str | None:
        """Why segments are not being opened, or None."""
        return self.segmenter.paused

    def reload(self, ruleset: RuleSet) -> list[Output]:
        """Use a new, already validated rule set (SIGHUP). Triggers restart with fresh state, fed
        the latest state of the stream as it stands; the open segment goes on under its old end.
        Output settings (directory, names, hooks) are not changed by a reload. Returns a
        `RuleStateChanged(enabled=True)` for every rule the old engine had disabled: its new
        trigger starts afresh (or the rule is gone)."""
        was_disabled = sorted(self.engine.disabled)
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
        self._use_rules(ruleset)
        t = self._stream_time()
        if t is not None:
            names = {r.name for r in ruleset.rules}
            for rule in was_disabled:
                self._out.append(RuleStateChanged(t, rule, True, "reloaded" if rule in names else "removed"))
        return self._take()

    def counters(self) -> dict[str, int]:
        """The pipeline's counters, a flat dict of ints: messages, rejected, firings, segments
        opened, pre-roll drops, suppressed firings, paused telemetry, timelapse frames, clock
        jumps/steps/outliers, trigger errors, budget counters, and each trigger's own counters as
        `RULE.NAME` (the motion trigger's corrupt frames, ...). The services add the writer's."""
        out = {
            "messages": self.stats.messages,
            "rejected": self.stats.rejected,
            "firings": self.stats.firings,
            "segments_opened": self.stats.segments,
            "pre_roll_dropped": self.segmenter.pre_roll_dropped[0],
            "suppressed_firings": self.segmenter.suppressed,
            "telemetry_paused": self.stats.telemetry_paused,
            "timelapse_frames": self.timelapse.frames if self.timelapse is not None else 0,
            "clock_jumps": len(self.timeline.jumps),
            "clock_steps": self.timeline.steps,
            "clock_outliers": self.timeline.outliers,
            "trigger_errors": sum(self.engine.errors.values()),
        }
        if self.budget is not None:  # blocked firings and thinned frames, per rule and in total
            out.update(self.budget.counters())
        for rule, trigger in self.engine.triggers.items():
            for key, value in (getattr(trigger, "counters", None) or {}).items():
                if isinstance(value, int):
                    out[f"{rule}.{key}"] = value
        return out

    # -- internals -----------------------------------------------------------
    def _use_rules(self, ruleset: RuleSet) -> None:
        """Onset lags and near-miss settings of `ruleset` (at start and on reload)."""
        lags = self.engine.onset_lags()
        for r in ruleset.rules:
            if r.near_miss_clip:  # a clip's pre-roll reaches back to the near-miss's start
                lags[r.name] = max(lags.get(r.name, 0.0), NEAR_MISS_CLIP_SPAN + self.scores.gap + RUN_UP)
        self.segmenter.set_onset_lags(lags)
        self.scores.fractions = {r.name: r.near_miss for r in ruleset.rules}
        self._clip_rules = {r.name for r in ruleset.rules if r.near_miss_clip}

    def _scored(self, t: float, firings: list[Firing]) -> list[Firing]:
        """Feed the score track; the firings for the segmenter (plus near-miss clips, if asked for)."""
        out = self.scores.feed(t, self.engine.take_scores(), firings)
        if not out:
            return firings
        self._score_update(out)
        clips = [
            Firing(
                nm.rule,
                t,
                nm.clip_evidence(),
                onset=max(nm.start, t - NEAR_MISS_CLIP_SPAN - self.scores.gap - RUN_UP),
            )
            for nm in out.near_misses
            if nm.rule in self._clip_rules
        ]
        if not clips:
            return firings
        self.near_miss_clips += len(clips)
        return [*firings, *clips]

    def _score_update(self, out: ScoreOutput) -> None:
        if out.rows or out.near_misses:
            self._out.append(ScoreUpdate(out))

    def _now(self, monotonic: float | None) -> float | None:
        if self.offline or monotonic is None:
            return self._stream_time()
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
        self._out.append(SegmentActions(actions))

    # -- budgets and flap control (decisions in autorec.core.budget) --------
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
            self._out.append(BudgetChanged(change))

    def _rules_disabled(self, t: float) -> None:
        for rule in self.engine.take_newly_disabled():
            self._out.append(RuleStateChanged(t, rule, False, self.engine.disabled.get(rule, "")))

    def _fired(self, t: float, firings: list[Firing]) -> None:
        self.stats.firings += len(firings)
        self._out.append(Fired(t, firings))


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
