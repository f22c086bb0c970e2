"""Hardware targets: what a rule must run on, read from ``hw_targets/*.yaml``."""

from __future__ import annotations

from codesign.hardware.cost import ENERGY_KINDS, Cost, EventCounts, cost, energy_objective_kind
from codesign.hardware.engines import ENGINES
from codesign.hardware.neurobench import FIGURES as NEUROBENCH_FIGURES, mean_figures, neurobench_figures
from codesign.hardware.target import Figure, Gpu, Target, load_target

# Hardware engines register where their target-file section is defined.
from codesign.hardware.loihi2 import limits as _loihi2_limits  # noqa: E402,F401  (registers "loihi2")

__all__ = ["Target", "Figure", "Gpu", "load_target", "Cost", "EventCounts", "cost", "ENERGY_KINDS",
           "energy_objective_kind", "ENGINES", "neurobench_figures", "mean_figures", "NEUROBENCH_FIGURES"]
