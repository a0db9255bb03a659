"""Segment and alert hooks: user commands and Python callbacks run in the background.

A rule file's top-level `hooks:` key names commands for three events:
`on_segment_open`, `on_segment_close` and `on_alert`. Each command is an argv
list, run directly (no shell: a user who wants one writes `[sh, -c, "..."]`).
Placeholders in argv items are replaced by the event's values:

| event              | placeholders                                           |
|--------------------|--------------------------------------------------------|
| on_segment_open    | {path} {sidecar} {rules} {start} ({end} is empty)      |
| on_segment_close   | {path} {sidecar} {rules} {start} {end}                 |
| on_alert           | {alert} {message} {state} {time} {since}, and {start}  |
|                    | {end} (the alert's span), {rules} (plugin alerts)      |

`{start}`, `{end}`, `{time}` and `{since}` are epoch seconds (`1700000000.250`),
or any strftime format in UTC: `{start:%Y-%m-%dT%H:%M:%SZ}`. `{{` and `}}` are
literal braces; other braces that do not form a `{name}` (code, JSON, awk)
are kept as written, but an unknown `{name}` is a config error (a typo). A
value is substituted inside its argv item and never split, so a path with
spaces or quotes stays one argument. The same values are also
in the environment as `AUTOREC_PATH`, `AUTOREC_SIDECAR`, ... and
`AUTOREC_EVENT`.

Contracts of `HookRunner`:
- `submit()` never blocks and never raises for a hook's sake: it queues the
  event's commands and callbacks and returns at once. Each hook event has
  its own queue and worker thread: hooks of one event run one at a time, in
  the order submitted (an alert's "cleared" never overtakes its "raised";
  archiving segments does not compete with itself for the disk), and a slow
  `on_segment_close` never holds up `on_alert`. If a queue is full
  (`max_pending`: hooks far slower than segments) the hook is dropped,
  logged and counted in `counters["dropped"]`.
- Every command gets `timeout` seconds; on expiry its whole process group is
  terminated (SIGTERM, then SIGKILL a second later). Its exit status, or the
  timeout, or a failure to start, is logged with the tail of its output and
  kept in `results` (the last `keep_results`) and `counters`.
- Python callbacks (`add_callback`) get a `HookEvent`; an exception is logged
  with its traceback and counted, never propagated. A callback cannot be
  killed: one that overruns is only reported when it returns.
- `close(grace)` stops accepting events, waits for queued and running hooks
  up to `grace` seconds, then kills the commands still running. It returns
  True when everything finished within the grace period.
"""

from __future__ import annotations

import collections
import difflib
import logging
import os
import queue
import re
import shlex
import signal
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from autorec.dates import utc_strftime

log = logging.getLogger(__name__)

# Which placeholders each hook event offers; time-valued ones accept a strftime format.
# Every segment placeholder is accepted in every hook (unknown values become empty), so that any
# command the rule loader (`autorec.rules`) accepts also runs here.
_SEGMENT_FIELDS = frozenset({"path", "sidecar", "rules", "start", "end"})
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "on_segment_open": _SEGMENT_FIELDS,
    "on_segment_close": _SEGMENT_FIELDS,
    "on_alert": _SEGMENT_FIELDS | {"alert", "message", "state", "time", "since"},
}
EVENTS: tuple[str, ...] = tuple(PLACEHOLDERS)
TIME_PLACEHOLDERS = frozenset({"start", "end", "time", "since"})
DEFAULT_TIMEOUT = 60.0
OUTPUT_TAIL = 2000  # characters of a hook's output kept for the log

# `{{`, `}}`, `{name}` / `{name:format}`, or a lone brace (kept as written).
_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_]\w*)(?::([^{}]*))?\}|[{}]")


MAX_FORMAT_WIDTH = 1000  # widths/precisions in placeholder specs; `{rules:1000000000}` allocated 1 GB
_SPEC = re.compile(r"^(?:.?[<>=^])?[-+ ]?z?#?0?(?P<width>\d*)[,_]?(?:\.(?P<precision>\d*))?[a-zA-Z%]?$", re.S)


def check_format_width(name: str, spec: str) -> None:
    """ValueError if the format spec of placeholder `name` asks for a width or precision over MAX_FORMAT_WIDTH."""
    m = _SPEC.match(spec)
    if m is None:
        return  # not a standard spec: rendering reports it
    for part in ("width", "precision"):
        digits = (m.group(part) or "").lstrip("0")
        # len() first: int() of a 5000-digit string raises (and a huge one takes long)
        if len(digits) > 4 or (digits and int(digits) > MAX_FORMAT_WIDTH):
            shown = digits if len(digits) <= 20 else f"{digits[:8]}...({len(digits)} digits)"
            raise ValueError(
                f"placeholder {{{name}:{spec[:30]}}}: a {part} of {shown} is absurd (at most {MAX_FORMAT_WIDTH})"
            )


class HookConfigError(ValueError):
    """A hook command is malformed; the message says which part and what is allowed."""


@dataclass(frozen=True)
class HookEvent:
    """What a Python callback receives: the event name and its placeholder values."""

    event: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class HookResult:
    """How one command or callback ended. `returncode` is None for callbacks and failed starts."""

    event: str
    hook: str  # the command line as the user would type it, or the callback's name
    returncode: int | None
    timed_out: bool
    error: str | None
    duration: float
    output: str = ""

    @property
    def ok(self) -> bool:
        return not self.timed_out and self.error is None and self.returncode in (0, None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "hook": self.hook,
            "returncode": self.returncode,
            "timed_out": self.timed_out,
            "error": self.error,
            "duration": round(self.duration, 3),
        }


def _check_template(item: str, allowed: frozenset[str]) -> None:
    for m in _TOKEN.finditer(item):
        text = m.group(0)
        if text in ("{{", "}}"):
            continue
        name = m.group(1)
        if name is None:  # a brace that is no placeholder (code, awk, JSON) stays as written
            continue
        spec = m.group(2)
        if spec and name not in TIME_PLACEHOLDERS:
            try:
                check_format_width(name, spec)
            except ValueError as exc:
                raise HookConfigError(str(exc)) from None
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f"; did you mean {{{close[0]}}}?" if close else ""
            raise HookConfigError(
                f"unknown placeholder {{{name}}} in {item!r}{hint} (allowed here: "
                + ", ".join("{" + p + "}" for p in sorted(allowed))
                + f"; write {{{{{name}}}}} for a literal {{{name}}})"
            )


def validate_commands(event: str, commands: Any) -> list[tuple[str, ...]]:
    """The commands of one hook event as a list of argv tuples; HookConfigError says what is wrong.

    Accepts one argv list (`[gzip, -k, "{path}"]`) or a list of them. Every
    item must be a string or number; placeholders must be known for `event`.
    """
    if event not in PLACEHOLDERS:
        raise HookConfigError(f"unknown hook {event!r} (allowed: {', '.join(EVENTS)})")
    if commands is None:
        return []
    if isinstance(commands, str):
        raise HookConfigError(
            f'expected an argv list like [gzip, -k, "{{path}}"], got a string {commands!r} '
            '(no shell is used; write [sh, -c, "..."] if you need one)'
        )
    if not isinstance(commands, list) or not commands:
        raise HookConfigError(f"expected an argv list or a list of argv lists, got {commands!r}")
    argvs = commands if all(isinstance(c, list) for c in commands) else [commands]
    result = []
    for argv in argvs:
        if not isinstance(argv, list) or not argv:
            raise HookConfigError(f"expected a non-empty argv list, got {argv!r}")
        items = []
        for item in argv:
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise HookConfigError(f"argv items must be strings, got {item!r}")
            item = str(item)
            _check_template(item, PLACEHOLDERS[event])
            items.append(item)
        result.append(tuple(items))
    return result


def _format_value(name: str, value: Any, spec: str | None) -> str:
    if value is None:
        return ""
    if name in TIME_PLACEHOLDERS and isinstance(value, (int, float)):
        if spec:
            return utc_strftime(value, spec)
        return f"{value:.3f}"
    if isinstance(value, (list, tuple, set, frozenset)):
        text = ",".join(str(v) for v in value)
    else:
        text = str(value)
    if spec:
        try:
            return format(text, spec)  # e.g. {rules:.40} to shorten
        except ValueError:
            return text  # a spec meant for a number: the value itself is more use than a crash
    return text


def substitute(item: str, values: Mapping[str, Any]) -> str:
    """`item` with its placeholders replaced; a missing value becomes the empty string."""

    def repl(m: re.Match[str]) -> str:
        text = m.group(0)
        if text == "{{":
            return "{"
        if text == "}}":
            return "}"
        name = m.group(1)
        if name is None:  # validated commands never get here; keep stray braces as they are
            return text
        return _format_value(name, values.get(name), m.group(2))

    return _TOKEN.sub(repl, item)


def _environment(event: str, values: Mapping[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    env["AUTOREC_EVENT"] = event
    for name in PLACEHOLDERS[event]:
        env["AUTOREC_" + name.upper()] = _format_value(name, values.get(name), None)
    return env


@dataclass
class _Job:
    event: str
    values: Mapping[str, Any]
    argv: tuple[str, ...] | None = None
    callback: Callable[[HookEvent], Any] | None = None


@dataclass(eq=False)
class HookRunner:
    """Runs the hook commands and callbacks of a recorder in the background. See the module docstring.

    `commands` maps hook event names to argv lists as written in the rule file
    (validated here; HookConfigError on a bad one). `max_pending` bounds how
    many hooks of one event may wait.
    """

    commands: Mapping[str, Any] | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_pending: int = 1000
    keep_results: int = 100
    cwd: str | os.PathLike[str] | None = None
    counters: dict[str, int] = field(init=False)
    results: collections.deque[HookResult] = field(init=False)

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise HookConfigError(f"timeout must be > 0, got {self.timeout!r}")
        self._argvs: dict[str, list[tuple[str, ...]]] = {
            event: validate_commands(event, cmds) for event, cmds in (self.commands or {}).items()
        }
        self._callbacks: dict[str, list[Callable[[HookEvent], Any]]] = {e: [] for e in EVENTS}
        self.counters = dict.fromkeys(("submitted", "started", "ok", "failed", "timed_out", "dropped"), 0)
        self.results = collections.deque(maxlen=self.keep_results)
        self._queues: dict[str, queue.Queue[_Job | None]] = {e: queue.Queue(maxsize=self.max_pending) for e in EVENTS}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0  # jobs queued or running
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._closed = False
        self._abandoned = False  # past the grace period: start nothing more
        self._threads = [
            threading.Thread(target=self._work, args=(q,), name=f"autorec-hook-{e}", daemon=True)
            for e, q in self._queues.items()
        ]
        for t in self._threads:
            t.start()

    # -- the caller's side -------------------------------------------------------------------

    def add_callback(self, event: str, callback: Callable[[HookEvent], Any]) -> None:
        """Call `callback(HookEvent)` in the background on every `event` (for API users)."""
        if event not in PLACEHOLDERS:
            raise HookConfigError(f"unknown hook {event!r} (allowed: {', '.join(EVENTS)})")
        self._callbacks[event].append(callback)

    def has_hooks(self, event: str) -> bool:
        return bool(self._argvs.get(event) or self._callbacks.get(event))

    def submit(self, event: str, **values: Any) -> int:
        """Queue `event`'s commands and callbacks with these placeholder values; never blocks.

        Returns how many hooks were queued (0 when none are configured, the
        runner is closed, or the queue is full).
        """
        if event not in PLACEHOLDERS:
            raise ValueError(f"unknown hook event {event!r}")
        jobs = [_Job(event, values, argv=a) for a in self._argvs.get(event, ())]
        jobs += [_Job(event, values, callback=c) for c in self._callbacks[event]]
        queued = 0
        for job in jobs:
            with self._lock:
                if self._closed:
                    self.counters["dropped"] += 1
                    continue
                self._busy += 1
                self.counters["submitted"] += 1
            try:
                self._queues[event].put_nowait(job)
                queued += 1
            except queue.Full:
                with self._lock:
                    self._busy -= 1
                    self.counters["dropped"] += 1
                    self._idle.notify_all()
                log.warning(
                    "hook %s dropped: %d hooks already waiting (hooks slower than segments?)", event, self.max_pending
                )
        return queued

    def segment_opened(self, path: Any, sidecar: Any, rules: Any, start: float) -> int:
        return self.submit("on_segment_open", path=path, sidecar=sidecar, rules=rules, start=start)

    def segment_closed(self, path: Any, sidecar: Any, rules: Any, start: float, end: float) -> int:
        return self.submit("on_segment_close", path=path, sidecar=sidecar, rules=rules, start=start, end=end)

    @property
    def pending(self) -> int:
        """Hooks queued or running."""
        with self._lock:
            return self._busy

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no hook is queued or running (True), or `timeout` passes (False)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def close(self, grace: float = 10.0) -> bool:
        """Stop accepting hooks, wait up to `grace` s for the rest, kill what still runs. True if all ended."""
        with self._lock:
            self._closed = True
        finished = self.wait(grace)
        if not finished:
            with self._lock:
                self._abandoned = True  # workers drop what is still queued
                procs = list(self._procs)
            for proc in procs:
                log.warning("hook still running after the %.1f s grace period, killed: pid %d", grace, proc.pid)
                _kill_group(proc, signal.SIGKILL)
        for q in self._queues.values():
            q.put(None)  # after the queued jobs: each worker stops once its queue is done (or dropped)
        for t in self._threads:
            t.join(timeout=2.0)
        return finished

    def status(self) -> dict[str, Any]:
        """Counters and the last results, for the status file."""
        with self._lock:
            last = [r.as_dict() for r in list(self.results)[-5:]]
            return {"pending": self._busy, **self.counters, "last": last}

    # -- the workers' side -------------------------------------------------------------------

    def _work(self, jobs: queue.Queue[_Job | None]) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            with self._lock:
                if self._abandoned:
                    self._busy -= 1
                    self.counters["dropped"] += 1
                    self._idle.notify_all()
                    continue
            try:
                result = self._run_callback(job) if job.callback is not None else self._run_command(job)
            except Exception as exc:  # a bug here must not kill the worker
                log.exception("hook %s: internal error", job.event)
                result = HookResult(job.event, "?", None, False, f"internal error: {exc}", 0.0)
            self._finish(result)

    def _finish(self, result: HookResult) -> None:
        with self._lock:
            self.results.append(result)
            if result.timed_out:
                self.counters["timed_out"] += 1
            elif result.ok:
                self.counters["ok"] += 1
            else:
                self.counters["failed"] += 1
            self._busy -= 1
            self._idle.notify_all()

    def _run_callback(self, job: _Job) -> HookResult:
        assert job.callback is not None
        name = getattr(job.callback, "__qualname__", repr(job.callback))
        with self._lock:
            self.counters["started"] += 1
        t0 = time.monotonic()
        try:
            job.callback(HookEvent(job.event, dict(job.values)))
        except Exception as exc:
            log.error("hook %s: callback %s raised:\n%s", job.event, name, traceback.format_exc().rstrip())
            return HookResult(job.event, name, None, False, f"{type(exc).__name__}: {exc}", time.monotonic() - t0)
        duration = time.monotonic() - t0
        if duration > self.timeout:
            log.warning("hook %s: callback %s took %.1f s (timeout %.1f s)", job.event, name, duration, self.timeout)
            return HookResult(job.event, name, None, True, None, duration)
        log.info("hook %s: callback %s done in %.2f s", job.event, name, duration)
        return HookResult(job.event, name, None, False, None, duration)

    def _run_command(self, job: _Job) -> HookResult:
        assert job.argv is not None
        argv = [substitute(item, job.values) for item in job.argv]
        shown = shlex.join(argv)
        t0 = time.monotonic()
        try:
            # A session of its own: the timeout kills the hook's children too (e.g. `sh -c`).
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=_environment(job.event, job.values),
                start_new_session=True,
            )
        except OSError as exc:
            log.error("hook %s: cannot start %s: %s", job.event, shown, exc)
            return HookResult(job.event, shown, None, False, f"cannot start: {exc}", time.monotonic() - t0)
        with self._lock:
            self.counters["started"] += 1
            self._procs.add(proc)
            if self._abandoned:  # close() gave up while this one was starting
                _kill_group(proc, signal.SIGKILL)
        timed_out = False
        try:
            try:
                out, _ = proc.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc, signal.SIGTERM)
                try:
                    out, _ = proc.communicate(timeout=1.0)
                except subprocess.TimeoutExpired:
                    _kill_group(proc, signal.SIGKILL)
                    # a grandchild that left the group may hold the pipe: don't wait on it forever
                    try:
                        out, _ = proc.communicate(timeout=2.0)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                        out = b""
        finally:
            with self._lock:
                self._procs.discard(proc)
        duration = time.monotonic() - t0
        tail = (out or b"")[-OUTPUT_TAIL:].decode("utf-8", "replace").rstrip()
        if timed_out:
            log.warning("hook %s: %s killed after the %.1f s timeout%s", job.event, shown, self.timeout, _indent(tail))
        elif proc.returncode != 0:
            log.warning(
                "hook %s: %s failed with exit status %d after %.2f s%s",
                job.event,
                shown,
                proc.returncode,
                duration,
                _indent(tail),
            )
        else:
            log.info("hook %s: %s exited 0 after %.2f s", job.event, shown, duration)
        return HookResult(job.event, shown, proc.returncode, timed_out, None, duration, tail)


class SegmentHooks:
    """A segment observer for `autorec.io.writer.SegmentWriter` that runs the segment hooks.

    Duck-typed to the writer's `SegmentObserver` (`segment_opened(file)`,
    `segment_closed(file)`, called on the writer's thread; `file` has `path`,
    `sidecar`, `rules`, `start`, `end`). `{path}` is the segment's final
    `NAME.bin`: while the segment is open, that file is being written as
    `NAME.bin.partial`.
    """

    def __init__(self, runner: HookRunner) -> None:
        self.runner = runner

    def segment_opened(self, segment: Any) -> None:
        self.runner.segment_opened(segment.path, segment.sidecar, segment.rules, segment.start)

    def segment_closed(self, segment: Any) -> None:
        self.runner.segment_closed(segment.path, segment.sidecar, segment.rules, segment.start, segment.end)


def _indent(text: str) -> str:
    return "" if not text else "; output:\n  " + text.replace("\n", "\n  ")


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def from_config(config: Any, **kwargs: Any) -> HookRunner:
    """A HookRunner from a rule file's `hooks:` settings.

    `config` is a mapping (event lists plus an optional `timeout`) or an object
    with those attributes (`autorec.rules.HookSettings`), or None.
    """
    if config is None:
        config = {}
    elif not isinstance(config, Mapping):
        config = {name: getattr(config, name, None) for name in (*EVENTS, "timeout")}
    config = {k: v for k, v in dict(config).items() if v is not None}
    timeout = config.pop("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, str):
        from autorec.units import parse_duration

        timeout = parse_duration(timeout)
    return HookRunner(commands=config, timeout=float(timeout), **kwargs)


__all__ = [
    "EVENTS",
    "PLACEHOLDERS",
    "HookConfigError",
    "HookEvent",
    "HookResult",
    "HookRunner",
    "SegmentHooks",
    "from_config",
    "substitute",
    "validate_commands",
]
