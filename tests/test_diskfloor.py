"""Free-space floor: parsing, default max(1 GB, 5 %), transitions with hysteresis, statvfs edge."""

from __future__ import annotations

import os

import pytest

from autorec.core.pipeline import FloorCrossed, Pipeline, SegmentActions
from autorec.core.segmenter import CloseSegment, OpenSegment
from autorec.core.streamitems import Message, StreamListener
from autorec.rules import parse_rules
from autorec.runs.dispatch import Dispatcher
from autorec.services.diskfloor import DiskFloor, DiskFloorSampler, DiskWatch, MinFree, disk_usage
from tests.support.eventbuilder import message, payload

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
    assert floor.below
    # Still below, then just above the floor but inside the margin: no flapping.
    assert floor.update(10, 10**6) is None
    assert floor.update(1050, 10**6) is None
    assert floor.below
    change = floor.update(1100, 10**6)
    assert change is not None and change.state == "above"
    assert not floor.below
    assert floor.update(999, 10**6).state == "below"


def test_percentage_floor_follows_filesystem_size():
    floor = DiskFloor(MinFree.parse("10%"))
    assert floor.update(11, 100) is None
    assert floor.update(9, 100).state == "below"


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


T0 = 1_795_520_000.0
# One rule that fires on every 5 V reading: a test says when a segment should open.
HI_RULES = "rules:\n  - {name: hi, trigger: message, where: {hv_regulator.voltage: 5}, pre_roll: 1s, post_roll: 60s}\n"


class _Collect:
    """A sink that keeps the actions it is given, in order."""

    def __init__(self) -> None:
        self.actions: list = []

    def submit(self, actions) -> None:
        self.actions.extend(actions)

    def telemetry(self, time, payload) -> None:
        pass

    def close(self, timeout=None) -> bool:
        return True


class _Crossings(StreamListener):
    """A listener that keeps the disk floor crossings it hears of (the alerts' part)."""

    def __init__(self) -> None:
        self.crossings: list[tuple[float, bool]] = []

    def floor_crossed(self, t: float, below: bool, free_bytes: int, floor_bytes: int) -> None:
        self.crossings.append((t, below))


def _hv(t: float, volts: float) -> Message:
    return message(payload("hv_regulator", t, volts))


def _filling_watch(path) -> tuple[DiskWatch, int]:
    """A watch on `path`'s real filesystem whose floor a test moves above or below what is free."""
    free, _ = disk_usage(path)
    return DiskWatch(path, DiskFloor(MinFree(bytes=0, fraction=0.0), margin_fraction=0.0), interval=5.0), free


def test_a_crossing_is_fed_before_the_next_input_and_reaches_the_listeners(tmp_path):
    """The dispatcher samples the floor before each input (on its interval, or at once after a
    failed write) and feeds a crossing to the pipeline: the open segment closes at the stream time
    the pipeline had reached (the record before), the input is processed paused, and the
    listeners hear of the crossing as an output."""
    clock, errors = [0.0], [0]
    watch, free = _filling_watch(tmp_path)
    sampler = DiskFloorSampler(watch, lambda: errors[0], lambda: clock[0], wall=lambda: 0.0)
    sink, heard = _Collect(), _Crossings()
    dispatcher = Dispatcher(
        Pipeline(parse_rules(HI_RULES), offline=True), sink, listeners=[heard], floor_sampler=sampler
    )

    dispatcher.message(_hv(T0 + 10, 5))
    dispatcher.message(_hv(T0 + 10.5, 1))
    assert dispatcher.view.open_rules == ("hi",) and heard.crossings == []

    # The disk "fills": the next due sample is below the floor.
    watch.floor.min_free = MinFree(bytes=free + 10**15, fraction=0.0)
    clock[0] = 1.0
    dispatcher.message(_hv(T0 + 11, 1))
    assert heard.crossings == [] and dispatcher.paused is None  # not due yet...
    errors[0] = 1  # ...but a failed write forces a sample, before the next input
    dispatcher.message(_hv(T0 + 11.5, 1))
    assert heard.crossings == [(T0 + 11, True)] and dispatcher.paused == "disk_floor"
    (close,) = [a for a in sink.actions if isinstance(a, CloseSegment)]
    assert close.reason == "disk_floor" and close.end == T0 + 11  # the 11.5 s record came after the crossing
    assert max(a.time for a in sink.actions if hasattr(a, "payload")) == T0 + 11

    dispatcher.message(_hv(T0 + 12, 5))  # suppressed: no new segment below the floor
    assert sum(isinstance(a, OpenSegment) for a in sink.actions) == 1
    assert dispatcher.pipeline.segmenter.suppressed == 1

    watch.floor.min_free = MinFree(bytes=0, fraction=0.0)
    clock[0] = 7.0
    dispatcher.message(_hv(T0 + 14, 5))  # back above before this input: it opens a segment
    assert heard.crossings[-1] == (T0 + 12, False) and dispatcher.paused is None
    assert sum(isinstance(a, OpenSegment) for a in sink.actions) == 2


def test_no_listener_can_act_back_on_the_pipeline():
    """One input API: each input returns its outputs (no step API to run the pipeline between two
    records), the disk floor is an input whose crossing reaches the listeners as an output, and a
    listener that feeds the dispatcher from inside a delivery is refused."""
    pipeline = Pipeline(parse_rules(HI_RULES), offline=True)
    for step_api in ("put", "put_tick", "put_link", "put_finish", "next_outputs", "pause", "resume"):
        assert not hasattr(pipeline, step_api), step_api
    assert pipeline.message(_hv(T0, 5))  # the outputs come back from the input itself
    out = pipeline.floor_crossed(True, 10, 1000, wall=0.0)
    assert [type(o) for o in out] == [SegmentActions, FloorCrossed]  # the close, then the crossing
    assert out[0].actions[-1].reason == "disk_floor" and out[1] == FloorCrossed(T0, True, 10, 1000)
    assert "disk floor reached: 10B free" in out[1].message()
    assert pipeline.floor_crossed(True, 5, 1000, wall=0.0) == []  # already below: nothing new
    assert pipeline.floor_crossed(False, 2000, 1000, wall=0.0) == [FloorCrossed(T0, False, 2000, 1000)]

    class ActsBack(StreamListener):
        def message(self, t, kind):
            dispatcher.floor_crossed(True, 0, 1000, wall=0.0)

    class Ticks(StreamListener):
        def fired(self, t, firings):
            dispatcher.tick(0.0)

    for listener in (ActsBack(), Ticks()):
        sink = _Collect()
        dispatcher = Dispatcher(Pipeline(parse_rules(HI_RULES), offline=True), sink, listeners=[listener])
        with pytest.raises(RuntimeError, match="listeners only listen"):
            dispatcher.message(_hv(T0, 5))
        assert dispatcher.paused is None  # the refused input changed nothing
        dispatcher.listeners.clear()
        dispatcher.message(_hv(T0 + 1, 1))  # the dispatcher is usable again after the refusal


def test_before_any_stream_time_a_crossing_is_timed_by_the_wall_clock_only(tmp_path):
    """A crossing before the stream has given any time reaches the alerts at the local wall clock,
    but that clock never becomes the segmenter's: a rig whose clock is far behind (or ahead) still
    records segments at its own times once space is back."""
    watch, free = _filling_watch(tmp_path)
    watch.interval = 0.0
    watch.floor.min_free = MinFree(bytes=free + 10**15, fraction=0.0)
    wall = 4_000_000_000.0  # the local clock, far from the rig's
    sink, heard = _Collect(), _Crossings()
    sampler = DiskFloorSampler(watch, clock=lambda: 0.0, wall=lambda: wall)
    dispatcher = Dispatcher(
        Pipeline(parse_rules(HI_RULES), offline=True), sink, listeners=[heard], floor_sampler=sampler
    )
    dispatcher.message(_hv(T0, 5))  # below before it: suppressed
    assert heard.crossings == [(wall, True)] and not sink.actions
    watch.floor.min_free = MinFree(bytes=0, fraction=0.0)
    dispatcher.message(_hv(T0 + 1, 5))
    dispatcher.message(_hv(T0 + 2, 1))  # well inside the post-roll (had the segmenter's clock gone to wall: past it)
    dispatcher.finish()
    assert heard.crossings[-1] == (T0, False)
    (opened,) = [a for a in sink.actions if isinstance(a, OpenSegment)]
    (closed,) = [a for a in sink.actions if isinstance(a, CloseSegment)]
    assert opened.start == T0 and closed.end == T0 + 2 and closed.reason == "end_of_log"


def test_the_floor_pauses_the_telemetry_track_too_and_counts_what_it_skipped(tmp_path):
    """Below the floor the telemetry track would fill the disk to 0 bytes: it is paused, and counted."""
    from autorec.io.dailytrack import track_file_name
    from autorec.io.logfile import LogReader
    from autorec.io.writer import SegmentWriter
    from autorec.outdir import TELEMETRY_PREFIX

    out = tmp_path / "out"
    free, _ = disk_usage(tmp_path)
    clock = [0.0]
    writer = SegmentWriter(out, "{seq}", telemetry=True).start()
    watch = DiskWatch(tmp_path, DiskFloor(MinFree(bytes=0, fraction=0.0), margin_fraction=0.0), interval=1.0)
    dispatcher = Dispatcher(
        Pipeline(parse_rules("rules:\n  - name: el\n    trigger: electrodes\n"), offline=True),
        writer,
        floor_sampler=DiskFloorSampler(watch, clock=lambda: clock[0]),
    )

    def feed(n: int, start: int) -> None:
        for i in range(start, start + n):
            dispatcher.message(message(payload("hv_regulator", T0 + i, i)))

    feed(10, 0)
    watch.floor.min_free = MinFree(bytes=free + 10**15, fraction=0.0)  # the disk "fills"
    clock[0] = 2.0
    feed(1, 10)  # the dispatcher samples before this message: below from it on
    assert dispatcher.paused == "disk_floor"
    feed(25, 11)
    assert dispatcher.stats.telemetry_paused == 26
    watch.floor.min_free = MinFree(bytes=0, fraction=0.0)
    clock[0] = 4.0
    feed(1, 36)  # back above before it arrives
    assert dispatcher.paused is None
    feed(4, 37)
    assert writer.close(10)
    assert len(list(LogReader(out / track_file_name(TELEMETRY_PREFIX, T0)))) == 10 + 5
    assert dispatcher.stats.telemetry_paused == 26  # every message is written or counted


def test_a_crossing_before_a_released_batch_holds_for_all_of_it(tmp_path):
    """The timeline may release several records at once (here: a step of the rig's clock back,
    confirmed by three records). A crossing is sampled before an input, so the records one input
    releases are all on the same side of it: below the floor none of them opens a segment."""
    watch, free = _filling_watch(tmp_path)
    watch.interval = 0.0
    sink, heard = _Collect(), _Crossings()
    sampler = DiskFloorSampler(watch, clock=lambda: 0.0, wall=lambda: 0.0)
    dispatcher = Dispatcher(
        Pipeline(parse_rules(HI_RULES), offline=True), sink, listeners=[heard], floor_sampler=sampler
    )
    for i in range(10):
        dispatcher.message(_hv(T0 + i, 1))
    for i, volts in enumerate([1, 5, 1]):  # held together, released together; the 5 V one would fire
        if i == 2:  # the disk fills before the input that releases the batch
            watch.floor.min_free = MinFree(bytes=free + 10**15, fraction=0.0)
        dispatcher.message(_hv(T0 - 990 + i, volts))
    dispatcher.finish()
    assert heard.crossings == [(T0 + 9, True)]
    assert not any(isinstance(a, OpenSegment) for a in sink.actions), sink.actions
    assert dispatcher.pipeline.segmenter.suppressed == 1
