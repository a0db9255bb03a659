"""`autorec check FILE...`: validate rule files and print what they would do.

Nothing is started and nothing is connected to. Exit 0 when every file is
valid, 2 when any is not (every error found is one line, `FILE:LINE: key: message`,
on stderr). Warnings (valid but probably not meant) go to stderr too and do not
change the exit code.

`--explain [KEY]` prints the rule-file schema in words (every key, or one: `output.keep`,
`rule.post_roll`, `motion.threshold`; a section or a trigger: its keys; `keep`: every key of that
name), `--schema` the same as a JSON Schema for editors; both are generated from the declarations
the loader checks with (`autorec.core.rulekeys`, the triggers' `Option`s), so they say what
`check FILE` accepts. An unknown KEY is one line with the key it probably meant, exit 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="validate rule files and summarise their rules",
        description="Validate rule files (every key, trigger and option) without starting anything.",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="rule file(s) (YAML)")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    p.add_argument(
        "--explain",
        nargs="?",
        const="",
        metavar="KEY",
        help="print every rule-file key and trigger option (kind, unit, default, limits, meaning), or only KEY "
        "(e.g. output.keep, rule.pre_roll, motion.threshold; a section or trigger: all its keys; a name alone, "
        "e.g. keep: every key of that name)",
    )
    p.add_argument(
        "--schema", action="store_true", help="print a JSON Schema (draft 2020-12) of a rule file, for editors"
    )
    p.set_defaults(func=run)


def _value(opt_type: str, value: Any) -> str:
    from autorec.units import format_duration, format_size

    if value is None:
        return "-"
    if opt_type == "duration":
        # Retention is written in days; format_duration stops at hours.
        return f"{value / 86400:g}d" if value >= 2 * 86400 else format_duration(value)
    if opt_type == "size":
        return format_size(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value('any', v)}" for k, v in value.items()) + "}"
    return str(value)


def summary(ruleset) -> list[str]:
    """Lines describing a loaded RuleSet for a lab user."""
    from autorec.units import format_duration, format_size

    out = ruleset.output
    seg = ruleset.segments
    n = len(ruleset.rules)
    lines = [f"{ruleset.path}: OK, {n} rule{'s' if n != 1 else ''}"]
    lines.append(f"  source    {ruleset.source or '(none: give --uri)'}")
    floor = (
        format_size(out.min_free)
        if out.min_free is not None
        else f"{out.min_free_percent:g}%"
        if out.min_free_percent is not None
        else "default (1GB or 5%)"
    )
    lines.append(
        f"  output    {out.dir}/{out.name}.bin  telemetry {'on' if out.telemetry else 'off'}, video {out.video}, "
        f"min_free {floor}, keep {_value('duration', out.keep)}, max_total {_value('size', out.max_total)}, "
        f"timelapse {_value('duration', out.timelapse) if out.timelapse else 'off'}"
    )
    lines.append(
        f"  segments  pre_roll {format_duration(seg.pre_roll)}, post_roll {format_duration(seg.post_roll)}, "
        f"max_length {format_duration(seg.max_length)}, pre_roll_max_bytes {format_size(seg.pre_roll_max_bytes)}"
    )
    hooks = ruleset.hooks
    for key in ("on_segment_open", "on_segment_close", "on_alert"):
        argv = getattr(hooks, key)
        if argv:
            lines.append(f"  hook      {key}: {' '.join(argv)}  (timeout {format_duration(hooks.timeout)})")
    mqtt = ruleset.mqtt
    if mqtt.url:
        lines.append(
            f"  mqtt      {mqtt.url} -> {mqtt.topic}/RIG/  (status every {format_duration(mqtt.status_every)}, "
            f"max_queued {mqtt.max_queued})"
        )
    width = max(len(r.name) for r in ruleset.rules)
    for rule in ruleset.rules:
        types = {o.name: o.type for o in rule.trigger.options}
        opts = " ".join(f"{k}={_value(types.get(k, 'any'), v)}" for k, v in rule.options.items())
        over = [
            f"{k} {format_duration(v) if k != 'pre_roll_max_bytes' else format_size(v)}"
            for k, v in vars(rule.segments).items()
            if v != getattr(seg, k)
        ]
        if rule.near_miss != type(rule).near_miss:  # the default (autorec.core.ruleset.Rule)
            over.append(f"near_miss {rule.near_miss:g}" if rule.near_miss else "near_miss off")
        if rule.near_miss_clip:
            over.append("near_miss_clip")
        text = f"  rule      {rule.name:<{width}}  {rule.trigger_name}"
        if opts:
            text += f"  {opts}"
        if over:
            text += f"  ({', '.join(over)})"
        limits = _limits(rule.budget, rule.flap)
        if limits:
            text += f"  [{limits}]"
        lines.append(text)
    overall = _limits(ruleset.budget, None)
    if overall:
        lines.append(f"  budget    {overall}")
    return lines


def _limits(budget: Any, flap: Any) -> str:
    """A rule's (or the overall) budget and flap settings, as `check` shows them; '' when none are set."""
    from autorec.units import format_duration, format_size

    parts = []
    if budget.max_segments_per_hour is not None:
        parts.append(f"max_segments_per_hour {budget.max_segments_per_hour}")
    if budget.max_bytes_per_hour is not None:
        parts.append(f"max_bytes_per_hour {format_size(budget.max_bytes_per_hour)}")
    if budget.max_share is not None:
        parts.append(f"max_share {budget.max_share * 100:g}%")
    if flap is not None and flap.active:
        if flap.flap_rate is not None:
            parts.append(f"flapping above {flap.flap_rate}/min for {format_duration(flap.flap_for)}")
        if flap.max_open is not None:
            parts.append(f"max_open {format_duration(flap.max_open)}")
        if flap.keep_fps is not None:
            parts.append(f"flap_keep_fps {flap.keep_fps:g}")
    return ", ".join(parts)


def _triggers() -> dict[str, Any]:
    """The triggers that load here (built-in, installed plugins), by name."""
    from autorec.triggers import registry

    return {info.name: info.cls for info in registry.available() if info.cls is not None}


def _option_lines(trigger: str, option: Any) -> list[str]:
    unit = {"duration": " (s)", "size": " (B)"}.get(option.type, "")
    default = (
        "required" if option.required else "none" if option.default is None else _value(option.type, option.default)
    )
    words = "; ".join(option.limits())
    lines = [f"{trigger}.{option.name}  {option.type}{unit}  default {default}" + (f"  [{words}]" if words else "")]
    if option.help:
        lines.append(f"    {option.help}")
    return lines


def _key_lines(k: Any, path: str | None = None) -> list[str]:
    unit = f" ({k.unit})" if k.unit else ""
    words = "; ".join(k.limits())
    lines = [f"{path or k.path}  {k.kind}{unit}  default {k.default()}" + (f"  [{words}]" if words else "")]
    lines.append(f"    {k.help}")
    return lines


def explain(key: str) -> list[str]:
    """The schema in words: every key and trigger option (`key` empty), or only `key`.

    `key` is a key's path (`output.keep`), a rule's key (`rule.post_roll`: every `segments`,
    `budget` and flap key may be set on a rule), or `TRIGGER.OPTION`; a section (`output`), `rule` or
    a trigger (`motion`) gives every key under it, and a key's own name without its section (`keep`,
    `post_roll`) every key of that name. ValueError (one line, with the closest known key) when it is
    none of them."""
    from autorec.core import rulekeys
    from autorec.triggers.fields import suggest

    triggers = _triggers()
    if not key:
        lines = []
        for section, title in rulekeys.SECTIONS:
            lines.append(f"## {title.replace('`', '')}")
            for k in rulekeys.KEYS:
                if k.section == section:
                    lines += _key_lines(k)
            lines.append("")
        for name, cls in sorted(triggers.items()):
            lines.append(f"## trigger {name}" + (f": {cls.description}" if cls.description else ""))
            for option in cls.options:
                lines += _option_lines(name, option)
            lines.append("")
        return lines[:-1]
    known: dict[str, list[str]] = {k.path: _key_lines(k) for k in rulekeys.KEYS}
    for k in rulekeys.KEYS:
        if k.section in rulekeys.RULE_ALSO and k.section != "flap":
            known[f"rule.{k.name}"] = [
                *_key_lines(k, f"rule.{k.name}"),
                f"    (a rule's own {k.path}: it overrides the top-level one for this rule)",
            ]
    for name, cls in triggers.items():
        for option in cls.options:
            known[f"{name}.{option.name}"] = _option_lines(name, option)
    # What a person types first is often the word in the file (`keep`) or the section (`output`).
    picked = [p for p in known if p == key or p.startswith(f"{key}.")]
    picked = picked or [p for p in known if p.rsplit(".", 1)[-1] == key]
    if not picked:
        names = list(known) if "." in key else sorted({p.rsplit(".", 1)[-1] for p in known})
        raise ValueError(f"unknown key {key!r}{suggest(key, names)} (`autorec check --explain` lists them all)")
    return [line for p in picked for line in known[p]]


def run(args: argparse.Namespace) -> int:
    from autorec.rules import ConfigError, load_rules

    if args.schema:
        import json

        from autorec.core.ruleschema import json_schema

        print(json.dumps(json_schema(_triggers()), indent=2), flush=True)
        return 0
    if args.explain is not None:
        try:
            print("\n".join(explain(args.explain)), flush=True)
        except ValueError as exc:
            print(f"autorec check --explain: {exc}", file=sys.stderr, flush=True)
            return 2
        return 0
    if not args.files:
        print("autorec check: give a rule file (or --explain, --schema)", file=sys.stderr, flush=True)
        return 2
    failed = 0
    for path in args.files:
        try:
            ruleset = load_rules(path)
        except ConfigError as exc:
            print(str(exc), file=sys.stderr, flush=True)  # every error in the file, one line each
            failed += 1
            continue
        for warning in ruleset.warnings:
            print(warning, file=sys.stderr, flush=True)
        if not args.quiet:
            print("\n".join(summary(ruleset)), flush=True)
    if failed and len(args.files) > 1:
        print(f"{failed} of {len(args.files)} rule files have errors", file=sys.stderr)
    return 2 if failed else 0
