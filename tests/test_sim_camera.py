"""Camera frames in the simulated stream: decodable, drops where scan_capacitance says, lighting changes."""

from __future__ import annotations

import av
import numpy as np
import pytest
from test_sim_support import decoded, stream_run

from autorec import events
from autorec.sim.camera import CameraRenderer, grid_to_pixel
from autorec.sim.config import SimConfig
from autorec.sim.scenario import load_scenario

T0 = 1_700_000_000.0


def luma(jpeg: bytes) -> np.ndarray:
    ctx = av.CodecContext.create("mjpeg", "r")
    (frame,) = ctx.decode(av.Packet(jpeg))
    assert (frame.width, frame.height) == (1024, 768)
    return frame.to_ndarray(format="gray").astype(np.float32)


def run(tmp_path, scenario: str, seconds: float):
    path = tmp_path / "s.yaml"
    path.write_text(scenario)
    cfg = SimConfig(scenario=str(path), speed=100, duration=seconds, fps=10, start_time=T0)
    msgs, truth, _ = stream_run(cfg)
    return [ev for _, ev in decoded(msgs)], truth


def test_drops_appear_where_scan_capacitance_says(tmp_path):
    scenario = """
drops: [[2, 2], [10, 6]]
repeat: false
timeline:
  - idle: 1s
  - move: {drop: 0, path: [[3, 2], [4, 2], [4, 3]]}
  - idle: 2s
"""
    evs, _ = run(tmp_path, scenario, 4.5)
    board = load_scenario(str(tmp_path / "s.yaml")).board
    reference = CameraRenderer(board.cols, board.rows, seed=0)
    empty = luma(reference.frame(()))
    transform = None
    covered: set = set()
    checked = []
    for ev in evs:
        k = events.kind(ev)
        t = events.timestamp(ev)
        if k == "scan_capacitance":
            covered = {board.cell_of(i) for i, m in enumerate(ev.scan_capacitance.measurements) if m.drop_present}
        elif k == "image_transform":
            transform = list(ev.image_transform.transform)
        elif k == "image" and (T0 + 0.5 < t < T0 + 1.0 or T0 + 3.5 < t):  # drops at rest
            assert transform == pytest.approx(reference.transform)
            diff = np.abs(luma(ev.image.image_data) - empty)
            for cell in board.pins:
                x, y = grid_to_pixel(transform, cell[0] + 0.5, cell[1] + 0.5)
                patch = diff[int(y) - 5 : int(y) + 6, int(x) - 5 : int(x) + 6].mean()
                if cell in covered:
                    assert patch > 15, (t - T0, cell, patch)
                else:
                    assert patch < 8, (t - T0, cell, patch)
            checked.append(frozenset(covered))
    assert len(set(checked)) == 2  # before and after the move
    assert frozenset({(4, 3), (10, 6)}) in checked


def test_lighting_step_changes_brightness_without_drop_moves(tmp_path):
    scenario = """
drops: [[2, 2], [9, 5]]
repeat: false
timeline:
  - idle: 1s
  - lighting: 0.7
  - idle: 1s
"""
    evs, truth = run(tmp_path, scenario, 2)
    before, after, drop_sets = [], [], set()
    for ev in evs:
        k = events.kind(ev)
        t = events.timestamp(ev)
        if k == "image":
            (before if t < T0 + 1.0 else after).append(luma(ev.image.image_data).mean())
        elif k == "scan_capacitance":
            drop_sets.add(frozenset(i for i, m in enumerate(ev.scan_capacitance.measurements) if m.drop_present))
    assert len(before) >= 8 and len(after) >= 8
    ratio = np.mean(after) / np.mean(before)
    assert 0.6 < ratio < 0.8
    assert max(before) - min(before) < 2  # still picture: noise only
    assert len(drop_sets) == 1 and len(next(iter(drop_sets))) == 2
    assert [e["start"] for e in truth["lighting"]] == [T0 + 1.0]
    assert truth["activity"] == []
