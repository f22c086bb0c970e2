"""The ensemble (rate) limit of burst-dependent plasticity on XOR, and the angle of its updates to the gradient.

Payeur, Guerguiev, Zenke, Richards & Naud (Nat. Neurosci. 2021; SCIENCE.md section 3): in the limit of
infinite ensembles, with burst probabilities linear in the apical input and feedback weights symmetric
to the feed-forward ones, burst-dependent plasticity (BDSP) is gradient descent. This module is a small
NumPy network of such ensembles trained on XOR by the BDSP update; at every update it also computes the
true gradient of the same network's loss (backprop, by hand) and the angle between the two, per layer.

Each unit is an ensemble with an event rate ``e``, a burst probability ``p`` and a burst rate ``b = p e``.
Per input pattern (column vectors; layers ``l = 1..L``, ``e_0`` the input, ``sigma`` the logistic)::

    events, bottom-up:   a_l = W_l e_{l-1} + c_l,   e_l = sigma(a_l)
    loss:                L = 1/2 sum over the four patterns of |e_L - y|^2
    teacher, at the top: u_L = h(e_L) * t,          t = y - e_L = -dL/de_L
    bursts, top-down:    u_l = h(e_l) * (Y_l b_{l+1} - Z_l e_{l+1}),   Z_l = p0 Y_l
    burst probability:   p_l = F(u_l)               linear:  F(u) = p0 + beta u
                                                    sigmoid: F(u) = sigma(logit(p0) + beta u / (p0 (1 - p0)))
    BDSP:                dW_l = eta sum over patterns of ((p_l - pbar_l) * e_l) [e_{l-1}; 1]^T

Sign conventions: ``t > 0`` where the output should rise; more bursts than baseline (``p > pbar``)
potentiate, fewer depress. ``c_l`` is learnt as the weight from an always-active input (the ``1``).
``pbar_l`` is the burst probability without teaching (``t = 0``), the ensemble limit of the spiking
rule's running average; it is computed, and comes out as ``p0`` in every layer (below). Both ``F``
have slope ``beta`` at ``u = 0``, so the two variants differ only by the sigmoid's curvature.

Two modelling choices make the derivation close; both are stand-ins for mechanisms of the paper:

- ``Z_l = p0 Y_l``: apical inhibition that cancels the baseline burst rate (the paper's recurrent
  inhibition, at the fixed point of its homeostatic plasticity). Without teaching every ``u`` is
  then 0 and ``p = pbar = p0`` everywhere, so burst probabilities stay near ``p0``.
- ``h(e) = 1 - e``, a gain on the apical input (``sigma'(a) / sigma(a)``): with the ``e_l`` factor
  of the BDSP update it makes the sigmoid's derivative ``e (1 - e)``. Without it, the hidden update
  is ``e * Y delta`` instead of ``e (1 - e) * W^T delta``: off the gradient by the factor ``1 - e``
  per unit, so not parallel to it even with symmetric feedback.

Derivation. Let ``delta_l = (p_l - pbar_l) * e_l = b_l - pbar_l e_l`` (the burst rate above
baseline). With the linear ``F``, ``p_l - p0 = beta u_l``; at the top
``delta_L = beta e_L (1 - e_L) (y - e_L) = -beta dL/da_L``; below,
``Y_l b_{l+1} - Z_l e_{l+1} = Y_l delta_{l+1}``, so ``delta_l = beta sigma'(a_l) * Y_l delta_{l+1}``. With
``Y_l = W_{l+1}^T`` (``symmetric``) this is backprop's recursion, and by induction
``delta_l = -beta^(L-l+1) dL/da_l``: ``dW_l = -eta beta^(L-l+1) dL/dW_l``. Each layer's update is
parallel to its gradient (the angle is 0 up to rounding: 1e-9 degrees or less measured); the layers are scaled by
different powers of ``beta``, so the whole update is parallel to the whole gradient only at
``beta = 1``: angles are reported per layer, as the paper does. With ``t = 0`` every ``delta`` is 0,
hence ``pbar = p0``. The ``sigmoid`` ``F`` keeps the sign of ``u`` but not its proportions (units
and patterns with larger apical input are compressed more), so its angle is above 0 and grows
with ``beta |u|``. ``random`` feedback (fixed random ``Y_l``, feedback alignment) leaves the output
layer's update exact and sends the hidden layers a signal that is not the gradient.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from codesign.errors import CodesignError, UnknownNameError

__all__ = ["train_xor", "EnsembleResult", "FEEDBACK", "BURST_PROBABILITY", "forward", "loss", "gradient",
           "bdsp_update", "angle_deg", "PATTERNS", "TARGETS"]

#: XOR's four input patterns, in this order everywhere (outputs too), and their targets.
PATTERNS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
TARGETS = np.array([[0.0], [1.0], [1.0], [0.0]])

Weights = list  # of arrays, W_l with its bias column last: shape (n_l, n_{l-1} + 1)
Feedback = Callable[[Weights], Weights]  # current weights -> Y_l for l = 1..L-1, each (n_l, n_{l+1})


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * a))  # no overflow warning for large |a|, unlike 1 / (1 + exp(-a))


def _with_bias(events: np.ndarray) -> np.ndarray:
    return np.hstack([events, np.ones((len(events), 1))])


def forward(weights: Weights, inputs: np.ndarray) -> list[np.ndarray]:
    """Event rates of every layer, the inputs first; one row per pattern."""
    events = [inputs]
    for w in weights:
        events.append(sigmoid(_with_bias(events[-1]) @ w.T))
    return events


def loss(weights: Weights, inputs: np.ndarray = PATTERNS, targets: np.ndarray = TARGETS) -> float:
    return float(0.5 * np.sum((forward(weights, inputs)[-1] - targets) ** 2))


def gradient(weights: Weights, inputs: np.ndarray = PATTERNS, targets: np.ndarray = TARGETS) -> Weights:
    """dL/dW_l for every layer (backprop), summed over the patterns."""
    events = forward(weights, inputs)
    error = (events[-1] - targets) * events[-1] * (1 - events[-1])  # dL/da_L
    grads: Weights = [None] * len(weights)
    for layer in reversed(range(len(weights))):
        grads[layer] = error.T @ _with_bias(events[layer])
        if layer:
            error = (error @ weights[layer][:, :-1]) * events[layer] * (1 - events[layer])
    return grads


def _symmetric_feedback(initial: Weights, rng: np.random.Generator) -> Feedback:
    # Exactly W^T at every update: the paper learns it (Kolen-Pollack on the feedback synapses).
    return lambda weights: [w[:, :-1].T for w in weights[1:]]


def _random_feedback(initial: Weights, rng: np.random.Generator) -> Feedback:
    # Drawn once over the range of the initial weights and never learnt: feedback alignment, the foil.
    fixed = [rng.uniform(-1.0, 1.0, w[:, :-1].T.shape) * np.abs(w).max() for w in initial[1:]]
    return lambda weights: fixed


#: Feedback kinds: (initial weights, random generator) -> what gives the feedback weights at each update.
FEEDBACK: dict[str, Callable[[Weights, np.random.Generator], Feedback]] = {
    "symmetric": _symmetric_feedback,
    "random": _random_feedback,
}

#: Burst probability as a function of apical input u, slope beta and baseline p0 (same slope at u = 0).
BURST_PROBABILITY: dict[str, Callable[[np.ndarray, float, float], np.ndarray]] = {
    "linear": lambda u, beta, p0: p0 + beta * u,
    "sigmoid": lambda u, beta, p0: sigmoid(np.log(p0 / (1 - p0)) + beta * u / (p0 * (1 - p0))),
}


def burst_probabilities(events: list[np.ndarray], feedback_weights: Weights, teacher: np.ndarray,
                        burst_probability: str, beta: float, p0: float) -> list[np.ndarray]:
    """p_l of every layer above the inputs, from the top down: the teacher drives the output's apical
    input, each layer's burst rate (less the baseline the apical inhibition cancels) the one below."""
    probability = BURST_PROBABILITY[burst_probability]
    top = len(events) - 1
    apical = (1 - events[top]) * teacher
    probabilities: list[np.ndarray] = [None] * top
    for layer in reversed(range(1, top + 1)):
        probabilities[layer - 1] = probability(apical, beta, p0)
        if layer > 1:
            bursts_above_inhibition = probabilities[layer - 1] * events[layer] - p0 * events[layer]
            apical = (1 - events[layer - 1]) * (bursts_above_inhibition @ feedback_weights[layer - 2].T)
    return probabilities


def bdsp_update(weights: Weights, feedback_weights: Weights, burst_probability: str = "linear",
                beta: float = 0.5, p0: float = 0.5, inputs: np.ndarray = PATTERNS,
                targets: np.ndarray = TARGETS) -> tuple[Weights, list[np.ndarray]]:
    """The BDSP update of every layer (before eta), summed over the patterns, and the burst probabilities."""
    events = forward(weights, inputs)
    taught = burst_probabilities(events, feedback_weights, targets - events[-1], burst_probability, beta, p0)
    baseline = burst_probabilities(events, feedback_weights, np.zeros_like(targets), burst_probability, beta, p0)
    updates = [((p - pbar) * post).T @ _with_bias(pre)
               for p, pbar, post, pre in zip(taught, baseline, events[1:], events[:-1])]
    return updates, taught


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """The angle between two arrays taken as vectors; accurate near 0 and 180 degrees, unlike arccos."""
    a, b = a.ravel() / np.linalg.norm(a), b.ravel() / np.linalg.norm(b)
    return float(np.degrees(2 * np.arctan2(np.linalg.norm(a - b), np.linalg.norm(a + b))))


@dataclasses.dataclass(frozen=True)
class EnsembleResult:
    """One training run: per-layer angles (degrees) between the BDSP update and -gradient at every update
    (rows: updates, columns: ``layers``), the loss before every update and after the last, and the outputs
    on :data:`PATTERNS` after training."""

    layers: tuple[str, ...]
    angles_deg: np.ndarray
    loss: np.ndarray
    outputs: tuple[float, ...]
    burst_probability_range: tuple[float, float]
    settings: dict

    @property
    def angle_mean_deg(self) -> dict[str, float]:
        return {name: float(np.mean(self.angles_deg[:, i])) for i, name in enumerate(self.layers)}

    @property
    def angle_final_deg(self) -> dict[str, float]:
        return {name: float(self.angles_deg[-1, i]) for i, name in enumerate(self.layers)}

    @property
    def xor_correct(self) -> int:
        """How many of the four patterns the output puts on the right side of 0.5."""
        return int(np.sum((np.array(self.outputs) > 0.5) == (TARGETS.ravel() > 0.5)))

    @property
    def solved(self) -> bool:
        return self.xor_correct == len(TARGETS)

    def summary(self) -> dict:
        """What ``codesign ensemble --json`` prints."""
        return {**self.settings,
                "angle_deg": {name: {"mean": self.angle_mean_deg[name], "final": self.angle_final_deg[name]}
                              for name in self.layers},
                "outputs": list(self.outputs), "xor_correct": self.xor_correct, "loss": float(self.loss[-1]),
                "loss_initial": float(self.loss[0]), "burst_probability_range": list(self.burst_probability_range)}


def _layer_names(n_hidden: int) -> tuple[str, ...]:
    hidden = ("hidden",) if n_hidden == 1 else tuple(f"hidden{i}" for i in range(1, n_hidden + 1))
    return (*hidden, "output")


def _checked_settings(hidden: int | Sequence[int], feedback: str, burst_probability: str,
                      epochs: int) -> tuple[int, ...]:
    if feedback not in FEEDBACK:
        raise UnknownNameError("feedback", feedback, list(FEEDBACK), key="feedback")
    if burst_probability not in BURST_PROBABILITY:
        raise UnknownNameError("burst probability", burst_probability, list(BURST_PROBABILITY),
                               key="burst_probability")
    sizes = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    if not sizes or any(not isinstance(n, int) or n < 1 for n in sizes):
        raise CodesignError(f"expected positive hidden layer sizes, got {hidden!r}", key="hidden",
                            fix="give one size per hidden layer, e.g. 2 or [8, 4]")
    if not isinstance(epochs, int) or epochs < 1:
        raise CodesignError(f"expected a positive number of updates, got {epochs!r}", key="epochs",
                            fix="give a positive integer")
    return sizes


def train_xor(hidden: int | Sequence[int] = 2, feedback: str = "symmetric", burst_probability: str = "linear",
              epochs: int = 3000, seed: int = 1, eta: float = 8.0, beta: float = 0.5, p0: float = 0.5,
              init_scale: float = 1.0) -> EnsembleResult:
    """Train a 2-``hidden``-1 network of ensembles on XOR by BDSP, one update per epoch (all four patterns).

    The defaults learn XOR (4 of 4) on seeds 1-5 with either feedback and either burst probability, with 2
    or 8 hidden ensembles; burst probabilities stayed within [0.34, 0.96] there. Their range is in the
    result: a larger ``beta`` takes the linear one outside [0, 1], where it is no probability.
    """
    sizes = _checked_settings(hidden, feedback, burst_probability, epochs)
    rng = np.random.default_rng(seed)
    shape = (PATTERNS.shape[1], *sizes, TARGETS.shape[1])
    weights = [rng.uniform(-init_scale, init_scale, (n_out, n_in + 1)) for n_in, n_out in zip(shape, shape[1:])]
    feedback_weights = FEEDBACK[feedback](weights, rng)
    angles, losses, low, high = np.empty((epochs, len(weights))), np.empty(epochs + 1), 1.0, 0.0
    for epoch in range(epochs):
        updates, probabilities = bdsp_update(weights, feedback_weights(weights), burst_probability, beta, p0)
        angles[epoch] = [angle_deg(u, -g) for u, g in zip(updates, gradient(weights))]
        losses[epoch] = loss(weights)
        low, high = min(low, *(p.min() for p in probabilities)), max(high, *(p.max() for p in probabilities))
        weights = [w + eta * u for w, u in zip(weights, updates)]
    losses[epochs] = loss(weights)
    settings = {"feedback": feedback, "burst_probability": burst_probability, "hidden": list(sizes),
                "epochs": epochs, "seed": seed, "eta": eta, "beta": beta, "p0": p0}
    return EnsembleResult(_layer_names(len(sizes)), angles, losses,
                          tuple(float(o) for o in forward(weights, PATTERNS)[-1].ravel()),
                          (float(low), float(high)), settings)
