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
from typing import Any, Callable, Mapping, Union

import yaml

from codesign.errors import RuleError, UnknownNameError
from codesign.rules import polynomial, spike_trace, text
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


@dataclasses.dataclass(frozen=True)
class Family:
    """A family of rules: its terms, its default learning rate and how to make one of its rules.

    A family without terms of its own (``text``) takes them from the rule slot: the params a model
    declares with the rule's own Brian2 text. The functions take the slot's ``rule:`` of the model
    (:class:`codesign.models.spec.RuleRef`) as ``ref``.
    """

    name: str
    terms: tuple[str, ...]
    default_eta: float | None
    #: ``make(coefficients, eta=, name=, ref=, **extras)``: one rule (see :meth:`rule`).
    make: Callable[..., Rule]
    #: Brian2 synapse text of the family for a batched network (``template(ref, held terms)``), its
    #: per-candidate variables with their units (``variables(ref, terms)``), and one rule's values of
    #: them (``values(rule, ref, terms)``).
    template: Callable[..., dict[str, str]]
    variables: Callable[..., dict[str, str]]
    values: Callable[..., dict[str, float]]
    #: Extra parameters a study may search besides the coefficients (name -> default value).
    extras: tuple[str, ...] = ()

    @property
    def free_text(self) -> bool:
        """Whether its rules are the model's own text (their terms are the slot's params)."""
        return not self.terms

    def terms_of(self, ref: Any) -> tuple[str, ...]:
        """The terms of the model's slot ``ref``: the family's, or a text rule's params."""
        return self.terms or tuple(ref.params)

    def rule(self, ref: Any, coefficients: Mapping[str, Any], *, eta: float | None = None,
             name: str | None = None, **extras: float) -> Rule:
        """One rule of this family for the model's slot ``ref``; ``eta`` defaults to the family's."""
        return self.make(coefficients, eta=self.default_eta if eta is None else eta, name=name, ref=ref, **extras)

    def gate_variable(self, ref: Any) -> str | None:
        """The variable that scales every change of the slot's rule (a phase that leaves the synapse out
        of ``plastic:`` multiplies it by 0): the family's ``eta_SLOT``, or a text rule's ``learning_rate``."""
        return ref.learning_rate if self.free_text else f"eta_{ref.slot}"


FAMILIES: dict[str, Family] = {
    "polynomial": Family("polynomial", TERMS, 10.0, polynomial.make, polynomial.template, polynomial.variables,
                         polynomial.values),
    "spike_trace": Family("spike_trace", tuple(SPIKE_TERMS), 0.01, spike_trace.make, spike_trace.template,
                          spike_trace.variables, spike_trace.values, ("tau_x_ms", "tau_y_ms")),
    "text": Family("text", (), None, text.make, text.template, text.variables, text.values),
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
        fam = family(self.family, file=where.file, key=where.child("family").key)
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
