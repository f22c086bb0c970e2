"""A hand-written NumPy simulation of the PCA network (``models/pca-network.yaml``): an independent check
of the Brian2 network codesign builds from the model file (the same L damped passes per step)."""

from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import numpy as np

from codesign.models.pca import Y_LIMIT
from codesign.rules import TERMS, PolynomialRule, term_powers

__all__ = ["reference_run", "PcaRun", "FF", "LAT"]

FF, LAT = "feedforward", "lateral"


class PcaRun(NamedTuple):
    """What one run leaves, per candidate n and draw r."""

    w: np.ndarray  # (n, R, k, D): final feed-forward weights
    m: np.ndarray  # (n, R, k, k): final lateral weights, m[i, j] from output j to output i; zero diagonal
    stable_s: np.ndarray  # (n, R, k): seconds each output spent with |y| < Y_LIMIT


def reference_run(candidates: Sequence[Mapping[str, PolynomialRule]], x: np.ndarray, w0: np.ndarray, m0: np.ndarray,
                  dt_ms: float, passes: int, relaxation: float) -> PcaRun:
    """Final weights and stable times of each candidate from a hand-written NumPy simulation.

    The same dynamics as the Brian2 network (module docstring), step by step, vectorised over
    candidates and draws and written independently of Brian2: the check that the network is right.
    """
    ff_rules, lat_rules = [c[FF] for c in candidates], [c[LAT] for c in candidates]
    n = len(candidates)
    x_all = x
    dt = dt_ms * 1e-3
    relax = relaxation
    k = w0.shape[1]
    off = 1.0 - np.eye(k)

    def coefficients(rules: Sequence[PolynomialRule]):
        terms = [t for t in TERMS if any(rule.coefficient(t) != 0.0 for rule in rules)]
        return [(term_powers(t), np.array([rule.coefficient(t) for rule in rules])[:, None, None, None])
                for t in terms], (np.array([rule.eta for rule in rules]) * dt)[:, None, None, None]

    ff, ff_rate = coefficients(ff_rules)
    lat, lat_rate = coefficients(lat_rules)
    w = np.broadcast_to(w0, (n,) + w0.shape).copy()  # (n, R, k, D)
    # (n, R, k, k): m[i, j] from j to i; the network has no self-connections, whatever m0's diagonal
    m = np.broadcast_to(m0 * off, (n,) + m0.shape).copy()
    stable = np.zeros(w.shape[:3])
    with np.errstate(all="ignore"):
        for x in x_all.transpose(1, 0, 2):  # one step: x has shape (R, D)
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
