"""Plasticity rules: families written as Brian2 equation text, and the named classics.

Two families: ``polynomial`` (rate-based, :mod:`codesign.rules.polynomial`) and ``spike_trace``
(spiking, :mod:`codesign.rules.spike_trace`). A task has one or more rule *slots* (the Oja task one,
``w``; the PCA network two, ``feedforward`` and ``lateral``), each of one family; a *candidate* maps
each slot to a rule. On the command line a candidate is a name the task knows (``oja``,
``oja+anti_hebbian``, ``vogels``) or a rule file written by codesign.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping, Union

import yaml

from codesign.errors import RuleError, UnknownNameError
from codesign.rules import polynomial, spike_trace
from codesign.rules.polynomial import NAMED_RULES, TERMS, PolynomialRule, family_equation, term_monomial, term_powers
from codesign.rules.spike_trace import SPIKE_TERMS, SpikeTraceRule, vogels
from codesign.schema import Where, build, read_yaml

__all__ = [
    "TERMS",
    "SPIKE_TERMS",
    "NAMED_RULES",
    "FAMILIES",
    "Family",
    "Rule",
    "Candidate",
    "PolynomialRule",
    "SpikeTraceRule",
    "family_equation",
    "term_monomial",
    "term_powers",
    "named_rule",
    "vogels",
    "load_candidate",
    "save_candidate",
]

Rule = Union[PolynomialRule, SpikeTraceRule]
#: One candidate of a study: a rule for each slot of the task.
Candidate = Mapping[str, Rule]


@dataclasses.dataclass(frozen=True)
class Family:
    """A family of rules: its terms, its default learning rate and how to make one of its rules."""

    name: str
    terms: tuple[str, ...]
    default_eta: float
    make: Callable[..., Rule]
    #: Brian2 synapse text of the family for a batched network (slot, symbol bindings, held terms),
    #: its per-candidate variables with their units, and one rule's values of them.
    template: Callable[..., dict[str, str]] = None  # type: ignore[assignment]
    variables: Callable[..., dict[str, str]] = None  # type: ignore[assignment]
    values: Callable[..., dict[str, float]] = None  # type: ignore[assignment]
    #: Extra parameters a study may search besides the coefficients (name -> default value).
    extras: tuple[str, ...] = ()


FAMILIES: dict[str, Family] = {
    "polynomial": Family("polynomial", TERMS, 10.0, PolynomialRule, polynomial.template, polynomial.variables,
                         polynomial.values),
    "spike_trace": Family("spike_trace", tuple(SPIKE_TERMS), 0.01, SpikeTraceRule, spike_trace.template,
                          spike_trace.variables, spike_trace.values, ("tau_x_ms", "tau_y_ms")),
}


def family(name: str, **where: str | None) -> Family:
    if name not in FAMILIES:
        raise UnknownNameError("rule family", name, list(FAMILIES), **where)
    return FAMILIES[name]


def named_rule(name: str, eta: float = 10.0) -> PolynomialRule:
    """A classic rule of the polynomial family (``oja``, ``hebb``, ``anti_hebbian``, ``anti_oja``, ``zero``)."""
    if name not in NAMED_RULES:
        raise UnknownNameError("rule", name, list(NAMED_RULES), key="--rule")
    return PolynomialRule(NAMED_RULES[name], eta=eta, name=name)


@dataclasses.dataclass
class _RuleFile:
    coefficients: dict[str, float]
    family: str = "polynomial"
    #: Default: the family's (as in a study file); codesign writes it into every rule file.
    eta: float | None = dataclasses.field(default=None, metadata={"min": 0.0})
    tau_x_ms: float | None = dataclasses.field(default=None, metadata={"min": 0.0})
    tau_y_ms: float | None = dataclasses.field(default=None, metadata={"min": 0.0})
    name: str | None = None
    # Written for people to read; ignored when loading.
    equation: str | None = None
    readable: str | None = None

    def validate(self, where: Where) -> None:
        known = family(self.family, file=where.file, key=where.child("family").key).terms
        for term in self.coefficients:
            if term not in known:
                raise where.child("coefficients").child(term).error(
                    "unknown term", fix=f"terms of the {self.family} family: {', '.join(known)}")

    def rule(self, name: str) -> Rule:
        extras = {k: getattr(self, k) for k in FAMILIES[self.family].extras if getattr(self, k) is not None}
        eta = FAMILIES[self.family].default_eta if self.eta is None else self.eta
        return FAMILIES[self.family].make(self.coefficients, eta=eta, name=self.name or name, **extras)


@dataclasses.dataclass
class _CandidateFile:
    """A rule file: one rule (the keys of :class:`_RuleFile`) or ``rules: {slot: rule}``."""

    rules: dict[str, Any]
    #: A record of the study (may be infinite), not an input.
    loss: float | None = dataclasses.field(default=None, metadata={"finite": False})
    metrics: dict[str, Any] | None = None
    study: str | None = None
    trial: int | None = None


def load_candidate(path: str | Path, slots: Mapping[str, str]) -> dict[str, Rule]:
    """Read a rule file for a task whose rule slots (slot -> family) are ``slots``."""
    where = Where(str(path))
    data = read_yaml(path, "rule file")
    if isinstance(data, dict) and "rules" not in data:
        # A single rule: the task must have a single slot.
        summary = {k: data.pop(k) for k in ("loss", "metrics", "study", "trial") if k in data}
        data = {"rules": {next(iter(slots)): data}, **summary} if len(slots) == 1 else data
    parsed = build(_CandidateFile, data, where)
    if set(parsed.rules) != set(slots):
        raise where.child("rules").error(f"has slots {sorted(parsed.rules)}, the task needs {sorted(slots)}",
                                         fix="give one rule per slot of the task")
    candidate = {}
    for slot, raw in parsed.rules.items():
        here = where.child("rules").child(slot) if len(slots) > 1 else where
        rule_file = build(_RuleFile, raw, here)
        if rule_file.family != slots[slot]:
            raise here.child("family").error(f"is {rule_file.family!r}, slot {slot!r} takes {slots[slot]!r}",
                                             fix=f"use a {slots[slot]} rule")
        try:
            candidate[slot] = rule_file.rule(Path(path).stem)
        except RuleError as exc:  # a value the schema lets through but the rule refuses (eta 0)
            raise here.error(exc.message, fix=exc.fix) from None
    return candidate


def save_candidate(candidate: Candidate, path: str | Path, **extra: object) -> None:
    """Write a rule file: the rule itself for a one-slot task, else ``rules: {slot: rule}``; plus ``extra``."""
    def one(rule: Rule) -> dict:
        data = rule.to_dict()
        data["readable"] = rule.readable()
        return data

    data: dict[str, Any] = one(next(iter(candidate.values()))) if len(candidate) == 1 else {
        "rules": {slot: one(rule) for slot, rule in candidate.items()}}
    data.update(extra)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))
