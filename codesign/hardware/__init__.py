"""Hardware targets: what a rule must run on, read from ``hw_targets/*.yaml``."""

from __future__ import annotations

from codesign.hardware.cost import ENERGY_KINDS, Cost, EventCounts, cost, energy_objective_kind
from codesign.hardware.target import Figure, Gpu, Target, load_target

__all__ = ["Target", "Figure", "Gpu", "load_target", "Cost", "EventCounts", "cost", "ENERGY_KINDS",
           "energy_objective_kind"]
