"""The PCA network's loss (Confavreux et al., NeurIPS 2020, network version; ``models/pca-network.yaml``).

The outputs ``y = F x`` with ``F`` the map of the model's L damped lateral passes,
``y_p = (1 - a) y_(p-1) + a (W x + M y_(p-1))``.

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

from typing import Any

import numpy as np

from codesign.models.evaluation import LOSS_CAP, Evaluation

__all__ = ["summarise", "principal_angles", "output_correlation", "network_map", "Y_LIMIT"]

#: An output beyond this magnitude has blown up: the model integrates, per output, the time it stayed
#: below; the time before any output of a draw first did is its stable time.
Y_LIMIT = 1e6
#: The largest loss of a draw that did not diverge (sine <= 1 plus |correlation| <= 1).
FINITE_WORST = 2.0


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


def summarise(w: np.ndarray, m: np.ndarray, stable_s: np.ndarray, facts: dict[str, np.ndarray], params: Any,
              duration_s: float) -> Evaluation:
    """The evaluation of one candidate: final ``w`` (R, k, D), ``m`` (R, k, k) and ``stable_s`` (R, k);
    ``facts`` of the Gaussian stimulus (``cov``, ``eigenvectors``, ``eigenvalues``), ``params`` the
    loss's (passes, relaxation, rank_tolerance)."""
    basis = facts["eigenvectors"][:, :, : w.shape[1]]
    repeats, k, _ = w.shape
    finite = np.array([np.all(np.isfinite(w[r])) and np.all(np.isfinite(m[r])) for r in range(repeats)])
    angles = np.full((repeats, k), np.pi / 2)
    max_corr = np.ones(repeats)
    corrs = np.ones((repeats, k, k))
    for r in np.flatnonzero(finite):
        angles[r] = principal_angles(w[r], basis[r], params.rank_tolerance)
        corrs[r] = output_correlation(w[r], m[r], facts["cov"][r], params.passes, params.relaxation)
        max_corr[r] = np.max(np.abs(corrs[r] - np.eye(k)))
    subspace = np.sin(angles.max(axis=1))
    # A diverged draw scores between the worst finite draw (blew up at the very end) and the cap
    # (blew up at once): the search can tell a rule that nearly holds from one that explodes.
    unstable = 1.0 - np.clip(stable_s.min(axis=1) / duration_s, 0.0, 1.0)
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
        "stable_fraction": float(np.clip(stable_s.min() / duration_s, 0.0, 1.0)),
    }
    diverged = not finite.all()
    if diverged:
        metrics["diverged_reason"] = "NaN or infinite weights"
    arrays = {"w": w, "m": m, "stable_s": stable_s, "angles_deg": np.degrees(angles), "correlations": corrs,
              "eigenvectors": facts["eigenvectors"], "eigenvalues": facts["eigenvalues"]}
    return Evaluation(loss, metrics, arrays, diverged=diverged)
