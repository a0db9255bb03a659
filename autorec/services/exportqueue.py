"""Background export of closed segments: to video (rule-file option `output.video: h264|copy|off`) and
to MCAP (`output.mcap: true`).

Contract:
- `ExportQueue(mode, mcap=False)` with mode `h264`, `copy` or `off`. `submit(log_path)`
  returns at once and never raises: a video job (unless `off`) and an MCAP job (with `mcap`)
  are queued (unbounded; segments are few and small to describe). With neither it does nothing.
  MCAP jobs run `autorec export --mcap` the same way (attaching `rules`, the run's rule file).
- One worker thread runs the jobs in order, each in a child process
  (`autorec video -q LOG` in this interpreter) at lowered CPU priority (`nice`, default
  10) in its own session: encoding never holds the recorder's GIL, never
  competes with it at equal priority, and a crash in a codec cannot take the
  recorder down. Only one export runs at a time, so a Pi keeps a core free.
- A log with no camera frames (e.g. a segment of a camera-less rig) is
  skipped for video, not failed (its MCAP still holds its telemetry).
- `close(grace)`: no new jobs; waits up to `grace` seconds for the queue to
  drain; then kills the running export (its `.partial` file is removed, so no
  broken video is left) and drops the jobs still queued, logging each one.
  Returns True when every submitted job ran to its end.
- Outcomes are logged, kept in `outcomes`, counted (`exported`, `skipped`,
  `failed`, `dropped`), and passed to `on_done` (called from the worker
  thread; its exceptions are logged and ignored).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

# The child must import the autorec this process runs, whatever the working directory holds.
# `python -m autorec` puts the working directory first on sys.path, so a folder named `autorec`
# there (the clone's top folder, when autorec is installed editable and run from its parent)
# shadows the package. `-P` (safe path) would fix that but exists only from Python 3.11, and `-I`
# would also drop PYTHONPATH and user site-packages, where autorec or a plugin may live. So the
# child is started with `-c`, whose sys.path[0] is '' (the working directory), and removes that
# entry itself before importing autorec; the rest of sys.path is as `python -m` would set it.
CHILD_MAIN = (
    "import sys\n"
    "if sys.path and sys.path[0] == '':\n"
    "    del sys.path[0]\n"
    "from autorec.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)

ExportMode = Literal["h264", "copy", "off"]
EXPORT_MODES: tuple[str, ...] = ("h264", "copy", "off")


@dataclass(frozen=True)
class ExportOutcome:
    log: Path
    output: Path | None
    status: Literal["exported", "skipped", "failed", "dropped"]
    message: str
    seconds: float
    kind: Literal["video", "mcap"] = "video"


class ExportQueue:
    """Exports logs to video in a background worker that never delays the caller. See the module docstring."""

    def __init__(
        self,
        mode: ExportMode,
        *,
        out_dir: str | os.PathLike[str] | None = None,
        crf: int | None = None,  # None: `autorec video`'s default
        preset: str | None = None,
        nice: int = 10,
        job_timeout: float | None = None,
        on_done: Callable[[ExportOutcome], None] | None = None,
        mcap: bool = False,
        rules: str | os.PathLike[str] | None = None,
    ) -> None:
        if mode not in EXPORT_MODES:
            raise ValueError(f"output.video must be one of {', '.join(EXPORT_MODES)}, got {mode!r}")
        self.mode = mode
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.crf, self.preset, self.nice = crf, preset, nice
        self.job_timeout = job_timeout
        self.on_done = on_done
        self.mcap = mcap
        self.rules = Path(rules).absolute() if rules is not None else None  # the child may run elsewhere
        self.outcomes: list[ExportOutcome] = []
        self.exported = self.skipped = self.failed = self.dropped = 0
        self._jobs: deque[tuple[Path, Literal["video", "mcap"]]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._abandon = False  # grace over: kill the running job, drop the rest
        self._busy = False
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    # -- caller side ---------------------------------------------------------------------------

    def submit(self, log_path: str | os.PathLike[str]) -> None:
        """Queue `log_path` for export; returns at once, never raises."""
        kinds: list[Literal["video", "mcap"]] = ["video"] if self.mode != "off" else []
        if self.mcap:
            kinds.append("mcap")
        if not kinds:
            return
        path = Path(log_path)
        late: list[ExportOutcome] = []
        with self._cond:
            if self._closing:
                late = [ExportOutcome(path, None, "dropped", "submitted after close", 0.0, k) for k in kinds]
                for outcome in late:
                    self._count(outcome)
            else:
                self._jobs.extend((path, k) for k in kinds)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._work, name="video-export", daemon=True)
                    self._thread.start()
                self._cond.notify_all()
        for outcome in late:
            self._report(outcome)

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        with self._cond:
            return len(self._jobs) + (1 if self._busy else 0)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or running; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._jobs or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self, grace: float = 30.0) -> bool:
        """Stop taking jobs, let queued ones finish for up to `grace` s, then kill and drop. True if all ran."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        finished = self.wait_idle(grace)
        with self._cond:
            self._abandon = True
            proc = self._proc
            self._cond.notify_all()
        if proc is not None and proc.poll() is None:
            _kill(proc)
        if self._thread is not None:
            self._thread.join(timeout=10)
        dropped: list[ExportOutcome] = []
        with self._cond:
            while self._jobs:
                path, kind = self._jobs.popleft()
                dropped.append(ExportOutcome(path, None, "dropped", "not exported: shutting down", 0.0, kind))
                self._count(dropped[-1])
        for outcome in dropped:
            self._report(outcome)
        return finished and self.failed == 0 and self.dropped == 0

    def __enter__(self) -> ExportQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- worker side ---------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closing and not self._abandon:
                    self._cond.wait()
                if self._abandon or not self._jobs:
                    return
                path, kind = self._jobs.popleft()
                self._busy = True
            try:
                outcome = self._export(path, kind)
            except Exception as exc:  # the worker must survive anything a job does
                outcome = ExportOutcome(path, None, "failed", f"export crashed: {exc!r}", 0.0, kind)
            with self._cond:
                self._count(outcome)
            self._report(outcome)  # outside the lock: a slow callback must not block submit()
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _output(self, path: Path, kind: str = "video") -> Path:
        if kind == "mcap":
            from autorec.outdir import MCAP_SUFFIX, export_path

            return Path(export_path(path, MCAP_SUFFIX, self.out_dir))
        from autorec.media.video import default_output

        return default_output(path, "copy" if self.mode == "copy" else "h264", self.out_dir)

    def _command(self, path: Path, kind: str = "video") -> list[str]:
        if kind == "mcap":
            cmd = [sys.executable, "-c", CHILD_MAIN, "export", "--mcap", "-q", "--force"]
            if self.rules is not None:
                cmd += ["--rules", str(self.rules)]
            if self.out_dir is not None:
                cmd += ["--out-dir", str(self.out_dir)]
            return [*cmd, "--", str(path)]
        cmd = [sys.executable, "-c", CHILD_MAIN, "video", "-q", "--force"]
        if self.mode == "copy":
            cmd.append("--copy")
        else:
            if self.crf is not None:
                cmd += ["--crf", str(self.crf)]
            if self.preset is not None:
                cmd += ["--preset", self.preset]
        if self.out_dir is not None:
            cmd += ["--out-dir", str(self.out_dir)]
        return [*cmd, "--", str(path)]

    def _export(self, path: Path, kind: Literal["video", "mcap"] = "video") -> ExportOutcome:
        from autorec.io.atomicfile import remove_stale_partial
        from autorec.media.video import count_images

        began = time.monotonic()
        out = self._output(path, kind)
        if kind == "video":
            try:
                if count_images(path) == 0:
                    return ExportOutcome(path, None, "skipped", "no camera frames", 0.0, kind)
            except OSError as exc:
                return ExportOutcome(path, None, "failed", f"cannot read: {exc.strerror or exc}", 0.0, kind)
        with self._cond:
            if self._abandon:
                return ExportOutcome(path, None, "dropped", "not exported: shutting down", 0.0, kind)
            proc = subprocess.Popen(
                self._command(path, kind),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # the recorder's Ctrl-C is for the recorder; close() ends exports
            )
            self._proc = proc
        try:
            os.setpriority(os.PRIO_PROCESS, proc.pid, self.nice)
        except OSError:
            pass  # the child may already have finished, or the platform refuses: run at normal priority
        try:
            _, err = proc.communicate(timeout=self.job_timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            proc.communicate()
            err = f"took longer than {self.job_timeout:g} s".encode()
        finally:
            with self._cond:
                self._proc = None
        seconds = time.monotonic() - began
        if proc.returncode == 0:
            return ExportOutcome(path, out, "exported", f"{out.name} in {seconds:.1f} s", seconds, kind)
        remove_stale_partial(out)  # a killed child cannot clean up after itself (another export's stays)
        if proc.returncode is not None and proc.returncode < 0:
            message = "killed at shutdown" if self._abandon else f"killed by signal {-proc.returncode}"
        else:
            lines = err.decode(errors="replace").strip().splitlines()
            message = lines[-1].removeprefix(f"autorec {'export' if kind == 'mcap' else 'video'}: ")
            message = message if lines else f"exit code {proc.returncode}"
        return ExportOutcome(path, None, "failed", message, seconds, kind)

    def _count(self, outcome: ExportOutcome) -> None:
        """Keep and count an outcome (called with the lock held)."""
        self.outcomes.append(outcome)
        setattr(self, outcome.status, getattr(self, outcome.status) + 1)

    def _report(self, outcome: ExportOutcome) -> None:
        """Log an outcome and hand it to `on_done` (called without the lock)."""
        if outcome.status == "exported":
            log.info("%s: %s -> %s", outcome.kind, outcome.log, outcome.message)
        elif outcome.status == "skipped":
            log.info("%s: %s skipped: %s", outcome.kind, outcome.log, outcome.message)
        else:
            log.warning("%s: %s %s: %s", outcome.kind, outcome.log, outcome.status, outcome.message)
        if self.on_done is not None:
            try:
                self.on_done(outcome)
            except Exception:
                log.exception("%s: on_done callback failed for %s", outcome.kind, outcome.log)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: take any helper it spawned too
    except (ProcessLookupError, PermissionError):
        pass
