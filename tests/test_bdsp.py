"""Burst-dependent plasticity (models/bdsp-xor.yaml, issue 17): the mechanisms in the order the issue
asks for them. First: a pyramidal neuron's burst probability follows the sigmoid of its dendritic voltage."""

from __future__ import annotations

import numpy as np

import codesign
from tests.conftest import ROOT

LEVELS, PER_LEVEL = 9, 60


def hidden_group_run(seconds: float, seed: int = 3):
    """The model file's own hidden-layer neuron text, with the somatic and dendritic currents as per-neuron
    parameters: a regular somatic drive (about 6 Hz of events) and 9 dendritic currents, 60 neurons each."""
    import brian2 as b2

    from codesign.backends.runtime import configure_runtime
    from codesign.expressions import evaluate
    from codesign.hardware import Target

    model = codesign.load_model(str(ROOT / "models/bdsp-xor.yaml")).spec
    group = model.groups["hidden"]
    lines = [line for line in group.model.splitlines() if not line.lstrip().startswith(("I_s =", "I_d ="))]
    text = "\n".join(lines + ["I_s : amp", "I_d : amp"])
    configure_runtime(Target(name="bdsp-test", codegen="numpy"))
    b2.seed(seed)
    n = LEVELS * PER_LEVEL
    cell = b2.NeuronGroup(n, text, threshold=group.threshold, reset=group.reset, events=dict(group.events),
                          method=group.method, namespace=dict(model.constants), dt=0.1 * b2.ms)
    for var, value in group.initial.items():
        setattr(cell, var, evaluate(value, model.constants))
    cell.I_s = 520 * b2.pA
    cell.I_d = np.repeat(np.linspace(0, 900, LEVELS), PER_LEVEL) * b2.pA
    spikes, events, bursts = b2.SpikeMonitor(cell), b2.EventMonitor(cell, "event"), b2.EventMonitor(cell, "burst")
    vd = b2.StateMonitor(cell, "vd", record=True, dt=10 * b2.ms)
    b2.Network(cell, spikes, events, bursts, vd).run(seconds * b2.second, namespace={})
    return model.constants, spikes, events, bursts, vd


def test_burst_probability_follows_the_sigmoid_of_dendritic_voltage():
    """Bursts / events at each of 9 dendritic voltages (-70 to -46 mV, held by constant dendritic currents:
    nothing else moves the dendrite here) against 1 / (1 + exp(-(vd - E_d) / D_d)), E_d -57 mV, D_d 6 mV.
    Measured (seed 3, 5 s, about 1,800 events per level): every level within 1.9 binomial standard errors."""
    from brian2 import mV, ms

    constants, spikes, events, bursts, vd = hidden_group_run(5.0)
    level = np.arange(LEVELS * PER_LEVEL) // PER_LEVEL
    n_events = np.bincount(level[np.asarray(events.i)], minlength=LEVELS)
    n_bursts = np.bincount(level[np.asarray(bursts.i)], minlength=LEVELS)
    assert n_events.min() > 1000  # isolated events: a regular 6 Hz drive
    probability = n_bursts / n_events
    held = np.array([float(np.mean(vd.vd[level == k, 10:]) / mV) for k in range(LEVELS)])
    assert abs(held[0] + 70) < 1e-6  # no dendritic current: vd rests at EL
    assert held[-1] > -47

    def sigmoid(midpoint_mv: float) -> np.ndarray:
        return 1 / (1 + np.exp(-(held - midpoint_mv) / float(constants["D_d"] / mV)))

    error = np.sqrt(probability * (1 - probability) / n_events)
    z = (probability - sigmoid(float(constants["E_d"] / mV))) / error
    assert np.all(np.abs(z) < 4), z
    assert probability[-1] - probability[0] > 0.7  # from 0.1 to 0.87: the dendrite sets it
    # The test tells a curve 3 mV away (the base class's midpoint is -38 mV) from the right one.
    assert np.max(np.abs((probability - sigmoid(float(constants["E_d"] / mV) + 3)) / error)) > 6

    # Every burst is the second spike of a doublet, 5-15 ms after a first spike of the same neuron.
    t_spikes, i_spikes = np.asarray(spikes.t / ms), np.asarray(spikes.i)
    for neuron, t in zip(np.asarray(bursts.i)[:200], np.asarray(bursts.t / ms)[:200]):
        before = t_spikes[(i_spikes == neuron) & (t_spikes < t - 1e-6)]
        assert 4.9 <= t - before.max() <= 15.0 + 1e-6, (neuron, t, before[-3:])
