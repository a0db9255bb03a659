"""`autorec tune RULE`: what a range of thresholds would have kept, from one pass over a log.

    autorec tune camera-motion --rules rules/motion.yaml --log night.bin --thresholds 0.0002,0.0003,0.0005
    autorec tune camera-motion --rules rules/motion.yaml --log night.bin --range 0.0001:0.001:10 --plot tune.png

Prints a table: threshold -> segments, kept bytes, kept fraction of the log. The rule's
trigger runs once (see `autorec.core.sweep`); each threshold is applied to its scores. Exit 2
for bad usage (a rule that cannot be swept, a bad threshold), 1 for an unreadable log.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="try a range of thresholds for one rule on a log, in one pass",
        description=(
            "Backtest one rule's threshold: the rule file's triggers run once over the log, and each "
            "threshold is applied to the rule's recorded scores through a pipeline of its own (budgets, "
            "flap control and near-miss clips included), as separate "
            "`run --log LOG --dry-run --set RULE.OPTION=VALUE` runs would."
        ),
    )
    p.add_argument("rule", help="the rule to tune (its name in the rule file)")
    p.add_argument("--rules", required=True, metavar="FILE", help="rule file (YAML)")
    p.add_argument("--log", required=True, metavar="LOG", help="the log to backtest on")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--thresholds", metavar="A,B,C", help="thresholds to try, comma-separated")
    which.add_argument("--range", dest="span", metavar="LO:HI:N", help="N thresholds evenly from LO to HI")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="RULE.OPTION=VALUE")
    p.add_argument("--plot", metavar="FILE.png", default=None, help="also plot the table (needs matplotlib)")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.set_defaults(func=run)


def parse_thresholds(thresholds: str | None, span: str | None) -> list[float]:
    """The thresholds to try; ValueError says what is wrong."""
    if thresholds is not None:
        try:
            values = [float(x) for x in thresholds.split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"--thresholds: expected numbers separated by commas, got {thresholds!r}") from None
        if not values:
            raise ValueError("--thresholds: give at least one number")
        return values
    assert span is not None
    parts = span.split(":")
    try:
        lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
        if len(parts) != 3:
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError(f"--range: expected LO:HI:N, e.g. 0.0001:0.001:10, got {span!r}") from None
    if n < 1 or n > 1000 or (n > 1 and hi <= lo):
        raise ValueError(f"--range: N must be 1-1000 and HI above LO, got {span!r}")
    return [lo] if n == 1 else [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def run(args: argparse.Namespace) -> int:
    from autorec.core.sweep import SweepError, sweep, sweep_option
    from autorec.rules import ConfigError, Override, load_rules
    from autorec.runs.filesource import FileSource, log_path_problem, with_progress
    from autorec.units import format_size

    try:
        overrides = [Override.parse(text) for text in args.overrides]
        ruleset = load_rules(args.rules, overrides)
    except ConfigError as exc:
        print(f"autorec tune: {exc}", file=sys.stderr)
        return 2
    try:
        thresholds = parse_thresholds(args.thresholds, args.span)
        option = sweep_option(ruleset, args.rule)
        # Each threshold is checked like `--set RULE.OPTION=VALUE` would be (range, type, other options).
        for th in thresholds:
            load_rules(args.rules, [*overrides, Override(args.rule, option, th)])
    except (ValueError, ConfigError) as exc:
        print(f"autorec tune: {exc}", file=sys.stderr)
        return 2
    path = Path(args.log)
    problem = log_path_problem(path)
    if problem is not None:
        print(f"autorec tune: --log: {problem}", file=sys.stderr)
        return 1
    source = FileSource(path)
    try:
        rows = sweep(ruleset, args.rule, thresholds, with_progress(source, sys.stderr.isatty(), "tune"))
    except OSError as exc:
        print(f"autorec tune: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except SweepError as exc:
        print(f"autorec tune: {exc}", file=sys.stderr)
        return 2
    not_a_log = source.not_a_log()
    if not_a_log is not None:
        print(f"autorec tune: {not_a_log}", file=sys.stderr)
        return 1
    source.warn_if_cut()
    print(f"{args.rule}.{option} on {path} ({format_size(source.bytes)}):")
    print(f"{'threshold':>12}  {'segments':>8}  {'kept':>10}  {'kept %':>7}")
    for r in rows:
        print(f"{r.threshold:>12.6g}  {r.segments:>8}  {format_size(r.kept_bytes):>10}  {100 * r.kept_fraction:>6.1f}%")
    if args.plot:
        return _plot(rows, f"{args.rule}.{option}", Path(args.plot))
    return 0


def _plot(rows, label: str, out: Path) -> int:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "autorec tune: --plot needs matplotlib, which is not installed (pip install matplotlib); "
            "the table above has the same figures",
            file=sys.stderr,
        )
        return 1
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [r.threshold for r in rows]
    ax.plot(xs, [100 * r.kept_fraction for r in rows], marker="o", label="kept %")
    ax.set_xlabel(label)
    ax.set_ylabel("kept % of the log")
    ax2 = ax.twinx()
    ax2.plot(xs, [r.segments for r in rows], marker="s", color="tab:orange", label="segments")
    ax2.set_ylabel("segments")
    fig.tight_layout()
    try:
        fig.savefig(out)
    except OSError as exc:
        print(f"autorec tune: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"plot: {out}")
    return 0
