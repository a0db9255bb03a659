"""The overnight services around a recording pipeline, wired in one place for every mode.

`Services(ruleset, out)` builds them from the rule file: segment hooks, video export on close,
retention, the alert monitor and its reporter (with the `on_alert` hook), the disk floor's sampler,
the status file, the night journal, the score track's log, MQTT events (`mqtt:`), uploads to
object storage (`upload:`, with retention's `keep_until_uploaded`) and (on request) the web UI's
live feed. `observers()` are the writer's segment observers; `attach(dispatcher, writer)` adds the
stream listeners and the disk floor's sampler to the run's dispatcher; `start(mode, source)`
writes the journal's start line; `counters()` is the one set of counters the status file, the
journal, the web UI and the metrics show; `snapshot()` the status file's fields, for MQTT and the metrics;
`close()` lets hooks, exports and uploads finish within the rule file's `shutdown_grace`.
"""

from __future__ import annotations

import collections
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from autorec.rig import default_rig_name
from autorec.services.diskfloor import disk_usage

if TYPE_CHECKING:
    from autorec.runs.dispatch import Dispatcher

log = logging.getLogger(__name__)


class Services:
    """The overnight services around a live pipeline, wired through its plug points.

    Writer observers: segment hooks, video export on close, retention. The disk
    floor: a sampler the dispatcher asks before each input (a crossing is an input
    of the pipeline). Stream listeners: alerts (with the on_alert hook), journal,
    status file, MQTT. Built before the writer starts; `close()`
    lets hooks and exports finish within the rule file's `shutdown_grace`.
    """

    def __init__(self, ruleset, out: Path) -> None:
        from autorec.io.retention import RetentionPolicy, RetentionWorker
        from autorec.services.alerts import AlertMonitor
        from autorec.services.diskfloor import DiskFloor, DiskWatch, MinFree
        from autorec.services.exportqueue import ExportQueue
        from autorec.services.hooks import SegmentHooks
        from autorec.services.hooks import from_config as hooks_from_config

        self.ruleset = ruleset
        self.out = out
        self.hooks = hooks_from_config(ruleset.hooks)
        self.export = ExportQueue(ruleset.output.video, mcap=ruleset.output.mcap, rules=ruleset.path)
        self.retention = RetentionPolicy.from_config(ruleset.output.keep, ruleset.output.max_total)
        self.retention_worker: RetentionWorker | None = None
        self.monitor = AlertMonitor(ruleset.alerts.alert_after, ruleset.alerts.camera_stall)
        self.disk = DiskWatch(
            out, DiskFloor(MinFree.from_settings(ruleset.output.min_free, ruleset.output.min_free_percent))
        )
        self.segment_hooks = SegmentHooks(self.hooks)
        self.score_log = None  # set by _live
        self.overrides: list = []  # --set, applied again on reload
        self.web_counters = None  # `run --http`: the web server's counters (WebUI.counters), set when it listens
        self.rig = default_rig_name()  # `run --rig`
        self.mqtt = None  # MqttEvents, started by attach() when the rule file has `mqtt:`
        from autorec.services.metrics import SegmentCounts

        self.segment_counts = SegmentCounts()
        self.upload = None  # autorec.services.upload.Uploader, made by observers() when the rule file has `upload:`

    def observers(self) -> list:
        from autorec.io.writer import SegmentObserver

        export = self.export

        class _ExportOnClose(SegmentObserver):
            def segment_closed(self, segment) -> None:
                export.submit(segment.path)

        out = [self.segment_hooks, self.segment_counts]
        if self.ruleset.output.video != "off" or self.ruleset.output.mcap:
            out.append(_ExportOnClose())
        if self.ruleset.upload is not None:
            from autorec.services.upload import Uploader

            # Made here, not in __init__: the rig's name (`run --rig`) is set between the two.
            upload = self.upload = Uploader(
                self.out,
                self.ruleset.upload,
                fsync=self.ruleset.output.fsync,
                status_file=self.ruleset.output.status_file,
                rig=self.rig,
            )
            self.export.on_done = lambda o: upload.video_exported(o.output) if o.status == "exported" else None
            out.append(upload)
        return out

    def attach(self, dispatcher: Dispatcher, writer) -> None:
        """Add the stream listeners and the disk floor's sampler to `dispatcher` (the run's) and the
        observers to `writer`. From then on the services read the pipeline only through its
        read-only `view`, and hear of it only through its outputs (a disk floor crossing too)."""
        from autorec.io.retention import RetentionWorker
        from autorec.outdir import JOURNAL_NAME
        from autorec.services.alerts import AlertReporter
        from autorec.services.diskfloor import DiskFloorSampler
        from autorec.services.journal import JournalListener
        from autorec.services.statusfile import StatusReporter

        self._view, self._writer = dispatcher.view, writer
        self._dispatcher = dispatcher  # only to add listeners later (web_feed)
        view = self._view
        self.journal = JournalListener(
            self.out / JOURNAL_NAME,
            stats=lambda: {
                "messages": view.stats.messages,
                "bytes_seen": view.stats.bytes,
                "bytes_kept": writer.stats.bytes,
                "segments": writer.stats.segments,
                "disk_free": self.disk.floor.last_free,
            },
            counters=self.counters,
        )
        alerts = self.alerts = AlertReporter(self.monitor, self.hooks)
        alerts.observers.append(self.journal.alert)
        # The disk floor is an input the dispatcher feeds (sampled before each input; at once after a
        # failed write, perhaps ENOSPC); its crossings reach the alerts as `FloorCrossed` outputs.
        dispatcher.floor_sampler = DiskFloorSampler(self.disk, write_errors=lambda: writer.stats.errors)
        dispatcher.listeners += [alerts, self.journal]
        if self.upload is not None:
            log.info("uploading to %s", self.upload.describe())
            self.upload.start()
        pinned = None
        if self.upload is not None and self.ruleset.output.keep_until_uploaded:
            pinned = lambda seg: not self.upload.confirmed(seg.files)  # noqa: E731
        if self.retention.active:
            self.retention_worker = RetentionWorker(
                self.out, self.retention, index_lock=writer.index_lock, pinned=pinned
            ).start()
            if pinned is not None:
                self.upload.on_uploaded = self.retention_worker.request  # deletes what just became deletable
            writer.add_observer(self.retention_worker)
            self.retention_worker.request()
        counters = self.counters
        if self.ruleset.output.status_file:
            self.status = StatusReporter(
                self.out / self.ruleset.output.status_file,
                counters=counters,
                alerts=self.monitor.status,
                writer_stats=lambda: writer.stats,
                disk=self.disk,
                scores=self.scores,
            )
            dispatcher.listeners.append(self.status)
        else:
            self.status = None
        if self.ruleset.mqtt.url:
            from autorec.services.mqtt import from_settings

            self.mqtt = from_settings(self.ruleset.mqtt, self.rig, self.snapshot)
            if self.mqtt is not None:
                writer.add_observer(self.mqtt)
                dispatcher.listeners.append(self.mqtt)
                alerts.observers.append(self.mqtt.alert)

    def counters(self) -> dict[str, int]:
        """The recorder's counters (status file, journal, web UI): the pipeline's own (see
        `Pipeline.counters`), the writer's and the services'. A flat dict of ints."""
        ws = self._writer.stats
        out = self._view.counters()
        out.update(
            {
                "segments_closed": ws.segments,
                "bytes_written": ws.bytes,
                "records_written": ws.records,
                "dropped": ws.dropped,
                "telemetry_dropped": ws.telemetry_dropped + ws.telemetry_errors,
                "timelapse_bytes": ws.timelapse_bytes,
                "timelapse_dropped": ws.timelapse_dropped + ws.timelapse_errors,
                "write_errors": ws.errors,
                "hooks_failed": self.hooks.counters.get("failed", 0) + self.hooks.counters.get("timed_out", 0),
                "exports_failed": self.export.failed,
                "bytes_seen": self._view.stats.seen_bytes,
                "pre_roll_bytes": self._view.pre_roll_bytes,  # a level, not a count
            }
        )
        if self.score_log is not None:  # the score track and near-misses: thinned floods, failed writes
            out["near_misses_thinned"] = self.score_log.near_misses_thinned
            out["score_track_errors"] = self.score_log.errors
        if self.web_counters is not None:  # `run --http`: the web server's connections held and refused
            out.update(self.web_counters())
        out.update(self.segment_counts.counters())
        if self.mqtt is not None:
            out.update(self.mqtt.counters())
        if self.upload is not None:
            out.update(self.upload.counters())
        return dict(sorted(out.items()))

    def snapshot(self) -> dict:
        """The status file's fields now (MQTT `status`, metrics); call it on the recorder's loop."""
        from autorec.services.statusfile import segment_info

        ws, floor = self._writer.stats, self.disk.floor
        return {
            "updated": time.time(),
            "connected": bool(self._view.stats.connected),
            "open_segment": segment_info(ws.open_segment),
            "last_segment": segment_info(ws.last_segment),
            "disk_free": floor.last_free,
            "disk_total": floor.last_total,
            "disk_below_floor": bool(floor.below),
            "counters": self.counters(),
            "alerts": self.monitor.status(),
        }

    def scores(self) -> dict:
        """Each rule's latest score against its threshold (status file, web UI)."""
        return {
            rule: {
                "time": s.time,
                "score": s.value,
                "threshold": s.threshold,
                "ratio": round(s.value / s.threshold, 4) if s.threshold > 0 else None,
            }
            for rule, s in self._view.latest_scores().items()
        }

    def web_feed(self, feed_class):
        """A web UI feed (`feed_class`, a `autorec.web.feed.LiveFeed`) attached to this run's pipeline
        and writer. The class is given by the web UI: this package sits below it."""
        from autorec.services.statusfile import RateMeter

        LiveFeed = feed_class
        writer = self._writer
        meter = RateMeter()
        recent: collections.deque = collections.deque(maxlen=20)

        def snapshot() -> dict:
            # the status fields (the feed sets `connected` itself), plus the live page's rate and scores
            return {
                **self.snapshot(),
                "msg_per_s": round(meter.rate(time.monotonic()), 2),
                "scores": self.scores(),
            }

        class _Feed(LiveFeed):
            def message(self, t: float, kind: str | None) -> None:
                meter.add(time.monotonic())
                super().message(t, kind)

            def _segment_closed(self, summary: dict) -> None:
                recent.append(summary)
                super()._segment_closed(summary)

        feed = _Feed(snapshot, holds=self._view.open_holds, recent=lambda: list(recent))
        self._dispatcher.listeners.append(feed)
        self._dispatcher.frame_listeners.append(feed.frame)
        writer.add_observer(feed)
        return feed

    def start(self, mode: str, source: str | None) -> None:
        """Say in the journal that recording starts (after recovery, before the first message)."""

        try:
            disk: tuple[int, int] | None = disk_usage(self.out)
        except OSError:
            disk = None
        self.journal.start(mode=mode, source=source, rules=self.ruleset.path, out=self.out, disk=disk)

    def close(self) -> None:
        grace = self.ruleset.shutdown_grace
        if self.mqtt is not None:  # after the writer: the last segment's `end` goes out first
            self.mqtt.close()
        self.journal.is_connected = False
        self.journal.stop()
        if self.score_log is not None and not self.score_log.close(10):
            log.warning("score track still being written after 10 s")
        if self.status is not None:
            self.status.is_connected = False  # the source is stopped: the last word says so
            self.status.update(force=True)
        if not self.hooks.close(grace):
            log.warning("hooks still running after %g s were stopped", grace)
        self.export.close(grace)
        if self.upload is not None:
            self.upload.close(grace)
        if self.retention_worker is not None:
            self.retention_worker.close(5)
