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
thread writes. Errors (a full disk) are counted in `errors`, logged at most
once a minute (with the count; the score track and the near-misses each on its
own, then "works again": `autorec.io.failurelog`), and never raise. `close()` writes what is
queued and stops.

Both files are appended through `autorec.io.atomicfile.append_bytes` (never
through a planted link, never into a FIFO; a member or line cut short by a
full disk is cut back). Before the first member a run appends to a day's
score track, the file is checked: a tail that is not a whole gzip member (a
crash mid-write, a disk that filled before this check existed) is cut off, so
gzip readers read every member before it and the ones after. A row whose
score is not a finite number is not written (`rows_skipped`).

Near-misses are thinned: at most `near_miss_per_hour` per rule and UTC hour
are written, the rest counted in `near_misses_thinned` (a threshold set just
above the noise must not fill the disk or the report).
"""

from __future__ import annotations

import datetime as _dt
import gzip
import logging
import math
import os
import queue
import threading
from collections.abc import Iterable
from pathlib import Path

from autorec.core.scores import NearMiss, ScoreRow
from autorec.io.atomicfile import append_bytes, dumps, open_nofollow
from autorec.io.boundedread import open_regular
from autorec.io.failurelog import FailureLog
from autorec.outdir import NEAR_MISSES_NAME, SCORES_PREFIX, SCORES_SUFFIX, daily_name

log = logging.getLogger(__name__)

HEADER = "time,rule,score,threshold\n"
NEAR_MISS_PER_HOUR = 60


def whole_members_length(path: str | os.PathLike[str]) -> tuple[int, int]:
    """`(length of the leading whole gzip members, file size)` of a score track (read in chunks)."""
    import zlib

    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        whole = offset = 0
        d = zlib.decompressobj(wbits=31)
        while True:
            chunk = f.read(1 << 16)
            if not chunk:
                return whole, size
            while chunk:
                try:
                    d.decompress(chunk)
                except zlib.error:
                    return whole, size
                if d.eof:
                    rest = d.unused_data
                    offset += len(chunk) - len(rest)
                    whole = offset
                    d = zlib.decompressobj(wbits=31)
                    chunk = rest
                else:
                    offset += len(chunk)
                    chunk = b""


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
        self.rows_skipped = 0
        self.near_miss_per_hour = NEAR_MISS_PER_HOUR
        self.near_misses_thinned = 0
        self.tails_cut = 0
        self._per_hour: dict[tuple[str, int], int] = {}
        self._checked: set[str] = set()  # score tracks whose tail this run has checked
        # each file fails and works again on its own; the messages quote the count of errors so far
        self._track_failures = FailureLog(log, count_unsaid=False)
        self._near_failures = FailureLog(log, count_unsaid=False)
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
                    if not (math.isfinite(r.max) and math.isfinite(r.threshold) and math.isfinite(r.second)):
                        self.rows_skipped += 1  # nothing writes NaN or infinity into the track
                        continue
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
                if name not in self._checked:
                    self._cut_damaged_tail(path)
                    self._checked.add(name)
                new = not path.exists() or path.stat().st_size == 0
                member = gzip.compress(((HEADER if new else "") + "".join(lines)).encode(), mtime=0)
                append_bytes(path, member)  # a member cut short by a full disk is cut back
                self.rows_written += len(lines)
            except OSError as exc:
                self._failed(self._track_failures, f"score track {path}: {exc.strerror or exc}")
            else:
                self._track_failures.worked("writing to %s works again (%d write error(s) so far)", path, self.errors)

    def _write_near(self, items: list[NearMiss]) -> None:
        path = self.directory / NEAR_MISSES_NAME
        lines = []
        for nm in items:
            hour = int(nm.start // 3600) if math.isfinite(nm.start) else -1
            seen = self._per_hour.get((nm.rule, hour), 0)
            if seen >= self.near_miss_per_hour:
                self.near_misses_thinned += 1
                continue
            self._per_hour[(nm.rule, hour)] = seen + 1
            lines.append(dumps(nm.as_dict(), separators=(",", ":")) + "\n")
        if len(self._per_hour) > 10_000:  # hours long gone: the counts of the current ones are what matter
            self._per_hour.clear()
        if not lines:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            append_bytes(path, "".join(lines).encode(), line_end=True)
            self.near_misses_written += len(lines)
        except OSError as exc:
            self._failed(self._near_failures, f"near-misses {path}: {exc.strerror or exc}")
        else:
            self._near_failures.worked("writing to %s works again (%d write error(s) so far)", path, self.errors)

    def _cut_damaged_tail(self, path: Path) -> None:
        """Cut a score track back to its last whole gzip member (see the module docstring)."""
        try:
            whole, size = whole_members_length(path)
        except FileNotFoundError:
            return
        if whole == size:
            return
        fd = open_nofollow(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, whole)
        finally:
            os.close(fd)
        self.tails_cut += 1
        log.warning("score track %s: cut %d bytes of a damaged last gzip member before appending", path, size - whole)

    def _failed(self, failures: FailureLog, message: str) -> None:
        self.errors += 1
        self.last_error = message
        failures.failed(f"{message} ({self.errors} write error(s) so far; repeats logged at most once a minute)")
