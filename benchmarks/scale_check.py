"""Scale check: `run --log LOG --dry-run` with rules/motion.yaml on a long 10 fps simulated log.

    .venv/bin/python benchmarks/scale_check.py [--hours 4] [--jobs N] [--dir DIR]

Writes an N-hour log (demo scenario, simulator core + camera renderer, as
`autorec record --sim` would keep it; ~4 GB an hour) into a temporary directory
(under --dir, default the system's temp dir) after checking the free disk space,
backtests it (`--jobs`, default: autorec's default), samples the backtest's RSS every
2 s from /proc, prints time, x real time, peak RSS and RSS at 10/50/90 % of the run
(flat memory: the pre-roll and read-ahead are bounded, the log is streamed), and
deletes the log.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from live_cpu import rss_mib  # noqa: E402
from motion_speed import write_sim_log  # noqa: E402

BYTES_PER_HOUR = 4.0e9  # measured: 318 MB for 5 minutes at 10 fps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=4.0)
    parser.add_argument("--jobs", type=int, default=None, help="run --jobs (default: autorec's default)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the temporary log")
    args = parser.parse_args()
    base = args.dir or Path(tempfile.gettempdir())
    need = args.hours * BYTES_PER_HOUR
    free = shutil.disk_usage(base).free
    print(f"free disk in {base}: {free / 1e9:.0f} GB; the log needs ~{need / 1e9:.0f} GB")
    if free < 1.5 * need:
        print("not enough free disk (wanted 1.5x the log); use --hours or --dir", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="autorec-scale-", dir=base) as tmp:
        log = Path(tmp) / "long.bin"
        began = time.perf_counter()
        info = write_sim_log(log, args.hours * 60)
        size = log.stat().st_size
        print(
            f"log: {args.hours:g} h at 10 fps, {size / 1e9:.1f} GB, {info['images']} frames,"
            f" {info['messages']} messages"
            f" (written in {time.perf_counter() - began:.0f} s)"
        )
        argv = [sys.executable, "-m", "autorec", "run", "--rules", str(REPO / "rules" / "motion.yaml")]
        argv += ["--log", str(log), "--dry-run"]
        if args.jobs is not None:
            argv += ["--jobs", str(args.jobs)]
        samples: list[tuple[float, float]] = []
        began = time.perf_counter()
        with open(Path(tmp) / "out.txt", "w") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL)
            while proc.poll() is None:
                try:
                    samples.append((time.perf_counter() - began, rss_mib(proc.pid)))
                except (OSError, ValueError):
                    pass
                try:
                    proc.wait(timeout=2.0)
                except subprocess.TimeoutExpired:
                    pass
        wall = time.perf_counter() - began
        lines = (Path(tmp) / "out.txt").read_text().strip().splitlines()
        if proc.returncode != 0:
            print(f"backtest failed ({proc.returncode})", file=sys.stderr)
            return 1
    print(f"deleted {log}")
    print(
        f"run --log --dry-run rules/motion.yaml{'' if args.jobs is None else f' --jobs {args.jobs}'}:"
        f" {wall:.0f} s wall, {args.hours * 3600 / wall:.0f}x real time, {size / wall / 1e6:.0f} MB/s"
    )
    rss = [r for _, r in samples]
    if rss:
        at = {p: rss[min(len(rss) - 1, int(p / 100 * len(rss)))] for p in (10, 50, 90)}
        print(
            f"RSS: peak {max(rss):.0f} MiB; at 10 % {at[10]:.0f}, 50 % {at[50]:.0f}, 90 % {at[90]:.0f} MiB"
            f" ({len(rss)} samples)"
        )
    print("last lines of the dry run:\n  " + "\n  ".join(lines[-3:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
