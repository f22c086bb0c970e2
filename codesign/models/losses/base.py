"""The loss library's contract: what a model's ``loss:`` names, computed from one candidate's recordings.

A loss kind declares what it reads (final values of variables, spike counts per phase) and turns
one candidate's recordings, every array with the input draws as first axis, into an
:class:`~codesign.models.evaluation.Evaluation`: the loss, JSON-friendly metrics and whether the candidate
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

__all__ = ["Recordings", "Loss", "LOSSES", "make_loss", "CountRecord", "SeriesRecord", "check_event", "SPIKE",
           "TRIALS"]

#: The suffix of a record counting events per pass through the protocol: ``group@phase/trial``.
TRIALS = "/trial"
#: The event of a group's threshold; its other events are those its ``events:`` names.
SPIKE = "spike"


@dataclasses.dataclass(frozen=True)
class CountRecord:
    """A record of event counts: ``group@phase`` (spikes in a phase, summed over its passes),
    ``group:EVENT@phase`` (a custom event's, ``events:`` of the group), either with ``/trial``
    (the counts of every pass through the protocol). ``group:spike@phase`` is ``group@phase``."""

    group: str
    phase: str
    event: str = SPIKE
    per_trial: bool = False

    @classmethod
    def parse(cls, name: str) -> CountRecord | None:
        """The counts ``name`` records; None for a variable (``group.var``, ``synapse.var``)."""
        owner, at, phase = name.partition("@")
        if not at:
            return None
        group, _, event = owner.partition(":")
        return cls(group, phase.removesuffix(TRIALS), event or SPIKE, phase.endswith(TRIALS))

    @property
    def source(self) -> str:
        """What is counted: ``group`` (its spikes) or ``group:EVENT``."""
        return self.group if self.event == SPIKE else f"{self.group}:{self.event}"

    @property
    def name(self) -> str:
        """The record's name as a loss reads it in :attr:`Recordings.counts` (spikes without ``:spike``)."""
        return f"{self.source}@{self.phase}{TRIALS if self.per_trial else ''}"


@dataclasses.dataclass(frozen=True)
class SeriesRecord:
    """A variable sampled during the run every ``every`` seconds: ``owner.var/every:SECONDS`` (a group's
    or a synapse's variable), sampled at t = 0, every, 2 every, ... at the end of that step: what the
    step computed from its inputs at time t (a summed input, a choice) and the weights after its update."""

    owner: str
    var: str
    every: float

    SEPARATOR: ClassVar[str] = "/every:"

    @classmethod
    def parse(cls, name: str) -> SeriesRecord | None:
        head, separator, every = name.partition(cls.SEPARATOR)
        if not separator:
            return None
        owner, _, var = head.partition(".")
        return cls(owner, var, float(every))

    @property
    def name(self) -> str:
        return f"{self.owner}.{self.var}{self.SEPARATOR}{self.every!r}"


def check_event(model: Any, group: str, event: str, where: Where) -> None:
    """Raise the one-line error of ``where`` if ``group`` of ``model`` has no event ``event``."""
    spec = model.groups[group]
    known = [SPIKE, *spec.events]
    if event not in known:
        raise where.error(f"group {group} has no event {event!r}",
                          fix=f"events of {group}: {', '.join(known)} (add one to groups.{group}.events)")


@dataclasses.dataclass
class Recordings:
    """One candidate's recordings; every array has the input draws as first axis.

    ``values``: ``"group.var"`` -> (draws, n) final values; ``"synapse.var"`` -> (draws, n_post, n_pre),
    a dense matrix (0 where no synapse). ``counts``: ``"group@phase"`` -> (draws, n) spikes in that
    phase, ``"group:EVENT@phase"`` a custom event's, and with ``/trial`` -> (draws, passes, n) per pass
    (see :class:`CountRecord`). ``series``: a :class:`SeriesRecord`'s name -> (draws, samples, n) for a
    group's variable, (draws, samples, n_post, n_pre) for a synapse's (0 where no synapse).
    ``facts``: stimulus name -> its facts (``cov``, ``eigenvectors``...).
    ``constants``: each draw's constants (they differ between conditions).
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
    series: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def subset(self, draws: np.ndarray) -> Recordings:
        """The recordings of some draws only (one condition's)."""
        return Recordings({k: v[draws] for k, v in self.values.items()}, {k: v[draws] for k, v in self.counts.items()},
                          {s: {k: v[draws] for k, v in f.items()} for s, f in self.facts.items()},
                          [self.constants[r] for r in draws], self.duration_s, self.phases, self.present,
                          self.phase_seconds, {k: v[draws] for k, v in self.series.items()})


class Loss:
    """A loss kind: ``Params`` (its keys in the model file), what it records, and the evaluation."""

    kind: ClassVar[str]
    Params: ClassVar[type]

    def __init__(self, params: Any, model: Any, where: Where) -> None:
        self.params, self.model, self.where = params, model, where

    def records(self) -> list[str]:
        """What the network must record: ``group.var``, ``synapse.var`` or counts (:class:`CountRecord`)."""
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
