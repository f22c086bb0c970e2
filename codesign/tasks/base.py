"""The contract every task follows: evaluate a batch of candidate rules in one network."""

from __future__ import annotations

import abc
import dataclasses
import math
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from codesign.hardware import Target
from codesign.rules import PolynomialRule

__all__ = ["Evaluation", "Task", "LOSS_CAP", "used_terms"]

#: Loss given to a candidate whose simulation diverged (NaN or infinite weights), and the ceiling of
#: every loss, so that one runaway rule cannot dominate a sampler's statistics.
LOSS_CAP = 10.0


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

    @staticmethod
    def capped(loss: float) -> float:
        return LOSS_CAP if not math.isfinite(loss) else min(float(loss), LOSS_CAP)


class Task(abc.ABC):
    """A network and a loss. Subclasses set ``name`` and ``Params`` (a schema dataclass).

    ``evaluate`` must simulate all candidates of a batch in one network, with each candidate's
    coefficients held in variables, so that code is generated once per batch shape and not once
    per candidate. Instances keep their built network between calls; they are not thread safe.
    """

    name: ClassVar[str]
    Params: ClassVar[type]

    def __init__(self, params: Any, target: Target) -> None:
        self.params = params
        self.target = target

    @abc.abstractmethod
    def evaluate(self, rules: Sequence[PolynomialRule], seed: int, terms: Sequence[str] | None = None,
                 capacity: int | None = None) -> list[Evaluation]:
        """Loss and metrics of each rule, on inputs drawn from ``seed`` (same seed, same inputs).

        ``terms`` are the family terms the network holds as variables, and ``capacity`` the number
        of candidates it holds (a smaller batch is padded): a study passes its search space and
        batch size so that every batch reuses one network. By default, the terms the rules use
        and as many candidates as rules.
        """

    def plot(self, evaluation: Evaluation, path: Path, title: str = "") -> bool:
        """Draw what the rule learned into ``path``; returns False if the task has no such plot."""
        return False


def used_terms(rules: Sequence[PolynomialRule], terms: Sequence[str] | None) -> tuple[str, ...]:
    """The terms a network must hold: ``terms`` plus any nonzero term of the rules, in family order."""
    from codesign.rules import TERMS

    wanted = set(terms or ()) | {t for rule in rules for t, v in rule.coefficients.items() if v != 0.0}
    return tuple(t for t in TERMS if t in wanted) or ("theta_110",)
