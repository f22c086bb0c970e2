"""A chip network in Lava (lava-nc 0.10.0, ``Loihi2SimCfg``): floating point or Loihi 2's fixed point.

Neuron groups are LIF processes with a RingBuffer sink; plastic synapses LearningDense whose post
traces take the target's spikes, fed from spike inputs by a RingBuffer source holding the rows they
read; fixed synapses from neuron groups Dense; fixed synapses from spike inputs are folded into one
source per target of the input they deliver each step (:func:`_input_source`). The protocol runs phase by phase in one network: a phase in which a
plastic synapse does not learn sets its ``dw`` to the same products scaled by 0, so its weights hold
while its traces run on (exact in both modes with whole-number impulses, which the compiler chooses:
lava re-reads the impulses as integers after any ``set``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from codesign.errors import CodesignError
from codesign.hardware.loihi2.chip import ChipNetwork, ChipRun, ChipSynapse, fixed_dense

__all__ = ["run_lava"]


def run_lava(net: ChipNetwork, fixed_pt: bool, rng_seed: int = 0) -> ChipRun:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink

    start = time.perf_counter()
    cells, sinks = {}, {}
    for name, group in net.groups.items():
        neuron = group.fixed if fixed_pt else group.neuron
        if neuron is None:
            raise CodesignError(f"group {name} has no fixed-point model in lava-nc 0.10.0", file=net.model.file,
                                key=f"groups.{name}", fix="give it a loihi2: variant that fixed point runs")
        cells[name] = neuron.process_class()(shape=(group.n,), **neuron.params(fixed_pt))
        sinks[name] = Sink(shape=(group.n,), buffer=net.steps)
        cells[name].s_out.connect(sinks[name].a_in)
    first = net.phases[0].plastic
    connections, columns = {}, {}
    folded = {name for name, s in net.synapses.items() if not s.plastic and s.spec.source in net.inputs}
    for name, s in net.synapses.items():
        if name not in folded:
            connections[name], columns[name] = _connection(net, s, cells, fixed_pt, rng_seed, name in first)
    for target in {net.synapses[name].spec.target for name in folded}:
        _input_source(net, [net.synapses[n] for n in sorted(folded) if net.synapses[n].spec.target == target],
                      fixed_pt).s_out.connect(cells[target].a_in)
    anchor = next(iter(cells.values()))
    config = Loihi2SimCfg(select_tag="fixed_pt" if fixed_pt else "floating_pt")
    try:
        learning = set(first)
        for phase in net.phases:
            for name in _plastic(net):
                if (name in phase.plastic) != (name in learning):
                    rule = net.synapses[name].rule
                    connections[name].dw.set(rule.rule_kwargs(fixed_pt)["dw"] if name in phase.plastic
                                             else rule.silent_dw)
            learning = set(phase.plastic)
            anchor.run(condition=RunSteps(num_steps=phase.steps), run_cfg=config)
        return _outcome(net, cells, sinks, connections, columns, fixed_pt, start)
    finally:
        anchor.stop()


def _plastic(net: ChipNetwork) -> list[str]:
    return [name for name, s in net.synapses.items() if s.plastic]


def _input_source(net: ChipNetwork, synapses: list[ChipSynapse], fixed_pt: bool) -> Any:
    """One source of the input that fixed synapses from spike inputs give a target at every step, computed
    from the spike trains as lava's Dense computes it (the same weights and, in fixed point, the same
    integers, one step late): a Dense per synapse would add a Lava process, and Lava's cost is per process
    and step, hardly per synapse."""
    from lava.proc.io.source import RingBuffer as Source

    total = 0
    for s in synapses:
        weights, exponent = fixed_dense(s.lava_weights()) if fixed_pt else (s.lava_weights(), 0)
        arrived = weights @ net.inputs[s.spec.source].astype(weights.dtype)
        total = total + (np.left_shift(arrived.astype(np.int64), exponent) if fixed_pt else arrived)
    late = np.zeros_like(total)
    late[:, 1:] = total[:, :-1]  # Dense delivers a step's spikes at the next step
    return Source(data=late.astype(np.int32) if fixed_pt else late)


def _connection(net: ChipNetwork, s: ChipSynapse, cells: dict[str, Any], fixed_pt: bool, rng_seed: int,
                learns_first: bool) -> tuple[Any, np.ndarray]:
    """The synapse's Dense or LearningDense, wired from its source to its target's input."""
    from lava.proc.dense.process import Dense, LearningDense
    from lava.proc.io.source import RingBuffer as Source
    from lava.utils.weightutils import SignMode

    if s.spec.source in net.inputs:
        rows = np.unique(s.pre)  # one source per synapse, with the inputs it reads (inputs are data)
        source = Source(data=net.inputs[s.spec.source][rows].astype(float))
        columns = rows
    else:
        source = cells[s.spec.source]
        columns = np.arange(s.n_pre)
    target = cells[s.spec.target]
    if s.plastic:
        from lava.magma.core.learning.learning_rule import Loihi2FLearningRule

        weights = s.rule.to_loihi_weight(s.values[:, columns])
        weights = np.rint(weights) if fixed_pt else weights
        kwargs = s.rule.rule_kwargs(fixed_pt)
        if not learns_first:  # lava takes the first phase's rule at construction
            kwargs["dw"] = s.rule.silent_dw
        rule = Loihi2FLearningRule(**kwargs, rng_seed=rng_seed)
        mode = SignMode.INHIBITORY if s.rule.weight_sign < 0 else SignMode.EXCITATORY
        connection = LearningDense(weights=weights, learning_rule=rule, num_weight_bits=8, sign_mode=mode)
        target.s_out.connect(connection.s_in_bap)
    else:
        weights = s.lava_weights()[:, columns]
        exponent = 0
        if fixed_pt:
            weights, exponent = fixed_dense(weights)
        mode = SignMode.INHIBITORY if np.all(weights <= 0) else SignMode.EXCITATORY
        if np.any(weights < 0) and np.any(weights > 0):
            mode = SignMode.MIXED
        connection = Dense(weights=weights, weight_exp=exponent, num_weight_bits=8, sign_mode=mode)
    source.s_out.connect(connection.s_in)
    connection.a_out.connect(target.a_in)
    return connection, columns


def _outcome(net: ChipNetwork, cells: dict[str, Any], sinks: dict[str, Any], connections: dict[str, Any],
             columns: dict[str, np.ndarray], fixed_pt: bool, start: float) -> ChipRun:
    spikes = {}
    for name, sink in sinks.items():
        data = np.asarray(sink.data.get()).reshape(net.groups[name].n, -1)
        index, step = np.nonzero(data > 0)
        spikes[name] = (index, step)
    weights = {}
    for name in _plastic(net):
        s = net.synapses[name]
        weights[name] = np.zeros((s.n_post, s.n_pre))
        weights[name][:, columns[name]] = s.rule.from_loihi_weight(np.asarray(connections[name].weights.get(),
                                                                             dtype=float))
    membrane = {}
    for name, cell in cells.items():
        neuron = net.groups[name].fixed if fixed_pt else net.groups[name].neuron
        membrane[name] = neuron.to_brian2(np.asarray(cell.v.get(), dtype=float), fixed_point=fixed_pt)
    return ChipRun(spikes, weights, membrane, time.perf_counter() - start)
