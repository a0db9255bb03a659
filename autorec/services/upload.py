"""Uploads an output directory to S3-compatible object storage, in the background (rule-file `upload:`).

Contract:
- `Uploader(out, settings)` is a segment-writer observer: `segment_closed` queues the segment's
  sidecar and log (in that order) and returns at once; `video_exported(path)` queues an export.
  One worker thread uploads (`start()`); recording never waits for it.
- The queue survives restarts: at start the worker lists what the directory holds (the index's
  segments, their sidecars and exports, the daily timelapse logs) and queues what the state file
  (`autorec.io.uploadstate`) does not record as uploaded in its present size and time. A
  multipart upload a killed process left behind is aborted before its file is uploaded again.
- Every file is uploaded with its SHA-256 and confirmed (`ObjectStore.upload`); only then is it
  recorded as uploaded, and only then does `confirmed(files)` say so (retention's
  `keep_until_uploaded`). `catalogue_delay` seconds after a segment or a video (once for a
  burst), and at `close()`, the day's catalogue is rewritten
  (`PREFIX/rig=NAME/date=DAY/segments.parquet`).
- The journal and the status file change: they are uploaded as a snapshot every `sync_every`
  seconds (status: `status_every`) when changed, and at `close()`. A day's timelapse log is
  uploaded once the day is over, and as it stands at `close()` (it grows all day).
- A failure is retried with exponential backoff (1 s doubling up to `settings.retry_max`); the
  failed file stays first in the queue. Each new kind of failure is logged once (one line, no
  secret); a recovery is logged too. Wrong credentials or a missing bucket are retried at the
  longest interval (someone may fix them while recording goes on).
- `close(grace)` queues the final snapshots, lets the queue drain for up to `grace` seconds (a file
  waiting for its retry is tried at once; the wait ends once two attempts failed: a store that
  does not work must not hold up a stop),
  then stops (an upload in flight is cancelled; its multipart upload is aborted). What is left
  is uploaded by the next run or by `autorec push DIR`.
- The rig's name belongs to one recorder (machine and output directory), recorded in
  `PREFIX/rig=NAME/rig.json` at the first upload; another recorder using the same name gets one
  clear error and uploads nothing (its catalogues would overwrite the owner's).
- `push(progress)` does the same in the calling thread and returns, for `autorec push`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autorec.core.timelapse import PREFIX as TIMELAPSE_PREFIX
from autorec.io.objectstore import PART_SIZE, ObjectStore, StoreError, StoreLocation, file_sha256
from autorec.io.storelayout import (
    catalogue_key,
    day_of_daily_file,
    file_key,
    rig_prefix,
    status_key,
    utc_day,
)
from autorec.io.uploadstate import UploadState
from autorec.io.writer import SegmentObserver
from autorec.outdir import EXPORT_SUFFIXES, INDEX_NAME, JOURNAL_NAME, STATUS_NAME
from autorec.rig import default_rig_name
from autorec.units import format_size

log = logging.getLogger(__name__)

MAX_SNAPSHOT = 256 << 20  # a growing file is read into memory to upload a consistent snapshot
RIG_CLAIM_NAME = "rig.json"


def machine_id() -> str:
    """This machine's systemd/D-Bus id (stable across reboots and renames), else its host name."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text:
            return text
    return socket.gethostname()


@dataclass(frozen=True)
class FileJob:
    """One thing to upload: a file (relative to the output directory) or a day's catalogue."""

    file: str
    key: str
    day: str | None = None
    segment: dict[str, Any] | None = None  # the index line, for a segment's log
    sidecar_of: str | None = None  # the log this sidecar belongs to
    video_of: str | None = None  # the log this export belongs to
    growing: bool = False  # may change after upload: uploaded as a snapshot, again when changed
    catalogue: bool = False  # rewrite `day`'s catalogue (file is "")
    check: bool = False  # check the bucket and the credentials

    @property
    def ident(self) -> str:
        return f"catalogue:{self.day}" if self.catalogue else ("check:" if self.check else self.file)


class Uploader(SegmentObserver):
    """Background uploads of one output directory. See the module docstring."""

    def __init__(
        self,
        out: Path,
        settings: Any,  # autorec.core.ruleset.UploadSettings
        *,
        fsync: bool = True,
        status_file: str | None = STATUS_NAME,
        on_uploaded: Callable[[], None] | None = None,
        sync_every: float = 600.0,
        status_every: float = 60.0,
        catalogue_delay: float = 30.0,
        rig: str | None = None,  # the run's rig name (`run --rig`), when `settings.rig` is not set
    ) -> None:
        self.out = Path(out)
        self.settings = settings
        self.location = StoreLocation.parse(settings.url)
        self.rig = settings.rig or rig or default_rig_name()
        self.store = ObjectStore(self.location, settings.endpoint, settings.max_rate)
        self.retry_max = float(settings.retry_max)
        self.fsync = fsync
        self.status_file = status_file
        self.on_uploaded = on_uploaded
        self.sync_every, self.status_every = sync_every, status_every
        self.catalogue_delay = catalogue_delay
        self._catalogue_at = math.inf  # when the catalogues of days with new segments are due
        self.state: UploadState | None = None
        # counters (plain ints: read from other threads)
        self.uploaded = 0
        self.uploaded_bytes = 0
        self.failed = 0  # failed attempts
        self.last_error: str | None = None
        self._queue: deque[FileJob] = deque()
        self._queued: set[str] = set()
        self._busy = False
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._kick = threading.Event()  # ends a backoff wait early (close, stop)
        self._thread: threading.Thread | None = None
        self._next_sync = 0.0
        self._next_status = 0.0

    def describe(self) -> str:
        return f"{self.store.describe()} as rig {self.rig}"

    # -- caller side (writer thread, services) -------------------------------------------------

    def start(self) -> Uploader:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="autorec-upload", daemon=True)
            self._thread.start()
        return self

    def segment_closed(self, segment) -> None:
        entry = dict(segment.summary)
        entry.setdefault("path", segment.path.name)
        entry.setdefault("sidecar", segment.sidecar.name)
        self._put(self._segment_jobs(entry, videos=False))

    def video_exported(self, path: Path) -> None:
        """An export of a segment (video, MCAP) was written (ExportQueue's `on_done`)."""
        job = self._video_job(Path(path))
        if job is not None:
            self._put([job])

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + (1 if self._busy else 0)

    def wait_idle(self, timeout: float, give_up_on_failure: bool = False) -> bool:
        """Wait until nothing is queued or running; False on timeout (or, with `give_up_on_failure`,
        once two attempts failed: the store is not working, waiting longer would only hold up a stop)."""
        deadline = time.monotonic() + timeout
        failed = self.failed
        with self._cond:
            while self._queue or self._busy or self.state is None or self._catalogue_at <= time.monotonic():
                left = deadline - time.monotonic()
                if left <= 0 or (self._thread is not None and not self._thread.is_alive()):
                    return False
                if give_up_on_failure and self.failed >= failed + 2:  # one more try, and its retry
                    return False
                self._cond.wait(min(left, 0.1))
            return True

    def close(self, grace: float = 10.0) -> bool:
        """Final snapshots, drain for up to `grace` s (less when the store fails meanwhile or was failing),
        stop. True when nothing was left."""
        if self._thread is None:
            return True
        self._put(self._growing_jobs(final=True))
        self.catalogue_delay = 0.0
        self._catalogue_at = 0.0  # the catalogues after the last files
        self._kick.set()  # retry now rather than after the backoff: the stop waits for that attempt
        drained = self.wait_idle(grace, give_up_on_failure=True)
        self._stop.set()
        self._kick.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(10)
        left = self.pending
        if left:
            log.warning(
                "upload: %d file(s) not uploaded yet; the next run or `autorec push %s` uploads them", left, self.out
            )
        return drained and not left

    def confirmed(self, files: Iterable[Path]) -> bool:
        """True when every file (a segment's log, sidecar, exports) is in the store as it is on disk."""
        state = self.state
        if state is None:
            return False
        for f in files:
            if f.name.endswith(".partial"):
                continue  # an export a crash cut: never uploaded, never kept for it
            try:
                st = f.stat()
            except OSError:
                continue
            if not state.uploaded(self._relative(f), st):
                return False
        return True

    def counters(self) -> dict[str, int]:
        return {
            "uploads_pending": self.pending,
            "uploads_failed": self.failed,
            "uploads_done": self.uploaded,
            "upload_bytes": self.uploaded_bytes,
        }

    # -- jobs ------------------------------------------------------------------------------------

    def _relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.out))
        except ValueError:
            return str(path)

    def _key(self, day: str, name: str) -> str:
        return file_key(self.location.prefix, self.rig, day, name)

    def _segment_jobs(self, entry: dict[str, Any], videos: bool) -> list[FileJob]:
        path, start = entry.get("path"), entry.get("start")
        if not isinstance(path, str) or isinstance(start, bool) or not isinstance(start, (int, float)):
            return []
        log_path = self.out / path
        rel = self._relative(log_path)
        day = utc_day(start)
        jobs = []
        side = entry.get("sidecar")
        if isinstance(side, str) and side:
            side_path = self.out / side
            jobs.append(FileJob(self._relative(side_path), self._key(day, side_path.name), day, sidecar_of=rel))
        jobs.append(FileJob(rel, self._key(day, log_path.name), day, segment=entry))
        if videos:
            for suffix in EXPORT_SUFFIXES:  # videos and MCAP
                v = log_path.with_suffix(suffix)
                if v.is_file():
                    jobs.append(FileJob(self._relative(v), self._key(day, v.name), day, video_of=rel))
        return jobs

    def _video_job(self, video: Path) -> FileJob | None:
        """The job for an export of a segment: its day is its segment's (from the state, else the sidecar)."""
        log_path = video.with_suffix(".bin")
        rel = self._relative(log_path)
        day = None
        if self.state is not None and rel in self.state.done:
            day = self.state.done[rel].get("day")
        if day is None:
            try:
                start = json.loads(log_path.with_suffix(".json").read_text()).get("start")
                day = utc_day(start)
            except (OSError, ValueError, TypeError, AttributeError):
                return None
        return FileJob(self._relative(video), self._key(day, video.name), day, video_of=rel)

    def _growing_jobs(self, final: bool) -> list[FileJob]:
        """Snapshots of the files that change: journal and today's timelapse (and past days' timelapse
        logs, which no longer change), and the status file."""
        jobs = []
        today = utc_day(time.time())
        timelapses = sorted(p for p in self.out.glob(f"{TIMELAPSE_PREFIX}*.bin") if p.is_file())
        for i, p in enumerate(timelapses):
            day = day_of_daily_file(p.name)
            newest = i == len(timelapses) - 1
            # Today's grows all day (tens of MB): uploaded at the end of a run, not every sync.
            if day is not None and (final or not newest or day < today):
                jobs.append(FileJob(p.name, self._key(day, p.name), day, growing=newest))
        if (self.out / JOURNAL_NAME).is_file():
            jobs.append(FileJob(JOURNAL_NAME, self._key(today, JOURNAL_NAME), today, growing=True))
        if final or self.status_file:
            jobs += self._status_jobs()
        return jobs

    def _status_jobs(self) -> list[FileJob]:
        if self.status_file and (self.out / self.status_file).is_file():
            return [FileJob(self.status_file, status_key(self.location.prefix, self.rig), None, growing=True)]
        return []

    def directory_jobs(self) -> list[FileJob]:
        """Everything the directory holds that belongs in the store (uploaded or not)."""
        jobs: list[FileJob] = []
        try:
            lines = (self.out / INDEX_NAME).read_text(errors="replace").splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                jobs += self._segment_jobs(entry, videos=True)
        jobs += self._growing_jobs(final=True)
        return jobs

    def _todo(self, jobs: Iterable[FileJob]) -> list[FileJob]:
        """`jobs` minus what the state records as uploaded, plus catalogues of days not up to date."""
        assert self.state is not None
        out = []
        for job in jobs:
            try:
                st = (self.out / job.file).stat()
            except OSError:
                continue
            if not self.state.uploaded(job.file, st):
                out.append(job)
        out += [
            FileJob("", catalogue_key(self.location.prefix, self.rig, d), d, catalogue=True)
            for d in self.state.dirty_days()
        ]
        return out

    def _put(self, jobs: Iterable[FileJob], front: bool = False) -> None:
        with self._cond:
            new = [j for j in jobs if j.ident not in self._queued]
            for j in new:
                self._queued.add(j.ident)
            if front:
                self._queue.extendleft(reversed(new))
            else:
                self._queue.extend(new)
            self._cond.notify_all()

    # -- doing ---------------------------------------------------------------------------------

    def do(self, job: FileJob, progress: Callable[[int], None] | None = None) -> int:
        """Upload one job now, in this thread. Bytes uploaded (0: nothing to do). StoreError, OSError."""
        assert self.state is not None
        if job.check:
            self.store.check_bucket()
            self._claim_rig()
            return 0
        if job.catalogue:
            return self._catalogue(job.day)  # type: ignore[arg-type]
        path = self.out / job.file
        try:
            st = path.stat()
        except FileNotFoundError:
            log.info("upload: %s is gone (deleted before it was uploaded)", job.file)
            return 0
        if self.state.uploaded(job.file, st):
            return 0
        source: Path | bytes
        if job.growing:  # appended to (or replaced) meanwhile: upload the bytes it holds now
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                data = f.read(min(st.st_size, MAX_SNAPSHOT))
            source, size = data, len(data)
            sha = _sha256(data)
        else:
            sha, size = file_sha256(path, self._stop)
            source = path
        if job.file in self.state.begun:
            aborted = self.store.abort_unfinished(job.key)
            if aborted:
                log.info(
                    "upload: aborted %d unfinished multipart upload(s) of %s left by a stopped run", aborted, job.key
                )
        if size >= PART_SIZE:  # a multipart upload: a kill leaves it unfinished, to abort next time
            self.state.record({"op": "begin", "file": job.file, "key": job.key, "size": size})
        began = time.monotonic()
        self.store.upload(source, job.key, sha, size, progress=progress, cancel=self._stop)
        record: dict[str, Any] = {
            "op": "done",
            "file": job.file,
            "key": job.key,
            "size": size,
            "mtime_ns": st.st_mtime_ns if size == st.st_size else None,
            "sha256": sha,
            "day": job.day,
        }
        if job.segment is not None:
            record["segment"] = job.segment
        if job.sidecar_of:
            record["sidecar_of"] = job.sidecar_of
        if job.video_of:
            record["video_of"] = job.video_of
        self.state.record(record)
        self.uploaded += 1
        self.uploaded_bytes += size
        seconds = time.monotonic() - began
        level = logging.INFO if (job.segment is not None or job.video_of) else logging.DEBUG
        log.log(level, "upload: %s -> %s (%s in %.1f s)", job.file, job.key, format_size(size), seconds)
        if job.segment is not None or job.video_of:
            # The day's catalogue is rewritten a little later: once for a burst of segments.
            self._catalogue_at = min(self._catalogue_at, time.monotonic() + self.catalogue_delay)
        if self.on_uploaded is not None:
            try:
                self.on_uploaded()
            except Exception:
                log.exception("upload: on_uploaded callback failed")
        return size

    def _claim_rig(self) -> None:
        """Make sure no other recorder uploads under this rig's name (ten Pis all called `raspberrypi`
        would overwrite each other's catalogues): `rig=NAME/rig.json` names the machine and the
        directory that own the name. StoreError('rig_taken') when another one does."""
        key = f"{rig_prefix(self.location.prefix, self.rig)}/{RIG_CLAIM_NAME}"
        me = {"machine": machine_id(), "host": socket.gethostname(), "directory": str(self.out.resolve())}
        try:
            owner = json.loads(self.store.get_bytes(key))
        except StoreError as exc:
            if exc.kind != "missing":
                raise
            self.store.put_bytes(key, json.dumps(me).encode(), content_type="application/json")
            return
        except ValueError:
            owner = {}
        if (owner.get("machine"), owner.get("directory")) != (me["machine"], me["directory"]):
            raise StoreError(
                "rig_taken",
                f"rig name {self.rig!r} is already used in {self.location} by {owner.get('host')}:"
                f"{owner.get('directory')}; give this rig its own name (upload.rig or --rig), or delete "
                f"{key} if that recorder is gone",
            )

    def _catalogue(self, day: str) -> int:
        from autorec.io.catalogue import to_parquet

        assert self.state is not None
        entries = self.state.catalogue_entries(day)
        data = to_parquet(entries)
        key = catalogue_key(self.location.prefix, self.rig, day)
        self.store.put_bytes(key, data)
        self.state.record({"op": "catalogue", "day": day, "key": key, "rows": len(entries)})
        log.debug("upload: catalogue %s (%d segment(s))", key, len(entries))
        return len(data)

    def _failure(self, job: FileJob, exc: StoreError) -> None:
        self.failed += 1
        message = f"upload: {exc}"
        if message != self.last_error:
            log.error("%s", message) if exc.kind != "unreachable" else log.warning(
                "%s (recording goes on; retrying)", message
            )
            self.last_error = message
        else:
            log.debug("%s", message)

    def _recovered(self) -> None:
        if self.last_error is not None:
            log.info("upload: %s works again; %d file(s) queued", self.store.describe(), self.pending)
            self.last_error = None

    # -- worker thread -------------------------------------------------------------------------

    def load_state(self) -> UploadState:
        state = UploadState.load(self.out, fsync=self.fsync)
        with self._cond:
            self.state = state
            self._cond.notify_all()
        return state

    def _run(self) -> None:
        try:
            self._work()
        finally:
            try:
                self.store.close()
            except Exception:  # the transfer threads end with the process anyway
                log.debug("upload: closing the transfer manager failed", exc_info=True)

    def _work(self) -> None:
        # Imported here, once, at the start of the run: the first segment's upload and catalogue
        # then cost only their own work (boto3 and pyarrow take ~0.5 CPU s to import).
        import boto3  # noqa: F401
        import pyarrow.parquet  # noqa: F401

        try:
            self.load_state()
        except OSError as exc:
            log.error("upload: cannot read %s: %s (uploads are off for this run)", self.out, exc.strerror or exc)
            return
        self._put([FileJob("", "", check=True), *self._todo(self.directory_jobs())], front=True)
        now = time.monotonic()
        self._next_sync, self._next_status = now + self.sync_every, now + self.status_every
        delay = 0.0
        while not self._stop.is_set():
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    now = time.monotonic()
                    wake = min(self._next_sync, self._next_status, self._catalogue_at)
                    if now >= wake:
                        break
                    self._cond.wait(wake - now)
                if self._stop.is_set():
                    return
                job = self._queue.popleft() if self._queue else None
                self._busy = job is not None
                if job is not None:
                    # From now on a new job for the same file is queued again: a file that changed
                    # after this one read it (the journal's last line) must be uploaded again.
                    self._queued.discard(job.ident)
            if job is None:
                self._periodic()
                continue
            try:
                self.do(job)
            except StoreError as exc:
                if self._stop.is_set():
                    self._done(job, requeue=True)
                    return
                self._failure(job, exc)
                self._done(job, requeue=True)
                delay = self.retry_max if exc.permanent else min(self.retry_max, max(1.0, delay * 2))
                self._kick.wait(delay)
                self._kick.clear()
                continue
            except OSError as exc:  # the local file cannot be read: nothing a retry fixes soon
                self.failed += 1
                log.error("upload: cannot read %s: %s (skipped)", job.file, exc.strerror or exc)
            except Exception:  # the worker must survive anything
                self.failed += 1
                log.exception("upload: %s failed", job.file or job.key)
            else:
                delay = 0.0
                self._recovered()
            self._done(job, requeue=False)

    def _done(self, job: FileJob, requeue: bool) -> None:
        with self._cond:
            self._busy = False
            if requeue and job.ident not in self._queued:  # else a newer job for it is queued already
                self._queued.add(job.ident)
                self._queue.appendleft(job)
            self._cond.notify_all()

    def _periodic(self) -> None:
        now = time.monotonic()
        if now >= self._catalogue_at and self.state is not None:
            days = self.state.dirty_days()
            self._put([FileJob("", catalogue_key(self.location.prefix, self.rig, d), d, catalogue=True) for d in days])
            self._catalogue_at = math.inf  # after the jobs are queued: wait_idle never sees neither
        if now >= self._next_sync:
            self._next_sync = now + self.sync_every
            self._put(self._growing_jobs(final=False))
        if now >= self._next_status:
            self._next_status = now + self.status_every
            self._put(self._status_jobs())

    # -- push (foreground) -----------------------------------------------------------------------

    def push(self, progress_factory: Callable[[int], Any] | None = None, attempts: int = 5) -> list[str]:
        """Upload what is not uploaded yet, in this thread. The files left (empty: all done).
        StoreError at once for wrong credentials or a missing bucket."""
        self.load_state()
        self.store.check_bucket()
        self._claim_rig()
        jobs = self._todo(self.directory_jobs())
        sizes = [self._size(j) for j in jobs]
        bar = progress_factory(sum(sizes)) if progress_factory is not None else None
        left: list[str] = []
        try:
            for job in [j for j in jobs if not j.catalogue]:
                if not self._push_one(job, bar, attempts):
                    left.append(job.file)
            for day in self.state.dirty_days():  # once per day, after its files
                job = FileJob("", catalogue_key(self.location.prefix, self.rig, day), day, catalogue=True)
                if not self._push_one(job, None, attempts):
                    left.append(job.key)
        finally:
            if bar is not None:
                bar.close()
            self.store.close()
        with self._cond:
            self._queue.clear()
            self._queued.clear()
        return left

    def _push_one(self, job: FileJob, bar: Any, attempts: int) -> bool:
        """One job with up to `attempts` tries; False when it failed. StoreError for a permanent failure."""
        for attempt in range(attempts):
            try:
                self.do(job, progress=bar.update if bar is not None else None)
                return True
            except StoreError as exc:
                self.failed += 1
                if exc.permanent:
                    raise
                if attempt == attempts - 1:
                    log.error("upload: %s", exc)
                    return False
                log.warning("upload: %s (retrying)", exc)
                time.sleep(min(self.retry_max, 2.0**attempt))
            except OSError as exc:
                log.error("upload: cannot read %s: %s (skipped)", job.file, exc.strerror or exc)
                return False
        return False

    def _size(self, job: FileJob) -> int:
        try:
            return 0 if job.catalogue else (self.out / job.file).stat().st_size
        except OSError:
            return 0


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
