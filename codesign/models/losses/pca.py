"""Losses of the PCA models: alignment with the first principal component, the principal subspace."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from codesign.models.evaluation import Evaluation
from codesign.models.losses.base import LOSSES, Loss, Recordings

__all__: list[str] = []

# -- Oja: alignment with the first principal component -------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Pc1Params:
    #: The synapse weights (each output's row) that must become the unit first principal component.
    weights: str
    #: The Gaussian stimulus whose covariance defines the component.
    stimulus: str


class Pc1Alignment(Loss):
    """Distance of each output's final weight vector from the unit first principal component (sign
    ignored), averaged over outputs and draws; metrics ``abs_cos_pc1``, ``min_abs_cos_pc1``,
    ``weight_norm``, ``n_diverged`` (draws with a NaN or infinite weight)."""

    kind = "pc1_alignment"
    Params = _Pc1Params

    def records(self) -> list[str]:
        self._check_name("weights", self.params.weights, ("synapses",))
        return [self.params.weights]

    def __call__(self, rec: Recordings) -> Evaluation:
        rows = rec.values[self.params.weights]  # (draws, outputs, n_pre)
        pc1 = rec.facts[self.params.stimulus]["eigenvectors"][:, None, :, 0]
        with np.errstate(all="ignore"):
            distance = np.minimum(np.linalg.norm(rows - pc1, axis=-1), np.linalg.norm(rows + pc1, axis=-1))
            cosine = np.abs(np.sum(rows * pc1, axis=-1)) / np.linalg.norm(rows, axis=-1)
        finite = np.all(np.isfinite(rows), axis=-1)
        loss = Evaluation.capped(float(np.mean(np.where(finite, distance, np.inf))))
        metrics: dict[str, Any] = {
            "abs_cos_pc1": float(np.mean(np.where(finite, cosine, 0.0))),
            "min_abs_cos_pc1": float(np.min(np.where(finite, cosine, 0.0))),
            "weight_norm": float(np.mean(np.linalg.norm(np.where(finite[..., None], rows, 0.0), axis=-1))),
            "n_diverged": int(np.sum(~finite.all(axis=1))),
        }
        if not finite.all():
            metrics["diverged_reason"] = (f"NaN or infinite weights on {metrics['n_diverged']} of {len(finite)} draws")
        return Evaluation(loss, metrics, {"weights": rows[:, 0], "pc1": pc1[:, 0]}, diverged=not finite.all())

    def plot(self, evaluation: Evaluation, path: Path, title: str = "") -> bool:
        from codesign.models.plots import plot_pc1

        plot_pc1(evaluation.arrays["weights"], evaluation.arrays["pc1"], path, title)
        return True


# -- PCA network: principal subspace and decorrelated outputs -------------------------------------------


@dataclasses.dataclass(frozen=True)
class _SubspaceParams:
    #: Feed-forward weights W (k outputs x D inputs) and lateral weights M (k x k) between the outputs.
    feedforward: str
    lateral: str
    stimulus: str
    #: A per-output variable integrating the time each output stayed bounded (grades diverged draws).
    stable: str
    #: The lateral passes and their relaxation, as the model's equations compute them.
    passes: int = dataclasses.field(metadata={"min": 1, "max": 1000})
    relaxation: float = dataclasses.field(metadata={"min": 0.0, "max": 1.0})
    #: Row-space directions of W with singular value below this fraction of the largest count as absent.
    rank_tolerance: float = dataclasses.field(default=0.05, metadata={"min": 0.0, "max": 1.0})


class PcaSubspace(Loss):
    """Per draw: sin of the largest principal angle between W's rows and the top-k subspace, plus the
    largest output correlation; a diverged draw scores 2 to 10 by how early it blew up
    (:mod:`codesign.models.pca`)."""

    kind = "pca_subspace"
    Params = _SubspaceParams

    def records(self) -> list[str]:
        for key in ("feedforward", "lateral", "stable"):
            self._check_name(key, getattr(self.params, key))
        return [self.params.feedforward, self.params.lateral, self.params.stable]

    def __call__(self, rec: Recordings) -> Evaluation:
        from codesign.models.pca import summarise

        p = self.params
        facts = rec.facts[p.stimulus]
        return summarise(rec.values[p.feedforward], rec.values[p.lateral], rec.values[p.stable], facts, p,
                         rec.duration_s)

    def plot(self, evaluation: Evaluation, path: Path, title: str = "") -> bool:
        from codesign.models.plots import plot_pca

        plot_pca(evaluation.arrays, path, title)
        return True


for _cls in (Pc1Alignment, PcaSubspace):
    LOSSES.register(_cls.kind, _cls)
