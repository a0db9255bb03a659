"""The web UI's range export: one job at a time, in its own thread, with progress a browser can poll.

`RangeJobs.start(segments, start, end)` begins `autorec.media.rangeexport.export_range`
into `DIR/exports/` in a daemon thread and returns at once; `state()` is what
`/api/export` shows (idle, running with a fraction, done with the files, or
failed with a one-line reason). `files()` lists what `exports/` holds, each
a regular file (never a link) that `/exports/NAME` may serve.

Contracts:
- One at a time: `start` while a job runs raises `JobBusy`; nothing queues
  (a browser that wants another span asks again when this one is done).
- The event loop never waits: `start` spawns a thread and returns; the
  thread only writes `exports/` and this object's fields (plain assignments,
  read by the loop as whole values).
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time as _time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autorec.media.rangeexport import RangeError, export_range
from autorec.outdir import EXPORTS_DIR

log = logging.getLogger(__name__)

EXPORT_SUFFIXES = (".bin", ".mp4")


class JobBusy(Exception):
    """A range export is already running."""


class RangeJobs:
    """See the module docstring."""

    def __init__(self, directory: Path) -> None:
        self.out_dir = directory / EXPORTS_DIR
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._state: dict[str, Any] = {"state": "idle"}
        self.started = self.failed = 0

    def state(self) -> dict[str, Any]:
        return dict(self._state)

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, segments: Sequence[Any], start: float, end: float) -> dict[str, Any]:
        with self._lock:
            if self.busy():
                raise JobBusy("an export is already running: wait for it to finish")
            self.started += 1
            self._state = {"state": "running", "from": start, "to": end, "progress": 0.0, "step": "starting"}
            self._thread = threading.Thread(
                target=self._run, args=(list(segments), start, end), name="autorec-range-export", daemon=True
            )
            self._thread.start()
            return dict(self._state)

    def _run(self, segments: list[Any], start: float, end: float) -> None:
        began = _time.monotonic()

        def progress(fraction: float, what: str) -> None:
            self._state = dict(self._state, progress=round(fraction, 3), step=what)

        try:
            result = export_range(segments, start, end, self.out_dir, progress)
        except RangeError as exc:
            self.failed += 1
            self._state = {"state": "failed", "from": start, "to": end, "error": str(exc)}
            log.warning("range export failed: %s", exc)
            return
        except Exception as exc:  # a bug costs this export, never the server
            self.failed += 1
            log.exception("range export failed")
            self._state = {"state": "failed", "from": start, "to": end, "error": f"export failed: {exc}"}
            return
        files = [result.log.name] + ([result.video.name] if result.video is not None else [])
        self._state = {
            "state": "done",
            "from": start,
            "to": end,
            "progress": 1.0,
            "files": files,
            "records": result.records,
            "frames": result.frames,
            "segments": result.segments,
            "seconds": round(_time.monotonic() - began, 2),
            "video_problem": result.video_problem,
        }
        log.info("range export done: %s (%.1f s)", ", ".join(files), _time.monotonic() - began)

    def open_file(self, name: str) -> int | None:
        """A read-only descriptor of `exports/NAME` if it is one of ours (a plain name with an export
        suffix, a regular file, not a link); None otherwise."""
        if os.path.basename(name) != name or not name.startswith("range-") or not name.endswith(EXPORT_SUFFIXES):
            return None
        try:
            fd = os.open(self.out_dir / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return fd

    def files(self) -> list[dict[str, Any]]:
        """The finished exports, newest first: `{name, bytes}`."""
        try:
            entries = list(os.scandir(self.out_dir))
        except OSError:
            return []
        out = []
        for e in entries:
            if e.name.startswith("range-") and e.name.endswith(EXPORT_SUFFIXES) and e.is_file(follow_symlinks=False):
                st = e.stat(follow_symlinks=False)
                out.append({"name": e.name, "bytes": st.st_size, "mtime": st.st_mtime})
        out.sort(key=lambda f: (-f["mtime"], f["name"]))
        return out
