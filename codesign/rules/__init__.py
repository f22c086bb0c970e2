"""Plasticity rules: families written as Brian2 equation text, and the named classics.

Three families: ``polynomial`` (rate-based, :mod:`codesign.rules.polynomial`), ``spike_trace``
(spiking, :mod:`codesign.rules.spike_trace`) and ``text`` (free Brian2 text in the model file with
searched params, :mod:`codesign.rules.text`). A model has one or more rule *slots* (the Oja model one,
``w``; the PCA network two, ``feedforward`` and ``lateral``), each of one family; a *candidate* maps
each slot to a rule. On the command line a candidate is a name the model knows (``oja``,
``oja+anti_hebbian``, ``vogels``) or a rule file written by codesign.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Union

import yaml

from codesign.errors import RuleError, UnknownNameError
from codesign.rules.family import FAMILIES, Family
from codesign.rules.polynomial import NAMED_RULES, TERMS, PolynomialRule, family_equation, term_monomial, term_powers
from codesign.rules.spike_trace import SPIKE_TERMS, SpikeTraceRule, vogels
from codesign.rules.text import TextRule
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
    "TextRule",
    "family_equation",
    "term_monomial",
    "term_powers",
    "named_rule",
    "vogels",
    "load_candidate",
    "save_candidate",
]

Rule = Union[PolynomialRule, SpikeTraceRule, TextRule]
#: One candidate of a study: a rule for each slot of the task.
Candidate = Mapping[str, Rule]


def named_rule(name: str, eta: float = 10.0) -> PolynomialRule:
    """A classic rule of the polynomial family (``oja``, ``hebb``, ``anti_hebbian``, ``anti_oja``, ``zero``)."""
    if name not in NAMED_RULES:
        raise UnknownNameError("rule", name, list(NAMED_RULES), key="--rule")
    return PolynomialRule(NAMED_RULES[name], eta=eta, name=name)


@dataclasses.dataclass
class _RuleFile:
    #: A rule of a family with terms (polynomial, spike_trace): its nonzero coefficients.
    coefficients: dict[str, float] | None = None
    #: A text rule: the value of each param, in the param's unit.
    params: dict[str, float] | None = None
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
        fam = FAMILIES.get_named(self.family, file=where.file, key=where.child("family").key)
        values, other = ("params", "coefficients") if fam.free_text else ("coefficients", "params")
        if getattr(self, other) is not None:
            raise where.child(other).error(f"a {self.family} rule has no {other}", fix=f"write its {values}: instead")
        if getattr(self, values) is None:
            raise where.child(values).error("missing required key", fix=f"add {values}: <a mapping>")
        unused = [k for k in ("tau_x_ms", "tau_y_ms") if getattr(self, k) is not None and k not in fam.extras]
        unused += ["eta"] if self.eta is not None and fam.default_eta is None else []
        if unused:
            raise where.child(unused[0]).error(f"a {self.family} rule has no {unused[0]}", fix="remove it")
        for term in self.coefficients or {}:
            if term not in fam.terms:
                raise where.child("coefficients").child(term).error(
                    "unknown term", fix=f"terms of the {self.family} family: {', '.join(fam.terms)}")

    def rule(self, name: str, ref: Any) -> Rule:
        extras = {k: getattr(self, k) for k in FAMILIES[self.family].extras if getattr(self, k) is not None}
        values = self.params if self.params is not None else self.coefficients
        return FAMILIES[self.family].rule(ref, values or {}, eta=self.eta, name=self.name or name, **extras)


@dataclasses.dataclass
class _CandidateFile:
    """A rule file: one rule (the keys of :class:`_RuleFile`) or ``rules: {slot: rule}``."""

    rules: dict[str, Any]
    #: A record of the study (may be infinite), not an input.
    loss: float | None = dataclasses.field(default=None, metadata={"finite": False})
    metrics: dict[str, Any] | None = None
    study: str | None = None
    trial: int | None = None


def load_candidate(path: str | Path, slots: Mapping[str, Any]) -> dict[str, Rule]:
    """Read a rule file for a model whose rule slots are ``slots``: slot -> the model's ``rule:``
    (:attr:`codesign.models.spec.ModelSpec.rules`), or slot -> family name where no slot is a text rule."""
    where = Where(str(path))
    data = read_yaml(path, "rule file")
    if isinstance(data, dict) and "rules" not in data:
        # A single rule: the model must have a single slot.
        summary = {k: data.pop(k) for k in ("loss", "metrics", "study", "trial") if k in data}
        data = {"rules": {next(iter(slots)): data}, **summary} if len(slots) == 1 else data
    parsed = build(_CandidateFile, data, where)
    if set(parsed.rules) != set(slots):
        raise where.child("rules").error(f"has slots {sorted(parsed.rules)}, the task needs {sorted(slots)}",
                                         fix="give one rule per slot of the task")
    candidate = {}
    for slot, raw in parsed.rules.items():
        here = where.child("rules").child(slot) if len(slots) > 1 else where
        ref = None if isinstance(slots[slot], str) else slots[slot]
        expected = slots[slot] if ref is None else ref.family
        rule_file = build(_RuleFile, raw, here)
        if rule_file.family != expected:
            raise here.child("family").error(f"is {rule_file.family!r}, slot {slot!r} takes {expected!r}",
                                             fix=f"use a {expected} rule")
        try:
            candidate[slot] = rule_file.rule(Path(path).stem, ref)
        except RuleError as exc:  # a value the schema lets through but the rule refuses (eta 0, an unknown param)
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
