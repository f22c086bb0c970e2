"""A hand-written, vectorised NumPy simulation of the target-rate network (``models/target-rate.yaml``).

It serves as the "how fast could a CPU do this" baseline and as an independent check of the Brian2
network codesign builds from the model file. It follows Brian2's semantics (default
schedule, ``euler`` state update, event-driven traces with exact decay) step by step, and even the
order of floating-point operations of Brian2's generated numpy code (Brian2 2.8), including the
order in which simultaneous spikes are added into ``ge`` and ``gi``, so with the numpy runtime the two
agree to the last bit (and with C++ standalone to about 1e-16).

One time step ``n`` (``t = n * dt``), in Brian2's order:

1. ``groups``: Euler step of ``v`` (only where not refractory), ``ge`` and ``gi``, all from the
   values at the start of the step. ``not_refractory`` is recomputed first from ``lastspike``.
2. ``thresholds``: a neuron spikes if ``v > v_th`` and it is not refractory; the inputs of step
   ``n`` are emitted.
3. ``synapses``: ``excitatory_pre`` (``ge += w_e``), ``inhibitory_pre`` (traces decay to ``t``,
   ``gi += w``, ``x += 1``, pre update of ``w``), then ``inhibitory_post`` (traces decay to ``t``,
   ``y += 1``, post update of ``w``).
4. ``resets``: ``v = v_reset`` and ``count += t >= t_measure``.

``ge`` depends on the inputs alone (every candidate of one draw gets the same excitatory spikes), so
it is kept once per draw and broadcast over the candidates; Brian2 computes the same numbers once per
neuron.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from codesign.rules.spike_trace import SPIKE_TERMS, SpikeTraceRule

__all__ = ["reference_run", "TargetRateNetwork"]


@dataclasses.dataclass(frozen=True)
class TargetRateNetwork:
    """The constants of the target-rate model in the units this reference uses (mV, ms, s, Hz)."""

    n_excitatory: int
    n_inhibitory: int
    n_repeats: int
    w_excitatory: float
    w_inhibitory_init: float
    w_max: float
    learn_s: float
    measure_s: float
    dt_ms: float
    cell: dict[str, float]

    @property
    def n_inputs(self) -> int:
        return self.n_excitatory + self.n_inhibitory

    @property
    def duration_s(self) -> float:
        return self.learn_s + self.measure_s

    @classmethod
    def from_model(cls, model: Any) -> TargetRateNetwork:
        """The constants of a model of the target-rate network (``models/target-rate.yaml``)."""
        from brian2 import mV, ms, second

        c = model.constants
        cell = {name: float(c[name] / mV) for name in ("E_l", "E_e", "E_i", "v_th", "v_reset")}
        cell.update({f"{name}_ms": float(c[name] / ms) for name in ("tau_m", "tau_e", "tau_i")})
        refractory = model.value(model.groups["neuron"].refractory, model.where)
        cell["refractory_ms"] = float(refractory / ms)
        return cls(n_excitatory=int(c["n_excitatory"]), n_inhibitory=int(c["n_inhibitory"]), n_repeats=model.draws,
                   w_excitatory=float(c["w_e"]), w_inhibitory_init=float(c["w_inhibitory_init"]),
                   w_max=float(c["w_max"]), learn_s=float(c["learn"] / second), measure_s=float(c["measure"] / second),
                   dt_ms=model.dt_s * 1e3, cell=cell)


def _n_steps(duration: float, dt: float) -> int:
    """Number of time steps of a run, as Brian2's ``Clock`` computes its end."""
    n = int(np.round(duration / dt))
    if n * dt == duration or abs(n * dt - duration) / dt <= 1e-4:
        return n
    return int(np.ceil(duration / dt))


def _timestep(t: float, dt: float) -> int:
    """Brian2's ``timestep`` function (a tiny shift keeps multiples of dt in their own step)."""
    return int((t + 1e-3 * dt) / dt)


#: Rows of the synapses' state array: traces x and y, weight w, time of the last update.
X, Y, W, LU = 0, 1, 2, 3
#: Brian2's scale of mV and of ms: the reference computes in volts and seconds, as Brian2 does.
MV = MS = 1e-3


def reference_run(rules: Sequence[SpikeTraceRule], params: TargetRateNetwork,
                  spikes: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Run the ``target_rate`` network of every rule on every input draw.

    ``spikes`` are the model's ``poisson`` stimulus draws: indices into the ``n_repeats * n_inputs``
    inputs and times in seconds, on the dt grid.

    Returns ``(counts, weights)``: ``counts`` of shape ``(len(rules), n_repeats)`` is the number of
    output spikes with ``t >= learn_s`` (Brian2's ``count``), ``weights`` of shape
    ``(len(rules), n_repeats, n_inhibitory)`` the final inhibitory weights.
    """
    K, R = len(rules), params.n_repeats
    cell = _Cell.of(params)
    count, syn = _simulate(params, cell, _rule_columns(rules), _binned_inputs(spikes, params, cell), K)
    return count.reshape(K, R).astype(np.int64), syn[W].reshape(K, R, params.n_inhibitory).copy()


@dataclasses.dataclass(frozen=True)
class _Cell:
    """The neuron's constants exactly as Brian2 has them (a value times its unit's scale), and the
    loop-invariant factors as Brian2's generated code computes them."""

    dt: float
    n_steps: int
    E_l: float
    E_e: float
    E_i: float
    v_th: float
    v_reset: float
    refractory_steps: int
    t_measure: float
    a_e: float
    a_i: float
    a_m: float

    @classmethod
    def of(cls, params: TargetRateNetwork) -> _Cell:
        dt, c = params.dt_ms * 1e-3, params.cell
        return cls(dt=dt, n_steps=_n_steps(params.duration_s, dt), E_l=c["E_l"] * MV, E_e=c["E_e"] * MV,
                   E_i=c["E_i"] * MV, v_th=c["v_th"] * MV, v_reset=c["v_reset"] * MV,
                   refractory_steps=_timestep(c["refractory_ms"] * MS, dt), t_measure=params.learn_s * 1.0,
                   a_e=(-dt) / (c["tau_e_ms"] * MS), a_i=(-dt) / (c["tau_i_ms"] * MS), a_m=dt / (c["tau_m_ms"] * MS))


def _rule_columns(rules: Sequence[SpikeTraceRule]) -> dict[str, np.ndarray]:
    """Each rule's coefficients (by term), ``eta`` and trace time constants ``tau_x``, ``tau_y`` (s) as
    columns of shape (K, 1): they broadcast over draws (neurons) and over spiking synapses alike."""
    def column(values) -> np.ndarray:
        return np.asarray(values, dtype=float).reshape(len(rules), 1)

    columns = {t: column([rule.coefficient(t) for rule in rules]) for t in SPIKE_TERMS}
    columns.update(eta=column([rule.eta for rule in rules]), tau_x=column([rule.tau_x_ms for rule in rules]) * MS,
                   tau_y=column([rule.tau_y_ms for rule in rules]) * MS)
    return columns


@dataclasses.dataclass(frozen=True)
class _Inputs:
    """The input spikes binned per step (as Brian2's SpikeGeneratorGroup does)."""

    #: Excitatory spikes per step and draw, shape (n_steps, R): only how many matters (ge += w_e each),
    #: and the most of any draw per step.
    exc_count: np.ndarray
    exc_max: np.ndarray
    #: Inhibitory spikes in delivery order: each one's draw, its synapse's column in the (K, R * n_i)
    #: layout of the synapses' state, and where each step's spikes start.
    inh_rep: np.ndarray
    inh_col: np.ndarray
    inh_start: np.ndarray


def _binned_inputs(spikes: tuple[np.ndarray, np.ndarray], params: TargetRateNetwork, cell: _Cell) -> _Inputs:
    """Sorted by step, then by input index: the order in which Brian2 delivers the spikes, which fixes the
    order of the additions."""
    n_steps, n_in, n_e = cell.n_steps, params.n_inputs, params.n_excitatory
    indices = np.asarray(spikes[0], dtype=np.int64)
    steps = np.round(np.asarray(spikes[1], dtype=float) / cell.dt).astype(np.int64)
    keep = steps < n_steps
    indices, steps = indices[keep], steps[keep]
    order = np.lexsort((indices, steps))
    indices, steps = indices[order], steps[order]
    rep, inp = indices // n_in, indices % n_in
    exc = inp < n_e
    exc_count = np.zeros((n_steps, params.n_repeats), dtype=np.int64)
    np.add.at(exc_count, (steps[exc], rep[exc]), 1)
    exc_max = exc_count.max(axis=1) if n_steps else np.zeros(0, dtype=np.int64)
    inh_step, inh_rep, inh_syn = steps[~exc], rep[~exc], inp[~exc] - n_e
    return _Inputs(exc_count=exc_count, exc_max=exc_max, inh_rep=inh_rep,
                   inh_col=inh_rep * params.n_inhibitory + inh_syn,
                   inh_start=np.searchsorted(inh_step, np.arange(n_steps + 1)))


def _simulate(params: TargetRateNetwork, cell: _Cell, rule: dict[str, np.ndarray], inputs: _Inputs,
              K: int) -> tuple[np.ndarray, np.ndarray]:
    """Every time step in Brian2's order (see the module's docstring): the output spike counts after
    ``learn_s``, shape (K * R,), and the synapses' state, shape (4, K, R * n_i).

    Neuron (k, r) is entry k * R + r of the flat neuron arrays. Synapse (k, r, j) from inhibitory
    input j of draw r is column r * n_i + j of ``syn``; ``rows`` views the same memory as
    (4, K * R, n_i), row k * R + r, for the post pathway.
    """
    R, n_i = params.n_repeats, params.n_inhibitory
    # Locals, not attributes, in the loop: it runs once per time step.
    dt, refractory_steps, t_measure = cell.dt, cell.refractory_steps, cell.t_measure
    E_l, E_e, E_i, v_th, v_reset = cell.E_l, cell.E_e, cell.E_i, cell.v_th, cell.v_reset
    a_e, a_i, a_m, w_e, w_max = cell.a_e, cell.a_i, cell.a_m, params.w_excitatory, params.w_max
    exc_count, exc_max, inh_start = inputs.exc_count, inputs.exc_max, inputs.inh_start
    # add.at on k * R + (draw of the spike) adds each neuron's spiking synapses in Brian2's order.
    inh_neuron = (np.arange(K) * R)[:, None] + inputs.inh_rep
    tau_xy = np.stack([rule["tau_x"], rule["tau_y"]])  # (2, K, 1): decays x and y in one go
    # Per-neuron copies of the post pathway's parameters, shape (6, K * R, 1).
    post_params = np.repeat(np.stack([rule[k] for k in ("tau_x", "tau_y", "eta", "post_1", "post_x", "post_w")]),
                            R, axis=1)

    v = np.full((K, R), E_l)
    ge = np.zeros(R)  # the same for every candidate (it depends on the inputs alone): broadcast over them
    gi = np.zeros((K, R))
    count = np.zeros(K * R)
    lastspike = np.full((K, R), np.iinfo(np.int64).min // 2, dtype=np.int64)  # never spiked
    v_flat, lastspike_flat = v.reshape(-1), lastspike.reshape(-1)
    syn = np.zeros((4, K, R * n_i))
    syn[W] = float(params.w_inhibitory_init)
    rows = syn.reshape(4, K * R, n_i)

    with np.errstate(all="ignore"):
        for n in range(cell.n_steps):
            t = n * dt
            # 1. groups: Euler step from the values at the start of the step.
            not_refractory = lastspike <= n - refractory_steps  # (n - lastspike) >= refractory_steps
            v_new = a_m * ((E_l + ((ge * (E_e - v)) + (gi * (E_i - v)))) - v) + v
            ge = a_e * ge + ge
            gi = a_i * gi + gi
            np.copyto(v, v_new, where=not_refractory)
            # 2. thresholds
            spiking = np.flatnonzero((v > v_th) & not_refractory)
            # 3a. excitatory_pre: ge += w_e once per spike, one after the other (as add.at does).
            for j in range(exc_max[n]):
                ge = ge + np.where(exc_count[n] > j, w_e, 0.0)
            lo, hi = inh_start[n], inh_start[n + 1]
            if hi > lo:
                _inhibitory_pre(syn, inputs.inh_col[lo:hi], inh_neuron[:, lo:hi], gi, t, rule, tau_xy, w_max)
            if len(spiking):
                _inhibitory_post(rows, spiking, t, post_params, w_max)
                # 4. resets
                v_flat[spiking] = v_reset
                count[spiking] += int(t >= t_measure)
                lastspike_flat[spiking] = n
    return count, syn


def _inhibitory_pre(syn: np.ndarray, columns: np.ndarray, neurons: np.ndarray, gi: np.ndarray, t: float,
                    rule: dict[str, np.ndarray], tau_xy: np.ndarray, w_max: float) -> None:
    """3b. inhibitory_pre on the synapses of this step's inhibitory spikes: traces decay to ``t``,
    ``gi += w``, ``x += 1``, pre update of ``w`` (clip(a, 0, w_max) as minimum(maximum(a, 0), w_max): the
    same numbers, NaN included, with less overhead)."""
    s = syn[:, :, columns]  # (4, K, m)
    xy = s[X:Y + 1] * np.exp(-(t - s[LU]) / tau_xy)
    x_s, y_s, w_s = xy[0], xy[1], s[W]
    np.add.at(gi.reshape(-1), neurons, w_s)
    s[X] = x_s + 1
    s[Y] = y_s
    s[W] = np.minimum(np.maximum(
        w_s + (rule["eta"] * ((rule["pre_1"] + (rule["pre_y"] * y_s)) + (rule["pre_w"] * w_s))), 0.0), w_max)
    s[LU] = t
    syn[:, :, columns] = s


def _inhibitory_post(rows: np.ndarray, spiking: np.ndarray, t: float, post_params: np.ndarray, w_max: float) -> None:
    """3c. inhibitory_post on the synapses of the spiking neurons: traces decay to ``t``, ``y += 1``, post
    update of ``w``."""
    s = rows[:, spiking]  # (4, m, n_i)
    p_tau, p_eta, p_1, p_x, p_w = post_params[:2, spiking], *post_params[2:, spiking]
    xy = s[X:Y + 1] * np.exp(-(t - s[LU]) / p_tau)
    x_s, y_s, w_s = xy[0], xy[1], s[W]
    s[X] = x_s
    s[Y] = y_s + 1
    s[W] = np.minimum(np.maximum(w_s + (p_eta * ((p_1 + (p_x * x_s)) + (p_w * w_s))), 0.0), w_max)
    s[LU] = t
    rows[:, spiking] = s
