"""The score track read back for plotting: `read_score_track(paths, since, until, max_points)`.

The track's format is `autorec.io.scorelog`'s (it writes it; `HEADER` is the one definition of its
columns). This reader streams the daily `scores-YYYYMMDD.csv.gz` files, skips damaged rows and
members (each problem named once), and reduces each rule's series to `max_points` (min/max per
bucket) so a night of scores plots in the report.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

MAX_RULES = 32  # a night's rule file has a handful; more names are damage
MAX_ROWS = 4 * 86400 * 16  # rows kept over all files: days of seconds for a dozen rules
MAX_ROW = 4096  # bytes in one row (a rule name, three numbers)


def _rule_name(text: str) -> bool:
    return 0 < len(text) <= 200 and text.isprintable()


def read_score_track(
    paths: Iterable[str | os.PathLike[str]],
    since: float | None = None,
    until: float | None = None,
    max_points: int = 4000,
) -> tuple[dict[str, tuple[list[float], list[float], float | None]], list[str]]:
    """Score track files -> {rule: (times, per-second max scores, latest threshold)} and problems.

    Each rule's series is reduced to `max_points` (min and max per time bin, so a peak survives).
    A damaged file (a cut-off gzip member, a bad row) is read up to the damage and named in the
    problems (a bounded `Problems`); never raises for bad content. Rows are streamed with a length
    cap; a row with a time or score that is not a finite number, or a rule name that is not a short
    printable text, is skipped; at most MAX_RULES rules and MAX_ROWS rows are kept (the rest counted).
    """
    import math

    import numpy as np

    from autorec.io.boundedread import Problems, bounded_lines, gunzipped, open_regular
    from autorec.report.sensorseries import reduce_minmax

    raw: dict[str, tuple[list[float], list[float]]] = {}
    thresholds: dict[str, float] = {}
    problems: list[str] = Problems()
    kept = over = 0
    for path in sorted(paths, key=os.fspath):
        try:
            with open_regular(path) as f:
                gz, decoder = gunzipped(f)
                for number, line in bounded_lines(gz, MAX_ROW):
                    if line is None:
                        problems.append(f"{path}:{number}: row longer than {MAX_ROW} bytes; skipped")
                        continue
                    row = line.decode("utf-8", "replace").split(",")
                    if row[0] == "time":
                        continue  # the header (each restarted run's first member has one)
                    try:
                        t, rule, score, threshold = float(row[0]), row[1], float(row[2]), float(row[3])
                    except (ValueError, IndexError):
                        problems.append(f"{path}:{number}: not a score row; skipped")
                        continue
                    if not (math.isfinite(t) and math.isfinite(score) and _rule_name(rule)):
                        problems.append(f"{path}:{number}: not a score row (time, rule, score); skipped")
                        continue
                    if (since is not None and t < since) or (until is not None and t > until):
                        continue
                    series = raw.get(rule)
                    if series is None:
                        if len(raw) >= MAX_RULES:
                            problems.append(f"{path}:{number}: more than {MAX_RULES} rule names; {rule!r} skipped")
                            continue
                        series = raw[rule] = ([], [])
                    if kept >= MAX_ROWS:
                        over += 1
                        continue
                    kept += 1
                    series[0].append(t)
                    series[1].append(score)
                    if math.isfinite(threshold):
                        thresholds[rule] = threshold
                if decoder.damaged is not None:
                    problems.append(f"{path}: read up to a damaged part ({decoder.damaged})")
        except OSError as exc:
            problems.append(f"{path}: cannot read: {exc.strerror or exc}")
    if over:
        problems.append(f"score track: {over} row(s) beyond {MAX_ROWS} not read")
    out: dict[str, tuple[list[float], list[float], float | None]] = {}
    for rule, (ts, vs) in raw.items():
        times, values = np.asarray(ts), np.asarray(vs)
        order = np.argsort(times, kind="stable")
        times, values = reduce_minmax(times[order], values[order], max_points)
        out[rule] = (times.tolist(), values.tolist(), thresholds.get(rule))
    return out, problems
