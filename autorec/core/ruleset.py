"""The rule model: what a validated rule file says, as plain frozen dataclasses.

This is what the rule engine, the pipeline and the services read. It knows no YAML, no files
and no validation: `autorec.rules` (the loader) builds a `RuleSet` from a rule file, checks every
key and reports `FILE:LINE` errors; tests and embedding code may also build one directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autorec.core.budget import Budget, FlapPolicy
from autorec.core.segmenter import SegmentPolicy
from autorec.core.segmentname import DEFAULT_NAME
from autorec.outdir import STATUS_NAME
from autorec.triggers.base import Trigger
from autorec.units import format_size, parse_size

DEFAULT_MIN_BYTES = 10**9  # the disk floor when the rule file sets none: 1 GB or 5 %, whichever is larger
DEFAULT_MIN_FRACTION = 0.05


@dataclass(frozen=True)
class MinFree:
    """A floor: the larger of `bytes` and `fraction` of the filesystem size (either may be 0)."""

    bytes: int = DEFAULT_MIN_BYTES
    fraction: float = DEFAULT_MIN_FRACTION

    @classmethod
    def parse(cls, value: str | int | float | None) -> MinFree:
        """`output.min_free` as written in a rule file: a size (`2GB`, `500MiB`, bytes as a number) or a
        percentage of the filesystem (`5%`); None: the default floor. ValueError says what is allowed."""
        if value is None:
            return cls()
        if isinstance(value, str) and value.strip().endswith("%"):
            try:
                pct = float(value.strip()[:-1].strip())
            except ValueError:
                raise ValueError(f"expected a percentage like 5% or a size like 2GB, got {value!r}") from None
            if not 0 <= pct < 100:
                raise ValueError(f"a free-space percentage must be between 0% and 100%, got {value!r}")
            return cls(bytes=0, fraction=pct / 100)
        return cls(bytes=parse_size(value), fraction=0.0)

    @classmethod
    def from_settings(cls, min_free: int | None, min_free_percent: float | None) -> MinFree:
        """From the rule file's parsed `output` settings (`OutputSettings.min_free`, `.min_free_percent`)."""
        if min_free is not None:
            return cls(bytes=min_free, fraction=0.0)
        if min_free_percent is not None:
            return cls(bytes=0, fraction=min_free_percent / 100)
        return cls()

    def floor(self, total_bytes: int) -> int:
        return max(self.bytes, int(self.fraction * total_bytes))

    def describe(self) -> str:
        parts = []
        if self.bytes:
            parts.append(format_size(self.bytes))
        if self.fraction:
            parts.append(f"{self.fraction * 100:g}%")
        return " or ".join(parts) + (", whichever is larger" if len(parts) == 2 else "") if parts else "0"


@dataclass(frozen=True)
class OutputSettings:
    """Where and how segments are written.

    `min_free` / `min_free_percent` store what the user wrote (both None: the
    default floor); use `min_free_bytes(total)` for the effective floor.
    `dir` is relative to the working directory (as on the command line).
    """

    dir: Path = Path("recordings")
    name: str = DEFAULT_NAME
    telemetry: bool = True
    video: str = "off"
    mcap: bool = False  # an MCAP file (Foxglove, Lichtblick) of each segment when it closes
    min_free: int | None = None
    min_free_percent: float | None = None
    keep: float | None = None
    max_total: int | None = None
    fsync: bool = True
    status_file: str | None = STATUS_NAME
    queue_max_bytes: int = 512_000_000
    timelapse: float | None = 30.0  # seconds between timelapse frames; None: no timelapse track
    keep_until_uploaded: bool = False  # retention deletes a segment only once the store has it (needs `upload`)

    def min_free_bytes(self, total_bytes: int) -> int:
        """The disk floor for a filesystem of `total_bytes`: as configured, else max(1 GB, 5 %)."""
        return MinFree.from_settings(self.min_free, self.min_free_percent).floor(total_bytes)


@dataclass(frozen=True)
class HookSettings:
    """Commands run in the background on segment open/close and on alerts (argv lists, no shell)."""

    # one argv list, or a list of argv lists (see autorec.services.hooks.validate_commands)
    on_segment_open: list[Any] | None = None
    on_segment_close: list[Any] | None = None
    on_alert: list[Any] | None = None
    timeout: float = 60.0


@dataclass(frozen=True)
class AlertSettings:
    """When to raise alerts: source disconnected for `alert_after`, camera silent for `camera_stall`."""

    alert_after: float = 60.0
    camera_stall: float | None = 10.0


@dataclass(frozen=True)
class UploadSettings:
    """Where closed segments are uploaded (`upload:`): an S3 URL, an endpoint (None: AWS), the rig's
    name in the store (None: the host name), a bandwidth cap in bytes/s (None: none) and the longest
    wait between retries. Credentials are never here: they come from boto3's chain."""

    url: str
    endpoint: str | None = None
    rig: str | None = None
    max_rate: int | None = None
    retry_max: float = 60.0


@dataclass(frozen=True)
class MqttSettings:
    """Events on an MQTT broker (`autorec.services.mqtt`); off while `url` is None.

    `url` is `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]` (TLS); user and password come from the
    environment, never the rule file. Topics are `TOPIC/RIG/...`."""

    url: str | None = None
    topic: str = "autorec"
    status_every: float = 60.0  # seconds between retained status messages
    max_queued: int = 1000  # events held while the broker is unreachable; more are dropped and counted
    ca_file: str | None = None  # mqtts with a private certificate authority


@dataclass(frozen=True)
class Rule:
    """One validated rule: its trigger class, coerced options and effective segment settings."""

    name: str
    trigger: type[Trigger]
    trigger_name: str
    options: dict[str, Any]
    segments: SegmentPolicy
    line: int | None = None
    max_errors: int = 10
    near_miss: float = 0.5  # a near-miss: this fraction of the way from the usual score to the threshold (0: off)
    near_miss_clip: bool = False  # keep a short segment around each near-miss
    budget: Budget = field(default_factory=Budget)  # max_segments_per_hour, max_bytes_per_hour, max_share
    flap: FlapPolicy = field(default_factory=FlapPolicy)  # max_open, flap_rate, flap_for, flap_keep_fps

    def make_trigger(self) -> Trigger:
        return self.trigger(self.name, **self.options)


@dataclass(frozen=True)
class RuleSet:
    path: Path
    source: str | None = None
    output: OutputSettings = field(default_factory=OutputSettings)
    segments: SegmentPolicy = field(default_factory=SegmentPolicy)
    rules: list[Rule] = field(default_factory=list)
    hooks: HookSettings = field(default_factory=HookSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    max_errors: int = 10
    shutdown_grace: float = 10.0
    heartbeat: float | None = 300.0  # a log line this often when stderr is not a terminal (None: never)
    # Valid but probably not meant (`FILE:LINE: key: warning: ...`); `check` prints them, `run` logs them.
    warnings: tuple[str, ...] = ()
    budget: Budget = field(default_factory=Budget)  # the top-level `budget:` section: all segments together
    upload: UploadSettings | None = None  # the `upload:` section; None: no uploads

    def rule(self, name: str) -> Rule:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def max_pre_roll(self) -> float:
        return max([self.segments.pre_roll, *(r.segments.pre_roll for r in self.rules)])

    @property
    def max_pre_roll_bytes(self) -> int:
        return max([self.segments.pre_roll_max_bytes, *(r.segments.pre_roll_max_bytes for r in self.rules)])
