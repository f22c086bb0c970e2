"""The spike-trace polynomial family of plasticity rules (spiking networks).

On a presynaptic spike:  ``w += eta * (pre_1 + pre_y * y + pre_w * w)``
On a postsynaptic spike: ``w += eta * (post_1 + post_x * x + post_w * w)``

``x`` is a presynaptic trace and ``y`` a postsynaptic trace: each jumps by 1 at its neuron's spikes
and decays with its own time constant (``tau_x_ms``, ``tau_y_ms``, both searchable). Weights are kept
in ``[0, w_max]``. Vogels et al.'s inhibitory rule (Science 2011) is the point
``pre_1 = -alpha, pre_y = 1, post_x = 1`` with ``alpha = 2 rho0 tau``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from codesign.errors import RuleError
from codesign.rules.family import FAMILIES, Family

__all__ = ["SPIKE_TERMS", "SpikeTraceRule", "vogels"]

#: Every coefficient of the family, with the factor it multiplies (Brian2 text, synapse's view).
SPIKE_TERMS: dict[str, tuple[str, str]] = {
    "pre_1": ("on_pre", "1"),
    "pre_y": ("on_pre", "y"),
    "pre_w": ("on_pre", "w"),
    "post_1": ("on_post", "1"),
    "post_x": ("on_post", "x"),
    "post_w": ("on_post", "w"),
}


@dataclasses.dataclass(frozen=True)
class SpikeTraceRule:
    """One rule of the family: coefficients (missing ones are 0), trace time constants and eta."""

    coefficients: Mapping[str, float]
    eta: float = 0.01
    tau_x_ms: float = 20.0
    tau_y_ms: float = 20.0
    name: str | None = None

    def __post_init__(self) -> None:
        for term, value in self.coefficients.items():
            if term not in SPIKE_TERMS:
                raise RuleError(f"unknown term {term!r}", fix=f"terms are {', '.join(SPIKE_TERMS)}")
            if not math.isfinite(value):
                raise RuleError(f"coefficient {term} is {value}", fix="use finite numbers")
        for name in ("eta", "tau_x_ms", "tau_y_ms"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise RuleError(f"{name} must be a positive number, got {value}", fix=f"give {name} a positive value")
        object.__setattr__(self, "coefficients", {t: float(self.coefficients[t]) for t in SPIKE_TERMS
                                                  if t in self.coefficients})

    def coefficient(self, term: str) -> float:
        return self.coefficients.get(term, 0.0)

    def _update(self, event: str) -> str:
        parts = []
        for term, (on, factor) in SPIKE_TERMS.items():
            value = self.coefficient(term)
            if on != event or value == 0.0:
                continue
            parts.append(f"{value:+.6g}" + ("" if factor == "1" else f"*{factor}"))
        return " ".join(parts).lstrip("+") or "0"

    def equations(self) -> dict[str, str]:
        """The rule as Brian2 synapse text: ``model`` (traces), ``on_pre`` and ``on_post`` updates."""
        return {
            "model": f"w : 1\ndx/dt = -x / ({self.tau_x_ms:g}*ms) : 1 (event-driven)\n"
                     f"dy/dt = -y / ({self.tau_y_ms:g}*ms) : 1 (event-driven)",
            "on_pre": f"x += 1\nw = clip(w + eta * ({self._update('on_pre')}), 0, w_max)",
            "on_post": f"y += 1\nw = clip(w + eta * ({self._update('on_post')}), 0, w_max)",
        }

    def equation(self) -> str:
        """The weight updates as Brian2 statements, ``on_pre: ...; on_post: ...``."""
        return (f"on_pre: w = clip(w + eta * ({self._update('on_pre')}), 0, w_max); "
                f"on_post: w = clip(w + eta * ({self._update('on_post')}), 0, w_max)")

    def readable(self) -> str:
        return (f"pre spike: dw = eta ({self._update('on_pre')}); post spike: dw = eta ({self._update('on_post')}); "
                f"tau_x {self.tau_x_ms:g} ms, tau_y {self.tau_y_ms:g} ms")

    def to_dict(self) -> dict:
        return {"family": "spike_trace", "name": self.name, "eta": self.eta, "tau_x_ms": self.tau_x_ms,
                "tau_y_ms": self.tau_y_ms, "coefficients": dict(self.coefficients), "equation": self.equation()}


def vogels(rho0_hz: float = 10.0, tau_ms: float = 20.0, eta: float = 0.01) -> SpikeTraceRule:
    """Vogels et al. (2011) inhibitory rule for target rate ``rho0``: ``alpha = 2 rho0 tau``."""
    alpha = 2.0 * rho0_hz * tau_ms * 1e-3
    return SpikeTraceRule({"pre_1": -alpha, "pre_y": 1.0, "post_x": 1.0}, eta=eta, tau_x_ms=tau_ms,
                          tau_y_ms=tau_ms, name="vogels")


def _update_text(slot: str, event: str, x: str, y: str, w: str) -> str:
    symbols = {"x": x, "y": y, "w": w}
    return " + ".join(f"{slot}_{term}" + ("" if factor == "1" else f"*{symbols[factor]}")
                      for term, (on, factor) in SPIKE_TERMS.items() if on == event)


def make(coefficients: Mapping[str, float], *, eta: float, name: str | None = None, ref: Any = None,
         **extras: float) -> SpikeTraceRule:
    """A rule of the family (``ref``, the model's ``rule:``, is not needed: the family writes its own text);
    ``extras``: the trace time constants ``tau_x_ms``, ``tau_y_ms``."""
    return SpikeTraceRule(coefficients, eta=eta, name=name, **extras)


def template(ref: Any, terms: tuple[str, ...]) -> dict[str, str]:
    """The family as Brian2 synapse text for a batched network: traces ``x`` (pre) and ``y`` (post)
    with per-candidate time constants, and the weight updates on each spike, kept in ``[0, w_max]``.
    Every term is written (a term the study does not search is 0): the text is the same for any
    terms, so one build serves them all."""
    slot, bind = ref.slot, ref.bind
    x, y, w, w_max = bind.get("x", "x"), bind.get("y", "y"), bind.get("w", "w"), bind.get("w_max", "w_max")
    return {
        "model": f"d{x}/dt = -{x} / tau_x_{slot} : 1 (event-driven)\nd{y}/dt = -{y} / tau_y_{slot} : 1 (event-driven)",
        "on_pre": f"{x} += 1\n{w} = clip({w} + eta_{slot} * ({_update_text(slot, 'on_pre', x, y, w)}), 0, {w_max})",
        "on_post": f"{y} += 1\n{w} = clip({w} + eta_{slot} * ({_update_text(slot, 'on_post', x, y, w)}), 0, {w_max})",
    }


def variables(ref: Any, terms: tuple[str, ...]) -> dict[str, str]:
    """The per-candidate variables of :func:`template` and their Brian2 units."""
    slot = ref.slot
    return {f"eta_{slot}": "1", f"tau_x_{slot}": "second", f"tau_y_{slot}": "second",
            **{f"{slot}_{t}": "1" for t in SPIKE_TERMS}}


def values(rule: SpikeTraceRule, ref: Any, terms: tuple[str, ...]) -> dict[str, float]:
    """One candidate's values of :func:`variables` (in Brian2's base units: seconds)."""
    slot = ref.slot
    return {f"eta_{slot}": rule.eta, f"tau_x_{slot}": rule.tau_x_ms * 1e-3, f"tau_y_{slot}": rule.tau_y_ms * 1e-3,
            **{f"{slot}_{t}": rule.coefficient(t) for t in SPIKE_TERMS}}


FAMILIES.register("spike_trace", Family("spike_trace", tuple(SPIKE_TERMS), 0.01, make, template, variables, values,
                                            ("tau_x_ms", "tau_y_ms"), weight_updates="spikes",
                                            engines=("sum_of_products",)))
