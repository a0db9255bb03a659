"""Every key a rule file may hold, declared once: its section, kind of value, unit, default and meaning.

The rule loader (`autorec.rules`) takes each section's allowed keys from here, the documentation's
rule-file reference is generated from here, and the defaults are read from the rule model's
dataclasses (`autorec.core.ruleset`, `SegmentPolicy`, `Budget`, `FlapPolicy`), so a key, its
default and its help cannot drift apart: `tests/test_docs.py` fails when a key is declared here
without a default there, or the other way round. Trigger options are declared by each trigger
(`autorec.triggers.base.Option`) and listed beside these.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from autorec.core.budget import Budget, FlapPolicy
from autorec.core.ruleset import (
    AlertSettings,
    HookSettings,
    MqttSettings,
    OutputSettings,
    Rule,
    RuleSet,
    UploadSettings,
)
from autorec.core.segmenter import SegmentPolicy


@dataclass(frozen=True)
class Key:
    """One rule-file key. `kind` names the value a user writes (duration, size, ...); `field` is the
    attribute of `model` that holds it after loading (None when it has no default of its own)."""

    section: str  # "" (top level), "output", "segments", "hooks", "alerts", "budget", "rule", "flap" (a rule's)
    name: str
    kind: str
    help: str
    model: type | None = None
    field: str | None = None
    default_text: str | None = None  # what to show when the model's default is not what a user writes

    @property
    def path(self) -> str:
        section = "rule" if self.section == "flap" else self.section
        return f"{section}.{self.name}" if section else self.name

    def default(self) -> str:
        """The default as a user would write it."""
        if self.default_text is not None:
            return self.default_text
        if self.model is None or self.field is None:
            return "required" if self.name in ("name", "trigger") else "none"
        value = _field_default(self.model, self.field)
        return show_value(value, self.kind)


def _field_default(model: type, name: str) -> Any:
    for f in dataclasses.fields(model):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            return None
    raise KeyError(f"{model.__name__} has no field {name!r}")


def show_value(value: Any, kind: str) -> str:
    from autorec.units import format_size

    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if kind == "duration" and isinstance(value, (int, float)):
        for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
            if value >= size and value % size == 0:
                return f"{value / size:g}{unit}"
        return f"{value:g}s"
    if kind == "size" and isinstance(value, int):
        return format_size(value).replace(" ", "").replace(".0", "")
    return str(value)


KINDS = {
    "duration": "a duration: `500ms`, `20s`, `5min`, `2h`, `14d` (a bare number is seconds)",
    "size": "a size: `512MB`, `2GB` (x1000) or `256MiB` (x1024) (a bare number is bytes)",
    "bool": "`true` or `false`",
    "int": "a whole number",
    "number": "a number",
    "text": "text",
    "argv": "an argv list (no shell), or a list of them; `{placeholders}` are filled in",
    "list": "a list",
    "mapping": "a mapping",
}

_O, _S, _H, _A, _M = OutputSettings, SegmentPolicy, HookSettings, AlertSettings, MqttSettings
_U = UploadSettings

KEYS: tuple[Key, ...] = (
    # -- top level
    Key("", "source", "text", "the rig's websocket, e.g. `ws://pi-host:7001` (`--uri` overrides)", RuleSet, "source"),
    Key("", "output", "mapping", "where and how segments are written (the `output.*` keys)"),
    Key("", "segments", "mapping", "how firings shape segments, for every rule (the `segments.*` keys)"),
    Key("", "rules", "list", "the rules: each a mapping with `name`, `trigger` and options (the `rule.*` keys)"),
    Key("", "hooks", "mapping", "commands run in the background (the `hooks.*` keys)"),
    Key("", "alerts", "mapping", "when to raise alerts (the `alerts.*` keys)"),
    Key("", "max_errors", "int", "a trigger that raises this often is disabled (1 or more)", RuleSet, "max_errors"),
    Key(
        "",
        "shutdown_grace",
        "duration",
        "on SIGINT/SIGTERM, wait this long for running hooks and exports",
        RuleSet,
        "shutdown_grace",
    ),
    Key(
        "",
        "heartbeat",
        "duration",
        "when stderr is not a terminal, log a status line this often (`null`: never; `run --heartbeat` overrides)",
        RuleSet,
        "heartbeat",
    ),
    Key("", "budget", "mapping", "what all segments together may cost (the `budget.*` keys)"),
    Key("", "mqtt", "mapping", "events on an MQTT broker (the `mqtt.*` keys; user and password from the environment)"),
    Key(
        "",
        "upload",
        "mapping",
        "upload closed segments to S3-compatible storage (the `upload.*` keys; docs/how-to/upload.md)",
    ),
    # -- output
    Key("output", "dir", "text", "the output directory, relative to where autorec runs (`--out` overrides)", _O, "dir"),
    Key(
        "output",
        "name",
        "text",
        "segment file names: `{start:%Y%m%dT%H%M%SZ}` (UTC, strftime), `{rules}` (a+b), `{seq}`",
        _O,
        "name",
    ),
    Key("output", "telemetry", "bool", "also keep every non-image message in a daily telemetry log", _O, "telemetry"),
    Key("output", "video", "text", "`h264`, `copy` or `off`: export camera frames when a segment closes", _O, "video"),
    Key("output", "mcap", "bool", "also write NAME.mcap (Foxglove, Lichtblick) when a segment closes", _O, "mcap"),
    Key(
        "output",
        "min_free",
        "size",
        "the disk floor: a size (`2GB`) or a percentage (`5%`); below it no segment is opened",
        _O,
        "min_free",
        default_text="1GB or 5%, whichever is larger",
    ),
    Key("output", "keep", "duration", "retention: delete segments older than this (`14d`)", _O, "keep"),
    Key("output", "max_total", "size", "retention: delete the oldest segments beyond this total", _O, "max_total"),
    Key("output", "fsync", "bool", "fsync segments when they close", _O, "fsync"),
    Key(
        "output",
        "status_file",
        "text",
        "the status file's name inside `output.dir` (`null`: none)",
        _O,
        "status_file",
    ),
    Key(
        "output",
        "queue_max_bytes",
        "size",
        "bound of the queue between reception and the disk",
        _O,
        "queue_max_bytes",
    ),
    Key(
        "output",
        "timelapse",
        "duration",
        "keep one camera frame this often in a daily timelapse log (1s to 1d; `off`: none)",
        _O,
        "timelapse",
    ),
    Key(
        "output",
        "keep_until_uploaded",
        "bool",
        "retention deletes a segment only once its upload is confirmed (needs `upload`)",
        _O,
        "keep_until_uploaded",
    ),
    # -- segments (also per rule)
    Key(
        "segments",
        "pre_roll",
        "duration",
        "kept before the first firing (the onset, for slow triggers)",
        _S,
        "pre_roll",
    ),
    Key(
        "segments",
        "post_roll",
        "duration",
        "kept after the last firing; a firing within it extends the segment",
        _S,
        "post_roll",
    ),
    Key("segments", "max_length", "duration", "a longer segment is split into parts", _S, "max_length"),
    Key(
        "segments",
        "pre_roll_max_bytes",
        "size",
        "bound of the pre-roll buffer (its oldest records go first)",
        _S,
        "pre_roll_max_bytes",
    ),
    # -- hooks
    Key(
        "hooks",
        "on_segment_open",
        "argv",
        "run when a segment opens: `{path}` `{sidecar}` `{rules}` `{start}` `{end}`",
        _H,
        "on_segment_open",
    ),
    Key("hooks", "on_segment_close", "argv", "run when a segment closes (same placeholders)", _H, "on_segment_close"),
    Key(
        "hooks",
        "on_alert",
        "argv",
        "run when an alert is raised or cleared: also `{alert}` `{message}` `{state}` `{time}` `{since}`",
        _H,
        "on_alert",
    ),
    Key("hooks", "timeout", "duration", "a hook running longer is stopped", _H, "timeout"),
    # -- alerts
    Key("alerts", "alert_after", "duration", "alert when the rig has been unreachable this long", _A, "alert_after"),
    Key(
        "alerts",
        "camera_stall",
        "duration",
        "alert when camera frames stop while other messages flow (`null`: never)",
        _A,
        "camera_stall",
    ),
    # -- mqtt
    Key("mqtt", "url", "text", "the broker: `mqtt://HOST[:PORT]` (`mqtts://`: TLS); no password here", _M, "url"),
    Key("mqtt", "topic", "text", "topic prefix: each rig publishes under `TOPIC/RIG/`", _M, "topic"),
    Key("mqtt", "status_every", "duration", "how often the retained `status` is published", _M, "status_every"),
    Key(
        "mqtt",
        "max_queued",
        "int",
        "events held while the broker is unreachable; more are dropped and counted",
        _M,
        "max_queued",
    ),
    Key("mqtt", "ca_file", "text", "the CA of an `mqtts://` broker with a private one", _M, "ca_file"),
    # -- upload (docs/how-to/upload.md); credentials from boto3's chain, never here
    Key(
        "upload",
        "url",
        "text",
        "where this rig's data goes: `s3://BUCKET/PREFIX` (`--upload-url`)",
        _U,
        "url",
        "required",
    ),
    Key(
        "upload",
        "endpoint",
        "text",
        "the store, `http://HOST:PORT`; omit for AWS (`--upload-endpoint`)",
        _U,
        "endpoint",
    ),
    Key(
        "upload", "rig", "text", "this rig's name in the store, MQTT and metrics (`--rig`)", _U, "rig", "the host name"
    ),
    Key("upload", "max_rate", "size", "bandwidth cap, e.g. `2MB/s`", _U, "max_rate"),
    Key("upload", "retry_max", "duration", "longest wait between retries of a failed upload", _U, "retry_max"),
    # -- budget (top level: all segments together; on a rule: that rule)
    Key("budget", "max_segments_per_hour", "int", "segments opened in any hour", Budget, "max_segments_per_hour"),
    Key("budget", "max_bytes_per_hour", "size", "bytes written in any hour", Budget, "max_bytes_per_hour"),
    Key("budget", "max_share", "number", "share (0-1] of the output filesystem a day", Budget, "max_share"),
    # -- a rule
    Key("rule", "name", "text", "unique; letters, digits, `_ . -` (it goes into file names)"),
    Key("rule", "trigger", "text", "a built-in trigger, an installed plugin's name, or `package.module:Class`"),
    Key("rule", "max_errors", "int", "this rule's trigger is disabled after this many errors", Rule, "max_errors"),
    Key(
        "rule",
        "near_miss",
        "number",
        "a near-miss: a score that came this close to the threshold without firing (0: off)",
        Rule,
        "near_miss",
    ),
    Key("rule", "near_miss_clip", "bool", "keep a short segment around each near-miss", Rule, "near_miss_clip"),
    Key("flap", "max_open", "duration", "flapping: a segment of this rule open this long", FlapPolicy, "max_open"),
    Key("flap", "flap_rate", "int", "flapping: this many firings a minute ...", FlapPolicy, "flap_rate"),
    Key("flap", "flap_for", "duration", "... held this long (whole minutes)", FlapPolicy, "flap_for"),
    Key(
        "flap",
        "flap_keep_fps",
        "number",
        "camera frames a second kept while flapping (none: all)",
        FlapPolicy,
        "keep_fps",
    ),
)

# A rule may also set every `segments` key and every `budget` key for itself; the flap keys are a rule's only.
RULE_ALSO = ("segments", "budget", "flap")


def keys(section: str) -> tuple[str, ...]:
    """The key names allowed in `section` ("" for the top level; "rule" includes `RULE_ALSO`)."""
    names = [k.name for k in KEYS if k.section == section]
    if section == "rule":
        names += [k.name for k in KEYS if k.section in RULE_ALSO]
    return tuple(names)


def key(path: str) -> Key:
    """The declaration of `path` (`output.video`, `rule.near_miss`, `max_errors`)."""
    for k in KEYS:
        if k.path == path:
            return k
    raise KeyError(path)
