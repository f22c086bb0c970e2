"""The cost model: from the events a simulation counted to energy, cores and whether it fits.

Energy per second of operation is ``(synaptic events x E_syn + spikes x E_spike + learning updates
x E_update) / duration + static power``. A figure the target file lists without a value (not
published) makes the energy unknown rather than wrong; a figure it does not list is not part of its
model (e.g. TrueNorth's whole-chip per-event figure already includes spikes and static power).
"""

from __future__ import annotations

import dataclasses
import math

from codesign.hardware.target import Figure, Target

__all__ = ["EventCounts", "Cost", "cost"]


@dataclasses.dataclass(frozen=True)
class EventCounts:
    """What one candidate's network did, counted by the simulation."""

    duration_s: float
    synaptic_events: float
    spikes: float
    learning_updates: float
    neurons: int
    synapses: int
    plastic_synapses: int = 0


@dataclasses.dataclass(frozen=True)
class Cost:
    """Energy per second of operation (J/s = W; ``None`` when a needed figure is unpublished), the
    cores the network needs, whether it fits, and why not."""

    energy_w: float | None
    dynamic_w: float | None
    static_w: float | None
    cores: int | None
    fits: bool
    reasons: tuple[str, ...] = ()
    #: Figures the energy needs that are not published (so the energy is unknown).
    unknown: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()


def _term(figure: Figure | None, count: float, name: str, unknown: list[str], kinds: set[str]) -> float:
    if figure is None or count == 0:
        return 0.0
    if figure.value is None:
        unknown.append(name)
        return math.nan
    kinds.add(figure.kind)
    return figure.value * count


def cost(target: Target, counts: EventCounts) -> Cost:
    """Energy, cores and fit of a network with ``counts`` on ``target``."""
    unknown: list[str] = []
    kinds: set[str] = set()
    e = target.energy
    dynamic = (_term(e.synaptic_event_j, counts.synaptic_events, "energy per synaptic event", unknown, kinds)
               + _term(e.spike_j, counts.spikes, "energy per spike", unknown, kinds)
               + _term(e.learning_update_j, counts.learning_updates, "energy per learning update", unknown, kinds)
               ) / counts.duration_s
    static = _term(e.static_power_w, 1.0, "static power", unknown, kinds)
    modelled = any(f is not None for f in (e.synaptic_event_j, e.spike_j, e.learning_update_j, e.static_power_w))
    energy = None if unknown or not modelled else dynamic + static

    reasons: list[str] = []
    r = target.resources
    needed = []
    for per_core, amount, what in ((r.neurons_per_core, counts.neurons, "neurons"),
                                   (r.synapses_per_core, counts.synapses, "synapses")):
        if per_core is not None and per_core.value:
            needed.append(math.ceil(amount / per_core.value))
    cores = max(needed) if needed else None
    if cores is not None and r.cores is not None and r.cores.value is not None and cores > r.cores.value:
        reasons.append(f"needs {cores} cores, the chip has {r.cores.value:g}")
    if counts.plastic_synapses and target.learning.engine == "none":
        reasons.append("no on-chip learning: plastic synapses cannot run")
    return Cost(energy, None if unknown or not modelled else dynamic, None if unknown or not modelled else static,
                cores, not reasons, tuple(reasons), tuple(unknown), tuple(sorted(kinds)))
