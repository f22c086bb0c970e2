"""Zero-mean Gaussian inputs with a given or random covariance: the checks the rate tasks share."""

from __future__ import annotations

import numpy as np

from codesign.schema import Where

__all__ = ["check_covariance"]


def check_covariance(covariance: str | list[list[float]], n_inputs: int, n_top: int, where: Where) -> None:
    """Check a task's ``covariance`` key: ``random``, or a symmetric positive-definite matrix of size
    ``n_inputs`` whose top ``n_top`` principal components are unique (the task's answer)."""
    here = where.child("covariance")
    if isinstance(covariance, str):
        if covariance != "random":
            raise here.error(f"expected 'random' or a matrix, got {covariance!r}",
                             fix="write covariance: random, or a list of n_inputs rows")
        return
    matrix = np.asarray(covariance, dtype=float)
    if matrix.shape != (n_inputs, n_inputs):
        raise here.error(f"must be {n_inputs}x{n_inputs} (n_inputs), got shape {matrix.shape}",
                         fix="give one row of n_inputs numbers per input")
    if not np.allclose(matrix, matrix.T):
        raise here.error("must be symmetric", fix="make entry [i][j] equal to entry [j][i]")
    eigenvalues = np.linalg.eigvalsh(matrix)[::-1]
    if eigenvalues[-1] <= 0:
        raise here.error(f"must be positive definite (smallest eigenvalue {eigenvalues[-1]:.3g})",
                         fix="use a valid covariance matrix")
    if n_top < n_inputs and eigenvalues[n_top - 1] - eigenvalues[n_top] < 1e-9:
        raise here.error(f"eigenvalues {n_top} and {n_top + 1} are equal: the top-{n_top} principal subspace "
                         "is not unique", fix=f"make the top {n_top} eigenvalue(s) strictly larger than the others")
