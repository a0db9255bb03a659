"""Stream time: carried-forward stamps, clamping, clock jumps and steps, outliers, the tick clock."""

from __future__ import annotations

import math

import pytest

from autorec.core.clock import ClockNormaliser, Decision, Verdict
from autorec.core.timeline import Timeline

YEAR_1 = -62_135_596_800.0 + 5.0
FAR_FUTURE = 253_402_000_000.0  # year 9999: still a valid timestamp, decades away


def stamp(tl: Timeline, ts: float | None, mono: float | None = None) -> float | None:
    """The time of this record if the timeline released it at once (None if it is held)."""
    out = tl.push(ts, mono, "this")
    return next((t for t, item in out if item == "this"), None)


def feed(tl: Timeline, items: list[tuple[float | None, str]], mono: list[float] | None = None) -> dict[str, float]:
    """Push every (timestamp, name) and return each name's released time (all must be released)."""
    got: dict[str, float] = {}
    for i, (ts, name) in enumerate(items):
        for t, item in tl.push(ts, mono[i] if mono else None, name):
            got[item] = t
    for t, item in tl.flush():
        got[item] = t
    assert set(got) == {name for _, name in items}, "a record was lost"
    return got


def test_no_time_before_the_first_timestamp():
    tl: Timeline = Timeline()
    assert tl.push(None, 0.0, "untimed") == []
    assert tl.tick(1.0) is None
    assert tl.push(100.0, 1.0, "first") == [(100.0, "untimed"), (100.0, "first")]


def test_untimed_messages_carry_the_last_time_forward():
    tl: Timeline = Timeline()
    stamp(tl, 100.0)  # offline: no monotonic time
    assert stamp(tl, None) == 100.0
    assert tl.carried == 1
    # live, while timed records flow: the last stamp (a recorder's stall must not run it ahead)
    tl2: Timeline = Timeline()
    stamp(tl2, 100.0, 10.0)
    assert stamp(tl2, None, 10.25) == 100.0
    # live, once no timed record came for `quiet` (1 s): advanced by the monotonic time since the last arrival
    assert stamp(tl2, None, 12.0) == pytest.approx(101.75)


def test_small_backward_steps_are_clamped():
    tl: Timeline = Timeline()
    stamp(tl, 100.0, 0.0)
    assert stamp(tl, 99.9, 0.01) == 100.0
    assert tl.clamped == 1
    assert stamp(tl, 100.5, 0.5) == 100.5
    assert not tl.jumps


@pytest.mark.parametrize("bad", [0.0, YEAR_1, FAR_FUTURE, -1.0e9, 1000.0 - 3600.0, 1000.0 + 7200.0])
def test_an_isolated_damaged_timestamp_is_an_outlier_that_moves_no_clock(bad):
    tl: Timeline = Timeline()
    records = [(1000.0 + i * 0.25, f"r{i}") for i in range(4)]
    records += [(bad, "bad"), (None, "untimed"), (1001.25, "after"), (1001.5, "later")]
    got = feed(tl, records)
    assert got["bad"] == 1000.75 and got["untimed"] == 1000.75  # kept, at the carried time
    assert got["after"] == 1001.25 and got["later"] == 1001.5  # the clock never moved
    assert tl.outliers == 1 and tl.steps == 0 and not tl.jumps and tl.offset == 0.0
    times = list(got.values())
    assert all(math.isfinite(t) for t in times)


def test_two_different_damaged_timestamps_in_a_row_are_two_outliers_not_a_step():
    tl: Timeline = Timeline()
    got = feed(tl, [(1000.0, "a"), (0.0, "zero"), (FAR_FUTURE, "future"), (YEAR_1, "year1"), (1000.5, "b")])
    assert got["zero"] == got["future"] == got["year1"] == 1000.0 and got["b"] == 1000.5
    assert tl.outliers == 3 and tl.steps == 0


def test_a_damaged_timestamp_at_the_end_of_the_stream_is_an_outlier():
    tl: Timeline = Timeline()
    got = feed(tl, [(1000.0, "a"), (1000.5, "b"), (0.0, "last")])
    assert got["last"] == 1000.5 and tl.outliers == 1


def test_a_sustained_backward_step_is_confirmed_and_absorbed():
    tl: Timeline = Timeline(jump_threshold=5.0, confirm=3)
    got = {}
    for ts, name in [(1000.0, "a"), (1000.5, "b"), (1000.5 - 3600.0, "s1"), (None, "u"), (1001.0 - 3600, "s2")]:
        got.update({item: t for t, item in tl.push(ts, None, name)})
    assert tl.holding == 3 and set(got) == {"a", "b"}  # not confirmed yet: held, not lost, not stamped
    got.update({item: t for t, item in tl.push(1001.5 - 3600.0, None, "s3")})
    assert got["s1"] == 1000.5 and got["u"] == 1000.5  # stream time continues where it was
    assert got["s2"] == pytest.approx(1001.0) and got["s3"] == pytest.approx(1001.5)
    assert tl.steps == 1 and len(tl.jumps) == 1 and tl.jumps[0].size == pytest.approx(-3600.0)
    assert tl.outliers == 0
    assert stamp(tl, 1002.0 - 3600.0) == pytest.approx(1002.0)  # later stamps shifted by the step


def test_a_rig_that_boots_in_1970_and_syncs_later_steps_forward():
    tl: Timeline = Timeline()
    boot = [(10.0 + i, f"boot{i}") for i in range(5)]
    synced = [(1_795_520_000.0 + i, f"sync{i}") for i in range(5)]
    got = feed(tl, boot + synced)
    assert [got[f"sync{i}"] for i in range(5)] == [1_795_520_000.0 + i for i in range(5)]  # followed, not shifted
    assert tl.steps == 1 and tl.outliers == 0


def test_a_damaged_first_timestamp_is_left_behind_by_a_step():
    tl: Timeline = Timeline()
    got = feed(tl, [(0.0, "bad first")] + [(1_795_520_000.0 + i, f"r{i}") for i in range(5)])
    assert got["bad first"] == 0.0  # the first timestamp is all there is to go on
    assert [got[f"r{i}"] for i in range(5)] == [1_795_520_000.0 + i for i in range(5)]
    assert tl.steps == 1


def test_forward_jump_live_is_followed_once_confirmed_and_not_absorbed():
    tl: Timeline = Timeline(jump_threshold=5.0)
    stamp(tl, 1000.0, 0.0)
    assert stamp(tl, 1600.0, 1.0) is None  # 1 s elapsed, the clock says 10 min: held...
    assert stamp(tl, 1600.1, 1.1) is None
    out = tl.push(1600.2, 1.2, "third")  # ...until 3 records agree: a step, followed (not absorbed)
    assert [t for t, _ in out] == [1600.0, 1600.1, 1600.2]
    assert tl.steps == 1 and len(tl.jumps) == 1 and tl.jumps[0].size == pytest.approx(599.0)
    assert stamp(tl, 1601.0, 2.0) == 1601.0 and tl.offset == 0.0
    # offline a long quiet period is indistinguishable from a jump: accepted
    off: Timeline = Timeline(jump_threshold=5.0)
    stamp(off, 1000.0)
    assert stamp(off, 4000.0) == 4000.0
    assert not off.jumps


def test_live_a_damaged_stamp_minutes_ahead_is_an_outlier():
    """Live the monotonic clock says how much time passed: 30 min ahead after 0.25 s is damage."""
    tl: Timeline = Timeline()
    got = feed(tl, [(1000.0, "a"), (1000.25 + 1800.0, "ahead"), (1000.5, "b"), (1000.75, "c")], [0.0, 0.25, 0.5, 0.75])
    assert got["ahead"] == 1000.0 and got["b"] == 1000.5 and got["c"] == 1000.75
    assert tl.outliers == 1 and tl.steps == 0 and not tl.jumps


def test_an_offline_gap_longer_than_the_step_threshold_is_followed_after_confirmation():
    tl: Timeline = Timeline(step_threshold=3600.0)
    got = feed(tl, [(1000.0, "a"), (1000.0 + 7 * 3600, "b"), (1001.0 + 7 * 3600, "c"), (1002.0 + 7 * 3600, "d")])
    assert got["b"] == 1000.0 + 7 * 3600  # held, then released with its own time
    assert tl.steps == 1 and tl.outliers == 0


def test_a_held_record_expires_live_when_the_rig_goes_quiet():
    tl: Timeline = Timeline(max_hold=2.0)
    stamp(tl, 1000.0, 0.0)
    assert stamp(tl, 0.0, 0.1) is None
    assert tl.expire(1.0) == []
    assert tl.expire(2.5) == [(1000.0, "this")]
    assert tl.outliers == 1


def test_a_long_disconnect_is_not_a_jump():
    tl: Timeline = Timeline(jump_threshold=5.0)
    stamp(tl, 1000.0, 0.0)
    assert stamp(tl, 1060.0, 60.0) == 1060.0
    assert stamp(tl, 9060.0, 8060.0) == 9060.0  # hours away, and hours later: no deviation at all
    assert not tl.jumps


def test_tick_is_last_time_plus_monotonic_elapsed_times_rate():
    tl: Timeline = Timeline()
    stamp(tl, 1000.0, 50.0)
    assert tl.tick(52.5) == pytest.approx(1002.5)
    assert tl.time == 1000.0  # ticks do not move the time line
    fast: Timeline = Timeline(rate=20.0)
    stamp(fast, 1000.0, 50.0)
    assert fast.tick(51.0) == pytest.approx(1020.0)
    assert stamp(fast, 1019.0, 51.0) == 1019.0  # 20x stream is not a forward jump
    assert not fast.jumps


def test_the_clock_rule_alone():
    rule = ClockNormaliser(jump_threshold=5.0, step_threshold=60.0, confirm=2)
    assert rule.judge(100.0, None).verdict is Verdict.ACCEPTED
    assert rule.judge(101.0, 100.0).verdict is Verdict.ACCEPTED
    assert rule.judge(50.0, 101.0).verdict is Verdict.HOLD
    assert rule.judge(102.0, 101.0) == Decision(Verdict.ACCEPTED, refuted=1)  # back on the clock: 50 was an outlier
    assert rule.judge(500.0, 102.0).verdict is Verdict.HOLD
    d = rule.judge(-500.0, 102.0)  # fits neither the clock nor the run: the run was an outlier
    assert d.verdict is Verdict.HOLD and d.refuted == 1
    assert rule.judge(-499.0, 102.0).verdict is Verdict.CONFIRMED


def test_a_lagging_receiver_is_no_clock_step():
    """Live at 20x, a burst queued in the socket arrives late: its stamps are far behind the monotonic
    projection but not behind the last time. That is lag, not a step (it was once absorbed as one)."""
    tl: Timeline = Timeline(rate=20.0)
    stamp(tl, 1000.0, 0.0)
    # 1 s of real time passed (20 s projected), the records are from 0.1-0.5 s of stream time later
    for i in range(1, 6):
        assert stamp(tl, 1000.0 + i * 0.1, 1.0 + i * 0.001) == pytest.approx(1000.0 + i * 0.1)
    assert not tl.jumps and tl.steps == 0 and tl.outliers == 0 and tl.offset == 0.0


def test_stream_times_is_the_timeline_rule_for_a_whole_log():
    from autorec.core.timeline import stream_times

    raw = [None, 100.0, 100.5, 9e9, None, 101.0, 99.8, 40.0, 40.5, 41.0, 41.5, 5000.0]
    got = [t for t, _ in stream_times((t, i) for i, t in enumerate(raw))]
    # untimed before any clock: None at once; 9e9 is one damaged record (an outlier, carried time);
    # 99.8 is jitter (clamped); 40.0.. is a confirmed step back (absorbed: time goes on from 101.0);
    # the last record is alone 5000 s ahead at the end of the log: decided as an outlier.
    assert got == [None, 100.0, 100.5, 100.5, 100.5, 101.0, 101.0, 101.0, 101.5, 102.0, 102.5, 102.5]
    assert [i for _, i in stream_times((t, i) for i, t in enumerate(raw))] == list(range(len(raw)))


def test_a_damaged_first_timestamp_is_found_by_reading_ahead():
    """Offline readers see past the first record: one first record stamped centuries ahead does not
    drag the whole log with it (the Timeline alone trusts a first timestamp and absorbs the real
    ones as a step back)."""
    from autorec.core.timeline import LogSpan, Timeline, stream_times

    raw = [16_725_225_600.0, None] + [100.0 + i for i in range(6)]
    timeline: Timeline[int] = Timeline()
    got = [t for t, _ in stream_times(((t, i) for i, t in enumerate(raw)), timeline)]
    assert got == [None, None, 100.0, 101.0, 102.0, 103.0, 104.0, 105.0]
    assert timeline.outliers == 1 and timeline.steps == 0
    span = LogSpan()
    for t in raw:
        span.add(t)
    assert span.finish() == (100.0, 105.0) and span.outliers == 1
    # a log of two records, or records that do not agree after the first: the first is trusted
    assert [t for t, _ in stream_times([(5000.0, 0), (100.0, 1)])] == [5000.0, 5000.0]


def test_a_stall_of_the_recorder_does_not_run_stream_time_ahead():
    # Live against the simulator at 150x: the recorder stalls 0.2 s and an electrode state (no timestamp of its
    # own) is the first record read after it. Timed records came a moment ago: it carries their stamp, not the
    # tick clock's 30 s-ahead estimate (which closed post-rolls early: a burst split into many short segments).
    tl: Timeline[str] = Timeline(jump_threshold=5.0, rate=150.0)
    assert tl.push(100.0, 0.0, "a") == [(100.0, "a")]
    assert tl.push(None, 0.2, "state") == [(100.0, "state")]
    assert tl.tick(0.2) == 100.0
    assert tl.push(100.1, 0.201, "b") == [(100.1, "b")] and tl.clamped == 0
    # a stall longer than `quiet` still gets the estimate (a quiet stream), and what follows is no clock step
    # either: the stamps after it are judged against the last stamp and clamped until they catch up
    assert tl.push(None, 1.7, "state") == [(pytest.approx(324.95), "state")]
    out = []
    for i in range(1, 6):
        out += tl.push(100.1 + 0.1 * i, 1.7 + 0.001 * i, f"s{i}")
    assert [t for t, _ in out] == [pytest.approx(324.95)] * 5 and tl.clamped == 5
    assert tl.push(326.0, 2.0, "later") == [(326.0, "later")]
    assert tl.steps == 0 and tl.offset == 0.0 and tl.jumps == []
