"""Triggers: the rule engine's detectors. `base` holds the public Trigger API."""
