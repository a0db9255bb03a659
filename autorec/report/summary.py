"""The night's figures, in one place: what the report's summary, its PNG and `ls` totals agree on."""

from __future__ import annotations

from dataclasses import dataclass, field

from autorec.io.boundedread import Problems
from autorec.report.night import AlertSpan, Night


@dataclass
class NightSummary:
    start: float | None
    end: float | None
    segments: int
    segments_per_rule: dict[str, int]
    kept_bytes: int
    recorded_s: float  # summed segment durations
    seen_messages: int | None
    seen_bytes: int | None
    pdrecord_bytes: int | None  # what a full upstream pdrecord would have written
    connected_s: float | None  # from the journal; None without one
    disconnections: list[tuple[float, float]]
    alerts: list[AlertSpan]
    disk_start: int | None
    disk_end: int | None
    versions: list[str]
    rule_files: list[tuple[str, str | None]]  # (path, sha256)
    runs: int
    open_segments: int
    problems: list[str] = field(default_factory=list)

    @property
    def kept_fraction(self) -> float | None:
        if not self.pdrecord_bytes:
            return None
        return self.kept_bytes / self.pdrecord_bytes


def summarize_night(night: Night) -> NightSummary:
    span = night.span()
    seen = night.seen()
    connections = night.connections()
    runs = night.runs
    versions: dict[str, None] = {}
    rule_files: dict[tuple[str, str | None], None] = {}
    for r in runs:
        if isinstance(r.start.get("autorec"), str):
            versions.setdefault(r.start["autorec"], None)
        rules = r.start.get("rules")
        if isinstance(rules, str):
            sha = r.start.get("rules_sha256")
            rule_files.setdefault((rules, sha if isinstance(sha, str) else None), None)
    for s in night.segments:
        v = (s.sidecar or {}).get("autorec")
        if isinstance(v, str):
            versions.setdefault(v, None)
    disk_start, disk_end = night.disk()
    return NightSummary(
        start=span[0] if span else None,
        end=span[1] if span else None,
        segments=len(night.segments),
        segments_per_rule=night.segments_per_rule(),
        kept_bytes=night.kept_bytes,
        recorded_s=sum(s.duration for s in night.segments),
        seen_messages=seen[0] if seen else None,
        seen_bytes=seen[1] if seen else None,
        pdrecord_bytes=night.pdrecord_bytes(),
        connected_s=sum(b - a for a, b in connections) if runs else None,
        disconnections=night.disconnections(),
        alerts=night.alerts(),
        disk_start=disk_start,
        disk_end=disk_end,
        versions=list(versions),
        rule_files=list(rule_files),
        runs=len(runs),
        open_segments=len(night.partials),
        problems=Problems(night.problems),  # bounded: the report adds the track's and near-misses' own
    )
