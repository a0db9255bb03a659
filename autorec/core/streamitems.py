"""What every source hands the pipeline, and every listener hears about: the stream's vocabulary.

`StreamListener` is the one interface services attach to a pipeline with (alerts, status file,
night journal, MQTT, web UI), identically live and offline: subclass it and override what you
need. Listener methods get stream time and must return quickly (they run on the pipeline's
thread). A listener only listens: it is told what happened and never feeds the pipeline back
(`autorec.runs.dispatch.Dispatcher` refuses an input from inside a delivery).

A source (the live websocket client `autorec.io.source`, a log file `autorec.runs.filesource`, a
test) yields `Message`, `Connected` and `Disconnected` items; `autorec.core.pipeline.Pipeline`
takes them (`receive`, through `autorec.runs.dispatch.Dispatcher`). They live here, apart
from any source, so the offline path (a log file) never imports the websocket library. Times:
`received` is the computer's clock (`time.time()`) and `monotonic` its monotonic clock at the
moment the item was made; stream time (the rig's clock) is the pipeline's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from autorec import events
from autorec.proto import PurpleDropEvent


@dataclass(frozen=True, slots=True)
class Message:
    """One binary websocket frame as received."""

    payload: bytes
    received: float  # time.time() when the frame was read
    monotonic: float  # time.monotonic() at the same moment
    kind: str | None
    rejected: str | None = None  # why the frame is not a PurpleDropEvent, None if it is one
    event: PurpleDropEvent | None = None  # the decoded event (None when rejected)

    def decoded(self) -> tuple[PurpleDropEvent, str] | None:
        """`(event, kind)`: the event the source decoded, else decoded from the payload now; None for
        a rejected frame or a payload that does not parse."""
        if self.rejected is not None:
            return None
        event = self.event
        if event is None:
            try:
                event = events.decode(self.payload)
            except events.DecodeError:
                return None
        return event, self.kind or event.WhichOneof("msg") or ""


@dataclass(frozen=True, slots=True)
class Connected:
    """The opening handshake succeeded; messages of this connection follow."""

    time: float
    monotonic: float = 0.0


@dataclass(frozen=True, slots=True)
class Disconnected:
    """A gap in the stream starts: the connection was lost or could not be made."""

    time: float
    cause: str
    monotonic: float = 0.0


Item = Message | Connected | Disconnected


class StreamListener:
    """Base class for things that watch the stream. Override what you need.

    Times are stream time. The one exception: before the stream has given any time (a rig that
    never answered), `tick`, `connected`, `disconnected` and `floor_crossed` come with the local
    wall clock, so that "no stream yet" (or a disk full before it) can still be timed. Offline (a
    log) there are no ticks."""

    def connected(self, t: float) -> None:
        """The source (re)connected."""

    def disconnected(self, t: float) -> None:
        """The source went away: a gap starts."""

    def message(self, t: float, kind: str | None) -> None:
        """A message of `kind` was processed at stream time `t`."""

    def tick(self, t: float) -> None:
        """Time passed without a message (live: every 0.5 s of the tick clock)."""

    def fired(self, t: float, firings: Sequence[Any]) -> None:
        """Rules fired (`autorec.triggers.base.Firing`s)."""

    def rule_state(self, t: float, rule: str, enabled: bool, reason: str) -> None:
        """A rule's trigger was disabled after too many errors (`reason`), or runs again after a reload."""

    def budget_changed(self, change: Any) -> None:
        """A budget or flapping state (`autorec.core.budget.Change`) was raised or cleared."""

    def floor_crossed(self, t: float, below: bool, free_bytes: int, floor_bytes: int) -> None:
        """The output disk's free space fell `below` the floor (no segment opens; the open one was
        closed) or came back above it (recording resumes)."""
