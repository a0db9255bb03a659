"""The simulated camera: JPEG pictures of an electrode board with drops on it.

Contract:
- `CameraRenderer(cols, rows, width, height, seed, quality)` draws a board whose
  electrode grid has `cols` x `rows` electrodes, seen slightly in perspective.
  `.transform` is the 3x3 grid->pixel homography (row-major, 9 floats) that
  pdcam would put in `ImageTransform.transform`.
- Grid coordinates: the corner of the grid is (0, 0); electrode (c, r) covers
  [c, c+1] x [r, r+1], so its centre is grid point (c + 0.5, r + 0.5).
- `frame(drops, gain, offset)` returns one JPEG (baseline, yuvj420p) of
  `width` x `height`. `drops` holds `(col, row, radius_cells)`: a drop centred
  on electrode (col, row) (fractional while it moves), `radius_cells` in
  electrode pitches. Lighting maps every pixel level v to `v * gain + offset`
  (levels 0-255), as a lamp change or auto-exposure would.
- Speed: rendering and encoding a picture costs a few ms, so pictures are
  cached by their quantised inputs (drop positions to `position_step` cells,
  gain to 0.01, offset to 0.5 level). Sensor noise comes from a small set of
  pre-drawn noise fields: each call picks the next variant, so a still scene
  shows changing noise while every (picture, variant) is encoded only once.
- Deterministic: the same seed and the same sequence of calls give the same bytes.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from fractions import Fraction

import av
import numpy as np

# Noise amplitude limit in levels; pictures are kept inside [_NOISE_MAX, 255 - _NOISE_MAX]
# before noise is added so that a wrapping uint8 add is exact (no clip pass needed).
_NOISE_MAX = 7


def solve_homography(src: Sequence[tuple[float, float]], dst: Sequence[tuple[float, float]]) -> np.ndarray:
    """The 3x3 homography (h33 = 1) mapping the four `src` points onto the four `dst` points."""
    a = []
    b = []
    for (x, y), (u, v) in zip(src, dst):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        b.extend([u, v])
    h = np.linalg.solve(np.array(a, dtype=float), np.array(b, dtype=float))
    return np.append(h, 1.0).reshape(3, 3)


def grid_to_pixel(transform: Sequence[float], x: float, y: float) -> tuple[float, float]:
    """Grid point (x, y) mapped to image pixels by a row-major 3x3 homography."""
    h = transform
    w = h[6] * x + h[7] * y + h[8]
    return ((h[0] * x + h[1] * y + h[2]) / w, (h[3] * x + h[4] * y + h[5]) / w)


def drop_pixel_position(transform: Sequence[float], col: float, row: float) -> tuple[float, float]:
    """Pixel position of the centre of a drop sitting on electrode (col, row)."""
    return grid_to_pixel(transform, col + 0.5, row + 0.5)


def _rgb_to_ycbcr(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full-range BT.601 (JPEG's) Y, Cb, Cr as float32 planes of the same size."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return y, cb, cr


def _subsample(plane: np.ndarray) -> np.ndarray:
    """2x2 mean, for 4:2:0 chroma."""
    h, w = plane.shape
    p = plane[: h - h % 2, : w - w % 2]
    return 0.25 * (p[0::2, 0::2] + p[1::2, 0::2] + p[0::2, 1::2] + p[1::2, 1::2])


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class CameraRenderer:
    """Renders camera frames of a `cols` x `rows` electrode board. See the module docstring."""

    def __init__(
        self,
        cols: int,
        rows: int,
        width: int = 1024,
        height: int = 768,
        seed: int = 0,
        quality: int = 3,
        noise_sigma: float = 3.0,
        noise_variants: int = 4,
        position_step: float = 0.125,
        cache_size: int = 256,
    ) -> None:
        if cols < 1 or rows < 1:
            raise ValueError(f"grid must have at least one electrode, got {cols}x{rows}")
        if width < 16 or height < 16 or width % 2 or height % 2:
            raise ValueError(f"image size must be even and at least 16x16, got {width}x{height}")
        if not 1 <= quality <= 31:
            raise ValueError(f"quality is the JPEG qscale 1 (best) to 31, got {quality}")
        self.cols = cols
        self.rows = rows
        self.width = width
        self.height = height
        self.quality = quality
        self.position_step = position_step
        self.cache_size = cache_size
        self.hits = 0
        self.misses = 0
        self._rng = np.random.default_rng(seed)
        self._h = self._make_homography()
        self._base_y, self._base_cb, self._base_cr = self._render_board()
        self._noise = self._make_noise(noise_sigma, noise_variants)
        self._next_variant = 0
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()
        # The last rendered picture before noise, so its other noise variants need no re-render.
        self._planes_key: tuple | None = None
        self._planes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._encoder = self._open_encoder()
        self._pts = 0

    # -- geometry --------------------------------------------------------------------------

    @property
    def transform(self) -> list[float]:
        """Grid -> pixel homography, row-major, as `ImageTransform.transform` carries it."""
        return [float(v) for v in self._h.ravel()]

    def grid_to_pixel(self, x: float, y: float) -> tuple[float, float]:
        return grid_to_pixel(self.transform, x, y)

    def drop_pixel_position(self, col: float, row: float) -> tuple[float, float]:
        return drop_pixel_position(self.transform, col, row)

    def cell_pixels(self) -> float:
        """Approximate electrode pitch in pixels at the grid centre."""
        cx, cy = self.cols / 2, self.rows / 2
        x0, y0 = self.grid_to_pixel(cx, cy)
        x1, y1 = self.grid_to_pixel(cx + 1, cy)
        return math.hypot(x1 - x0, y1 - y0)

    def _make_homography(self) -> np.ndarray:
        # The grid fills about half the picture, like the reference rig's camera; the
        # camera looks slightly from below and is rotated a little, so the far (top)
        # edge is narrower: a mild keystone plus a small tilt.
        w, h = self.width, self.height
        pitch = min(0.5 * w / self.cols, 0.55 * h / self.rows)
        gw, gh = pitch * self.cols, pitch * self.rows
        cx, cy = 0.51 * w, 0.50 * h
        inset = 0.035 * gw
        tilt = 0.012
        quad = [
            (cx - gw / 2 + inset, cy - gh / 2),
            (cx + gw / 2 - inset, cy - gh / 2),
            (cx + gw / 2, cy + gh / 2),
            (cx - gw / 2, cy + gh / 2),
        ]
        rotated = [(cx + (x - cx) - tilt * (y - cy), cy + (y - cy) + tilt * (x - cx)) for x, y in quad]
        src = [(0.0, 0.0), (float(self.cols), 0.0), (float(self.cols), float(self.rows)), (0.0, float(self.rows))]
        return solve_homography(src, rotated)

    # -- the static board -----------------------------------------------------------------

    def _render_board(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The empty board as full-range Y (uint8, full size) and Cb, Cr (uint8, half size)."""
        w, h = self.width, self.height
        hinv = np.linalg.inv(self._h).astype(np.float32)
        px, py = np.meshgrid(np.arange(w, dtype=np.float32) + 0.5, np.arange(h, dtype=np.float32) + 0.5)
        den = hinv[2, 0] * px + hinv[2, 1] * py + hinv[2, 2]
        gx = (hinv[0, 0] * px + hinv[0, 1] * py + hinv[0, 2]) / den
        gy = (hinv[1, 0] * px + hinv[1, 1] * py + hinv[1, 2]) / den
        del px, py, den
        pitch = self.cell_pixels()
        px_grid = 1.0 / pitch  # one pixel in grid units

        rgb = np.empty((h, w, 3), dtype=np.float32)
        rgb[...] = (226, 206, 122)  # the pale yellow casing around the board
        cols, rows = self.cols, self.rows

        def box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
            return (gx >= x0) & (gx < x1) & (gy >= y0) & (gy < y1)

        def outline(x0: float, y0: float, x1: float, y1: float, lw: float) -> np.ndarray:
            inner = box(x0 + lw, y0 + lw, x1 - lw, y1 - lw)
            return box(x0, y0, x1, y1) & ~inner

        # The PCB and the glass plate over it, in grid units around the electrode array.
        mx, my = max(3.5, 0.45 * cols), max(3.0, 0.55 * rows)
        rgb[box(-mx - 2.5, -my - 1.5, cols + mx + 2.5, rows + my + 1.5)] = (196, 172, 92)
        plate = box(-mx, -my, cols + mx, rows + my)
        rgb[plate] = (214, 190, 110)
        # Copper strip along the top of the plate, and the four reservoirs' outlines.
        rgb[box(-mx, -my, cols + mx, -my + 0.6)] = (178, 110, 80)
        line = 0.06
        ink = np.array((52, 48, 50), dtype=np.float32)
        for x0, y0 in (
            (-mx + 0.5, -my + 1.5),
            (cols + 0.7, -my + 1.5),
            (-mx + 0.5, rows - 1.0),
            (cols + 0.7, rows - 1.0),
        ):
            rgb[outline(x0, y0, x0 + mx - 1.2, y0 + min(3.0, my + 0.8), line)] = ink
        # Fiducials: white squares with a blocky dark code, above and beside the grid.
        size = 2.0
        for fx, fy in (
            (cols / 2 - size / 2, -my + 0.8),
            (-mx + 0.6, rows / 2 - size / 2),
            (cols + mx - 0.6 - size, rows / 2 - size / 2),
        ):
            inside = box(fx, fy, fx + size, fy + size)
            rgb[inside] = (236, 236, 240)
            code = self._rng.random((5, 5)) < 0.5
            cell = (size - 0.5) / 5
            cx = np.floor((gx[inside] - fx - 0.25) / cell).astype(np.int64)
            cy = np.floor((gy[inside] - fy - 0.25) / cell).astype(np.int64)
            ok = (cx >= 0) & (cx < 5) & (cy >= 0) & (cy < 5)
            dark = np.zeros(cx.shape, dtype=bool)
            dark[ok] = code[cy[ok], cx[ok]]
            sub = rgb[inside]
            sub[dark] = (30, 34, 70)
            rgb[inside] = sub

        # The electrode array: pads with zigzag (interdigitated) edges and dark gaps.
        array = box(0.0, 0.0, float(cols), float(rows))
        ax, ay = gx[array], gy[array]
        amp, period = 0.1, 0.5

        def tri(t: np.ndarray) -> np.ndarray:
            return np.abs(((t / period) % 1.0) - 0.5) * 2.0 - 0.5  # -0.5 .. 0.5

        ex = (ax - amp * tri(ay)) % 1.0
        ey = (ay - amp * tri(ax + 0.25)) % 1.0
        dx = np.minimum(ex, 1.0 - ex)
        dy = np.minimum(ey, 1.0 - ey)
        gap = 0.9 * px_grid  # about two pixels wide
        shade = np.minimum(_smoothstep(gap * 0.4, gap * 1.4, dx), _smoothstep(gap * 0.4, gap * 1.4, dy))
        pad = np.array((208, 180, 96), dtype=np.float32)
        rgb[array] = ink + (pad - ink) * shade[:, None]
        rgb[outline(-0.05, -0.05, cols + 0.05, rows + 0.05, 0.08)] = ink

        # Uneven illumination, brighter in the middle; overall level like the reference rig
        # (median ~150, whites ~210), leaving headroom for lighting steps before clipping.
        nx = (np.arange(w, dtype=np.float32) / w - 0.5)[None, :]
        ny = (np.arange(h, dtype=np.float32) / h - 0.45)[:, None]
        rgb *= (0.86 - 0.44 * (nx * nx + ny * ny))[..., None]
        # Low-frequency blotches (flux residue, plate reflections) so the board is not flat.
        for _ in range(6):
            fx, fy = self._rng.uniform(1.5, 6.0, size=2)
            phase = self._rng.uniform(0, 2 * math.pi, size=2)
            wave = np.sin(nx * fx * 2 * math.pi + phase[0]) * np.sin(ny * fy * 2 * math.pi + phase[1])
            rgb += (3.0 * wave)[..., None]

        y, cb, cr = _rgb_to_ycbcr(rgb)
        lo, hi = _NOISE_MAX, 255 - _NOISE_MAX
        return (
            np.clip(np.rint(y), lo, hi).astype(np.uint8),
            np.clip(np.rint(_subsample(cb)), 0, 255).astype(np.uint8),
            np.clip(np.rint(_subsample(cr)), 0, 255).astype(np.uint8),
        )

    def _make_noise(self, sigma: float, variants: int) -> list[np.ndarray]:
        """Noise fields stored as wrapping uint8 (two's complement of small ints)."""
        out = []
        for _ in range(max(1, variants)):
            n = np.clip(np.rint(self._rng.normal(0.0, sigma, size=(self.height, self.width))), -_NOISE_MAX, _NOISE_MAX)
            out.append(n.astype(np.int8).view(np.uint8))
        return out

    # -- frames ---------------------------------------------------------------------------

    def _open_encoder(self) -> av.CodecContext:
        ctx = av.CodecContext.create("mjpeg", "w")
        ctx.width = self.width
        ctx.height = self.height
        ctx.pix_fmt = "yuvj420p"
        ctx.time_base = Fraction(1, 10)
        # mjpeg takes a fixed quantiser from qmin/qmax (qscale alone is ignored by PyAV's path).
        ctx.qmin = self.quality
        ctx.qmax = self.quality
        ctx.open()
        return ctx

    def _key(self, drops: Iterable[Sequence[float]], gain: float, offset: float, spot: Sequence[float] | None) -> tuple:
        step = self.position_step
        qd = tuple(
            sorted(
                (round(float(c) / step) * step, round(float(r) / step) * step, round(float(rad) * 16) / 16)
                for c, r, rad in drops
            )
        )
        qs = None if spot is None else (round(float(spot[0]), 2), *(round(float(v), 4) for v in spot[1:5]))
        return qd, round(float(gain), 2), round(float(offset) * 2) / 2, qs

    def frame(
        self,
        drops: Iterable[Sequence[float]] = (),
        gain: float = 1.0,
        offset: float = 0.0,
        spot: Sequence[float] | None = None,
    ) -> bytes:
        """One JPEG of the board with `drops` under the given lighting (see module docstring).

        `spot` (gain, x, y, w, h): one rectangle of the picture (fractions of its size) lit by
        `gain` on top of the rest: a reflection or an indicator lamp that blinks.
        """
        key = self._key(drops, gain, offset, spot)
        variant = self._next_variant
        self._next_variant = (variant + 1) % len(self._noise)
        full_key = (key, variant)
        jpeg = self._cache.get(full_key)
        if jpeg is not None:
            self.hits += 1
            self._cache.move_to_end(full_key)
            return jpeg
        self.misses += 1
        if self._planes_key != key:
            self._planes = self._render(*key)
            self._planes_key = key
        jpeg = self._encode(self._planes, self._noise[variant])
        self._cache[full_key] = jpeg
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return jpeg

    def _render(
        self,
        drops: tuple[tuple[float, float, float], ...],
        gain: float,
        offset: float,
        spot: tuple[float, ...] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y = self._base_y.copy()
        cb = self._base_cb.copy()
        cr = self._base_cr.copy()
        for col, row, radius in drops:
            self._draw_drop(y, cb, cr, col, row, radius)
        if gain != 1.0 or offset != 0.0:
            levels = np.arange(256, dtype=np.float32)
            lut = np.clip(np.rint(levels * gain + offset), _NOISE_MAX, 255 - _NOISE_MAX).astype(np.uint8)
            np.take(lut, y, out=y)
            # Scaling light scales colour saturation too; an offset leaves chroma alone.
            clut = np.clip(np.rint((levels - 128.0) * gain + 128.0), 0, 255).astype(np.uint8)
            np.take(clut, cb, out=cb)
            np.take(clut, cr, out=cr)
        if spot is not None and spot[0] != 1.0:
            h, w = y.shape
            x0, y0 = int(spot[1] * w) & ~1, int(spot[2] * h) & ~1
            x1, y1 = min(w, x0 + max(2, int(spot[3] * w))), min(h, y0 + max(2, int(spot[4] * h)))
            levels = np.arange(256, dtype=np.float32)
            lut = np.clip(np.rint(levels * spot[0]), _NOISE_MAX, 255 - _NOISE_MAX).astype(np.uint8)
            y[y0:y1, x0:x1] = lut[y[y0:y1, x0:x1]]
        return y, cb, cr

    def _draw_drop(self, y: np.ndarray, cb: np.ndarray, cr: np.ndarray, col: float, row: float, radius: float) -> None:
        """A water drop: darker body with a dark meniscus rim and a small bright highlight."""
        if radius <= 0:
            return
        x0, y0 = self.drop_pixel_position(col, row)
        x1, y1 = self.drop_pixel_position(col + radius, row)
        x2, y2 = self.drop_pixel_position(col, row + radius)
        rx = max(1.0, math.hypot(x1 - x0, y1 - y0))
        ry = max(1.0, math.hypot(x2 - x0, y2 - y0))
        left, right = max(0, int(x0 - rx - 2)), min(self.width, int(x0 + rx + 3))
        top, bottom = max(0, int(y0 - ry - 2)), min(self.height, int(y0 + ry + 3))
        # Chroma patch on even bounds so it lines up with the luma patch.
        left -= left % 2
        top -= top % 2
        right += right % 2
        bottom += bottom % 2
        right, bottom = min(right, self.width), min(bottom, self.height)
        if left >= right or top >= bottom:
            return
        xs = np.arange(left, right, dtype=np.float32) + 0.5
        ys = np.arange(top, bottom, dtype=np.float32) + 0.5
        u = (xs[None, :] - x0) / rx
        v = (ys[:, None] - y0) / ry
        d = np.sqrt(u * u + v * v)
        edge = 1.5 / max(rx, ry)
        inside = 1.0 - _smoothstep(1.0 - edge, 1.0 + edge, d)
        rim = np.exp(-(((d - 0.9) / 0.09) ** 2))
        hl = np.exp(-(((u + 0.35) ** 2 + (v + 0.4) ** 2) / 0.02))
        patch = y[top:bottom, left:right].astype(np.float32)
        body = patch * (0.72 - 0.3 * rim) + 120.0 * hl
        patch += (body - patch) * inside
        lo, hi = _NOISE_MAX, 255 - _NOISE_MAX
        y[top:bottom, left:right] = np.clip(np.rint(patch), lo, hi).astype(np.uint8)
        # Water over the yellow pads looks greyer: pull chroma towards neutral.
        cin = _subsample(inside)
        for plane in (cb, cr):
            cp = plane[top // 2 : bottom // 2, left // 2 : right // 2].astype(np.float32)
            cp += (128.0 - cp) * 0.4 * cin[: cp.shape[0], : cp.shape[1]]
            plane[top // 2 : bottom // 2, left // 2 : right // 2] = np.rint(cp).astype(np.uint8)

    def _encode(self, planes: tuple[np.ndarray, np.ndarray, np.ndarray], noise: np.ndarray) -> bytes:
        frame = av.VideoFrame(self.width, self.height, "yuvj420p")
        for plane, data, add in zip(frame.planes, planes, (noise, None, None)):
            rows, cols = data.shape
            view = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)[:rows, :cols]
            if add is None:
                view[...] = data
            else:
                # Exact: data lies in [_NOISE_MAX, 255 - _NOISE_MAX] and |noise| <= _NOISE_MAX.
                np.add(data, add, out=view, casting="unsafe")
        frame.pts = self._pts
        self._pts += 1
        packets = self._encoder.encode(frame)
        return b"".join(bytes(p) for p in packets)

    def cache_info(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "size": len(self._cache), "max": self.cache_size}
