"""Plasticity rules: families written as Brian2 equation text, and the named classics.

A rule is given on the command line as a name (``oja``) or as a rule file written by codesign
(``results/<study>/best_rule.yaml``); :func:`resolve_rule` accepts either.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from codesign.errors import UnknownNameError
from codesign.rules.polynomial import NAMED_RULES, TERMS, PolynomialRule, family_equation, term_monomial, term_powers
from codesign.schema import Where, build, read_yaml

__all__ = [
    "TERMS",
    "NAMED_RULES",
    "PolynomialRule",
    "family_equation",
    "term_monomial",
    "term_powers",
    "named_rule",
    "resolve_rule",
    "save_rule",
]


def named_rule(name: str, eta: float = 10.0) -> PolynomialRule:
    """A classic rule by name (``oja``, ``hebb``, ``anti_hebbian``, ``anti_oja``, ``zero``)."""
    if name not in NAMED_RULES:
        raise UnknownNameError("rule", name, list(NAMED_RULES), key="--rule")
    return PolynomialRule(NAMED_RULES[name], eta=eta, name=name)


@dataclasses.dataclass
class _RuleFile:
    coefficients: dict[str, float]
    family: str = "polynomial"
    eta: float = dataclasses.field(default=10.0, metadata={"min": 0.0})
    name: str | None = None
    # Written for people to read; ignored when loading.
    equation: str | None = None
    readable: str | None = None
    loss: float | None = None
    metrics: dict[str, Any] | None = None
    study: str | None = None
    trial: int | None = None

    def validate(self, where: Where) -> None:
        if self.family != "polynomial":
            raise where.child("family").error(f"unknown rule family {self.family!r}", fix="use: polynomial")
        for term, value in self.coefficients.items():
            if term not in TERMS:
                raise where.child("coefficients").child(term).error(
                    "unknown term", fix="terms are theta_abc, a b c in 0..2 (powers of x, y, w)")



def load_rule(path: str | Path) -> PolynomialRule:
    """Read a rule file as written by :func:`save_rule`."""
    data = build(_RuleFile, read_yaml(path, "rule file"), Where(str(path)))
    return PolynomialRule(data.coefficients, eta=data.eta, name=data.name or Path(path).stem)


def resolve_rule(name_or_file: str, eta: float = 10.0) -> PolynomialRule:
    """A named rule, or a rule file when the argument is a path (contains / or ends in .yaml)."""
    if name_or_file in NAMED_RULES:
        return named_rule(name_or_file, eta)
    if "/" in name_or_file or name_or_file.endswith((".yaml", ".yml")):
        return load_rule(name_or_file)
    raise UnknownNameError("rule", name_or_file, list(NAMED_RULES), key="--rule")


def save_rule(rule: PolynomialRule, path: str | Path, **extra: object) -> None:
    """Write a rule file (coefficients, eta, its equation, and any extra keys such as loss)."""
    data = rule.to_dict()
    data["readable"] = rule.readable()
    data.update(extra)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))
