"""Backtests: a rule set run over a log as fast as possible (`autorec run --log LOG`).

`backtest(ruleset, path, out, dry_run=..., jobs=...)` drives the sans-I/O pipeline from a
`FileSource` (decoding the motion trigger's frames ahead on `jobs` threads, `autorec.runs.predecode`)
into either the dry run's sink (each segment printed as it closes, a progress bar on a terminal,
then the total and the score distributions) or a blocking `SegmentWriter` plus the score track's
files. Offline nothing is lost by waiting for the disk, so the writer blocks instead of dropping.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from autorec.core.ruleset import RuleSet

log = logging.getLogger(__name__)

BACKTEST_QUEUE_BYTES = 32_000_000  # a small queue is enough offline: a big one only holds memory


def backtest(ruleset: RuleSet, path: Path, out: Path, *, dry_run: bool, jobs: int | None = None) -> int:
    """Run `ruleset` over the log at `path` as fast as possible: print the segments (`dry_run`) or write
    them into `out` (the caller holds its instance lock). Returns the exit code (1: the log cannot be read
    or is not a log)."""
    from autorec.core.dryrun import DryRun
    from autorec.core.pipeline import Pipeline
    from autorec.io.writer import SegmentWriter
    from autorec.runs.dispatch import Dispatcher
    from autorec.runs.filesource import FileSource, run_file, with_progress
    from autorec.runs.live import summary_line

    source = FileSource(path)
    bar = None
    if dry_run:
        # Each segment's line as soon as it is decided; a progress bar (bytes of the log) on a terminal.
        if sys.stderr.isatty():
            from tqdm import tqdm

            size = path.stat().st_size
            bar = tqdm(total=size, unit="B", unit_scale=True, dynamic_ncols=True, file=sys.stderr, leave=False)
            sink = DryRun(say=lambda line: bar.write(line, file=sys.stdout))
        else:
            sink = DryRun(out=sys.stdout)
    else:
        # Offline nothing is lost by waiting for the disk: the writer blocks instead of dropping,
        # and a small queue is enough (a big one would only hold memory while reading races ahead).
        sink = SegmentWriter(
            out,
            ruleset.output.name,
            fsync=ruleset.output.fsync,
            telemetry=False,
            queue_max_bytes=min(ruleset.output.queue_max_bytes, BACKTEST_QUEUE_BYTES),
            block=True,
        ).start()
    from autorec.io.scorelog import ScoreLog

    # A dry run sums the score track up on stdout; a backtest into a directory writes it there.
    score_log = None if dry_run else ScoreLog(out)
    core = Pipeline(ruleset, offline=True, telemetry=False, timelapse=False)
    dispatcher = Dispatcher(core, sink, score_sinks=[sink if score_log is None else score_log])
    from autorec.runs.predecode import default_jobs, predecoded

    source = predecoded(source, core.engine, jobs if jobs is not None else default_jobs())
    try:
        if bar is not None:  # the dry run's own bar, under which segment lines are printed
            run_file(dispatcher, source, lambda done: bar.update(done - bar.n))
        else:
            run_file(dispatcher, with_progress(source, sys.stderr.isatty(), "backtest"))
    except OSError as exc:
        print(f"autorec run: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        sink.close()
        if score_log is not None:
            score_log.close()
        return 1
    finally:
        if bar is not None:
            bar.close()
    sink.close()
    if score_log is not None:
        score_log.close()
    not_a_log = source.not_a_log()
    if not_a_log is not None:  # say so and fail, as `autorec info` does
        print(f"autorec run: {not_a_log}", file=sys.stderr)
        return 1
    source.warn_if_cut()
    if dispatcher.stats.rejected:
        log.warning("%s: %d record(s) that are not PurpleDropEvents skipped", path, dispatcher.stats.rejected)
    tl = core.timeline
    if tl.outliers or tl.steps:
        log.warning(
            "%s: %d damaged timestamp(s) kept at the time before them (outliers), %d clock step(s) followed",
            path,
            tl.outliers,
            tl.steps,
        )
    if isinstance(sink, DryRun):
        sink.report(source.bytes, sys.stdout)
        sink.report_scores(sys.stdout)
    else:
        print(
            summary_line("end of log", sink.stats.segments, sink.stats.bytes, dispatcher.stats.seen_bytes, out),
            flush=True,
        )
    return 0
