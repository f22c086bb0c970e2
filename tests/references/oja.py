"""A hand-written NumPy simulation of the Oja model (``models/oja.yaml``): an independent check of the
Brian2 network codesign builds from the model file, and the CPU baseline of the benchmarks."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from codesign.rules import PolynomialRule, term_powers

__all__ = ["reference_weights"]


def reference_weights(rules: Sequence[PolynomialRule], x: np.ndarray, w0: np.ndarray, dt_ms: float) -> np.ndarray:
    """Final weights from a hand-written, vectorised NumPy simulation: (n_rules, n_repeats, n_inputs).

    ``x``: the input series per draw (n_repeats, steps, n_inputs); ``w0``: initial weights (n_repeats, n_inputs).

    The same dynamics as the Brian2 network, step by step (the output rate from the current
    weights, then an Euler step of the rule), written independently of Brian2: it is the
    reference for how fast a CPU can do this and a check that the Brian2 result is right.
    """
    x_all = x
    dt = dt_ms * 1e-3
    terms = sorted({t for rule in rules for t, v in rule.coefficients.items() if v != 0.0})
    theta = {t: np.array([rule.coefficient(t) for rule in rules])[:, None, None] for t in terms}
    rate = (np.array([rule.eta for rule in rules]) * dt)[:, None, None]
    w = np.broadcast_to(w0, (len(rules),) + w0.shape).copy()
    powers = {t: term_powers(t) for t in terms}
    with np.errstate(all="ignore"):
        for x in x_all.transpose(1, 0, 2):  # one step: x has shape (n_repeats, n_inputs)
            y = np.sum(w * x, axis=-1, keepdims=True)
            dw = np.zeros_like(w)
            for t in terms:
                a, b, c = powers[t]
                dw += theta[t] * x**a * y**b * w**c
            w += rate * dw
    return w
