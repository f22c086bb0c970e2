"""Task ``pca_network``: k linear outputs must learn the top-k principal subspace, decorrelated.

The network version of the Oja task (Confavreux et al., NeurIPS 2020; SCIENCE.md section 1): D inputs
``x``, k linear outputs ``y``, plastic feed-forward weights ``W`` (k x D) under one rule of the
polynomial family and plastic lateral weights ``M`` (k x k, no self-connections) between the outputs
under a second rule. The known answer is Oja's rule on ``W`` (``dW_ij = eta (y_i x_j - y_i^2 W_ij)``)
and an anti-Hebbian rule on ``M`` (``dM_ij = -eta y_i y_j``, Foldiak 1989): the rows of ``W`` then span
the top-k principal subspace of the inputs and the outputs are decorrelated.

Dynamics, one Euler step per ``dt`` (the Oja task's conventions): at each step a fresh input sample
``x(t)`` (zero mean, covariance C, independent between steps) arrives and the outputs are

    y_0 = W x(t),    y_p = (1 - a) y_{p-1} + a (W x(t) + M y_{p-1})   for p = 1..L,    y(t) = y_L

``L`` (``lateral_passes``) damped Jacobi passes towards the solution ``(I - M)^-1 W x`` of
``y = W x + M y``, all within the step, with relaxation ``a`` (``relaxation``): the outputs settle
much faster than the weights change. In Brian2: one summed variable ``u = W x`` from the feed-forward
synapses and one per pass from the lateral synapses, ``a m y_{p-1, pre} + (1 - a) / (k - 1)
y_{p-1, post}`` summed over the k - 1 lateral inputs of each output, run in a fixed order in the
``groups`` slot before the weights change (``scheduling_summary`` of the network). Then both rules
make one Euler step with the same ``x(t)`` and ``y(t)``: ``W_ij += dt eta_ff f_ff(x_j, y_i, W_ij)`` and
``M_ij += dt eta_lat f_lat(y_j, y_i, M_ij)`` (pre = input j / output j, post = output i).

Why not the one-step recurrence ``y(t) = W x(t) + M y(t - dt)``: with inputs that are independent from
step to step, ``y(t - dt)`` carries nothing about ``x(t)``, so the lateral weights cannot remove the
correlation between the outputs' responses to the current input; each row of ``W`` follows Oja on
its own towards PC1 while the anti-Hebbian ``M`` grows without bound until the recurrence blows up
(it does within 20 s under the known answer). With ``L`` passes the outputs see the lateral
interaction of the current input. Why damped: under the known answer ``M``'s eigenvalues pass
through about -0.9 to +0.8 early in learning (within +-0.45 at the end); plain Jacobi passes
(``a = 1``), a truncated Neumann series, blow up when an eigenvalue nears -1 (one draw in 64 did
with 10 passes), while with ``a = 0.6`` the passes converge for every eigenvalue in (-2.3, 1), where
``I - M`` is positive definite (none of 64 draws blew up). At the end of learning the map of the 8
passes is within 0.3% of ``(I - M)^-1 W``; early on it is a coarser approximation. The L passes are the
definition, computed the same way in the Brian2 network and in :func:`reference_run`.

Loss, per input draw, averaged over the ``n_repeats`` draws (each with its own covariance and
initial weights):

- subspace: the sine of the largest of the k principal angles between the row space of the final
  ``W`` and the span of the top-k eigenvectors of C (``scipy.linalg.subspace_angles``); it is the
  distance ``||P_W - P_C||_2`` between the two orthogonal projections. A direction of the row space
  whose singular value is below ``rank_tolerance`` times the largest counts as absent (90 degrees):
  rows that all collapsed onto PC1 leave only tiny residuals in the other directions, and these
  span nothing the outputs could use. (The mean ``sin^2`` of the angles was tried first: it weighs
  a 10 degree angle at 0.01, less than the outputs' correlation noise, and the search then traded
  slow convergence for lower learning rates.)
- correlation: the largest ``|corr(y_i, y_j)|``, i != j, of the outputs under the final weights,
  computed analytically from the final weights: ``y = F x`` with ``F`` the map of the L passes
  (:func:`network_map`), output covariance ``F C F^T``.
  An output with no variance counts as correlation 1.

A draw whose final weights are not finite has diverged, and so has the candidate (``diverged``,
metric ``diverged_reason``; a study prunes it). Such a draw scores ``2 + 8 u`` instead, with ``u``
the fraction of the run left after the first output passed ``|y| = 1e6`` (the network counts, per
output, the time it stayed below): from 2, the worst finite draw, for a blow-up at the very end, to
10 (``LOSS_CAP``) for one at the start. Most random rules of two slots blow up (the lateral weights
only need to pass the point where ``I - M`` stops being positive definite); a flat 10 for all of
them leaves a sampler blind, this grade points it to rules that hold longer. The loss is the mean
over the draws, capped at ``LOSS_CAP`` (``Evaluation.capped``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from codesign.backends import NetworkBuild, Simulation, network_clock, simulation
from codesign.hardware import Target
from codesign.rules import TERMS, Candidate, PolynomialRule, family_equation, named_rule, term_powers
from codesign.schema import Where
from codesign.tasks.base import LOSS_CAP, Evaluation, Task, check_size, pad, slot_terms, used_terms
from codesign.tasks.gaussian import check_covariance

__all__ = ["PcaNetworkParams", "PcaNetworkTask", "PcaInputs", "PcaRun", "draw_inputs", "reference_run", "summarise",
           "principal_angles", "output_correlation", "network_map", "NAMED", "Y_LIMIT"]

FF, LAT = "feedforward", "lateral"

#: An output beyond this magnitude has blown up: the time before any output of a draw first does is
#: its stable time, which grades diverged draws (module docstring).
Y_LIMIT = 1e6
#: The largest loss of a draw that did not diverge (sine <= 1 plus |correlation| <= 1).
FINITE_WORST = 2.0

#: The named candidates: (feed-forward rule, lateral rule) by their names in ``NAMED_RULES``.
NAMED: dict[str, tuple[str, str]] = {
    "oja+anti_hebbian": ("oja", "anti_hebbian"),
    "oja+zero": ("oja", "zero"),
    "hebb+anti_hebbian": ("hebb", "anti_hebbian"),
    "zero+anti_hebbian": ("zero", "anti_hebbian"),
}


@dataclasses.dataclass(frozen=True)
class PcaNetworkParams:
    """Parameters of the ``pca_network`` task (``task:`` in a study file)."""

    n_inputs: int = dataclasses.field(default=8, metadata={"min": 3, "max": 1000})
    n_outputs: int = dataclasses.field(default=3, metadata={"min": 2, "max": 100})
    #: ``random`` (a covariance per draw) or an explicit symmetric positive-definite matrix.
    covariance: str | list[list[float]] = "random"
    #: Range of the top eigenvalue of random covariances, spread over the draws (log scale).
    top_eigenvalue: tuple[float, float] = dataclasses.field(default=(0.5, 2.0), metadata={"min": 1e-6})
    #: Ratio of successive eigenvalues among the top n_outputs.
    top_decay: float = dataclasses.field(default=0.75, metadata={"min": 0.05, "max": 1.0})
    #: Ratio of eigenvalue n_outputs + 1 to eigenvalue n_outputs: the gap that defines the subspace.
    spectral_gap: float = dataclasses.field(default=0.25, metadata={"min": 1e-3, "max": 0.95})
    #: Ratio of successive eigenvalues below the gap.
    rest_decay: float = dataclasses.field(default=0.7, metadata={"min": 1e-3, "max": 1.0})
    n_repeats: int = dataclasses.field(default=4, metadata={"min": 1, "max": 1000})
    init_weight_std: float = dataclasses.field(default=0.4, metadata={"min": 0.0})
    #: Initial lateral weights (off-diagonal), normal with this standard deviation.
    init_lateral_std: float = dataclasses.field(default=0.05, metadata={"min": 0.0})
    #: L: damped Jacobi passes of ``y = W x + M y`` per step, from ``y = W x`` (module docstring).
    lateral_passes: int = dataclasses.field(default=8, metadata={"min": 1, "max": 40})
    #: a: each pass moves y a fraction a of the way to ``W x + M y``.
    relaxation: float = dataclasses.field(default=0.6, metadata={"min": 0.01, "max": 1.0})
    #: Row-space directions of W with singular value below this fraction of the largest count as absent.
    rank_tolerance: float = dataclasses.field(default=0.05, metadata={"min": 0.0, "max": 1.0})
    #: With eta about 1 /s: long enough for the slowest draw to converge, eta small enough that the
    #: weights' fluctuations leave the outputs' correlation well below 0.1.
    duration_s: float = dataclasses.field(default=20.0, metadata={"min": 1e-3})
    dt_ms: float = dataclasses.field(default=1.0, metadata={"min": 1e-3, "max": 1000.0})

    @property
    def n_steps(self) -> int:
        return int(round(self.duration_s * 1000.0 / self.dt_ms))

    def validate(self, where: Where) -> None:
        if self.n_outputs >= self.n_inputs:
            raise where.child("n_outputs").error(
                f"must be below n_inputs ({self.n_inputs}), got {self.n_outputs}",
                fix="use fewer outputs than inputs: the task is to find a proper subspace")
        if self.top_eigenvalue[0] > self.top_eigenvalue[1]:
            raise where.child("top_eigenvalue").error(
                f"range is reversed: {list(self.top_eigenvalue)}", fix="write [low, high]")
        check_size(where, self.duration_s, self.dt_ms, self.n_repeats * self.n_steps * self.n_inputs,
                   "values (n_repeats x time steps x n_inputs)")
        check_covariance(self.covariance, self.n_inputs, self.n_outputs, where)


@dataclasses.dataclass(frozen=True)
class PcaInputs:
    """One seed's inputs, per repeat r: the input series, the covariance and the initial weights."""

    x: np.ndarray  # (n_repeats, n_steps, n_inputs)
    cov: np.ndarray  # (n_repeats, n_inputs, n_inputs)
    basis: np.ndarray  # (n_repeats, n_inputs, n_outputs): top eigenvectors, largest eigenvalue first
    eigenvectors: np.ndarray  # (n_repeats, n_inputs, n_inputs): all, eigenvalues descending
    eigenvalues: np.ndarray  # (n_repeats, n_inputs), descending
    w0: np.ndarray  # (n_repeats, n_outputs, n_inputs)
    m0: np.ndarray  # (n_repeats, n_outputs, n_outputs), zero diagonal


def spectrum(params: PcaNetworkParams, top: float) -> np.ndarray:
    """Eigenvalues of a random covariance with top eigenvalue ``top``, descending."""
    k, d = params.n_outputs, params.n_inputs
    upper = top * params.top_decay ** np.arange(k)
    lower = upper[-1] * params.spectral_gap * params.rest_decay ** np.arange(d - k)
    return np.concatenate([upper, lower])


def draw_inputs(params: PcaNetworkParams, seed: int) -> PcaInputs:
    """Draw covariances, input series and initial weights; the same seed gives the same draw."""
    rng = np.random.default_rng(seed)
    d, k, steps = params.n_inputs, params.n_outputs, params.n_steps
    low, high = params.top_eigenvalue
    out: dict[str, list[np.ndarray]] = {name: [] for name in ("x", "cov", "vectors", "values", "w0", "m0")}
    for r in range(params.n_repeats):
        if params.covariance == "random":
            rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
            # Stratified over the range (log scale), so that every draw set spans the input scales.
            top = low * (high / low) ** ((r + rng.uniform()) / params.n_repeats)
            cov = (rotation * spectrum(params, top)) @ rotation.T
            cov = (cov + cov.T) / 2
        else:
            cov = np.asarray(params.covariance, dtype=float)
        values, vectors = np.linalg.eigh(cov)
        order = np.argsort(values)[::-1]
        out["values"].append(values[order])
        out["vectors"].append(vectors[:, order])
        out["cov"].append(cov)
        out["x"].append(rng.standard_normal((steps, d)) @ np.linalg.cholesky(cov).T)
        out["w0"].append(rng.normal(0.0, params.init_weight_std, (k, d)))
        out["m0"].append(rng.normal(0.0, params.init_lateral_std, (k, k)) * (1.0 - np.eye(k)))
    vectors = np.stack(out["vectors"])
    return PcaInputs(x=np.stack(out["x"]), cov=np.stack(out["cov"]), basis=vectors[:, :, :k], eigenvectors=vectors,
                     eigenvalues=np.stack(out["values"]), w0=np.stack(out["w0"]), m0=np.stack(out["m0"]))


def _split(candidates: Sequence[Mapping[str, PolynomialRule]]) -> tuple[list[PolynomialRule], list[PolynomialRule]]:
    return [c[FF] for c in candidates], [c[LAT] for c in candidates]


class PcaRun(NamedTuple):
    """What one run leaves, per candidate n and draw r."""

    w: np.ndarray  # (n, R, k, D): final feed-forward weights
    m: np.ndarray  # (n, R, k, k): final lateral weights, m[i, j] from output j to output i; zero diagonal
    stable_s: np.ndarray  # (n, R, k): seconds each output spent with |y| < Y_LIMIT


def reference_run(candidates: Sequence[Mapping[str, PolynomialRule]], inputs: PcaInputs,
                  params: PcaNetworkParams) -> PcaRun:
    """Final weights and stable times of each candidate from a hand-written NumPy simulation.

    The same dynamics as the Brian2 network (module docstring), step by step, vectorised over
    candidates and draws and written independently of Brian2: the check that the network is right.
    """
    ff_rules, lat_rules = _split(candidates)
    n = len(candidates)
    dt = params.dt_ms * 1e-3
    passes, relax = params.lateral_passes, params.relaxation
    k = inputs.w0.shape[1]
    off = 1.0 - np.eye(k)

    def coefficients(rules: Sequence[PolynomialRule]):
        terms = [t for t in TERMS if any(rule.coefficient(t) != 0.0 for rule in rules)]
        return [(term_powers(t), np.array([rule.coefficient(t) for rule in rules])[:, None, None, None])
                for t in terms], (np.array([rule.eta for rule in rules]) * dt)[:, None, None, None]

    ff, ff_rate = coefficients(ff_rules)
    lat, lat_rate = coefficients(lat_rules)
    w = np.broadcast_to(inputs.w0, (n,) + inputs.w0.shape).copy()  # (n, R, k, D)
    m = np.broadcast_to(inputs.m0, (n,) + inputs.m0.shape).copy()  # (n, R, k, k): m[i, j] from j to i
    stable = np.zeros(w.shape[:3])
    with np.errstate(all="ignore"):
        for x in inputs.x.transpose(1, 0, 2):  # one step: x has shape (R, D)
            u = np.einsum("nrkd,rd->nrk", w, x)
            y = u
            for _ in range(passes):
                y = relax * (u + np.einsum("nrij,nrj->nri", m, y)) + (1.0 - relax) * y
            stable = stable + dt * (np.abs(y) < Y_LIMIT)
            post, pre = y[..., :, None], x[None, :, None, :]  # (n, R, k, 1), (1, R, 1, D)
            dw = np.zeros_like(w)
            for (a, b, c), theta in ff:
                dw += theta * pre**a * post**b * w**c
            dm = np.zeros_like(m)
            lat_pre = y[..., None, :]  # y_j
            for (a, b, c), theta in lat:
                dm += theta * lat_pre**a * post**b * m**c
            w = w + ff_rate * dw
            m = m + lat_rate * dm * off
    return PcaRun(w, m, stable)


def network_map(w: np.ndarray, m: np.ndarray, passes: int, relaxation: float) -> np.ndarray:
    """The matrix ``F`` of the L passes: the outputs are ``y = F x``. Shapes (..., k, D) and (..., k, k)."""
    f = w.copy()
    with np.errstate(all="ignore"):
        for _ in range(passes):
            f = relaxation * (w + m @ f) + (1.0 - relaxation) * f
    return f


def principal_angles(w: np.ndarray, basis: np.ndarray, tolerance: float) -> np.ndarray:
    """The k principal angles (radians, ascending) between the row space of ``w`` (k x D) and ``basis`` (D x k).

    Directions of the row space with singular value below ``tolerance`` times the largest are
    left out and count as 90 degrees.
    """
    from scipy.linalg import subspace_angles

    k = basis.shape[1]
    if not np.all(np.isfinite(w)):
        return np.full(k, np.pi / 2)
    u, s, _ = np.linalg.svd(w.T, full_matrices=False)
    if s[0] == 0.0:
        return np.full(k, np.pi / 2)
    kept = u[:, s > tolerance * s[0]]
    angles = np.sort(subspace_angles(kept, basis))[: kept.shape[1]] if kept.shape[1] else np.zeros(0)
    return np.concatenate([angles, np.full(k - len(angles), np.pi / 2)])


def output_correlation(w: np.ndarray, m: np.ndarray, cov: np.ndarray, passes: int, relaxation: float) -> np.ndarray:
    """The correlation matrix (k x k) of the outputs under weights ``w``, ``m`` and input covariance ``cov``.

    An output with no variance gets correlation 1 with every other output.
    """
    f = network_map(w, m, passes, relaxation)
    sigma = f @ cov @ f.T
    sd = np.sqrt(np.maximum(np.diag(sigma), 0.0))
    with np.errstate(all="ignore"):
        corr = sigma / np.outer(sd, sd)
    corr[~np.isfinite(corr)] = 1.0
    np.fill_diagonal(corr, 1.0)
    return np.clip(corr, -1.0, 1.0)


def summarise(w: np.ndarray, m: np.ndarray, stable_s: np.ndarray, inputs: PcaInputs,
              params: PcaNetworkParams) -> Evaluation:
    """The evaluation of one candidate: final ``w`` (R, k, D), ``m`` (R, k, k) and ``stable_s`` (R, k)."""
    repeats, k, _ = w.shape
    finite = np.array([np.all(np.isfinite(w[r])) and np.all(np.isfinite(m[r])) for r in range(repeats)])
    angles = np.full((repeats, k), np.pi / 2)
    max_corr = np.ones(repeats)
    corrs = np.ones((repeats, k, k))
    for r in np.flatnonzero(finite):
        angles[r] = principal_angles(w[r], inputs.basis[r], params.rank_tolerance)
        corrs[r] = output_correlation(w[r], m[r], inputs.cov[r], params.lateral_passes, params.relaxation)
        max_corr[r] = np.max(np.abs(corrs[r] - np.eye(k)))
    subspace = np.sin(angles.max(axis=1))
    # A diverged draw scores between the worst finite draw (blew up at the very end) and the cap
    # (blew up at once): the search can tell a rule that nearly holds from one that explodes.
    unstable = 1.0 - np.clip(stable_s.min(axis=1) / params.duration_s, 0.0, 1.0)
    per_draw = np.where(finite, subspace + max_corr, FINITE_WORST + (LOSS_CAP - FINITE_WORST) * unstable)
    loss = Evaluation.capped(float(np.mean(per_draw)))
    worst = int(np.argmax(angles.max(axis=1) + 1e-3 * angles.mean(axis=1)))  # ties at 90: most angles at 90
    with np.errstate(all="ignore"):
        radius = [float(np.max(np.abs(np.linalg.eigvals(m[r])))) if finite[r] else float("nan")
                  for r in range(repeats)]
    metrics = {
        # The k angles of the draw with the largest angle, ascending, in degrees.
        "principal_angles_deg": [float(a) for a in np.degrees(angles[worst])],
        "mean_principal_angles_deg": [float(a) for a in np.degrees(angles.mean(axis=0))],
        # The largest |corr(y_i, y_j)|, i != j, over all draws; and its mean over the draws.
        "max_output_correlation": float(np.max(max_corr)),
        "mean_max_output_correlation": float(np.mean(max_corr)),
        "subspace_error": float(np.mean(subspace)),  # mean over the draws of sin(largest angle)
        "ff_weight_norm": float(np.mean(np.linalg.norm(np.where(finite[:, None, None], w, 0.0), axis=-1))),
        # Largest |eigenvalue| of M over the draws (the passes converge for eigenvalues in (1 - 2/a, 1)).
        "lateral_spectral_radius": float(np.nanmax(radius)) if finite.any() else None,
        "n_diverged": int(np.sum(~finite)),
        # Fraction of the run before the first output blew up (|y| >= Y_LIMIT), worst draw.
        "stable_fraction": float(np.clip(stable_s.min() / params.duration_s, 0.0, 1.0)),
    }
    diverged = not finite.all()
    if diverged:
        metrics["diverged_reason"] = "NaN or infinite weights"
    arrays = {"w": w, "m": m, "stable_s": stable_s, "angles_deg": np.degrees(angles), "correlations": corrs,
              "eigenvectors": inputs.eigenvectors, "eigenvalues": inputs.eigenvalues}
    return Evaluation(loss, metrics, arrays, diverged=diverged)


def _slot_equation(terms: tuple[str, ...], prefix: str, pre: str, weight: str) -> str:
    """The family equation of one slot with coefficients ``{prefix}_theta_abc_post`` and ``eta_{prefix}_post``."""
    from brian2.utils.stringtools import word_substitute

    model = family_equation(terms, pre=pre, post="y_post", weight=weight, coefficient_suffix="_post")
    model = word_substitute(model, {f"{t}_post": f"{prefix}_{t}_post" for t in terms})
    model = model.replace("eta *", f"eta_{prefix}_post *")
    return model.replace("dw/dt", f"d{weight}/dt", 1) if not model.startswith(f"d{weight}/dt") else model


def _construct(params: PcaNetworkParams, ff_terms: tuple[str, ...], lat_terms: tuple[str, ...], n_candidates: int):
    """The batched network: ``n_candidates`` x ``n_repeats`` groups of ``n_outputs`` output neurons.

    Output neuron ``(c * R + r) * k + i`` is output i of candidate c on draw r; it receives the D
    inputs of draw r and the other k - 1 outputs of its group. Coefficients and etas are per-neuron
    variables; input series and initial weights are set per run: one build serves every batch.
    """

    def construct() -> NetworkBuild:
        import brian2 as b2

        repeats, steps, d, k = params.n_repeats, params.n_steps, params.n_inputs, params.n_outputs
        passes = params.lateral_passes
        dt = params.dt_ms * b2.ms
        clock = network_clock(dt)
        stimulus = b2.TimedArray(np.zeros((steps, repeats * d)), dt=dt, name="stimulus")
        source = b2.NeuronGroup(repeats * d, "x = stimulus(t, i) : 1", clock=clock, name="inputs")
        # u = W x; y_0 = u; lat_p = a M y_{p-1} + (1 - a) y_{p-1} (summed over the lateral inputs),
        # y_p = a u + lat_p; the output is y = y_L. Each y_p names stored variables only, so the
        # subexpressions do not nest.
        a = params.relaxation
        lines = ["u : 1"] + [f"lat_{p} : 1" for p in range(1, passes + 1)]
        lines += ["y_0 = u : 1"] + [f"y_{p} = {a!r} * u + lat_{p} : 1" for p in range(1, passes)]
        lines += [f"y = {a!r} * u + lat_{passes} : 1", "eta_ff : 1/second (constant)",
                  "eta_lat : 1/second (constant)", f"dstable/dt = int(abs(y) < {Y_LIMIT!r}) : second"]
        lines += [f"ff_{t} : 1 (constant)" for t in ff_terms] + [f"lat_{t} : 1 (constant)" for t in lat_terms]
        output = b2.NeuronGroup(n_candidates * repeats * k, "\n".join(lines), method="euler", clock=clock,
                                name="outputs")

        ff_model = _slot_equation(ff_terms, "ff", "x_pre", "w") + "\nu_post = w * x_pre : 1 (summed)"
        feedforward = b2.Synapses(source, output, model=ff_model, method="euler", clock=clock, name="feedforward")
        c, r, i, j = np.meshgrid(np.arange(n_candidates), np.arange(repeats), np.arange(k), np.arange(d),
                                 indexing="ij")
        feedforward.connect(i=(r * d + j).ravel(), j=((c * repeats + r) * k + i).ravel())

        lat_model = _slot_equation(lat_terms, "lat", "y_pre", "m")
        keep_share = (1.0 - a) / (k - 1)  # each output has k - 1 lateral inputs
        lat_model += "".join(f"\nlat_{p}_post = {a!r} * m * y_{p - 1}_pre + {keep_share!r} * y_{p - 1}_post : 1 (summed)"
                             for p in range(1, passes + 1))
        lateral = b2.Synapses(output, output, model=lat_model, method="euler", clock=clock, name="lateral")
        c, r, i, j = np.meshgrid(np.arange(n_candidates), np.arange(repeats), np.arange(k), np.arange(k),
                                 indexing="ij")
        keep = (i != j).ravel()
        group = (c * repeats + r) * k
        lateral.connect(i=(group + j).ravel()[keep], j=(group + i).ravel()[keep])

        # Every summed variable runs in the 'groups' slot before the plasticity (order 0); fix their
        # order among themselves: u first, then the lateral passes one after the other.
        feedforward.summed_updaters["u_post"].order = -passes - 2
        for p in range(1, passes + 1):
            lateral.summed_updaters[f"lat_{p}_post"].order = -passes - 2 + p

        settable = {f"ff_{t}": (output, f"ff_{t}") for t in ff_terms}
        settable.update({f"lat_{t}": (output, f"lat_{t}") for t in lat_terms})
        settable.update(eta_ff=(output, "eta_ff"), eta_lat=(output, "eta_lat"), w0=(feedforward, "w"),
                        m0=(lateral, "m"))
        return NetworkBuild(objects=[source, output, feedforward, lateral], duration=steps * dt, settable=settable,
                            readable={"w": (feedforward, "w"), "m": (lateral, "m"), "stable": (output, "stable")},
                            timed_arrays={"stimulus": stimulus})

    return construct


def _run_batch(sim: Simulation, candidates: Sequence[Mapping[str, PolynomialRule]], ff_terms: tuple[str, ...],
               lat_terms: tuple[str, ...], n_candidates: int, inputs: PcaInputs) -> PcaRun:
    """Final weights and stable times of each candidate (as :func:`reference_run`); the batch is padded."""
    import brian2 as b2

    repeats, steps, d = inputs.x.shape
    k = inputs.w0.shape[1]
    padded = pad(candidates, n_candidates)
    per_neuron = repeats * k
    values = {f"ff_{t}": np.repeat([c[FF].coefficient(t) for c in padded], per_neuron) for t in ff_terms}
    values.update({f"lat_{t}": np.repeat([c[LAT].coefficient(t) for c in padded], per_neuron) for t in lat_terms})
    values["eta_ff"] = np.repeat([c[FF].eta for c in padded], per_neuron) / b2.second
    values["eta_lat"] = np.repeat([c[LAT].eta for c in padded], per_neuron) / b2.second
    values["w0"] = np.tile(inputs.w0.ravel(), n_candidates)
    off = ~np.eye(k, dtype=bool)
    values["m0"] = np.tile(inputs.m0[:, off].ravel(), n_candidates)
    timed = {"stimulus": inputs.x.transpose(1, 0, 2).reshape(steps, repeats * d)}
    out = sim.run(values, timed)
    w = out["w"].reshape(n_candidates, repeats, k, d)[: len(candidates)]
    m = np.zeros((len(candidates), repeats, k, k))
    m[:, :, off] = out["m"].reshape(n_candidates, repeats, k * (k - 1))[: len(candidates)]
    stable = out["stable"].reshape(n_candidates, repeats, k)[: len(candidates)]
    return PcaRun(w, m, stable)


class PcaNetworkTask(Task):
    """Find Oja's rule and an anti-Hebbian rule at once: see the module docstring."""

    name = "pca_network"
    Params = PcaNetworkParams
    slots = {FF: "polynomial", LAT: "polynomial"}

    def __init__(self, params: PcaNetworkParams, target: Target) -> None:
        super().__init__(params, target)
        self._inputs: dict[int, PcaInputs] = {}

    def inputs(self, seed: int) -> PcaInputs:
        if seed not in self._inputs:
            self._inputs = {seed: draw_inputs(self.params, seed)}  # keep one: the study's, or eval's
        return self._inputs[seed]

    def named_candidates(self, etas: Mapping[str, float]) -> dict[str, dict[str, PolynomialRule]]:
        return {name: {FF: named_rule(ff, eta=etas[FF]), LAT: named_rule(lat, eta=etas[LAT])}
                for name, (ff, lat) in NAMED.items()}

    def simulation(self, ff_terms: tuple[str, ...], lat_terms: tuple[str, ...], n_candidates: int) -> Simulation:
        p = self.params
        key = (f"pca_network|ff={','.join(ff_terms)}|lat={','.join(lat_terms)}|n={n_candidates}|r={p.n_repeats}"
               f"|d={p.n_inputs}|k={p.n_outputs}|passes={p.lateral_passes}|a={p.relaxation!r}|steps={p.n_steps}"
               f"|dt={p.dt_ms}")
        return simulation(self.target, key, _construct(p, ff_terms, lat_terms, n_candidates))

    def evaluate(self, candidates: Sequence[PolynomialRule | Candidate], seed: int,
                 terms: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
                 capacity: int | None = None, knobs: Sequence[Mapping[str, float]] | None = None
                 ) -> list[Evaluation]:
        # ``knobs``: this task emulates no hardware knobs (``knobs`` is empty), so there is nothing to apply.
        if not candidates:
            return []
        cands = self.candidates(candidates)
        for cand in cands:
            if set(cand) != set(self.slots):
                raise ValueError(f"a pca_network candidate needs rules for {sorted(self.slots)}, got {sorted(cand)}")
        ff_rules, lat_rules = _split(cands)
        ff_terms = used_terms(ff_rules, slot_terms(terms, FF), TERMS)
        lat_terms = used_terms(lat_rules, slot_terms(terms, LAT), TERMS)
        inputs = self.inputs(seed)
        size = max(len(cands), capacity or 0)
        run = _run_batch(self.simulation(ff_terms, lat_terms, size), cands, ff_terms, lat_terms, size, inputs)
        return [summarise(run.w[n], run.m[n], run.stable_s[n], inputs, self.params) for n in range(len(cands))]

    def plot(self, evaluation: Evaluation, path: Path, title: str = "") -> bool:
        """Per draw: |cos| between each learned feed-forward row and each eigenvector of C (largest first)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        w, vectors = evaluation.arrays["w"], evaluation.arrays["eigenvectors"]
        angles, corrs = evaluation.arrays["angles_deg"], evaluation.arrays["correlations"]
        repeats, k, d = w.shape
        cols = min(repeats, 4)
        rows = -(-repeats // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols + 1.0, 1.0 + (0.4 * k + 1.5) * rows),
                                 squeeze=False, layout="constrained")
        for ax in axes.flat[repeats:]:
            ax.axis("off")
        image = None
        for r, ax in zip(range(repeats), axes.flat):
            with np.errstate(all="ignore"):
                rows_unit = w[r] / np.linalg.norm(w[r], axis=1, keepdims=True)
                overlap = np.abs(rows_unit @ vectors[r])
            image = ax.imshow(np.nan_to_num(overlap), vmin=0, vmax=1, cmap="viridis", aspect="auto")
            ax.axvline(k - 0.5, color="w", lw=1.5)
            ax.set_xticks(range(d))
            ax.set_xticklabels([f"PC{i + 1}" for i in range(d)], fontsize=6, rotation=90)
            ax.set_yticks(range(k))
            ax.set_yticklabels([f"y{i + 1}" for i in range(k)], fontsize=7)
            off = np.abs(corrs[r] - np.eye(k)).max()
            ax.set_title(f"draw {r}: max angle {angles[r].max():.1f} deg\nmax |corr| {off:.3f}", fontsize=8)
        if image is not None:
            fig.colorbar(image, ax=axes, shrink=0.8, label="|cos(W row, PC)|")
        fig.suptitle(title, fontsize=8)
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        return True
