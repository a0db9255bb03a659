"""Which way of turning a camera JPEG into a small grayscale image is fastest?

Measures, on one core, frames/s for each option the dependencies give:
PyAV's mjpeg decoder at full size (luma plane only, and luma + numpy 4x4 block
mean), with DCT-domain downscaling (`lowres` 1/2/3 = 1/2, 1/4, 1/8 size), with
the decoder's `gray` flag (skips chroma), with `flags2=fast`; libjpeg-turbo
through simplejpeg (gray output, DCT scaling to 1/4 and 1/8, with and without
`fastdct`); autorec's `GrayDecoder` with each backend (header checks included);
and, when it is importable, OpenCV's reduced-grayscale imdecode for comparison
only (OpenCV is not a dependency of autorec).

Options run interleaved, best of several rounds each (the machine is shared),
and each is printed as a ratio against the first (PyAV full size) and against
PyAV lowres at the same scale.

    .venv/bin/python benchmarks/decode_options.py [--seconds 1.0] [PHOTO ...]

Defaults to ../shared/fixtures/board-photo-1.jpg (baseline) and -2 (progressive).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from autorec.frames.graydecode import GrayDecoder, turbo_available

FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures"


def pyav_decoder(lowres: int = 0, gray: bool = False, fast: bool = False) -> Callable[[bytes], np.ndarray]:
    ctx = av.CodecContext.create("mjpeg", "r")
    opts = {"lowres": str(lowres)}
    if gray:
        opts["flags"] = "gray"
    if fast:
        opts["flags2"] = "fast"
    ctx.options = opts
    ctx.thread_count = 1

    def decode(jpeg: bytes) -> np.ndarray:
        frame = ctx.decode(av.Packet(jpeg))[0]
        plane = frame.planes[0]
        return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: frame.height, : frame.width]

    return decode


def block_mean(factor: int, inner: Callable[[bytes], np.ndarray]) -> Callable[[bytes], np.ndarray]:
    def decode(jpeg: bytes) -> np.ndarray:
        y = inner(jpeg)
        h, w = y.shape[0] // factor * factor, y.shape[1] // factor * factor
        return y[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3), dtype=np.float32)

    return decode


def options() -> dict[str, Callable[[bytes], np.ndarray]]:
    out: dict[str, Callable[[bytes], np.ndarray]] = {
        "pyav full, luma plane": pyav_decoder(),
        "pyav full + numpy 4x4 mean": block_mean(4, pyav_decoder()),
        "pyav full gray": pyav_decoder(gray=True),
        "pyav lowres=1 (1/2)": pyav_decoder(1),
        "pyav lowres=2 (1/4)": pyav_decoder(2),
        "pyav lowres=3 (1/8)": pyav_decoder(3),
        "pyav lowres=2 gray": pyav_decoder(2, gray=True),
        "pyav lowres=3 gray": pyav_decoder(3, gray=True),
        "pyav lowres=2 gray fast": pyav_decoder(2, gray=True, fast=True),
    }
    backends = ("pyav", "turbo") if turbo_available() else ("pyav",)
    for scale in (4, 8):
        for backend in backends:
            decoder = GrayDecoder(scale, backend)
            out[f"GrayDecoder({scale}, {backend})"] = lambda j, d=decoder: d.decode(j).pixels
    if turbo_available():
        import simplejpeg

        for name, size, fast in (("1/4", 4, False), ("1/4 fastdct", 4, True), ("1/8", 8, False)):

            def sj(jpeg: bytes, size: int = size, fast: bool = fast) -> np.ndarray:
                return simplejpeg.decode_jpeg(
                    jpeg, colorspace="GRAY", min_width=1024 // size, min_height=768 // size, fastdct=fast
                )

            out[f"simplejpeg gray {name}"] = sj
    try:
        import cv2  # optional, comparison only

        cv2.setNumThreads(1)
        for name, flag in (("1/4", cv2.IMREAD_REDUCED_GRAYSCALE_4), ("1/8", cv2.IMREAD_REDUCED_GRAYSCALE_8)):

            def dec(jpeg: bytes, flag: int = flag) -> np.ndarray:
                return cv2.imdecode(np.frombuffer(jpeg, np.uint8), flag)

            out[f"opencv imdecode reduced gray {name} (not a dep)"] = dec
    except ImportError:
        pass
    return out


def rates(fns: list[Callable[[bytes], np.ndarray]], jpeg: bytes, seconds: float, rounds: int = 4) -> list[float]:
    """Calls/s of each fn: `rounds` interleaved runs of ~seconds/rounds each, best kept, so that
    other load on a shared machine disturbs all options alike and the ratios stay meaningful."""
    best = [0.0] * len(fns)
    for _ in range(rounds):
        for k, fn in enumerate(fns):
            n = 0
            start = time.perf_counter()
            deadline = start + seconds / rounds
            while True:
                fn(jpeg)
                n += 1
                if n % 16 == 0 and time.perf_counter() >= deadline:
                    break
            best[k] = max(best[k], n / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="*", type=Path)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per option and photo (split over the rounds)")
    args = parser.parse_args()
    photos = args.photos or [FIXTURES / "board-photo-1.jpg", FIXTURES / "board-photo-2.jpg"]
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the target says
    opts = options()
    for photo in photos:
        jpeg = photo.read_bytes()
        print(f"{photo.name} ({len(jpeg)} bytes)")
        shapes = [fn(jpeg).shape for fn in opts.values()]
        fps = dict(zip(opts, rates(list(opts.values()), jpeg, args.seconds)))
        baseline = next(iter(fps.values()))
        for (name, value), shape in zip(fps.items(), shapes):
            print(f"  {name:48s} {value:7.0f} frames/s  x{value / baseline:4.2f}  -> {shape[1]}x{shape[0]}")
        for scale, lowres in ((4, 2), (8, 3)):
            ref = fps[f"pyav lowres={lowres} (1/{scale})"]
            mine = fps.get(f"GrayDecoder({scale}, turbo)")
            pyav = fps[f"GrayDecoder({scale}, pyav)"]
            if mine:
                print(
                    f"  1/{scale}: GrayDecoder turbo / pyav backend x{mine / pyav:.2f};"
                    f" turbo / raw pyav lowres x{mine / ref:.2f}"
                )


if __name__ == "__main__":
    main()
