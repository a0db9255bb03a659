"""`FailureLog`: a failure said once, then at most a line every `every` s with a count, then "works again".

The clock is injected (a list cell the test moves): no test sleeps.
"""

from __future__ import annotations

import logging

import pytest

from autorec.io.failurelog import FailureLog

LOGGER = logging.getLogger("autorec.test.failurelog")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lines(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER.name)
    return lambda: [f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.name == LOGGER.name]


def test_a_failure_that_goes_on_is_said_once_then_once_a_minute_then_its_end(lines) -> None:
    clock = Clock()
    fails = FailureLog(LOGGER, every=60.0, clock=clock)
    lost = 0
    for _ in range(150):  # a full disk, one failed write a second for 150 s
        lost += 10
        fails.failed(f"cannot write x.bin: disk full; {lost} lost so far", still=f"still cannot write x.bin; {lost}")
        clock.now += 1.0
    assert fails.failing and fails.unsaid == 29  # seconds 121..149 wait for the next line
    assert fails.worked("x.bin works again (%d lost)", lost)
    assert not fails.failing and fails.unsaid == 29  # the count carries over to the next failure line
    assert not fails.worked("said only once")
    assert lines() == [
        "ERROR cannot write x.bin: disk full; 10 lost so far",
        "ERROR still cannot write x.bin; 610",  # a `still` line quotes the caller's count, nothing added
        "ERROR still cannot write x.bin; 1210",
        "INFO x.bin works again (1500 lost)",
    ]


def test_a_failure_on_and_off_is_counted_not_hidden_and_its_unsaid_ends_are_not_said(lines) -> None:
    clock = Clock()
    fails = FailureLog(LOGGER, every=60.0, level=logging.WARNING, clock=clock)
    for second in range(121):  # fails twice and recovers every second
        clock.now = 1000.0 + second
        assert fails.failed("cannot append j.jsonl", still="never used: each failure begins anew") == (second % 60 == 0)
        fails.failed("cannot append j.jsonl")
        assert fails.worked("j.jsonl is written again") == (second % 60 == 0)
    assert lines() == [
        "WARNING cannot append j.jsonl",
        "INFO j.jsonl is written again",
        "WARNING cannot append j.jsonl; 119 more failure(s) since the last line",  # 1 + 59 * 2
        "INFO j.jsonl is written again",
        "WARNING cannot append j.jsonl; 119 more failure(s) since the last line",
        "INFO j.jsonl is written again",
    ]


def test_a_message_with_its_own_count_can_go_without_the_unsaid_count(lines) -> None:
    clock = Clock()
    fails = FailureLog(LOGGER, every=5.0, count_unsaid=False, clock=clock)
    for n in range(1, 8):
        fails.failed(f"refused ({n} so far)")
        clock.now += 1.0
    assert fails.unsaid == 1  # counted all the same
    assert lines() == ["ERROR refused (1 so far)", "ERROR refused (6 so far)"]


def test_formats_are_formatted_only_when_said_and_a_finished_text_is_never_a_format(lines) -> None:
    class Costly:
        formatted = 0

        def __str__(self) -> str:
            Costly.formatted += 1
            return "x.bin"

    clock = Clock()
    fails = FailureLog(LOGGER, every=60.0, clock=clock)
    fails.failed("cannot write %s: %d%% full", Costly(), 100, still="still cannot write %s (%d%%)")
    said_once = Costly.formatted  # (as often as the log's handlers format a record)
    for _ in range(99):
        fails.failed("cannot write %s: %d%% full", Costly(), 100, still="still cannot write %s (%d%%)")
    assert Costly.formatted == said_once > 0  # the unsaid failures were never formatted
    fails.failed("disk 100% full")  # a text, as is: no format
    clock.now += 60.0
    fails.failed("cannot write %s: %d%% full", Costly(), 100, still="still cannot write %s (%d%%)")
    fails.worked("50% free again")
    said = ["ERROR cannot write x.bin: 100% full", "ERROR still cannot write x.bin (100%)", "INFO 50% free again"]
    assert lines() == said


def test_every_zero_says_every_failure_and_a_new_log_is_quiet_until_told(lines) -> None:
    fails = FailureLog(LOGGER, every=0.0, clock=Clock())
    assert not fails.failing and not fails.worked("nothing failed: nothing to say")
    assert fails.failed("a") and fails.failed("b", still="b goes on") and fails.failed("c")
    assert lines() == ["ERROR a", "ERROR b goes on", "ERROR c"]


def test_siblings_fail_and_work_again_each_on_its_own_at_one_shared_pace(lines) -> None:
    clock = Clock()
    log = FailureLog(LOGGER, every=60.0, clock=clock)
    sidecar = log.sibling()
    assert log.failed("cannot write log") and not sidecar.failed("cannot write sidecar")  # one disk, one line
    assert log.failing and sidecar.failing and log.unsaid == sidecar.unsaid == 1
    assert log.worked("log works again") and not sidecar.worked("sidecar works again (never said failing)")
    clock.now += 60.0
    assert sidecar.failed("cannot write sidecar") and not log.failed("cannot write log")
    assert sidecar.worked("%s works again", "sidecar") and not log.worked("log: its failure was never said")
    assert lines() == [
        "ERROR cannot write log",
        "INFO log works again",
        "ERROR cannot write sidecar; 1 more failure(s) since the last line",
        "INFO sidecar works again",
    ]
