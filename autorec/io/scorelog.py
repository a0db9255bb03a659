"""Writing the score track and near-misses (the I/O edge of `autorec.core.scores`).

Files in the output directory, beside the telemetry log:
- `scores-YYYYMMDD.csv.gz`, one per UTC day of stream time: CSV with the header
  `time,rule,score,threshold`, one row per rule and second (`time` the whole
  epoch second, `score` the maximum in it, 4 significant digits). Written as a
  series of complete gzip members, one per flush (every `flush_interval` s):
  a crash loses at most the last interval and never leaves a file a reader
  chokes on; gzip readers (Python's `gzip`, pandas, numpy, `zcat`) read the
  members as one stream. `pandas.read_csv("scores-20261130.csv.gz")` or
  `numpy.genfromtxt(path, delimiter=",", names=True, dtype=None, encoding=None)`.
- `near-misses.jsonl`: one JSON object per near-miss (`NearMiss.as_dict`).

Contract: `score_rows(rows)` and `near_misses(items)` are called from the
pipeline's thread and only queue (never block on the disk); a background
thread writes. Errors (a full disk) are counted in `errors`, logged once per
distinct message, and never raise. `close()` writes what is queued and stops.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import logging
import os
import queue
import threading
from collections.abc import Iterable
from pathlib import Path

from autorec.core.scores import NearMiss, ScoreRow
from autorec.outdir import NEAR_MISSES_NAME, SCORES_PREFIX, SCORES_SUFFIX, daily_name

log = logging.getLogger(__name__)

HEADER = "time,rule,score,threshold\n"


def scores_name(second: float) -> str:
    day = _dt.datetime.fromtimestamp(second, tz=_dt.timezone.utc).strftime("%Y%m%d")
    return daily_name(SCORES_PREFIX, day, SCORES_SUFFIX)


class ScoreLog:
    """See the module docstring."""

    def __init__(self, directory: str | os.PathLike[str], flush_interval: float = 60.0) -> None:
        self.directory = Path(directory)
        self.flush_interval = flush_interval
        self.rows_written = 0
        self.near_misses_written = 0
        self.errors = 0
        self.last_error: str | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: dict[str, list[str]] = {}  # file name -> CSV lines not yet written
        self._thread = threading.Thread(target=self._run, name="autorec-scorelog", daemon=True)
        self._thread.start()

    # -- pipeline thread -----------------------------------------------------------------------
    def score_rows(self, rows: Iterable[ScoreRow]) -> None:
        rows = list(rows)
        if rows:
            self._queue.put(("rows", rows))

    def near_misses(self, items: Iterable[NearMiss]) -> None:
        items = list(items)
        if items:
            self._queue.put(("near", items))

    def close(self, timeout: float | None = 10.0) -> bool:
        self._queue.put(("stop", None))
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- writer thread -------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                kind, items = self._queue.get(timeout=self.flush_interval)
            except queue.Empty:
                self._flush()
                continue
            if kind == "stop":
                self._flush()
                return
            if kind == "rows":
                for r in items:
                    line = f"{r.second},{r.rule},{r.max:.4g},{r.threshold:.6g}\n"
                    self._pending.setdefault(scores_name(r.second), []).append(line)
            elif kind == "near":
                self._write_near(items)
            if sum(len(v) for v in self._pending.values()) >= 10_000:
                self._flush()

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        for name, lines in pending.items():
            path = self.directory / name
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                new = not path.exists() or path.stat().st_size == 0
                member = gzip.compress(((HEADER if new else "") + "".join(lines)).encode(), mtime=0)
                with open(path, "ab") as f:
                    f.write(member)
                self.rows_written += len(lines)
            except OSError as exc:
                self._failed(f"score track {path}: {exc.strerror or exc}")

    def _write_near(self, items: list[NearMiss]) -> None:
        path = self.directory / NEAR_MISSES_NAME
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                for nm in items:
                    f.write(json.dumps(nm.as_dict(), separators=(",", ":")) + "\n")
            self.near_misses_written += len(items)
        except OSError as exc:
            self._failed(f"near-misses {path}: {exc.strerror or exc}")

    def _failed(self, message: str) -> None:
        self.errors += 1
        if message != self.last_error:
            log.warning("%s", message)
        self.last_error = message
