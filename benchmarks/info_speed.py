"""How fast `autorec info` scans a camera-heavy log, against a plain sequential read of the same file.

Builds (in a temp dir) a log shaped like a real rig's stream: 10 camera
frames/s (image_transform + image with a real ~110-150 KB board photo when
../shared/fixtures is present, JPEG-sized filler otherwise), scan_capacitance
4/s, group_capacitance 2/s, hv_regulator 0.4/s, electrode_state 2/s. Then
times, in this process and on the same (page-cached) file:

- baseline: reading the whole file sequentially in 1 MiB chunks;
- `autorec.commands.info.read_log_info` on it;

once cold (each contender reads its own, separately built copy after
posix_fadvise DONTNEED evicted it from the page cache: this file only, not
the machine's; on a VM the host's cache may still help) and best-of-N warm, and prints MB/s for both, their ratio, the
bytes each actually read, records/s and peak RSS. A second,
small-record log (no images) shows the per-record cost.

    .venv/bin/python benchmarks/info_speed.py [--mb 400] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autorec import events  # noqa: E402
from autorec.commands.info import read_log_info  # noqa: E402
from autorec.io.logfile import LogWriter  # noqa: E402
from autorec.proto import PurpleDropEvent  # noqa: E402

FIXTURES = REPO.parent / "shared" / "fixtures"


def photos() -> list[bytes]:
    found = [p.read_bytes() for p in sorted(FIXTURES.glob("board-photo-*.jpg"))]
    if found:
        return found
    return [b"\xff\xd8" + os.urandom(130_000) + b"\xff\xd9"]


def event(kind: str, t: float, **fill) -> bytes:
    e = PurpleDropEvent()
    inner = getattr(e, kind)
    inner.SetInParent()
    if kind == "scan_capacitance":  # sizes as upstream pdserver sends them (protocol.md)
        for pin in range(128):
            m = inner.measurements.add()
            if pin % 8 == 0:
                m.capacitance, m.raw = 1.5, 1000.0
    elif kind == "electrode_state":
        for groups in (inner.drive_groups, inner.drive_groups, *[inner.scan_groups] * 5):
            groups.add().electrodes.extend([False] * 128)
    for name, value in fill.items():
        attr = getattr(inner, name)
        if isinstance(value, list):
            attr.extend(value)
        else:
            setattr(inner, name, value)
    events.set_timestamp(e, t)
    return e.SerializeToString()


def build(path: Path, target_bytes: int, with_images: bool) -> int:
    jpegs = photos()
    t = 1_750_000_000.0
    step = 0.05  # 20 ticks per second
    tick = 0
    with LogWriter(path, "overwrite") as w:
        while w.bytes < target_bytes:
            if with_images and tick % 2 == 0:
                w.write(event("image_transform", t, transform=[1.0] * 9, image_width=1024, image_height=768))
                w.write(event("image", t, image_data=jpegs[(tick // 2) % len(jpegs)]))
            if tick % 5 == 0:
                w.write(event("scan_capacitance", t))
            if tick % 10 == 0:
                w.write(event("group_capacitance", t, measurements=[1.0] * 5, raw_measurements=[2.0] * 5))
                w.write(event("electrode_state", t))
            if tick % 50 == 0:
                w.write(event("hv_regulator", t, voltage=120.0, v_target_out=1.2))
            t += step
            tick += 1
            if w.bytes + 0 >= target_bytes:
                break
        w.flush()
    return path.stat().st_size


def sequential_read(path: Path) -> None:
    buf = bytearray(1024 * 1024)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def evict(path: Path) -> bool:
    """Drop this one file's pages from the page cache (not the machine's), to time a cold read."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def rchar() -> int | None:
    """Bytes this process has read through read() calls so far (Linux)."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def timed(fn) -> tuple[float, int | None]:
    before = rchar()
    t0 = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - t0
    after = rchar()
    return elapsed, None if before is None or after is None else after - before


def measure(label: str, path: Path, twin: Path | None, repeat: int) -> None:
    size = path.stat().st_size
    mb = size / 1e6
    summary = read_log_info(str(path))
    print(f"{label}: {mb:.0f} MB, {summary.records} records, {summary.kinds.get('image', [0])[0]} images")

    def show(name: str, seconds: float, nread: int | None) -> None:
        extra = f", read {nread / 1e6:.0f} MB" if nread is not None else ""
        print(f"  {name:<34}{mb / seconds:8.0f} MB/s ({seconds:.3f}s{extra})")

    if twin is not None and evict(path) and evict(twin):
        # Cold: each contender reads its own, separately built copy for the first
        # time after evicting it from this machine's page cache. On a VM, the
        # host's cache may still serve part of it: treat these as rough.
        base_cold = timed(lambda: sequential_read(twin))
        scan_cold = timed(lambda: read_log_info(str(path)))
        show("cold cache, baseline plain read:", *base_cold)
        show("cold cache, autorec info:", *scan_cold)
        print(f"  cold ratio info / baseline:       {base_cold[0] / scan_cold[0]:8.2f}x")
    sequential_read(path)  # warm the page cache for both contenders alike
    base = min(timed(lambda: sequential_read(path))[0] for _ in range(repeat))
    scan = min(timed(lambda: read_log_info(str(path)))[0] for _ in range(repeat))
    show("warm cache, baseline plain read:", base, None)
    show("warm cache, autorec info:", scan, None)
    print(f"  warm ratio info / baseline:       {base / scan:8.2f}x; {summary.records / scan:,.0f} records/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=400, help="size of the camera log (MB)")
    parser.add_argument("--small-mb", type=float, default=20, help="size of the no-image log (MB)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="autorec-info-bench-") as tmp:
        for label, mb, images in (("camera log", args.mb, True), ("no-image log", args.small_mb, False)):
            log, twin = Path(tmp) / "log.bin", Path(tmp) / "twin.bin"
            t0 = time.perf_counter()
            build(log, int(mb * 1e6), with_images=images)
            build(twin, int(mb * 1e6), with_images=images)
            print(f"built two {log.stat().st_size / 1e6:.0f} MB {label}s in {time.perf_counter() - t0:.1f}s")
            measure(label, log, twin, args.repeat)
            log.unlink()
            twin.unlink()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS: {rss / 1024 if sys.platform != 'darwin' else rss / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
