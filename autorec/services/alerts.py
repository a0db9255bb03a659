"""Alerts: conditions an unattended recorder must tell someone about, as a sans-I/O state machine.

`AlertMonitor` is fed what the recorder observes, each call with an explicit
time (the same stream clock the segmenter uses: event times, and ticks
computed from the last event time plus monotonic time elapsed), and returns
`AlertAction`s: an alert raised or cleared. It has no clock, no I/O and no
threads; the caller logs `action.message` and runs the `on_alert` hook with
`action.hook_values()`.

Alerts (`Alert.key`):
- `disconnected`: the source has been disconnected for `alert_after`
  seconds (raised by the first `tick`/`disconnected` call at or after
  disconnect time + `alert_after`); cleared by `connected`.
- `camera_stalled`: camera frames (`image` messages) were seen, then none
  for `camera_stall` seconds while other messages still flow (one arrived
  within the last `camera_stall` seconds, and at least two since the last
  frame, so a single message after a clock jump does not count). A rig
  without a camera never raises it; a silent stream is `disconnected`'s
  business, not this one's. Cleared by the next frame.
- `plugin_disabled:<rule>`: the engine disabled a rule's trigger after too
  many errors; cleared by `plugin_enabled` (e.g. after a rule reload).
- `disk_floor`: free space fell below the floor and no new segment opens;
  cleared by `disk_floor_cleared`.
- `budget_exhausted:<rule>` (`budget_exhausted:*` for the overall budget) and
  `flapping:<rule>`: from `autorec.core.budget` state changes (`budget_change`).

Each alert is raised once and not again until it has cleared. Times that go
backwards (a rig clock jump) never produce negative durations: the monitor
restarts its camera and disconnect reference times at the new time.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from autorec.core.pipeline import FloorCrossed
from autorec.core.streamitems import StreamListener
from autorec.readable import local_and_utc
from autorec.units import format_duration

log = logging.getLogger(__name__)

DISCONNECTED = "disconnected"
CAMERA_STALLED = "camera_stalled"
PLUGIN_DISABLED = "plugin_disabled"
DISK_FLOOR = "disk_floor"

DEFAULT_ALERT_AFTER = 60.0
DEFAULT_CAMERA_STALL = 10.0
CAMERA_KINDS = frozenset({"image"})
# Sent with every frame: neither a frame nor evidence that the rest of the stream flows.
CAMERA_COMPANIONS = frozenset({"image_transform"})


def _utc(t: float) -> str:
    # the one style a person reads (autorec.readable): local time, UTC beside it
    return local_and_utc(t)


@dataclass(frozen=True)
class Alert:
    """A raised alert: `key` is unique among active alerts, `name` its type; `since` is when its cause began."""

    key: str
    name: str
    since: float
    time: float
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "since": self.since,
            "time": self.time,
            "message": self.message,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class AlertAction:
    """An alert was raised or cleared at `time`; `message` is the one-line log text."""

    state: Literal["raised", "cleared"]
    alert: Alert
    time: float
    message: str

    @property
    def key(self) -> str:
        return self.alert.key

    def hook_values(self) -> dict[str, Any]:
        """Placeholder values for the `on_alert` hook (see `autorec.services.hooks`)."""
        return {
            "alert": self.alert.key,
            "message": self.message,
            "state": self.state,
            "time": self.time,
            "since": self.alert.since,
            "start": self.alert.since,
            "end": self.time,
            "rules": self.alert.details.get("rule"),
        }

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "time": self.time, "message": self.message, "alert": self.alert.as_dict()}


class AlertMonitor:
    """Turns observations into raised/cleared alerts. See the module docstring for each alert's rule.

    `alert_after`: seconds of disconnection before `disconnected` is raised.
    `camera_stall`: seconds without a camera frame while other messages flow
    before `camera_stalled` is raised; None turns that alert off.
    """

    def __init__(self, alert_after: float = DEFAULT_ALERT_AFTER, camera_stall: float | None = DEFAULT_CAMERA_STALL):
        if alert_after < 0:
            raise ValueError(f"alert_after must be >= 0, got {alert_after!r}")
        if camera_stall is not None and camera_stall <= 0:
            raise ValueError(f"camera_stall must be > 0, got {camera_stall!r}")
        self.alert_after = float(alert_after)
        self.camera_stall = None if camera_stall is None else float(camera_stall)
        self._active: dict[str, Alert] = {}
        self._connected = False
        self._disconnected_at: float | None = None
        self._last_frame: float | None = None  # None until the first frame: no camera, no camera alert
        self._last_other: float | None = None
        self._others_since_frame = 0
        self._last_time: float | None = None

    # -- state for the status file --------------------------------------------------------------

    @property
    def active(self) -> dict[str, Alert]:
        """Alerts raised and not cleared, by key."""
        return dict(self._active)

    def status(self) -> list[dict[str, Any]]:
        return [a.as_dict() for a in self._active.values()]

    # -- observations -------------------------------------------------------------------------

    def connected(self, t: float) -> list[AlertAction]:
        """The source (re)connected at `t`."""
        self._advance(t)
        self._connected = True
        self._disconnected_at = None
        actions = []
        alert = self._active.get(DISCONNECTED)
        if alert is not None:
            actions.append(self._clear(DISCONNECTED, t, f"source reconnected after {format_duration(t - alert.since)}"))
        if self._last_frame is not None:
            # give the camera a fresh `camera_stall` window after a reconnect
            self._last_frame = t
            self._others_since_frame = 0
        return actions

    def disconnected(self, t: float) -> list[AlertAction]:
        """The source is not connected at `t` (a drop, or a failed attempt). Repeats keep the first time."""
        self._advance(t)
        if self._connected or self._disconnected_at is None:
            self._disconnected_at = t
        self._connected = False
        return self._check(t)

    def message(self, t: float, kind: str | None) -> list[AlertAction]:
        """A message of `kind` arrived at stream time `t` (which implies the source is connected)."""
        self._advance(t)
        if not self._connected:
            actions = self.connected(t)
        else:
            actions = []
        if kind in CAMERA_KINDS:
            stalled = self._active.get(CAMERA_STALLED)
            if stalled is not None:
                actions.append(
                    self._clear(CAMERA_STALLED, t, f"camera frames resumed after {format_duration(t - stalled.since)}")
                )
            self._last_frame = t
            self._others_since_frame = 0
        elif kind not in CAMERA_COMPANIONS:
            self._last_other = t
            self._others_since_frame += 1
        return actions + self._check(t)

    def tick(self, t: float) -> list[AlertAction]:
        """Time has advanced to `t` with nothing else to report."""
        self._advance(t)
        return self._check(t)

    def plugin_disabled(self, t: float, rule: str, reason: str = "", errors: int | None = None) -> list[AlertAction]:
        """The engine disabled `rule`'s trigger at `t` (after `errors` errors; `reason` is the last one)."""
        key = f"{PLUGIN_DISABLED}:{rule}"
        if key in self._active:
            return []
        text = f"rule {rule!r} disabled"
        if errors is not None:
            text += f" after {errors} errors"
        if reason:
            text += f" ({reason})"
        details: dict[str, Any] = {"rule": rule, "reason": reason}
        if errors is not None:
            details["errors"] = errors
        return [self._raise(key, PLUGIN_DISABLED, t, t, text, details)]

    def plugin_enabled(self, t: float, rule: str) -> list[AlertAction]:
        """`rule` runs again at `t` (e.g. the rule file was reloaded)."""
        key = f"{PLUGIN_DISABLED}:{rule}"
        if key not in self._active:
            return []
        return [self._clear(key, t, f"rule {rule!r} enabled again")]

    def disk_floor_reached(self, t: float, free: int, floor: int) -> list[AlertAction]:
        """Free space `free` is below `floor` at `t`: no new segment opens."""
        if DISK_FLOOR in self._active:
            return []
        text = FloorCrossed(t, True, free, floor).message()  # one wording, the pipeline's
        return [self._raise(DISK_FLOOR, DISK_FLOOR, t, t, text, {"free": free, "floor": floor})]

    def disk_floor_cleared(self, t: float, free: int) -> list[AlertAction]:
        """Free space is back above the floor at `t`: recording resumes."""
        if DISK_FLOOR not in self._active:
            return []
        return [self._clear(DISK_FLOOR, t, FloorCrossed(t, False, free, 0).message())]

    def budget_change(self, change: Any) -> list[AlertAction]:
        """An `autorec.core.budget.Change` (budget spent or refilled, flapping or calm) as an alert action, once."""
        key = change.key
        if change.state == "raised":
            if key in self._active:
                return []
            return [self._raise(key, change.name, change.time, change.time, change.message, {"rule": change.rule})]
        if key not in self._active:
            return []
        return [self._clear(key, change.time, change.message)]

    # -- internals ------------------------------------------------------------------------------

    def _advance(self, t: float) -> None:
        if self._last_time is not None and t < self._last_time:
            # the clock went back: restart the reference times so no duration is negative
            if self._disconnected_at is not None:
                self._disconnected_at = t
            if self._last_frame is not None:
                self._last_frame = t
                self._others_since_frame = 0
            if self._last_other is not None:
                self._last_other = t
        self._last_time = t

    def _check(self, t: float) -> list[AlertAction]:
        actions = []
        if (
            not self._connected
            and self._disconnected_at is not None
            and DISCONNECTED not in self._active
            and t - self._disconnected_at >= self.alert_after
        ):
            since = self._disconnected_at
            text = f"source disconnected for {format_duration(t - since)} (since {_utc(since)})"
            actions.append(self._raise(DISCONNECTED, DISCONNECTED, t, since, text, {}))
        stall = self.camera_stall
        if (
            stall is not None
            and self._connected
            and self._last_frame is not None
            and self._last_other is not None
            and CAMERA_STALLED not in self._active
            and t - self._last_frame >= stall
            and t - self._last_other < stall
            and self._others_since_frame >= 2
        ):
            since = self._last_frame
            text = (
                f"camera frames stopped: none for {format_duration(t - since)} while other messages flow"
                f" (last frame {_utc(since)})"
            )
            actions.append(self._raise(CAMERA_STALLED, CAMERA_STALLED, t, since, text, {}))
        return actions

    def _raise(self, key: str, name: str, t: float, since: float, text: str, details: Mapping[str, Any]) -> AlertAction:
        alert = Alert(key, name, since, t, text, details)
        self._active[key] = alert
        return AlertAction("raised", alert, t, text)

    def _clear(self, key: str, t: float, text: str) -> AlertAction:
        alert = self._active.pop(key)
        return AlertAction("cleared", alert, t, text)


# -- the edge: logging and the on_alert hook --------------------------------------------------------


class _Hooks(Protocol):
    def submit(self, event: str, **values: Any) -> int: ...


class AlertReporter(StreamListener):
    """Feeds an `AlertMonitor` from the pipeline and announces what it returns.

    A stream listener (`connected`, `disconnected`, `message`, `tick`, `fired`, with stream
    time; before the stream has given any time, a tick or a failed connection comes with the
    local wall clock, which is what the monitor's "no stream yet" alert runs on), and
    `rule_state` / `budget_changed` / `floor_crossed` for the pipeline's `RuleStateChanged`,
    `BudgetChanged` and `FloorCrossed` outputs (a rule disabled after errors, enabled again by a
    reload; budgets and flapping; the disk floor reached or cleared).
    Every action is logged as one line (`ALERT key: message` as a
    warning when raised, `alert cleared key: message` as info when cleared)
    and handed to `hooks` (a `HookRunner`, optional) as the `on_alert` hook.
    `announced` keeps the last 1000
    actions, for tests and diagnostics. Logging and hook submission never block.
    """

    def __init__(self, monitor: AlertMonitor, hooks: _Hooks | None = None) -> None:
        self.monitor = monitor
        self.hooks = hooks
        self.announced: collections.deque[AlertAction] = collections.deque(maxlen=1000)
        # called with every action after it is logged (the night journal); must return quickly
        self.observers: list[Callable[[AlertAction], None]] = []

    def connected(self, t: float) -> None:
        self.announce(self.monitor.connected(t), t)

    def disconnected(self, t: float) -> None:
        self.announce(self.monitor.disconnected(t), t)

    def message(self, t: float, kind: str | None) -> None:
        self.announce(self.monitor.message(t, kind), t)

    def tick(self, t: float) -> None:
        self.announce(self.monitor.tick(t), t)

    def fired(self, t: float, firings: Sequence[Any]) -> None:
        self.announce([], t)

    def floor_crossed(self, t: float, below: bool, free_bytes: int, floor_bytes: int) -> None:
        if below:
            self.announce(self.monitor.disk_floor_reached(t, free_bytes, floor_bytes), t)
        else:
            self.announce(self.monitor.disk_floor_cleared(t, free_bytes), t)

    def rule_state(self, t: float, rule: str, enabled: bool, reason: str) -> None:
        if enabled:
            self.announce(self.monitor.plugin_enabled(t, rule), t)
        else:  # the engine's reason already says how many errors and the last one
            self.announce(self.monitor.plugin_disabled(t, rule, reason), t)

    def budget_changed(self, change: Any) -> None:
        self.announce(self.monitor.budget_change(change), change.time)

    def announce(self, actions: Iterable[AlertAction], t: float) -> None:
        """Log and hook `actions`; tell the observers (the journal)."""
        for action in actions:
            if action.state == "raised":
                log.warning("ALERT %s: %s", action.key, action.message)
            else:
                log.info("alert cleared %s: %s", action.key, action.message)
            self.announced.append(action)
            for observer in self.observers:
                observer(action)
            if self.hooks is not None:
                self.hooks.submit("on_alert", **action.hook_values())
