"""The segmenter state machine, driven directly: no clock, no files, no sleeps."""

from __future__ import annotations

import itertools

import pytest

from autorec import events
from autorec.core.segmenter import CloseSegment, OpenSegment, Segmenter, SegmentPolicy, Write
from autorec.triggers.base import Firing
from tests.support.eventbuilder import payload

POLICY = SegmentPolicy(pre_roll=10.0, post_roll=20.0, max_length=1000.0, pre_roll_max_bytes=10**9)


class Run:
    """Feeds a segmenter and collects its actions into segments (lists of writes)."""

    def __init__(self, seg: Segmenter):
        self.seg = seg
        self.actions: list = []

    def feed(self, t: float, kind: str = "hv_regulator", fire: str | None = None, value: float | None = None):
        p = payload(kind, t, t if value is None else value)
        firings = [Firing(fire, t, {"x": 1})] if fire else []
        self.actions += self.seg.feed(t, p, kind, firings)
        return p

    def tick(self, t: float, fire: str | None = None):
        self.actions += self.seg.tick(t, [Firing(fire, t)] if fire else [])

    def segments(self) -> list[tuple[OpenSegment, list[Write], CloseSegment | None]]:
        out: list = []
        for a in self.actions:
            if isinstance(a, OpenSegment):
                out.append([a, [], None])
            elif isinstance(a, Write):
                out[-1][1].append(a)
            else:
                assert isinstance(a, CloseSegment)
                out[-1][2] = a
        return [tuple(x) for x in out]


def live_times(writes: list[Write], origin: str | None = None) -> list[float]:
    """Times of the writes from `origin`, or of all but the snapshot."""
    return [w.time for w in writes if (w.origin == origin if origin else w.origin != "snapshot")]


def test_nothing_written_without_firings():
    r = Run(Segmenter(default=POLICY))
    for t in range(100):
        r.feed(float(t))
    assert r.actions == []


def test_exact_pre_and_post_roll_edges():
    r = Run(Segmenter(default=POLICY))
    for t in range(0, 50):
        r.feed(float(t))
    r.feed(50.0, fire="a")  # window [40, 70]
    for t in range(51, 80):
        r.feed(float(t))
    [(opened, writes, closed)] = r.segments()
    assert opened.start == 40.0
    assert opened.pre_roll.first == 40.0 and opened.pre_roll.last == 49.0 and opened.pre_roll.records == 10
    assert live_times(writes, "pre_roll") == [float(t) for t in range(40, 50)]
    assert live_times(writes, "live") == [float(t) for t in range(50, 71)]  # 70 == end is inside
    assert closed.end == 70.0 and closed.reason == "post_roll"
    assert closed.rules == ("a",) and closed.firings[0].evidence == {"x": 1}


def test_tick_clock_closes_a_quiet_segment_on_time():
    r = Run(Segmenter(default=POLICY))
    r.feed(0.0, fire="a")
    r.tick(19.99)
    assert not any(isinstance(a, CloseSegment) for a in r.actions)
    r.tick(20.0)
    assert not any(isinstance(a, CloseSegment) for a in r.actions)
    r.tick(20.01)
    closes = [a for a in r.actions if isinstance(a, CloseSegment)]
    assert len(closes) == 1 and closes[0].end == 20.0
    assert not r.seg.is_open


def test_overlapping_rules_share_one_segment_and_extend_it():
    r = Run(Segmenter({"b": SegmentPolicy(pre_roll=5.0, post_roll=40.0, max_length=1000.0)}, default=POLICY))
    for t in range(0, 100):
        fire = {30: "a", 45: "b", 60: "a"}.get(t)
        r.feed(float(t), fire=fire)
    [(opened, writes, closed)] = r.segments()
    assert opened.rules == ("a",)
    assert closed.rules == ("a", "b")
    assert [f.time for f in closed.firings] == [30.0, 45.0, 60.0]
    assert closed.end == 85.0  # b: 45 + 40
    assert live_times(writes) == [float(t) for t in range(20, 86)]


def test_merged_firings_at_once_use_the_longest_pre_roll():
    seg = Segmenter({"b": SegmentPolicy(pre_roll=3.0, post_roll=1.0)}, default=POLICY)
    for t in range(20):
        seg.feed(float(t), payload("hv_regulator", float(t)), "hv_regulator")
    acts = seg.feed(20.0, payload("hv_regulator", 20.0), "hv_regulator", [Firing("b", 20.0), Firing("a", 20.0)])
    opened = acts[0]
    assert isinstance(opened, OpenSegment) and opened.start == 10.0 and opened.rules == ("b", "a")
    assert seg.open_end == 40.0


def test_a_new_segment_after_close_never_repeats_messages():
    r = Run(Segmenter(default=POLICY))
    sent = [r.feed(float(t), fire="a" if t in (10, 35) else None) for t in range(0, 80)]
    segs = r.segments()
    assert len(segs) == 2
    first, second = segs
    assert first[2].end == 30.0
    # second firing at 35 wants pre-roll from 25, but 25..30 is already in the first segment
    assert live_times(second[1], "pre_roll") == [31.0, 32.0, 33.0, 34.0]
    kept = [w.payload for s in segs for w in s[1] if w.origin != "snapshot"]
    assert len(kept) == len(set(kept))
    assert kept == sent[0:56]


def test_split_at_max_length_loses_and_duplicates_nothing():
    pol = SegmentPolicy(pre_roll=2.0, post_roll=30.0, max_length=10.0)
    r = Run(Segmenter(default=pol))
    sent = []
    for i in range(0, 240):
        t = i * 0.25
        fire = "a" if t in (5.0, 20.0) else None
        sent.append(r.feed(t, kind="scan_capacitance" if i % 2 else "hv_regulator", fire=fire))
    segs = r.segments()
    assert [s[0].part for s in segs] == [1, 2, 3, 4, 5]
    assert [s[2].reason for s in segs] == ["max_length"] * 4 + ["post_roll"]
    assert [s[0].reason for s in segs] == ["trigger"] + ["split"] * 4
    for (o, writes, c), nxt in itertools.pairwise(segs):
        assert c.end == nxt[0].start  # parts abut
        assert all(o.start <= w.time < c.end for w in writes)
        assert c.end - o.start == pytest.approx(10.0)
    kept = [w.payload for s in segs for w in s[1] if w.origin != "snapshot"]
    assert kept == sent[12 : 12 + len(kept)]  # 3.0 .. 50.0 contiguous, each once
    assert segs[-1][2].end == 50.0
    # each continuation starts with its own snapshot, re-stamped to its start
    for o, writes, _ in segs[1:]:
        snap = [w for w in writes if w.origin == "snapshot"]
        assert {w.kind for w in snap} == {"hv_regulator", "scan_capacitance"}
        assert all(events.timestamp(events.decode(w.payload)) == pytest.approx(o.start) for w in snap)


def test_snapshot_content_order_and_stamps():
    r = Run(Segmenter(default=POLICY))
    r.feed(1.0, "electrode_layout", value=1)
    r.feed(2.0, "device_info", value=7)
    r.feed(3.0, "settings", value=1000)
    r.feed(4.0, "electrode_state", value=1)
    r.feed(5.0, "electrode_state", value=2)  # the latest one wins
    r.feed(6.0, "image_transform")
    r.feed(7.0, "image")  # images are never in a snapshot
    r.feed(8.0, "temperature_control", value=25)
    r.feed(9.0, "hv_regulator", value=100)
    r.feed(25.0, "hv_regulator", value=101)  # inside the pre-roll: not snapshot
    r.feed(30.0, "scan_capacitance", fire="a")
    [(opened, writes, _)] = r.segments()
    assert opened.start == 25.0
    snap = [w for w in writes if w.origin == "snapshot"]
    assert [w.kind for w in snap] == [
        "electrode_layout",
        "device_info",
        "settings",
        "electrode_state",
        "image_transform",
        "temperature_control",
        "hv_regulator",
    ]
    assert [s.original_time for s in opened.snapshot] == [1.0, 2.0, 3.0, 5.0, 6.0, 8.0, 9.0]
    decoded = [events.decode(w.payload) for w in snap]
    assert decoded[3].electrode_state.drive_groups[0].electrodes[2] is True
    assert decoded[6].hv_regulator.voltage == 100
    for w, d, s in zip(snap, decoded, opened.snapshot):
        assert w.time == 25.0
        if w.kind == "device_info":
            assert events.timestamp(d) is None and s.stamped_time is None
        else:
            assert events.timestamp(d) == pytest.approx(25.0) and s.stamped_time == 25.0
    assert [w.origin for w in writes[len(snap) :]] == ["pre_roll", "live"]


def test_untimed_electrode_state_gets_a_stamp_in_the_snapshot():
    seg = Segmenter(default=POLICY)
    seg.feed(1.0, payload("electrode_state", None, 3), "electrode_state")
    acts = seg.feed(50.0, payload("hv_regulator", 50.0), "hv_regulator", [Firing("a", 50.0)])
    snap = [a for a in acts if isinstance(a, Write) and a.origin == "snapshot"]
    assert len(snap) == 1 and events.timestamp(events.decode(snap[0].payload)) == pytest.approx(50.0)


def test_pre_roll_byte_cap_drops_oldest_and_reports_it():
    pol = SegmentPolicy(pre_roll=100.0, post_roll=1.0, pre_roll_max_bytes=3 * 276)
    r = Run(Segmenter(default=pol))
    sizes = [len(r.feed(float(t), "image", value=t)) for t in range(1, 11)]
    r.feed(11.0, "hv_regulator", fire="a")
    [(opened, writes, _)] = r.segments()
    assert live_times(writes, "pre_roll") == [8.0, 9.0, 10.0]
    assert (opened.pre_roll.dropped, opened.pre_roll.dropped_bytes) == (7, sum(sizes[:7]))
    assert r.seg.pre_roll_dropped == (7, sum(sizes[:7]))


def test_a_rule_with_a_smaller_byte_cap_gets_less_pre_roll():
    seg = Segmenter({"small": SegmentPolicy(pre_roll=100.0, pre_roll_max_bytes=2 * 276)}, default=POLICY)
    for t in range(1, 11):
        seg.feed(float(t), payload("image", float(t), t), "image")
    acts = seg.tick(11.0, [Firing("small", 11.0)])
    assert [a.time for a in acts if isinstance(a, Write)] == [9.0, 10.0]
    assert acts[0].pre_roll.dropped == 8


def test_gap_inside_an_open_segment_is_recorded():
    r = Run(Segmenter(default=POLICY))
    r.feed(0.0, fire="a")
    r.actions += r.seg.disconnected(5.0)
    r.tick(8.0)
    r.actions += r.seg.connected(12.0)
    r.feed(12.5)
    r.tick(30.0)
    [(_, _, closed)] = r.segments()
    assert [(g.start, g.end) for g in closed.gaps] == [(5.0, 12.0)]


def test_segment_closes_during_a_long_disconnect_with_an_open_gap():
    r = Run(Segmenter(default=POLICY))
    r.feed(0.0, fire="a")
    r.actions += r.seg.disconnected(5.0)
    r.tick(20.5)  # post-roll expired on the tick clock while disconnected
    [(_, _, closed)] = r.segments()
    assert closed.end == 20.0 and [(g.start, g.end) for g in closed.gaps] == [(5.0, None)]
    r.actions += r.seg.connected(60.0)
    r.feed(61.0)
    assert len(r.segments()) == 1


def test_shutdown_closes_the_open_segment():
    r = Run(Segmenter(default=POLICY))
    r.feed(0.0, fire="a")
    r.feed(1.0)
    r.actions += r.seg.close()
    [(_, writes, closed)] = r.segments()
    assert closed.reason == "shutdown" and closed.end == 1.0 and len(writes) == 2
    assert r.seg.close() == []


def test_tick_firing_opens_a_segment_with_pre_roll():
    r = Run(Segmenter(default=POLICY))
    for t in range(5):
        r.feed(float(t))
    r.tick(6.0, fire="interval")
    [(opened, writes, _)] = r.segments()
    assert opened.start == 0.0 and live_times(writes) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_pause_closes_and_suppresses_until_resumed():
    r = Run(Segmenter(default=POLICY))
    r.feed(0.0, fire="a")
    r.actions += r.seg.pause(5.0, "disk_floor")
    r.feed(6.0, fire="a")
    assert r.seg.suppressed == 1 and not r.seg.is_open
    r.seg.resume()
    r.feed(7.0, fire="a")
    segs = r.segments()
    assert [s[2].reason if s[2] else None for s in segs] == ["disk_floor", None]
    assert segs[1][0].start == 6.0  # pre-roll kept running while paused


def test_close_at_end_of_log_never_beyond_the_post_roll():
    seg = Segmenter(default=POLICY)
    seg.feed(0.0, payload("hv_regulator", 0.0), "hv_regulator", [Firing("a", 0.0)])
    [closed] = seg.close(500.0, reason="end_of_log")
    assert closed.end == 20.0 and closed.reason == "end_of_log"
