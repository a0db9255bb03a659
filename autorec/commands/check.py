"""`autorec check FILE...`: validate rule files and print what they would do.

Nothing is started and nothing is connected to. Exit 0 when every file is
valid, 2 when any is not (every error found is one line, `FILE:LINE: key: message`,
on stderr). Warnings (valid but probably not meant) go to stderr too and do not
change the exit code.
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
    p.add_argument("files", nargs="+", metavar="FILE", help="rule file(s) (YAML)")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")
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
        if rule.near_miss != 0.5:  # the default (autorec.rules.Rule)
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


def run(args: argparse.Namespace) -> int:
    from autorec.rules import ConfigError, load_rules

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
