"""Compile a Brian2 spike-trace plasticity rule into a Loihi 2 learning rule (lava-nc 0.10.0).

Loihi 2's learning engine computes ``dw = sum_i S_i * D_i * prod_j F_ij`` at the end of every
learning epoch: each product has one dependency ``D`` (``x0``: the presynaptic neuron spiked,
``y0``: the postsynaptic neuron spiked), factors ``F`` among the presynaptic traces ``x1, x2``, the
postsynaptic traces ``y1, y2, y3`` and the weight ``w``, and a scale ``S = mantissa * 2**exponent``
with the mantissa in [-8, 7] and the exponent in [-7, 8] (SCIENCE.md section 6). lava-nc emulates it
with ``LearningDense`` and a ``Loihi2FLearningRule`` whose ``dw`` is a string such as
``"5*2^-5*y0*x1 - 5*2^-5*x0*y1"``.

The compiler works in two steps:

1. :func:`expand_rule` reads the Brian2 synapse text (``model`` with the trace equations,
   ``on_pre`` and ``on_post`` statements) with Brian2's own parsers (``Equations``,
   ``parse_statement``, ``str_to_sympy``), executes each event's statements symbolically in SymPy
   and expands the weight change into monomials of traces and ``w``, one set per event. Statement
   order is honoured: a weight update written before its own trace's ``x += 1`` uses the trace
   before the jump, which the compiler rewrites as ``x - 1`` because Loihi evaluates traces after
   the impulse of the current step.
2. :func:`lower` maps the expansion to Loihi units and quantises each scale. A Brian2 trace that
   jumps by ``c`` becomes a Loihi trace with impulse ``I`` (so ``x = X * c / I``), a decay ``tau``
   in time steps (lava decays a trace by ``exp(-1/tau)`` per step; the register is an integer, 8
   bits in lava's fixed-point model) and Loihi weights are ``W = sign * weight_scale * w``.

A rule that Loihi 2 cannot run is refused with a :class:`~codesign.errors.RuleError` naming the
term and the limit it breaks: a division by a trace or the weight, a non-integer power, a function
(``exp``, ``abs``, ``clip`` other than the final bounds...), a factor without a register (membrane
voltage, time), more traces on a side than Loihi has, a scale out of range after quantisation, a
trace that is not an exponentially decaying sum of constant impulses.

Coincident spikes: when pre and post spike in the same time step, Loihi evaluates both sides'
traces after that step's impulses, while Brian2 runs ``on_pre`` before ``on_post`` (``on_pre`` sees
the postsynaptic trace before the jump). Loihi also sums both events' changes computed from the
same old weight. Both differences only concern coincident spikes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable, Literal, Mapping

import numpy as np

from codesign.errors import RuleError
from codesign.hardware.loihi2.limits import DEFAULT_LIMITS, EngineLimits

__all__ = ["BrianTerm", "ExpandedRule", "LoihiTerm", "TraceMap", "CompiledRule", "Quantised",
           "expand_rule", "lower", "compile_rule", "quantise_scale", "optimise_impulses", "fixed_shift"]

EVENTS = {"pre": "x0", "post": "y0"}
REGISTERS = {"pre": ("x1", "x2"), "post": ("y1", "y2", "y3")}
#: Bit widths lava's fixed-point applier adds up per factor (``constants.FACTOR_TO_WIDTH_DICT``).
_WIDTHS = {"x1": 7, "x2": 7, "y1": 7, "y2": 7, "y3": 7, "w": 9}
#: Names Brian2 provides in synapse code that Loihi 2's learning engine has no register for.
_NO_REGISTER = {"t", "dt", "t_in_timesteps", "lastspike", "lastupdate", "i", "j", "N", "N_incoming",
                "N_outgoing", "delay", "xi"}


# --------------------------------------------------------------------------------------------
# Quantisation of scales


@dataclasses.dataclass(frozen=True)
class Quantised:
    """A scale ``value`` written as ``mantissa * 2**exponent`` (the closest representable value)."""

    value: float
    mantissa: int
    exponent: int

    @property
    def quantised(self) -> float:
        return self.mantissa * 2.0**self.exponent

    @property
    def error(self) -> float:
        return self.quantised - self.value

    @property
    def relative_error(self) -> float:
        return abs(self.error) / abs(self.value) if self.value else 0.0


def quantise_scale(value: float, limits: EngineLimits = DEFAULT_LIMITS) -> Quantised | None:
    """The representable scale closest to ``value``; ``None`` if that is zero (underflow).

    Candidates are ``m * 2**e`` with ``m`` in ``limits.scale_mantissa`` and ``e`` in
    ``limits.scale_exponent``. Among equally close candidates the one with the largest mantissa
    (smallest exponent) wins: lava's fixed-point engine multiplies by the mantissa before it shifts
    right, so a larger mantissa keeps more bits. A mantissa of -8 with an exponent below the top is
    written as ``-4 * 2**(e+1)``, as lava's parser stores it. Raises ``ValueError`` if ``value`` is
    beyond the largest scale (overflow); :func:`lower` turns that into a :class:`RuleError`.
    """
    (m_low, m_high), (e_low, e_high) = limits.scale_mantissa, limits.scale_exponent
    if not math.isfinite(value):
        raise ValueError(f"scale {value} is not finite")
    if value == 0.0:
        return None
    top = (m_high + 0.5) * 2.0**e_high if value > 0 else (m_low - 0.5) * 2.0**e_high
    if abs(value) > abs(top):
        raise ValueError(f"scale {value:.6g} is beyond the largest representable "
                         f"{(m_high if value > 0 else m_low) * 2.0**e_high:g}")
    if abs(value) < 0.5 * 2.0**e_low:
        return None
    best: tuple[float, int, int] | None = None
    for e in range(e_low, e_high + 1):
        m = int(math.floor(value / 2.0**e + 0.5))
        m = min(max(m, m_low), m_high)
        if m == 0:
            continue
        error = abs(m * 2.0**e - value)
        if best is None or error < best[0] - 1e-15 * abs(value):
            best = (error, m, e)
    if best is None:  # the mantissa range always holds a nonzero value; this guards a changed range
        raise RuntimeError(f"no representable scale for {value!r}")
    _, m, e = best
    if m == -8 and e < e_high:
        m, e = -4, e + 1
    return Quantised(value, m, e)


def fixed_shift(factors: Iterable[str], limits: EngineLimits = DEFAULT_LIMITS) -> int:
    """The right shift lava's fixed-point engine applies to a product with these factors.

    ``LearningRuleApplierBitApprox.apply`` adds the factors' bit widths (traces 7, w 9) and the
    mantissa's 4, and shifts the product right by the excess over the 15-bit accumulator.
    """
    width = sum(_WIDTHS[f] for f in factors) + limits.scale_mantissa_bits
    return max(0, width - limits.accumulator_bits)


# --------------------------------------------------------------------------------------------
# Step 1: Brian2 text -> monomials


@dataclasses.dataclass(frozen=True)
class Trace:
    """A Brian2 trace: ``dx/dt = -x / tau``, jumping by ``increment`` at its side's spikes."""

    name: str
    side: Literal["pre", "post"]
    tau_ms: float
    increment: float


@dataclasses.dataclass(frozen=True)
class BrianTerm:
    """One monomial of a weight change in Brian2 units: ``coefficient * prod(var**power)``."""

    event: Literal["pre", "post"]
    powers: tuple[tuple[str, int], ...]
    coefficient: float
    source: str

    @property
    def text(self) -> str:
        factors = "*".join(name if p == 1 else f"{name}**{p}" for name, p in self.powers)
        return f"{self.coefficient:.6g}" + (f"*{factors}" if factors else "")


@dataclasses.dataclass(frozen=True)
class ExpandedRule:
    """A rule as monomials per event, with its traces (only those the weight change reads)."""

    terms: tuple[BrianTerm, ...]
    traces: tuple[Trace, ...]
    weight: str
    #: ``(low, high)`` of the final ``clip`` of the weight, if any.
    bounds: tuple[float | None, float | None]
    #: Statements that act on the postsynaptic neuron (``ge_post += w``): Lava's Dense does them.
    transmission: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def scaled(self, factor: float) -> ExpandedRule:
        """The same rule with every weight change multiplied by ``factor`` (a learning rate)."""
        return dataclasses.replace(self, terms=tuple(dataclasses.replace(t, coefficient=t.coefficient * factor)
                                                      for t in self.terms))

    def trace(self, name: str) -> Trace:
        return next(t for t in self.traces if t.name == name)


def _value(name: str, namespace: Mapping[str, Any]) -> float | None:
    """The numeric value (SI) of a constant: the namespace first, then Brian2's units."""
    if name in namespace:
        value = namespace[name]
    else:
        import brian2.units as units
        from brian2.units.fundamentalunits import Unit

        value = getattr(units, name, None)
        if not isinstance(value, Unit):
            return None
    try:
        return float(np.asarray(value, dtype=float))
    except (TypeError, ValueError):
        raise RuleError(f"constant {name} = {value!r} is not a number", fix="give a number (or a Brian2 quantity)")


def _lines(code: str) -> list[str]:
    """Brian2 abstract code's statements: one per line, or separated by ';'."""
    from brian2.utils.stringtools import deindent, strip_empty_lines

    code = strip_empty_lines(deindent(code or ""))
    return [s.strip() for line in code.splitlines() for s in line.split(";") if s.strip()]


def _parse(expr: str, where: str):
    from brian2.parsing.sympytools import str_to_sympy

    try:
        return str_to_sympy(expr)
    except SyntaxError as exc:
        raise RuleError(f"cannot parse {expr!r}: {exc}", key=where) from exc


def _unknown(name: str, where: str) -> RuleError:
    if name in _NO_REGISTER or name.endswith(("_pre", "_post")):
        return RuleError(f"factor {name}: Loihi 2 has no register for it (a product's factors are traces "
                         f"x1, x2, y1, y2, y3, the weight w and constants)", key=where,
                         fix=f"express the rule with spike traces and w, or give {name} a value if it is a constant")
    return RuleError(f"no value for {name}", key=where, fix=f"add {name} to the namespace of constants")


def _trace_decay(name: str, equation, namespace: Mapping[str, Any]) -> float:
    """tau (ms) of ``dx/dt = -x/tau``; refuses any other dynamics."""
    import sympy

    where = f"model.{name}"
    rhs = _parse(equation.expr.code, where)
    symbol = sympy.Symbol(name, real=True)
    values = {}
    for s in rhs.free_symbols:
        if s.name == name:
            symbol = s
            continue
        v = _value(s.name, namespace)
        if v is None:
            raise RuleError(f"trace {name}: the decay of d{name}/dt = {equation.expr} reads {s.name}, which is not a constant",
                            key=where, fix="Loihi 2 traces decay as dx/dt = -x/tau with a constant tau")
        values[s] = v
    rhs = sympy.expand(rhs.subs(values))
    rate = rhs.diff(symbol)
    rest = sympy.simplify(rhs - rate * symbol)
    if not (rate.is_number and rest == 0 and float(rate) < 0):
        raise RuleError(f"trace {name}: d{name}/dt = {equation.expr} is not an exponential decay -{name}/tau",
                        key=where, fix="Loihi 2 traces decay as dx/dt = -x/tau with a constant tau > 0")
    return -1000.0 / float(rate)


Statement = tuple[str, str, str, str]  # (line, variable, operator, expression), as Brian2 parses it


@dataclasses.dataclass(frozen=True)
class _Synapse:
    """A synapse model as the compiler reads it: its traces (differential equations), its weight, its
    subexpressions and the values of its constants."""

    odes: dict[str, Any]
    weight: str
    subexpressions: dict[Any, Any]
    #: Brian2's SymPy symbols of the model's names (real=True).
    symbols: dict[str, Any]
    namespace: dict[str, Any]

    @classmethod
    def parse(cls, model: str, weight: str, namespace: dict[str, Any]) -> _Synapse:
        """The model's equations (Brian2's parser); refuses a weight that is not a parameter, and
        parameters other than the weight without a value (Loihi 2 learns the weight only)."""
        from brian2.equations.equations import DIFFERENTIAL_EQUATION, PARAMETER, SUBEXPRESSION, Equations

        try:
            equations = Equations(model)
        except Exception as exc:  # Brian2 raises several types; the message says what is wrong
            raise RuleError(f"cannot parse the model equations: {exc}".replace("\n", " "), key="model") from exc
        if weight not in equations.names:
            raise RuleError(f"the model has no weight variable {weight!r}", key="model", fix=f"declare '{weight} : 1'")
        if equations[weight].type != PARAMETER:
            raise RuleError(f"the weight {weight} must be a parameter ('{weight} : 1'), not an equation", key="model")
        odes = {n: eq for n, eq in equations.items() if eq.type == DIFFERENTIAL_EQUATION}
        subexpressions = {_parse(n, "model"): _parse(eq.expr.code, f"model.{n}") for n, eq in equations.items()
                          if eq.type == SUBEXPRESSION}
        parameters = {n for n, eq in equations.items() if eq.type == PARAMETER and n != weight}
        missing = sorted(n for n in parameters if n not in namespace)
        if missing:
            raise RuleError(f"no value for the synaptic parameter(s) {', '.join(missing)}", key="model",
                            fix="Loihi 2 learns w only: give other parameters a value in the namespace")
        symbols = {n: _parse(n, "model") for n in list(equations.names)}
        return cls(odes, weight, subexpressions, symbols, namespace)

    def is_variable(self, name: str) -> bool:
        """Whether ``name`` is a trace or the weight (a factor with a Loihi register)."""
        return name in self.odes or name == self.weight

    def expression(self, text: str, where: str):
        """``text`` in SymPy with the subexpressions substituted."""
        return _parse(text, where).subs(self.subexpressions)

    def constants_of(self, expr, where: str) -> dict[Any, float]:
        """The values of the constants in ``expr`` (every symbol but the traces and the weight)."""
        values = {}
        for s in expr.free_symbols:
            if self.is_variable(s.name):
                continue
            v = _value(s.name, self.namespace)
            if v is None:
                raise _unknown(s.name, where)
            values[s] = v
        return values

    def number(self, expr, where: str) -> float | None:
        """``expr``'s value with its constants substituted, or None if it reads a trace or the weight."""
        value = expr.subs(self.constants_of(expr, where))
        return float(value) if value.is_number else None


def expand_rule(model: str, on_pre: str, on_post: str, namespace: Mapping[str, Any] | None = None, *,
                weight: str = "w") -> ExpandedRule:
    """Read a Brian2 synapse rule and expand each event's weight change into monomials.

    ``namespace`` gives the value of every constant (numbers in SI, or Brian2 quantities).
    Statements that write a ``*_post``/``*_pre`` variable are taken as synaptic transmission
    (Lava's Dense does them) and left out of the rule.
    """
    synapse = _Synapse.parse(model, weight, dict(namespace or {}))
    statements = {event: _statements(code, event) for event, code in (("pre", on_pre), ("post", on_post))}
    jumps, increments = _trace_jumps(synapse, statements)
    side = _trace_sides(increments)
    changes, bounds, transmission = {}, [], []
    for event, lines in statements.items():
        changes[event], bound, moved = _event_change(synapse, event, lines, jumps, increments[event])
        transmission += moved
        if bound is not None:
            bounds.append(bound)
    distinct = sorted(set(bounds))
    if len(distinct) > 1:
        raise RuleError(f"on_pre and on_post clip {weight} to different bounds {distinct}", key="on_post",
                        fix="Loihi 2 keeps one weight range")
    terms = [term for event, change in changes.items()
             for term in _event_terms(synapse, event, _grouped_monomials(synapse, change, f"on_{event}"), side)]
    used = {name for term in terms for name, _ in term.powers if name != weight}
    traces = tuple(Trace(name, side[name], _trace_decay(name, synapse.odes[name], synapse.namespace),
                         increments[side[name]][name]) for name in synapse.odes if name in used)  # model order
    notes = [f"trace {n} is not read by the weight change: no Loihi trace is used for it"
             for n in synapse.odes if n in side and n not in used]
    return ExpandedRule(tuple(terms), traces, weight, distinct[0] if distinct else (None, None),
                        tuple(transmission), tuple(notes))


def _statements(code: str, event: str) -> list[Statement]:
    """An event's statements, parsed by Brian2."""
    from brian2.parsing.statements import parse_statement

    statements = []
    for line in _lines(code):
        try:
            statements.append((line, *parse_statement(line)[:3]))
        except ValueError as exc:
            raise RuleError(f"cannot parse statement '{line}'", key=f"on_{event}",
                            fix="write 'variable = expression' or 'variable += expression'") from exc
    return statements


def _trace_jumps(synapse: _Synapse, statements: dict[str, list[Statement]]
                 ) -> tuple[dict[tuple[str, int], float], dict[str, dict[str, float]]]:
    """Each trace statement's jump (by event and statement index), and each event's total jump per trace."""
    jumps: dict[tuple[str, int], float] = {}
    increments: dict[str, dict[str, float]] = {"pre": {}, "post": {}}
    for event, lines in statements.items():
        for index, (line, var, op, expr) in enumerate(lines):
            if var in synapse.odes:
                jumps[(event, index)] = delta = _jump(synapse, line, var, op, expr, f"on_{event}")
                increments[event][var] = increments[event].get(var, 0.0) + delta
    return jumps, increments


def _jump(synapse: _Synapse, line: str, var: str, op: str, expr: str, where: str) -> float:
    """How much the statement ``line`` makes trace ``var`` jump: a constant, or refused."""
    import sympy
    from brian2.parsing.sympytools import sympy_to_str

    e = _parse(expr, where)
    if op == "=":
        delta = sympy.expand(e - synapse.symbols[var])
    elif op in ("+=", "-="):
        delta = e if op == "+=" else -e
    else:
        raise RuleError(f"statement '{line}' changes trace {var} with '{op}': Loihi 2 traces only add an impulse",
                        key=where, fix=f"write '{var} += constant'")
    delta = delta.subs(synapse.subexpressions)
    delta = delta.subs(synapse.constants_of(delta, where))
    if not delta.is_number:
        raise RuleError(f"statement '{line}': trace {var} jumps by {sympy_to_str(delta)}, not by a constant "
                        f"(Loihi 2 adds a fixed impulse)", key=where, fix=f"write '{var} += constant'")
    return float(delta)


def _trace_sides(increments: dict[str, dict[str, float]]) -> dict[str, str]:
    """The side (pre or post) whose spikes make each trace jump; a trace jumps on one side only."""
    both = sorted(set(increments["pre"]) & set(increments["post"]))
    if both:
        raise RuleError(f"trace {both[0]} jumps at both pre and post spikes: a Loihi 2 trace belongs to one side",
                        key="model", fix="use one trace per side")
    return {n: "pre" for n in increments["pre"]} | {n: "post" for n in increments["post"]}


def _event_change(synapse: _Synapse, event: str, lines: list[Statement], jumps: dict[tuple[str, int], float],
                  increments: dict[str, float]) -> tuple[Any, tuple[float, float] | None, list[str]]:
    """Execute an event's statements symbolically: its weight change, the bounds of its final clip of the
    weight (if any) and its transmission statements. Traces are written as their value after this step's
    impulse, so one read before its own jump is ``x - increment``."""
    import sympy

    where, weight, sym = f"on_{event}", synapse.weight, synapse.symbols
    state = {sym[n]: sym[n] - increments.get(n, 0.0) for n in synapse.odes}
    state[sym[weight]] = sym[weight]
    bound, transmission = None, []
    for index, (line, var, op, expr) in enumerate(lines):
        if var in synapse.odes:
            state[sym[var]] = state[sym[var]] + jumps[(event, index)]
            continue
        e = synapse.expression(expr, where)
        if var == weight:
            if bound is not None:
                raise RuleError(f"statement '{line}' changes {weight} after its clip: the bounds must come last",
                                key=where, fix=f"clip {weight} in the last statement that changes it")
            if op != "=":
                e = synapse.expression(f"{weight} {op[:-1]} ({expr})", where)
            e, bound = _unclip(synapse, e, line, where)
            state[sym[weight]] = e.xreplace(state)
        elif var.endswith(("_post", "_pre")):
            transmission.append(f"on_{event}: {line}")
        else:
            raise RuleError(f"statement '{line}' changes {var}: Loihi 2's learning engine only changes {weight} "
                            f"and the traces", key=where, fix=f"remove it or make {var} a trace")
    return sympy.expand(state[sym[weight]] - sym[weight]), bound, transmission


def _unclip(synapse: _Synapse, e, line: str, where: str) -> tuple[Any, tuple[float, float] | None]:
    """``(E, (low, high))`` for ``e = clip(E, low, high)`` with constant bounds, else ``(e, None)``."""
    import sympy

    if not (isinstance(e, sympy.Function) and type(e).__name__ == "clip"):
        return e, None
    inner, low, high = e.args
    low_v, high_v = (synapse.number(b, where) for b in (low, high))
    if low_v is None or high_v is None:
        raise RuleError(f"statement '{line}': the bounds of clip must be constants", key=where)
    return inner, (low_v, high_v)


Monomial = tuple[tuple[str, int], ...]  # ((variable, power), ...): the traces in model order, then the weight


def _grouped_monomials(synapse: _Synapse, change, where: str) -> dict[Monomial, tuple[float, list[str]]]:
    """An event's weight change as monomials: each one's summed coefficient and the SymPy terms it sums."""
    import sympy
    from brian2.parsing.sympytools import sympy_to_str

    grouped: dict[Monomial, tuple[float, list[str]]] = {}
    for term in sympy.Add.make_args(change):
        if term == 0:
            continue
        text = sympy_to_str(term)
        powers, coefficient = _monomial(synapse, term, text, where)
        key = tuple(sorted(powers.items(), key=lambda item: (item[0] == synapse.weight, item[0])))
        previous, sources = grouped.get(key, (0.0, []))
        grouped[key] = (previous + coefficient, sources + [text])
    return grouped


def _monomial(synapse: _Synapse, term, text: str, where: str) -> tuple[dict[str, int], float]:
    """A product's whole powers of traces and the weight, and its constant coefficient."""
    import sympy
    from brian2.parsing.sympytools import sympy_to_str

    powers: dict[str, int] = {}
    coefficient = 1.0
    for factor in sympy.Mul.make_args(term):
        base, power = factor.as_base_exp()
        if factor.is_number:
            coefficient *= float(factor)
        elif base.is_Symbol and synapse.is_variable(base.name):
            if not power.is_number or not float(power).is_integer():
                raise RuleError(f"term {text}: non-integer power {sympy_to_str(factor)} "
                                f"(Loihi 2 multiplies whole factors)", key=where,
                                fix="use integer powers of traces and w")
            if float(power) < 0:
                raise _division(text, base, where)
            powers[base.name] = powers.get(base.name, 0) + int(power)
        else:
            coefficient *= _constant_factor(synapse, factor, text, where)
    return powers, coefficient


def _constant_factor(synapse: _Synapse, factor, text: str, where: str) -> float:
    """The value of a factor that is neither a number nor a power of a trace or the weight; refuses what
    is not a constant (a function, a division by a variable, a non-integer power)."""
    import sympy
    from brian2.parsing.sympytools import sympy_to_str

    base, power = factor.as_base_exp()
    if base.is_Symbol:
        v = _value(base.name, synapse.namespace)
        if v is None:
            raise _unknown(base.name, where)
        if not power.is_number:
            raise RuleError(f"term {text}: power {sympy_to_str(power)} is not a number", key=where)
        return v ** float(power)
    if isinstance(factor, sympy.Pow) and float(power) < 0 and not base.is_number:
        value = synapse.number(base, where)
        if value is None:
            raise _division(text, base, where)
        return value ** float(power)
    value = synapse.number(factor, where)
    if value is not None:
        return value
    if isinstance(factor, sympy.Function):
        raise RuleError(f"term {text}: function {type(factor).__name__.rstrip('_')}() has no counterpart in "
                        f"Loihi 2's learning engine (sums of products only)", key=where,
                        fix="write the rule as a polynomial in traces and w")
    if isinstance(factor, sympy.Pow):
        raise RuleError(f"term {text}: non-integer power {sympy_to_str(factor)} "
                        f"(Loihi 2 multiplies whole factors)", key=where,
                        fix="use integer powers of traces and w")
    raise RuleError(f"term {text}: {sympy_to_str(factor)} is not a product of traces, w and constants",
                    key=where, fix="write the rule as a polynomial in traces and w")


def _division(text: str, base, where: str) -> RuleError:
    from brian2.parsing.sympytools import sympy_to_str

    return RuleError(f"term {text}: divides by {sympy_to_str(base)} (Loihi 2 products only "
                     f"multiply: no division by a trace or the weight)", key=where,
                     fix="rewrite the rule without dividing by a variable")


def _event_terms(synapse: _Synapse, event: str, grouped: dict[Monomial, tuple[float, list[str]]],
                 side: dict[str, str]) -> list[BrianTerm]:
    """An event's monomials as terms, by degree then model order; exact cancellations left out. Every
    trace a term reads must jump at some spike."""
    largest = max((abs(c) for c, _ in grouped.values()), default=0.0)
    rank = {n: i for i, n in enumerate([*synapse.odes, synapse.weight])}
    terms = []
    for key, (coefficient, sources) in sorted(grouped.items(), key=lambda item: (
            sum(p for _, p in item[0]), [(rank[n], -p) for n, p in item[0]])):
        if coefficient == 0.0 or abs(coefficient) <= 1e-12 * largest:
            continue  # exact cancellation (e.g. x - 1 + 1 from the impulse rewriting)
        for name, _ in key:
            if name != synapse.weight and name not in side:
                raise RuleError(f"term {' + '.join(sources)}: {name} never jumps at a spike "
                                f"(a Loihi 2 trace needs an impulse)", key=f"on_{event}",
                                fix=f"add '{name} += 1' to on_pre or on_post")
        terms.append(BrianTerm(event, key, coefficient, " + ".join(sources)))
    return terms


# --------------------------------------------------------------------------------------------
# Step 2: monomials -> Loihi products


@dataclasses.dataclass(frozen=True)
class TraceMap:
    """A Brian2 trace on a Loihi trace register."""

    name: str
    register: str
    tau_ms: float
    #: Loihi decay register (time steps, an integer): x *= exp(-1/tau) per step.
    tau: int
    #: Loihi impulse (a multiple of 2**-trace_fraction_bits); Brian2's jump ``increment`` maps to it.
    impulse: float
    increment: float
    #: Brian2's tau in time steps (before rounding to the register).
    tau_steps: float

    @property
    def tau_relative_error(self) -> float:
        return abs(self.tau - self.tau_steps) / self.tau_steps

    @property
    def scale(self) -> float:
        """Brian2 value of one Loihi trace unit."""
        return self.increment / self.impulse


@dataclasses.dataclass(frozen=True)
class LoihiTerm:
    """One product of the compiled rule."""

    dependency: str
    factors: tuple[str, ...]
    #: Exact scale in Loihi units (what float arithmetic would need).
    scale: float
    mantissa: int
    exponent: int
    #: Right shift lava's fixed-point engine applies to this product (see :func:`fixed_shift`).
    shift: int
    source: str
    #: The Brian2 monomial it comes from.
    origin: BrianTerm | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def coefficient(self) -> float:
        """The Brian2 coefficient this product realises (its origin's, times quantised / exact)."""
        return 0.0 if self.origin is None or not self.mantissa else self.origin.coefficient * self.quantised / self.scale

    @property
    def quantised(self) -> float:
        return self.mantissa * 2.0**self.exponent

    @property
    def relative_error(self) -> float:
        return abs(self.quantised - self.scale) / abs(self.scale) if self.scale else 0.0

    def product(self, exponent: int | None = None, signed: bool = True) -> str:
        """Lava's string form of this product, e.g. ``-5*2^-5*x0*y1`` (``x0*y1`` if it rounds to 0)."""
        if self.mantissa == 0:
            return "*".join([self.dependency, *self.factors])
        e = self.exponent if exponent is None else exponent
        m = self.mantissa if signed else abs(self.mantissa)
        return "*".join([f"{m}*2^{e}", self.dependency, *self.factors])


def _join(products: list[tuple[int, str]]) -> str:
    text = ""
    for sign, product in products:
        if not text:
            text = ("-" if sign < 0 else "") + product
        else:
            text += (" - " if sign < 0 else " + ") + product
    return text or "0*x0"


@dataclasses.dataclass(frozen=True)
class CompiledRule:
    """A rule ready for ``Loihi2FLearningRule``, with the mapping and the quantisation errors."""

    terms: tuple[LoihiTerm, ...]
    traces: tuple[TraceMap, ...]
    #: Loihi weight = weight_sign * weight_scale * Brian2 weight.
    weight_scale: float
    weight_sign: int
    dt_ms: float
    bounds: tuple[float | None, float | None]
    #: Terms whose scale rounds to zero, dropped (only with ``underflow="drop"``).
    dropped: tuple[LoihiTerm, ...] = ()
    transmission: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    limits: EngineLimits = DEFAULT_LIMITS

    @property
    def dw(self) -> str:
        """The rule as lava's ``dw`` string (the scales as quantised; float semantics)."""
        return _join([(1 if t.mantissa > 0 else -1, t.product(signed=False)) for t in self.terms])

    @property
    def dw_fixed(self) -> str:
        """``dw`` for lava's fixed-point engine: each exponent raised by the product's right shift.

        lava's ``LearningRuleApplierBitApprox`` shifts a product of wide factors right (by 3 for two
        traces) where the float engine does not; raising the exponent by the same amount gives both
        engines the same scale. Refused if the exponent would pass the top of its range.
        """
        e_high = self.limits.scale_exponent[1]
        products = []
        for t in self.terms:
            if t.exponent + t.shift > e_high:
                raise RuleError(f"term {t.product()} (from {t.source}): lava's fixed-point engine shifts it right by "
                                f"{t.shift} bits, and exponent {t.exponent} + {t.shift} is beyond {e_high}",
                                key="dw", fix="raise the trace impulses or the weight scale so the scale is smaller")
            products.append((1 if t.mantissa > 0 else -1, t.product(t.exponent + t.shift, signed=False)))
        return _join(products)

    @property
    def silent_dw(self) -> str:
        """``dw`` with every product scaled by 0: a phase without learning sets it (``LearningDense.dw``), so
        weights hold while the traces keep running, as Brian2's learning rate times 0 does."""
        return " + ".join("0*" + "*".join([t.dependency, *t.factors]) for t in self.terms)

    def rule_kwargs(self, fixed_pt: bool = False) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"dw": self.dw_fixed if fixed_pt else self.dw, "t_epoch": self.limits.t_epoch}
        for trace in self.traces:
            kwargs[f"{trace.register}_impulse"] = trace.impulse
            kwargs[f"{trace.register}_tau"] = trace.tau
        return kwargs

    def learning_rule(self, fixed_pt: bool = False, rng_seed: int | None = 0):
        """A ``Loihi2FLearningRule`` for lava's fixed-point (``fixed_pt``) or floating-point engine."""
        from lava.magma.core.learning.learning_rule import Loihi2FLearningRule

        return Loihi2FLearningRule(**self.rule_kwargs(fixed_pt), rng_seed=rng_seed)

    def to_loihi_weight(self, w):
        return self.weight_sign * self.weight_scale * np.asarray(w, dtype=float)

    def from_loihi_weight(self, weights):
        return self.weight_sign * np.asarray(weights, dtype=float) / self.weight_scale

    def changes(self) -> list[dict[str, Any]]:
        """Every way this rule differs from the Brian2 rule it was compiled from, JSON-ready: each entry
        has a ``kind`` (``weight_scale``, ``weight_bound``, ``dropped``, ``quantised``, ``trace_decay``,
        ``trace_impulse``), a one-line ``text`` and the numbers behind it."""
        return [*self._weight_changes(), *map(self._dropped_change, self.dropped),
                *(self._quantised_change(t) for t in self.terms if t.relative_error > 1e-12),
                *(_decay_change(t) for t in self.traces if t.tau_relative_error > 1e-12),
                *(self._impulse_change(t) for t in self.traces)]

    def _weight_changes(self) -> list[dict[str, Any]]:
        scale, (low, high), top = self.weight_scale, self.bounds, self.limits.weight_max
        text = (f"weight scale {scale:.4g}: Loihi weight = {'-' if self.weight_sign < 0 else ''}{scale:.4g} w, "
                f"an integer in fixed point (steps of {1 / scale:.3g} in w)")
        if high is not None:
            text += (f"; w's upper bound {high:g} is {high * scale:.4g} of the {self.limits.weight_bits}-bit "
                     f"register's {top}")
        changes = [{"kind": "weight_scale", "scale": scale, "text": text}]
        if high is not None and high * scale < top * (1 - 1e-9):
            changes.append({"kind": "weight_bound", "bound": high, "loihi_bound": top / scale,
                            "text": f"Loihi clips w at {top / scale:.4g} (its register's {top}), not at {high:g}"})
        if low is not None and low != 0:
            changes.append({"kind": "weight_bound", "bound": low, "loihi_bound": 0.0,
                            "text": f"Loihi clips w at 0 (sign mode), not at {low:g}"})
        return changes

    def _dropped_change(self, t: LoihiTerm) -> dict[str, Any]:
        e_low = self.limits.scale_exponent[0]
        return {"kind": "dropped", "term": t.source, "product": t.product(), "scale": t.scale,
                "text": f"term {t.source} -> {t.product()} dropped: scale {t.scale:.3g} rounds to 0 "
                        f"(smallest {2.0 ** e_low:g} = 1*2^{e_low})"}

    @staticmethod
    def _quantised_change(t: LoihiTerm) -> dict[str, Any]:
        return {"kind": "quantised", "term": t.source, "product": t.product(), "scale": t.scale,
                "quantised": t.quantised, "relative_error": t.relative_error,
                "text": f"term {t.source} -> {t.product()}: scale {t.scale:.4g} quantised to "
                        f"{t.mantissa}*2^{t.exponent} = {t.quantised:g} (relative error {t.relative_error:.2%})"}

    def _impulse_change(self, t: TraceMap) -> dict[str, Any]:
        top = self.limits.trace_max
        text = (f"trace {t.name} -> {t.register}: a jump of {t.increment:g} is an impulse of {t.impulse:g} "
                f"(one unit is {t.scale:.3g} of {t.name}); fixed point keeps {t.register} an integer up to {top}, "
                f"so {t.name} saturates at {top * t.scale:.3g}")
        if t.impulse != int(t.impulse):
            text += "; the impulse's fraction is added with doubled probability (lava 0.10.0)"
        return {"kind": "trace_impulse", "trace": t.name, "register": t.register, "impulse": t.impulse,
                "saturates_at": top * t.scale, "text": text}

    def report(self) -> dict[str, Any]:
        """JSON-ready summary: products with their exact and quantised scales, traces, weights."""
        def term(t: LoihiTerm) -> dict[str, Any]:
            return {"product": t.product(), "source": t.source, "scale": t.scale, "mantissa": t.mantissa,
                    "exponent": t.exponent, "quantised": t.quantised, "relative_error": t.relative_error,
                    "fixed_point_shift": t.shift}

        try:
            dw_fixed: str | None = self.dw_fixed
        except RuleError as exc:
            dw_fixed = None
            notes = [*self.notes, exc.one_line()]
        else:
            notes = list(self.notes)
        return {
            "dw": self.dw, "dw_fixed": dw_fixed,
            "terms": [term(t) for t in self.terms],
            "dropped": [term(t) for t in self.dropped],
            "traces": [{"brian2": t.name, "register": t.register, "increment": t.increment, "impulse": t.impulse,
                        "tau_ms": t.tau_ms, "tau_steps": t.tau_steps, "tau": t.tau,
                        "tau_relative_error": t.tau_relative_error} for t in self.traces],
            "weight": {"scale": self.weight_scale, "sign": self.weight_sign, "bounds": list(self.bounds)},
            "transmission": list(self.transmission), "notes": notes,
        }


def _decay_change(t: TraceMap) -> dict[str, Any]:
    return {"kind": "trace_decay", "trace": t.name, "register": t.register, "tau_steps": t.tau_steps, "tau": t.tau,
            "relative_error": t.tau_relative_error,
            "text": f"trace {t.name} -> {t.register}: tau {t.tau_ms:g} ms is {t.tau_steps:.4g} steps, rounded to "
                    f"{t.tau} (relative error {t.tau_relative_error:.2%})"}


def _registers(rule: ExpandedRule, limits: EngineLimits) -> dict[str, str]:
    registers: dict[str, str] = {}
    for side, available in (("pre", limits.pre_traces), ("post", limits.post_traces)):
        names = [t.name for t in rule.traces if t.side == side]
        if len(names) > available:
            where = f"on_{'post' if side == 'pre' else 'pre'}"
            have = ", ".join(REGISTERS[side][:available]) or "none"
            raise RuleError(f"{len(names)} {side}synaptic traces ({', '.join(names)}): Loihi 2 has {available} "
                            f"({have})", key=where, fix=f"use at most {available} {side}synaptic traces")
        registers.update(zip(names, REGISTERS[side]))
    return registers


def _impulse(value: float, name: str, limits: EngineLimits) -> float:
    step = 2.0**-limits.trace_fraction_bits
    impulse = round(value / step) * step
    if not (step <= impulse <= limits.trace_max):
        raise RuleError(f"trace {name}: impulse {value:g} is outside [{step:g}, {limits.trace_max}] "
                        f"({limits.trace_bits}-bit traces with {limits.trace_fraction_bits} fractional impulse bits)",
                        key="model", fix="choose another impulse")
    return impulse


def _tau(trace: Trace, dt_ms: float, limits: EngineLimits) -> int:
    steps = trace.tau_ms / dt_ms
    tau = int(round(steps))
    if not (1 <= tau <= limits.tau_max):
        raise RuleError(f"trace {trace.name}: tau = {trace.tau_ms:g} ms is {steps:g} time steps, outside the "
                        f"{limits.trace_tau_bits}-bit decay register [1, {limits.tau_max}]", key="model",
                        fix=f"use a time constant between {dt_ms:g} and {limits.tau_max * dt_ms:g} ms, or another dt")
    return tau


def _check_weight_register(weight_scale: float, high: float | None, limits: EngineLimits) -> None:
    """Refuse a weight scale that puts the rule's upper bound beyond the weight register: Loihi
    would clip there, below the bound the rule asks for."""
    if not (math.isfinite(weight_scale) and weight_scale > 0):
        raise RuleError(f"weight scale {weight_scale:g} is not a positive number", key="weight_scale",
                        fix="use a positive weight scale (Loihi units per unit of w)")
    if high is not None and high * weight_scale > limits.weight_max * (1 + 1e-9):
        raise RuleError(f"weight scale {weight_scale:g} puts w's upper bound {high:g} at {high * weight_scale:g} "
                        f"Loihi units, beyond the {limits.weight_bits}-bit weight register ({limits.weight_max})",
                        key="weight_scale", fix=f"use a weight scale of at most {limits.weight_max / high:g}")


def lower(rule: ExpandedRule, *, weight_scale: float | None = None, weight_sign: int = 1,
          impulses: float | Mapping[str, float] = 16.0, dt_ms: float = 1.0,
          limits: EngineLimits = DEFAULT_LIMITS, underflow: Literal["refuse", "drop"] = "refuse") -> CompiledRule:
    """Map an expanded rule to Loihi units and quantise every scale.

    ``weight_scale`` defaults to ``(2**weight_bits - 1) / high`` for a rule clipped to ``[0, high]``:
    Brian2's upper bound is then Loihi's 8-bit weight limit. ``weight_sign = -1`` stores the weights
    as negative (inhibitory) Loihi weights. ``impulses`` is one impulse for every trace or one per
    Brian2 trace name. A scale that rounds to zero is refused, or dropped with ``underflow="drop"``
    (the dropped terms are listed in :attr:`CompiledRule.dropped`); a rule that would lose every
    term is refused either way. A weight scale that puts the upper bound beyond the weight register
    (``high * weight_scale > 2**weight_bits - 1``) is refused: Loihi would clip below the bound.
    """
    if weight_sign not in (1, -1):
        raise ValueError("weight_sign is 1 or -1")
    if weight_scale is None:
        weight_scale = _register_filling_scale(rule, limits)
    _check_weight_register(weight_scale, rule.bounds[1], limits)
    notes = [*rule.notes, *_bound_notes(rule.bounds, weight_scale, limits)]
    registers = _registers(rule, limits)
    traces = []
    for trace in rule.traces:
        value = impulses[trace.name] if isinstance(impulses, Mapping) else impulses
        traces.append(TraceMap(trace.name, registers[trace.name], trace.tau_ms, _tau(trace, dt_ms, limits),
                               _impulse(value, trace.name, limits), trace.increment, trace.tau_ms / dt_ms))
    if any(t.impulse != int(t.impulse) for t in traces):
        notes.append("an impulse with a fraction: lava 0.10.0's fixed point adds the fraction with doubled "
                      "probability (8-bit fraction against a 7-bit random number); whole impulses are exact")
    by_name = {t.name: t for t in traces}
    terms, dropped = [], []
    for term in rule.terms:
        product = _product(rule, term, weight_scale, weight_sign, by_name, limits)
        if product.mantissa:
            terms.append(product)
        elif underflow == "drop":
            dropped.append(product)
            notes.append(f"term {term.source} -> {product.product()}: scale {product.scale:.3g} rounds to 0, dropped")
        else:
            smallest = 2.0 ** limits.scale_exponent[0]
            raise RuleError(f"term {term.source} -> {product.product()}: scale {product.scale:.3g} rounds to 0 "
                            f"(smallest scale {smallest:g} = 1*2^{limits.scale_exponent[0]})", key=f"on_{term.event}",
                            fix="raise eta or the weight scale, lower the trace impulses, or drop the term "
                                "(underflow='drop')")
    if dropped and not terms:
        lost = "; ".join(f"{t.source} -> {t.product()}: {t.scale:.3g}" for t in dropped)
        raise RuleError(f"every term's scale rounds to 0 ({lost}; smallest scale {2.0 ** limits.scale_exponent[0]:g}"
                        f" = 1*2^{limits.scale_exponent[0]}): nothing is left to port",
                        fix="raise eta or the weight scale, or lower the trace impulses")
    return CompiledRule(tuple(terms), tuple(traces), float(weight_scale), weight_sign, dt_ms, rule.bounds,
                        tuple(dropped), rule.transmission, tuple(notes), limits)


def _register_filling_scale(rule: ExpandedRule, limits: EngineLimits) -> float:
    """The weight scale that puts the rule's upper bound at the top of the weight register."""
    high = rule.bounds[1]
    if high is None or high <= 0:
        raise RuleError("the weight has no upper bound, so there is no natural weight scale", key="on_pre",
                        fix="clip w to [0, w_max] or pass weight_scale")
    return limits.weight_max / high


def _bound_notes(bounds: tuple[float | None, float | None], weight_scale: float, limits: EngineLimits) -> list[str]:
    """Where Loihi's weight bounds differ from the rule's clip."""
    low, high = bounds
    notes = []
    if low is not None and low != 0:
        notes.append(f"lower bound {low:g} of w: Loihi clips at 0 (sign mode), not at {low:g}")
    if high is not None and abs(high * weight_scale - limits.weight_max) > 1e-9 * limits.weight_max:
        notes.append(f"upper bound {high:g} of w is {high * weight_scale:g} Loihi units; Loihi's fixed point "
                     f"clips at {limits.weight_max} (w = {limits.weight_max / weight_scale:.3g})")
    if high is not None:
        notes.append("lava's floating-point LearningDense does not clip weights above; its fixed point does")
    return notes


def _product(rule: ExpandedRule, term: BrianTerm, weight_scale: float, weight_sign: int,
             traces: Mapping[str, TraceMap], limits: EngineLimits) -> LoihiTerm:
    """A Brian2 monomial as a Loihi product with its quantised scale (mantissa 0: it rounds to zero);
    a scale beyond the largest representable one is refused."""
    scale = weight_sign * weight_scale * term.coefficient
    factors: list[str] = []
    for name, power in term.powers:
        if name == rule.weight:
            scale *= (weight_sign / weight_scale) ** power
            factors += ["w"] * power
        else:
            scale *= traces[name].scale ** power
            factors += [traces[name].register] * power
    factors.sort(key=lambda f: ("x1", "x2", "y1", "y2", "y3", "w").index(f))
    dependency = EVENTS[term.event]
    try:
        q = quantise_scale(scale, limits)
    except ValueError as exc:
        raise RuleError(f"term {term.source} -> {'*'.join([dependency, *factors])}: {exc} (mantissa in "
                        f"{list(limits.scale_mantissa)}, exponent in {list(limits.scale_exponent)})",
                        key=f"on_{term.event}",
                        fix="lower the weight scale, raise the trace impulses, or lower eta") from None
    mantissa, exponent = (0, 0) if q is None else (q.mantissa, q.exponent)
    return LoihiTerm(dependency, tuple(factors), scale, mantissa, exponent, fixed_shift(factors, limits),
                     term.source, term)


def _scale(rule: ExpandedRule, term: BrianTerm, weight_scale: float, sign: int, impulses: Mapping[str, float]) -> float:
    """A term's exact scale in Loihi units (as :func:`lower` computes it)."""
    scale = sign * weight_scale * term.coefficient
    for var, power in term.powers:
        if var == rule.weight:
            scale *= (sign / weight_scale) ** power
        else:
            scale *= (rule.trace(var).increment / impulses[var]) ** power
    return scale


def _quantisation_factor(rule: ExpandedRule, term: BrianTerm, weight_scale: float, sign: int,
                         impulses: Mapping[str, float], limits: EngineLimits) -> float | None:
    """What quantisation multiplies a term's scale by: ``quantised / exact`` (inf beyond the largest
    scale, None if it rounds to zero)."""
    try:
        q = quantise_scale(_scale(rule, term, weight_scale, sign, impulses), limits)
    except ValueError:
        return math.inf
    return None if q is None else q.quantised / q.value


def optimise_impulses(rule: ExpandedRule, *, low: int = 8, high: int = 32, default: int = 16, rounds: int = 2,
                      weight_scale: float | None = None, weight_sign: int = 1,
                      limits: EngineLimits = DEFAULT_LIMITS, dt_ms: float = 1.0,
                      objective: Callable[[CompiledRule], float] | None = None) -> dict[str, float]:
    """Whole-number trace impulses in ``[low, high]`` under which the rule's scales quantise alike.

    With ``objective`` (a function of the compiled rule, e.g. a task's predicted error), coordinate
    descent minimises it instead (rounded to 1e-3; ties: closest to ``default``).

    Quantisation multiplies each scale by ``quantised / exact``. If every term gets the same factor,
    only the learning rate changes and the rule's balance (its set point) is kept. The terms without
    traces (constants, weight terms) fix the reference factor (that of the largest of them, or 1);
    each trace's impulse scales only the products it appears in, so coordinate descent chooses, per
    trace, the impulse whose terms' factors are closest to the reference (errors within 0.1 % count
    as equal; then the impulse closest to ``default`` wins).

    Impulses are whole numbers because lava 0.10.0's fixed-point model adds the impulse's fraction
    (8 bits) with probability ``fraction * 256 / 128`` (it compares it with a 7-bit random number,
    ``LearningConnectionModelBitApproximate._add_impulse``): a fraction would act doubled there.
    """
    impulses = {t.name: float(default) for t in rule.traces}
    if not impulses:
        return impulses
    if weight_scale is None:
        weight_scale = limits.weight_max / rule.bounds[1] if rule.bounds[1] else 1.0

    def factor(term: BrianTerm) -> float | None:
        return _quantisation_factor(rule, term, weight_scale, weight_sign, impulses, limits)

    reference = _reference_factor(rule, weight_scale, weight_sign, impulses, factor)

    def score(name: str) -> float:
        if objective is None:
            return _mismatch([factor(t) for t in rule.terms if name in dict(t.powers)], reference)
        try:
            return objective(lower(rule, weight_scale=weight_scale, weight_sign=weight_sign, impulses=impulses,
                                   dt_ms=dt_ms, limits=limits, underflow="drop"))
        except RuleError:
            return math.inf

    for _ in range(rounds):
        for name in impulses:
            best = (math.inf, math.inf, float(default))
            for value in range(int(low), int(high) + 1):
                impulses[name] = float(value)
                best = min(best, (round(score(name), 3), abs(value - default), float(value)))
            impulses[name] = best[2]
    return impulses


def _mismatch(factors: Iterable[float | None], reference: float) -> float:
    """How far the worst of these quantisation factors is from the reference (the size of their log
    ratio; 10 for a term that rounds to zero or overflows)."""
    return max((10.0 if f is None or not math.isfinite(f) else abs(math.log(f / reference)) for f in factors),
               default=0.0)


def _reference_factor(rule: ExpandedRule, weight_scale: float, sign: int, impulses: Mapping[str, float],
                      factor: Callable[[BrianTerm], float | None]) -> float:
    """The quantisation factor of the largest term without traces (no impulse changes it), or 1."""
    fixed = [(abs(_scale(rule, t, weight_scale, sign, impulses)), factor(t)) for t in rule.terms
             if all(var == rule.weight for var, _ in t.powers)]
    fixed = [(size, f) for size, f in fixed if f is not None and math.isfinite(f)]
    return max(fixed)[1] if fixed else 1.0


def compile_rule(model: str, on_pre: str, on_post: str, namespace: Mapping[str, Any] | None = None, *,
                 weight: str = "w", weight_scale: float | None = None, weight_sign: int = 1,
                 impulses: float | Mapping[str, float] | Literal["auto"] = 16.0, dt_ms: float = 1.0,
                 limits: EngineLimits = DEFAULT_LIMITS, underflow: Literal["refuse", "drop"] = "refuse") -> CompiledRule:
    """Compile Brian2 synapse text into a Loihi 2 rule (see the module docstring).

    Example (pair STDP, weights in [0, 1] on Loihi's 0..255)::

        compile_rule("w : 1\\ndapre/dt = -apre/taupre : 1 (event-driven)\\n"
                     "dapost/dt = -apost/taupost : 1 (event-driven)",
                     "apre += Apre\\nw = clip(w + apost, 0, wmax)",
                     "apost += Apost\\nw = clip(w + apre, 0, wmax)",
                     {"Apre": 0.01, "Apost": 0.0105, "taupre": 0.02, "taupost": 0.02, "wmax": 1.0})

    ``impulses="auto"`` picks them with :func:`optimise_impulses`.
    """
    expanded = expand_rule(model, on_pre, on_post, namespace, weight=weight)
    kwargs = dict(weight_scale=weight_scale, weight_sign=weight_sign, dt_ms=dt_ms, limits=limits, underflow=underflow)
    if isinstance(impulses, str):
        if impulses != "auto":
            raise ValueError("impulses is a number, a mapping or 'auto'")
        impulses = optimise_impulses(expanded, weight_scale=weight_scale, weight_sign=weight_sign, limits=limits,
                                     dt_ms=dt_ms)
    return lower(expanded, impulses=impulses, **kwargs)
