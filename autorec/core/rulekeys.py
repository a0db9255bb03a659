"""Every key a rule file may hold, declared once: its section, kind of value, unit, default, limits and meaning.

The rule loader (`autorec.rules`) takes each section's allowed keys from here and converts and
checks every value with `Key.convert` (the kind's parsing, then the declared limits: `min`, `max`,
`above`, `below`, `step`, `choices`, `pattern`); the documentation's rule-file reference,
`autorec check --explain` and `autorec check --schema` (`autorec.core.ruleschema`) are generated
from here, and the defaults are read from the rule model's dataclasses (`autorec.core.ruleset`,
`SegmentPolicy`, `Budget`, `FlapPolicy`), so a key, its limits, its default and its help cannot
drift apart: `tests/test_docs.py` fails when a key is declared here without a default there, or the
other way round, and `tests/test_rulekeys.py` feeds every key values just inside and just outside
its declared limits through the loader. Trigger options are declared by each trigger
(`autorec.triggers.base.Option`) and listed beside these.

What is not a single key's limit stays in the loader, which says so: checks across keys
(`flap_for` needs `flap_rate` or `max_open`, `keep_until_uploaded` needs `upload`, the segment
name template rendered with the rules' names) and syntaxes the services own (a hook's argv, an MQTT
URL, an S3 URL: `Key.format` names them, `autorec.rules` checks them).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
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
from autorec.units import format_size, parse_duration, parse_size, show_written

MAX_DURATION = 3650 * 86400.0  # every duration: 10 years, far below what threading/asyncio can wait for (~292 years)

UNITS = {"duration": "s", "size": "B", "rate": "B/s"}  # what a bare number is read in


@dataclass(frozen=True)
class Key:
    """One rule-file key. `kind` names the value a user writes (a key of `KINDS`); `field` is the
    attribute of `model` that holds it after loading (None when it has no default of its own).

    Limits are in the kind's unit (`UNITS`: seconds, bytes; a number as written): `min`/`max`
    inclusive, `above`/`below` exclusive, `step` a multiple the value must be of; `choices` the
    allowed texts; `pattern` a regular expression a text must match (`pattern_help` says what in
    words). `nullable`: `null` means none (`off_value`, in words `off_help`); `off`: `off`/`false`
    mean none too and `true` the default. `percent`: a number may be written `N%` (read as N/100). `format` names a
    syntax the loader checks in place of the kind's parsing (`autorec.rules` has one checker each).
    """

    section: str  # "" (top level), "output", "segments", "hooks", "alerts", "budget", "rule", "flap" (a rule's)
    name: str
    kind: str
    help: str
    model: type | None = None
    field: str | None = None
    default_text: str | None = None  # what to show when the model's default is not what a user writes
    min: float | None = None
    max: float | None = None
    above: float | None = None
    below: float | None = None
    step: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    pattern_help: str | None = None
    nullable: bool = False
    off: bool = False
    off_value: Any = None
    off_help: str | None = None  # what `null` means, when not `off_value` as written ("none")
    required: bool = False  # in its section, when the section is given at all
    percent: bool = False
    format: str | None = None

    @property
    def path(self) -> str:
        section = "rule" if self.section == "flap" else self.section
        return f"{section}.{self.name}" if section else self.name

    @property
    def unit(self) -> str:
        """What a bare number is read in ("" for kinds without a unit)."""
        return UNITS.get(self.kind, "")

    def default(self) -> str:
        """The default as a user would write it."""
        if self.required:
            return "required"
        if self.default_text is not None:
            return self.default_text
        if self.model is None or self.field is None:
            return "none"
        return show_value(self.default_value(), self.kind)

    def default_value(self) -> Any:
        """The model's default (None when the key has no model field)."""
        if self.model is None or self.field is None:
            return None
        return _field_default(self.model, self.field)

    # -- limits ----------------------------------------------------------------------------

    def show_limit(self, number: float) -> str:
        if number == 0:
            return "0"
        if self.percent:
            return f"{number * 100:g}%"
        return show_value(number, self.kind) if self.kind in UNITS else f"{number:g}"

    def limits(self) -> list[str]:
        """The declared limits in words (`more than 0`, `at most 1d`, `one of h264, copy, off`)."""
        out = []
        if self.above is not None:
            out.append(f"more than {self.show_limit(self.above)}")
        if self.min is not None:
            out.append(f"at least {self.show_limit(self.min)}")
        if self.below is not None:
            out.append(f"below {self.show_limit(self.below)}")
        if self.max is not None:
            out.append(f"at most {self.show_limit(self.max)}")
        if self.step is not None:
            out.append(f"a multiple of {self.show_limit(self.step)}")
        if self.choices is not None:
            out.append("one of " + ", ".join(self.choices))
        if self.pattern_help is not None:
            out.append(self.pattern_help)
        elif self.format is not None:
            out.append(FORMATS[self.format])
        if self.nullable or self.off:
            written = "`null` or `off`" if self.off else "`null`"
            meaning = self.off_help or show_value(self.off_value, self.kind)
            out.append(f"{written}: {meaning}")
        return out

    # -- conversion ------------------------------------------------------------------------

    def convert(self, value: Any, parse: Callable[[Any], Any] | None = None) -> Any:
        """`value` as written in a rule file -> as the model holds it; ValueError says what is wrong and
        what is allowed. `parse` replaces the kind's own parsing (the loader's checker of `format`)."""
        if self.off and (value is False or (isinstance(value, str) and value.strip().lower() == "off")):
            return self.off_value
        if value is None and (self.nullable or self.off):
            return self.off_value
        if self.off and value is True:
            return self.default_value()
        if value is False and self.choices is not None and "off" in self.choices:
            value = "off"  # YAML 1.1 reads a bare `off` as false; accept it as the user meant it
        try:
            result = (parse or self.parse)(value)
        except ValueError as exc:
            if isinstance(value, bool) and self.kind != "bool":  # `got False` where the user wrote `off` or `no`
                instead = "; write null for none" if self.nullable else ""
                raise ValueError(f"{exc} (YAML reads a bare on/off, yes/no as true/false{instead})") from None
            raise
        self.check(result, value)
        return result

    def parse(self, value: Any) -> Any:
        """The kind's parsing alone (no limits)."""
        kind = self.kind
        if kind == "duration":
            seconds = parse_duration(value)
            if seconds > MAX_DURATION:
                raise ValueError(
                    f"{show_written(value)} is too long (at most 3650d, 10 years: longer cannot be waited for)"
                )
            return seconds
        if kind == "size":
            return parse_size(value)
        if kind == "rate":
            text = value.strip() if isinstance(value, str) else value
            try:
                return parse_size(text[:-2] if isinstance(text, str) and text.endswith("/s") else text)
            except ValueError:
                raise ValueError(f"expected a rate like 2MB/s or 500KB/s, got {show_written(value)}") from None
        if kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"expected true or false, got {show_written(value)}")
            return value
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"expected a whole number, got {show_written(value)}")
            return value
        if kind == "number":
            return self._number(value)
        if kind == "text":
            if self.choices is not None:
                return value  # `check` says which choices there are
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"expected a non-empty string, got {show_written(value)}")
            if self.pattern is not None and not re.search(self.pattern, value):
                raise ValueError(f"expected {self.pattern_help}, got {show_written(value)}")
            return value
        return value  # argv, list, mapping: the loader reads them (FORMATS, sections, rules)

    def _number(self, value: Any) -> float:
        text = value.strip() if isinstance(value, str) else None
        number = math.nan
        if self.percent and text:  # `10%`, or the fraction written as text
            try:
                number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
            except ValueError:
                pass
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        if not math.isfinite(number):
            also = " or a percentage like 10%" if self.percent else ""
            raise ValueError(f"expected a number{also}, got {show_written(value)}")
        return number

    def check(self, result: Any, value: Any) -> None:
        """ValueError unless `result` (parsed from `value`) is within the declared limits."""
        if self.choices is not None and result not in self.choices:
            raise ValueError(f"expected one of {', '.join(self.choices)}, got {show_written(value)}")
        if not isinstance(result, (int, float)) or isinstance(result, bool):
            return
        got = f"got {show_written(value)}"
        too_large = got  # a bare number above a duration's limit may have meant milliseconds (not one below it)
        if self.kind == "duration" and isinstance(value, (int, float)) and not isinstance(value, bool):
            too_large += f" ({result:g} s: a bare number is seconds; write {result:g}ms for milliseconds)"
        if self.above is not None and not result > self.above:
            raise ValueError(f"must be more than {self.show_limit(self.above)}, {got}")
        if self.min is not None and result < self.min:
            raise ValueError(f"must be at least {self.show_limit(self.min)}, {got}")
        if self.below is not None and not result < self.below:
            raise ValueError(f"must be below {self.show_limit(self.below)}, {too_large}")
        if self.max is not None and result > self.max:
            raise ValueError(f"must be at most {self.show_limit(self.max)}, {too_large}")
        if self.step is not None and result % self.step:
            raise ValueError(f"must be a multiple of {self.show_limit(self.step)}, {got}")


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
    """`value` (as the model holds it) as a user would write it for a key of `kind`."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if kind == "duration" and isinstance(value, (int, float)):
        for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
            if value >= size and value % size == 0:
                return f"{value / size:g}{unit}"
        return f"{value:g}s"
    if kind in ("size", "rate") and isinstance(value, (int, float)):
        text = format_size(value).replace(" ", "").replace(".0", "")
        return text + "/s" if kind == "rate" else text
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


KINDS = {
    "duration": "a duration: `500ms`, `20s`, `5min`, `2h`, `14d` (a bare number is seconds; at most 3650d)",
    "size": "a size: `512MB`, `2GB` (x1000) or `256MiB` (x1024) (a bare number is bytes)",
    "rate": "a bandwidth: `2MB/s`, `500KB/s` (a size a second)",
    "bool": "`true` or `false`",
    "int": "a whole number",
    "number": "a number",
    "text": "text (not empty)",
    "argv": "an argv list (no shell), or a list of them; `{placeholders}` are filled in",
    "list": "a list",
    "mapping": "a mapping",
}

# The syntaxes the loader checks beyond a key's kind (`Key.format`; `autorec.rules.FORMATS` has a checker each).
FORMATS = {
    "websocket": "a websocket URI, `ws://HOST:PORT` or `wss://`",
    "disk-floor": "a size (`2GB`) or a percentage of the filesystem (`5%`, below 100%)",
    "hook": "an argv list or a list of them, with the hook's placeholders",
    "mqtt-url": "`mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]`, no password",
    "mqtt-topic": "an MQTT topic prefix, no wildcards",
    "s3-url": "`s3://BUCKET/PREFIX`",
    "http-url": "`http(s)://HOST[:PORT]`, no credentials",
    "rig-name": "letters, digits, `_ . -`",
}

_O, _S, _H, _A, _M = OutputSettings, SegmentPolicy, HookSettings, AlertSettings, MqttSettings
_U = UploadSettings
DAY = 86400.0

KEYS: tuple[Key, ...] = (
    # -- top level
    Key(
        "",
        "source",
        "text",
        "the rig's websocket, e.g. `ws://pi-host:7001` (`--uri` overrides)",
        RuleSet,
        "source",
        pattern=r"^wss?://[^\s/]+",
        pattern_help="a websocket URI like ws://localhost:7001",
        format="websocket",
    ),
    Key("", "output", "mapping", "where and how segments are written (the `output.*` keys)"),
    Key("", "segments", "mapping", "how firings shape segments, for every rule (the `segments.*` keys)"),
    Key(
        "",
        "rules",
        "list",
        "the rules: each a mapping with `name`, `trigger` and options (the `rule.*` keys)",
        required=True,
    ),
    Key("", "hooks", "mapping", "commands run in the background (the `hooks.*` keys)"),
    Key("", "alerts", "mapping", "when to raise alerts (the `alerts.*` keys)"),
    Key("", "max_errors", "int", "a trigger that raises this often is disabled", RuleSet, "max_errors", min=1),
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
        above=0,
        nullable=True,
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
    Key(
        "output",
        "video",
        "text",
        "export camera frames when a segment closes",
        _O,
        "video",
        choices=("h264", "copy", "off"),
    ),
    Key("output", "mcap", "bool", "also write NAME.mcap (Foxglove, Lichtblick) when a segment closes", _O, "mcap"),
    Key(
        "output",
        "min_free",
        "size",
        "the disk floor: a size (`2GB`) or a percentage (`5%`); below it no segment is opened",
        _O,
        "min_free",
        default_text="1GB or 5%, whichever is larger",
        nullable=True,
        off_help="the default",
        format="disk-floor",
    ),
    Key(
        "output",
        "keep",
        "duration",
        "retention: delete segments older than this (`14d`)",
        _O,
        "keep",
        above=0,
        nullable=True,
    ),
    Key(
        "output",
        "max_total",
        "size",
        "retention: delete the oldest segments beyond this total",
        _O,
        "max_total",
        above=0,
        nullable=True,
    ),
    Key("output", "fsync", "bool", "fsync segments when they close", _O, "fsync"),
    Key(
        "output",
        "status_file",
        "text",
        "the status file's name inside `output.dir` (`null`: none)",
        _O,
        "status_file",
        pattern=r"^(?!\.\.?$)[^/\\]+$",
        pattern_help="a plain file name inside output.dir",
        nullable=True,
    ),
    Key(
        "output",
        "queue_max_bytes",
        "size",
        "bound of the queue between reception and the disk",
        _O,
        "queue_max_bytes",
        above=0,
    ),
    Key(
        "output",
        "timelapse",
        "duration",
        "keep one camera frame this often in a daily timelapse log (`off`: none)",
        _O,
        "timelapse",
        min=1,
        max=DAY,
        off=True,
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
    Key("segments", "max_length", "duration", "a longer segment is split into parts", _S, "max_length", min=1),
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
        nullable=True,
        format="hook",
    ),
    Key(
        "hooks",
        "on_segment_close",
        "argv",
        "run when a segment closes (same placeholders)",
        _H,
        "on_segment_close",
        nullable=True,
        format="hook",
    ),
    Key(
        "hooks",
        "on_alert",
        "argv",
        "run when an alert is raised or cleared: also `{alert}` `{message}` `{state}` `{time}` `{since}`",
        _H,
        "on_alert",
        nullable=True,
        format="hook",
    ),
    Key("hooks", "timeout", "duration", "a hook running longer is stopped", _H, "timeout", above=0),
    # -- alerts
    Key(
        "alerts",
        "alert_after",
        "duration",
        "alert when the rig has been unreachable this long",
        _A,
        "alert_after",
        above=0,
    ),
    Key(
        "alerts",
        "camera_stall",
        "duration",
        "alert when camera frames stop while other messages flow (`null`: never)",
        _A,
        "camera_stall",
        above=0,
        nullable=True,
    ),
    # -- mqtt
    Key(
        "mqtt",
        "url",
        "text",
        "the broker: `mqtt://HOST[:PORT]` (`mqtts://`: TLS); no password here",
        _M,
        "url",
        format="mqtt-url",
        required=True,
    ),
    Key(
        "mqtt", "topic", "text", "topic prefix: each rig publishes under `TOPIC/RIG/`", _M, "topic", format="mqtt-topic"
    ),
    Key(
        "mqtt",
        "status_every",
        "duration",
        "how often the retained `status` is published",
        _M,
        "status_every",
        min=1,
    ),
    Key(
        "mqtt",
        "max_queued",
        "int",
        "events held while the broker is unreachable; more are dropped and counted",
        _M,
        "max_queued",
        min=1,
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
        format="s3-url",
        required=True,
    ),
    Key(
        "upload",
        "endpoint",
        "text",
        "the store, `http://HOST:PORT`; omit for AWS (`--upload-endpoint`)",
        _U,
        "endpoint",
        format="http-url",
    ),
    Key(
        "upload",
        "rig",
        "text",
        "this rig's name in the store, MQTT and metrics (`--rig`)",
        _U,
        "rig",
        "the host name",
        format="rig-name",
    ),
    Key("upload", "max_rate", "rate", "bandwidth cap", _U, "max_rate", above=0, nullable=True),
    Key(
        "upload",
        "retry_max",
        "duration",
        "longest wait between retries of a failed upload",
        _U,
        "retry_max",
        above=0,
    ),
    # -- budget (top level: all segments together; on a rule: that rule)
    Key(
        "budget",
        "max_segments_per_hour",
        "int",
        "segments opened in any hour",
        Budget,
        "max_segments_per_hour",
        min=1,
        nullable=True,
    ),
    Key(
        "budget",
        "max_bytes_per_hour",
        "size",
        "bytes written in any hour",
        Budget,
        "max_bytes_per_hour",
        above=0,
        nullable=True,
    ),
    Key(
        "budget",
        "max_share",
        "number",
        "share of the output filesystem a day: `10%` or `0.1`",
        Budget,
        "max_share",
        above=0,
        max=1,
        percent=True,
        nullable=True,
    ),
    # -- a rule
    Key(
        "rule",
        "name",
        "text",
        "unique; it goes into file names",
        required=True,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        pattern_help="a rule name of letters, digits, '_', '.', '-' (starting with a letter or digit, at most 64 "
        "characters: it goes into file names)",
    ),
    Key(
        "rule",
        "trigger",
        "text",
        "a built-in trigger, an installed plugin's name, or `package.module:Class`",
        required=True,
    ),
    Key(
        "rule",
        "max_errors",
        "int",
        "this rule's trigger is disabled after this many errors",
        Rule,
        "max_errors",
        min=1,
    ),
    Key(
        "rule",
        "near_miss",
        "number",
        "a near-miss: a score that came this fraction of the way from the usual score to the threshold "
        "without firing (0: off)",
        Rule,
        "near_miss",
        min=0,
        below=1,
        off=True,
        off_value=0.0,
    ),
    Key("rule", "near_miss_clip", "bool", "keep a short segment around each near-miss", Rule, "near_miss_clip"),
    Key(
        "flap",
        "max_open",
        "duration",
        "flapping: a segment of this rule open this long",
        FlapPolicy,
        "max_open",
        above=0,
        nullable=True,
    ),
    Key(
        "flap",
        "flap_rate",
        "int",
        "flapping: this many firings a minute, held for `flap_for`",
        FlapPolicy,
        "flap_rate",
        min=1,
        nullable=True,
    ),
    Key(
        "flap",
        "flap_for",
        "duration",
        "flapping: `flap_rate` firings a minute held this long (whole minutes)",
        FlapPolicy,
        "flap_for",
        min=60,
        max=DAY,
        step=60,
    ),
    Key(
        "flap",
        "flap_keep_fps",
        "number",
        "camera frames a second kept while flapping (none: all)",
        FlapPolicy,
        "keep_fps",
        above=0,
        max=100,
        nullable=True,
    ),
)

# Each section with its title, in the order the docs and `check --explain` list them.
SECTIONS = (
    ("", "Top level"),
    ("output", "`output`: where and how segments are written"),
    ("segments", "`segments`: how firings shape segments (every rule; a rule may set them for itself)"),
    ("hooks", "`hooks`: commands run in the background"),
    ("alerts", "`alerts`: when to raise alerts"),
    ("mqtt", "`mqtt`: events on an MQTT broker"),
    ("upload", "`upload`: segments to S3-compatible object storage"),
    ("budget", "`budget`: what segments may cost (all together; a rule may set them for itself)"),
    ("rule", "A rule (each item of `rules`)"),
    ("flap", "A rule's flap control"),
)

# A rule may also set every `segments` key and every `budget` key for itself; the flap keys are a rule's only.
RULE_ALSO = ("segments", "budget", "flap")


def keys(section: str) -> tuple[str, ...]:
    """The key names allowed in `section` ("" for the top level; "rule" includes `RULE_ALSO`)."""
    names = [k.name for k in KEYS if k.section == section]
    if section == "rule":
        names += [k.name for k in KEYS if k.section in RULE_ALSO]
    return tuple(names)


_BY_PATH = {k.path: k for k in KEYS}


def key(path: str) -> Key:
    """The declaration of `path` (`output.video`, `rule.near_miss`, `max_errors`); KeyError if none."""
    return _BY_PATH[path]
