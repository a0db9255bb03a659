"""autorec: records the interesting parts of a PurpleDrop event stream.

The stable surface (importable from `autorec` itself; everything else may move between versions):
- `EventRecorder`, `AsyncEventRecorder` (start/stop recording from a script) and the errors they raise
  (`RecorderError`, `RecorderConnectError`, `RecorderTimeout`, `RecorderDiskError`), see `autorec.io.recorder`.
- `LogReader`, `LogWriter` (upstream log files), see `autorec.io.logfile`.
- the Trigger API for plugins: `Trigger`, `Firing`, `Option`, `Score`, see `autorec.triggers.base`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from autorec.io.logfile import LogReader as LogReader
    from autorec.io.logfile import LogWriter as LogWriter
    from autorec.io.recorder import AsyncEventRecorder as AsyncEventRecorder
    from autorec.io.recorder import EventRecorder as EventRecorder
    from autorec.io.recorder import RecorderConnectError as RecorderConnectError
    from autorec.io.recorder import RecorderDiskError as RecorderDiskError
    from autorec.io.recorder import RecorderError as RecorderError
    from autorec.io.recorder import RecorderTimeout as RecorderTimeout
    from autorec.triggers.base import Firing as Firing
    from autorec.triggers.base import Option as Option
    from autorec.triggers.base import Score as Score
    from autorec.triggers.base import Trigger as Trigger

_LAZY = {
    "EventRecorder": "autorec.io.recorder",
    "AsyncEventRecorder": "autorec.io.recorder",
    # What they raise: a script catches them by these names (`except RecorderDiskError`).
    "RecorderError": "autorec.io.recorder",
    "RecorderConnectError": "autorec.io.recorder",
    "RecorderTimeout": "autorec.io.recorder",
    "RecorderDiskError": "autorec.io.recorder",
    "LogReader": "autorec.io.logfile",
    "LogWriter": "autorec.io.logfile",
    "Trigger": "autorec.triggers.base",
    "Firing": "autorec.triggers.base",
    "Option": "autorec.triggers.base",
    "Score": "autorec.triggers.base",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    # Lazy so that `import autorec` (and the CLI's start-up) stays cheap.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'autorec' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
