"""Task ``target_rate``: plastic inhibition must hold a LIF neuron at a target firing rate.

A conductance-based leaky integrate-and-fire neuron (Vogels et al., Science 2011, single-cell
setting) receives ``n_excitatory`` and ``n_inhibitory`` Poisson inputs. Excitatory weights are
fixed and strong enough to drive the neuron well above the target; inhibitory weights change under a
spike-trace rule (:mod:`codesign.rules.spike_trace`). After ``learn_s`` seconds, the rate over the
last ``measure_s`` seconds is compared with the target: the loss is the squared relative error,
averaged over ``n_repeats`` input draws.

Input spike trains are drawn in NumPy from the seed and fed through a ``SpikeGeneratorGroup``, so
every backend (and a port to Lava) sees the same spikes.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from codesign.backends import NetworkBuild, Simulation, simulation
from codesign.hardware import Target
from codesign.rules.spike_trace import SPIKE_TERMS, SpikeTraceRule
from codesign.tasks.base import Evaluation, Task

__all__ = ["TargetRateParams", "TargetRateTask", "draw_spikes"]


@dataclasses.dataclass(frozen=True)
class TargetRateParams:
    """Parameters of the ``target_rate`` task (``task:`` in a study file)."""

    target_rate_hz: float = dataclasses.field(default=10.0, metadata={"min": 0.1, "max": 200.0})
    n_excitatory: int = dataclasses.field(default=800, metadata={"min": 1, "max": 100000})
    n_inhibitory: int = dataclasses.field(default=200, metadata={"min": 1, "max": 100000})
    rate_excitatory_hz: float = dataclasses.field(default=5.0, metadata={"min": 0.0})
    rate_inhibitory_hz: float = dataclasses.field(default=10.0, metadata={"min": 0.0})
    #: Excitatory and initial inhibitory conductance jumps, in units of the leak conductance.
    w_excitatory: float = dataclasses.field(default=0.05, metadata={"min": 0.0})
    w_inhibitory_init: float = dataclasses.field(default=0.05, metadata={"min": 0.0})
    w_max: float = dataclasses.field(default=1.0, metadata={"min": 0.0})
    n_repeats: int = dataclasses.field(default=2, metadata={"min": 1, "max": 100})
    learn_s: float = dataclasses.field(default=10.0, metadata={"min": 0.0})
    measure_s: float = dataclasses.field(default=5.0, metadata={"min": 0.01})
    dt_ms: float = dataclasses.field(default=0.1, metadata={"min": 0.001, "max": 10.0})

    @property
    def n_inputs(self) -> int:
        return self.n_excitatory + self.n_inhibitory

    @property
    def duration_s(self) -> float:
        return self.learn_s + self.measure_s


def draw_spikes(params: TargetRateParams, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Poisson input spikes of every draw: (indices, times in s); input ``r * n_inputs + i``.

    At most one spike per input and time step, on the time grid (as a simulator would see them).
    """
    rng = np.random.default_rng(seed)
    steps = int(round(params.duration_s * 1000.0 / params.dt_ms))
    dt = params.dt_ms * 1e-3
    rates = np.r_[np.full(params.n_excitatory, params.rate_excitatory_hz),
                  np.full(params.n_inhibitory, params.rate_inhibitory_hz)]
    indices, times = [], []
    for r in range(params.n_repeats):
        counts = rng.poisson(rates * params.duration_s)
        for i in np.flatnonzero(counts):
            step = np.unique(rng.integers(0, steps, counts[i]))
            indices.append(np.full(len(step), r * params.n_inputs + i))
            times.append(step * dt)
    if not indices:
        return np.zeros(0, dtype=int), np.zeros(0)
    return np.concatenate(indices), np.concatenate(times)


_NEURON = """
dv/dt = ((E_l - v) + ge * (E_e - v) + gi * (E_i - v)) / tau_m : volt (unless refractory)
dge/dt = -ge / tau_e : 1
dgi/dt = -gi / tau_i : 1
count : 1
eta : 1 (constant)
tau_x : second (constant)
tau_y : second (constant)
"""

#: Cell constants (Vogels et al. 2011): leak reversal, synaptic reversals, threshold, reset.
CELL = {"E_l": -60.0, "E_e": 0.0, "E_i": -80.0, "v_th": -50.0, "v_reset": -60.0, "tau_m_ms": 20.0,
        "tau_e_ms": 5.0, "tau_i_ms": 10.0, "refractory_ms": 5.0}


def _update(event: str) -> str:
    return " + ".join(f"{term}_post" + ("" if factor == "1" else f"*{factor}")
                      for term, (on, factor) in SPIKE_TERMS.items() if on == event)


def _construct(params: TargetRateParams, n_candidates: int, spikes: tuple[np.ndarray, np.ndarray]):
    def construct() -> NetworkBuild:
        import brian2 as b2

        dt = params.dt_ms * b2.ms
        # One named clock: with one clock per group, the generated code's order of clock
        # initialisations varies between processes, and a standalone build would not be reused.
        clock = b2.Clock(dt, name="clock")
        repeats, n_in, n_e = params.n_repeats, params.n_inputs, params.n_excitatory
        c = CELL
        namespace = {"E_l": c["E_l"] * b2.mV, "E_e": c["E_e"] * b2.mV, "E_i": c["E_i"] * b2.mV,
                     "tau_m": c["tau_m_ms"] * b2.ms, "tau_e": c["tau_e_ms"] * b2.ms, "tau_i": c["tau_i_ms"] * b2.ms,
                     "w_e": params.w_excitatory, "w_max": params.w_max, "t_measure": params.learn_s * b2.second}
        inputs = b2.SpikeGeneratorGroup(repeats * n_in, spikes[0], spikes[1] * b2.second, clock=clock, name="inputs")
        coefficients = "\n".join(f"{t} : 1 (constant)" for t in SPIKE_TERMS)
        neurons = b2.NeuronGroup(n_candidates * repeats, _NEURON + coefficients, threshold=f"v > {c['v_th']}*mV",
                                 reset=f"v = {c['v_reset']}*mV\ncount += int(t >= t_measure)",
                                 refractory=c["refractory_ms"] * b2.ms, method="euler", clock=clock,
                                 namespace=namespace, name="neurons")
        neurons.v = c["E_l"] * b2.mV
        k, r, i = np.meshgrid(np.arange(n_candidates), np.arange(repeats), np.arange(n_in), indexing="ij")
        pre, post, is_exc = (r * n_in + i).ravel(), (k * repeats + r).ravel(), (i < n_e).ravel()
        excitatory = b2.Synapses(inputs, neurons, on_pre="ge_post += w_e", clock=clock, namespace=namespace,
                                 name="excitatory")
        excitatory.connect(i=pre[is_exc], j=post[is_exc])
        inhibitory = b2.Synapses(
            inputs, neurons, clock=clock, namespace=namespace, name="inhibitory", method="exact",
            model="w : 1\ndx/dt = -x / tau_x_post : 1 (event-driven)\ndy/dt = -y / tau_y_post : 1 (event-driven)",
            on_pre=f"gi_post += w\nx += 1\nw = clip(w + eta_post * ({_update('on_pre')}), 0, w_max)",
            on_post=f"y += 1\nw = clip(w + eta_post * ({_update('on_post')}), 0, w_max)")
        inhibitory.connect(i=pre[~is_exc], j=post[~is_exc])
        settable = {t: (neurons, t) for t in SPIKE_TERMS}
        settable.update(eta=(neurons, "eta"), tau_x=(neurons, "tau_x"), tau_y=(neurons, "tau_y"),
                        w0=(inhibitory, "w"))
        return NetworkBuild(objects=[inputs, neurons, excitatory, inhibitory],
                            duration=params.duration_s * b2.second, settable=settable,
                            readable={"count": (neurons, "count"), "w": (inhibitory, "w")})

    return construct


class TargetRateTask(Task):
    """Hold a LIF neuron at a target rate with plastic inhibition: see the module docstring."""

    name = "target_rate"
    Params = TargetRateParams

    def simulation(self, n_candidates: int, seed: int) -> Simulation:
        p = self.params
        key = (f"target_rate|k={n_candidates}|{dataclasses.astuple(p)}|seed={seed}")
        return simulation(self.target, key, _construct(p, n_candidates, draw_spikes(p, seed)))

    def evaluate(self, rules: Sequence[SpikeTraceRule], seed: int, terms: Sequence[str] | None = None,
                 capacity: int | None = None) -> list[Evaluation]:
        import brian2 as b2

        if not rules:
            return []
        p = self.params
        size = max(len(rules), capacity or 0)
        padded = list(rules) + [rules[-1]] * (size - len(rules))
        per_neuron = lambda values: np.repeat(values, p.n_repeats)  # noqa: E731
        values = {t: per_neuron([rule.coefficient(t) for rule in padded]) for t in SPIKE_TERMS}
        values["eta"] = per_neuron([rule.eta for rule in padded])
        values["tau_x"] = per_neuron([rule.tau_x_ms for rule in padded]) * b2.ms
        values["tau_y"] = per_neuron([rule.tau_y_ms for rule in padded]) * b2.ms
        values["w0"] = np.full(size * p.n_repeats * p.n_inhibitory, p.w_inhibitory_init)
        out = self.simulation(size, seed).run(values, {})
        rates = out["count"].reshape(size, p.n_repeats) / p.measure_s
        weights = out["w"].reshape(size, p.n_repeats, p.n_inhibitory)
        evaluations = []
        for k in range(len(rules)):
            error = (rates[k] - p.target_rate_hz) / p.target_rate_hz
            evaluations.append(Evaluation(
                Evaluation.capped(float(np.mean(error**2))),
                {"rates_hz": [float(x) for x in rates[k]], "mean_inhibitory_weight": float(np.mean(weights[k]))},
                {"weights": weights[k]}))
        return evaluations
