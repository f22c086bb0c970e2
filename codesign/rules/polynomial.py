"""The rate-based polynomial (Volterra / truncated Taylor) family of plasticity rules.

``dw/dt = eta * sum_{a,b,c in 0..2} theta_abc * x^a * y^b * w^c`` with ``x`` the presynaptic rate,
``y`` the postsynaptic rate and ``w`` the weight (Confavreux et al., NeurIPS 2020). A rule is a set of
coefficients; its Brian2 equation text is what every backend runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Mapping

from brian2.utils.stringtools import word_substitute

from codesign.errors import RuleError
from codesign.rules.family import FAMILIES, Family

__all__ = [
    "TERMS",
    "term_powers",
    "term_monomial",
    "PolynomialRule",
    "family_equation",
]

#: Every term of the family, ``theta_abc`` with a, b, c the powers of x, y, w.
TERMS: tuple[str, ...] = tuple(f"theta_{a}{b}{c}" for a, b, c in itertools.product(range(3), repeat=3))

_SYMBOLS = ("x", "y", "w")


def term_powers(term: str) -> tuple[int, int, int]:
    """The powers (a, b, c) of x, y, w in ``theta_abc``; a clear error for anything else."""
    if term not in TERMS:
        raise RuleError(f"unknown term {term!r}",
                        fix="terms are theta_abc with a, b, c in 0..2 the powers of x, y, w, e.g. theta_110")
    return int(term[6]), int(term[7]), int(term[8])


def term_monomial(term: str) -> str:
    """The monomial of a term as Brian2 text: ``theta_021`` -> ``y**2*w``; ``theta_000`` -> ``1``."""
    factors = []
    for symbol, power in zip(_SYMBOLS, term_powers(term)):
        if power == 1:
            factors.append(symbol)
        elif power > 1:
            factors.append(f"{symbol}**{power}")
    return "*".join(factors) or "1"


def _substitute(text: str, pre: str, post: str, weight: str) -> str:
    return word_substitute(text, {"x": pre, "y": post, "w": weight})


def family_equation(terms: tuple[str, ...] | list[str], *, pre: str = "x", post: str = "y",
                    weight: str = "w", coefficient_suffix: str = "") -> str:
    """The Brian2 differential equation of the family with the coefficients left as variables.

    Used to simulate many candidate rules in one network: each candidate's ``theta_abc`` is a
    per-neuron variable (``coefficient_suffix="_post"``), so the code is generated once.
    """
    if not terms:
        raise RuleError("a rule family needs at least one term", fix="list terms such as theta_110")
    body = " + ".join(f"{t}{coefficient_suffix}" + ("" if term_monomial(t) == "1" else f"*{term_monomial(t)}")
                      for t in terms)
    return _substitute(f"dw/dt = eta * ({body}) : 1 (clock-driven)", pre, post, weight)


@dataclasses.dataclass(frozen=True)
class PolynomialRule:
    """One rule of the family: coefficients (missing terms are 0) and a learning rate ``eta`` in 1/s."""

    coefficients: Mapping[str, float]
    eta: float = 10.0
    name: str | None = None

    def __post_init__(self) -> None:
        for term, value in self.coefficients.items():
            term_powers(term)
            if not math.isfinite(value):
                raise RuleError(f"coefficient {term} is {value}", fix="use finite numbers")
        if not (math.isfinite(self.eta) and self.eta >= 0):
            raise RuleError(f"eta must be a finite number, at least 0, got {self.eta}", fix="use a learning rate such as 10")
        object.__setattr__(self, "coefficients", {t: float(self.coefficients[t]) for t in TERMS
                                                  if t in self.coefficients})

    def coefficient(self, term: str) -> float:
        term_powers(term)
        return self.coefficients.get(term, 0.0)

    def expression(self, *, pre: str = "x", post: str = "y", weight: str = "w", precision: int = 6) -> str:
        """The right-hand side without eta, e.g. ``x*y - y**2*w`` (zero coefficients dropped)."""
        parts = []
        for term, value in self.coefficients.items():
            if value == 0.0:
                continue
            monomial = term_monomial(term)
            magnitude = f"{abs(value):.{precision}g}"
            body = magnitude if monomial == "1" else (monomial if magnitude == "1" else f"{magnitude}*{monomial}")
            sign = "-" if value < 0 else "+"
            parts.append((sign, body))
        if not parts:
            return "0"
        text = ("-" if parts[0][0] == "-" else "") + parts[0][1]
        text += "".join(f" {sign} {body}" for sign, body in parts[1:])
        return _substitute(text, pre, post, weight)

    def equation(self, *, pre: str = "x", post: str = "y", weight: str = "w", precision: int = 6) -> str:
        """The rule as a Brian2 differential equation, ``dw/dt = eta * (...) : 1 (clock-driven)``."""
        dw = _substitute("dw/dt", pre, post, weight)
        return f"{dw} = eta * ({self.expression(pre=pre, post=post, weight=weight, precision=precision)}) : 1 (clock-driven)"

    def readable(self, precision: int = 3) -> str:
        """A short human form, ``dw/dt = eta (0.98 x y - 1.01 y^2 w)``."""
        text = self.expression(precision=precision).replace("**", "^").replace("*", " ")
        return f"dw/dt = eta ({text})"

    def normalised(self, by: str = "theta_110") -> dict[str, float]:
        """Coefficients divided by ``|theta_by|`` (the paper compares rules up to a positive scale)."""
        scale = abs(self.coefficient(by))
        if scale == 0.0:
            raise RuleError(f"cannot normalise by {by}: it is zero")
        return {t: v / scale for t, v in self.coefficients.items()}

    def to_dict(self) -> dict:
        return {"family": "polynomial", "name": self.name, "eta": self.eta,
                "coefficients": dict(self.coefficients), "equation": self.equation()}


NAMED_RULES: dict[str, Mapping[str, float]] = {
    "oja": {"theta_110": 1.0, "theta_021": -1.0},
    "anti_oja": {"theta_110": -1.0, "theta_021": 1.0},
    "hebb": {"theta_110": 1.0},
    "anti_hebbian": {"theta_110": -1.0},
    "zero": {},
}


def make(coefficients: Mapping[str, float], *, eta: float, name: str | None = None, ref: Any = None) -> PolynomialRule:
    """A rule of the family (``ref``, the model's ``rule:``, is not needed: the family writes its own text)."""
    return PolynomialRule(coefficients, eta=eta, name=name)


def template(ref: Any, terms: tuple[str, ...]) -> dict[str, str]:
    """The family as Brian2 synapse text for a batched network: ``d{w}/dt = eta_{slot} * (...)``, with
    each held term's coefficient a per-candidate variable ``{slot}_{term}`` (see :func:`variables`)."""
    slot, bind = ref.slot, ref.bind
    body = " + ".join(f"{slot}_{t}" + ("" if term_monomial(t) == "1" else f"*{term_monomial(t)}") for t in terms)
    pre, post, weight = bind.get("x", "x"), bind.get("y", "y"), bind.get("w", "w")
    text = _substitute(f"({body}) : 1 (clock-driven)", pre, post, weight)
    return {"model": f"d{weight}/dt = eta_{slot} * {text}"}


def variables(ref: Any, terms: tuple[str, ...]) -> dict[str, str]:
    """The per-candidate variables of :func:`template` and their Brian2 units."""
    slot = ref.slot
    return {f"eta_{slot}": "1/second", **{f"{slot}_{t}": "1" for t in terms}}


def values(rule: PolynomialRule, ref: Any, terms: tuple[str, ...]) -> dict[str, float]:
    """One candidate's values of :func:`variables` (in Brian2's base units)."""
    slot = ref.slot
    return {f"eta_{slot}": rule.eta, **{f"{slot}_{t}": rule.coefficient(t) for t in terms}}


FAMILIES.register("polynomial", Family("polynomial", TERMS, 10.0, make, template, variables, values,
                                          scale_term="theta_110", weight_updates="continuously"))
