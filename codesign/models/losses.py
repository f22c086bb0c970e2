"""The loss library: what a model's ``loss:`` names, computed from one candidate's recordings.

A loss kind declares what it reads (final values of variables, spike counts per phase) and turns
one candidate's recordings, every array with the input draws as first axis, into an
:class:`~codesign.tasks.base.Evaluation`: the loss, JSON-friendly metrics and whether the candidate
diverged. ``kind: package.module:function`` names a user function instead (see :class:`UserLoss`).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from codesign.registry import Registry
from codesign.errors import UnknownNameError
from codesign.models.evaluation import LOSS_CAP, Evaluation
from codesign.schema import Where, build

__all__ = ["Recordings", "Loss", "LOSSES", "make_loss"]


@dataclasses.dataclass
class Recordings:
    """One candidate's recordings; every array has the input draws as first axis.

    ``values``: ``"group.var"`` -> (draws, n) final values; ``"synapse.var"`` -> (draws, n_post, n_pre),
    a dense matrix (0 where no synapse). ``counts``: ``"group@phase"`` -> (draws, n) spikes in that
    phase. ``facts``: stimulus name -> its facts (``cov``, ``eigenvectors``...). ``constants``: each
    draw's constants (they differ between conditions).
    """

    values: dict[str, np.ndarray]
    counts: dict[str, np.ndarray]
    facts: dict[str, dict[str, np.ndarray]]
    constants: list[dict[str, Any]]
    duration_s: float
    phases: dict[str, tuple[float, float]]
    #: synapse -> (n_post, n_pre) mask of the pairs that have a synapse.
    present: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    #: Seconds spent in each phase over the whole protocol (all repetitions).
    phase_seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    def subset(self, draws: np.ndarray) -> Recordings:
        """The recordings of some draws only (one condition's)."""
        return Recordings({k: v[draws] for k, v in self.values.items()}, {k: v[draws] for k, v in self.counts.items()},
                          {s: {k: v[draws] for k, v in f.items()} for s, f in self.facts.items()},
                          [self.constants[r] for r in draws], self.duration_s, self.phases, self.present,
                          self.phase_seconds)


class Loss:
    """A loss kind: ``Params`` (its keys in the model file), what it records, and the evaluation."""

    kind: ClassVar[str]
    Params: ClassVar[type]

    def __init__(self, params: Any, model: Any, where: Where) -> None:
        self.params, self.model, self.where = params, model, where

    def records(self) -> list[str]:
        """What the network must record: ``group.var``, ``synapse.var`` or ``group@phase`` (spike counts)."""
        raise NotImplementedError

    def __call__(self, rec: Recordings) -> Evaluation:
        raise NotImplementedError

    def plot(self, evaluation: Evaluation, path: Path, title: str = "") -> bool:
        """Draw what one candidate learned; False where the loss has no such plot."""
        return False

    def plot_solutions(self, spec: Any, solutions: Sequence[tuple[Any, float, dict]], path: Path) -> bool:
        """Draw the good candidates of a study (candidate, loss, metrics); False where the loss has no such plot."""
        return False

    def _check_name(self, key: str, name: str, kinds: tuple[str, ...] = ("groups", "synapses")) -> None:
        owner, _, var = name.partition(".")
        if not var or not any(owner in getattr(self.model, k) for k in kinds):
            known = [f"{o}.VAR" for k in kinds for o in getattr(self.model, k)]
            raise self.where.child(key).error(f"{name!r} names no group or synapse variable",
                                              fix=f"write OWNER.VARIABLE with OWNER one of: {', '.join(known)}")


# -- Oja: alignment with the first principal component -------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Pc1Params:
    #: The synapse weights (one output's) that must become the unit first principal component.
    weights: str
    #: The Gaussian stimulus whose covariance defines the component.
    stimulus: str


class Pc1Alignment(Loss):
    """Distance of the final weight vector from the unit first principal component (sign ignored),
    averaged over draws; metrics ``abs_cos_pc1``, ``min_abs_cos_pc1``, ``weight_norm``, ``n_diverged``."""

    kind = "pc1_alignment"
    Params = _Pc1Params

    def records(self) -> list[str]:
        self._check_name("weights", self.params.weights, ("synapses",))
        return [self.params.weights]

    def __call__(self, rec: Recordings) -> Evaluation:
        weights = rec.values[self.params.weights][:, 0, :]  # one output: (draws, n_pre)
        pc1 = rec.facts[self.params.stimulus]["eigenvectors"][:, :, 0]
        with np.errstate(all="ignore"):
            distance = np.minimum(np.linalg.norm(weights - pc1, axis=-1), np.linalg.norm(weights + pc1, axis=-1))
            cosine = np.abs(np.sum(weights * pc1, axis=-1)) / np.linalg.norm(weights, axis=-1)
        finite = np.all(np.isfinite(weights), axis=-1)
        loss = Evaluation.capped(float(np.mean(np.where(finite, distance, np.inf))))
        metrics: dict[str, Any] = {
            "abs_cos_pc1": float(np.mean(np.where(finite, cosine, 0.0))),
            "min_abs_cos_pc1": float(np.min(np.where(finite, cosine, 0.0))),
            "weight_norm": float(np.mean(np.linalg.norm(np.where(finite[:, None], weights, 0.0), axis=-1))),
            "n_diverged": int(np.sum(~finite)),
        }
        if not finite.all():
            metrics["diverged_reason"] = f"NaN or infinite weights on {int(np.sum(~finite))} of {len(finite)} draws"
        return Evaluation(loss, metrics, {"weights": weights, "pc1": pc1}, diverged=not finite.all())

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
        if self.params.group not in self.model.groups:
            raise self.where.child("group").error(f"unknown group {self.params.group!r}",
                                                  fix=f"groups: {', '.join(self.model.groups)}")
        if self.params.phase not in {p.name for p in self.model.protocol}:
            raise self.where.child("phase").error(f"unknown phase {self.params.phase!r}",
                                                  fix=f"phases: {', '.join(p.name for p in self.model.protocol)}")
        names = [f"{self.params.group}@{self.params.phase}"]
        if self.params.weights:
            self._check_name("weights", self.params.weights, ("synapses",))
            names.append(self.params.weights)
        return names

    def __call__(self, rec: Recordings) -> Evaluation:
        p = self.params
        rates = rec.counts[f"{p.group}@{p.phase}"].mean(axis=1) / rec.phase_seconds[p.phase]
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


class TrialRates(Loss):
    """Each trial asks for its own rate of a group in a phase (e.g. XOR: high for patterns 01 and 10):
    the mean squared error of the rates, in units of ``scale``, over the trials of the scored passes
    and the draws; metrics ``trial_rates_hz`` (per trial of ``trials``, mean over passes and draws),
    ``accuracy`` (with a ``threshold``)."""

    kind = "trial_rates"
    Params = _TrialRateParams

    def records(self) -> list[str]:
        from codesign.models.network import TRIALS

        p = self.params
        if not self.model.trials:
            raise self.where.error("the model has no trials", fix="add trials: [{CONSTANT: value}, ...] to the model")
        if p.group not in self.model.groups:
            raise self.where.child("group").error(f"unknown group {p.group!r}", fix=f"groups: {', '.join(self.model.groups)}")
        if p.phase not in {ph.name for ph in self.model.protocol}:
            raise self.where.child("phase").error(f"unknown phase {p.phase!r}",
                                                  fix=f"phases: {', '.join(ph.name for ph in self.model.protocol)}")
        if any(p.target not in t for t in self.model.trials):
            raise self.where.child("target").error(f"not every trial sets {p.target!r}",
                                                   fix=f"give each trial a value of {p.target}")
        return [f"{p.group}@{p.phase}{TRIALS}"]

    def targets(self) -> np.ndarray:
        """The target rate (Hz) of each pass."""
        from brian2 import Hz

        where = self.model.where.child("trials")
        return np.array([float(self.model.value(self.model.trial_of(c)[self.params.target], where) / Hz)
                         for c in range(self.model.cycles)])

    def __call__(self, rec: Recordings) -> Evaluation:
        from codesign.models.network import TRIALS

        p = self.params
        start, end = rec.phases[p.phase]
        counts = rec.counts[f"{p.group}@{p.phase}{TRIALS}"]  # (draws, cycles, n)
        rates = counts.mean(axis=2) / (end - start)
        targets = self.targets()
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


class Classification(TrialRates):
    """Classification by output rates: per trial, the cross-entropy of the softmax of the output
    neurons' rates (divided by ``scale``) against the trial's class; metric ``accuracy`` (the most
    active neuron is the class) and ``confusion`` (true class x chosen class, counts)."""

    kind = "classification"
    Params = _ClassificationParams

    def records(self) -> list[str]:
        from codesign.models.network import TRIALS

        p = self.params
        if not self.model.trials or any(p.label not in t for t in self.model.trials):
            raise self.where.child("label").error(f"not every trial sets {p.label!r}",
                                                  fix=f"add trials: [{{{p.label}: 0, ...}}, ...] to the model")
        if p.group not in self.model.groups:
            raise self.where.child("group").error(f"unknown group {p.group!r}", fix=f"groups: {', '.join(self.model.groups)}")
        return [f"{p.group}@{p.phase}{TRIALS}"]

    def __call__(self, rec: Recordings) -> Evaluation:
        from codesign.models.network import TRIALS

        p = self.params
        start, end = rec.phases[p.phase]
        rates = rec.counts[f"{p.group}@{p.phase}{TRIALS}"] / (end - start)  # (draws, cycles, classes)
        classes = rates.shape[2]
        where = self.model.where.child("trials")
        labels = np.array([int(float(self.model.value(self.model.trial_of(c)[p.label], where)))
                           for c in range(self.model.cycles)])
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


# -- A user's function --------------------------------------------------------------------------------


class UserLoss(Loss):
    """``kind: package.module:function`` with ``record: [...]``: the function receives one candidate's
    recordings as a dict of NumPy arrays (draws first; names as in ``record``, plus ``constants``) and
    returns its loss, or ``(loss, metrics)``."""

    kind = "module:function"

    def __init__(self, params: Mapping[str, Any], model: Any, where: Where, target: str) -> None:
        super().__init__(params, model, where)
        module, _, name = target.partition(":")
        try:
            self.function = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise where.child("kind").error(f"cannot import {target!r}: {exc}",
                                            fix="give an importable module:function, e.g. mylosses:rate_loss") from None
        record = params.get("record")
        if not isinstance(record, list) or not all(isinstance(r, str) for r in record):
            raise where.child("record").error("a user loss lists what it reads",
                                              fix="add record: [GROUP.VAR, SYNAPSE.VAR, GROUP@PHASE]")
        self._record = record

    def records(self) -> list[str]:
        return list(self._record)

    def __call__(self, rec: Recordings) -> Evaluation:
        arrays = {**rec.values, **rec.counts}
        try:
            out = self.function({name: arrays[name] for name in self._record})
        except Exception as exc:  # the user's code: report, do not crash the worker
            return Evaluation(LOSS_CAP, {"diverged_reason": f"loss function raised {type(exc).__name__}: {exc}"},
                              diverged=True)
        loss, metrics = (out if isinstance(out, tuple) else (out, {}))
        loss = float(loss)
        return Evaluation(Evaluation.capped(loss), dict(metrics), diverged=not math.isfinite(loss))


#: Every loss kind of the library by the name used in model files (``loss: {kind: NAME}``).
LOSSES: Registry[type[Loss]] = Registry("loss")
for _cls in (Pc1Alignment, PcaSubspace, RateToTarget, TrialRates, Classification):
    LOSSES.register(_cls.kind, _cls)


def make_loss(model: Any) -> Loss:
    """The loss of ``model``: a kind of the library with its keys checked, or a user function."""
    where = model.where.child("loss")
    spec = model.loss
    if ":" in spec.kind:
        return UserLoss(spec.params, model, where, spec.kind)
    if spec.kind not in LOSSES:
        raise UnknownNameError("loss", spec.kind, list(LOSSES) + ["module:function"], file=model.file, key="loss.kind")
    cls = LOSSES[spec.kind]
    params = build(cls.Params, resolve_values(spec.params, model, where, cls.Params), where)
    return cls(params, model, where)


def resolve_values(data: Any, model: Any, where: Where, tp: Any = Any) -> Any:
    """``data`` with the expressions of the model's constants evaluated where ``tp`` (a schema type) takes
    a number: ``target: target_rate`` becomes 10.0 (a quantity's value in base units, 10*Hz -> 10),
    while a string field (``phase: measure``) keeps its text even where a constant has that name."""
    import typing

    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(data, dict):
        hints = typing.get_type_hints(tp)
        return {k: resolve_values(v, model, where.child(str(k)), hints.get(k, str)) for k, v in data.items()}
    if origin in (list, tuple) and isinstance(data, list):
        args = typing.get_args(tp)
        return [resolve_values(v, model, where.child(i), args[min(i, len(args) - 1)] if args else Any)
                for i, v in enumerate(data)]
    if origin is dict and isinstance(data, dict):
        value_type = typing.get_args(tp)[1]
        return {k: resolve_values(v, model, where.child(str(k)), value_type) for k, v in data.items()}
    options = typing.get_args(tp) if origin is not None else (tp,)
    if origin is not None and origin not in (list, tuple, dict):  # a union
        numeric = any(o in (int, float) for o in options)
        structured = [o for o in options if typing.get_origin(o) in (list, tuple, dict) or dataclasses.is_dataclass(o)]
        if structured and isinstance(data, (list, dict)):
            return resolve_values(data, model, where, structured[0])
    else:
        numeric = tp in (int, float) or tp is Any
    if isinstance(data, str) and numeric:
        return _number(data, model, where)
    if isinstance(data, (dict, list)) and tp is Any:
        if isinstance(data, dict):
            return {k: resolve_values(v, model, where.child(str(k))) for k, v in data.items()}
        return [resolve_values(v, model, where.child(i)) for i, v in enumerate(data)]
    return data


def _number(text: str, model: Any, where: Where) -> Any:
    """A string that is an expression of the constants and units, evaluated; any other string as is."""
    from codesign.expressions import ExpressionError, evaluate, names_in, units_namespace

    try:
        names = names_in(text)
    except ExpressionError:
        return text
    if not names <= set(model.constants) | set(units_namespace()):
        return text
    try:
        value = evaluate(text, model.constants)
    except ExpressionError as exc:
        raise where.error(str(exc), fix="use the model's constants") from None
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return value.item() if hasattr(value, "item") else value
    return float(np.asarray(value))
