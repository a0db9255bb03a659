"""`autorec.runs.live.feed_live`: the live loop's ticks outlive a listener that raises."""

from __future__ import annotations

import asyncio
import logging

from autorec.core.dryrun import DryRun
from autorec.core.pipeline import Pipeline
from autorec.core.streamitems import StreamListener
from autorec.io.mainloop import StopRequest
from autorec.rules import parse_rules
from autorec.runs.dispatch import Dispatcher
from autorec.runs.live import feed_live

RULES = "rules:\n  - {name: hv, trigger: threshold, field: hv_regulator.voltage, above: 100}\n"


class _QuietSource:
    """A connected rig that sends nothing until stopped (the items a WebsocketSource yields: none)."""

    def __init__(self) -> None:
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        self._stopped.set()

    def __aiter__(self) -> _QuietSource:
        return self

    async def __anext__(self):
        await self._stopped.wait()
        raise StopAsyncIteration


class _BrokenTicks(StreamListener):
    """Raises on its first two ticks, then counts the ticks it is given."""

    def __init__(self) -> None:
        self.calls = 0

    def tick(self, t: float) -> None:
        self.calls += 1
        if self.calls <= 2:
            raise ValueError("a listener bug")


def test_a_listener_that_raises_in_a_tick_does_not_stop_the_ticks(caplog) -> None:
    listener = _BrokenTicks()
    dispatcher = Dispatcher(Pipeline(parse_rules(RULES)), DryRun(), listeners=[listener])

    async def main() -> None:
        stop = StopRequest(asyncio.get_running_loop())
        source = _QuietSource()
        task = asyncio.ensure_future(feed_live(dispatcher, source, stop=stop, tick_interval=0.01))
        deadline = asyncio.get_running_loop().time() + 10
        while listener.calls < 6:  # ticks went on after the two that raised
            assert asyncio.get_running_loop().time() < deadline, listener.calls
            await asyncio.sleep(0.01)
        stop.request("test")
        await asyncio.wait_for(task, 10)  # ends normally: the failures were not kept for the end

    with caplog.at_level(logging.ERROR, logger="autorec.runs.live"):
        asyncio.run(main())
    errors = [r for r in caplog.records if r.name == "autorec.runs.live"]
    assert "a tick failed" in errors[0].getMessage() and errors[0].exc_info is not None
    assert errors[-1].getMessage() == "2 ticks failed in all (the first is logged above)"
