"""`autorec calibrate`: measure the rules on this rig, then propose thresholds between its noise and its moves.

    autorec calibrate --rules rules/motion.yaml --uri ws://rig:7001 [--idle 2min] [--write tuned.yaml]
    autorec calibrate --rules rules/motion.yaml --uri ws://rig:7001 --drive [--rpc http://rig:7000/rpc] [--pins 3,4,5]
    autorec calibrate --rules rules/motion.yaml --sim --drive --speed 10 --write tuned.yaml
    autorec calibrate --rules rules/motion.yaml --log night.bin --idle 5min

Three phases, with a progress line on a terminal:
1. idle: `--idle` of stream time with nothing driven (electrode changes are reported and left out);
2. activity: `--drive` makes known moves over pdserver's JSON-RPC (`autorec.calibration.drive`),
   or the user runs a protocol step (each electrode change that drives a new pin is a move) until
   `--moves` moves or `--activity` of stream time; a log's activity is the rest of it;
3. proposal: printed; with `--write NEW.yaml` also written as a rule file with comments.

The rules run through the real `Pipeline`; `autorec.calibration.measure` watches its outputs.
Exit 0 with a proposal, 1 when the rig or log could not be measured (or the run was interrupted:
nothing is written then), 2 for bad usage, and for `--drive` without a rig that answers JSON-RPC.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_IDLE = "2min"
DEFAULT_ACTIVITY = "2min"
NO_STREAM_TIMEOUT = 15.0  # real seconds without any message before giving up on the rig
TAIL = 3.0  # stream seconds watched after the last move (its scores and arrival)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from autorec.sim.config import add_sim_arguments

    p = sub.add_parser(
        "calibrate",
        help="measure the rules on this rig (idle noise, known moves) and propose thresholds",
        description=(
            "Calibrate a rule file on the rig it will record: watch it idle (noise floor of each rule, camera "
            "rate and flicker, timestamps, bytes a minute), then watch known moves (--drive: autorec moves a "
            "drop over JSON-RPC and switches every electrode it drove off afterwards; otherwise run a protocol "
            "step yourself), then propose each threshold between the two with its margins. --write saves the "
            "proposal as a rule file; without it nothing is written."
        ),
    )
    p.add_argument("--rules", required=True, metavar="FILE", help="the rule file to calibrate (YAML)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--uri", default=None, help="websocket of the rig (default: the rule file's source)")
    mode.add_argument("--sim", action="store_true", help="calibrate against the built-in simulator")
    mode.add_argument("--log", metavar="LOG", default=None, help="measure a log: its start is the idle phase")
    p.add_argument("--idle", default=DEFAULT_IDLE, metavar="DURATION", help="idle phase, stream time (default 2min)")
    p.add_argument(
        "--activity",
        default=DEFAULT_ACTIVITY,
        metavar="DURATION",
        help="without --drive: watch for a protocol step this long at most (default 2min)",
    )
    p.add_argument("--moves", type=int, default=6, metavar="N", help="without --drive: stop after N moves (default 6)")
    p.add_argument(
        "--drive",
        action="store_true",
        help="move a drop over the rig's JSON-RPC (never by default): a few electrodes and back, "
        "electrodes off at the end, on Ctrl-C and on error",
    )
    p.add_argument("--rpc", default=None, metavar="URL", help="pdserver's JSON-RPC (default: http://RIG:7000/rpc)")
    p.add_argument(
        "--pins",
        default=None,
        metavar="P,P,...",
        help="with --drive: the only pins it may drive (the drop's own and its path); default: any free ones",
    )
    p.add_argument(
        "--steps", type=int, default=2, metavar="N", help="with --drive: electrodes out and back (default 2)"
    )
    p.add_argument("--duty", default="10%", metavar="PERCENT", help="duty cycle for the bytes-a-night estimate")
    p.add_argument("--write", default=None, metavar="NEW.yaml", help="write the proposed rule file here")
    p.add_argument("-v", "--verbose", action="count", default=0)
    add_sim_arguments(p, network=False)
    p.set_defaults(func=run, scenario=None)


def _fail(message: str, code: int = 2) -> int:
    print(f"autorec calibrate: {message}", file=sys.stderr, flush=True)
    return code


def run(args: argparse.Namespace) -> int:
    # The phases and the proposal say what happens; the simulator's and the connection's INFO lines
    # would break the progress line (-v shows them). Put back afterwards: a program may go on logging.
    chatty = ("autorec.sim", "autorec.io.source", "autorec.io.broadcast")
    quiet = [logging.getLogger(name) for name in chatty] if not args.verbose else []
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.WARNING)
    try:
        return _run(args)
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    from autorec.rules import ConfigError, load_rules
    from autorec.units import parse_duration

    try:
        ruleset = load_rules(args.rules)
    except ConfigError as exc:
        for error in exc.errors:
            print(f"autorec calibrate: {error.line_text()}", file=sys.stderr)
        return 2
    except OSError as exc:
        return _fail(f"cannot read {args.rules}: {exc.strerror or exc}")
    try:
        idle = parse_duration(args.idle)
        activity = parse_duration(args.activity)
    except ValueError as exc:
        return _fail(f"--idle/--activity: {exc}")
    if idle <= 0 or activity <= 0:
        return _fail("--idle and --activity must be above zero")
    try:
        duty = float(str(args.duty).rstrip("%")) / (100.0 if str(args.duty).endswith("%") else 1.0)
    except ValueError:
        return _fail(f"--duty: expected a percentage like 10%, got {args.duty!r}")
    if not 0 < duty <= 1:
        return _fail("--duty must be above 0 % and at most 100 %")
    allowed = None
    if args.pins is not None:
        try:
            allowed = frozenset(int(p) for p in args.pins.replace(" ", "").split(",") if p)
        except ValueError:
            return _fail(f"--pins: expected pin numbers separated by commas, got {args.pins!r}")
        if not allowed or not all(0 <= p < 128 for p in allowed):
            return _fail("--pins: give pin numbers 0-127")
        if not args.drive:
            return _fail("--pins only applies with --drive")
    if args.rpc and not args.drive:
        return _fail("--rpc only applies with --drive")
    if args.drive and args.log:
        return _fail("--drive needs a live rig (--uri or --sim), not a log")
    if args.steps < 1:
        return _fail("--steps must be at least 1")
    if args.write:
        target = Path(args.write)
        if target.is_dir() or not target.absolute().parent.is_dir():
            return _fail(f"--write: cannot write {target}: no such directory or a directory")
    if not args.sim:
        given = [o for o, v in (("--scenario", args.scenario), ("--truth", args.truth)) if v]
        if given:
            return _fail(f"{', '.join(given)} only appl{'y' if len(given) > 1 else 'ies'} with --sim")
    if args.sim_duration is not None:
        return _fail("--duration does not apply: the phases set how long calibrate runs (--idle, --activity)")

    from autorec.calibration.measure import Meter

    meter = Meter(ruleset)
    if args.log:
        code, source_name = _measure_log(args, ruleset, meter, idle), args.log
        clock = False
    else:
        code, source_name = _measure_live(args, ruleset, meter, idle, activity, allowed)
        clock = not args.sim
    if code != 0:
        return code
    return _report(args, ruleset, meter, source_name, duty, clock)


# -- measuring ---------------------------------------------------------------------------------


class Progress:
    """The phase's progress: one line rewritten on a terminal, a line per phase otherwise."""

    def __init__(self, meter, ruleset) -> None:
        self.meter = meter
        self.tty = sys.stderr.isatty()
        self._next = 0.0

    def start(self, text: str) -> None:
        self.end()
        print(f"autorec calibrate: {text}", file=sys.stderr, flush=True)

    def show(self, phase: str, total: float | None, extra: str = "") -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + 0.25
        from autorec.units import format_duration

        done = self.meter.elapsed()
        line = f"{phase} {format_duration(done)}"
        if total:
            line += f" of {format_duration(total)} ({min(100, 100 * done / total):.0f} %)"
        s = self.meter.stats
        if s is not None:
            line += f"  {s.messages} msg"
        if extra:
            line += f"  {extra}"
        sys.stderr.write("\r\x1b[2K" + line)
        sys.stderr.flush()

    def end(self) -> None:
        if self.tty:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()


def _measure_log(args, ruleset, meter, idle: float) -> int:
    from autorec.core.pipeline import Pipeline
    from autorec.runs.filesource import FileSource, log_path_problem

    path = Path(args.log)
    problem = log_path_problem(path)
    if problem is not None:
        return _fail(f"--log: {problem}", 1)
    pipeline = Pipeline(ruleset, offline=True, telemetry=False, timelapse=False)
    source = FileSource(path)
    meter.phase("idle")
    try:
        for msg in source:
            meter.received(msg)
            meter.outputs(pipeline.message(msg))
            if meter.current == "idle" and meter.elapsed() >= idle:
                meter.phase("activity")
    except OSError as exc:
        return _fail(f"cannot read {path}: {exc.strerror or exc}", 1)
    meter.outputs(pipeline.finish())
    meter.phase(None)
    # Read as `run --log` reads a log: not a log at all fails, a damaged one is measured up to the damage.
    not_a_log = source.not_a_log()
    if not_a_log is not None:
        return _fail(not_a_log, 1)
    if source.records == 0:
        return _fail(f"{path} holds no records", 1)
    source.warn_if_cut()
    return 0


def _measure_live(args, ruleset, meter, idle: float, activity: float, allowed) -> tuple[int, str]:
    import asyncio

    from autorec.calibration.drive import Driver, RpcClient, RpcError, board_cells, covered, plan_moves, rpc_url_for
    from autorec.core.pipeline import TICK_LAG, Pipeline
    from autorec.core.streamitems import Message
    from autorec.io.mainloop import StopRequest, run_main
    from autorec.io.source import DEFAULT_URI, WebsocketSource
    from autorec.units import format_duration

    sim_config = None
    if args.sim:
        from autorec.sim.config import SimConfig

        if args.scenario is None:
            args.scenario = "idle" if args.drive else "demo"
        try:
            sim_config = SimConfig.from_args(args)
        except ValueError as exc:
            return _fail(str(exc)), ""
        sim_config.wait_for_clients = 1
        sim_config.rpc_port = 0  # pdserver's JSON-RPC on a free port, as a rig has it
        # A frame lost to a slow consumer would read as camera noise: let the simulator's queue hold
        # minutes of a sped-up stream rather than drop (a dropped frame is still reported below).
        sim_config.max_queue_bytes = 1 << 30
    uri = args.uri or ruleset.source or DEFAULT_URI
    if sim_config is None:
        try:
            WebsocketSource(uri)
        except ValueError as exc:
            return _fail(f"--uri: {exc}"), ""
    speed = sim_config.speed if sim_config is not None else 1.0
    progress = Progress(meter, ruleset)
    state: dict = {"code": 0, "driver": None, "warnings": []}
    real: dict[str, float] = {}  # phase -> real seconds it took (for the summary)

    async def body(stop: StopRequest) -> None:
        if sim_config is None:
            await _session(stop, uri, args.rpc or rpc_url_for(uri))
            return
        from autorec.sim.server import SimServerThread

        # The simulator on a loop of its own: the driver's calls (and switching the electrodes off
        # in a `finally`) block this loop, and the simulator must still answer them.
        sim = SimServerThread(sim_config, host="127.0.0.1", port=0)
        try:
            server = await asyncio.to_thread(sim.__enter__)
        except ValueError as exc:
            state["code"] = _fail(str(exc))
            return
        try:
            await _session(stop, server.uri, args.rpc or server.rpc_url)
        finally:
            await asyncio.to_thread(sim.__exit__, None, None, None)
        dropped = server.broadcaster.stats()["dropped"]
        if dropped:
            state["warnings"].append(
                f"the simulator dropped {dropped} message(s) this computer could not take in time: "
                "the figures miss them (a lower --speed avoids it)"
            )

    async def _session(stop: StopRequest, ws_uri: str, rpc_url: str) -> None:
        driver = None
        if args.drive:
            client = RpcClient(rpc_url)
            try:
                definition = await asyncio.to_thread(client.call, "get_board_definition")
                pins_state = await asyncio.to_thread(client.call, "get_electrode_pins")
                scan = await asyncio.to_thread(client.call, "get_scan_capacitance")
            except RpcError as exc:
                state["code"] = _fail(f"--drive: refusing to drive: no JSON-RPC answer at {rpc_url}: {exc}")
                return
            if isinstance(pins_state, list) and any(pins_state):
                on = [i for i, v in enumerate(pins_state) if v]
                state["code"] = _fail(
                    f"--drive: refusing to drive: electrodes are driven already (pins {on}): a protocol is running"
                )
                return
            cells = board_cells(definition)
            values = scan.get("raw") if isinstance(scan, dict) else None
            plan = plan_moves(cells, covered(list(values or [])), args.steps, allowed)
            if plan is None:
                within = f" among --pins {sorted(allowed)}" if allowed is not None else ""
                state["code"] = _fail(
                    f"--drive: no drop with {args.steps} free electrode(s) in a line next to it{within} "
                    f"(board: {len(cells)} electrodes, drops on pins {sorted(covered(list(values or [])))})"
                )
                return
            driver = Driver(client, plan, clock=lambda: meter.time)
            state["driver"] = driver
        # Unpaced: calibrate measures arrival times too (the rig clock's offset and spread), which paced
        # reads would make up to 0.2 s late; a session of minutes has no CPU to save.
        source = WebsocketSource(ws_uri, read_interval=0.0)
        pipeline = Pipeline(
            ruleset, rate=speed, telemetry=False, timelapse=False, tick_lag=TICK_LAG + source.read_interval
        )
        last_item = [time.monotonic()]

        async def feed() -> None:
            async for item in source:
                if isinstance(item, Message):
                    last_item[0] = time.monotonic()
                    meter.received(item)
                meter.outputs(pipeline.receive(item))

        async def tick() -> None:
            while True:
                await asyncio.sleep(0.5)
                meter.outputs(pipeline.tick(time.monotonic(), wall=time.time()))

        async def until(done, phase: str, total: float | None, extra=lambda: "") -> bool:
            """Wait until `done()`; False when stopped or the stream went quiet."""
            while not done():
                if stop.is_set():
                    return False
                if time.monotonic() - last_item[0] > NO_STREAM_TIMEOUT:
                    progress.end()
                    state["code"] = _fail(f"no messages from {ws_uri} for {NO_STREAM_TIMEOUT:.0f} s", 1)
                    return False
                progress.show(phase, total, extra())
                await asyncio.sleep(0.05)
            return True

        tasks = []
        async with source:
            tasks = [asyncio.ensure_future(feed()), asyncio.ensure_future(tick())]
            try:
                meter.phase("idle")
                real["idle"] = time.monotonic()
                progress.start(
                    f"idle phase: watching {ws_uri} for {format_duration(idle)} of stream time; nothing is driven"
                )
                if not await until(lambda: meter.time is not None and meter.elapsed() >= idle, "idle", idle):
                    return
                if driver is not None and meter.driven:  # someone drove electrodes during the idle phase
                    progress.end()
                    state["code"] = _fail(
                        f"--drive: refusing to drive: electrodes are driven (pins {sorted(meter.driven)}): "
                        "a protocol is running"
                    )
                    return
                meter.phase("activity")
                real["idle"] = time.monotonic() - real["idle"]
                real["activity"] = time.monotonic()
                if driver is not None:
                    progress.start(
                        f"activity phase: moving the drop on pin {driver.plan.drop_pin} along pins "
                        f"{list(driver.plan.path)} over {rpc_url}"
                    )
                    move = asyncio.ensure_future(driver.run(stop.is_set))
                    ok = await until(move.done, "activity", None, lambda: f"{len(driver.records)} move(s)")
                    if not ok:
                        move.cancel()
                    try:
                        await move
                    except asyncio.CancelledError:
                        pass
                    if not ok:
                        return
                    t_end = meter.time or 0.0
                    await until(lambda: (meter.time or 0.0) >= t_end + TAIL, "activity", None)
                else:
                    progress.start(
                        f"activity phase: run a protocol step now (move drops); watching for {args.moves} move(s) "
                        f"or {format_duration(activity)} of stream time"
                    )

                    def enough() -> bool:
                        ws = meter.windows
                        if meter.elapsed() >= activity:
                            return True
                        return len(ws) >= args.moves and (meter.time or 0.0) >= ws[-1].start + TAIL + 2.0

                    if not await until(enough, "activity", activity, lambda: f"{len(meter.windows)} move(s)"):
                        return
                progress.end()
                real["activity"] = time.monotonic() - real["activity"]
            finally:
                if driver is not None:
                    driver.off()  # again, whatever happened (idempotent)
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    try:
                        await task
                    except asyncio.CancelledError:
                        pass
                    except Exception as exc:  # the feed's own failure is the reason to stop, already logged
                        log.error("calibrate: %s", exc)
                meter.outputs(pipeline.finish())
                meter.phase(None)

    stop_reason: list = []
    try:
        run_main(body, on_start=stop_reason.append)
    finally:
        driver = state.get("driver")
        if driver is not None and not driver.off_confirmed:
            driver.off()
    for warning in state["warnings"]:
        print(f"autorec calibrate: WARNING: {warning}", file=sys.stderr, flush=True)
    driver = state.get("driver")
    if driver is not None and driver.failed:
        print(f"autorec calibrate: WARNING: {driver.failed}: the moves stopped there", file=sys.stderr, flush=True)
    if driver is not None:
        print(
            f"autorec calibrate: drove pins {sorted(driver.driven)} ({len(driver.records)} move(s)); "
            f"electrodes switched off{'' if driver.off_confirmed else ' - NOT CONFIRMED: check the rig'}",
            file=sys.stderr,
            flush=True,
        )
    if state["code"]:
        return state["code"], ""
    stop = stop_reason[0] if stop_reason else None
    if stop is not None and stop.signal:
        progress.end()
        return _fail(f"interrupted ({stop.signal}): no proposal, nothing written", 1), ""
    name = f"the simulator (scenario {args.scenario}, {speed:g}x)" if args.sim else uri
    args.phase_seconds = real  # real seconds each phase took, for the summary
    return 0, name


# -- the proposal ------------------------------------------------------------------------------


def _report(args, ruleset, meter, source_name: str, duty: float, clock: bool) -> int:
    from autorec.calibration.proposal import propose, rewrite_rules
    from autorec.dates import utc_strftime
    from autorec.rules import ConfigError, load_rules
    from autorec.units import format_duration

    m = meter.result()
    proposal = propose(ruleset, m, duty=duty, clock_comparable=clock)
    idle, activity = m.phases.get("idle"), m.phases.get("activity")
    print(
        f"Calibrated {args.rules} on {source_name}: idle {format_duration(idle.duration if idle else 0)}, "
        f"activity {format_duration(activity.duration if activity else 0)} of stream time, {len(m.windows)} move(s)"
    )
    real = getattr(args, "phase_seconds", {})
    if "activity" in real:
        print(f"The phases took {real['idle']:.1f} s (idle) and {real['activity']:.1f} s (activity) of real time.")
    print(proposal.text())
    if not args.write:
        if proposal.changes:
            print("Nothing written (--write NEW.yaml saves the proposal as a rule file).")
        return 0
    header = [
        f"Calibrated by `autorec calibrate` on {utc_strftime(time.time(), '%Y-%m-%d %H:%M')} UTC from {args.rules}",
        f"measured on {source_name}:",
        f"idle {format_duration(idle.duration if idle else 0)}, {len(m.windows)} move(s). "
        "Lines marked `calibrated:` say where each number came from.",
    ]
    try:
        text = Path(args.rules).read_text()
        new = rewrite_rules(text, ruleset, proposal, header)
        target = Path(args.write)
        if target.resolve() == Path(args.rules).resolve():
            return _fail("--write: give a new file, not the rule file being calibrated")
        target.write_text(new)
    except OSError as exc:
        return _fail(f"--write: cannot write {args.write}: {exc.strerror or exc}", 1)
    try:
        load_rules(target)
    except ConfigError as exc:  # the rewrite broke the file: say so loudly rather than leave it
        return _fail(f"--write: the written file does not load ({exc.errors[0].line_text()}); please report", 1)
    print(f"Wrote {target} ({len(proposal.changes)} value(s) changed); check it with: autorec check {target}")
    return 0
