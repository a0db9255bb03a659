"""Free-space floor: parsing, default max(1 GB, 5 %), transitions with hysteresis, statvfs edge."""

from __future__ import annotations

import os

import pytest

from autorec.core.segmenter import CloseSegment, OpenSegment, Segmenter, SegmentPolicy
from autorec.services.diskfloor import DiskFloor, DiskFloorGuard, DiskWatch, MinFree, disk_usage
from autorec.triggers.base import Firing
from tests.support.eventbuilder import hv, message, payload

GB = 10**9


def test_default_is_the_larger_of_1gb_and_5_percent():
    default = MinFree.parse(None)
    assert default.floor(10 * GB) == 1 * GB  # 5 % would be 0.5 GB
    assert default.floor(100 * GB) == 5 * GB  # 5 % beats 1 GB
    assert "whichever is larger" in default.describe()


@pytest.mark.parametrize(
    ("text", "total", "floor"),
    [
        ("2GB", 100 * GB, 2 * GB),
        ("500MiB", GB, 500 * 2**20),
        ("10%", 50 * GB, 5 * GB),
        (" 2.5 % ", 1000, 25),
        (0, GB, 0),
    ],
)
def test_parse_sizes_and_percentages(text, total, floor):
    assert MinFree.parse(text).floor(total) == floor


@pytest.mark.parametrize("bad", ["lots", "120%", "-1%", "x%", "5 parsecs"])
def test_bad_values_are_value_errors(bad):
    with pytest.raises(ValueError):
        MinFree.parse(bad)


def test_transitions_fire_once_each_way_with_hysteresis():
    floor = DiskFloor(MinFree(bytes=1000, fraction=0.0), margin_fraction=0.1)
    assert floor.update(5000, 10**6) is None
    change = floor.update(999, 10**6)
    assert change is not None and change.state == "below" and change.floor_bytes == 1000
    assert "disk floor reached" in change.message()
    assert floor.below and floor.times_below == 1
    # Still below, then just above the floor but inside the margin: no flapping.
    assert floor.update(10, 10**6) is None
    assert floor.update(1050, 10**6) is None
    assert floor.below
    change = floor.update(1100, 10**6)
    assert change is not None and change.state == "above"
    assert not floor.below
    assert floor.update(999, 10**6).state == "below"
    assert floor.times_below == 2


def test_percentage_floor_follows_filesystem_size():
    floor = DiskFloor(MinFree.parse("10%"))
    assert floor.update(11, 100) is None
    assert floor.update(9, 100).state == "below"


def test_force_below_after_enospc():
    floor = DiskFloor(MinFree(bytes=100, fraction=0.0), margin_fraction=0.0)
    floor.update(10**6, 10**7)
    change = floor.force_below()
    assert change is not None and change.state == "below"
    assert floor.force_below() is None  # already below: one alert only
    assert floor.update(10**6, 10**7).state == "above"


def test_disk_usage_reads_statvfs(tmp_path):
    free, total = disk_usage(tmp_path)
    st = os.statvfs(tmp_path)
    assert total == st.f_blocks * st.f_frsize > 0
    assert 0 <= free <= total


def test_from_parsed_settings():
    assert MinFree.from_settings(None, None) == MinFree()
    assert MinFree.from_settings(5 * GB, None).floor(1000 * GB) == 5 * GB
    assert MinFree.from_settings(None, 20.0).floor(10 * GB) == 2 * GB


def test_disk_watch_samples_on_its_interval(tmp_path):
    free, total = disk_usage(tmp_path)
    watch = DiskWatch(tmp_path, DiskFloor(MinFree(bytes=free + 10**12, fraction=0.0)), interval=5.0)
    change = watch.poll(100.0)
    assert change is not None and change.state == "below" and watch.below
    assert watch.floor.last_total == total
    watch.floor.min_free = MinFree(bytes=0, fraction=0.0)
    assert watch.poll(104.0) is None  # not due yet
    assert watch.poll(105.0).state == "above"
    gone = DiskWatch(tmp_path / "missing")
    assert gone.poll(0.0) is None and gone.errors == 1 and "missing" in gone.last_error


class _Collect:
    """A sink that keeps the actions it is given, in order."""

    def __init__(self) -> None:
        self.actions: list = []

    def submit(self, actions) -> None:
        self.actions.extend(actions)


class _Pipe:
    def __init__(self) -> None:
        self.segmenter = Segmenter(default=SegmentPolicy(pre_roll=1.0, post_roll=100.0))
        self.sink = _Collect()

    def feed(self, t: float, fire: bool = False) -> None:
        firings = [Firing("moved", t, {})] if fire else []
        self.sink.submit(self.segmenter.feed(t, hv(t, 1.0).SerializeToString(), "hv_regulator", firings))

    # what the guard asks of a pipeline (autorec.core.pipeline.Pipeline.pause/resume)
    def pause(self, t: float, reason: str) -> None:
        self.sink.submit(self.segmenter.pause(t, reason))

    def resume(self, reason: str) -> None:
        if self.segmenter.paused == reason:
            self.segmenter.resume()


def test_guard_closes_the_open_segment_and_resumes(tmp_path):
    free, _ = disk_usage(tmp_path)
    clock = [0.0]
    errors = [0]
    changes = []
    pipe = _Pipe()
    watch = DiskWatch(tmp_path, DiskFloor(MinFree(bytes=0, fraction=0.0), margin_fraction=0.0), interval=5.0)
    guard = DiskFloorGuard(pipe, watch, lambda t, c: changes.append((t, c.state)), lambda: errors[0], lambda: clock[0])

    pipe.feed(10.0, fire=True)
    guard.tick(10.0)
    assert pipe.segmenter.is_open and changes == []

    # The disk "fills": the next due sample is below the floor.
    watch.floor.min_free = MinFree(bytes=free + 10**15, fraction=0.0)
    clock[0] = 1.0
    guard.tick(11.0)
    assert changes == []  # not due yet...
    errors[0] = 1  # ...but a failed write forces a sample at once
    guard.message(11.5, "hv_regulator")
    assert changes == [(11.5, "below")]
    assert not pipe.segmenter.is_open and pipe.segmenter.paused == "disk_floor"
    close = [a for a in pipe.sink.actions if isinstance(a, CloseSegment)]
    assert len(close) == 1 and close[0].reason == "disk_floor" and close[0].end == 11.5

    pipe.feed(12.0, fire=True)  # suppressed: no new segment below the floor
    assert sum(isinstance(a, OpenSegment) for a in pipe.sink.actions) == 1
    assert pipe.segmenter.suppressed == 1

    watch.floor.min_free = MinFree(bytes=0, fraction=0.0)
    clock[0] = 7.0
    guard.tick(13.0)
    assert changes[-1] == (13.0, "above") and pipe.segmenter.paused is None
    pipe.feed(14.0, fire=True)
    assert sum(isinstance(a, OpenSegment) for a in pipe.sink.actions) == 2


def test_the_floor_pauses_the_telemetry_track_too_and_counts_what_it_skipped(tmp_path):
    """Below the floor the telemetry track would fill the disk to 0 bytes: it is paused, and counted."""
    from autorec.core.pipeline import Pipeline
    from autorec.io.dailytrack import track_file_name
    from autorec.io.logfile import LogReader
    from autorec.io.writer import SegmentWriter
    from autorec.outdir import TELEMETRY_PREFIX
    from autorec.rules import parse_rules
    from autorec.runs.dispatch import Dispatcher

    out = tmp_path / "out"
    free, _ = disk_usage(tmp_path)
    clock = [0.0]
    writer = SegmentWriter(out, "{seq}", telemetry=True).start()
    pipe = Dispatcher(Pipeline(parse_rules("rules:\n  - name: el\n    trigger: electrodes\n"), offline=True), writer)
    watch = DiskWatch(tmp_path, DiskFloor(MinFree(bytes=0, fraction=0.0), margin_fraction=0.0), interval=1.0)
    pipe.listeners.append(DiskFloorGuard(pipe, watch, lambda t, c: None, clock=lambda: clock[0]))
    t0 = 1_795_520_000.0

    def feed(n: int, start: int) -> None:
        for i in range(start, start + n):
            p = payload("hv_regulator", t0 + i, i)
            pipe.message(message(p))

    feed(10, 0)
    watch.floor.min_free = MinFree(bytes=free + 10**15, fraction=0.0)  # the disk "fills"
    clock[0] = 2.0
    feed(1, 10)  # the guard samples after this message: below from here on
    assert pipe.paused == "disk_floor"
    feed(25, 11)
    assert pipe.stats.telemetry_paused == 25
    watch.floor.min_free = MinFree(bytes=0, fraction=0.0)
    clock[0] = 4.0
    feed(1, 36)  # still paused when it arrives; back above after it
    feed(4, 37)
    assert writer.close(10)
    assert len(list(LogReader(out / track_file_name(TELEMETRY_PREFIX, t0)))) == 11 + 4
    assert pipe.stats.telemetry_paused == 26  # every message is written or counted


def test_a_pause_inside_a_released_batch_holds_for_the_rest_of_the_batch():
    """The timeline may release several records at once (here: a step of the rig's clock back,
    confirmed by three records). A listener that pauses on the first of them (the disk floor)
    must pause the rest: no segment may open after the pause (it did when the pipeline ran the
    whole batch before anything was delivered)."""
    from autorec.core.pipeline import Pipeline
    from autorec.core.streamitems import StreamListener
    from autorec.rules import parse_rules
    from autorec.runs.dispatch import Dispatcher

    t0 = 1_795_520_000.0
    rules = parse_rules(
        "rules:\n  - {name: hi, trigger: message, where: {hv_regulator.voltage: 5}, pre_roll: 1s, post_roll: 60s}\n"
    )

    class Collect:
        def __init__(self):
            self.actions = []

        def submit(self, actions):
            self.actions.extend(actions)

        def telemetry(self, time, payload):
            pass

        def close(self, timeout=None):
            return True

    class PauseOnce(StreamListener):
        armed = False

        def message(self, t, kind):
            if self.armed:
                self.armed = False
                dispatcher.pause(t, "disk_floor")

    sink, guard = Collect(), PauseOnce()
    dispatcher = Dispatcher(Pipeline(rules, offline=True), sink, listeners=[guard])
    for i in range(10):
        dispatcher.message(message(payload("hv_regulator", t0 + i, 1)))
    guard.armed = True
    for i, volts in enumerate([1, 5, 1]):  # held together, released together; the 5 V one would fire
        dispatcher.message(message(payload("hv_regulator", t0 - 990 + i, volts)))

    dispatcher.finish()
    assert not any(isinstance(a, OpenSegment) for a in sink.actions), sink.actions
    assert dispatcher.pipeline.segmenter.suppressed == 1
