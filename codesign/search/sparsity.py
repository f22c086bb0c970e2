"""Sparse search: the L1 penalty on a study's family coefficients, and the terms that survive a round.

The penalty covers the searched coefficients of rule families (``theta_abc``, ``pre_1``...), the terms
whose absence makes a rule sparse. A text rule's params are left out: they carry units and ranges of
their own (a time constant, a rate), for which zero is no simpler than any other value; so are trace
time constants and hardware knobs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from codesign.rules import FAMILIES

if TYPE_CHECKING:
    from codesign.spec import StudySpec

__all__ = ["penalised_terms", "l1_penalty", "candidate_penalty", "survivors"]


def penalised_terms(spec: StudySpec) -> dict[str, tuple[str, ...]]:
    """Each family slot's searched terms (text rules' slots have none)."""
    return {slot: rule.searched for slot, rule in spec.rules.items() if not FAMILIES[rule.family].free_text}


def l1_penalty(spec: StudySpec, params: Mapping[str, float]) -> float:
    """``l1 * sum |theta|`` over the penalised terms of a trial's parameters."""
    if spec.l1 == 0.0:
        return 0.0
    return spec.l1 * sum(abs(params.get(spec.param_name(slot, term), 0.0))
                         for slot, terms in penalised_terms(spec).items() for term in terms)


def candidate_penalty(spec: StudySpec, cand: Mapping[str, Any]) -> float:
    """The L1 penalty of a candidate (slot -> rule), e.g. a named rule: every coefficient of its family slots."""
    return spec.l1 * sum(abs(value) for slot in penalised_terms(spec) for value in cand[slot].coefficients.values())


def survivors(spec: StudySpec, params: Mapping[str, float],
              threshold: float) -> tuple[dict[str, tuple[str, ...]], dict[str, float]]:
    """Each family slot's terms whose size |theta| / max |theta| (over the slot's searched terms) is at least
    ``threshold``, and the dropped parameters with that size. A slot whose coefficients are all zero keeps
    its terms (there is nothing to compare them with)."""
    kept, dropped = {}, {}
    for slot, terms in penalised_terms(spec).items():
        sizes = {term: abs(params.get(spec.param_name(slot, term), 0.0)) for term in terms}
        largest = max(sizes.values())
        if largest == 0.0:
            kept[slot] = terms
            continue
        kept[slot] = tuple(term for term in terms if sizes[term] / largest >= threshold)
        dropped.update({spec.param_name(slot, term): sizes[term] / largest for term in terms
                        if sizes[term] / largest < threshold})
    return kept, dropped
