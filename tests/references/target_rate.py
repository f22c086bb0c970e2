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

from typing import Sequence

import numpy as np

import dataclasses
from typing import Any

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
    n_in, n_e, n_i = params.n_inputs, params.n_excitatory, params.n_inhibitory
    # Constants exactly as Brian2 has them (a value times its unit's scale: mV = ms = 1e-3).
    dt = params.dt_ms * 1e-3
    mv, ms = 1e-3, 1e-3
    E_l, E_e, E_i = params.cell["E_l"] * mv, params.cell["E_e"] * mv, params.cell["E_i"] * mv
    v_th, v_reset = params.cell["v_th"] * mv, params.cell["v_reset"] * mv
    tau_m, tau_e, tau_i = params.cell["tau_m_ms"] * ms, params.cell["tau_e_ms"] * ms, params.cell["tau_i_ms"] * ms
    refractory_steps = _timestep(params.cell["refractory_ms"] * ms, dt)
    t_measure = params.learn_s * 1.0
    w_e, w_max = params.w_excitatory, params.w_max
    # Loop-invariant factors as Brian2's generated code computes them.
    a_e, a_i, a_m = (-dt) / tau_e, (-dt) / tau_i, dt / tau_m
    n_steps = _n_steps(params.duration_s, dt)

    # Per-candidate parameters, shape (K, 1): they broadcast over repeats (neurons) and over spiking
    # synapses alike.
    def column(values) -> np.ndarray:
        return np.asarray(values, dtype=float).reshape(K, 1)

    coef = {t: column([rule.coefficient(t) for rule in rules]) for t in SPIKE_TERMS}
    eta = column([rule.eta for rule in rules])
    tau_x = column([rule.tau_x_ms for rule in rules]) * ms
    tau_y = column([rule.tau_y_ms for rule in rules]) * ms

    # Input spikes binned per step (as Brian2's SpikeGeneratorGroup does), sorted by step, then by
    # input index: the order in which Brian2 delivers them, which fixes the order of the additions.
    indices = np.asarray(spikes[0], dtype=np.int64)
    steps = np.round(np.asarray(spikes[1], dtype=float) / dt).astype(np.int64)
    keep = steps < n_steps
    indices, steps = indices[keep], steps[keep]
    order = np.lexsort((indices, steps))
    indices, steps = indices[order], steps[order]
    rep, inp = indices // n_in, indices % n_in
    exc = inp < n_e
    # Excitatory: only how many spikes reach each draw per step matters (ge is added w_e per spike).
    exc_count = np.zeros((n_steps, R), dtype=np.int64)
    np.add.at(exc_count, (steps[exc], rep[exc]), 1)
    exc_max = exc_count.max(axis=1) if n_steps else np.zeros(0, dtype=np.int64)
    # Inhibitory: (draw, inhibitory input) of each spike, with where each step's spikes start.
    inh_step, inh_rep, inh_syn = steps[~exc], rep[~exc], inp[~exc] - n_e
    inh_start = np.searchsorted(inh_step, np.arange(n_steps + 1))
    inh_col = inh_rep * n_i + inh_syn  # column of the synapse in the (K, R * n_i) layout below
    # Flat index of neuron (k, r) for every candidate k, per inhibitory spike: add.at on it adds
    # each neuron's spiking synapses in the order Brian2 does (ascending input index).
    k_offset = (np.arange(K) * R)[:, None]
    # Both trace time constants, shape (2, K, 1), to decay x and y in one go.
    tau_xy = np.stack([tau_x, tau_y])
    # Per-neuron copies of the post pathway's parameters, shape (6, K * R, 1).
    post_params = np.repeat(np.stack([tau_x, tau_y, eta, coef["post_1"], coef["post_x"], coef["post_w"]]), R, axis=1)

    # State. Neuron (k, r) is entry k * R + r of the flat neuron arrays. Synapse (k, r, j) from
    # inhibitory input j of draw r: its x, y, w and lastupdate are stacked in ``syn`` of shape
    # (4, K, R * n_i), column r * n_i + j; ``rows`` views the same memory as (4, K * R, n_i), row
    # k * R + r, for the post pathway.
    v = np.full((K, R), E_l)
    ge = np.zeros(R)  # the same for every candidate: broadcast over them
    gi = np.zeros((K, R))
    count = np.zeros(K * R)
    lastspike = np.full((K, R), np.iinfo(np.int64).min // 2, dtype=np.int64)  # never spiked
    v_flat, lastspike_flat = v.reshape(-1), lastspike.reshape(-1)
    X, Y, W, LU = 0, 1, 2, 3
    syn = np.zeros((4, K, R * n_i))
    syn[W] = float(params.w_inhibitory_init)
    rows = syn.reshape(4, K * R, n_i)

    with np.errstate(all="ignore"):
        for n in range(n_steps):
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
            # 3b. inhibitory_pre (clip(a, 0, w_max) as minimum(maximum(a, 0), w_max): the same
            # numbers, NaN included, with less overhead)
            lo, hi = inh_start[n], inh_start[n + 1]
            if hi > lo:
                s = syn[:, :, inh_col[lo:hi]]  # (4, K, m)
                xy = s[X:Y + 1] * np.exp(-(t - s[LU]) / tau_xy)
                x_s, y_s, w_s = xy[0], xy[1], s[W]
                np.add.at(gi.reshape(-1), k_offset + inh_rep[lo:hi], w_s)
                s[X] = x_s + 1
                s[Y] = y_s
                s[W] = np.minimum(np.maximum(
                    w_s + (eta * ((coef["pre_1"] + (coef["pre_y"] * y_s)) + (coef["pre_w"] * w_s))), 0.0), w_max)
                s[LU] = t
                syn[:, :, inh_col[lo:hi]] = s
            # 3c. inhibitory_post
            if len(spiking):
                s = rows[:, spiking]  # (4, m, n_i)
                p_tau, p_eta, p_1, p_x, p_w = post_params[:2, spiking], *post_params[2:, spiking]
                xy = s[X:Y + 1] * np.exp(-(t - s[LU]) / p_tau)
                x_s, y_s, w_s = xy[0], xy[1], s[W]
                s[X] = x_s
                s[Y] = y_s + 1
                s[W] = np.minimum(np.maximum(w_s + (p_eta * ((p_1 + (p_x * x_s)) + (p_w * w_s))), 0.0), w_max)
                s[LU] = t
                rows[:, spiking] = s
                # 4. resets
                v_flat[spiking] = v_reset
                count[spiking] += int(t >= t_measure)
                lastspike_flat[spiking] = n
    return count.reshape(K, R).astype(np.int64), syn[W].reshape(K, R, n_i).copy()
