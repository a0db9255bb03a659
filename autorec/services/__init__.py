"""The overnight services that attach to a run through the pipeline's outputs and the writer's
segment events: hooks, alerts, the disk floor, the status file, video export on close and the
night journal. `autorec.runs.services.Services` builds them from a rule file for one run.
"""
