"""Live CPU side by side: `autorec run --rules rules/motion.yaml` against a recorder that writes everything.

    .venv/bin/python benchmarks/live_cpu.py [--seconds 60] [--profile run.prof]

Serves `autorec sim` (its own process, 10 fps camera, real time) and connects to
it, at the same time and for the same minute:
- upstream `pdrecord` (`--pdrecord PATH`, or on PATH: the issue's baseline), else `autorec record`
  (writes every event, like pdrecord; the script says which one it used). pdrecord is one small
  script (purpledrop/script/pd_record.py: websockets `recv()` and two `write`s per message); the
  purpledrop package is not on PyPI and pulls gevent, flask and OpenCV, so run it from a checkout
  of github.com/uwmisl/purpledrop-driver instead, through a wrapper script passed as PATH:
      PYTHONPATH=CHECKOUT PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python \
          exec .venv/bin/python -m purpledrop.script.pd_record "$@"
  (its generated messages_pb2 predates protobuf 4; the pure-Python loader accepts it, and
  pdrecord parses nothing unless -v). Measured beside it: `autorec record` costs 0.61x (0.97-1.02x
  before its socket reads were paced: `autorec/io/source.py`);
- `autorec run --rules rules/motion.yaml` (analyses 5 fps, keeps segments); `--rules FILE`
  and `--set RULE.OPTION=VALUE` run another rule file or setting (e.g. rules/electrodes.yaml:
  the pipeline without camera analysis).
Prints each process's CPU seconds (user + system, from /proc) over the window, and
the ratio run / recorder (issue 21's target: <= 2.0x pdrecord).

Decode floor (issue 31): after the window, the recorder's file is backtested in this process
through the same rules (a dry run, so the same frames are chosen, idle rate included) and the
`GrayDecoder` decode of each frame the rule analysed inside the window is timed (CPU time of
this thread): what any motion recorder must spend beyond writing. Printed: run / (recorder +
decode floor) (target <= 1.25x). The floor is measured a minute after the processes, on the
same machine: on a loaded machine the ratios hold better than the seconds.

`--scenario night --seconds 1200` measures 20 minutes of the realistic night (incubations with
nothing moving, protocol steps): issue 31's quiet-night target (run <= 2.0x pdrecord).

`--quiet-rig` serves the simulator's `idle` scenario (a still board, electrodes re-sent,
sensors; 10 fps camera) and runs the rule twice in the same minute: as given (idle rate on)
and with `--set RULE.idle_fps=0` (full rate), each beside its own decode floor. The idle rate
starts `idle_after` (the rule's, or `--idle-after`) after the run connects: the warm-up is
raised past it.

`--profile FILE` runs `autorec run` under cProfile (main thread: the pipeline;
other threads are not seen) and prints its top costs by own time; the profiler
makes that run slower, so the CPU ratio of a profiled run is not the figure.

`--idle` serves a websocket that accepts the connections and sends nothing instead of the
simulator: what each process costs while the rig is quiet (wake-ups: ticks, flushes, status
writes), in CPU seconds per minute; there is no ratio then (the recorders spend ~0).

`--py-spy FILE` samples `autorec run` with py-spy (`pip install py-spy`; all threads,
little overhead) over the measured window, writes the collapsed stacks to FILE and
prints the top functions by own and by inclusive samples, blocked waits left out.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
AUTOREC = [sys.executable, "-m", "autorec"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (all its threads), from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_sim(scenario: str = "demo") -> tuple[subprocess.Popen, str]:
    sim = subprocess.Popen(
        [*AUTOREC, "sim", "--port", "0", "--fps", "10", "--seed", "1", "--scenario", scenario],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = sim.stdout.readline() if sim.stdout else ""
    uri = line.strip().rsplit(" ", 1)[-1]
    if not uri.startswith("ws://"):
        sim.terminate()
        raise SystemExit(f"autorec sim did not say where it serves: {line!r}")
    return sim, uri


SILENT_SERVER = """
import asyncio, websockets
async def main():
    async def handler(ws):
        await ws.wait_closed()
    async with websockets.serve(handler, "127.0.0.1", 0) as server:
        print("ws://127.0.0.1:%d" % server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()
asyncio.run(main())
"""


def start_silent() -> tuple[subprocess.Popen, str]:
    """A websocket server that accepts connections and never sends (a quiet rig)."""
    server = subprocess.Popen([sys.executable, "-c", SILENT_SERVER], stdout=subprocess.PIPE, text=True)
    uri = (server.stdout.readline() if server.stdout else "").strip()
    if not uri.startswith("ws://"):
        server.terminate()
        raise SystemExit(f"the silent server did not say where it serves: {uri!r}")
    return server, uri


def motion_rule(rules: Path, sets: list[str]) -> tuple[str | None, float]:
    """The rule file's first motion rule, and its `idle_after` (after `sets`): (None, 0) without one."""
    from autorec.rules import Override, load_rules

    ruleset = load_rules(rules, [Override.parse(o) for o in sets])
    for rule in ruleset.rules:
        if rule.trigger_name == "motion":
            return rule.name, float(rule.make_trigger().idle_after)
    return None, 0.0


def floor_of(record: Path, rules: Path, sets: list[str], start: float, end: float) -> tuple[int, float]:
    """(frames, CPU s): the motion rules' decodes of the frames they analyse with stream time in
    [start, end], in a dry run of `record` through `rules` (from the start: same grid, same idle state)."""
    from decodefloor import decode_floor

    from autorec.rules import Override, load_rules

    frames, cpu, _ = decode_floor(load_rules(rules, [Override.parse(o) for o in sets]), record, start, end)
    return frames, cpu


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # autorec ends cleanly on SIGTERM (and cProfile writes its file)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window (default 60)")
    parser.add_argument("--rules", type=Path, default=REPO / "rules" / "motion.yaml", help="rule file of the run")
    parser.add_argument("--set", action="append", default=[], metavar="RULE.OPTION=VALUE", help="run --set, repeatable")
    parser.add_argument("--pdrecord", default=None, help="upstream pdrecord to compare with (default: on PATH)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before the window (connect, imports)")
    parser.add_argument("--profile", type=Path, default=None, help="run `autorec run` under cProfile into FILE")
    parser.add_argument("--py-spy", dest="pyspy", type=Path, default=None, help="sample `autorec run` into FILE")
    parser.add_argument("--top", type=int, default=10, help="profile lines to print")
    parser.add_argument(
        "--scenario", default="demo", help="the simulator's scenario (default demo; night: issue 31's quiet night)"
    )
    parser.add_argument("--idle", action="store_true", help="a server that sends nothing instead of the simulator")
    parser.add_argument(
        "--quiet-rig", action="store_true", help="the simulator's idle scenario; the rule with its idle rate on and off"
    )
    parser.add_argument("--idle-after", default=None, help="with --quiet-rig: --set RULE.idle_after=THIS on both runs")
    args = parser.parse_args()
    rule, idle_after = motion_rule(args.rules.resolve(), args.set)
    if args.quiet_rig:
        if rule is None:
            raise SystemExit("--quiet-rig needs a rule file with a motion rule")
        if args.idle_after is not None:
            args.set.append(f"{rule}.idle_after={args.idle_after}")
            _, idle_after = motion_rule(args.rules.resolve(), args.set)
        args.warmup = max(args.warmup, idle_after + 5.0)

    with tempfile.TemporaryDirectory(prefix="autorec-live-cpu-") as tmp_name:
        tmp = Path(tmp_name)
        sim, uri = start_silent() if args.idle else start_sim("idle" if args.quiet_rig else args.scenario)
        procs: dict[str, subprocess.Popen] = {}
        try:
            pdrecord = args.pdrecord or shutil.which("pdrecord")
            if pdrecord:
                # upstream's CLI (purpledrop/script/pd_record.py): pdrecord [--host URI] FILENAME
                base_name = "upstream pdrecord"
                procs[base_name] = subprocess.Popen(
                    [pdrecord, "--host", uri, str(tmp / "pdrecord.bin")],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            else:
                base_name = "autorec record (pdrecord is not installed)"
            if True:  # autorec record too: the writes-everything recorder of this project, same stream
                procs["autorec record" if pdrecord else base_name] = subprocess.Popen(
                    [*AUTOREC, "record", str(tmp / "record.bin"), "--uri", uri],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            run_cmd = ["run", "--rules", str(args.rules.resolve()), "--uri", uri, "--out", str(tmp / "out")]
            run_cmd += [f"--set={o}" for o in args.set]
            if args.profile:
                argv = [sys.executable, "-m", "cProfile", "-o", str(args.profile), "-m", "autorec", *run_cmd]
            else:
                argv = [*AUTOREC, *run_cmd]
            rules = args.rules.resolve()
            shown = rules.relative_to(REPO) if rules.is_relative_to(REPO) else rules
            run_name = f"autorec run --rules {shown}" + "".join(f" --set {o}" for o in args.set)
            run_name += " (under cProfile)" if args.profile else ""
            procs[run_name] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
            full_sets = [*args.set, f"{rule}.idle_fps=0"]
            full_name = run_name + f" --set {rule}.idle_fps=0"
            if args.quiet_rig:  # the same rule at full rate, same stream, same minute
                (tmp / "full").mkdir()
                procs[full_name] = subprocess.Popen(
                    [
                        *AUTOREC,
                        "run",
                        "--rules",
                        str(args.rules.resolve()),
                        "--uri",
                        uri,
                        "--out",
                        str(tmp / "full" / "out"),
                    ]
                    + [f"--set={o}" for o in full_sets],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    cwd=tmp / "full",
                )

            time.sleep(args.warmup)  # benchmark pacing, not a test
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise SystemExit(f"{name} exited early ({proc.returncode})")
            before = {name: cpu_seconds(p.pid) for name, p in procs.items()}
            sim0, wall0 = cpu_seconds(sim.pid), time.perf_counter()
            spy = None
            if args.pyspy:
                spy_argv = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(procs[run_name].pid)]
                spy_argv += ["--duration", str(int(args.seconds)), "--rate", "100", "--format", "raw"]
                spy_argv += ["--nonblocking", "--threads", "-o", str(args.pyspy)]
                spy = subprocess.Popen(
                    spy_argv,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            stream0 = time.time()  # the simulator's stream time is its wall clock (speed 1)
            time.sleep(args.seconds)
            after = {name: cpu_seconds(p.pid) for name, p in procs.items()}
            sim1, wall1 = cpu_seconds(sim.pid), time.perf_counter()
            stream1 = time.time()
            rss = {name: rss_mib(p.pid) for name, p in procs.items()}
            if spy is not None:
                spy.wait(timeout=60)
        finally:
            for proc in procs.values():
                stop(proc)
            stop(sim)
        # The floors, from the whole-stream recording of the same stream (autorec record's file).
        floors: dict[str, tuple[int, float]] = {}
        if rule is not None and not args.idle:
            floors[run_name] = floor_of(tmp / "record.bin", args.rules.resolve(), args.set, stream0, stream1)
            if args.quiet_rig:
                floors[full_name] = floor_of(tmp / "record.bin", args.rules.resolve(), full_sets, stream0, stream1)
    window = wall1 - wall0
    if args.idle:
        print(f"a connected rig that sends nothing, same {window:.0f} s (after {args.warmup:g} s warm-up):")
        for name in procs:
            cpu = after[name] - before[name]
            print(f"  {name:52s} {cpu:6.3f} CPU s  ({cpu / window * 60:.3f} CPU s a minute, RSS {rss[name]:.0f} MiB)")
        return 0
    what = "the simulator's idle scenario (a still board)" if args.quiet_rig else f"{args.scenario} scenario"
    print(f"10 fps simulated rig, {what}, same stream, same {window:.0f} s (after {args.warmup:g} s warm-up):")
    for name in procs:
        cpu = after[name] - before[name]
        print(f"  {name:52s} {cpu:6.2f} CPU s  ({cpu / window * 100:5.1f} % of a core, RSS {rss[name]:.0f} MiB)")
    print(f"  {'(autorec sim, serving all)':52s} {sim1 - sim0:6.2f} CPU s")
    for name, (frames, cpu) in floors.items():
        label = "decode floor" + (" (idle rate off)" if name != run_name else "")
        print(f"  {label:52s} {cpu:6.2f} CPU s  ({frames} analysed frames decoded, in this process afterwards)")
    base = after[base_name] - before[base_name]
    mine = after[run_name] - before[run_name]
    print(f"ratio run / {base_name.split(' (')[0]}: {mine / base:.2f}x (target <= 2.0x pdrecord)")
    if run_name in floors:
        floor = floors[run_name][1]
        short = base_name.split(" (")[0]
        print(f"ratio run / ({short} + decode floor): {mine / (base + floor):.2f}x (target <= 1.25x)")
    if args.quiet_rig:
        full = after[full_name] - before[full_name]
        print(
            f"idle rate: run {mine:.2f} CPU s against {full:.2f} at full rate: {mine / full:.2f}x "
            f"({floors[run_name][0]} against {floors[full_name][0]} frames analysed); at full rate "
            f"run / ({base_name.split(' (')[0]} + its floor): {full / (base + floors[full_name][1]):.2f}x"
        )
    if "autorec record" in procs and base_name != "autorec record":
        rec = after["autorec record"] - before["autorec record"]
        print(f"ratio run / autorec record: {mine / rec:.2f}x; autorec record / pdrecord: {rec / base:.2f}x")
    if args.profile:
        import pstats

        print(f"\ncProfile of `autorec run` (main thread), top {args.top} by own time:")
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(args.top)
    if args.pyspy:
        print_spy(args.pyspy, args.top)
    return 0


WAITS = ("Condition.wait ", "EpollSelector.select ", "Event.wait ", "Thread.join ", "Queue.get ", "sleep ")
BLOCKING_LINES = frozenset({"ScoreLog._run (autorec/io/scorelog.py:81)"})  # a SimpleQueue.get(timeout=...)


def print_spy(path: Path, top: int) -> None:
    """Top functions of py-spy's collapsed stacks ("frame;frame;... count"), by own and by inclusive samples."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = waiting = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith("thread (")]
        if not frames:
            continue
        # py-spy's idle detection misses threads blocked in these here (seen in a container):
        # count them apart, as waiting, not as costs.
        if frames[-1].startswith(WAITS) or frames[-1] in BLOCKING_LINES:
            waiting += n
            continue
        total += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
    print(
        f"\npy-spy of `autorec run`, all threads, {total} samples at 100/s"
        f" ({waiting} more were blocked waits, left out):"
    )
    print(f"  top {top} by own samples:")
    for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print(f"    {n / total * 100:5.1f} %  {frame}")
    print(f"  top {top} autorec functions by inclusive samples:")
    mine = [(f, n) for f, n in inclusive.items() if "autorec/" in f and "__main__" not in f and "cli.py" not in f]
    for frame, n in sorted(mine, key=lambda kv: -kv[1])[:top]:
        print(f"    {n / total * 100:5.1f} %  {frame}")


if __name__ == "__main__":
    raise SystemExit(main())
