"""What a batch export command (`video`, `export`) prints while it works through many logs.

Contract: `fail(message)` prints `autorec CMD: message` on stderr at once and keeps it for the
summary; `say(line)` prints a per-log line on stdout (nothing with `quiet`), above the progress
bar when there is one; `start_bar(total, ...)` shows a tqdm bar on stderr only when stderr is a
terminal and not `quiet`; `summary(parts)` prints `autorec CMD: parts, N failed` (on stderr when
something failed) and each failure again. Usable as a context manager that closes the bar.
"""

from __future__ import annotations

import sys
from typing import Any


class BatchConsole:
    """See the module docstring."""

    def __init__(self, command: str, quiet: bool) -> None:
        self.command = command
        self.quiet = quiet
        self.failures: list[str] = []
        self.bar: Any = None

    def fail(self, message: str) -> None:
        self.failures.append(message)
        print(f"autorec {self.command}: {message}", file=sys.stderr, flush=True)

    def start_bar(self, total: int, **options: Any) -> None:
        if self.quiet or not sys.stderr.isatty():
            return
        from tqdm import tqdm

        self.bar = tqdm(total=total, dynamic_ncols=True, file=sys.stderr, **options)

    def describe(self, name: str) -> None:
        if self.bar is not None:
            self.bar.set_description(name)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def say(self, line: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def summary(self, parts: list[str]) -> None:
        line = f"autorec {self.command}: {', '.join([*parts, f'{len(self.failures)} failed'])}"
        print(line, file=sys.stderr if self.failures else sys.stdout, flush=True)
        for failure in self.failures:
            print(f"  failed: {failure}", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> BatchConsole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
