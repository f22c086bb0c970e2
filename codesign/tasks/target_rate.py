"""Task ``target_rate``: plastic inhibition must hold a LIF neuron at a target firing rate.

A conductance-based leaky integrate-and-fire neuron (Vogels et al., Science 2011, single-cell
setting) receives ``n_excitatory`` and ``n_inhibitory`` Poisson inputs. Excitatory weights are
fixed and strong enough to drive the neuron well above the target; inhibitory weights change under a
spike-trace rule (:mod:`codesign.rules.spike_trace`). After ``learn_s`` seconds, the rate over the
last ``measure_s`` seconds is compared with the target: the loss is the squared relative error,
averaged over ``n_repeats`` input draws.

Input spike trains are drawn in NumPy from the seed and fed through a ``SpikeGeneratorGroup``, so
every backend (and a port to Lava) sees the same spikes. They are given per run (as is the seed of
stochastic rounding's random numbers): one build serves every seed, the study's and held-out ones.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from codesign.backends import NetworkBuild, Simulation, network_clock, simulation, spike_input
from codesign.errors import CodesignError
from codesign.hardware import EventCounts
from codesign.hardware.target import trace_grid
from codesign.rules import Candidate
from codesign.rules.spike_trace import SPIKE_TERMS, SpikeTraceRule, vogels
from codesign.schema import Where
from codesign.tasks.base import Evaluation, Task, check_size, pad

__all__ = ["TargetRateParams", "TargetRateTask", "draw_spikes", "spike_capacity"]


@dataclasses.dataclass(frozen=True)
class TargetRateParams:
    """Parameters of the ``target_rate`` task (``task:`` in a study file)."""

    target_rate_hz: float = dataclasses.field(default=10.0, metadata={"min": 0.1, "max": 200.0})
    n_excitatory: int = dataclasses.field(default=800, metadata={"min": 1, "max": 100000})
    n_inhibitory: int = dataclasses.field(default=200, metadata={"min": 1, "max": 100000})
    #: Poisson rates of the inputs (at most one spike per input and time step).
    rate_excitatory_hz: float = dataclasses.field(default=5.0, metadata={"min": 0.0, "max": 1000.0})
    rate_inhibitory_hz: float = dataclasses.field(default=10.0, metadata={"min": 0.0, "max": 1000.0})
    #: Excitatory and initial inhibitory conductance jumps, in units of the leak conductance.
    w_excitatory: float = dataclasses.field(default=0.05, metadata={"min": 0.0})
    w_inhibitory_init: float = dataclasses.field(default=0.05, metadata={"min": 0.0})
    w_max: float = dataclasses.field(default=1.0, metadata={"min": 0.0})
    n_repeats: int = dataclasses.field(default=2, metadata={"min": 1, "max": 100})
    learn_s: float = dataclasses.field(default=10.0, metadata={"min": 0.0})
    measure_s: float = dataclasses.field(default=5.0, metadata={"min": 0.01})
    dt_ms: float = dataclasses.field(default=0.1, metadata={"min": 0.001, "max": 10.0})
    #: A rate above this is a runaway: the candidate is recorded as diverged (pruned).
    runaway_rate_hz: float = dataclasses.field(default=150.0, metadata={"min": 0.0})
    #: Rules with a loss below this count as solutions in the solution-manifold plot.
    good_loss: float = dataclasses.field(default=0.01, metadata={"min": 0.0})

    @property
    def n_inputs(self) -> int:
        return self.n_excitatory + self.n_inhibitory

    def validate(self, where: Where) -> None:
        check_size(where, self.duration_s, self.dt_ms, self.expected_spikes,
                   "input spikes (n_repeats x duration x inputs x rates)",
                   duration_key="learn_s", duration="learn_s + measure_s")

    @property
    def expected_spikes(self) -> float:
        """The mean number of input spikes of all draws together (Poisson)."""
        return self.n_repeats * self.duration_s * (self.n_excitatory * self.rate_excitatory_hz
                                                   + self.n_inhibitory * self.rate_inhibitory_hz)

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


#: Standard deviations above the mean number of input spikes that the network makes room for.
_SPIKE_MARGIN_SD = 10


def spike_capacity(params: TargetRateParams) -> int:
    """How many input spikes (all draws) the network holds, whatever the seed.

    :func:`draw_spikes` keeps at most the Poisson counts it draws, whose total is Poisson with mean
    ``lam``; room for ``lam + 10 sqrt(lam) + 10`` is exceeded with a probability below 1e-20 (and
    never beyond one spike per input and step).
    """
    steps = int(round(params.duration_s * 1000.0 / params.dt_ms))
    lam = params.expected_spikes
    bound = math.ceil(lam + _SPIKE_MARGIN_SD * math.sqrt(lam) + 10)
    return max(1, min(bound, params.n_repeats * params.n_inputs * steps))


_NEURON = """
dv/dt = ((E_l - v) + ge * (E_e - v) + gi * (E_i - v)) / tau_m : volt (unless refractory)
dge/dt = -ge / tau_e : 1
dgi/dt = -gi / tau_i : 1
count : 1
total : 1
w_step : 1 (constant)
x_step : 1 (constant)
x_max : 1 (constant)
stochastic : 1 (constant)
eta : 1 (constant)
tau_x : second (constant)
tau_y : second (constant)
"""

#: Cell constants (Vogels et al. 2011): leak reversal, synaptic reversals, threshold, reset.
CELL = {"E_l": -60.0, "E_e": 0.0, "E_i": -80.0, "v_th": -50.0, "v_reset": -60.0, "tau_m_ms": 20.0,
        "tau_e_ms": 5.0, "tau_i_ms": 10.0, "refractory_ms": 5.0}


#: A float trace never saturates (a finite bound: generated C++ reads it as a number).
_FLOAT_TRACE_MAX = 1e30


def _on_grid(value: str, step: str) -> str:
    """``value`` on a grid of ``step`` (to nearest, or stochastically as Loihi's learning engine
    rounds: up with probability equal to the remainder), or exactly ``value`` where ``step`` is 0."""
    grid = (f"{step} * floor(({value}) / ({step} + int({step} == 0)) "
            f"+ stochastic_post * rand() + (1 - stochastic_post) * 0.5)")
    return f"int({step} > 0) * {grid} + int({step} == 0) * ({value})"


#: Weight after an update: on the hardware's grid of ``w_step`` within [0, w_max].
_QUANTISE = f"w = clip({_on_grid('raw', 'w_step_post')}, 0, w_max)"


def _trace(name: str, jump: str = "") -> str:
    """A trace register at an event: on the grid of ``x_step`` (an impulse is one spike) and
    saturating at ``x_max``. Between events the decay is exact: the emulation rounds the register
    whenever a spike reads or writes it, not at every time step as the chip does."""
    return f"{name} = clip({_on_grid(name + jump, 'x_step_post')}, 0, x_max_post)"


def _update(event: str) -> str:
    return " + ".join(f"{term}_post" + ("" if factor == "1" else f"*{factor}")
                      for term, (on, factor) in SPIKE_TERMS.items() if on == event)


def _construct(params: TargetRateParams, n_candidates: int):
    def construct() -> NetworkBuild:
        import brian2 as b2

        dt = params.dt_ms * b2.ms
        clock = network_clock(dt)
        repeats, n_in, n_e = params.n_repeats, params.n_inputs, params.n_excitatory
        c = CELL
        namespace = {"E_l": c["E_l"] * b2.mV, "E_e": c["E_e"] * b2.mV, "E_i": c["E_i"] * b2.mV,
                     "tau_m": c["tau_m_ms"] * b2.ms, "tau_e": c["tau_e_ms"] * b2.ms, "tau_i": c["tau_i_ms"] * b2.ms,
                     "w_e": params.w_excitatory, "w_max": params.w_max, "t_measure": params.learn_s * b2.second}
        inputs = spike_input(repeats * n_in, spike_capacity(params), clock, "inputs")
        coefficients = "\n".join(f"{t} : 1 (constant)" for t in SPIKE_TERMS)
        neurons = b2.NeuronGroup(n_candidates * repeats, _NEURON + coefficients, threshold=f"v > {c['v_th']}*mV",
                                 reset=f"v = {c['v_reset']}*mV\ncount += int(t >= t_measure)\ntotal += 1",
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
            on_pre=f"gi_post += w\n{_trace('x', ' + 1')}\n{_trace('y')}\n"
                   f"raw = w + eta_post * ({_update('on_pre')})\n{_QUANTISE}",
            on_post=f"{_trace('y', ' + 1')}\n{_trace('x')}\nraw = w + eta_post * ({_update('on_post')})\n{_QUANTISE}")
        inhibitory.connect(i=pre[~is_exc], j=post[~is_exc])
        settable = {t: (neurons, t) for t in SPIKE_TERMS}
        settable.update(eta=(neurons, "eta"), tau_x=(neurons, "tau_x"), tau_y=(neurons, "tau_y"),
                        w_step=(neurons, "w_step"), x_step=(neurons, "x_step"), x_max=(neurons, "x_max"),
                        stochastic=(neurons, "stochastic"),
                        w0=(inhibitory, "w"))
        return NetworkBuild(objects=[inputs, neurons, excitatory, inhibitory],
                            duration=params.duration_s * b2.second, settable=settable,
                            readable={"count": (neurons, "count"), "total": (neurons, "total"),
                                      "w": (inhibitory, "w")},
                            # Stochastic rounding draws rand(): each run is seeded (with the input
                            # seed), so that a batch run twice gives the same losses.
                            spike_inputs={"inputs": inputs}, draws_random=True)

    return construct


class TargetRateTask(Task):
    """Hold a LIF neuron at a target rate with plastic inhibition: see the module docstring."""

    name = "target_rate"
    Params = TargetRateParams
    slots = {"inhibitory": "spike_trace"}
    knobs = ("weight_bits", "trace_bits", "rounding")
    counts_events = True

    def named_candidates(self, etas: Mapping[str, float]) -> dict[str, dict[str, SpikeTraceRule]]:
        eta = etas["inhibitory"]
        alpha = 2.0 * self.params.target_rate_hz * 20e-3
        return {
            "vogels": {"inhibitory": vogels(self.params.target_rate_hz, tau_ms=20.0, eta=eta)},
            "no_depression": {"inhibitory": SpikeTraceRule({"pre_y": 1.0, "post_x": 1.0}, eta=eta, name="no_depression")},
            "depression_only": {"inhibitory": SpikeTraceRule({"pre_1": -alpha}, eta=eta, name="depression_only")},
            "zero": {"inhibitory": SpikeTraceRule({}, eta=eta, name="zero")},
        }

    def spikes(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The input spikes of ``seed``, drawn once: every batch of a study uses the same draws."""
        cached = getattr(self, "_spikes", None)
        if cached is None or cached[0] != seed:
            self._spikes = (seed, draw_spikes(self.params, seed))  # keep one: the study's, or eval's
        return self._spikes[1]

    def simulation(self, n_candidates: int) -> Simulation:
        """The network of ``n_candidates``: input spikes and seed are given per run, so every seed shares it."""
        p = self.params
        key = f"target_rate|k={n_candidates}|{dataclasses.astuple(p)}|spikes={spike_capacity(p)}"
        return simulation(self.target, key, _construct(p, n_candidates))

    def _checked_spikes(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        spikes = self.spikes(seed)
        capacity = spike_capacity(self.params)
        if len(spikes[0]) > capacity:
            raise CodesignError(f"input seed {seed} draws {len(spikes[0])} spikes, more than the {capacity} the "
                                f"network holds (mean + {_SPIKE_MARGIN_SD} standard deviations)", key="seed",
                                fix="use another seed")
        return spikes

    def evaluate(self, candidates: Sequence[SpikeTraceRule | Candidate], seed: int,
                 terms: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
                 capacity: int | None = None, knobs: Sequence[Mapping[str, float]] | None = None
                 ) -> list[Evaluation]:
        import brian2 as b2

        if not candidates:
            return []
        rules = [c["inhibitory"] for c in self.candidates(candidates)]
        p = self.params
        size = max(len(rules), capacity or 0)
        padded = pad(rules, size)
        per_neuron = lambda values: np.repeat(values, p.n_repeats)  # noqa: E731
        values = {t: per_neuron([rule.coefficient(t) for rule in padded]) for t in SPIKE_TERMS}
        values["eta"] = per_neuron([rule.eta for rule in padded])
        values["tau_x"] = per_neuron([rule.tau_x_ms for rule in padded]) * b2.ms
        values["tau_y"] = per_neuron([rule.tau_y_ms for rule in padded]) * b2.ms
        precision = self.target.precision

        def knob(name: str) -> list:
            return pad([(knobs[k] if knobs else {}).get(name, getattr(precision, name)) for k in range(len(rules))],
                       size)

        values["w_step"] = per_neuron([0.0 if b is None else p.w_max / (2 ** int(b) - 1) for b in knob("weight_bits")])
        grids = [trace_grid(None if b is None else int(b)) for b in knob("trace_bits")]
        values["x_step"] = per_neuron([step for step, _ in grids])
        values["x_max"] = per_neuron([min(top, _FLOAT_TRACE_MAX) for _, top in grids])
        values["stochastic"] = per_neuron([float(r == "stochastic") for r in knob("rounding")])
        values["w0"] = np.full(size * p.n_repeats * p.n_inhibitory, p.w_inhibitory_init)
        spikes = self._checked_spikes(seed)
        out = self.simulation(size).run(values, {}, spikes={"inputs": spikes}, seed=seed)
        rates = out["count"].reshape(size, p.n_repeats) / p.measure_s
        totals = out["total"].reshape(size, p.n_repeats)
        weights = out["w"].reshape(size, p.n_repeats, p.n_inhibitory)
        return [self._summarise(rates[k], weights[k], self._counts(spikes, totals[k])) for k in range(len(rules))]

    def _counts(self, spikes: tuple[np.ndarray, np.ndarray], output_spikes: np.ndarray) -> EventCounts:
        """Events of one candidate's network, averaged over its input draws.

        Every input spike is one synaptic event (each input has one synapse onto the neuron); an
        inhibitory input spike updates its synapse, and an output spike updates all inhibitory ones.
        """
        p = self.params
        inputs_per_draw = len(spikes[0]) / p.n_repeats
        inhibitory = np.count_nonzero(spikes[0] % p.n_inputs >= p.n_excitatory) / p.n_repeats
        out = float(np.mean(output_spikes))
        return EventCounts(duration_s=p.duration_s, synaptic_events=inputs_per_draw, spikes=out,
                           learning_updates=inhibitory + out * p.n_inhibitory, neurons=1, synapses=p.n_inputs,
                           plastic_synapses=p.n_inhibitory)

    def _summarise(self, rates: np.ndarray, weights: np.ndarray, counts: EventCounts | None = None) -> Evaluation:
        p = self.params
        error = (rates - p.target_rate_hz) / p.target_rate_hz
        metrics: dict[str, object] = {
            "rates_hz": [float(x) for x in rates],
            "max_rate_error": float(np.max(np.abs(error))),
            "mean_inhibitory_weight": float(np.mean(weights)),
        }
        runaway = rates > p.runaway_rate_hz
        if runaway.any():
            metrics["diverged_reason"] = f"runaway rate {rates.max():.1f} Hz > runaway_rate_hz {p.runaway_rate_hz:g}"
        return Evaluation(Evaluation.capped(float(np.mean(error**2))), metrics, {"weights": weights},
                          diverged=bool(runaway.any()), counts=counts)

    def plot_solutions(self, spec, trials, path: Path) -> bool:
        """Good rules in the plane (potentiation, depression offset), with Vogels' relation drawn in.

        With the neuron at rate rho and inhibitory inputs at rate rho_in, the mean weight drift of a
        rule vanishes when (pre spikes) rho_in (pre_1 + pre_y rho tau_y + pre_w w) + (post spikes)
        rho (post_1 + post_x rho_in tau_x + post_w w) = 0, that is when the depression offset
        ``alpha = -(pre_1 + pre_w w)`` equals ``rho * P`` with the potentiation
        ``P = pre_y tau_y + post_x tau_x + (post_1 + post_w w) / rho_in``. For Vogels' rule
        (pre_y = post_x = 1, tau_x = tau_y = tau, no other term) this is ``alpha = 2 rho0 tau``.
        A rule that holds the rate at rho0 lies on the line ``alpha = rho0 P`` (w: its final mean
        inhibitory weight): the solutions form a manifold, not a point.
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from codesign.study import candidate

        good = [t for t in trials if t.values and t.values[0] < self.params.good_loss]
        if not good:
            return False
        rho_in = self.params.rate_inhibitory_hz
        potentiation, alpha = [], []
        for trial in good:
            rule = candidate(spec, trial.params)["inhibitory"]
            w = trial.user_attrs.get("metrics", {}).get("mean_inhibitory_weight", self.params.w_inhibitory_init)
            c = rule.coefficient
            potentiation.append(c("pre_y") * rule.tau_y_ms * 1e-3 + c("post_x") * rule.tau_x_ms * 1e-3
                                + (c("post_1") + c("post_w") * w) / rho_in)
            alpha.append(-(c("pre_1") + c("pre_w") * w))
        potentiation, alpha = np.array(potentiation), np.array(alpha)
        fig, ax = plt.subplots(figsize=(5.8, 4.4))
        points = ax.scatter(potentiation, alpha, c=[t.values[0] for t in good], cmap="viridis_r", s=14)
        fig.colorbar(points, ax=ax, label="loss")
        rho0 = self.params.target_rate_hz
        x = np.linspace(min(0.0, potentiation.min()), max(potentiation.max(), 0.05), 50)
        ax.plot(x, rho0 * x, color="C3", label=f"alpha = rho0 P (Vogels' relation), rho0 = {rho0:g} Hz")
        ax.scatter([0.04], [rho0 * 0.04], marker="*", s=150, color="C3", label="Vogels et al. (tau = 20 ms)")
        ax.set_xlabel("potentiation P = pre_y tau_y + post_x tau_x + (post_1 + post_w w) / rho_in  (s)")
        ax.set_ylabel("depression offset alpha = -(pre_1 + pre_w w)")
        ax.set_title(f"{len(good)} rules with loss < {self.params.good_loss:g}", fontsize=10)
        ax.xaxis.label.set_size(8)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return True
