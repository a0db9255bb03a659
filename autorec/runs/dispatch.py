"""The edge of the pipeline: feeds a sans-I/O `Pipeline` and delivers what it returns.

`Dispatcher(pipeline, sink, listeners=..., score_sinks=..., floor_sampler=...)` is what every
driver feeds (the file loop `autorec.runs.filesource.run_file`, the live loop
`autorec.runs.live.feed_live`, the tests): its input methods have the pipeline's names
(`receive`, `message`, `tick`, `connected`, `disconnected`, `finish`, `floor_crossed`, `reload`)
and each delivers the input's outputs at once, in order:

- `SegmentActions` -> `sink.submit(actions)` (a `SegmentWriter`, or a `DryRun`);
- `TelemetryRecord` -> `sink.telemetry(time, payload)`;
- `TimelapseRecord` -> `sink.timelapse(time, payload)` (a sink without the track gets a pipeline
  without a timelapse picker: nothing is picked for nobody);
- `ScoreUpdate` -> each score sink's `score_rows(rows)` and `near_misses(items)`;
- `Processed`, `Ticked`, `LinkChanged`, `Fired` -> each `StreamListener`'s `message`, `tick`,
  `connected`/`disconnected`, `fired`; an image's `Processed` also goes to each frame listener
  (`(time, event)`, the web UI's latest picture; must be quick);
- `BudgetChanged`, `RuleStateChanged`, `FloorCrossed` -> each listener's `budget_changed(change)`,
  `rule_state(t, rule, enabled, reason)`, `floor_crossed(t, below, free_bytes, floor_bytes)`
  (the alerts); without listeners, a log line.

The disk floor is an input, not a listener. With a `floor_sampler`
(`autorec.services.diskfloor.DiskFloorSampler`, set by `autorec.runs.services.Services.attach`)
the dispatcher asks it before feeding each input (rate-limited on the monotonic clock, sooner
after a write error) and feeds a crossing first, as `Pipeline.floor_crossed`: a crossing takes
effect from the next input on, at the stream time the pipeline has reached. (When a listener
paused the pipeline from inside a delivery, a crossing took effect between two records one
input released together; there is no such in-between any more.)

Listeners only listen: an input fed while outputs are being delivered (a listener calling
back into the dispatcher) is refused with RuntimeError, so what a listener does can never
change what the pipeline does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from autorec.core.budget import Change
from autorec.core.pipeline import (
    BudgetChanged,
    Fired,
    FloorCrossed,
    LinkChanged,
    Output,
    Pipeline,
    PipelineStats,
    Processed,
    RuleStateChanged,
    ScoreUpdate,
    SegmentActions,
    TelemetryRecord,
    Ticked,
    TimelapseRecord,
)
from autorec.core.ruleset import RuleSet
from autorec.core.scores import NearMiss
from autorec.core.segmenter import Action
from autorec.core.streamitems import Connected, Disconnected, Message, StreamListener
from autorec.services.diskfloor import DiskFloorSampler

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where the segmenter's actions go: a `SegmentWriter` or a `DryRun` (`timelapse` is optional)."""

    def submit(self, actions: Iterable[Action]) -> None: ...

    def telemetry(self, time: float, payload: bytes) -> None: ...

    def close(self, timeout: float | None = None) -> bool: ...


class ScoreSink(Protocol):
    """Where the score track goes: a `autorec.io.scorelog.ScoreLog`, or a `DryRun` that sums it up."""

    def score_rows(self, rows: Sequence[Any]) -> None: ...

    def near_misses(self, items: Sequence[NearMiss]) -> None: ...


class Dispatcher:
    """A `Pipeline` wired to its sink, score sinks and listeners. See the module docstring."""

    def __init__(
        self,
        pipeline: Pipeline,
        sink: Sink,
        *,
        listeners: Sequence[StreamListener] = (),
        score_sinks: Sequence[ScoreSink] = (),
        floor_sampler: DiskFloorSampler | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.floor_sampler = floor_sampler  # asked before each input (see the module docstring)
        self._delivering = False  # outputs are being delivered: no input now
        self.view = PipelineView(pipeline)  # what services may read (see PipelineView)
        self.sink = sink
        self.listeners: list[StreamListener] = list(listeners)
        self.score_sinks: list[ScoreSink] = list(score_sinks)
        self.frame_listeners: list[Callable[[float, Any], None]] = []
        self._timelapse_out = getattr(sink, "timelapse", None)
        if self._timelapse_out is None:
            pipeline.timelapse = None  # nobody to take the track: pick nothing (and count nothing)

    # -- inputs ----------------------------------------------------------------
    # Each input: the disk floor first (a crossing is an input of its own), then the input, and
    # its outputs delivered in order before the method returns.
    def receive(self, item: Message | Connected | Disconnected) -> None:
        if self.floor_sampler is not None or self._delivering:
            self._before_input()
        self._hand_out(self.pipeline.receive(item))

    def message(self, msg: Message) -> None:
        if self.floor_sampler is not None or self._delivering:
            self._before_input()
        self._hand_out(self.pipeline.message(msg))

    def tick(self, monotonic: float, wall: float | None = None) -> None:
        self._before_input()
        self._hand_out(self.pipeline.tick(monotonic, wall))

    def connected(self, monotonic: float | None = None, wall: float | None = None) -> None:
        self._before_input()
        self._hand_out(self.pipeline.connected(monotonic, wall))

    def disconnected(self, monotonic: float | None = None, wall: float | None = None) -> None:
        self._before_input()
        self._hand_out(self.pipeline.disconnected(monotonic, wall))

    def finish(self, reason: str | None = None) -> None:
        self._before_input()
        self._hand_out(self.pipeline.finish(reason))

    def reload(self, ruleset: RuleSet) -> None:
        self._before_input()
        self._hand_out(self.pipeline.reload(ruleset))

    def floor_crossed(self, below: bool, free_bytes: int, floor_bytes: int, *, wall: float) -> None:
        """Feed a disk floor crossing (see `Pipeline.floor_crossed`); the floor sampler's do come this way."""
        self._refuse_inside_delivery()
        self._hand_out(self.pipeline.floor_crossed(below, free_bytes, floor_bytes, wall=wall))

    def _before_input(self) -> None:
        self._refuse_inside_delivery()
        sampler = self.floor_sampler
        if sampler is None:
            return
        change = sampler.sample()
        if change is not None:
            self.floor_crossed(change.state == "below", change.free_bytes, change.floor_bytes, wall=sampler.wall())

    def _refuse_inside_delivery(self) -> None:
        if self._delivering:
            raise RuntimeError(
                "an input was fed to the pipeline while its outputs were being delivered: "
                "listeners only listen (autorec.runs.dispatch)"
            )

    # -- delivery --------------------------------------------------------------
    def _hand_out(self, outputs: list[Output]) -> None:
        """Hand each output to whoever takes it, in order."""
        if not outputs:
            return
        was, self._delivering = self._delivering, True
        try:
            self._deliver(outputs)
        finally:
            self._delivering = was

    def _deliver(self, outputs: list[Output]) -> None:
        for out in outputs:
            cls = type(out)
            if cls is Processed:
                for listener in self.listeners:
                    listener.message(out.time, out.kind)
                if out.kind == "image":
                    for frame_listener in self.frame_listeners:
                        frame_listener(out.time, out.event)
            elif cls is SegmentActions:
                self.sink.submit(out.actions)
            elif cls is TelemetryRecord:
                self.sink.telemetry(out.time, out.payload)
            elif cls is TimelapseRecord:
                if self._timelapse_out is not None:
                    self._timelapse_out(out.time, out.payload)
            elif cls is Ticked:
                for listener in self.listeners:
                    listener.tick(out.time)
            elif cls is ScoreUpdate:
                self._scores(out)
            elif cls is Fired:
                for listener in self.listeners:
                    listener.fired(out.time, out.firings)
            elif cls is LinkChanged:
                for listener in self.listeners:
                    if out.up:
                        listener.connected(out.time)
                    else:
                        listener.disconnected(out.time)
            elif cls is BudgetChanged:
                self._budget_change(out.change)
            elif cls is RuleStateChanged:
                for listener in self.listeners:
                    listener.rule_state(out.time, out.rule, out.enabled, out.reason)
            elif cls is FloorCrossed:
                self._floor_crossed(out)

    def _scores(self, out: ScoreUpdate) -> None:
        rows, near = out.output.rows, out.output.near_misses
        for sink in self.score_sinks:
            if rows:
                sink.score_rows(rows)
            if near:
                sink.near_misses(near)

    def _budget_change(self, change: Change) -> None:
        if self.listeners:
            for listener in self.listeners:
                listener.budget_changed(change)
        elif change.state == "raised":
            log.warning("%s: %s", change.key, change.message)
        else:
            log.info("%s: %s", change.key, change.message)

    def _floor_crossed(self, out: FloorCrossed) -> None:
        if self.listeners:
            for listener in self.listeners:
                listener.floor_crossed(out.time, out.below, out.free_bytes, out.floor_bytes)
        elif out.below:
            log.warning("%s", out.message())
        else:
            log.info("%s", out.message())

    # -- the pipeline's state, read-only here ------------------------------------
    @property
    def ruleset(self) -> RuleSet:
        return self.pipeline.ruleset

    @property
    def stats(self) -> PipelineStats:
        return self.pipeline.stats

    @property
    def paused(self) -> str | None:
        return self.pipeline.paused

    def counters(self) -> dict[str, int]:
        return self.pipeline.counters()


class PipelineView:
    """What services may read of a running pipeline: a small, read-only view (no internals).

    The services (status file, web UI, MQTT, metrics) learn what happens from the outputs they
    listen to; for figures that are levels rather than events (counters, the latest scores, the
    pre-roll held, the post-roll each rule still holds) they ask this view, on the recorder's loop.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    @property
    def stats(self) -> PipelineStats:
        """Plain counters of messages, bytes and connection (safe to read from another thread)."""
        return self._pipeline.stats

    def counters(self) -> dict[str, int]:
        return self._pipeline.counters()

    def latest_scores(self) -> dict[str, Any]:
        """Each rule's latest score (`autorec.core.scores.LatestScore`: time, value, threshold)."""
        return dict(self._pipeline.scores.latest)

    def open_holds(self, time: float) -> dict[str, float]:
        """Seconds of post-roll each rule still holds the open segment for, at stream time `time`."""
        return self._pipeline.segmenter.open_holds(time)

    @property
    def pre_roll_bytes(self) -> int:
        """Bytes the pre-roll holds now (a level)."""
        return self._pipeline.segmenter.pre_roll_bytes

    @property
    def paused(self) -> str | None:
        """Why no segment is being opened (the disk floor), or None."""
        return self._pipeline.paused

    @property
    def open_rules(self) -> tuple[str, ...]:
        """The rules of the open segment; empty when none is open."""
        return tuple(self._pipeline.segmenter.open_rules) if self._pipeline.segmenter.is_open else ()
