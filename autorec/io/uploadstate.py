"""What this output directory has uploaded: a small append-only file (`uploads.jsonl`), so after a
crash or a restart the uploader knows what is in the store without listing the bucket.

One JSON line per event, fsynced before the event counts:
- `{"op": "begin", "file", "key", "size", "t"}` before a file's upload starts (a multipart upload a
  kill left behind under that key is aborted at the next start);
- `{"op": "done", "file", "key", "size", "mtime_ns", "sha256", "day", "t"}` once the store has
  confirmed the object (length and SHA-256); a segment's log also carries `segment` (its index
  line), which is what the day's catalogue is rebuilt from, even after retention deleted the
  local files;
- `{"op": "catalogue", "day", "key", "rows", "t"}` once a day's catalogue was written.

`file` is relative to the output directory. A line that cannot be read (a cut last line after a
power cut) is skipped and counted in `damaged`; the next append starts on a fresh line.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autorec.io.atomicfile import append_json_line
from autorec.outdir import UPLOAD_STATE_NAME

log = logging.getLogger(__name__)

STATE_NAME = UPLOAD_STATE_NAME


@dataclass
class UploadState:
    path: Path
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # file -> its latest done record
    begun: dict[str, dict[str, Any]] = field(default_factory=dict)  # file -> begin without a done after it
    catalogued: dict[str, int] = field(default_factory=dict)  # day -> sequence number of its last catalogue
    changed: dict[str, int] = field(default_factory=dict)  # day -> sequence number of its last segment/video
    damaged: int = 0
    fsync: bool = True
    _seq: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, directory: Path, fsync: bool = True) -> UploadState:
        state = cls(directory / STATE_NAME, fsync=fsync)
        try:
            data = state.path.read_bytes()
        except FileNotFoundError:
            return state
        for raw in data.splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                state.damaged += 1
                continue
            if not isinstance(entry, dict) or not isinstance(entry.get("op"), str):
                state.damaged += 1
                continue
            state._apply(entry)
        if data and not data.endswith(b"\n"):  # a cut line: the next record must start a line of its own
            with open(state.path, "ab") as f:
                f.write(b"\n")
        if state.damaged:
            log.warning("upload state %s: %d damaged line(s) skipped", state.path, state.damaged)
        return state

    def _apply(self, entry: dict[str, Any]) -> None:
        self._seq += 1
        op, file = entry.get("op"), entry.get("file")
        if op == "begin" and isinstance(file, str):
            self.begun[file] = entry
        elif op == "done" and isinstance(file, str):
            self.done[file] = entry
            self.begun.pop(file, None)
            day = entry.get("day")
            if isinstance(day, str) and (entry.get("segment") is not None or entry.get("video_of")):
                self.changed[day] = self._seq
        elif op == "catalogue" and isinstance(entry.get("day"), str):
            self.catalogued[entry["day"]] = self._seq

    def record(self, entry: dict[str, Any]) -> None:
        """Append `entry` (with a time stamp) durably, then apply it. OSError when the disk refuses."""
        entry = {**entry, "t": round(time.time(), 3)}
        with self._lock:
            append_json_line(self.path, entry, fsync=self.fsync)
            self._apply(entry)

    # -- questions -----------------------------------------------------------------------------

    def uploaded(self, file: str, stat: os.stat_result | None) -> bool:
        """True when `file` (relative) was uploaded as it is now (same size and modification time)."""
        rec = self.done.get(file)
        if rec is None or stat is None:
            return False
        return rec.get("size") == stat.st_size and rec.get("mtime_ns") == stat.st_mtime_ns

    def dirty_days(self) -> list[str]:
        """Days whose catalogue is older than their last uploaded segment or video."""
        return sorted(d for d, seq in self.changed.items() if self.catalogued.get(d, -1) < seq)

    def catalogue_entries(self, day: str) -> list[dict[str, Any]]:
        """The catalogue rows of `day`: each uploaded segment's index line plus where its files are."""
        videos: dict[str, list[str]] = {}
        sidecars: dict[str, str] = {}
        for rec in self.done.values():
            of = rec.get("video_of")
            if isinstance(of, str):
                videos.setdefault(of, []).append(rec["key"])
            of = rec.get("sidecar_of")
            if isinstance(of, str):
                sidecars[of] = rec["key"]
        rows = []
        for file, rec in self.done.items():
            seg = rec.get("segment")
            if rec.get("day") != day or not isinstance(seg, dict):
                continue
            rows.append(
                {
                    **seg,
                    "key": rec.get("key"),
                    "sidecar_key": sidecars.get(file),
                    "video_keys": sorted(videos.get(file, [])),
                    "sha256": rec.get("sha256"),
                    "uploaded": rec.get("t"),
                }
            )
        return rows
