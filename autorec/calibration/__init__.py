"""`autorec calibrate`: measure the rules on the user's own rig and propose thresholds.

- `measure`: sans-I/O collector of what the stream and the pipeline's outputs show in each phase.
- `proposal`: sans-I/O statistics: measurements in, a proposal (per-rule lines, warnings,
  new option values) out, and the rule file rewritten with comments.
- `drive`: the `--drive` edge: known drop moves over pdserver's JSON-RPC, electrodes off at the end.
"""
