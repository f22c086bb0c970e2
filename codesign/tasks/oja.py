"""Task ``oja``: one linear rate neuron ``y = w.x`` must learn the first principal component.

Inputs are zero-mean Gaussian with covariance C. Under Oja's rule, ``w`` converges to the unit
eigenvector of C with the largest eigenvalue (SCIENCE.md section 1). The loss is the distance of the
final ``w`` from that unit vector, sign ignored, averaged over ``n_repeats`` input draws, each with
its own covariance and initial weights.

With ``covariance: random`` every draw has its own covariance, with a random top eigenvalue: a rule
whose fixed point only happens to be unit-norm for one input scale (e.g. Hebb plus weight decay) then
fails, so the search is pushed to Oja's rule itself rather than to a look-alike.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from codesign.backends import NetworkBuild, Simulation, network_clock, simulation
from codesign.hardware import Target
from codesign.rules import TERMS, Candidate, PolynomialRule, family_equation
from codesign.schema import Where
from codesign.tasks.base import Evaluation, Task, check_size, pad, slot_terms, used_terms
from codesign.tasks.gaussian import check_covariance

__all__ = ["OjaParams", "OjaTask", "OjaInputs", "draw_inputs", "reference_weights"]


@dataclasses.dataclass(frozen=True)
class OjaParams:
    """Parameters of the ``oja`` task (``task:`` in a study file)."""

    n_inputs: int = dataclasses.field(default=5, metadata={"min": 2, "max": 1000})
    #: ``random`` (a covariance per draw) or an explicit symmetric positive-definite matrix.
    covariance: str | list[list[float]] = "random"
    #: Range of the top eigenvalue of random covariances, spread over the draws; the other
    #: eigenvalues decay geometrically from it.
    top_eigenvalue: tuple[float, float] = dataclasses.field(default=(0.5, 2.0), metadata={"min": 1e-6})
    eigenvalue_decay: float = dataclasses.field(default=0.5, metadata={"min": 1e-3, "max": 0.95})
    n_repeats: int = dataclasses.field(default=4, metadata={"min": 1, "max": 1000})
    init_weight_std: float = dataclasses.field(default=0.4, metadata={"min": 0.0})
    duration_s: float = dataclasses.field(default=3.0, metadata={"min": 1e-3})
    dt_ms: float = dataclasses.field(default=1.0, metadata={"min": 1e-3, "max": 1000.0})

    @property
    def n_steps(self) -> int:
        return int(round(self.duration_s * 1000.0 / self.dt_ms))

    def validate(self, where: Where) -> None:
        if self.top_eigenvalue[0] > self.top_eigenvalue[1]:
            raise where.child("top_eigenvalue").error(
                f"range is reversed: {list(self.top_eigenvalue)}", fix="write [low, high]")
        check_size(where, self.duration_s, self.dt_ms, self.n_repeats * self.n_steps * self.n_inputs,
                   "values (n_repeats x time steps x n_inputs)")
        check_covariance(self.covariance, self.n_inputs, 1, where)


@dataclasses.dataclass(frozen=True)
class OjaInputs:
    """One seed's inputs: per repeat r, a series ``x[r]`` (steps x n_inputs), its PC1 and ``w0``."""

    x: np.ndarray  # (n_repeats, n_steps, n_inputs)
    pc1: np.ndarray  # (n_repeats, n_inputs), unit norm
    w0: np.ndarray  # (n_repeats, n_inputs)


def draw_inputs(params: OjaParams, seed: int) -> OjaInputs:
    """Draw covariances, input series and initial weights; the same seed gives the same draw."""
    rng = np.random.default_rng(seed)
    d, steps = params.n_inputs, params.n_steps
    xs, pcs, w0s = [], [], []
    low, high = params.top_eigenvalue
    for r in range(params.n_repeats):
        if params.covariance == "random":
            rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
            # Stratified over the range (log scale), so that every draw set spans the input scales
            # and no rule can fit one scale by chance.
            top = low * (high / low) ** ((r + rng.uniform()) / params.n_repeats)
            eigenvalues = top * params.eigenvalue_decay ** np.arange(d)
            cov = (rotation * eigenvalues) @ rotation.T
        else:
            cov = np.asarray(params.covariance, dtype=float)
        values, vectors = np.linalg.eigh(cov)
        pcs.append(vectors[:, np.argmax(values)])
        chol = np.linalg.cholesky(cov)
        xs.append(rng.standard_normal((steps, d)) @ chol.T)
        w0s.append(rng.normal(0.0, params.init_weight_std, d))
    return OjaInputs(np.stack(xs), np.stack(pcs), np.stack(w0s))


def oja_loss(weights: np.ndarray, pc1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per repeat: distance to the nearest of ``+pc1`` and ``-pc1``, and ``|cos|`` to pc1."""
    with np.errstate(all="ignore"):
        distance = np.minimum(np.linalg.norm(weights - pc1, axis=-1), np.linalg.norm(weights + pc1, axis=-1))
        cosine = np.abs(np.sum(weights * pc1, axis=-1)) / np.linalg.norm(weights, axis=-1)
    return distance, cosine


def summarise(weights: np.ndarray, inputs: OjaInputs) -> Evaluation:
    """The evaluation of one candidate from its final weights, shape (n_repeats, n_inputs)."""
    distance, cosine = oja_loss(weights, inputs.pc1)
    finite = np.all(np.isfinite(weights), axis=-1)
    loss = Evaluation.capped(float(np.mean(np.where(finite, distance, np.inf))))
    metrics = {
        "abs_cos_pc1": float(np.mean(np.where(finite, cosine, 0.0))),
        "min_abs_cos_pc1": float(np.min(np.where(finite, cosine, 0.0))),
        "weight_norm": float(np.mean(np.linalg.norm(np.where(finite[:, None], weights, 0.0), axis=-1))),
        "n_diverged": int(np.sum(~finite)),
    }
    if not finite.all():
        metrics["diverged_reason"] = f"NaN or infinite weights on {int(np.sum(~finite))} of {len(finite)} draws"
    return Evaluation(loss, metrics, {"weights": weights, "pc1": inputs.pc1}, diverged=not finite.all())


def reference_weights(rules: Sequence[PolynomialRule], inputs: OjaInputs, dt_ms: float) -> np.ndarray:
    """Final weights from a hand-written, vectorised NumPy simulation: (n_rules, n_repeats, n_inputs).

    The same dynamics as the Brian2 network, step by step (the output rate from the current
    weights, then an Euler step of the rule), written independently of Brian2: it is the
    reference for how fast a CPU can do this and a check that the Brian2 result is right.
    """
    from codesign.rules import term_powers

    dt = dt_ms * 1e-3
    terms = sorted({t for rule in rules for t, v in rule.coefficients.items() if v != 0.0})
    theta = {t: np.array([rule.coefficient(t) for rule in rules])[:, None, None] for t in terms}
    rate = (np.array([rule.eta for rule in rules]) * dt)[:, None, None]
    w = np.broadcast_to(inputs.w0, (len(rules),) + inputs.w0.shape).copy()
    powers = {t: term_powers(t) for t in terms}
    with np.errstate(all="ignore"):
        for x in inputs.x.transpose(1, 0, 2):  # one step: x has shape (n_repeats, n_inputs)
            y = np.sum(w * x, axis=-1, keepdims=True)
            dw = np.zeros_like(w)
            for t in terms:
                a, b, c = powers[t]
                dw += theta[t] * x**a * y**b * w**c
            w += rate * dw
    return w


def _construct(params: OjaParams, terms: tuple[str, ...], n_candidates: int):
    """The batched network: ``n_candidates`` x ``n_repeats`` output neurons.

    Output neuron ``k * R + r`` is candidate k on input draw r; it has its own ``n_inputs`` synapses
    from the inputs of draw r. Coefficients and eta are per-neuron variables, and the input series
    and initial weights are set per run, so one build serves every batch and every seed.
    """

    def construct() -> NetworkBuild:
        import brian2 as b2

        repeats, steps, d = params.n_repeats, params.n_steps, params.n_inputs
        dt = params.dt_ms * b2.ms
        clock = network_clock(dt)
        # Column r * d + i of the stimulus is input i of draw r.
        stimulus = b2.TimedArray(np.zeros((steps, repeats * d)), dt=dt, name="stimulus")
        source = b2.NeuronGroup(repeats * d, "x = stimulus(t, i) : 1", clock=clock, name="inputs")
        coefficients = "\n".join(f"{t} : 1 (constant)" for t in terms)
        output = b2.NeuronGroup(n_candidates * repeats, f"y : 1\neta : 1/second (constant)\n{coefficients}",
                                clock=clock, name="outputs")
        model = family_equation(terms, pre="x_pre", post="y_post", coefficient_suffix="_post")
        model = model.replace("eta *", "eta_post *") + "\ny_post = w * x_pre : 1 (summed)"
        synapses = b2.Synapses(source, output, model=model, method="euler", clock=clock, name="plastic")
        k, r, i = np.meshgrid(np.arange(n_candidates), np.arange(repeats), np.arange(d), indexing="ij")
        synapses.connect(i=(r * d + i).ravel(), j=(k * repeats + r).ravel())
        settable = {t: (output, t) for t in terms}
        settable.update(eta=(output, "eta"), w0=(synapses, "w"))
        return NetworkBuild(objects=[source, output, synapses], duration=steps * dt, settable=settable,
                            readable={"w": (synapses, "w")}, timed_arrays={"stimulus": stimulus})

    return construct


def _run_batch(sim: Simulation, rules: Sequence[PolynomialRule], terms: tuple[str, ...], n_candidates: int,
               inputs: OjaInputs) -> np.ndarray:
    """Final weights of each rule, shape (len(rules), n_repeats, n_inputs); the batch is padded."""
    import brian2 as b2

    repeats, steps, d = inputs.x.shape
    padded = pad(rules, n_candidates)
    values = {t: np.repeat([rule.coefficient(t) for rule in padded], repeats) for t in terms}
    values["eta"] = np.repeat([rule.eta for rule in padded], repeats) / b2.second
    values["w0"] = np.tile(inputs.w0.ravel(), n_candidates)
    timed = {"stimulus": inputs.x.transpose(1, 0, 2).reshape(steps, repeats * d)}
    weights = sim.run(values, timed)["w"].reshape(n_candidates, repeats, d)
    return weights[: len(rules)]


class OjaTask(Task):
    """Rediscover Oja's rule: see the module docstring."""

    name = "oja"
    Params = OjaParams
    slots = {"w": "polynomial"}

    def __init__(self, params: OjaParams, target: Target) -> None:
        super().__init__(params, target)
        self._inputs: dict[int, OjaInputs] = {}

    def inputs(self, seed: int) -> OjaInputs:
        if seed not in self._inputs:
            self._inputs = {seed: draw_inputs(self.params, seed)}  # keep one: the study's, or eval's
        return self._inputs[seed]

    def simulation(self, terms: tuple[str, ...], n_candidates: int) -> Simulation:
        p = self.params
        key = f"oja|{','.join(terms)}|k={n_candidates}|r={p.n_repeats}|d={p.n_inputs}|steps={p.n_steps}|dt={p.dt_ms}"
        return simulation(self.target, key, _construct(p, terms, n_candidates))

    def evaluate(self, candidates: Sequence[PolynomialRule | Candidate], seed: int,
                 terms: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
                 capacity: int | None = None, knobs: Sequence[Mapping[str, float]] | None = None
                 ) -> list[Evaluation]:
        if not candidates:
            return []
        rules = [c["w"] for c in self.candidates(candidates)]
        held = used_terms(rules, slot_terms(terms, "w"), TERMS)
        inputs = self.inputs(seed)
        size = max(len(rules), capacity or 0)
        weights = _run_batch(self.simulation(held, size), rules, held, size, inputs)
        return [summarise(w, inputs) for w in weights]

    def plot(self, evaluation: Evaluation, path: Path, title: str = "") -> bool:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        weights, pc1 = evaluation.arrays["weights"], evaluation.arrays["pc1"]
        n = len(weights)
        cols = min(n, 4)
        rows = -(-n // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(2.8 * cols, 2.4 * rows + 0.4), squeeze=False, sharey=True)
        for ax in axes.flat[n:]:
            ax.axis("off")
        for r, ax in zip(range(n), axes.flat):
            sign = 1.0 if np.dot(weights[r], pc1[r]) >= 0 else -1.0
            index = np.arange(len(pc1[r]))
            ax.bar(index - 0.2, sign * pc1[r], width=0.4, label="PC1")
            ax.bar(index + 0.2, weights[r], width=0.4, label="learned w")
            ax.set_xlabel("input")
            ax.set_title(f"draw {r}: |cos| {abs(np.dot(weights[r], pc1[r])) / np.linalg.norm(weights[r]):.3f}",
                         fontsize=9)
        axes.flat[0].legend(fontsize=8)
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return True
