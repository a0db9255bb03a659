"""Rule files: the YAML a lab user writes, loaded and validated completely before anything starts.

```yaml
source: ws://localhost:7001
output: {dir: recordings, name: "{start:%Y%m%dT%H%M%SZ}-{rules}"}
segments: {pre_roll: 10s, post_roll: 20s, max_length: 30min, pre_roll_max_bytes: 256MB}
rules:
  - {name: drops-moved, trigger: movement, min_pins: 1, post_roll: 30s}
```

Contracts:
- `load_rules(path)` returns a `RuleSet` or raises `ConfigError`, whose `str` is
  one line `FILE:LINE: key: what is wrong (what is allowed)`. Every key is
  checked: unknown keys are errors with a close-match suggestion, each key's
  value is converted and limit-checked by its declaration in
  `autorec.core.rulekeys` (`Key.convert`; this module only adds the checkers of
  the syntaxes the services own, `FORMATS`, and the checks across keys), an unknown
  trigger lists the known ones, trigger options are coerced and range-checked
  by the trigger's `Option` declarations, and each trigger is constructed
  once so that its own cross-option checks run at load time too (a trigger's
  `__init__` may raise `ValueError("OPTION: what is wrong")` to point at one of
  its options).
- YAML is loaded with a safe loader; duplicate keys are errors (PyYAML would
  silently keep the last one).
- The output name template is checked at load time (see `autorec.core.segmentname`),
  so a bad one is reported up front.
- The result is the rule model (`autorec.core.ruleset`), which knows no YAML: the
  rule engine and the pipeline import that, not this loader.
"""

from __future__ import annotations

import os
import re
import string
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from autorec.core import rulekeys
from autorec.core.budget import Budget, FlapPolicy
from autorec.core.ruleset import (
    AlertSettings,
    HookSettings,
    MinFree,
    MqttSettings,
    OutputSettings,
    Rule,
    RuleSet,
    UploadSettings,
)
from autorec.core.segmenter import SegmentPolicy
from autorec.core.segmentname import (
    NAME_FIELDS,
    UNSAFE,
    render_raw,
)
from autorec.events import KINDS
from autorec.services.hooks import check_format_width
from autorec.services.mqtt import check_topic, parse_url
from autorec.triggers.fields import suggest
from autorec.units import format_size, show_written


class ConfigError(Exception):
    """A rule file is wrong. `str(err)` is `FILE:LINE: key: what is wrong (what is allowed)`.

    `errors` lists every error found in the file (the loader reports them all at once, in line
    order); `file`, `line`, `key` and `message` are the first one's. With several errors,
    `str(err)` is one such line per error.
    """

    def __init__(self, file: str | Path, line: int | None, key: str, message: str) -> None:
        self.file = str(file)
        self.line = line
        self.key = key
        self.message = message
        self.errors: list[ConfigError] = [self]
        super().__init__(self.line_text())

    @classmethod
    def of(cls, errors: list[ConfigError]) -> ConfigError:
        """One exception carrying all of `errors` (at least one), sorted by line."""
        ordered = sorted(errors, key=lambda e: e.line or 0)
        first = ordered[0]
        combined = cls(first.file, first.line, first.key, first.message)
        combined.errors = ordered
        return combined

    def line_text(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.key}: {self.message}"

    def __str__(self) -> str:
        return "\n".join(e.line_text() for e in self.errors)


# ---------------------------------------------------------------------------------------------
# YAML with line numbers


class _Map(dict):
    """A YAML mapping that remembers its own line and the line of each key (1-based)."""

    line: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[Any, int] = {}


class _Seq(list):
    line: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[int] = []


class _DuplicateKey(yaml.MarkedYAMLError):
    pass


MAX_DEPTH = 64  # nesting levels; a rule file needs a handful, and PyYAML recurses per level


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that builds `_Map`/`_Seq` carrying line numbers, and rejects duplicate keys.

    Absurd input is a marked error (a line number), never a Python exception: nesting deeper
    than MAX_DEPTH (PyYAML's composer and constructor recurse per level: 1000 levels raised
    RecursionError), and scalars that YAML's resolver accepts but Python cannot build (an
    integer of 5000 digits, a date like 2026-13-45).
    """

    _depth = 0

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _DuplicateKey(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_map(loader: _LineLoader, node: yaml.MappingNode):
    m = _Map()
    m.line = node.start_mark.line + 1
    yield m
    explicit = sum(1 for k, _v in node.value if k.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)
    # flatten_mapping puts keys merged in with `<<: *anchor` first; the mapping's own keys may
    # override those, but a key written twice in the mapping itself is an error.
    merged = len(node.value) - explicit
    own: set = set()
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise _DuplicateKey(None, None, f"unhashable key {key!r}", key_node.start_mark) from None
        if index >= merged:
            if key in own:
                raise _DuplicateKey(
                    None, None, f"duplicate key {key!r} (first on line {m.lines[key]})", key_node.start_mark
                )
            own.add(key)
        m[key] = loader.construct_object(value_node, deep=True)
        m.lines[key] = key_node.start_mark.line + 1


def _construct_seq(loader: _LineLoader, node: yaml.SequenceNode):
    s = _Seq()
    s.line = node.start_mark.line + 1
    yield s
    for child in node.value:
        s.append(loader.construct_object(child, deep=True))
        s.lines.append(child.start_mark.line + 1)


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _marked(tag: str, what: str) -> None:
    """Make the scalar constructor of `tag` report a value Python cannot build at its line."""
    base = _LineLoader.yaml_constructors[tag]

    def construct(loader: _LineLoader, node: yaml.Node) -> Any:
        try:
            return base(loader, node)
        except (ValueError, OverflowError) as exc:
            value = str(node.value)
            shown = value if len(value) <= 40 else f"{value[:20]}...({len(value)} characters)"
            reason = str(exc).split(";")[0]  # Python's int-digits message goes on with advice for programmers
            raise _DuplicateKey(None, None, f"{what} {shown!r} cannot be read: {reason}", node.start_mark) from None

    _LineLoader.add_constructor(tag, construct)


_marked("tag:yaml.org,2002:int", "the integer")
_marked("tag:yaml.org,2002:float", "the number")
_marked("tag:yaml.org,2002:timestamp", "the date")


# ---------------------------------------------------------------------------------------------
# Loading


MAX_RULE_FILE_BYTES = 2**20


class OverrideError(ConfigError):
    """A `--set RULE.OPTION=VALUE` is wrong. `str(err)` is `--set RULE.OPTION: what is wrong`."""

    def __init__(self, file: str | Path, target: str, message: str) -> None:
        super().__init__(file, None, target, message)

    def line_text(self) -> str:
        return f"--set {self.key}: {self.message}"


@dataclass(frozen=True)
class Override:
    """One `--set RULE.OPTION=VALUE`: `value` is parsed as YAML, as if written in the rule file."""

    rule: str
    option: str
    value: Any

    @classmethod
    def parse(cls, text: str) -> Override:
        """From `RULE.OPTION=VALUE` (a rule name may contain dots: the option is after the last one)."""
        target, eq, raw = text.partition("=")
        rule, dot, option = target.strip().rpartition(".")
        if not eq or not dot or not rule or not option:
            raise OverrideError(
                "--set", target.strip() or text, "expected RULE.OPTION=VALUE, e.g. camera-motion.threshold=0.0005"
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise OverrideError("--set", f"{rule}.{option}", f"not a valid value: {exc}") from None
        if value is None:
            raise OverrideError("--set", f"{rule}.{option}", "give a value after '='")
        return cls(rule, option, value)


def load_rules(path: str | Path, overrides: Sequence[Override] = ()) -> RuleSet:
    """Read and validate the rule file at `path`. Raises ConfigError (one line, file:line).

    `overrides` (`--set`) replace or add rule keys before validation, so they are checked
    exactly like the file; an error in one is an `OverrideError` (`--set RULE.OPTION: ...`)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            # Bounded: `--rules /dev/zero` (or a log given by mistake) must not read until memory runs out.
            data = f.read(MAX_RULE_FILE_BYTES + 1)
        if len(data) > MAX_RULE_FILE_BYTES:
            raise ConfigError(p, None, "(file)", f"larger than {MAX_RULE_FILE_BYTES // 2**20} MiB: not a rule file")
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(p, None, "(file)", f"cannot read: {reason}") from None
    return parse_rules(text, p, overrides)


_BRACKETS = re.compile(r"[\[\]{}\n]")


def _too_deep(text: str) -> int | None:
    """The line where `[`/`{` brackets nest deeper than MAX_DEPTH, or None.

    Checked before YAML sees the text: PyYAML's scanner keeps a possible key per open bracket
    and looks at all of them for every token, so 100,000 brackets on a line took minutes before
    the composer's own depth check (`_LineLoader`) could stop it. Quotes and comments are not
    told apart: an unbalanced run of 64 brackets inside a string is not a rule file either.
    """
    depth = 0
    line = 1
    for m in _BRACKETS.finditer(text):
        c = m.group()
        if c == "\n":
            line += 1
        elif c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line
        elif depth:
            depth -= 1
    return None


def parse_rules(text: str, path: str | Path = "<rules>", overrides: Sequence[Override] = ()) -> RuleSet:
    """Validate rule-file `text`; `path` is used in messages and to find `module:Class` plugins beside it."""
    p = Path(path)
    deep = _too_deep(text)
    if deep is not None:
        raise ConfigError(p, deep, "(yaml)", f"brackets nested more than {MAX_DEPTH} levels deep")
    try:
        doc = yaml.load(text, Loader=_LineLoader)
    except yaml.reader.ReaderError as exc:
        # A character YAML refuses (a NUL byte, another control character): give its line, not its offset.
        line = text.count("\n", 0, max(0, exc.position)) + 1
        what = "a NUL byte" if exc.character in ("\x00", 0) else f"the control character {exc.character!r}"
        raise ConfigError(p, line, "(yaml)", f"{what} is not allowed in a rule file (the file must be text)") from None
    except _DuplicateKey as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(p, line, "(yaml)", f"{exc.problem} (the file must be valid YAML)") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark is not None and exc.context and ("quoted scalar" in exc.context or "flow" in exc.context):
            mark = exc.context_mark  # an unclosed quote or bracket: point at where it was opened, not the file's end
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(p, line, "(yaml)", _yaml_for_people(problem, exc.context)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(p, None, "(yaml)", f"{exc} (the file must be valid YAML)") from None
    except RecursionError:  # a safety net: MAX_DEPTH stops nesting before this
        raise ConfigError(p, None, "(yaml)", "nested too deeply") from None
    if overrides:
        _apply_overrides(p, doc, overrides)
    try:
        return _Validator(p).ruleset(doc)
    except ConfigError as exc:
        # An error in an overridden value is the command line's, not the file's: say `--set RULE.OPTION`.
        for error in exc.errors:
            for o in overrides:
                if error.key in (f"rules[{o.rule}].{o.option}", f"{o.rule}.{o.option}"):
                    raise OverrideError(p, f"{o.rule}.{o.option}", error.message) from None
        raise
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        # A safety net: every check reports FILE:LINE itself; whatever slipped through is still one line.
        raise ConfigError(p, None, "(file)", f"cannot be checked: {type(exc).__name__}: {exc}") from None


def _apply_overrides(path: Path, doc: Any, overrides: Sequence[Override]) -> None:
    """Put each override into its rule's mapping in the parsed (not yet validated) document."""
    seq = doc.get("rules") if isinstance(doc, dict) else None
    items = [m for m in seq if isinstance(m, _Map)] if isinstance(seq, list) else []
    names = [m.get("name") for m in items]
    for o in overrides:
        target = f"{o.rule}.{o.option}"
        if o.option in ("name", "trigger"):
            raise OverrideError(path, target, f"the rule's {o.option} cannot be changed with --set (edit the file)")
        if o.rule not in names:
            known = ", ".join(str(n) for n in names) or "none"
            hint = suggest(o.rule, [str(n) for n in names])
            raise OverrideError(path, target, f"no rule named {o.rule!r}{hint} (rules: {known})")
        m = items[names.index(o.rule)]
        m[o.option] = _to_loaded(o.value)
        m.lines.setdefault(o.option, m.line or 0)


def _to_loaded(value: Any) -> Any:
    """A plain YAML value as the line-keeping loader would have produced it (lists as _Seq, dicts as _Map)."""
    if isinstance(value, list):
        seq = _Seq()
        seq.extend(_to_loaded(v) for v in value)
        seq.lines.extend(0 for _ in value)
        return seq
    if isinstance(value, dict):
        m = _Map()
        for k, v in value.items():
            m[k] = _to_loaded(v)
        return m
    return value


# PyYAML's messages name parser states ("expected <block end>, but found '<block mapping start>'");
# a lab user needs what to change. The parser's own words stay in brackets for a search engine.
_YAML_HINTS: tuple[tuple[str, str], ...] = (
    ("'\\t'", "tabs are not allowed for indentation; use spaces"),
    (
        "mapping values are not allowed here",
        "unexpected ':' (a missing ':' on the line above, indentation that does not line up, "
        "or a value containing ': ' that needs quotes)",
    ),
    ("expected <block end>", "the indentation does not line up with the lines above (indent with spaces, 2 per level)"),
    ("could not find expected ':'", "expected 'key: value' (is the ':' missing, or a line wrapped?)"),
    ("expected ',' or ']'", "a '[' list is not closed with ']' (or its items need commas)"),
    ("expected ',' or '}'", "a '{' mapping is not closed with '}' (or its items need commas)"),
    ("found unexpected end of stream", "a quote (' or \") is opened and never closed"),
    ("found undefined alias", "an alias (*name) refers to no anchor (&name) above it"),
)


def _yaml_for_people(problem: str, context: str | None) -> str:
    """A YAML syntax error in words a lab user can act on, keeping the parser's own words in brackets."""
    for needle, hint in _YAML_HINTS:
        if needle in problem or (context and needle in context):
            return f"{hint} [YAML: {problem}]"
    return f"{problem} (the file must be valid YAML)"


# Each section's keys, in the order `check` lists them: declared once in autorec.core.rulekeys.
_TOP_KEYS = rulekeys.keys("")
_OUTPUT_KEYS = rulekeys.keys("output")
_SEGMENT_KEYS = rulekeys.keys("segments")
_HOOK_KEYS = rulekeys.keys("hooks")
_ALERT_KEYS = rulekeys.keys("alerts")
_BUDGET_KEYS = rulekeys.keys("budget")
_FLAP_KEYS = rulekeys.keys("flap")
_RULE_KEYS = rulekeys.keys("rule")
_MQTT_KEYS = rulekeys.keys("mqtt")
_UPLOAD_KEYS = rulekeys.keys("upload")


_MODEL_DEFAULT: Any = object()  # `_Validator.take`: the declared key's model default


class _Validator:
    """Checks a whole document and collects every error it finds (`errors`), so `check` lists them
    all at once. A section or rule that cannot be read at all (not a mapping, no trigger) is reported
    once and skipped; a bad value is reported and replaced by its default so the rest is still
    checked; a rule with errors in its options is not constructed (its checks would only repeat them).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.errors: list[ConfigError] = []
        self.warnings: list[ConfigError] = []

    # -- helpers --------------------------------------------------------------------------

    def error(self, line: int | None, key: str, message: str) -> ConfigError:
        return ConfigError(self.path, line, key, message)

    def attempt(self, fn: Callable[[], Any], default: Any) -> Any:
        """`fn()`, or `default` after recording the ConfigError it raised."""
        try:
            return fn()
        except ConfigError as exc:
            self.errors.extend(exc.errors)
            return default

    def mapping(self, value: Any, line: int | None, key: str) -> _Map:
        if value is None:
            empty = _Map()
            empty.line = line
            return empty
        if not isinstance(value, _Map):
            raise self.error(line, key, f"expected a mapping of keys, got {show_written(value)}")
        return value

    def check_keys(self, m: _Map, allowed: tuple[str, ...], prefix: str) -> None:
        """Record every unknown key of `m` (all of them, not only the first)."""
        for key in m:
            if not isinstance(key, str) or key not in allowed:
                hint = suggest(str(key), allowed)
                self.errors.append(
                    self.error(
                        m.lines.get(key, m.line),
                        _join(prefix, str(key)),
                        f"unknown key{hint} (allowed: {', '.join(allowed)})",
                    )
                )

    def take(self, m: _Map, path: str, prefix: str, default: Any = _MODEL_DEFAULT) -> Any:
        """The value of the declared key `path` (`output.keep`, `rule.max_open`) in `m`, converted and
        checked by its declaration (`rulekeys.Key.convert`, with the loader's checker of its `format`);
        `default` (the model's, unless given) when absent or bad (the error is recorded)."""
        k = rulekeys.key(path)
        if default is _MODEL_DEFAULT:
            default = k.default_value()
        return self.convert(m, k.name, prefix, convert_key(k), default)

    def convert(self, m: _Map, key: str, prefix: str, conv: Callable[[Any], Any], default: Any) -> Any:
        """`conv(m[key])`; `default` when the key is absent, or when the value is bad (the error is recorded)."""
        if key not in m:
            return default
        try:
            return conv(m[key])
        except ValueError as exc:
            self.errors.append(self.error(m.lines.get(key, m.line), _join(prefix, key), str(exc)))
            return default

    # -- sections -------------------------------------------------------------------------

    def ruleset(self, doc: Any) -> RuleSet:
        if doc is None:
            raise self.error(1, "(file)", "the file is empty (expected a mapping with a `rules:` list)")
        top = self.mapping(doc, 1, "(file)")
        self.check_keys(top, _TOP_KEYS, "")
        source = self.take(top, "source", "")
        output = self.attempt(lambda: self.output(top), OutputSettings())
        segments = self.attempt(
            lambda: self.segments(self.mapping(top.get("segments"), top.lines.get("segments"), "segments"), None),
            SegmentPolicy(),
        )
        max_errors = self.take(top, "max_errors", "")
        grace = self.take(top, "shutdown_grace", "")
        heartbeat = self.take(top, "heartbeat", "")
        hooks = self.attempt(lambda: self.hooks(top), HookSettings())
        alerts = self.attempt(lambda: self.alerts(top), AlertSettings())
        mqtt = self.attempt(lambda: self.mqtt(top), MqttSettings())

        def budget_section() -> Budget:
            budget_map = self.mapping(top.get("budget"), top.lines.get("budget"), "budget")
            self.check_keys(budget_map, _BUDGET_KEYS, "budget")
            return self.budget(budget_map, "budget")

        budget = self.attempt(budget_section, Budget())
        rules = self.attempt(lambda: self.rules(top, segments, max_errors), [])
        upload = self.attempt(lambda: self.upload(top), None)
        if output.keep_until_uploaded and upload is None and "upload" not in top:
            m = top.get("output")
            self.errors.append(
                self.error(
                    m.lines.get("keep_until_uploaded") if isinstance(m, _Map) else None,
                    "output.keep_until_uploaded",
                    "needs an `upload:` section (where would segments be uploaded?)",
                )
            )
        # Checked with the real rule names so that the sample rendering is realistic.
        self.attempt(lambda: _check_name_template(self, output.name, top, [r.name for r in rules]), None)
        if self.errors:
            raise ConfigError.of(self.errors)
        return RuleSet(
            warnings=tuple(w.line_text() for w in sorted(self.warnings, key=lambda w: w.line or 0)),
            path=self.path,
            source=source,
            output=output,
            segments=segments,
            rules=rules,
            hooks=hooks,
            alerts=alerts,
            mqtt=mqtt,
            max_errors=max_errors,
            shutdown_grace=grace,
            heartbeat=heartbeat,
            budget=budget,
            upload=upload,
        )

    def upload(self, top: _Map) -> UploadSettings | None:
        if "upload" not in top or top["upload"] is None:
            return None
        m = self.mapping(top.get("upload"), top.lines.get("upload"), "upload")
        self.check_keys(m, _UPLOAD_KEYS, "upload")
        p = "upload"
        if "url" not in m:
            raise self.error(m.line, "upload.url", "missing (where to upload: s3://BUCKET/PREFIX)")
        return UploadSettings(
            url=self.take(m, "upload.url", p, "s3://missing"),
            endpoint=self.take(m, "upload.endpoint", p),
            rig=self.take(m, "upload.rig", p),
            max_rate=self.take(m, "upload.max_rate", p),
            retry_max=self.take(m, "upload.retry_max", p),
        )

    def output(self, top: _Map) -> OutputSettings:
        m = self.mapping(top.get("output"), top.lines.get("output"), "output")
        self.check_keys(m, _OUTPUT_KEYS, "output")
        p = "output"
        min_free, min_free_percent = self.take(m, "output.min_free", p) or (None, None)
        return OutputSettings(
            dir=Path(self.take(m, "output.dir", p)),
            name=self.take(m, "output.name", p),
            telemetry=self.take(m, "output.telemetry", p),
            video=self.take(m, "output.video", p),
            mcap=self.take(m, "output.mcap", p),
            min_free=min_free,
            min_free_percent=min_free_percent,
            keep=self.take(m, "output.keep", p),
            max_total=self.take(m, "output.max_total", p),
            fsync=self.take(m, "output.fsync", p),
            status_file=self.take(m, "output.status_file", p),
            queue_max_bytes=self.take(m, "output.queue_max_bytes", p),
            timelapse=self.take(m, "output.timelapse", p),
            keep_until_uploaded=self.take(m, "output.keep_until_uploaded", p),
        )

    def segments(self, m: _Map, base: SegmentPolicy | None, prefix: str = "segments") -> SegmentPolicy:
        if base is None:
            self.check_keys(m, _SEGMENT_KEYS, prefix)
            base = SegmentPolicy()
        for k in rulekeys.KEYS:  # the same warning in `segments:` as on a rule (`post_roll: 300` is 5 min)
            if k.section == "segments" and k.kind == "duration":  # pre_roll, post_roll, max_length
                self._bare_duration_warning(m, prefix, k.name, True)
        return SegmentPolicy(
            pre_roll=self.take(m, "segments.pre_roll", prefix, base.pre_roll),
            post_roll=self.take(m, "segments.post_roll", prefix, base.post_roll),
            max_length=self.take(m, "segments.max_length", prefix, base.max_length),
            pre_roll_max_bytes=self.memory_warning(
                m, prefix, self.take(m, "segments.pre_roll_max_bytes", prefix, base.pre_roll_max_bytes)
            ),
        )

    def memory_warning(self, m: _Map, prefix: str, n: int) -> int:
        """`n` (pre_roll_max_bytes), after a warning when the rule file set it above this machine's memory:
        not a limit of the key (the file may be meant for another machine), so not declared in rulekeys."""
        memory = physical_memory()
        if "pre_roll_max_bytes" in m and memory is not None and n > memory:
            self.warnings.append(
                self.error(
                    m.lines.get("pre_roll_max_bytes", m.line),
                    _join(prefix, "pre_roll_max_bytes"),
                    f"warning: {format_size(n)} is more than this machine's memory ({format_size(memory)}); "
                    "a long quiet pre-roll of camera frames could use it all",
                )
            )
        return n

    def budget(self, m: _Map, prefix: str) -> Budget:
        return Budget(
            max_segments_per_hour=self.take(m, "budget.max_segments_per_hour", prefix),
            max_bytes_per_hour=self.take(m, "budget.max_bytes_per_hour", prefix),
            max_share=self.take(m, "budget.max_share", prefix),
        )

    def flap(self, m: _Map, prefix: str) -> FlapPolicy:
        # Across keys, so in code rather than a key's declaration: the others say when a rule flaps.
        for key in ("flap_for", "flap_keep_fps"):
            if key in m and "flap_rate" not in m and "max_open" not in m:
                raise self.error(m.lines[key], f"{prefix}.{key}", "needs flap_rate or max_open (when is it flapping?)")
        return FlapPolicy(
            max_open=self.take(m, "rule.max_open", prefix),
            flap_rate=self.take(m, "rule.flap_rate", prefix),
            flap_for=self.take(m, "rule.flap_for", prefix),
            keep_fps=self.take(m, "rule.flap_keep_fps", prefix),
        )

    def hooks(self, top: _Map) -> HookSettings:
        m = self.mapping(top.get("hooks"), top.lines.get("hooks"), "hooks")
        self.check_keys(m, _HOOK_KEYS, "hooks")

        def command(event: str) -> list[Any] | None:
            return self.beside_rule_file(self.take(m, f"hooks.{event}", "hooks"))

        return HookSettings(
            on_segment_open=command("on_segment_open"),
            on_segment_close=command("on_segment_close"),
            on_alert=command("on_alert"),
            timeout=self.take(m, "hooks.timeout", "hooks"),
        )

    def beside_rule_file(self, commands: list[Any] | None) -> list[Any] | None:
        """Hook arguments that are relative paths of files in the rule file's folder, made absolute.

        A script shipped beside the rules (`hooks/archive.py`) then runs whatever folder autorec was
        started from; any other argument (`recordings/archive`, `{path}`, a program on PATH) is left
        as written (relative to where autorec runs, like output.dir)."""
        if commands is None:
            return None
        folder = Path(self.path).parent

        def fix(arg: str) -> str:
            if "{" in arg or Path(arg).is_absolute() or arg.startswith("-"):
                return arg
            try:
                beside = folder / Path(arg)
                return str(beside.absolute()) if beside.is_file() else arg
            except (OSError, ValueError):
                return arg

        if all(isinstance(c, list) for c in commands):
            return [[fix(a) for a in argv] for argv in commands]
        return [fix(a) for a in commands]

    def alerts(self, top: _Map) -> AlertSettings:
        m = self.mapping(top.get("alerts"), top.lines.get("alerts"), "alerts")
        self.check_keys(m, _ALERT_KEYS, "alerts")
        return AlertSettings(
            alert_after=self.take(m, "alerts.alert_after", "alerts"),
            camera_stall=self.take(m, "alerts.camera_stall", "alerts"),
        )

    def mqtt(self, top: _Map) -> MqttSettings:
        m = self.mapping(top.get("mqtt"), top.lines.get("mqtt"), "mqtt")
        self.check_keys(m, _MQTT_KEYS, "mqtt")
        if m and "url" not in m:
            raise self.error(
                top.lines.get("mqtt", m.line), "mqtt.url", "missing (the broker, e.g. mqtt://broker.lab:1883)"
            )
        return MqttSettings(
            url=self.take(m, "mqtt.url", "mqtt"),
            topic=self.take(m, "mqtt.topic", "mqtt"),
            status_every=self.take(m, "mqtt.status_every", "mqtt"),
            max_queued=self.take(m, "mqtt.max_queued", "mqtt"),
            ca_file=self.take(m, "mqtt.ca_file", "mqtt"),
        )

    def rules(self, top: _Map, segments: SegmentPolicy, max_errors: int) -> list[Rule]:
        if "rules" not in top:
            raise self.error(top.line, "rules", "missing (a list of rules, each with a name and a trigger)")
        seq = top["rules"]
        line = top.lines["rules"]
        if not isinstance(seq, _Seq) or not seq:
            raise self.error(line, "rules", f"expected a non-empty list of rules, got {show_written(seq)}")
        seen: dict[str, int] = {}
        out = []
        for i, item in enumerate(seq):
            item_line = seq.lines[i]
            rule = self.attempt(
                lambda item=item, i=i, item_line=item_line: self.rule(
                    self.mapping(item, item_line, f"rules[{i}]"), i, segments, max_errors
                ),
                None,
            )
            # Duplicates are found by the name as written, so a rule with errors still claims its name.
            name = item.get("name") if isinstance(item, _Map) else None
            if isinstance(name, str) and name in seen:
                self.errors.append(
                    self.error(item.line, f"rules[{name}].name", f"duplicate rule name (first on line {seen[name]})")
                )
                continue
            if isinstance(name, str):
                seen[name] = item.line or 0
            if rule is not None:
                out.append(rule)
        return out

    def _rule_keys(self, m: _Map, prefix: str, segments: SegmentPolicy, max_errors: int) -> dict[str, Any]:
        """A rule's own keys (not its trigger's options), as `Rule` fields: segments, max_errors,
        near-miss settings, budget and flap control. All are checked, whatever else is wrong."""
        rule_segments = self.segments(m, segments, prefix)
        return {
            "segments": rule_segments,
            "max_errors": self.take(m, "rule.max_errors", prefix, max_errors),
            "near_miss": self.take(m, "rule.near_miss", prefix),
            "near_miss_clip": self.take(m, "rule.near_miss_clip", prefix),
            "budget": self.budget(m, prefix),
            "flap": self.attempt(lambda: self.flap(m, prefix), FlapPolicy()),
        }

    def _bare_duration_warning(self, m: _Map, prefix: str, key: str, is_duration: bool) -> None:
        """A bare number of 100 or more for a duration: say it was read as seconds (`settle: 200` is
        200 s, not the 200 ms that was probably meant)."""
        value = m.get(key)
        if is_duration and isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 100:
            self.warnings.append(
                self.error(
                    m.lines.get(key, m.line),
                    _join(prefix, key),
                    f"warning: {value:g} is read as {value:g} s (a bare number is seconds); "
                    f"write {value:g}ms for milliseconds, or {value:g}s to say seconds",
                )
            )

    def rule(self, m: _Map, index: int, segments: SegmentPolicy, max_errors: int) -> Rule | None:
        """The validated rule, or None when it has errors (recorded, or raised when nothing more can be checked)."""
        errors_before = len(self.errors)
        from autorec.triggers import registry

        if not m:
            raise self.error(m.line, f"rules[{index}]", "empty rule (needs name and trigger)")
        if "name" not in m:
            raise self.error(m.line, f"rules[{index}].name", "missing (a unique name like drops-moved)")
        name = self.take(m, "rule.name", f"rules[{index}]", None)
        prefix = f"rules[{name if name is not None else index}]"
        if "trigger" not in m:
            known = ", ".join(registry.known_names())
            raise self.error(m.line, f"{prefix}.trigger", f"missing (one of: {known}; or module:Class)")
        trig_line = m.lines["trigger"]
        trigger_name = m["trigger"]
        if not isinstance(trigger_name, str) or not trigger_name:
            raise self.error(
                trig_line, f"{prefix}.trigger", f"expected a trigger name, got {show_written(trigger_name)}"
            )
        try:
            cls = registry.resolve(trigger_name, search_dir=self.path.parent)
        except registry.TriggerLookupError as exc:
            # The rule's own keys are still checked (a bad post_roll is not hidden behind the trigger);
            # its options cannot be, without the trigger that declares them.
            self.errors.append(self.error(trig_line, f"{prefix}.trigger", str(exc)))
            self._rule_keys(m, prefix, segments, max_errors)
            return None
        option_names = tuple(o.name for o in cls.options)
        clash = sorted(set(option_names) & set(_RULE_KEYS))
        if clash:
            raise self.error(
                trig_line,
                f"{prefix}.trigger",
                f"trigger {trigger_name} declares option(s) {', '.join(clash)}, which are reserved rule keys",
            )
        options_from = len(self.errors)  # the errors before are the name's, not the options'
        self.check_keys(m, (*_RULE_KEYS, *option_names), prefix)
        options: dict[str, Any] = {}
        for opt in cls.options:
            if opt.name in m:
                options[opt.name] = _plain_data(self.convert(m, opt.name, prefix, opt.coerce, None))
                if opt.type == "path" and options[opt.name]:
                    # relative to the rule file, not to wherever autorec happens to be started
                    options[opt.name] = str(self.path.parent / Path(options[opt.name]).expanduser())
                self._bare_duration_warning(m, prefix, opt.name, opt.type == "duration")
            elif opt.required:
                self.errors.append(
                    self.error(m.line, f"{prefix}.{opt.name}", f"missing required option ({opt.describe()})")
                )
        option_errors = len(self.errors) > options_from
        rule_keys = self._rule_keys(m, prefix, segments, max_errors)
        if option_errors:
            return None  # constructing it would only report the same errors again, less clearly
        # Constructed even when a rule key (not an option) or the name is wrong: the trigger's own
        # checks (a misspelt field path) are reported in the same pass, not after the rest is fixed.
        if len(self.errors) > errors_before:
            try:
                cls(name if name is not None else f"rule{index}", **options)
            except Exception as exc:
                key, message = _split_option_error(exc, option_names)
                line = m.lines.get(key, m.line) if key else m.line
                self.errors.append(self.error(line, f"{prefix}.{key}" if key else prefix, message))
            return None
        # Construct once now so the trigger's own checks (field paths, option combinations) run
        # before anything starts. Any exception from a plugin's constructor is a config error.
        try:
            instance = cls(name, **options)
        except Exception as exc:
            key, message = _split_option_error(exc, option_names)
            line = m.lines.get(key, m.line) if key else m.line
            raise self.error(line, f"{prefix}.{key}" if key else prefix, message) from None
        kinds = getattr(instance, "kinds", None)
        if isinstance(kinds, str) or (kinds is not None and not hasattr(kinds, "__iter__")):
            raise self.error(
                trig_line,
                f"{prefix}.trigger",
                f"trigger {trigger_name} has kinds={kinds!r}; expected None or a set like frozenset({{'image'}})",
            )
        if kinds is not None:
            bad = sorted(str(k) for k in kinds if k not in KINDS)
            if bad:
                raise self.error(
                    trig_line,
                    f"{prefix}.trigger",
                    f"trigger {trigger_name} wants unknown kind(s) {', '.join(bad)} (kinds: {', '.join(KINDS)})",
                )
        return Rule(
            name=name,
            trigger=cls,
            trigger_name=trigger_name,
            options=options,
            line=m.line,
            **rule_keys,
        )


def physical_memory() -> int | None:
    """This machine's physical memory in bytes, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _split_option_error(exc: Exception, option_names: tuple[str, ...]) -> tuple[str | None, str]:
    """(option, message) from a trigger constructor's exception `OPTION: message`, else (None, message)."""
    text = str(exc) or type(exc).__name__
    head, sep, rest = text.partition(":")
    if sep and head.strip() in option_names:
        return head.strip(), rest.strip()
    if not isinstance(exc, ValueError):
        text = f"the trigger failed to start: {type(exc).__name__}: {text}"
    return None, text


def _plain_data(value: Any) -> Any:
    """`value` with the loader's line-carrying containers turned into plain dicts and lists."""
    if isinstance(value, dict):
        return {k: _plain_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_data(v) for v in value]
    return value


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


# ---------------------------------------------------------------------------------------------
# Values: each key is converted and checked by its declaration (`rulekeys.Key.convert`); the
# syntaxes the services own are checked here, one checker per `Key.format`. Each raises
# ValueError("what is wrong (what is allowed)").


def convert_key(k: rulekeys.Key) -> Callable[[Any], Any]:
    """The converter of key `k`: its declaration's, with the checker of its `format` in place of the kind's parsing."""
    if k.format is None:
        return k.convert
    check = FORMATS[k.format]
    return lambda value: k.convert(value, lambda v: check(k, v))


def _source(k: rulekeys.Key, value: Any) -> str:
    text = k.parse(value)  # the declared pattern: ws:// or wss://
    try:
        _ = urllib.parse.urlsplit(text).port  # a port above 65535 would only fail when `run` connects
    except ValueError as exc:
        raise ValueError(f"{exc} in {show_written(value)}") from None
    return text


def _mqtt_url(_k: rulekeys.Key, value: Any) -> str:
    parse_url(value)
    return value.strip()


def upload_url(value: Any) -> str:
    """`upload.url` / `--upload-url`: s3://BUCKET/PREFIX."""
    from autorec.io.objectstore import StoreLocation

    StoreLocation.parse(value)
    return value


def upload_endpoint(value: Any) -> str:
    """`upload.endpoint` / `--upload-endpoint`: http(s)://HOST[:PORT], without credentials."""
    from autorec.io.objectstore import check_endpoint

    return check_endpoint(value)


def rig_name(value: Any) -> str:
    """`upload.rig` / `--rig`: the rig's name in the store's keys."""
    from autorec.rig import check_rig_name

    if not isinstance(value, str):
        raise ValueError(f"expected a rig name, got {show_written(value)}")
    return check_rig_name(value)


def parse_rate(value: Any) -> int:
    """`--max-rate` on the command line: as `upload.max_rate` in a rule file."""
    return rulekeys.key("upload.max_rate").convert(value)


def _min_free(_k: rulekeys.Key, value: Any) -> tuple[int | None, float | None]:
    """(`min_free`, `min_free_percent`) of OutputSettings, as written. `MinFree.parse` checks it (its
    limits, a percentage below 100, are the rule model's: the disk floor parses the same text)."""
    floor = MinFree.parse(value)
    return (None, floor.fraction * 100) if floor.fraction else (floor.bytes, None)


def _hook_commands(k: rulekeys.Key, value: Any) -> list[Any]:
    """Hook commands are checked by `autorec.services.hooks.validate_commands`, the one contract
    for what a hook may be (argv lists, known placeholders for that hook); the value
    keeps the user's shape (one argv list or a list of them), every item a string."""
    from autorec.services.hooks import validate_commands  # hooks imports nothing from here

    argvs = [list(argv) for argv in validate_commands(k.name, value)]
    return argvs if all(isinstance(c, list) for c in value) else argvs[0]


FORMATS: dict[str, Callable[[rulekeys.Key, Any], Any]] = {
    "websocket": _source,
    "disk-floor": _min_free,
    "hook": _hook_commands,
    "mqtt-url": _mqtt_url,
    "mqtt-topic": lambda _k, value: check_topic(value),
    "s3-url": lambda _k, value: upload_url(value),
    "http-url": lambda _k, value: upload_endpoint(value),
    "rig-name": lambda _k, value: rig_name(value),
}


def _check_placeholders(text: str, fields: tuple[str, ...]) -> list[tuple[str, str]]:
    """The (field, spec) pairs in a format string; ValueError unless each is a plain allowed name."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"bad placeholder in {text!r}: {exc} (write {{{{ and }}}} for literal braces)") from None
    out = []
    allowed = ", ".join("{" + f + "}" for f in fields)
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in fields:
            raise ValueError(f"unknown placeholder {{{name}}} in {text!r}{suggest(name, fields)} (allowed: {allowed})")
        if conversion:
            raise ValueError(f"placeholder {{{name}!{conversion}}} in {text!r}: conversions are not allowed")
        if spec and ("{" in spec or "}" in spec):
            raise ValueError(f"placeholder {{{name}}} in {text!r}: nested placeholders are not allowed")
        if spec and name != "start":  # {start:...} is strftime; the others are Python format specs
            check_format_width(name, spec)
        out.append((name, spec or ""))
    return out


# ---------------------------------------------------------------------------------------------
# Segment names


def _check_name_template(v: _Validator, template: str, top: _Map, rule_names: list[str]) -> None:
    out = top.get("output") if isinstance(top.get("output"), _Map) else None
    line = out.lines.get("name", out.line) if out is not None else top.line
    try:
        fields = _check_placeholders(template, NAME_FIELDS)
    except ValueError as exc:
        raise v.error(line, "output.name", str(exc)) from None
    names = {f for f, _ in fields}
    if not names & {"start", "seq"}:
        raise v.error(line, "output.name", "must contain {start} or {seq}, or every segment gets the same name")
    # Render with a sample time whose every field is two-digit-or-more, and check the raw output.
    try:
        sample = render_raw(template, 1_700_000_000.123456, rule_names, 12)
    except (ValueError, TypeError) as exc:
        raise v.error(line, "output.name", f"cannot render: {exc}") from None
    if UNSAFE.search(sample) or sample.strip() in ("", ".", ".."):
        raise v.error(
            line,
            "output.name",
            f"renders as {sample!r}, which is not a plain file name (no '/', '\\' or control characters: "
            "segments are written directly into output.dir)",
        )
    if sample.startswith("."):
        raise v.error(line, "output.name", f"renders as {sample!r}: a name starting with '.' would be hidden")
