"""A firing's evidence in words, for people: the night page, the report, MQTT messages.

Triggers put what they saw in a firing's `evidence` mapping (pins, scores, a camera box); this is
the one way autorec says it in a line, e.g. `camera: 0.4 % changed at (512, 300), 64x48 px` or
`pins [12]; added [12]; removed []`.
"""

from __future__ import annotations

from typing import Any


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


def describe_evidence(rule: str, evidence: Any) -> str:
    """A firing's evidence in words, e.g. `camera: 0.4 % changed at (512, 300)`."""
    if not isinstance(evidence, dict) or not evidence:
        return rule
    parts: list[str] = []
    bbox = evidence.get("bbox")
    score = _finite(evidence.get("score"))
    if isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int) for v in bbox):
        x, y, w, h = bbox
        pct = f"{score * 100:.2g} % changed" if score is not None else "change"
        parts.append(f"camera: {pct} at ({x + w // 2}, {y + h // 2}), {w}x{h} px")
    for key, value in evidence.items():
        if key in ("bbox", "score") and parts:
            continue
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, (list, tuple)) and len(value) > 12:
            value = f"[{', '.join(map(str, value[:12]))}, ...]"
        parts.append(f"{key} {value}")
    return "; ".join(str(p) for p in parts)
