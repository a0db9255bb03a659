"""The public Trigger API. Built-in triggers and plugins use exactly this.

A trigger is a small sans-I/O detector: it never touches files, sockets or
clocks. The engine creates one instance per rule with the rule's validated
options, then calls

- `feed(time, event, state)` for every event whose kind is in `kinds`
  (`kinds = None` means every kind), where `time` is the event's time
  (its own timestamp, or the last known time carried forward) and `state`
  is a read-only view of the latest state of the stream (`StateView`);
- `tick(time, state)` whenever time advances without a matching event
  (quiet stream, or every event), for triggers that fire on time alone.

Both return the firings that happen at that moment: `None`, one `Firing`,
or a list. Build them with `self.fire(time, onset=None, **evidence)`;
evidence is a small JSON-serialisable dict (a score, the changed pins, a
value). `onset` is the time of the first evidence that led to the firing (a
trigger that confirms over several frames, scans or a hold fires later than
the thing it saw began); the segment's pre-roll is counted from it. It
defaults to the firing time, is never later than it, and is never earlier
than `time - max_onset_lag` (the segmenter's pre-roll ring holds
`pre_roll + max_onset_lag`, so a trigger that passes onsets declares how far
back they can reach; an earlier onset is clamped to that bound).

Options are declared as `Option`s in the class attribute `options`; the rule
loader validates a rule's keys against them (types, ranges, choices) before
anything starts, and passes the coerced values to `__init__` as keyword
arguments, which `Trigger.__init__` stores as attributes of the same name.
An option of type "path" reaches the trigger resolved against the folder of
the rule file that names it (an empty string stays empty: "none").

A trigger that computes a score (how close it is to firing) reports it on each
evaluation with `self.score(time, value, threshold)`: it fires when `value`
passes `threshold`, so `value / threshold` is how close it came. The engine
collects the scores (`RuleEngine.take_scores()`); autorec keeps a per-second
maximum track of them all night and lists near-misses (`autorec.core.scores`).

A trigger whose firings follow from its scores alone names the option they
are compared with in `threshold_option` and returns a `Decider` from
`decider(threshold)`: fed the scores in order, it returns the firings the
trigger would have made with that threshold (at least their times and
onsets). `autorec tune` uses it to try many thresholds in one pass over a
log. The default (None) means "cannot be swept from scores".

A trigger may keep a `counters` attribute (a dict of str -> int, e.g. corrupt
frames skipped); `autorec run` reports each in the status file's `counters`
as "RULE.NAME".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from autorec.proto import PurpleDropEvent
from autorec.units import parse_duration, parse_size

REQUIRED: Any = object()

# Option types a rule file may use, and what a value of each looks like.
OPTION_TYPES = {
    "float": "a number",
    "int": "a whole number",
    "bool": "true or false",
    "str": "a string",
    "path": "a file path (relative to the rule file's folder)",
    "duration": "a duration like 500ms, 10s, 30min",
    "size": "a size like 512kB, 256MB, 1GiB",
    "list[int]": "a list of whole numbers",
    "list[float]": "a list of numbers",
    "list[str]": "a list of strings",
    "dict": "a mapping",
    "any": "any value",
}


@dataclass(frozen=True)
class Option:
    """One option of a trigger: its name, type (a key of OPTION_TYPES), default and limits."""

    name: str
    type: str = "float"
    default: Any = REQUIRED
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: Sequence[Any] | None = None

    def __post_init__(self) -> None:
        if self.type not in OPTION_TYPES:
            raise ValueError(f"option {self.name!r}: unknown type {self.type!r}")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def limits(self) -> list[str]:
        """The declared limits in words (`>= 1`, `<= 255`, `one of drive, scan`), as `autorec plugins`,
        `autorec check --explain` and the triggers' reference page show them."""
        out = []
        if self.min is not None:
            out.append(f">= {self.min:g}")
        if self.max is not None:
            out.append(f"<= {self.max:g}")
        if self.choices is not None:
            out.append("one of " + ", ".join(map(str, self.choices)))
        return out

    def describe(self) -> str:
        """One line for `autorec plugins` and the loader's missing-option error."""
        parts = [f"{self.name}: {self.type}"]
        if not self.required:
            parts.append(f"default {self.default!r}")
        else:
            parts.append("required")
        parts += self.limits()
        text = ", ".join(parts)
        return f"{text}  {self.help}".rstrip()

    def coerce(self, value: Any) -> Any:
        """The value converted to this option's type; ValueError says what is allowed."""
        t = self.type
        if t == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"expected {OPTION_TYPES[t]}, got {value!r}")
            value = float(value)
        elif t == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"expected {OPTION_TYPES[t]}, got {value!r}")
        elif t == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"expected {OPTION_TYPES[t]}, got {value!r}")
        elif t in ("str", "path"):
            if not isinstance(value, str):
                raise ValueError(f"expected {OPTION_TYPES[t]}, got {value!r}")
        elif t == "duration":
            bare = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = parse_duration(value)
            unit = f" ({value:g} s: a bare number is seconds; write {value:g}ms for milliseconds)" if bare else ""
            if self.min is not None and value < self.min:
                raise ValueError(f"must be >= {self.min:g} s, got {value!r}{unit}")
            if self.max is not None and value > self.max:
                raise ValueError(f"must be <= {self.max:g} s, got {value!r}{unit}")
        elif t == "size":
            value = parse_size(value)
        elif t.startswith("list["):
            if not isinstance(value, list):
                raise ValueError(f"expected {OPTION_TYPES[t]}, got {value!r}")
            item = Option(self.name, t[5:-1])
            value = [item.coerce(v) for v in value]
        elif t == "dict":
            if not isinstance(value, dict):
                raise ValueError(f"expected {OPTION_TYPES[t]}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"expected one of {', '.join(map(str, self.choices))}, got {value!r}")
        if self.min is not None and isinstance(value, (int, float)) and value < self.min:
            raise ValueError(f"must be >= {self.min}, got {value!r}")
        if self.max is not None and isinstance(value, (int, float)) and value > self.max:
            raise ValueError(f"must be <= {self.max}, got {value!r}")
        return value


# The longest onset lag any trigger may declare: bounds the pre-roll ring's extra memory.
MAX_ONSET_LAG = 120.0


@dataclass(frozen=True)
class Firing:
    """A trigger fired: which rule, when (stream time, epoch seconds), and why.

    `onset` is when the evidence began (None given: the firing time); the segment's
    pre-roll is counted from the earliest onset of the firings that open it."""

    rule: str
    time: float
    evidence: Mapping[str, Any] = field(default_factory=dict)
    onset: float | None = None

    def __post_init__(self) -> None:
        if self.onset is None:
            object.__setattr__(self, "onset", self.time)

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "time": self.time, "onset": self.onset, "evidence": dict(self.evidence)}


@dataclass(frozen=True, slots=True)
class Score:
    """One evaluation of a rule: its `value` against the `threshold` it fires at (stream time)."""

    rule: str
    time: float
    value: float
    threshold: float


class Decider(Protocol):
    """Replays a trigger's firing decision from its scores with another threshold (see `Trigger.decider`)."""

    def feed(self, score: Score) -> Firing | Sequence[Firing] | None: ...


class StateView(Protocol):
    """Read-only view of the latest state of the stream (see `autorec.core.state`)."""

    @property
    def time(self) -> float | None: ...

    def latest(self, kind: str) -> PurpleDropEvent | None: ...

    def latest_time(self, kind: str) -> float | None: ...

    @property
    def driven_pins(self) -> frozenset[int]: ...

    @property
    def covered_pins(self) -> frozenset[int]: ...


FiringResult = Firing | Sequence[Firing] | None


class Trigger:
    """Base class of every trigger. See the module docstring for the contract."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options: ClassVar[tuple[Option, ...]] = ()
    kinds: ClassVar[frozenset[str] | None] = None
    # How far before its firing time a firing's `onset` may lie, in seconds (at most
    # MAX_ONSET_LAG). Built-ins compute it from their options (min_frames, settle, for).
    max_onset_lag: float = 0.0
    # The option a threshold sweep varies (`autorec tune`), when `decider` supports it.
    threshold_option: ClassVar[str | None] = None

    def __init__(self, rule: str, **options: Any) -> None:
        self.rule = rule
        for opt in self.options:
            if opt.name in options:
                setattr(self, opt.name, options[opt.name])
            elif not opt.required:
                setattr(self, opt.name, opt.default)
            else:
                raise TypeError(f"{type(self).__name__}: missing required option {opt.name!r}")

    def fire(self, time: float, onset: float | None = None, **evidence: Any) -> Firing:
        """A firing at `time`; `onset`: when the evidence for it began (default: `time`)."""
        return Firing(self.rule, time, evidence, onset)

    def score(self, time: float, value: float, threshold: float) -> None:
        """Report this evaluation's score: `value` against the `threshold` this rule fires at.
        Collected by the engine after the call; never affects firing."""
        pending = self.__dict__.setdefault("_scores", [])
        if len(pending) < 1000:  # a runaway plugin cannot grow memory between two collections
            pending.append((time, value, threshold))

    def decider(self, threshold: float) -> Decider | None:
        """A `Decider` giving this trigger's firings from its scores with `threshold` in place of
        its own; None if its firings do not follow from its scores alone (the default)."""
        return None

    def feed(self, time: float, event: PurpleDropEvent, state: StateView) -> FiringResult:
        return None

    def tick(self, time: float, state: StateView) -> FiringResult:
        return None


def as_firings(result: FiringResult) -> list[Firing]:
    """Normalise what `feed`/`tick` returned to a list."""
    if result is None:
        return []
    if isinstance(result, Firing):
        return [result]
    return list(result)
