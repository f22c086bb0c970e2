"""What a rule family is (:class:`Family`) and the registry of families (:data:`FAMILIES`).

Each family registers itself at the end of its own module (:mod:`~codesign.rules.polynomial`,
:mod:`~codesign.rules.spike_trace`, :mod:`~codesign.rules.text`); importing :mod:`codesign.rules`
imports them all.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal, Mapping

from codesign.registry import Registry

__all__ = ["Family", "FAMILIES"]


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
    make: Callable[..., Any]
    #: Brian2 synapse text of the family for a batched network (``template(ref, held terms)``), its
    #: per-candidate variables with their units (``variables(ref, terms)``), and one rule's values of
    #: them (``values(rule, ref, terms)``).
    template: Callable[..., dict[str, str]]
    variables: Callable[..., dict[str, str]]
    values: Callable[..., dict[str, float]]
    #: Extra parameters a study may search besides the coefficients (name -> default value).
    extras: tuple[str, ...] = ()
    #: The term that sets a rule's scale (a Hebbian term): summaries also show every coefficient
    #: divided by its size, which compares rules whatever their learning rate.
    scale_term: str | None = None
    #: How the family's text changes the weight: ``"spikes"`` (statements run at pre/post spikes: the
    #: hardware emulation rounds them), ``"continuously"`` (a differential equation of the weight, which
    #: the emulation cannot round), or None where each rule's own text decides.
    weight_updates: Literal["spikes", "continuously"] | None = None
    #: The fixed learning engines (a target's ``learning.engine``) that run the family's rules as programs.
    engines: tuple[str, ...] = ()

    @property
    def free_text(self) -> bool:
        """Whether its rules are the model's own text (their terms are the slot's params)."""
        return not self.terms

    def terms_of(self, ref: Any) -> tuple[str, ...]:
        """The terms of the model's slot ``ref``: the family's, or a text rule's params."""
        return self.terms or tuple(ref.params)

    def rule(self, ref: Any, coefficients: Mapping[str, Any], *, eta: float | None = None,
             name: str | None = None, **extras: float) -> Any:
        """One rule of this family for the model's slot ``ref``; ``eta`` defaults to the family's."""
        return self.make(coefficients, eta=self.default_eta if eta is None else eta, name=name, ref=ref, **extras)

    def gate_variable(self, ref: Any) -> str | None:
        """The variable that scales every change of the slot's rule (a phase that leaves the synapse out
        of ``plastic:`` multiplies it by 0): the family's ``eta_SLOT``, or a text rule's ``learning_rate``."""
        return ref.learning_rate if self.free_text else f"eta_{ref.slot}"


FAMILIES: Registry[Family] = Registry("rule family")
