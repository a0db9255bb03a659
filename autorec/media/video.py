"""Camera frames of a log to a video file, with each frame at its own time.

Two modes:
- `h264`: frames are decoded (JPEG) in a thread pool and re-encoded with
  libx264 into MP4, while the encoder (itself multithreaded) runs in the
  calling thread, which also decodes frames that no worker has started while
  it would wait; PyAV releases the GIL inside the codecs, so decode and
  encode overlap across cores.
- `copy`: the original JPEG bytes go unchanged into an MKV (`V_MJPEG`), one
  packet per frame: lossless, no decode, no encode.

Timing (both modes): `autorec.media.frametiming` chooses the frames and their times (the
recorder's own clock rule for the log's timestamps, strictly increasing presentation times,
long camera gaps cut to a still, `--start`/`--end`, `--fps`).

Robustness contract:
- A frame that does not decode whole (FFmpeg's strict `err_detect=explode`)
  is skipped and counted in `corrupt`; in copy mode, where nothing is decoded,
  a frame is skipped as corrupt when it is not a JPEG with a readable size and
  an end marker.
- h264: a frame of another size than the first is scaled to the first size
  (counted in `rescaled`); copy keeps every JPEG as it is.
- Memory is bounded whatever the frames claim: a frame whose JPEG header
  says more than `max_pixels` (default 4096x4096) is never decoded, in
  either mode: it is skipped, counted in `too_large`, and the first one is
  logged once (a 12000x12000 JPEG is a few kB and 430 MB decoded); the first
  frames held for the CRF probe are at most `CRF_PROBE_PIXELS`. FFmpeg's
  own `max_pixels` limit is set to the same value in the decoder, so a header
  that hides its size from `autorec.frames.jpeg` is refused there too.
- The file is written as `OUT.partial` and renamed to `OUT` only when
  complete, so a killed export never leaves a broken file under the real name.
- Failures raise `ExportError` with a one-line message; the partial file is
  removed.
"""

from __future__ import annotations

import logging
import os
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from av.video.frame import PictureType

from autorec import events
from autorec.dates import clamp_time, local_strftime, utc_iso
from autorec.frames.jpeg import jpeg_complete, jpeg_size
from autorec.io.atomicfile import fsync_path, open_nofollow, partial_path
from autorec.io.logfile import LogReader
from autorec.media.frametiming import (
    DEFAULT_INTERVAL,
    Frame,
    FrameClock,
    SelectionStats,
    TimeRef,
    fixed_rate,
    read_items,
    select_frames,
    snapshot_records_from_sidecar,
)

_log = logging.getLogger(__name__)  # `log` names the log file being exported throughout this module

Mode = Literal["h264", "copy"]
MODES: tuple[str, ...] = ("h264", "copy")
SUFFIX: dict[str, str] = {"h264": ".mp4", "copy": ".mkv"}
_FORMAT: dict[str, str] = {"h264": "mp4", "copy": "matroska"}
# MP4 takes any clock: 90 kHz is the MPEG convention. Matroska's clock is 1 ms.
MAX_FRAME_GAP = 6 * 3600.0  # seconds; a longer camera gap is cut (MP4 sample durations overflow at 6.6 h)
CUT_GAP_TO = 5.0  # seconds of still picture a cut gap becomes
DEFAULT_MAX_PIXELS = 4096 * 4096  # a generous camera maximum: ~25 MB a decoded 4:2:0 picture
_TIME_BASE: dict[str, Fraction] = {"h264": Fraction(1, 90000), "copy": Fraction(1, 1000)}


class ExportError(Exception):
    """An export failed; the message is one line naming the log."""


def count_images(log_path: str | os.PathLike[str]) -> int:
    """How many `image` records a log holds (fast: reads only record heads)."""
    reader = LogReader(log_path)
    return sum(1 for _, _, head in reader.heads(1) if events.peek_kind(head) == "image")


# ---------------------------------------------------------------------------------------------
# Timestamp overlay: a 5x7 pixel font for the characters of a time stamp.

_GLYPHS: dict[str, tuple[str, ...]] = {
    "0": ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    "1": ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    "2": ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    "3": ("11110", "00001", "00001", "01110", "00001", "00001", "11110"),
    "4": ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    "5": ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    "6": ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    "7": ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    "8": ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    "9": ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
    "-": ("00000", "00000", "00000", "11111", "00000", "00000", "00000"),
    ":": ("00000", "01100", "01100", "00000", "01100", "01100", "00000"),
    ".": ("00000", "00000", "00000", "00000", "00000", "01100", "01100"),
    " ": ("00000",) * 7,
}
# Each glyph with its column of spacing on the right, made once: padding 23 glyphs a frame took 0.38 ms,
# 80% of drawing a time stamp (in the decode thread, the export's bottleneck).
_GLYPH_ARRAYS = {
    c: np.array([[ch == "1" for ch in row] + [False] for row in rows], dtype=bool) for c, rows in _GLYPHS.items()
}


def format_overlay_time(t: float) -> str:
    """Local wall time with milliseconds, as burned into frames by `--timestamp`."""
    t = clamp_time(t)
    ms = round(t * 1000) % 1000
    return local_strftime(t, "%Y-%m-%d %H:%M:%S") + f".{ms:03d}"


def _plane_array(plane) -> np.ndarray:
    buf = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    return buf[:, : plane.width]


def draw_text(frame: av.VideoFrame, text: str) -> None:
    """Burn `text` (white on a black box, top-left) into a full-range 4:2:0 frame in place."""
    scale = max(1, frame.height // 240)
    mask = np.concatenate([_GLYPH_ARRAYS.get(c, _GLYPH_ARRAYS[" "]) for c in text], axis=1)
    mask = np.kron(mask, np.ones((scale, scale), dtype=bool))
    pad = 2 * scale
    y_plane = _plane_array(frame.planes[0])
    h = min(mask.shape[0] + 2 * pad, y_plane.shape[0]) & ~1
    w = min(mask.shape[1] + 2 * pad, y_plane.shape[1]) & ~1
    box = y_plane[:h, :w]
    box[:] = 0
    sub = mask[: h - pad, : w - pad]
    box[pad : pad + sub.shape[0], pad : pad + sub.shape[1]][sub] = 255
    for i in (1, 2):  # neutral chroma under the box
        _plane_array(frame.planes[i])[: h // 2, : w // 2] = 128


# ---------------------------------------------------------------------------------------------
# Export


# x264's superfast preset turns off mb-tree rate control (and its lookahead). A camera watching a
# board is mostly static, where mb-tree spends bits on what stays: about a third of the size.
# Adaptive quantisation off: on a noisy sensor it spends bits on noise in the flat board
# (-30% size, -20% CPU, +0.7 dB PSNR; PSNR favours aq off, but no banding was seen on the
# board). Measured in benchmarks/video_export.py. Not for ultrafast (the default): there the
# lookahead cost ~15% of the export's wall time (2.12x OpenCV's speed instead of 2.51x) for
# 0.10x instead of 0.13x OpenCV's size, and the speed is what ultrafast is chosen for.
FAST_PRESET_PARAMS = "mbtree=1:rc-lookahead=10:aq-mode=0"
FAST_PARAMS_PRESETS = frozenset({"superfast"})


def x264_options(options: ExportOptions, qp: int | None = None) -> dict[str, str]:
    """The libx264 private options for an export: rate control by `options.crf`, or a constant `qp`."""
    opts = {"qp": str(qp)} if qp is not None else {"crf": str(options.crf)}
    opts["preset"] = options.preset
    params = options.x264_params
    if params is None and options.preset in FAST_PARAMS_PRESETS:
        params = FAST_PRESET_PARAMS
    if params:
        opts["x264-params"] = params
    return opts


# CRF weighs each frame's complexity on a half-size copy that x264 builds and motion-searches for
# every frame: at ultrafast nothing else needs it, and it is ~35% of the encoder's time (1.73 against
# 1.13 ms a frame on benchmarks/video_export.py's frames). A camera fixed on a board sends alike
# frames, on which CRF settles on one QP within ~6 frames and holds it (QP 24 at crf 28 on the
# benchmark's board, 27 with 2.5x its noise). So the export runs CRF on the first `CRF_PROBE_FRAMES`
# frames in a scratch encoder, reads the QP it settled on (the last P-frame's) and encodes the video
# at that constant QP. Same run, 300 frames: 3.13 against 3.60 ms of CPU a frame, 0.95x the size
# at +0.5 dB PSNR (41.96 dB; CRF's first frames, at QP 25-27, cost bits later); with 2.5x the noise
# 5.90 against 6.63 ms, the same size and PSNR. A fixed QP of 25 instead was as cheap but 3.3x the
# size of CRF's on the noisier frames. What is lost is CRF's reaction to a change of scene later
# in the log (a hand over the board, the light switched on): those frames keep the probed QP.
# Not for slower presets: their scene-cut detection, weighted prediction or mb-tree need the
# half-size copy anyway, so only CRF's adaptivity would be lost.
CRF_PROBE_PRESETS = frozenset({"ultrafast"})
CRF_PROBE_FRAMES = 8
# Probe frames are held decoded until the probe is done: at most this many pixels (~25 MB of 4:2:0
# pictures; 8 frames up to 1920x1080). Fewer than 3 frames show no settled QP: plain CRF then.
CRF_PROBE_PIXELS = 8 * 1920 * 1088
_MIN_PROBE_FRAMES = 3
CRF_PROBE_RANGE = 12  # the probe's QPs: crf +- this (CRF chose crf-4 to crf-1 on the benchmark's frames)


def probes_crf(options: ExportOptions) -> bool:
    """Whether an export encodes at a QP probed from CRF (see `CRF_PROBE_PRESETS`) rather than CRF."""
    return options.crf_probe and options.preset in CRF_PROBE_PRESETS and options.x264_params is None


def probe_frames(width: int, height: int) -> int:
    """How many frames of this size the CRF probe holds (0: too large to probe)."""
    n = min(CRF_PROBE_FRAMES, CRF_PROBE_PIXELS // max(1, width * height))
    return n if n >= _MIN_PROBE_FRAMES else 0


class CrfProbe:
    """x264's CRF (`options.crf`, `options.preset`) run in a scratch encoder over the first frames of an
    export, fed one at a time as they are decoded, to find the QP it settles on: the last P-frame's,
    read from the encoder's quality statistics. One encoder thread, so the QP does not depend on the
    machine. The scratch encoder's QP range is the crf +-`CRF_PROBE_RANGE` (x264 prepares its cost
    tables for every QP of the range when it opens: 6 ms instead of 14 at 1024x768); a QP at an end
    of it may have been cut there, and gives no answer."""

    def __init__(self, width: int, height: int, options: ExportOptions) -> None:
        self.low = max(0, options.crf - CRF_PROBE_RANGE)
        self.high = min(51, options.crf + CRF_PROBE_RANGE)
        self._qp: int | None = None
        self._ctx: av.CodecContext | None = None
        if not hasattr(av.Packet, "get_sidedata"):  # PyAV before 14: no side data to read
            return
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, _PIX_FMT
        ctx.color_range = _JPEG_RANGE
        ctx.time_base = _TIME_BASE["h264"]
        ctx.options = {**x264_options(options), "x264-params": f"qpmin={self.low}:qpmax={self.high}"}
        ctx.thread_count = 1
        self._ctx = ctx

    def feed(self, picture: av.VideoFrame | None, pts: int = 0) -> None:
        """Encode `picture` at `pts` (90 kHz ticks; CRF weighs complexity by frame duration); None
        flushes. The picture's own pts is changed."""
        if self._ctx is None:
            return
        if picture is not None:
            picture.pts, picture.time_base = pts, _TIME_BASE["h264"]
        try:
            packets = self._ctx.encode(picture)
        except av.FFmpegError as exc:  # the probe only saves time: the export goes on with plain CRF
            _log.debug("CRF probe failed (%s): plain CRF", exc)
            self._ctx, self._qp = None, None
            return
        for packet in packets:
            if not packet.has_sidedata("quality_stats"):
                continue
            # FFmpeg's quality_stats: int32 quality (QP x FF_QP2LAMBDA), then the uint8 picture type
            stats = bytes(packet.get_sidedata("quality_stats"))
            if len(stats) >= 5 and stats[4] == PictureType.P:
                self._qp = round(int.from_bytes(stats[:4], "little", signed=True) / _FF_QP2LAMBDA)

    def finish(self) -> int | None:
        """The QP CRF settled on; None when no P-frame came out or its QP is at an end of the range."""
        self.feed(None)
        self._ctx = None
        qp = self._qp
        if qp is None or (qp <= self.low and self.low > 0) or (qp >= self.high and self.high < 51):
            return None
        return qp


def crf_probe_qp(pictures: list[av.VideoFrame], pts: list[int], options: ExportOptions) -> int | None:
    """`CrfProbe` over `pictures` shown at `pts`."""
    if not pictures:
        return None
    probe = CrfProbe(pictures[0].width, pictures[0].height, options)
    for picture, t in zip(pictures, pts):
        probe.feed(picture, t)
    return probe.finish()


_FF_QP2LAMBDA = 118


@dataclass(frozen=True)
class ExportOptions:
    mode: Mode = "h264"
    # ultrafast at crf 28 (turned into a constant QP by `crf_probe`): x264's cheapest preset, at a
    # quality that drops most of the sensor's noise (PSNR ~41-42 dB against the camera's JPEGs, the
    # board's electrode pattern intact). Before the CRF probe, on
    # benchmarks/video_export.py (1024x768 board frames with noise, 2 cores, same run): 2.5x
    # the speed of OpenCV's mp4v writer at 0.13x its size; superfast at crf 23 (the default
    # until round 2) did 1.2x at 0.25x, with its encoder alone costing as much CPU a frame as
    # OpenCV's whole decode + encode. Lower crf for more detail at a larger size.
    crf: int = 28
    preset: str = "ultrafast"
    # None: `FAST_PRESET_PARAMS` for the presets in `FAST_PARAMS_PRESETS`, nothing for the others
    x264_params: str | None = None
    # At the presets of `CRF_PROBE_PRESETS` without x264_params: encode at the constant QP that x264's
    # CRF settles on over the first frames (`crf_probe_qp`) instead of running CRF on every frame.
    crf_probe: bool = True
    start: TimeRef | None = None
    end: TimeRef | None = None
    timestamp: bool = False  # burn the log time into each frame (h264 only)
    decode_threads: int | None = None  # default: `default_decode_threads()`; 0: decode in the encoding thread
    encode_threads: int | None = None  # libx264's threads; default: `default_encode_threads(preset)`; 0: x264's own
    max_pixels: int = DEFAULT_MAX_PIXELS  # frames larger than this (width x height) are skipped, never decoded
    fps: float | None = None  # a fixed playback rate instead of each frame's own time (timelapses)


@dataclass
class ExportResult:
    log: Path
    output: Path
    frames: int = 0  # frames written
    corrupt: int = 0
    too_large: int = 0  # frames over `max_pixels`, skipped
    gaps_cut: int = 0  # camera gaps longer than MAX_FRAME_GAP, cut to CUT_GAP_TO
    rescaled: int = 0
    first_time: float | None = None  # log time of the first frame written
    last_time: float | None = None
    duration: float = 0.0  # seconds of video
    bytes: int = 0
    seconds: float = 0.0  # wall time the export took
    qp: int | None = None  # the constant QP the CRF probe found (None: CRF on every frame, or --copy)
    selection: SelectionStats = field(default_factory=SelectionStats)

    def summary(self) -> str:
        from autorec.units import format_duration, format_size

        parts = [f"{self.frames} frames", format_duration(self.duration), format_size(self.bytes)]
        sel = self.selection
        for count, what in (
            (self.corrupt, "corrupt frames skipped"),
            (self.too_large, "frames over the pixel cap skipped"),
            (self.gaps_cut, f"camera gaps over {MAX_FRAME_GAP / 3600:g}h cut to {CUT_GAP_TO:g}s"),
            (self.rescaled, "frames rescaled to the first size"),
            (sel.untimed, "frames without any time skipped"),
            (sel.clock_steps, "clock steps"),
            (sel.clock_outliers, "damaged timestamps replaced by the time before them"),
        ):
            if count:
                parts.append(f"{count} {what}")
        if sel.log_problem:
            parts.append(sel.log_problem)
        return ", ".join(parts)


def default_output(log_path: str | os.PathLike[str], mode: Mode, out_dir: str | os.PathLike[str] | None = None) -> Path:
    log = Path(log_path)
    name = log.with_suffix(SUFFIX[mode]).name
    return (Path(out_dir) if out_dir is not None else log.parent) / name


def is_up_to_date(log_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> bool:
    """The output exists and is not older than the log."""
    try:
        return os.stat(out_path).st_mtime >= os.stat(log_path).st_mtime
    except OSError:
        return False


# Camera JPEGs are full-range 4:2:0 YUV. The video keeps exactly that and says so (H.264's
# full-range flag, which FFmpeg, VLC, mpv and browsers honour): no per-pixel range conversion
# (it cost ~1.2 ms a frame, 15% of the export) and no loss of levels.
_PIX_FMT = "yuvj420p"
_JPEG_RANGE = 2  # AVCOL_RANGE_JPEG
_JPEG_MATRIX = 5  # AVCOL_SPC_BT470BG: JPEG's (JFIF's) BT.601 YCbCr; without it players guess BT.709 for HD sizes


class _Decoder:
    """JPEG -> full-range 4:2:0 frames of one size; one FFmpeg decoder per thread (contexts are not thread-safe)."""

    def __init__(self, source_size: tuple[int, int], timestamp: bool, max_pixels: int = 0) -> None:
        self.source_size = source_size  # the first frame's size; others are "rescaled" to it
        # 4:2:0 needs even sizes
        self.width, self.height = max(2, source_size[0] & ~1), max(2, source_size[1] & ~1)
        self.timestamp = timestamp
        self.max_pixels = max_pixels  # FFmpeg refuses pictures above this (0: no limit of ours)
        self._local = threading.local()

    def _context(self) -> av.CodecContext:
        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            ctx = av.CodecContext.create("mjpeg", "r")
            options = {"err_detect": "explode"}  # damaged JPEGs fail instead of half-grey pictures
            if self.max_pixels:
                options["max_pixels"] = str(self.max_pixels)
            ctx.options = options
            self._local.ctx = ctx
        return ctx

    def __call__(self, frame: Frame) -> tuple[av.VideoFrame | None, bool]:
        """(picture or None if corrupt, whether it was rescaled)."""
        if not frame.jpeg:
            # An empty packet is FFmpeg's end-of-stream signal: it would put the decoder at EOF and the
            # next, good frame would fail too. An image event without data is just a corrupt frame.
            return None, False
        try:
            pictures = self._context().decode(av.Packet(frame.jpeg))
        except (av.FFmpegError, ValueError):
            self._local.ctx = None  # start clean after an error
            return None, False
        if not pictures:
            return None, False
        picture = pictures[0]
        rescaled = (picture.width, picture.height) != self.source_size
        if picture.format.name == _PIX_FMT and (picture.width, picture.height) == (self.width, self.height):
            out = picture  # the usual case: the decoder's own frame, no copy
        else:  # other subsampling (e.g. progressive 4:4:4) or size
            out = picture.reformat(width=self.width, height=self.height, format=_PIX_FMT)
        out.pict_type = PictureType.NONE  # decoded JPEGs are marked I; let x264 choose
        if self.timestamp:
            draw_text(out, format_overlay_time(frame.log_time))
        return out, rescaled


class _Writer:
    """Muxes frames one behind, so each frame's duration (to the next frame) is known when it is written."""

    def __init__(
        self,
        container: av.container.OutputContainer,
        stream,
        time_base: Fraction,
        t0: float,
        result: ExportResult | None = None,
    ):
        self.container, self.stream, self.time_base, self.t0 = container, stream, time_base, t0
        self.result = result
        self._cut = 0  # ticks removed from long camera gaps so far
        self._max_gap = round(MAX_FRAME_GAP / time_base)
        self._cut_to = round(CUT_GAP_TO / time_base)
        self._held: tuple[int, object] | None = None
        self._durations: dict[int, int] = {}
        self.last_pts = 0
        self.last_duration = 0
        self._first_dts: int | None = None

    def pts(self, t: float) -> int:
        return round((t - self.t0) / self.time_base) - self._cut

    def add(self, pts: int, payload: object) -> None:
        if self._held is not None:
            held_pts, held = self._held
            if pts - held_pts > self._max_gap:
                # One frame held for hours: more than a container can hold (MP4: 2**31 ticks).
                cut = pts - held_pts - self._cut_to
                self._cut += cut
                pts -= cut
                self._gap_cut(cut + self._cut_to, held_pts)
            self._emit(held_pts, held, pts - held_pts)
        self._held = (pts, payload)

    def _gap_cut(self, ticks: int, at_pts: int) -> None:
        from autorec.units import format_duration

        gap = float(ticks * self.time_base)
        if self.result is not None:
            self.result.gaps_cut += 1
            log_name = self.result.log
        else:
            log_name = "video"
        _log.info(
            "%s: camera gap of %s after %s of video cut to a %s still (gaps over %s are cut)",
            log_name,
            format_duration(gap),
            format_duration(float(at_pts * self.time_base)),
            format_duration(CUT_GAP_TO),
            format_duration(MAX_FRAME_GAP),
        )

    def finish(self, last_interval: float) -> None:
        if self._held is not None:
            pts, payload = self._held
            self._emit(pts, payload, max(1, round(last_interval / self.time_base)))
            self._held = None
        self._flush_encoder()

    def _emit(self, pts: int, payload: object, duration: int) -> None:
        self.last_pts, self.last_duration = pts, duration
        if isinstance(payload, bytes):  # copy mode: the JPEG is the packet
            packet = av.Packet(payload)
            packet.stream = self.stream
            packet.pts = packet.dts = pts
            packet.duration = duration
            packet.time_base = self.time_base
            packet.is_keyframe = True
            self.container.mux(packet)
            return
        picture: av.VideoFrame = payload  # type: ignore[assignment]
        picture.pts = pts
        picture.time_base = self.time_base
        self._durations[pts] = duration
        for packet in self.stream.encode(picture):
            self._mux_encoded(packet)

    def _flush_encoder(self) -> None:
        if self.stream.codec_context.name == "mjpeg":
            return
        tail = list(self.stream.encode(None))
        for i, packet in enumerate(tail):
            if i == len(tail) - 1 and packet.dts is not None:
                # MP4 sample durations are decode-time deltas and the last one is the last packet's
                # duration; with B-frames that packet is not the last frame shown. Size it so the
                # samples add up to the last frame's end (the first frame is at 0).
                self._durations.pop(packet.pts, None)
                first_dts = self._first_dts if self._first_dts is not None else packet.dts
                packet.duration = max(1, self.last_pts + self.last_duration + first_dts - packet.dts)
            self._mux_encoded(packet)

    def _mux_encoded(self, packet: av.Packet) -> None:
        if self._first_dts is None:
            self._first_dts = packet.dts
        if packet.pts is not None:
            duration = self._durations.pop(packet.pts, None)
            if duration is not None:
                packet.duration = duration
        self.container.mux(packet)


def export(
    log_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str] | None = None,
    options: ExportOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> ExportResult:
    """Export the camera frames of one log. See the module docstring for the contracts.

    `progress(n)` is called with the number of frames handled since its last call.
    Raises `ExportError` (one line) when the log cannot be read, holds no frame
    to export, or the output cannot be written.
    """
    options = options or ExportOptions()
    if options.mode not in MODES:
        raise ExportError(f"unknown video mode {options.mode!r} (modes: {', '.join(MODES)})")
    if options.timestamp and options.mode == "copy":
        raise ExportError("--timestamp needs re-encoding: it cannot be used with --copy")
    log = Path(log_path)
    out = Path(out_path) if out_path is not None else default_output(log, options.mode)
    tmp = partial_path(out)
    result = ExportResult(log=log, output=out)
    began = time.perf_counter()
    if not log.is_file():
        raise ExportError(f"{log}: no such log file")
    stats = result.selection
    clock = FrameClock(stats)
    frames = select_frames(
        read_items(LogReader(log), stats),
        stats,
        clock,
        options.start,
        options.end,
        snapshot_records_from_sidecar(log),
    )
    if options.fps is not None:
        if not 0 < options.fps <= MAX_FPS:
            raise ExportError(f"fps must be above 0 and at most {MAX_FPS:g}, got {options.fps!r}")
        frames = fixed_rate(frames, options.fps)
    container = None
    sink = None
    try:
        try:
            tmp.unlink(missing_ok=True)  # a stale one from a killed run (or a planted link: its target stays)
            # Created by us, fresh and without following links; PyAV writes to the open file.
            sink = os.fdopen(open_nofollow(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL), "w+b")
            container = av.open(sink, "w", format=_FORMAT[options.mode])
        except (OSError, av.FFmpegError) as exc:
            raise ExportError(f"{out}: cannot write: {exc}") from None
        if options.mode == "copy":
            _export_copy(frames, container, options, result, progress)
        else:
            _export_h264(frames, container, options, result, progress)
        if result.frames == 0:
            raise ExportError(_no_frames_message(log, stats, result, options))
        container.close()
        container = None
        sink.close()
        # The rename must not land before the data: a power cut would leave a broken file under the real name.
        fsync_path(tmp)
        os.replace(tmp, out)
    except ExportError:
        raise
    except (OSError, av.FFmpegError) as exc:
        raise ExportError(f"{log}: export failed: {exc}") from None
    finally:
        if container is not None:
            try:
                container.close()
            except Exception:  # already failing; the partial file is removed below
                pass
        if sink is not None:
            sink.close()
        tmp.unlink(missing_ok=True)  # after success it is already renamed
    result.bytes = out.stat().st_size
    result.seconds = time.perf_counter() - began
    return result


def _no_frames_message(log: Path, stats: SelectionStats, result: ExportResult, options: ExportOptions) -> str:
    if stats.images == 0:
        return f"{log}: no camera frames in this log ({stats.records} records)"
    if stats.before_start or stats.after_end:
        return f"{log}: no camera frames between --start and --end ({stats.images} in the log)"
    reasons = []
    if result.corrupt:
        reasons.append(f"{result.corrupt} corrupt")
    if stats.snapshot:
        reasons.append(f"{stats.snapshot} in the segment snapshot")
    if stats.untimed:
        reasons.append(f"{stats.untimed} without any time")
    return f"{log}: no exportable camera frames ({stats.images} images: {', '.join(reasons) or 'none usable'})"


def _note(result: ExportResult, frame: Frame) -> None:
    if result.first_time is None:
        result.first_time = frame.log_time
    result.last_time = frame.log_time
    result.frames += 1


def _finish(writer: _Writer | None, clock_interval: float, result: ExportResult) -> None:
    if writer is None:
        return
    writer.finish(clock_interval)
    result.duration = float((writer.last_pts + writer.last_duration) * writer.time_base)


def _too_large(size: tuple[int, int] | None, frame: Frame, options: ExportOptions, result: ExportResult) -> bool:
    """Whether a frame whose header claims `size` is over the pixel cap (counted; the first one logged)."""
    if size is None or size[0] * size[1] <= options.max_pixels:
        return False
    result.too_large += 1
    if result.too_large == 1:
        _log.warning(
            "%s: a frame of %dx%d pixels (%.1f megapixels) at %.3f is over the cap of %.1f megapixels "
            "(--max-pixels): skipped without decoding; further ones are counted",
            result.log,
            size[0],
            size[1],
            size[0] * size[1] / 1e6,
            frame.log_time,
            options.max_pixels / 1e6,
        )
    return True


def _export_copy(frames: Iterator[Frame], container, options: ExportOptions, result: ExportResult, progress) -> None:
    writer: _Writer | None = None
    clock_interval = DEFAULT_INTERVAL
    prev_time: float | None = None
    intervals: deque[float] = deque(maxlen=32)
    for frame in frames:
        if progress:
            progress(1)
        size = jpeg_size(frame.jpeg)
        # A damaged header can claim any size (0 or 60000 pixels): as the first frame it failed the export.
        if size is None or not (0 < size[0] <= MAX_SIDE and 0 < size[1] <= MAX_SIDE) or not jpeg_complete(frame.jpeg):
            result.corrupt += 1
            continue
        if _too_large(size, frame, options, result):
            continue
        if writer is None:
            stream = container.add_stream("mjpeg")
            stream.width, stream.height = size
            stream.pix_fmt = "yuvj420p"
            stream.time_base = stream.codec_context.time_base = _TIME_BASE["copy"]
            _set_metadata(container, frame.log_time)
            writer = _Writer(container, stream, _TIME_BASE["copy"], frame.time, result)
        if prev_time is not None:
            intervals.append(frame.time - prev_time)
        prev_time = frame.time
        writer.add(writer.pts(frame.time), frame.jpeg)
        _note(result, frame)
    if intervals:
        clock_interval = statistics.median(intervals)
    _finish(writer, clock_interval, result)


def _export_h264(frames: Iterator[Frame], container, options: ExportOptions, result: ExportResult, progress) -> None:
    workers = options.decode_threads if options.decode_threads is not None else default_decode_threads()
    encode_threads = (
        options.encode_threads if options.encode_threads is not None else default_encode_threads(options.preset)
    )
    window = 2 * max(1, workers) + 2  # frames in flight: enough to keep every decoder busy, little memory
    writer: _Writer | None = None
    decoder: _Decoder | None = None
    prev_time: float | None = None
    intervals: deque[float] = deque(maxlen=32)
    pending: deque[tuple[Frame, Future]] = deque()
    held: list[tuple[Frame, av.VideoFrame]] = []  # the first pictures, until the encoder is opened
    qp_probe: CrfProbe | None = None  # fed the held pictures as they come
    hold = 1  # pictures to hold before opening it: 1, or the CRF probe's count (set at the first picture)
    time_base = _TIME_BASE["h264"]

    def start() -> None:
        """Open the encoder on the held pictures: at the QP the CRF probe finds on them, or at CRF."""
        nonlocal writer
        first = held[0][0]
        qp = None
        if qp_probe is not None and len(held) >= _MIN_PROBE_FRAMES:
            qp = result.qp = qp_probe.finish()
            _log.debug("%s: crf %d settles on QP %s over the first %d frames", result.log, options.crf, qp, len(held))
        width, height = held[0][1].width, held[0][1].height
        stream = container.add_stream("libx264")
        stream.width, stream.height = width, height
        stream.pix_fmt = _PIX_FMT
        ctx = stream.codec_context
        ctx.color_range, ctx.colorspace = _JPEG_RANGE, _JPEG_MATRIX
        stream.time_base = ctx.time_base = time_base
        ctx.options = x264_options(options, qp)
        ctx.thread_count = encode_threads
        _set_metadata(container, first.log_time)
        writer = _Writer(container, stream, time_base, first.time, result)
        for frame, picture in held:
            add(frame, picture)
        held.clear()

    def add(frame: Frame, picture: av.VideoFrame) -> None:
        nonlocal prev_time
        assert writer is not None
        if prev_time is not None:
            intervals.append(frame.time - prev_time)
        prev_time = frame.time
        writer.add(writer.pts(frame.time), picture)
        _note(result, frame)

    def steal() -> None:
        """While the oldest frame is still being decoded, decode here the newest that no worker has
        started. At ultrafast the encoder takes less time a frame than the decoder (1.1 against 1.8
        ms on 1024x768 board frames), so this thread would otherwise wait for the decode thread."""
        while decoder is not None and not pending[0][1].done():
            for i in range(len(pending) - 1, 0, -1):
                frame, future = pending[i]
                if future.cancel():  # not started: no worker will run it now
                    pending[i] = (frame, _done(decoder(frame)))
                    break
            else:
                return

    def take() -> None:
        nonlocal hold, qp_probe
        steal()
        frame, future = pending.popleft()
        picture, rescaled = future.result()
        if progress:
            progress(1)
        if picture is None:
            result.corrupt += 1
            return
        result.rescaled += rescaled
        if writer is not None:
            add(frame, picture)
            return
        if not held and probes_crf(options):
            hold = max(1, probe_frames(picture.width, picture.height))
            if hold > 1:
                qp_probe = CrfProbe(picture.width, picture.height, options)
        if qp_probe is not None:  # here, not all at once at the end: the decode threads keep busy meanwhile
            qp_probe.feed(picture, round((frame.time - (held[0][0] if held else frame).time) / time_base))
        held.append((frame, picture))
        if len(held) >= hold:
            start()

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="jpeg-decode") as executor:
        pool = executor if workers > 0 else None
        try:
            for frame in frames:
                size = jpeg_size(frame.jpeg)
                if _too_large(size, frame, options, result):
                    if progress:
                        progress(1)
                    continue
                if decoder is None:
                    # Size the video from the first frame that decodes: a damaged first frame whose header
                    # claims 60000x60000 failed the whole export, or would scale every later frame up to it.
                    probe = _Decoder(size, options.timestamp, options.max_pixels) if size is not None else None
                    first = probe(frame) if probe is not None else (None, False)
                    if first[0] is not None:
                        decoder = probe
                    pending.append((frame, _done(first)))
                    take()
                    continue
                if pool is None:  # serial: decode in this thread (benchmark baseline)
                    pending.append((frame, _done(decoder(frame))))
                else:
                    pending.append((frame, pool.submit(decoder, frame)))
                if len(pending) >= window:
                    take()
            while pending:
                take()
            if held:  # fewer frames than the CRF probe holds
                start()
        finally:
            for _, future in pending:
                future.cancel()
    _finish(writer, statistics.median(intervals) if intervals else DEFAULT_INTERVAL, result)


MAX_FPS = 1000.0  # a playback rate above this is a typo, not a video
MAX_SIDE = 16384  # pixels; a JPEG header claiming more (or 0) is damaged, not a camera frame


def default_decode_threads() -> int:
    """JPEG decode threads: one per two CPUs (1-4). x264 already runs ~1.5 threads per CPU; more
    decoders only compete with it (2 cores: 1 thread measured 1.1x faster than 2)."""
    return max(1, min(4, (os.cpu_count() or 1) // 2))


def default_encode_threads(preset: str) -> int:
    """libx264 threads for `preset` (0: x264's own choice, 1.5 frame threads per CPU).

    ultrafast: the CPUs the default decode threads leave, at least 1. There the encoder costs
    about as much as the decoder, and x264's frame threads cost CPU in synchronisation: x264
    alone took 7.1 ms of CPU a frame with its default 3 threads on 2 cores, 6.2 with 2, 5.2
    with 1. Slower presets keep x264's own count: their encoder is the bottleneck (superfast
    with 1 thread on 2 cores: 2.50 s against 2.14 s with x264's own, same run).
    Not derived from `decode_threads`: x264's output depends on its thread count, and the video
    must not depend on how many threads decoded the JPEGs.
    """
    if preset != "ultrafast":
        return 0
    return max(1, _cpus() - default_decode_threads())


def _cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _done(value: object) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


def _set_metadata(container, first_time: float) -> None:
    container.metadata["creation_time"] = utc_iso(first_time, digits=6)
    container.metadata["comment"] = f"autorec: first frame at epoch {first_time:.6f}"
