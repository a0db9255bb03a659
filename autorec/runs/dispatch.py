"""The edge of the pipeline: feeds a sans-I/O `Pipeline` and delivers what it returns.

`Dispatcher(pipeline, sink, listeners=..., score_sinks=...)` is what every driver feeds (the
file loop `autorec.runs.filesource.run_file`, the live loop `autorec.runs.live.run_live`, the
tests): its input methods have the pipeline's names (`receive`, `message`, `tick`, `connected`,
`disconnected`, `finish`, `pause`, `resume`) and each delivers the outputs at once, in order:

- `SegmentActions` -> `sink.submit(actions)` (a `SegmentWriter`, or a `DryRun`);
- `TelemetryRecord` -> `sink.telemetry(time, payload)`;
- `TimelapseRecord` -> `sink.timelapse(time, payload)` (a sink without the track gets a pipeline
  without a timelapse picker: nothing is picked for nobody);
- `ScoreUpdate` -> each score sink's `score_rows(rows)` and `near_misses(items)`;
- `Processed`, `Ticked`, `LinkChanged`, `Fired` -> each `StreamListener`'s `message`, `tick`,
  `connected`/`disconnected`, `fired`; an image's `Processed` also goes to each frame listener
  (`(time, event)`, the web UI's latest picture; must be quick);
- `BudgetChanged`, `RuleStateChanged` -> each listener's `budget_changed(change)`,
  `rule_state(t, rule, enabled, reason)` (the alerts); without listeners, a log line.

The pipeline is run step by step (`Pipeline.put*` / `next_outputs`): each step's outputs are
delivered before the next step runs. A listener may call back into the dispatcher while an
output is being delivered (the disk floor pauses recording from `message` or `tick`): that
call's outputs are delivered at once, and the steps still queued (more records the timeline
released together) run after it, paused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from autorec.core.budget import Change
from autorec.core.pipeline import (
    BudgetChanged,
    Fired,
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
    ) -> None:
        self.pipeline = pipeline
        self.view = PipelineView(pipeline)  # what services may read (see PipelineView)
        self.sink = sink
        self.listeners: list[StreamListener] = list(listeners)
        self.score_sinks: list[ScoreSink] = list(score_sinks)
        self.frame_listeners: list[Callable[[float, Any], None]] = []
        self._timelapse_out = getattr(sink, "timelapse", None)
        if self._timelapse_out is None:
            pipeline.timelapse = None  # nobody to take the track: pick nothing (and count nothing)

    # -- inputs ----------------------------------------------------------------
    # Step by step: each step's outputs are delivered before the next step runs, so a listener
    # that acts back (the disk floor pausing recording) acts between two records.
    def receive(self, item: Message | Connected | Disconnected) -> None:
        self.pipeline.put(item)
        self._run()

    def message(self, msg: Message) -> None:
        self.pipeline.put(msg)
        self._run()

    def tick(self, monotonic: float, wall: float | None = None) -> None:
        self.pipeline.put_tick(monotonic, wall)
        self._run()

    def connected(self, monotonic: float | None = None, wall: float | None = None) -> None:
        self.pipeline.put_link(True, monotonic, wall)
        self._run()

    def disconnected(self, monotonic: float | None = None, wall: float | None = None) -> None:
        self.pipeline.put_link(False, monotonic, wall)
        self._run()

    def finish(self, reason: str | None = None) -> None:
        self.pipeline.put_finish(reason)
        self._run()

    def pause(self, t: float, reason: str) -> None:
        """At once, also from inside a delivery: the steps still queued run paused."""
        self.deliver(self.pipeline.pause(t, reason))

    def resume(self, reason: str) -> None:
        self.deliver(self.pipeline.resume(reason))

    def _run(self) -> None:
        next_outputs, deliver = self.pipeline.next_outputs, self.deliver
        while (outputs := next_outputs()) is not None:
            deliver(outputs)

    # -- delivery --------------------------------------------------------------
    def deliver(self, outputs: list[Output]) -> None:
        """Hand each output to whoever takes it, in order."""
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

    def reload(self, ruleset: Any) -> None:
        self.deliver(self.pipeline.reload(ruleset))


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
