"""autorec: records the interesting parts of a PurpleDrop event stream.

Public API:
- `EventRecorder` (start/stop recording from a script), see `autorec.recorder`.
- `LogReader`, `LogWriter` (upstream log files), see `autorec.logfile`.
- the Trigger API for plugins, see `autorec.triggers.base`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from autorec.logfile import LogReader as LogReader
    from autorec.logfile import LogWriter as LogWriter
    from autorec.recorder import AsyncEventRecorder as AsyncEventRecorder
    from autorec.recorder import EventRecorder as EventRecorder

_LAZY = {
    "EventRecorder": "autorec.recorder",
    "AsyncEventRecorder": "autorec.recorder",
    "LogReader": "autorec.logfile",
    "LogWriter": "autorec.logfile",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    # Lazy so that `import autorec` (and the CLI's start-up) stays cheap.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'autorec' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
