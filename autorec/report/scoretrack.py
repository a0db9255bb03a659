"""The score track read back for plotting: `read_score_track(paths, since, until, max_points)`.

The track's format is `autorec.io.scorelog`'s (it writes it; `HEADER` is the one definition of its
columns). This reader streams the daily `scores-YYYYMMDD.csv.gz` files, skips damaged rows and
members (each problem named once), and reduces each rule's series to `max_points` (min/max per
bucket) so a night of scores plots in the report.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable


def read_score_track(
    paths: Iterable[str | os.PathLike[str]],
    since: float | None = None,
    until: float | None = None,
    max_points: int = 4000,
) -> tuple[dict[str, tuple[list[float], list[float], float | None]], list[str]]:
    """Score track files -> {rule: (times, per-second max scores, latest threshold)} and problems.

    Each rule's series is reduced to `max_points` (min and max per time bin, so a peak survives).
    A damaged file (a cut-off gzip member, a bad row) is read up to the damage and named in the
    problems; never raises for bad content.
    """
    import csv
    import zlib

    import numpy as np

    from autorec.report.sensorseries import reduce_minmax

    raw: dict[str, tuple[list[float], list[float]]] = {}
    thresholds: dict[str, float] = {}
    problems: list[str] = []
    for path in sorted(paths, key=os.fspath):
        try:
            with gzip.open(path, "rt", newline="") as f:
                reader = csv.reader(f)
                for number, row in enumerate(reader, 1):
                    if number == 1 and row[:1] == ["time"]:
                        continue
                    try:
                        t, rule, score, threshold = float(row[0]), row[1], float(row[2]), float(row[3])
                    except (ValueError, IndexError):
                        if row and row[0] == "time":
                            continue  # the header again (a later gzip member of a restarted run)
                        problems.append(f"{path}:{number}: not a score row; skipped")
                        continue
                    if (since is not None and t < since) or (until is not None and t > until):
                        continue
                    ts, vs = raw.setdefault(rule, ([], []))
                    ts.append(t)
                    vs.append(score)
                    thresholds[rule] = threshold
        except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as exc:
            problems.append(f"{path}: read up to a damaged part ({exc})")
    out: dict[str, tuple[list[float], list[float], float | None]] = {}
    for rule, (ts, vs) in raw.items():
        times, values = np.asarray(ts), np.asarray(vs)
        order = np.argsort(times, kind="stable")
        times, values = reduce_minmax(times[order], values[order], max_points)
        out[rule] = (times.tolist(), values.tolist(), thresholds.get(rule))
    return out, problems
