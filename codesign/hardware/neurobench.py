"""NeuroBench-style figures of one candidate's network, from the events the cost model counts.

NeuroBench (Yik et al., Nature Communications 16, 1545, 2025; the ``neurobench`` package, whose
metric classes are named below) gives hardware-independent figures of what a network computes and
stores. Here they come from the same :class:`~codesign.hardware.cost.EventCounts` as the energy (no
second simulation), averaged over the input draws. A *sample* is one pass through the model's
protocol (one trial of ``trials:`` and ``repeat:``; a model without them makes one pass per run).

``effective_acs``
    Accumulates per sample: one per spike per synapse it reaches, on every pathway that fires on
    spikes (``on_pre``), inputs' spikes included (NeuroBench ``SynapticOperations``,
    ``Effective_ACs``: the spikes into each layer times their nonzero fan-out).
``effective_macs``
    Multiply-accumulates per sample of rate synapses (no ``on_pre``): each synapse at each time step.
    NeuroBench's ``Effective_MACs`` leaves out zero inputs; a rate network's zeros are not counted
    here, so this is its upper bound (equal for inputs that are never exactly 0).
``dense_ops``
    Operations per sample of hardware that exploits no sparsity (NeuroBench ``Dense``): every entry
    of every synapse group's n_pre x n_post matrix, at every time step.
``activation_sparsity``
    The share of (spiking neuron, time step) pairs without a spike, 1 - spikes / (neurons x steps)
    (NeuroBench ``ActivationSparsity``: zero activations over all activations of every layer, step
    and sample). The neurons are those of the groups with a threshold; inputs shared by every
    candidate (``per: draw``) are the data, not activations. ``None`` without spiking neurons: a rate
    network's activations are real numbers whose zeros are not counted.
``connection_sparsity``
    The share of the entries of every synapse group's n_pre x n_post matrix that hold no synapse
    (NeuroBench ``ConnectionSparsity``: zero weights over all weights of dense matrices). A synapse
    that exists counts as nonzero whatever its weight: plasticity changes weights during a run.
``footprint_bytes``
    Memory of the network's state (NeuroBench ``Footprint``: parameters and buffers): one weight per
    synapse at the target's weight width (a searched ``weight_bits`` knob first; no sign bit added),
    traces at its trace width, every other state variable of a neuron or synapse (Brian2's
    differential equations and parameters) at the simulation's float width; rounded up to whole
    bytes. The indices of sparse synapses and the constants every neuron shares are not counted.
    ``weights_bytes`` is the weights' part alone (NeuroBench stores weights as dense matrices: the two
    agree where every pair is connected).
``learning_updates_per_sample``
    Synaptic weight updates per sample, which NeuroBench does not define: each time an event-driven
    statement assigns a weight of a plastic synapse (per pathway: spikes x fan-out, or x fan-in on
    ``on_post``), or, for weights that change by differential equations, every plastic synapse at
    every time step.
``samples``
    Samples per input draw (passes through the protocol), to turn a per-sample figure into one per run.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from codesign.hardware.cost import EventCounts
from codesign.hardware.target import Target

__all__ = ["FIGURES", "neurobench_figures", "mean_figures"]

#: Each figure's short definition (tables, ``--help``); the module docstring has the full ones.
FIGURES: dict[str, str] = {
    "effective_acs": "accumulates per sample: spikes x the synapses they reach",
    "effective_macs": "multiply-accumulates per sample: rate synapses x time steps",
    "dense_ops": "operations per sample without sparsity: n_pre x n_post x time steps per synapse group",
    "activation_sparsity": "1 - spikes / (spiking neurons x time steps)",
    "connection_sparsity": "share of the n_pre x n_post entries without a synapse",
    "footprint_bytes": "weights, traces and state variables at the target's widths",
    "weights_bytes": "the weights alone, one per synapse at the target's weight width",
    "learning_updates_per_sample": "synaptic weight updates per sample",
    "samples": "samples (passes through the protocol) per input draw",
}


def neurobench_figures(target: Target, counts: EventCounts, knobs: Mapping[str, Any] | None = None
                       ) -> dict[str, float | int | None]:
    """The figures of :data:`FIGURES` for a network with ``counts`` on ``target`` with hardware ``knobs``."""
    samples = max(1, counts.samples)
    float_bits = np.dtype(target.float_dtype).itemsize * 8
    weight_bits = _bits(knobs, "weight_bits", target.precision.weight_bits, float_bits)
    trace_bits = _bits(knobs, "trace_bits", target.precision.trace_bits, float_bits)
    activations = counts.spiking_neurons * counts.steps
    possible = counts.possible_synapses
    return {
        "effective_acs": (counts.synaptic_events - counts.rate_synaptic_events) / samples,
        "effective_macs": counts.rate_synaptic_events / samples,
        "dense_ops": possible * counts.steps / samples,
        "activation_sparsity": 1.0 - counts.spikes / activations if activations else None,
        "connection_sparsity": 1.0 - counts.synapses / possible if possible else None,
        "footprint_bytes": math.ceil((counts.weight_values * weight_bits + counts.trace_values * trace_bits
                                      + counts.state_values * float_bits) / 8),
        "weights_bytes": math.ceil(counts.weight_values * weight_bits / 8),
        "learning_updates_per_sample": counts.learning_updates / samples,
        "samples": samples,
    }


def mean_figures(runs: list[dict[str, float | int | None]]) -> dict[str, float | int | None]:
    """The figures of several runs (input seeds) averaged; a figure any run lacks stays ``None``."""
    if len(runs) == 1:
        return runs[0]
    return {name: None if any(r[name] is None for r in runs) else float(np.mean([r[name] for r in runs]))
            for name in runs[0]}


def _bits(knobs: Mapping[str, Any] | None, knob: str, precision: int | None, float_bits: int) -> int:
    """A value's width: the candidate's searched knob, else the target's precision, else the float width."""
    value = (knobs or {}).get(knob)
    return int(value if value is not None else precision if precision is not None else float_bits)
