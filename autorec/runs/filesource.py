"""A log file as a source, for backtesting rules on last night's data as fast as possible.

`FileSource(path)` yields the same `autorec.core.streamitems.Message` items as the live
websocket source, one per record, in file order and without any pacing:
`received` and `monotonic` are 0.0 (offline there is no arrival clock; the
pipeline runs its timeline on the events' own timestamps). Records that do not parse are yielded with `rejected`
set, as the live source does, so the pipeline counts them the same way.

After iteration, `truncated` / `corrupt` say why the log ended early (see
`autorec.io.logfile.LogReader`); `bytes` is the size of what was read. `not_a_log()` and
`warn_if_cut()` say it alike for every command that reads a log (`run --log`, `tune`, `calibrate`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from autorec import events
from autorec.core.streamitems import Message
from autorec.io.logfile import Corruption, LogReader, Truncation

if TYPE_CHECKING:
    from autorec.runs.dispatch import Dispatcher

log = logging.getLogger(__name__)


def log_path_problem(path: Path) -> str | None:
    """Why `path` cannot be opened as a log, for `--log: ...` (run, tune, calibrate); None when it is a file."""
    if path.is_dir():
        return f"{path} is a directory, not a log file (give one log, e.g. {path / 'NAME.bin'})"
    if not path.is_file():
        return f"no such log: {path}"
    return None


class FileSource:
    """Iterate a log's records as `Message`s. See the module docstring."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._reader = LogReader(self.path)
        self.records = 0
        self.rejected = 0

    @property
    def truncated(self) -> Truncation | None:
        return self._reader.truncated

    @property
    def corrupt(self) -> Corruption | None:
        return self._reader.corrupt

    @property
    def bytes(self) -> int:
        return self._reader.end_offset

    def not_a_log(self) -> str | None:
        """After iteration: why the file is no log at all (not one record read before a bad header: a
        JPEG, a text file), as a message for the command to fail with; None when it is a log."""
        if self.corrupt is not None and self.records == 0:
            return f"{self.path} is not an upstream log: {self.corrupt.reason}"
        return None

    def warn_if_cut(self) -> None:
        """After iteration: a WARNING line where a log cut off or damaged midway stopped being read."""
        if self.truncated is not None:
            log.warning(
                "%s ends inside a record at offset %d (cut off); read up to there", self.path, self.truncated.offset
            )
        if self.corrupt is not None and self.records:
            log.warning("%s: stopped at offset %d: %s", self.path, self.corrupt.offset, self.corrupt.reason)

    def __iter__(self) -> Iterator[Message]:
        decode, peek = events.decode, events.peek_kind
        for record in self._reader.records():
            self.records += 1
            payload = record.payload
            try:
                event = decode(payload)
            except events.DecodeError as exc:
                self.rejected += 1
                yield Message(payload, 0.0, 0.0, peek(payload), rejected=str(exc))
                continue
            # No receive times offline: the pipeline reads the event's own timestamp.
            yield Message(payload, 0.0, 0.0, event.WhichOneof("msg"), event=event)


def with_progress(source: FileSource, enabled: bool, desc: str = "backtest") -> Iterator[Message]:
    """`source`'s messages, with a progress bar (bytes of the log, on stderr) when `enabled`
    (a terminal): backtests of a night's camera log take minutes."""
    if not enabled:
        yield from source
        return
    import sys

    from tqdm import tqdm

    try:
        total = source.path.stat().st_size
    except OSError:
        total = None
    with tqdm(total=total, unit="B", unit_scale=True, desc=desc, dynamic_ncols=True, file=sys.stderr) as bar:
        pending = 0
        for msg in source:
            pending += 4 + len(msg.payload)
            if pending >= 4_000_000:  # updating per message would cost more than the bar is worth
                bar.update(pending)
                pending = 0
            yield msg
        bar.update(pending)


PROGRESS_EVERY = 2_000  # records between progress reports of run_file


def run_file(
    dispatcher: Dispatcher, source: FileSource | Iterable[Message], progress: Callable[[int], None] | None = None
) -> None:
    """Feed a whole log (a `FileSource`, or its messages) through `dispatcher` as fast as possible,
    then close the open segment.

    `progress(bytes_read)` is called every few thousand records (for a progress bar; a `FileSource` only).
    """
    handle = dispatcher.message
    if progress is None:
        for msg in source:
            handle(msg)
    else:
        for n, msg in enumerate(source, 1):
            handle(msg)
            if not n % PROGRESS_EVERY:
                progress(source.bytes)
        progress(source.bytes)
    dispatcher.finish()
