"""Prometheus metrics: the recorder's own counters and status, read at scrape time.

`StatusCollector(source)` is a prometheus-client custom collector: each scrape calls `source()`
for a status-file shaped dict (`Services.snapshot()` for a running recorder, the directory's
`status.json` for `serve DIR`) and turns it into metric families. Nothing is counted per
message for the metrics: the recorder's counters already exist, so a scrape costs one
snapshot and a recorder nobody scrapes pays nothing.

- `COUNTERS` maps each counter key of the status file to its metric (name, type, help): one
  line per counter, so a new service's counters (uploads pending and failed, say) are one line
  each. A counter the table does not name is still exported, as
  `autorec_status_counter{key="..."}`, a gauge (it may be a level).
- Keys `RULE.NAME` (per-rule counters) become labels, not a metric per rule:
  `autorec_rule_segments_closed_total{rule, reason}` (from `SegmentCounts`),
  `autorec_rule_budget_blocked_firings_total{rule}`, `autorec_rule_flap_thinned_frames_total{rule}`,
  and a trigger's own counters as `autorec_trigger_counter_total{rule, counter}`.
- From the status fields: connected, disk free/total/below floor, alerts active (one
  `autorec_alert_active{alert}` per raised alert), the open segment, the snapshot's time.

`SegmentCounts` is the writer observer behind the per-rule segment counts: a segment kept for
two rules counts once for each. `serve_metrics(host, port, registry)` serves `/metrics` from a
thread of prometheus-client (`run --metrics`, when no web UI is wanted).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from autorec import __version__
from autorec.outdir import STATUS_NAME

log = logging.getLogger(__name__)

# status-file counter key -> (metric name, "counter" | "gauge", help). Counter names get `_total`.
COUNTERS: dict[str, tuple[str, str, str]] = {
    "messages": ("autorec_messages", "counter", "Messages received from the rig"),
    "bytes_seen": ("autorec_seen_bytes", "counter", "Bytes received from the rig (as a log would hold them)"),
    "records_written": ("autorec_kept_messages", "counter", "Messages written into segments"),
    "bytes_written": ("autorec_kept_bytes", "counter", "Bytes written into segments"),
    "rejected": ("autorec_rejected_messages", "counter", "Messages that could not be read (not a protobuf, ...)"),
    "dropped": ("autorec_dropped_messages", "counter", "Segment messages dropped: the disk too slow or failing"),
    "telemetry_dropped": ("autorec_telemetry_dropped_records", "counter", "Telemetry records dropped"),
    "timelapse_dropped": ("autorec_timelapse_dropped_records", "counter", "Timelapse records dropped"),
    "telemetry_paused": ("autorec_telemetry_paused_messages", "counter", "Telemetry not written while paused"),
    "timelapse_frames": ("autorec_timelapse_frames", "counter", "Frames picked for the timelapse track"),
    "timelapse_bytes": ("autorec_timelapse_bytes", "counter", "Bytes written to the timelapse track"),
    "firings": ("autorec_firings", "counter", "Rule firings"),
    "suppressed_firings": ("autorec_suppressed_firings", "counter", "Firings ignored while recording was paused"),
    "budget_blocked": ("autorec_budget_blocked_firings", "counter", "Firings blocked by a budget"),
    "flap_thinned": ("autorec_flap_thinned_frames", "counter", "Frames left out of flapping rules' segments"),
    "segments_opened": ("autorec_segments_opened", "counter", "Segments opened (parts included)"),
    "segments_closed": ("autorec_segments_closed", "counter", "Segments closed and final"),
    "pre_roll_dropped": ("autorec_pre_roll_dropped_messages", "counter", "Messages dropped by the pre-roll byte cap"),
    "pre_roll_bytes": ("autorec_pre_roll_bytes", "gauge", "Payload bytes held in the pre-roll now"),
    "clock_outliers": ("autorec_clock_outliers", "counter", "Rig timestamps set aside as outliers"),
    "clock_jumps": ("autorec_clock_jumps", "counter", "Rig clock jumps"),
    "clock_steps": ("autorec_clock_steps", "counter", "Rig clock steps"),
    "trigger_errors": ("autorec_trigger_errors", "counter", "Errors raised by triggers"),
    "write_errors": ("autorec_write_errors", "counter", "Disk errors of the segment writer"),
    "hooks_failed": ("autorec_hooks_failed", "counter", "Hooks that failed or timed out"),
    "exports_failed": ("autorec_exports_failed", "counter", "Video exports that failed"),
    "mqtt_published": ("autorec_mqtt_published_messages", "counter", "MQTT messages acknowledged by the broker"),
    "mqtt_queued": ("autorec_mqtt_queued_messages", "gauge", "MQTT messages waiting for the broker now"),
    "mqtt_dropped": ("autorec_mqtt_dropped_messages", "counter", "MQTT messages dropped: the queue was full"),
    "uploads_pending": ("autorec_uploads_pending_files", "gauge", "Files waiting for upload now"),
    "uploads_failed": ("autorec_uploads_failed", "counter", "Upload attempts that failed"),
    "uploads_done": ("autorec_uploads_files", "counter", "Files uploaded and confirmed by the store"),
    "upload_bytes": ("autorec_uploaded_bytes", "counter", "Bytes uploaded and confirmed by the store"),
}

SEGMENT_KEY = "segments_"  # RULE.segments_REASON: segments closed with that rule, by close reason
RULE_COUNTERS = {
    "budget_blocked": ("autorec_rule_budget_blocked_firings", "Firings of the rule blocked by its budget"),
    "flap_thinned": ("autorec_rule_flap_thinned_frames", "Frames left out while the rule flapped"),
}


class SegmentCounts:
    """A writer segment observer counting closed segments by rule and close reason (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}

    def segment_opened(self, segment: Any) -> None:
        pass

    def segment_closed(self, segment: Any) -> None:
        reason = str(segment.close_reason or "unknown")
        with self._lock:
            for rule in segment.rules or ("(none)",):
                self._counts[(rule, reason)] = self._counts.get((rule, reason), 0) + 1

    def counters(self) -> dict[str, int]:
        """`RULE.segments_REASON` keys for the status file's counters."""
        with self._lock:
            return {f"{rule}.{SEGMENT_KEY}{reason}": n for (rule, reason), n in self._counts.items()}


class StatusCollector:
    """A prometheus-client collector reading `source()` (a status dict, or None) at each scrape."""

    def __init__(self, source: Callable[[], dict[str, Any] | None], rig: str | None = None) -> None:
        self.source = source
        self.rig = rig
        self.scrape_errors = 0

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        info = GaugeMetricFamily("autorec_info", "autorec's version and the rig's name", labels=["version", "rig"])
        try:
            status = self.source()
        except Exception as exc:  # a scrape must never take the recorder down; say so in the metrics
            self.scrape_errors += 1
            log.warning("metrics: cannot collect the status: %s", exc)
            status = None
        rig = self.rig if self.rig is not None else str((status or {}).get("rig") or "")
        info.add_metric([__version__, rig], 1)
        yield info
        up = GaugeMetricFamily("autorec_status_up", "1 when the recorder's status could be read")
        up.add_metric([], 1 if status else 0)
        yield up
        if not status:
            return
        yield from _status_metrics(status, CounterMetricFamily, GaugeMetricFamily)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _status_metrics(status: dict[str, Any], counter: Any, gauge: Any) -> Iterator[Any]:
    def single(name: str, help_text: str, value: Any, kind: Any = gauge) -> Iterator[Any]:
        v = _number(value)
        if v is not None:
            family = kind(name, help_text)
            family.add_metric([], v)
            yield family

    yield from single("autorec_status_updated_timestamp_seconds", "When the status was taken", status.get("updated"))
    yield from single("autorec_connected", "1 while the rig's stream is connected", bool(status.get("connected")))
    yield from single("autorec_disk_free_bytes", "Free space of the output filesystem", status.get("disk_free"))
    yield from single("autorec_disk_total_bytes", "Size of the output filesystem", status.get("disk_total"))
    yield from single(
        "autorec_disk_below_floor", "1 while free space is below the floor", bool(status.get("disk_below_floor"))
    )
    alerts = [a for a in status.get("alerts") or () if isinstance(a, dict)]
    yield from single("autorec_alerts_active", "Alerts raised and not cleared", len(alerts))
    per_alert = gauge("autorec_alert_active", "1 for each alert raised and not cleared", labels=["alert"])
    for a in alerts:
        per_alert.add_metric([str(a.get("key"))], 1)
    yield per_alert
    open_segment = status.get("open_segment")
    yield from single("autorec_segment_open", "1 while a segment is being recorded", open_segment is not None)
    if isinstance(open_segment, dict):
        yield from single("autorec_open_segment_bytes", "Bytes of the open segment so far", open_segment.get("bytes"))

    counters = status.get("counters") or {}
    families: dict[str, Any] = {}
    segments = counter(
        "autorec_rule_segments_closed",
        "Segments closed, by rule and close reason (a segment of two rules counts for each)",
        labels=["rule", "reason"],
    )
    trigger = counter("autorec_trigger_counter", "A trigger's own counters", labels=["rule", "counter"])
    other = gauge("autorec_status_counter", "A status-file counter with no metric of its own", labels=["key"])
    for key, value in sorted(counters.items()):
        v = _number(value)
        if v is None:
            continue
        if key in COUNTERS:
            name, kind, help_text = COUNTERS[key]
            family = (counter if kind == "counter" else gauge)(name, help_text)
            family.add_metric([], v)
            families[name] = family
            continue
        rule, dot, name = key.rpartition(".")
        if not dot or not rule:
            other.add_metric([key], v)
        elif name.startswith(SEGMENT_KEY):
            segments.add_metric([rule, name[len(SEGMENT_KEY) :]], v)
        elif name in RULE_COUNTERS:
            metric, help_text = RULE_COUNTERS[name]
            if metric not in families:
                families[metric] = counter(metric, help_text, labels=["rule"])
            families[metric].add_metric([rule], v)
        else:
            trigger.add_metric([rule, name], v)
    yield from families.values()
    yield from (segments, trigger, other)


def directory_status(directory: str | Path, name: str = STATUS_NAME) -> Callable[[], dict[str, Any] | None]:
    """A `StatusCollector` source reading the status file a run keeps in `directory` (`serve DIR`)."""
    path = Path(directory) / name

    def read() -> dict[str, Any] | None:
        from autorec.io.boundedread import read_capped
        from autorec.outdir import check_status

        raw, _ = read_capped(path, 1 << 20)  # a regular file only: a planted FIFO never blocks a scrape
        if raw is None:
            return None  # no run yet, or one being replaced: autorec_status_up 0
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            return None
        status, _ = check_status(data)  # typed: a string where a count goes is left out, not a scrape error
        return status

    return read


def make_registry(collector: StatusCollector) -> Any:
    """A prometheus-client registry holding only `collector` (no process or platform metrics of this
    Python: they would say nothing of the recorder and cost each scrape)."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def exposition(registry: Any) -> tuple[bytes, str]:
    """The text exposition of `registry` and its content type (for `/metrics` on the web UI)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(registry), CONTENT_TYPE_LATEST


def serve_metrics(
    host: str, port: int, registry: Any, max_connections: int = 8, idle_timeout: float = 10.0
) -> tuple[Any, threading.Thread]:
    """Serve `/metrics` on host:port from a thread of its own; `(server, thread)`.

    prometheus-client's WSGI app behind a server with limits (the recorder shares its process, so a
    hostile network must cost it nothing): at most `max_connections` at once (the next is closed at
    once, counted in `server.refused`), a connection silent for `idle_timeout` seconds is closed, its
    threads are daemons. prometheus-client's own `start_http_server` holds a thread and a descriptor
    per idle connection, forever: a few hundred of them took the recorder's descriptors.
    OSError when the address cannot be bound. Stop with `server.shutdown()`."""
    import socket
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import make_wsgi_app

    class Handler(WSGIRequestHandler):
        timeout = idle_timeout  # StreamRequestHandler sets it on the socket: a silent client is dropped

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per scrape on stderr is noise

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        refused = 0
        _active = 0
        _lock = threading.Lock()

        def process_request(self, request: Any, client_address: Any) -> None:
            with self._lock:
                if self._active >= max_connections:
                    type(self).refused += 1
                    self.shutdown_request(request)
                    return
                type(self)._active += 1
            super().process_request(request, client_address)

        def process_request_thread(self, request: Any, client_address: Any) -> None:
            try:
                super().process_request_thread(request, client_address)
            finally:
                with self._lock:
                    type(self)._active -= 1

    server = make_server(host, port, make_wsgi_app(registry), server_class=Server, handler_class=Handler)
    thread = threading.Thread(target=server.serve_forever, name="autorec-metrics", daemon=True)
    thread.start()
    return server, thread


def status_registry(services: Any) -> Any:
    """A registry of the run's counters (`services.snapshot`, read on the recorder's loop at each
    scrape), or None when prometheus-client is not installed. Call it on the recorder's loop."""
    import asyncio

    from autorec.io.mainloop import on_loop

    try:
        return make_registry(StatusCollector(on_loop(services.snapshot, asyncio.get_running_loop()), rig=services.rig))
    except ImportError:
        return None  # `run` checked --metrics; the web UI's /metrics says what to install


def metrics_companion(host: str, port: int) -> Callable[[Any], Any]:
    """`run --metrics [HOST:]PORT` as a companion of the live run (`autorec.runs.live.Companion`):
    `/metrics` from prometheus-client's own thread for as long as the run goes on. A port that
    cannot be bound is logged and the recording goes on without it."""
    import contextlib

    @contextlib.asynccontextmanager
    async def companion(services: Any):
        server = None
        registry = status_registry(services)
        if registry is not None:
            try:
                server, _thread = serve_metrics(host, port, registry)
            except OSError as exc:
                log.error("metrics: cannot listen on %s:%d: %s (recording goes on without them)", host, port, exc)
            else:
                log.info("metrics at http://%s:%d/metrics", host, port)
        try:
            yield
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()

    return companion
