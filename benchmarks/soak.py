"""Soak: a simulated night against the real recorder, checking memory and that nothing inside a segment is lost.

Runs three things:
- `autorec run --rules rules/overnight.yaml --sim` with the built-in
  simulator (demo scenario, camera on, faults) at `--speed` (<= 20x) for
  `--hours` simulated hours, in its own process, whose RSS (recorder and
  simulator together) is sampled from /proc every few seconds;
- in this process, a second websocket client that keeps a 64-bit hash and the
  (carried-forward) time of every valid message the simulator sent, instead of
  a full copy on disk.

Each segment is checked as soon as its index line appears, then deleted (so
a night of camera frames never fills the disk; `--keep-segments` keeps
them): its records are matched, in order, against the sent hashes; every sent
message between the segment's first and last matched record that is missing
from the file is lost. Losses inside a gap the recorder wrote into the
sidecar (a disconnect, a counted drop) are reported apart from the rest,
which must be 0.

    .venv/bin/python benchmarks/soak.py [--hours 8] [--speed 20] [--fps 10] [--faults ...]

Prints RSS over time, growth after warm-up (must stay under the pre-roll byte
cap + 20 MB), segments, reconnects, and the message counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path

from autorec import events
from autorec.io.logfile import LogReader
from autorec.io.source import Connected, Disconnected, Message, WebsocketSource

REPO = Path(__file__).resolve().parent.parent
GAP_SLACK = 10.0  # simulated seconds (the tick lag is 0.25 real s, 5 s simulated at 20x)


def h64(payload: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(payload, digest_size=8).digest(), "little")


@dataclass
class Sent:
    """What the simulator sent, as seen by the checking client: hashes and times, in order."""

    hashes: array = field(default_factory=lambda: array("Q"))
    times: array = field(default_factory=lambda: array("d"))
    kinds: array = field(default_factory=lambda: array("B"))
    first: dict[int, int] = field(default_factory=dict)  # hash -> first position
    dups: set[int] = field(default_factory=set)  # hashes sent more than once
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_time: float = 0.0
    rejected: int = 0
    connects: int = 0
    disconnects: int = 0

    def add(self, payload: bytes, t: float | None, kind: str | None) -> None:
        h = h64(payload)
        if t is not None:
            self.last_time = t
        with self.lock:
            pos = len(self.hashes)
            self.hashes.append(h)
            self.times.append(self.last_time)
            self.kinds.append(events.NUMBER_BY_KIND.get(kind or "", 0))
            if h in self.first:
                self.dups.add(h)
            else:
                self.first[h] = pos


@dataclass
class Check:
    segments: int = 0
    records: int = 0
    matched: int = 0
    unmatched: int = 0  # snapshot copies, and records not found in the sent stream
    lost_in_gaps: int = 0
    lost: int = 0  # sent, inside a segment, not in it, not explained by a recorded gap
    lost_examples: list[str] = field(default_factory=list)
    lost_kinds: dict[str, int] = field(default_factory=dict)
    out_of_order: int = 0
    kept: list[str] = field(default_factory=list)  # segments with losses, kept for a look
    recorded_gaps: int = 0
    dropped_counted: int = 0  # the recorder's own counted drops (sidecars)
    recovered: int = 0
    bytes: int = 0


def check_segment(path: Path, sidecar: dict, sent: Sent, result: Check) -> int:
    """Match one segment against the sent stream; returns how many messages it lost (outside gaps).

    Records whose payload was sent exactly once are anchors: their position in the sent stream is
    certain. Between two consecutive anchors, the segment must hold every message sent between
    them; records in between (payloads sent more than once, e.g. unchanged electrode states) are
    matched only inside that window, so a payload the checker itself missed can never make the
    match jump ahead.
    """
    # Gap times are the recorder's stream time, which lags real arrival by its tick lag: allow slack.
    slack = GAP_SLACK
    gaps = [
        (g["start"] - slack, (g["end"] if g.get("end") is not None else float("inf")) + slack) for g in sidecar["gaps"]
    ]
    result.recorded_gaps += len(gaps)
    result.dropped_counted += sidecar.get("dropped", {}).get("records", 0)
    result.recovered += bool(sidecar.get("recovered"))
    hashes = [h64(r.payload) for r in LogReader(path).records()]
    result.records += len(hashes)
    result.bytes += path.stat().st_size
    # The snapshot opens the segment: copies of older messages (re-stamped, or as sent for kinds
    # without a timestamp), which are not part of the stream at this point.
    snap = (sidecar.get("snapshot") or {}).get("records", 0)
    result.unmatched += snap
    hashes = hashes[snap:]
    lost_here = 0
    with sent.lock:
        sent_hashes, sent_times, sent_kinds = sent.hashes, sent.times, sent.kinds
        anchors = [(i, sent.first[h]) for i, h in enumerate(hashes) if h in sent.first and h not in sent.dups]
        # Anchors out of order would mean the recorder reordered messages: count, never match across.
        ordered: list[tuple[int, int]] = []
        for i, pos in anchors:
            if ordered and pos <= ordered[-1][1]:
                result.out_of_order += 1
                continue
            ordered.append((i, pos))
        if not ordered:
            result.unmatched += len(hashes)
            return 0
        result.unmatched += ordered[0][0]  # records before the first anchor cannot be placed
        result.matched += 1
        for (i1, p1), (i2, p2) in itertools.pairwise(ordered):
            window = {}  # hash -> positions in (p1, p2), in order
            for m in range(p1 + 1, p2):
                window.setdefault(sent_hashes[m], []).append(m)
            taken: set[int] = set()
            for h in hashes[i1 + 1 : i2]:
                positions = window.get(h)
                if positions:
                    taken.add(positions.pop(0))
                    result.matched += 1
                else:
                    result.unmatched += 1
            result.matched += 1  # the anchor at i2
            for m in range(p1 + 1, p2):
                if m in taken:
                    continue
                t = sent_times[m]
                if any(a <= t <= b for a, b in gaps):
                    result.lost_in_gaps += 1
                    continue
                lost_here += 1
                kind = events.KIND_BY_NUMBER.get(sent_kinds[m], "?")
                result.lost_kinds[kind] = result.lost_kinds.get(kind, 0) + 1
                if len(result.lost_examples) < 5:
                    result.lost_examples.append(f"{path.name}: sent #{m} ({kind}) at {t:.3f}")
        result.unmatched += len(hashes) - 1 - ordered[-1][0]  # after the last anchor: not checked
    result.lost += lost_here
    return lost_here


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of `pid` in kB, (0, 0) when it is gone."""
    rss = hwm = 0
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


async def listen(uri: str, sent: Sent, stop: asyncio.Event) -> None:
    async with WebsocketSource(uri, max_backoff=0.5) as source:
        stopper = asyncio.ensure_future(stop.wait())
        stopper.add_done_callback(lambda _: source.stop())
        async for item in source:
            if isinstance(item, Message):
                if item.rejected is not None or item.event is None:
                    sent.rejected += 1
                    continue
                sent.add(item.payload, events.timestamp(item.event), events.kind(item.event))
            elif isinstance(item, Connected):
                sent.connects += 1
            elif isinstance(item, Disconnected):
                sent.disconnects += 1
        stopper.cancel()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=8.0, help="simulated hours (default 8)")
    ap.add_argument("--speed", type=float, default=20.0, help="simulated seconds per real second (<= 20)")
    ap.add_argument("--fps", type=float, default=10.0, help="camera frames per simulated second")
    ap.add_argument("--faults", default="close=30min,garbage=5min,truncated=10min,text=15min,oversized=1h")
    ap.add_argument("--rules", default=str(REPO / "rules" / "overnight.yaml"))
    ap.add_argument("--warmup", type=float, default=0.5, help="simulated hours before RSS growth is measured")
    ap.add_argument("--sample", type=float, default=5.0, help="real seconds between RSS samples")
    ap.add_argument("--out", default=None, help="output directory (default: a temporary one)")
    ap.add_argument("--keep-segments", action="store_true", help="keep segments after checking them")
    args = ap.parse_args()
    if args.speed > 20:
        ap.error("--speed must be <= 20")

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="autorec-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    # The simulator runs inside the recorder (`run --sim`), so the recorder's tick clock runs at the
    # simulator's speed and its gaps are in simulated time like everything else.
    rec_cmd = [sys.executable, "-m", "autorec", "run", "--rules", args.rules, "--out", str(out), "--sim"]
    rec_cmd += ["--scenario", "demo", "--speed", str(args.speed), "--fps", str(args.fps)]
    rec_cmd += ["--duration", f"{args.hours * 3600:.0f}s"]
    if args.faults:
        rec_cmd += ["--faults", args.faults]
    rec_log_path = out / "soak-recorder.log"
    rec_log = open(rec_log_path, "w")
    sent = Sent()
    check = Check()
    samples: list[tuple[float, float, int, int]] = []  # (real s, simulated h, rss kB, hwm kB)

    rec = subprocess.Popen(rec_cmd, stdout=rec_log, stderr=subprocess.STDOUT)

    async def run() -> int:
        t0 = time.monotonic()
        uri = None
        while uri is None:  # the simulator's address, from the recorder's log
            m = re.search(r"recording the simulator \((ws://[^)]+)\)", rec_log_path.read_text())
            if m:
                uri = m.group(1)
            elif rec.poll() is not None or time.monotonic() - t0 > 60:
                print(f"recorder did not start; see {rec_log_path}")
                return 1
            else:
                await asyncio.sleep(0.02)
        stop = asyncio.Event()
        listener = asyncio.ensure_future(listen(uri, sent, stop))
        index = out / "index.jsonl"
        done_lines = 0
        next_sample = 0.0
        next_print = 0.0
        while rec.poll() is None:
            now = time.monotonic() - t0
            if now >= next_sample:
                next_sample = now + args.sample
                rss, hwm = rss_kb(rec.pid)
                samples.append((now, now * args.speed / 3600, rss, hwm))
                if now >= next_print:
                    next_print = now + 60
                    print(
                        f"[{now:7.0f} s real, {now * args.speed / 3600:5.2f} h sim] recorder RSS {rss / 1024:6.1f} MB"
                        f"  sent {len(sent.hashes)}  segments checked {check.segments}  lost {check.lost}",
                        flush=True,
                    )
            done_lines = await asyncio.to_thread(check_new, index, done_lines, out, sent, check, args.keep_segments)
            await asyncio.sleep(1.0)
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await asyncio.to_thread(check_new, index, done_lines, out, sent, check, args.keep_segments)
        print(f"recorder finished: exit {rec.returncode} after {time.monotonic() - t0:.0f} s")
        return rec.returncode

    try:
        code = asyncio.run(run())
    finally:
        if rec.poll() is None:  # interrupted: do not leave the recorder running
            rec.terminate()
            rec.wait(30)
    report(args, out, sent, check, samples)
    return 0 if code == 0 and check.lost == 0 else 1


def check_new(index: Path, done: int, out: Path, sent: Sent, check: Check, keep: bool) -> int:
    """Check the segments whose index lines appeared since line `done`; returns the new line count."""
    try:
        lines = index.read_text().splitlines()
    except FileNotFoundError:
        return done
    for line in lines[done:]:
        try:
            entry = json.loads(line)
        except ValueError:
            return done  # a line being written: next time
        log = out / entry["path"]
        sidecar_path = out / entry.get("sidecar", Path(entry["path"]).with_suffix(".json").name)
        sidecar = json.loads(sidecar_path.read_text())
        lost = check_segment(log, sidecar, sent, check)
        check.segments += 1
        if lost:
            check.kept.append(log.name)
        elif not keep:
            for p in (log, sidecar_path, log.with_suffix(".mp4"), log.with_suffix(".mkv")):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        done += 1
    return done


def rec_text(out: Path) -> str:
    return (out / "soak-recorder.log").read_text(errors="replace")


def report(args: argparse.Namespace, out: Path, sent: Sent, check: Check, samples: list) -> None:
    print()
    print(f"soak: {args.hours:g} simulated h at {args.speed:g}x, camera {args.fps:g} fps, faults {args.faults}")
    print("RSS of the recorder over time (simulated h: MB):")
    step = max(1, len(samples) // 16)
    for real, simh, rss, _ in samples[::step]:
        print(f"  {simh:5.2f} h ({real:6.0f} s real): {rss / 1024:7.1f} MB")
    warm = [s for s in samples if s[1] >= args.warmup and s[2] > 0]
    if warm:
        base = warm[0][2]
        peak = max(s[2] for s in warm)
        print(
            f"RSS after {args.warmup:g} h warm-up: {base / 1024:.1f} MB, peak {peak / 1024:.1f} MB, "
            f"growth {(peak - base) / 1024:.1f} MB; peak VmHWM {max(s[3] for s in samples) / 1024:.1f} MB"
        )
    telemetry = sum(p.stat().st_size for p in out.glob("telemetry-*.bin"))
    reconnects = 0
    with contextlib.suppress(OSError):
        reconnects = rec_text(out).count("connected to ws://") - 1
    # The simulator, like pdserver, drops the oldest queued messages of a client that falls too far
    # behind (a loaded machine): such messages never reach the recorder and show up as lost below.
    slow = {}
    with contextlib.suppress(OSError):
        for m in re.finditer(
            r"client (\S+) is too slow: dropped \d+ oldest message\(s\) \((\d+) so far\)", rec_text(out)
        ):
            slow[m.group(1)] = int(m.group(2))
    print(f"sent (valid) {len(sent.hashes)}, bad frames seen by the checker {sent.rejected}")
    if slow:
        print(f"simulator dropped {sum(slow.values())} message(s) for slow clients (machine too loaded): {slow}")
    print(f"checker connects {sent.connects}, recorder reconnects {max(reconnects, 0)}")
    print(
        f"segments {check.segments} ({check.recovered} recovered), {check.records} records, "
        f"{check.bytes / 1e6:.1f} MB; telemetry {telemetry / 1e6:.1f} MB"
    )
    print(
        f"records matched {check.matched}, not placed {check.unmatched} (snapshots, edges), "
        f"recorder's counted drops {check.dropped_counted}, recorded gaps {check.recorded_gaps}"
    )
    print(f"messages lost inside segments: {check.lost} (plus {check.lost_in_gaps} inside recorded gaps)")
    if check.lost:
        print(f"  by kind: {check.lost_kinds}; segments kept for a look: {check.kept}")
    if check.out_of_order:
        print(f"  records out of order: {check.out_of_order}")
    for ex in check.lost_examples:
        print("  e.g.", ex)
    print(f"output: {out}")


if __name__ == "__main__":
    sys.exit(main())
