"""The decode floor of a motion backtest: what any motion recorder must spend decoding (issue 31).

Shared by `backtest_speed.py` and `live_cpu.py`: a one-thread dry run of a log through a rule set,
whose motion triggers get their frames through the `decoded_ahead` hook from a `GrayDecoder` of
their own scale, each decode timed in CPU time of this thread. The same frames are chosen as in a
real run (the trigger's own frame grid, idle rate included).
"""

from __future__ import annotations

import time
from pathlib import Path

from autorec import events
from autorec.core.dryrun import DryRun
from autorec.core.pipeline import Pipeline
from autorec.core.ruleset import RuleSet
from autorec.frames.graydecode import FrameDecodeError, GrayDecoder
from autorec.runs.dispatch import Dispatcher
from autorec.runs.filesource import FileSource, run_file
from autorec.triggers.motion import MotionTrigger


def decode_floor(
    ruleset: RuleSet, log: Path, start: float | None = None, end: float | None = None
) -> tuple[int, float, int]:
    """(frames, CPU s, records): the motion triggers' decodes of the frames they analyse, counted for
    frames stamped in [start, end] (all when not given), in a dry run of `log` from its start."""
    dispatcher = Dispatcher(Pipeline(ruleset, offline=True, telemetry=False), DryRun())
    frames, cpu = 0, 0.0
    for trigger in dispatcher.pipeline.engine.triggers.values():
        if not isinstance(trigger, MotionTrigger):
            continue
        decoder = GrayDecoder(trigger.scale)

        def timed(event, decoder=decoder):
            nonlocal frames, cpu
            t0 = time.thread_time()
            try:
                image = decoder.decode(event.image.image_data)
            except FrameDecodeError as exc:
                image = exc
            spent = time.thread_time() - t0
            t = events.timestamp(event)
            if (start is None or (t is not None and t >= start)) and (end is None or (t is not None and t <= end)):
                cpu += spent
                frames += 1
            return image

        trigger.decoded_ahead = timed
    source = FileSource(log)
    run_file(dispatcher, source)
    return frames, cpu, source.records
