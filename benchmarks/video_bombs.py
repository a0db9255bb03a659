"""Benchmark: peak memory of `autorec video` on a log holding decompression bombs.

A camera frame is a JPEG; its header may claim any size. A valid 12000x12000 JPEG is
~560 kB on the wire (a flat grey picture, built by hand, `tests/support/videolog.py:flat_jpeg`) and
144 MB once decoded; the H.264 export decodes several frames at once in its thread pool.
Two logs: (a) 40 ordinary 320x240 frames with four such bombs among them; (b) the four
bombs first, then 6 ordinary frames: without a cap the video takes its size from the first
frame that decodes, so x264 encodes 12000x12000 pictures (every later frame scaled up).

Each export runs in its own child process (`python -m autorec video ...`), and the child's
peak RSS (`ru_maxrss`) is printed for:
- the default pixel cap (4096x4096): the bombs are skipped without decoding;
- the cap raised to 16384x16384 (the baseline: what autorec did before the cap).
Both modes (H.264, --copy). Takes ~10 s. Bombs first in H.264 without the cap needs ~8 GB
and ~50 s, so it runs only with `--all`.

Run:
    .venv/bin/python benchmarks/video_bombs.py [--all]

Figures of one `--all` run (2 cores, x86_64), peak RSS of the export process:

    bombs  mode  pixel cap                exit   peak RSS    time
    among  h264  4096x4096 (default)         0       65MB    0.6s
    among  h264  16384x16384 (baseline)      0      209MB    2.6s
    among  copy  4096x4096 (default)         0       53MB    0.7s
    among  copy  16384x16384 (baseline)      0       54MB    0.7s
    first  h264  4096x4096 (default)         0       61MB    0.7s
    first  h264  16384x16384 (baseline)      0     8190MB   50.8s
    first  copy  4096x4096 (default)         0       53MB    0.5s
    first  copy  16384x16384 (baseline)      0       65MB    0.5s
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.videolog import T0, flat_jpeg, frames_log, make_jpeg  # noqa: E402

PEAK = (
    "import resource, subprocess, sys; "
    "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
    "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
    "print(r.stdout.strip().splitlines()[-1:] or r.stderr.strip().splitlines()[-1:], file=sys.stderr)"
)


def peak_rss(argv: list[str]) -> tuple[int, float, float]:
    """(exit code, peak RSS in MB of the child running argv, seconds)."""
    began = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PEAK, *argv], capture_output=True, text=True, check=True)
    code, kb = out.stdout.split()
    print(f"    {out.stderr.strip()}")
    return int(code), int(kb) / 1024, time.perf_counter() - began


def main() -> None:
    all_runs = "--all" in sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        bomb = flat_jpeg(12000, 12000)
        among = [make_jpeg(i) for i in range(40)]
        for at in (5, 15, 16, 30):
            among.insert(at, bomb)
        first = [bomb] * 4 + [make_jpeg(i) for i in range(6)]
        caps = (("4096x4096 (default)", []), ("16384x16384 (baseline)", ["--max-pixels", "16384x16384"]))
        rows = []
        for name, jpegs in (("among", among), ("first", first)):
            log = frames_log(Path(tmp) / f"{name}.bin", [T0 + i * 0.1 for i in range(len(jpegs))], jpegs)
            size = os.path.getsize(log) / 1e6
            print(f"log '{name}': {len(jpegs)} frames, 4 of them 12000x12000 ({len(bomb) / 1000:.0f} kB each)", end="")
            print(f", {size:.1f} MB")
            video = [sys.executable, "-m", "autorec", "video", str(log), "--force", "-q"]
            for mode, extra, out in (("h264", [], "v.mp4"), ("copy", ["--copy"], "v.mkv")):
                for label, cap in caps:
                    if name == "first" and mode == "h264" and cap and not all_runs:
                        print(f"  {mode:4}  cap {label}: skipped (needs ~8 GB of memory; --all runs it)")
                        continue
                    print(f"  {mode:4}  cap {label}")
                    code, mb, secs = peak_rss(video + extra + cap + ["-o", str(Path(tmp) / out)])
                    rows.append((name, mode, label, code, mb, secs))
        print()
        print(f"{'bombs':6} {'mode':5} {'pixel cap':24} {'exit':>4} {'peak RSS':>10} {'time':>7}")
        for name, mode, label, code, mb, secs in rows:
            print(f"{name:6} {mode:5} {label:24} {code:4d} {mb:8.0f}MB {secs:6.1f}s")
        for name in ("among", "first"):
            for mode in ("h264", "copy"):
                found = [r[4] for r in rows if r[0] == name and r[1] == mode]
                if len(found) < 2:
                    continue
                capped, base = found
                print(
                    f"bombs {name}, {mode}: peak RSS {capped:.0f} MB with the cap, {base:.0f} MB without "
                    f"({capped / base:.2f}x)"
                )


if __name__ == "__main__":
    main()
