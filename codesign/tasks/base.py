"""The contract every task follows: evaluate a batch of candidate rules in one network."""

from __future__ import annotations

import abc
import dataclasses
import math
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from codesign.hardware import EventCounts, Target
from codesign.rules import NAMED_RULES, Candidate, Rule, named_rule
from codesign.schema import Where

__all__ = ["Evaluation", "Task", "LOSS_CAP", "MAX_STEPS", "MAX_INPUT_VALUES", "check_size", "used_terms", "slot_terms",
           "pad"]

#: Loss given to a candidate whose simulation diverged (NaN or infinite weights), and the ceiling of
#: every loss, so that one runaway rule cannot dominate a sampler's statistics.
LOSS_CAP = 10.0

#: What a task's parameters may ask of one simulation: past these a batch would run for hours, or
#: its input draws would not fit in memory (the studies in studies/: at most 200,000 time steps and
#: 960,000 input values or spikes).
MAX_STEPS = 10_000_000
MAX_INPUT_VALUES = 20_000_000


def check_size(where: Where, duration_s: float, dt_ms: float, inputs: float, what: str,
               duration_key: str = "duration_s", duration: str = "duration_s") -> None:
    """Refuse a simulation of more than :data:`MAX_STEPS` time steps, or whose input draws hold more
    than :data:`MAX_INPUT_VALUES` values (``inputs``; ``what`` says what they count)."""
    steps = duration_s * 1000.0 / dt_ms
    if steps > MAX_STEPS:
        raise where.child(duration_key).error(
            f"{duration} = {duration_s:g} s in steps of dt_ms = {dt_ms:g} is {_count(steps)} time steps, "
            f"more than {MAX_STEPS:,}", fix="shorten the simulation or lengthen dt_ms")
    if inputs > MAX_INPUT_VALUES:
        raise where.error(f"the input draws would hold {_count(inputs)} {what}, more than {MAX_INPUT_VALUES:,}",
                          fix="lower n_repeats, the number of inputs or the duration")


def _count(number: float) -> str:
    return f"{number:,.0f}" if number < 1e15 else f"{number:.3g}"


@dataclasses.dataclass
class Evaluation:
    """What a task reports for one candidate.

    ``metrics`` holds JSON-friendly scalars and lists (stored with the trial); ``arrays`` holds
    larger data for plots (not stored).
    """

    loss: float
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    arrays: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    diverged: bool = False
    #: Events counted in the simulation, for the cost model (tasks that count them).
    counts: EventCounts | None = None

    @staticmethod
    def capped(loss: float) -> float:
        return LOSS_CAP if not math.isfinite(loss) else min(float(loss), LOSS_CAP)


class Task(abc.ABC):
    """A network and a loss. Subclasses set ``name``, ``Params`` (a schema dataclass) and ``slots``.

    ``evaluate`` must simulate all candidates of a batch in one network, with each candidate's
    coefficients held in variables, so that code is generated once per batch shape and not once
    per candidate. Instances keep their built network between calls; they are not thread safe.
    """

    name: ClassVar[str]
    Params: ClassVar[type]
    #: The task's rule slots and the family of each, e.g. ``{"w": "polynomial"}``.
    slots: ClassVar[dict[str, str]]
    #: Hardware knobs the task's emulation applies per candidate (``weight_bits``, ...).
    knobs: ClassVar[tuple[str, ...]] = ()
    #: Whether evaluations carry event counts (for the cost model).
    counts_events: ClassVar[bool] = False

    def __init__(self, params: Any, target: Target) -> None:
        self.params = params
        self.target = target

    def candidates(self, items: Sequence[Rule | Candidate]) -> list[dict[str, Rule]]:
        """Candidates as slot -> rule mappings; a bare rule is accepted for a one-slot task."""
        (first, *_) = self.slots
        return [dict(item) if isinstance(item, Mapping) else {first: item} for item in items]

    def named_candidates(self, etas: Mapping[str, float]) -> dict[str, dict[str, Rule]]:
        """The known answers and foils of this task by name (``--rule NAME``), with the study's etas."""
        (slot,) = self.slots
        return {name: {slot: named_rule(name, eta=etas[slot])} for name in NAMED_RULES}

    @abc.abstractmethod
    def evaluate(self, candidates: Sequence[Rule | Candidate], seed: int,
                 terms: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
                 capacity: int | None = None, knobs: Sequence[Mapping[str, float]] | None = None
                 ) -> list[Evaluation]:
        """Loss and metrics of each candidate, on inputs drawn from ``seed`` (same seed, same inputs).

        ``terms`` are the family terms the network holds as variables (per slot, or one sequence
        for a one-slot task), and ``capacity`` the number of candidates it holds (a smaller batch
        is padded): a study passes its search space and batch size so that every batch reuses one
        network. By default, the terms the rules use and as many candidates as given. ``knobs``
        gives each candidate's hardware knobs (see ``knobs``), overriding the target's.
        """

    def plot(self, evaluation: Evaluation, path: Path, title: str = "") -> bool:
        """Draw what the candidate learned into ``path``; returns False if the task has no such plot."""
        return False

    def plot_solutions(self, spec: Any, trials: Sequence[Any], path: Path) -> bool:
        """Draw the good candidates of a study (the shape of its solution set); False if none."""
        return False


def used_terms(rules: Sequence[Rule], terms: Sequence[str] | None, all_terms: Sequence[str]) -> tuple[str, ...]:
    """The terms a network must hold: ``terms`` plus any nonzero term of the rules, in family order."""
    wanted = set(terms or ()) | {t for rule in rules for t, v in rule.coefficients.items() if v != 0.0}
    return tuple(t for t in all_terms if t in wanted) or (all_terms[0],)


def pad(items: Sequence[Any], size: int) -> list[Any]:
    """``items`` filled up to ``size`` with copies of the last: a batch network has a fixed size, and
    its spare places run a real candidate again rather than something that might diverge."""
    return list(items) + [items[-1]] * (size - len(items))


def slot_terms(terms: Sequence[str] | Mapping[str, Sequence[str]] | None, slot: str) -> Sequence[str] | None:
    """The terms given for one slot (a plain sequence is the terms of a one-slot task)."""
    if terms is None or not isinstance(terms, Mapping):
        return terms
    return terms.get(slot)
