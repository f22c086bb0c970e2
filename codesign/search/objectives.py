"""The objective registry: what a study minimises (``objectives: [loss, ...]``).

The first objective is always ``loss``; the others trade it against the hardware: ``energy`` on the
target over the model's simulated duration, or a searched number format's bits. An entry checks
that the study can give it (at load time, naming the key) and computes its value from an
evaluation, the cost of its event counts on the target, and the trial's hardware knobs.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable, Mapping

from codesign.hardware import Cost, energy_objective_kind
from codesign.registry import Registry
from codesign.schema import Where

if TYPE_CHECKING:
    from codesign.models import Evaluation
    from codesign.spec import StudySpec

__all__ = ["Objective", "OBJECTIVES"]


@dataclasses.dataclass(frozen=True)
class Objective:
    """One objective: its value for an evaluated trial, and the check that a study can give it."""

    #: ``value(spec, evaluation, cost, knobs)``; ``cost`` is None for a model that counts no events.
    value: Callable[[StudySpec, Evaluation, Cost | None, Mapping[str, float]], float]
    #: ``check(spec, where)`` raises a one-line error at ``where`` (the study's ``objectives``) when
    #: the study cannot give this objective.
    check: Callable[[StudySpec, Where], None] = lambda spec, where: None
    #: ``unit(spec)``: what the value measures, shown after the name on a plot's axis (None: the name says it).
    unit: Callable[[StudySpec], str] | None = None


OBJECTIVES: Registry[Objective] = Registry("objective")


def _energy(spec: StudySpec, evaluation: Evaluation, cost: Cost | None, knobs: Mapping[str, float]) -> float:
    energy = None if cost is None else cost.energy_j.get(energy_objective_kind(spec.target))
    return float("inf") if energy is None else energy


def _check_energy(spec: StudySpec, where: Where) -> None:
    try:
        energy_objective_kind(spec.target)
    except ValueError as exc:
        raise where.error(f"energy needs per-event figures of one kind, all published: {exc}",
                          fix="use a target whose energy figures give it, e.g. hw_targets/loihi.yaml") from None


def _bits(knob: str) -> Objective:
    def check(spec: StudySpec, where: Where) -> None:
        if getattr(spec.hardware, knob) is None:
            raise where.error(f"{knob} is an objective but not searched", fix=f"add hardware: {{{knob}: [LOW, HIGH]}}")

    return Objective(lambda spec, evaluation, cost, knobs: float(knobs[knob]), check)


OBJECTIVES.register("loss", Objective(lambda spec, evaluation, cost, knobs: evaluation.loss))
OBJECTIVES.register("energy", Objective(_energy, _check_energy,
                                        lambda spec: f"{energy_objective_kind(spec.target)} J over the run"))
for _knob in ("weight_bits", "trace_bits"):
    OBJECTIVES.register(_knob, _bits(_knob))
