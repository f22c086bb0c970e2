"""The search space of a study, and what a trial's parameters stand for.

A trial's parameters are named after the study's slots and terms (``theta_110`` in a one-slot
model, ``slot.term`` otherwise) and its hardware knobs (``hw.weight_bits``); these functions turn
the study into Optuna distributions and a trial's parameters back into rules and knobs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from codesign.rules import FAMILIES, Rule

if TYPE_CHECKING:
    from codesign.models.spec import ParamSpec
    from codesign.spec import StudySpec

__all__ = ["distributions", "knob_values", "candidate", "searched_terms", "network_terms"]


def distributions(spec: StudySpec) -> dict[str, BaseDistribution]:
    """The search space: each slot's searched coefficients (a text rule's params with their own range,
    scale and type), and its trace time constants if searched."""
    space: dict[str, BaseDistribution] = {}
    for slot, rule in spec.rules.items():
        params = spec.model.rules[slot].params
        for term in rule.searched:
            space[spec.param_name(slot, term)] = (_param_distribution(params[term]) if term in params
                                                  else FloatDistribution(*rule.coefficient_bounds))
        if rule.tau_ms is not None:
            for extra in FAMILIES[rule.family].extras:
                space[spec.param_name(slot, extra)] = FloatDistribution(*rule.tau_ms, log=True)
    for bits in ("weight_bits", "trace_bits"):
        if getattr(spec.hardware, bits) is not None:
            space[f"hw.{bits}"] = IntDistribution(*getattr(spec.hardware, bits))
    if spec.hardware.rounding is not None:
        space["hw.rounding"] = CategoricalDistribution(spec.hardware.rounding)
    return space


def _param_distribution(param: ParamSpec) -> optuna.distributions.BaseDistribution:
    low, high = param.bounds
    if param.integer:
        return IntDistribution(int(low), int(high), log=param.log)
    return FloatDistribution(low, high, log=param.log)


def knob_values(spec: StudySpec, params: dict[str, float]) -> dict[str, float]:
    """The hardware knobs a trial's parameters set (``hw.weight_bits`` -> ``weight_bits``)."""
    return {knob: params[f"hw.{knob}"] for knob in spec.hardware.knobs if f"hw.{knob}" in params}


def candidate(spec: StudySpec, params: dict[str, float], name: str | None = None) -> dict[str, Rule]:
    """The candidate (slot -> rule) that a trial's parameters stand for."""
    out = {}
    for slot, rule in spec.rules.items():
        fam = FAMILIES[rule.family]
        coefficients = {t: params[spec.param_name(slot, t)] for t in rule.searched
                        if spec.param_name(slot, t) in params}
        extras = {e: params[spec.param_name(slot, e)] for e in fam.extras if spec.param_name(slot, e) in params}
        out[slot] = fam.rule(spec.model.rules[slot], coefficients, eta=rule.learning_rate, name=name, **extras)
    return out


def searched_terms(spec: StudySpec) -> dict[str, tuple[str, ...]]:
    """Each slot's searched terms."""
    return {slot: rule.searched for slot, rule in spec.rules.items()}


def network_terms(spec: StudySpec) -> dict[str, tuple[str, ...]]:
    """Each slot's terms in the network the study's trials run in: round 0's searched terms, in every
    refinement round (see :attr:`codesign.spec.StudySpec.network_terms`)."""
    return dict(spec.network_terms) if spec.network_terms is not None else searched_terms(spec)
