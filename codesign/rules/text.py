"""Free Brian2 text rules (``family: text``): the rule is text the model file writes on its synapse, with
searched constants.

A model's synapse says ``rule: {slot: S, family: text, model: ..., on_pre: ..., on_post: ..., params:
{NAME: {bounds: [low, high], unit: Hz, log: true}}}``. The text is added to the synapse's own; each
param is a constant of the text whose value differs per candidate (a per-candidate variable of the
batched network, like a polynomial rule's coefficients). A :class:`TextRule` is one candidate of
such a slot: a value per param, in the param's unit.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Mapping

from codesign.errors import RuleError
from codesign.rules.family import FAMILIES, Family

__all__ = ["TextRule", "make", "template", "variables", "values", "unit_scale"]

#: The keys of a rule's Brian2 text, as on a synapse.
TEXT_KEYS = ("model", "on_pre", "on_post")


@dataclasses.dataclass(frozen=True)
class TextRule:
    """One candidate of a text rule's slot: ``values`` (param -> number in the param's unit), with the
    units and the rule's text kept for people to read."""

    values: Mapping[str, float]
    name: str | None = None
    units: Mapping[str, str] = dataclasses.field(default_factory=dict)
    text: str = ""
    #: A text rule has no learning rate of its own: its rates are among its params.
    eta: ClassVar[None] = None

    def __post_init__(self) -> None:
        for param, value in self.values.items():
            if not math.isfinite(value):
                raise RuleError(f"param {param} is {value}", fix="use finite numbers")
        object.__setattr__(self, "values", {k: float(v) for k, v in self.values.items()})

    @property
    def coefficients(self) -> dict[str, float]:
        """The values, under the name the other families give their searched numbers."""
        return dict(self.values)

    def coefficient(self, term: str) -> float:
        if term not in self.values:
            raise RuleError(f"unknown param {term!r}", fix=f"params of this rule: {', '.join(self.values)}")
        return self.values[term]

    def _assignments(self, precision: int) -> str:
        return ", ".join(f"{k} = {v:.{precision}g}" + ("" if self.units.get(k, "1") == "1" else f"*{self.units[k]}")
                         for k, v in self.values.items())

    def equation(self) -> str:
        """The rule's Brian2 text with its values, ``on_post: w *= ...; with eta = 0.1*Hz, ...``."""
        return f"{self.text}; with {self._assignments(6)}" if self.text else self._assignments(6)

    def readable(self) -> str:
        return self._assignments(3)

    def to_dict(self) -> dict:
        return {"family": "text", "name": self.name, "params": dict(self.values), "equation": self.equation()}


def unit_scale(unit: str) -> tuple[str, float]:
    """A param's unit as (the Brian2 base unit its variable is declared in, what one unit is in it):
    ``ms`` -> (``second``, 0.001), ``Hz`` -> (``hertz``, 1.0), ``1`` -> (``1``, 1.0)."""
    from brian2 import Equations, Unit, get_unit

    from codesign.expressions import ExpressionError, evaluate

    try:
        value = evaluate(unit, {})
    except ExpressionError:
        value = None
    if isinstance(value, (int, float)) and value == 1:
        return "1", 1.0
    if not isinstance(value, Unit):
        raise RuleError(f"{unit!r} is not a Brian2 unit", fix="write a unit such as Hz, ms, mV or 1")
    if value.is_dimensionless:
        return "1", float(value)
    base = get_unit(value.dim)
    try:
        Equations(f"x : {base!r}")
    except Exception:  # Brian2 declares variables in base units only: volt/second has no name it takes
        raise RuleError(f"{unit!r} has no Brian2 base unit to declare a variable in",
                        fix="use a unit such as Hz, second, volt, siemens or amp, or 1 and units in the text") from None
    return repr(base), float(value / base)


def _in_unit(param: str, value: Any, unit: str) -> float:
    """A value given as a number (in the param's unit) or as a Brian2 quantity (converted to it)."""
    from brian2 import Quantity

    from codesign.expressions import evaluate

    if not isinstance(value, Quantity) or value.is_dimensionless:
        return float(value)
    one = evaluate(unit, {})
    if getattr(one, "dim", None) != value.dim:
        raise RuleError(f"param {param} is {value}, not a quantity in {unit}",
                        fix=f"write a number in {unit}, or a quantity of its dimension")
    return float(value / one)


def make(coefficients: Mapping[str, Any], *, eta: float | None = None, name: str | None = None,
         ref: Any = None) -> TextRule:
    """The candidate of the text rule ``ref`` (a model's ``rule:``) with these param values; a param
    not given takes its ``default``. Values are numbers in the param's unit, or quantities."""
    if ref is None:
        raise RuleError("a text rule needs its model", fix="load the rule with its model's rule slots")
    if eta is not None:
        raise RuleError("a text rule has no eta: its rates are params of its text",
                        fix="remove eta, and search a param of the rule instead")
    for param in coefficients:
        if param not in ref.params:
            raise RuleError(f"unknown param {param!r}", fix=f"params of rule slot {ref.slot}: {', '.join(ref.params)}")
    values = {}
    for param, spec in ref.params.items():
        if param in coefficients:
            values[param] = _in_unit(param, coefficients[param], spec.unit)
        elif spec.default is not None:
            values[param] = float(spec.default)
        else:
            raise RuleError(f"no value for param {param!r}",
                            fix=f"give {param} a value, or a default: in the model's params of slot {ref.slot}")
        if spec.integer and values[param] != int(values[param]):
            raise RuleError(f"param {param} must be a whole number, got {values[param]:g}", fix="give a whole number")
    return TextRule(values, name=name, units={k: p.unit for k, p in ref.params.items()}, text=rule_text(ref))


def rule_text(ref: Any) -> str:
    """The rule's Brian2 text on one line: ``model: ...; on_post: ...``."""
    return "; ".join(f"{key}: " + "; ".join(line.strip() for line in getattr(ref, key).splitlines() if line.strip())
                     for key in TEXT_KEYS if getattr(ref, key))


def template(ref: Any, terms: tuple[str, ...]) -> dict[str, str]:
    """The rule's own text, added to its synapse's; the params stay names (per-candidate variables)."""
    return {key: getattr(ref, key) for key in TEXT_KEYS if getattr(ref, key)}


def variables(ref: Any, terms: tuple[str, ...]) -> dict[str, str]:
    """Every param (the text names them all, searched or not), in its Brian2 base unit."""
    return {param: unit_scale(spec.unit)[0] for param, spec in ref.params.items()}


def values(rule: TextRule, ref: Any, terms: tuple[str, ...]) -> dict[str, float]:
    """One candidate's values of :func:`variables`, in base units."""
    return {param: rule.coefficient(param) * unit_scale(spec.unit)[1] for param, spec in ref.params.items()}


FAMILIES.register("text", Family("text", (), None, make, template, variables, values))
