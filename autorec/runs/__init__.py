"""The wiring of runs: what connects the sans-I/O pipeline to its edges and services for one run.

`live` (a rig or the simulator: the live loop, ticks, SIGHUP reload), `backtest` (`run --log`:
a log through the pipeline into the dry run or a writer), `filesource` (a log as a source and the
loop that feeds it), `dispatch` (delivering the pipeline's outputs to the writer, score files and
listeners), `predecode` (decoding the frames a camera rule will analyse, ahead, on other cores)
and `services` (the overnight services built from a rule file and attached to one run).
"""
