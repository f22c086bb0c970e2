"""The cost model: from the events a simulation counted to energy per kind, cores and whether it fits.

Energy figures of different kinds measure different things and are never added (SCIENCE.md
"Hardware figures"), so a cost gives one energy per kind, in joules over the simulated duration:

``per_operation``
    Per-operation figures times the operations counted: synaptic events, spikes, learning
    updates, and neuron updates (neurons times the hardware's time steps). Dynamic energy only.
``static``
    The static power of a chip times the share of its cores the network occupies, times the
    duration: a one-neuron network on one of Loihi's 128 cores is charged 1/128 of the chip, not all
    of it (the other cores are free for other networks).
``whole_chip``
    Per-event figures measured on a whole chip (TrueNorth): static power and everything else is
    inside, at the load they were measured at.
``wall_plug``
    Per-event figures of a whole system at the socket (a GPU in its host, Hala Point).

A figure the target file lists without a value (not published) makes its kind unknown (``None``)
rather than wrong; a figure it does not list is not part of its model (TrueNorth's whole-chip
per-event figure already includes spikes and static power).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

from codesign.hardware.target import Figure, Target

__all__ = ["EventCounts", "Cost", "cost", "ENERGY_KINDS", "energy_objective_kind"]

#: The kinds of energy a cost reports, and what each means (for tables and documentation).
ENERGY_KINDS: dict[str, str] = {
    "per_operation": "dynamic energy of the counted operations (per-operation figures)",
    "static": "static power of the chip, the share of its cores the network occupies",
    "whole_chip": "per-event figures measured on the whole chip (static power inside)",
    "wall_plug": "per-event figures of the whole system at the socket",
}


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
    # What the NeuroBench-style figures (codesign.hardware.neurobench) need besides the above.
    #: Time steps simulated, and passes through the protocol (NeuroBench's samples) in them.
    steps: int = 0
    samples: int = 1
    #: The part of ``synaptic_events`` made by rate synapses (no ``on_pre``: they act at every step).
    rate_synaptic_events: float = 0.0
    #: Neurons of the groups that spike (have a threshold), not counting inputs shared by every candidate.
    spiking_neurons: int = 0
    #: Entries of every synapse group's dense n_pre x n_post matrix: the synapses there could be.
    possible_synapses: int = 0
    #: Values the network stores: weights (one per synapse at least), synaptic traces, and every
    #: other state variable of its neurons and synapses.
    weight_values: int = 0
    trace_values: int = 0
    state_values: int = 0


@dataclasses.dataclass(frozen=True)
class Cost:
    """Energy per kind over the simulated duration, the cores the network needs, whether it fits, and why not."""

    #: Kind (see ``ENERGY_KINDS``) -> joules over ``duration_s``; ``None`` where a figure it needs is
    #: not published. Only the kinds the target's figures give appear.
    energy_j: dict[str, float | None]
    duration_s: float
    cores: int | None
    fits: bool
    reasons: tuple[str, ...] = ()
    #: Why a kind is unknown, one line each ("per_operation energy unknown: energy per learning update
    #: not published").
    unknown: tuple[str, ...] = ()


#: Per-event figure -> (what it is called, how many of its events a network did on a target:
#: None when the target cannot say).
_EVENTS: dict[str, tuple[str, Callable[[EventCounts, Target], float | None]]] = {
    "synaptic_event_j": ("energy per synaptic event", lambda c, t: c.synaptic_events),
    "spike_j": ("energy per spike", lambda c, t: c.spikes),
    "learning_update_j": ("energy per learning update", lambda c, t: c.learning_updates),
    "neuron_update_j": ("energy per neuron update",
                        lambda c, t: None if t.time_step_ms is None
                        else c.neurons * round(c.duration_s / (t.time_step_ms * 1e-3))),
}


def cost(target: Target, counts: EventCounts) -> Cost:
    """Energy per kind, cores and fit of a network with ``counts`` on ``target``."""
    energy: dict[str, float | None] = {}
    missing: dict[str, list[str]] = {}  # kind -> why it is unknown

    def charge(kind: str, joules: float | None, why: str = "") -> None:
        if joules is None:
            missing.setdefault(kind, []).append(why)
        previous = energy.get(kind, 0.0)
        energy[kind] = None if joules is None or previous is None else previous + joules

    for name, figure in target.energy.events().items():
        label, count_of = _EVENTS[name]
        count = count_of(counts, target)
        if count is None:
            charge(figure.kind, None, f"no time_step_ms to count the updates of its {label}")
        elif count or figure.value is not None:
            charge(figure.kind, None if figure.value is None else figure.value * count, f"not published: {label}")
    cores = _cores(target, counts)
    static = target.energy.static_power_w
    if static is not None:
        chip = target.resources.cores
        if static.value is None:
            charge("static", None, "not published: static power")
        elif cores is None or chip is None or not chip.value:
            charge("static", None, "the network's share of the chip is unknown (resources.cores, neurons_per_core)")
        else:
            charge("static", static.value * cores / chip.value * counts.duration_s)
    unknown = tuple(f"{kind} energy unknown: {_reasons(whys)}" for kind, whys in missing.items())

    reasons: list[str] = []
    r = target.resources
    if cores is not None and r.cores is not None and r.cores.value is not None and cores > r.cores.value:
        reasons.append(f"needs {cores} cores, the chip has {r.cores.value:g}")
    if counts.plastic_synapses and target.learning.engine == "none":
        reasons.append("no on-chip learning: plastic synapses cannot run")
    return Cost(energy, counts.duration_s, cores, not reasons, tuple(reasons), unknown)


def _reasons(whys: list[str]) -> str:
    """``["not published: a", "not published: b", "c"]`` -> ``"not published: a, b; c"``."""
    unpublished = [why.removeprefix("not published: ") for why in whys if why.startswith("not published: ")]
    others = [why for why in whys if not why.startswith("not published: ")]
    return "; ".join(([f"not published: {', '.join(unpublished)}"] if unpublished else []) + others)


def _cores(target: Target, counts: EventCounts) -> int | None:
    """Cores the network occupies: enough for its neurons and its synapses (None: no core model)."""
    r = target.resources
    needed = [math.ceil(amount / per_core.value)
              for per_core, amount in ((r.neurons_per_core, counts.neurons), (r.synapses_per_core, counts.synapses))
              if per_core is not None and per_core.value]
    return max(needed) if needed else None


def energy_objective_kind(target: Target) -> str:
    """The kind of energy a study's ``energy`` objective minimises on ``target``.

    It is the energy of the target's per-event figures, which must all be published and of one
    kind, so that the objective adds only like to like. The static share is left out: it is
    another kind, and it is the same for every candidate of a study (same network, same cores).

    Raises
    ------
    ValueError
        Why the target's figures cannot give it, in words.
    """
    events: dict[str, Figure] = target.energy.events()
    if not events:
        raise ValueError(f"target {target.name} has no per-event energy figures")
    missing = [_EVENTS[name][0] for name, figure in events.items() if figure.value is None]
    if missing:
        raise ValueError(f"target {target.name} does not publish its {', '.join(missing)}")
    kinds = sorted({figure.kind for figure in events.values()})
    if len(kinds) > 1:
        raise ValueError(f"target {target.name} gives its per-event figures in different kinds "
                         f"({', '.join(f'{n}: {f.kind}' for n, f in events.items())}), which cannot be added")
    return kinds[0]
