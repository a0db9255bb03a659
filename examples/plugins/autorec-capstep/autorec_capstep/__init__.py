"""An example autorec trigger plugin: `capacitance_step` (see `step.py`)."""

from autorec_capstep.step import CapacitanceStep

__all__ = ["CapacitanceStep"]
