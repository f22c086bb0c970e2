"""A chip network in Brian2, floats, in Loihi 2's order of events: what Lava's floating point should match.

The same model text as the chip runs, at the chip's step, with Loihi's order within a step:

* each neuron group makes Lava's LIF step at the start of every step (each current decays and takes
  the input that arrived in the step before, then the membrane takes the currents), in SI units;
* a transmission ``X_post += expr`` adds to ``X_in``, which the target takes at the next step, as a
  Lava Dense delivers a spike's input one step later;
* a plastic synapse's trace jumps run, on both sides, before any weight change of the step (Brian2
  runs ``on_pre`` entirely before ``on_post``; Loihi updates traces first).

What remains between this run and Lava's floating point is the compiler's quantisation of scales,
impulses and decays; with scales that quantise exactly, the two agree to rounding.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from codesign.hardware.loihi2.chip import ChipGroup, ChipNetwork, ChipRun, ChipSynapse

__all__ = ["run_chip_order"]


def run_chip_order(net: ChipNetwork) -> ChipRun:
    import brian2 as b2

    from codesign.backends.runtime import configure_runtime
    from codesign.hardware import Target

    start = time.perf_counter()
    configure_runtime(Target(name="loihi2-chip-order", codegen="numpy"))
    dt = net.dt_ms * b2.ms
    clock = b2.Clock(dt)
    namespace = dict(net.model.constants)
    objects: dict[str, Any] = {}
    for name, spikes in net.inputs.items():
        index, step = np.nonzero(spikes)
        order = np.lexsort((index, step))
        objects[name] = b2.SpikeGeneratorGroup(spikes.shape[0], index[order], step[order] * dt, clock=clock)
    for name, group in net.groups.items():
        objects[name] = _neuron_group(b2, group, clock, namespace)
    synapses = {name: _synapses(b2, net, s, objects, clock) for name, s in net.synapses.items()}
    monitors = {name: b2.SpikeMonitor(objects[name]) for name in net.groups}
    network = b2.Network(*objects.values(), *synapses.values(), *monitors.values())
    with np.errstate(all="ignore"):
        network.run(net.steps * dt, namespace={})
    spikes = {name: (np.asarray(m.i, dtype=int), np.rint(np.asarray(m.t / dt)).astype(int))
              for name, m in monitors.items()}
    weights = {}
    for name, s in net.synapses.items():
        if s.plastic:
            dense = np.zeros((s.n_post, s.n_pre))
            dense[s.post, s.pre] = np.asarray(getattr(synapses[name], s.weight))
            weights[name] = dense
    membrane = {name: np.asarray(getattr(objects[name], g.neuron.membrane)) for name, g in net.groups.items()}
    return ChipRun(spikes, weights, membrane, time.perf_counter() - start)


def _neuron_group(b2: Any, group: ChipGroup, clock: Any, namespace: dict[str, Any]) -> Any:
    """Lava's LIF step on the group's own variables: currents first, then the membrane."""
    from brian2.units.fundamentalunits import DIMENSIONLESS

    from codesign.expressions import evaluate

    neuron, spec = group.neuron, group.spec
    equations = b2.Equations(spec.model)
    # get_unit names a dimensionless unit radian: write 1.
    units = {name: "1" if equations[name].dim is DIMENSIONLESS else repr(b2.get_unit(equations[name].dim))
             for name in equations.diff_eq_names}
    v = neuron.membrane
    declared = [f"{name} : {unit}" for name, unit in units.items()]
    declared += [f"{name}_in : {units[name]}" for name in neuron.inputs]
    du, dv, bias = neuron.floating_pt["du"], neuron.floating_pt["dv"], neuron.floating_pt["bias_mant"]
    volt = f"({units[v]})"  # the membrane's unit
    step, change = [], [f"({neuron.offset!r} * {volt} - {v}) * {dv!r}", f"{bias / neuron.scale!r} * {volt}"]
    for name, lava_units in neuron.inputs.items():
        if name == v:  # spikes jump into the membrane itself: Lava's u is the input of one step
            change.append(f"{v}_in")
        else:
            step += [f"{name} = {name} * {1.0 - du!r} + {name}_in", f"{name}_in = 0 * {name}_in"]
            change.append(f"{lava_units / neuron.scale!r} * {volt} / ({units[name]}) * {name}")
    refractory = neuron.floating_pt.get("refractory_period", 0)
    step.append(f"{v} = {v} + " + ("int(not_refractory) * " if refractory else "") + f"({' + '.join(change)})")
    if v in neuron.inputs:
        step.append(f"{v}_in = 0 * {v}_in")
    cell = b2.NeuronGroup(group.n, "\n".join(declared), threshold=spec.threshold, reset=spec.reset,
                          refractory=refractory * clock.dt if refractory else False, clock=clock, namespace=namespace)
    cell.run_regularly("\n".join(step), when="start")
    for var, value in spec.initial.items():
        setattr(cell, var, b2.Quantity(evaluate(value, namespace)))
    return cell


def _synapses(b2: Any, net: ChipNetwork, s: ChipSynapse, objects: dict[str, Any], clock: Any) -> Any:
    from brian2.utils.stringtools import word_substitute

    gated = s.gated_text is not None and net.gated()
    model, on_pre, on_post = s.gated_text if gated else s.text
    pending = {f"{name}_post": f"{name}_in_post" for name in net.groups[s.spec.target].neuron.inputs}
    on_pre = word_substitute(on_pre or "", pending)
    namespace = s.brian2_namespace()
    if gated:
        namespace[f"plastic_{s.name}"] = _gate(b2, net, s.name)
    pathways: Any = {"on_pre": on_pre, "on_post": on_post or None}
    if s.plastic:
        traces = {t.name for t in s.rule.traces}
        jumps_pre, rest_pre = _split_jumps(on_pre, traces)
        jumps_post, rest_post = _split_jumps(on_post or "", traces)
        pathways = {"on_pre": {"pre_jumps": jumps_pre, "pre": rest_pre},
                    "on_post": {"post_jumps": jumps_post, "post": rest_post}}
    synapses = b2.Synapses(objects[s.spec.source], objects[s.spec.target], model=model or "", clock=clock,
                           namespace=namespace, method=s.spec.method or None, **pathways)
    if s.plastic:
        synapses.pre_jumps.order, synapses.post_jumps.order = -3, -2
    synapses.connect(i=s.pre, j=s.post)
    if s.plastic:
        setattr(synapses, s.weight, s.values[s.post, s.pre])
    return synapses


def _gate(b2: Any, net: ChipNetwork, name: str) -> Any:
    """1 in the steps of the phases where ``name`` learns, else 0."""
    values = np.concatenate([np.full(p.steps, float(name in p.plastic)) for p in net.phases])
    return b2.TimedArray(values, dt=net.dt_ms * b2.ms)


def _split_jumps(code: str, traces: set[str]) -> tuple[str, str]:
    """(trace jumps, other statements) of an event's code (Brian2's statement parser)."""
    from brian2.parsing.statements import parse_statement

    jumps, rest = [], []
    for line in code.splitlines():
        if line.strip():
            (jumps if parse_statement(line)[0] in traces else rest).append(line)
    return "\n".join(jumps), "\n".join(rest)
