"""Fitting a rule to recordings (Mehta et al. 2024, SCIENCE.md section 2): every candidate is simulated on
the recorded inputs from the recorded initial weights, and its activity is compared with the recorded
units' (stimulus kind ``recorded``, :mod:`codesign.models.recordings`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from codesign.models.evaluation import LOSS_CAP, Evaluation
from codesign.models.losses.base import LOSSES, Loss, Recordings, SeriesRecord

__all__ = ["r_squared"]


def r_squared(simulated: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """R^2 per trajectory (first axis): 1 - residual / total sum of squares, the total about each unit's
    (or weight's) mean over the trajectory's samples (axis 1)."""
    axes = tuple(range(1, observed.ndim))
    with np.errstate(all="ignore"):  # a runaway candidate's residual overflows to inf: R^2 -inf
        residual = np.sum((simulated - observed) ** 2, axis=axes)
        total = np.sum((observed - observed.mean(axis=1, keepdims=True)) ** 2, axis=axes)
        return np.where(total > 0, 1.0 - residual / np.where(total > 0, total, 1.0), np.where(residual > 0, -np.inf, 1.0))


@dataclasses.dataclass(frozen=True)
class _TrajectoryParams:
    #: The recorded variable (``GROUP.VAR``) and the stimulus of kind ``recorded`` that holds its recordings.
    activity: str
    stimulus: str
    #: Sampling interval of the recordings, in seconds.
    every: float = dataclasses.field(metadata={"min": 1e-9})
    #: The weights (``SYNAPSE.VAR``), for their R^2 where the recordings hold them.
    weights: str | None = None


class TrajectoryFit(Loss):
    """Mean squared error between the simulated and the recorded activity of the recorded units, over the
    variance of the recordings (0 is a perfect fit; 1 is no better than each unit's mean). Metrics:
    ``activity_r2`` (median over trajectories), ``weights_r2`` (median, where weights were recorded),
    ``n_diverged``."""

    kind = "trajectory_fit"
    Params = _TrajectoryParams

    def _series(self, name: str) -> str:
        return SeriesRecord(*name.split(".", 1), self.params.every).name

    def records(self) -> list[str]:
        p = self.params
        self._check_name("activity", p.activity, ("groups",))
        names = [self._series(p.activity)]
        if p.weights is not None:
            self._check_name("weights", p.weights, ("synapses",))
            names.append(self._series(p.weights))
        if p.stimulus not in self.model.stimuli:  # of kind recorded to be fitted to; any kind to record
            raise self.where.child("stimulus").error(f"{p.stimulus!r} is not a stimulus of the model",
                                                     fix=f"name one: {', '.join(self.model.stimuli) or 'none'}")
        return names

    def _facts(self, rec: Recordings, what: str = "recordings") -> dict[str, np.ndarray]:
        """The recordings the stimulus plays (a one-line error if it plays none)."""
        facts = rec.facts[self.params.stimulus]
        if "activity" not in facts:
            raise self.where.child("stimulus").error(f"{self.params.stimulus!r} holds no {what} to fit",
                                                     fix="make it a stimulus of kind recorded (codesign infer does)")
        return facts

    def __call__(self, rec: Recordings) -> Evaluation:
        p = self.params
        facts = self._facts(rec)
        recorded = facts["recorded"][0]
        simulated = rec.series[self._series(p.activity)]
        samples = min(simulated.shape[1], facts["activity"].shape[1])
        sim, obs = simulated[:, :samples, recorded], facts["activity"][:, :samples, recorded]
        finite = np.all(np.isfinite(sim), axis=(1, 2))
        with np.errstate(all="ignore"):
            error = np.mean((sim - obs) ** 2, axis=(1, 2))
        scale = max(float(np.var(obs)), 1e-300)
        loss = float(np.mean(np.where(finite, error, np.inf))) / scale
        metrics: dict[str, Any] = {"activity_r2": float(np.median(np.where(finite, r_squared(sim, obs), -np.inf))),
                                   "n_diverged": int(np.sum(~finite))}
        arrays = {"simulated": sim, "recorded": obs}
        if p.weights is not None and "weights" in facts:
            weights = rec.series[self._series(p.weights)][:, :samples]
            known = facts["weights"][:, :samples]
            ok = np.all(np.isfinite(weights), axis=tuple(range(1, weights.ndim)))
            metrics["weights_r2"] = float(np.median(np.where(ok, r_squared(weights, known), -np.inf)))
            arrays.update(simulated_weights=weights, recorded_weights=known)
        if not finite.all():
            metrics["diverged_reason"] = f"NaN or infinite activity on {int(np.sum(~finite))} of {len(finite)} trajectories"
        return Evaluation(min(loss, LOSS_CAP), metrics, arrays, diverged=not finite.all())

    def plot(self, evaluation: Evaluation, path: Path, title: str = "") -> bool:
        from codesign.models.plots import plot_trajectories

        plot_trajectories(evaluation.arrays, self.params.every, path, title)
        return True


@dataclasses.dataclass(frozen=True)
class _ChoiceParams(_TrajectoryParams):
    #: The model's probability of choice 1 each trial (``GROUP.VAR``); ``activity`` names the choice.
    probability: str = ""


class ChoiceLikelihood(TrajectoryFit):
    """Negative log-likelihood of the recorded choices (0 or 1, the activity of the recordings) under the
    model's probability of each, per choice, over that of the best constant probability (the choices'
    mean): 0 would predict every choice, 1 is no better than a biased coin. The candidate learns from the
    recorded choices and rewards (the recordings' inputs force them). Metrics: ``nll_per_choice`` (nats),
    ``deviance_explained`` (median over trajectories, 1 - NLL / the coin's), ``weights_r2`` (median, where
    weights were recorded), ``n_diverged``."""

    kind = "choice_likelihood"
    Params = _ChoiceParams

    def records(self) -> list[str]:
        names = super().records()
        self._check_name("probability", self.params.probability, ("groups",))
        return names + [self._series(self.params.probability)]

    def __call__(self, rec: Recordings) -> Evaluation:
        p = self.params
        facts = self._facts(rec, "recorded choices")
        chosen = facts["activity"][:, :, :1] > 0.5
        probability = rec.series[self._series(p.probability)][:, :chosen.shape[1], :1]
        finite = np.all(np.isfinite(probability), axis=(1, 2))
        eps = 1e-12  # a probability of exactly 0 or 1 for a choice made costs 27.6 nats, not infinity
        with np.errstate(all="ignore"):
            q = np.clip(np.where(chosen, probability, 1.0 - probability), eps, 1.0)
            nll = -np.mean(np.log(q), axis=(1, 2))
        rate = np.clip(chosen.mean(axis=(1, 2)), eps, 1.0 - eps)
        coin = -(rate * np.log(rate) + (1.0 - rate) * np.log(1.0 - rate))
        loss = float(np.mean(np.where(finite, nll, np.inf)) / max(float(np.mean(coin)), eps))
        metrics: dict[str, Any] = {"nll_per_choice": float(np.mean(np.where(finite, nll, np.inf))),
                                   "deviance_explained": float(np.median(np.where(finite, 1.0 - nll / np.maximum(coin, eps),
                                                                                  -np.inf))),
                                   "n_diverged": int(np.sum(~finite))}
        arrays = {"simulated": probability, "recorded": chosen.astype(float)}
        if p.weights is not None and "weights" in facts:
            weights = rec.series[self._series(p.weights)][:, :chosen.shape[1]]
            ok = np.all(np.isfinite(weights), axis=tuple(range(1, weights.ndim)))
            metrics["weights_r2"] = float(np.median(np.where(ok, r_squared(weights, facts["weights"][:, :chosen.shape[1]]),
                                                             -np.inf)))
            arrays.update(simulated_weights=weights, recorded_weights=facts["weights"][:, :chosen.shape[1]])
        if not finite.all():
            metrics["diverged_reason"] = f"NaN or infinite probability on {int(np.sum(~finite))} of {len(finite)} trajectories"
        return Evaluation(min(loss, LOSS_CAP), metrics, arrays, diverged=not finite.all())


for _loss in (TrajectoryFit, ChoiceLikelihood):
    LOSSES.register(_loss.kind, _loss)
