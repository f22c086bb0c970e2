"""Losses on firing rates: a target rate, rates per trial, classification by rates."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from codesign.models.evaluation import Evaluation
from codesign.models.losses.base import LOSSES, SPIKE, CountRecord, Loss, Recordings, check_event
from codesign.schema import Where

__all__: list[str] = []


def _record(loss: Loss, per_trial: bool) -> str:
    """The counts ``loss`` reads (its ``group``'s ``event`` in its ``phase``), each key checked against the model."""
    p, model = loss.params, loss.model
    if p.group not in model.groups:
        raise loss.where.child("group").error(f"unknown group {p.group!r}", fix=f"groups: {', '.join(model.groups)}")
    if p.phase not in {ph.name for ph in model.protocol}:
        raise loss.where.child("phase").error(f"unknown phase {p.phase!r}",
                                              fix=f"phases: {', '.join(ph.name for ph in model.protocol)}")
    check_event(model, p.group, p.event, loss.where.child("event"))
    return _name(p, per_trial)


def _name(params: Any, per_trial: bool) -> str:
    return CountRecord(params.group, params.phase, params.event, per_trial).name


def _per_pass(model: Any, constant: str, unit: Any = 1.0) -> np.ndarray:
    """The value each pass's trial gives ``constant``, in ``unit``: one number per pass."""
    where = model.where.child("trials")
    return np.array([float(model.value(model.trial_of(c)[constant], where) / unit) for c in range(model.cycles)])

# -- Target rate -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _RateParams:
    #: The group whose rate is held, and the phase over which it is measured.
    group: str
    phase: str
    #: The target rate in Hz (a number or an expression of the constants).
    target: float
    #: A rate above this is a runaway: the candidate counts as diverged.
    runaway: float = dataclasses.field(default=150.0, metadata={"min": 0.0})
    #: Synapse weights whose mean is reported (``mean_weight``), and used by the solutions plot.
    weights: str | None = None
    #: Rules with a loss below this count as solutions in the solution-manifold plot.
    good_loss: float = dataclasses.field(default=0.01, metadata={"min": 0.0})
    #: The Poisson rate of the plastic inputs, for the solution-manifold plot: an expression of the
    #: constants, kept as text because a study's conditions may vary it (the plot evaluates it per condition).
    input_rate: str | None = None
    #: The event whose rate is read: ``spike`` or one of the group's ``events:`` (e.g. a burst).
    event: str = SPIKE


class RateToTarget(Loss):
    """Squared relative error of a group's firing rate in a phase against a target, averaged over the
    draws; metrics ``rates_hz`` (one per draw), ``max_rate_error``, ``mean_weight``."""

    kind = "rate_to_target"
    Params = _RateParams

    def __init__(self, params: Any, model: Any, where: Where) -> None:
        super().__init__(params, model, where)
        if params.input_rate is not None:
            self.input_rate_hz(model)  # a bad expression is an error now, not when a study's plot is drawn

    def input_rate_hz(self, model: Any) -> float:
        """``input_rate`` with ``model``'s constants, in Hz."""
        from brian2 import Hz

        where = self.where.child("input_rate")
        value = model.value(self.params.input_rate, where)
        if getattr(value, "dim", None) != Hz.dim:
            raise where.error(f"must be a rate, got {value}", fix="write an expression in Hz, e.g. rate_inhibitory")
        return float(value / Hz)

    def records(self) -> list[str]:
        names = [_record(self, per_trial=False)]
        if self.params.weights:
            self._check_name("weights", self.params.weights, ("synapses",))
            names.append(self.params.weights)
        return names

    def __call__(self, rec: Recordings) -> Evaluation:
        p = self.params
        rates = rec.counts[_name(p, per_trial=False)].mean(axis=1) / rec.phase_seconds[p.phase]
        error = (rates - p.target) / p.target
        metrics: dict[str, Any] = {"rates_hz": [float(x) for x in rates], "max_rate_error": float(np.max(np.abs(error)))}
        arrays = {}
        if p.weights:
            weights = rec.values[p.weights][:, rec.present[p.weights.partition(".")[0]]]
            metrics["mean_weight"] = float(np.mean(weights))
            arrays["weights"] = weights
        runaway = rates > p.runaway
        if runaway.any():
            metrics["diverged_reason"] = f"runaway rate {rates.max():.1f} Hz > runaway {p.runaway:g}"
        return Evaluation(Evaluation.capped(float(np.mean(error**2))), metrics, arrays, diverged=bool(runaway.any()))

    def plot_solutions(self, spec: Any, solutions: Sequence[tuple[Any, float, dict]], path: Path) -> bool:
        from codesign.models.plots import plot_rate_solutions

        if self.params.input_rate is None:
            return False
        where = Where(spec.file, "conditions")
        models = [spec.model.with_constants(dict(c), where) if c else spec.model for c in spec.conditions.train]
        return plot_rate_solutions(self.params, [self.input_rate_hz(m) for m in models], solutions, path)


# -- Rates per trial ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _TrialRateParams:
    #: The group whose mean rate is read in ``phase`` of every trial.
    group: str
    phase: str
    #: The constant each trial sets to its target rate (``trials: [{target: 20*Hz, ...}, ...]``).
    target: str
    #: Errors are in units of this rate (Hz); default: the largest target.
    scale: float | None = dataclasses.field(default=None, metadata={"min": 1e-9})
    #: A trial counts as right when its rate is on the same side of this rate (Hz) as its target.
    threshold: float | None = dataclasses.field(default=None, metadata={"min": 0.0})
    #: Score only the last this many passes through the trials (what was learned); default: all.
    last: int | None = dataclasses.field(default=None, metadata={"min": 1})
    #: The event whose rate is read: ``spike`` or one of the group's ``events:`` (e.g. a burst).
    event: str = SPIKE


class TrialRates(Loss):
    """Each trial asks for its own rate of a group in a phase (e.g. XOR: high for patterns 01 and 10):
    the mean squared error of the rates, in units of ``scale``, over the trials of the scored passes
    and the draws; metrics ``trial_rates_hz`` (per trial of ``trials``, mean over passes and draws),
    ``accuracy`` (with a ``threshold``)."""

    kind = "trial_rates"
    Params = _TrialRateParams

    def records(self) -> list[str]:
        p = self.params
        if not self.model.trials:
            raise self.where.error("the model has no trials", fix="add trials: [{CONSTANT: value}, ...] to the model")
        record = _record(self, per_trial=True)
        if any(p.target not in t for t in self.model.trials):
            raise self.where.child("target").error(f"not every trial sets {p.target!r}",
                                                   fix=f"give each trial a value of {p.target}")
        return [record]

    def __call__(self, rec: Recordings) -> Evaluation:
        p = self.params
        start, end = rec.phases[p.phase]
        counts = rec.counts[_name(p, per_trial=True)]  # (draws, cycles, n)
        rates = counts.mean(axis=2) / (end - start)
        from brian2 import Hz

        targets = _per_pass(self.model, p.target, Hz)
        scored = slice(-p.last * len(self.model.trials), None) if p.last else slice(None)
        scale = p.scale or float(np.max(np.abs(targets))) or 1.0
        error = (rates[:, scored] - targets[scored]) / scale
        n_trials = len(self.model.trials)
        per_trial = [float(np.mean(rates[:, scored][:, i::n_trials])) for i in range(n_trials)]
        metrics: dict[str, Any] = {"trial_rates_hz": per_trial}
        if p.threshold is not None:
            right = (rates[:, scored] > p.threshold) == (targets[scored] > p.threshold)
            metrics["accuracy"] = float(np.mean(right))
        return Evaluation(Evaluation.capped(float(np.mean(error**2))), metrics, {"rates": rates})


@dataclasses.dataclass(frozen=True)
class _ClassificationParams:
    #: The output group: neuron c stands for class c; its rate in ``phase`` of each trial is read.
    group: str
    phase: str
    #: The constant each trial sets to its class (a neuron index of ``group``).
    label: str
    #: Rates are divided by this (Hz) before the softmax: a rate difference of ``scale`` is one nat.
    scale: float = dataclasses.field(default=10.0, metadata={"min": 1e-9})
    last: int | None = dataclasses.field(default=None, metadata={"min": 1})
    #: The event whose rate is read: ``spike`` or one of the group's ``events:`` (e.g. a burst).
    event: str = SPIKE


class Classification(TrialRates):
    """Classification by output rates: per trial, the cross-entropy of the softmax of the output
    neurons' rates (divided by ``scale``) against the trial's class; metric ``accuracy`` (the most
    active neuron is the class) and ``confusion`` (true class x chosen class, counts)."""

    kind = "classification"
    Params = _ClassificationParams

    def records(self) -> list[str]:
        p = self.params
        if not self.model.trials or any(p.label not in t for t in self.model.trials):
            raise self.where.child("label").error(f"not every trial sets {p.label!r}",
                                                  fix=f"add trials: [{{{p.label}: 0, ...}}, ...] to the model")
        return [_record(self, per_trial=True)]

    def __call__(self, rec: Recordings) -> Evaluation:
        p = self.params
        start, end = rec.phases[p.phase]
        rates = rec.counts[_name(p, per_trial=True)] / (end - start)  # (draws, cycles, classes)
        classes = rates.shape[2]
        labels = _per_pass(self.model, p.label).astype(int)
        if labels.min() < 0 or labels.max() >= classes:
            return Evaluation(Evaluation.capped(math.inf), {"diverged_reason": f"labels outside 0..{classes - 1}"},
                              diverged=True)
        scored = slice(-p.last * len(self.model.trials), None) if p.last else slice(None)
        logits = rates[:, scored] / p.scale
        logits = logits - logits.max(axis=2, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=2, keepdims=True))
        truth = labels[scored]
        loss = -float(np.mean(np.take_along_axis(log_p, np.broadcast_to(truth[None, :, None], log_p.shape[:2] + (1,)),
                                                 axis=2)))
        chosen = rates[:, scored].argmax(axis=2)
        confusion = np.zeros((classes, classes), dtype=int)
        np.add.at(confusion, (np.broadcast_to(truth, chosen.shape), chosen), 1)
        metrics = {"accuracy": float(np.mean(chosen == truth)), "confusion": confusion.tolist()}
        return Evaluation(Evaluation.capped(loss), metrics, {"rates": rates})


# -- Binary targets per trial: cross-entropy of a rate read as a probability -------------------------


@dataclasses.dataclass(frozen=True)
class _TrialBCEParams:
    #: The group whose mean rate is read in ``phase`` of every trial.
    group: str
    phase: str
    #: The constant each trial sets to its target: 1 (high rate) or 0 (low rate).
    label: str
    #: The rates (Hz) read as probability 0 and 1: p = (rate - low) / (high - low), clipped to [eps, 1 - eps].
    low: float = dataclasses.field(default=2.0, metadata={"min": 0.0})
    high: float = dataclasses.field(default=10.0, metadata={"min": 0.0})
    eps: float = dataclasses.field(default=0.01, metadata={"min": 1e-9, "max": 0.5})
    #: A trial is right when its rate is on its label's side of this rate (Hz); default: halfway.
    threshold: float | None = dataclasses.field(default=None, metadata={"min": 0.0})
    last: int | None = dataclasses.field(default=None, metadata={"min": 1})
    event: str = SPIKE
    #: The metrics' prefix: ``NAME_correct`` counts the trials on the right side (e.g. ``xor``).
    name: str = "trials"
    #: Burst probabilities to follow (metric ``burst_probability``, and the plot): group -> the names of
    #: its equal parts (e.g. ``hidden: [hidden 1, hidden 2]``); each part's ``burst`` count over its
    #: ``event`` count in ``phase``, per pass.
    burst_probability: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    burst: str = "burst"


class TrialBCE(Loss):
    """Each trial asks for a high or a low rate (its ``label``, 1 or 0; e.g. XOR): the rate is read as a
    probability p = (rate - low) / (high - low), clipped, and the loss is the binary cross-entropy of p
    against the label, summed over the trials of a pass and averaged over the scored passes and the draws
    (Payeur et al. 2021's cost). Metrics: ``GROUP_rates_hz`` (per trial, in the order of ``trials``, mean
    over the scored passes and draws), ``NAME_correct`` (trials of the last pass on the right side of
    ``threshold``, mean over draws), and per draw (``per_draw``) when there are several."""

    kind = "trial_bce"
    Params = _TrialBCEParams

    def records(self) -> list[str]:
        p = self.params
        if p.high <= p.low:
            raise self.where.child("high").error(f"high ({p.high:g} Hz) is not above low ({p.low:g} Hz)",
                                                 fix="give high > low")
        if not self.model.trials or any(p.label not in t for t in self.model.trials):
            raise self.where.child("label").error(f"not every trial sets {p.label!r}",
                                                  fix=f"add trials: [{{{p.label}: 0 or 1, ...}}, ...] to the model")
        return [_record(self, per_trial=True)] + [r.name for r in self._burst_records()]

    def _burst_records(self) -> list[CountRecord]:
        p, out = self.params, []
        for group, parts in p.burst_probability.items():
            where = self.where.child("burst_probability").child(group)
            if group not in self.model.groups:
                raise where.error(f"unknown group {group!r}", fix=f"groups: {', '.join(self.model.groups)}")
            if not parts or self.model.group_size(group) % len(parts):
                raise where.error(f"not {group}'s equal parts", fix=f"write {group}: [NAME, ...], a name per equal part")
            for event in (p.event, p.burst):
                check_event(self.model, group, event, where)
                out.append(CountRecord(group, p.phase, event, per_trial=True))
        return out

    def burst_probabilities(self, rec: Recordings) -> dict[str, np.ndarray]:
        """Each part's burst probability per pass, over the draws' neurons: part -> (passes,)."""
        p, out = self.params, {}
        for group, parts in p.burst_probability.items():
            events = rec.counts[CountRecord(group, p.phase, p.event, True).name]  # (draws, passes, n)
            bursts = rec.counts[CountRecord(group, p.phase, p.burst, True).name]
            size = events.shape[2] // len(parts)
            for k, part in enumerate(parts):
                cut = slice(k * size, (k + 1) * size)
                n_events = events[:, :, cut].sum(axis=(0, 2))
                out[str(part)] = bursts[:, :, cut].sum(axis=(0, 2)) / np.maximum(n_events, 1)
        return out

    def __call__(self, rec: Recordings) -> Evaluation:
        p = self.params
        start, end = rec.phases[p.phase]
        rates = rec.counts[_name(p, per_trial=True)].mean(axis=2) / (end - start)  # (draws, passes)
        labels, n_trials = _per_pass(self.model, p.label), len(self.model.trials)
        if not np.isin(labels, (0.0, 1.0)).all():
            return Evaluation(Evaluation.capped(math.inf), {"diverged_reason": f"{p.label} is not 0 or 1 in every trial"},
                              diverged=True)
        scored = slice(-p.last * n_trials, None) if p.last else slice(None)
        prob = np.clip((rates[:, scored] - p.low) / (p.high - p.low), p.eps, 1 - p.eps)
        y = labels[scored]
        bce = -(y * np.log(prob) + (1 - y) * np.log(1 - prob))  # (draws, scored passes)
        threshold = p.threshold if p.threshold is not None else (p.low + p.high) / 2
        right = ((rates[:, -n_trials:] > threshold) == (labels[-n_trials:] > 0.5)).sum(axis=1)  # the last pass
        per_trial = rates[:, scored].reshape(rates.shape[0], -1, n_trials).mean(axis=1)  # (draws, trials)
        metrics: dict[str, Any] = {f"{p.group}_rates_hz": per_trial.mean(axis=0).tolist(),
                                   f"{p.name}_correct": float(right.mean())}
        if rates.shape[0] > 1:
            metrics["per_draw"] = [{"loss": float(b.sum() / (b.size / n_trials)), f"{p.group}_rates_hz": r.tolist(),
                                    f"{p.name}_correct": int(c)} for b, r, c in zip(bce, per_trial, right)]
        probabilities = self.burst_probabilities(rec)
        if probabilities:  # in the last pass, over its trials
            metrics["burst_probability"] = {part: float(bp[-n_trials:].mean()) for part, bp in probabilities.items()}
        loss = float(bce.sum(axis=1).mean() / (bce.shape[1] / n_trials))
        return Evaluation(Evaluation.capped(loss), metrics,
                          {"rates": rates, **{f"burst_probability:{k}": v for k, v in probabilities.items()}})

    def plot(self, evaluation: Evaluation, path: Path, title: str = "") -> bool:
        from codesign.models.plots import plot_trial_learning

        p = self.params
        threshold = p.threshold if p.threshold is not None else (p.low + p.high) / 2
        trials = [", ".join(f"{k} {v}" for k, v in t.items() if k != p.label) for t in self.model.trials]
        parts = {k.partition(":")[2]: v for k, v in evaluation.arrays.items() if k.startswith("burst_probability:")}
        plot_trial_learning(evaluation.arrays["rates"], trials, threshold, parts, path,
                            f"{p.group} {p.event} rate" + (f"; {title}" if title else ""))
        return True


for _cls in (RateToTarget, TrialRates, Classification, TrialBCE):
    LOSSES.register(_cls.kind, _cls)
