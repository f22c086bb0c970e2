"""Neuron groups on Loihi 2: recognise a group's Brian2 equations as a neuron lava-nc 0.10.0 runs.

Lava's LIF (``lava/proc/lif/models.py``) is current-based and discrete; per time step::

    u[t] = u[t-1] * (1 - du) + a_in[t]        a_in: weighted input spikes of the step before
    v[t] = v[t-1] * (1 - dv) + u[t] + bias
    spike if v[t] > vth, then v[t] = 0

``LIFRefractory`` adds ``refractory_period`` steps after a spike during which v holds (u still
integrates); it has a ``floating_pt`` model only. ``LIFReset`` zeroes u and v at fixed intervals,
which no Brian2 reset expresses, so it is not a target here. In ``fixed_pt`` u and v are 24-bit
integers, du and dv 12-bit (decay ``(4096 - du - 1) / 4096`` for u, ``(4096 - dv) / 4096`` for v),
and input and threshold are shifted left by 6 bits while the bias (``bias_mant << bias_exp``) is not.

A group ports when its equations (Brian2's parser, SymPy) are a membrane ``v`` with
``dv/dt = A v + sum_k B_k I_k + C`` (A <= 0) and any number of currents ``dI_k/dt = a I_k`` (a < 0)
that spikes jump into, all with the same decay a (so that they sum linearly into Lava's one current,
``u = sum_k c_k I_k``), its threshold is ``v > constant`` and its reset ``v = constant``. Lava resets
to 0, so the port shifts v by the reset value and scales it: ``v_lava = scale * (v - v_reset)``. Each step is
Brian2's ``euler`` step with the chip's dt (the currents' new values enter v, as Lava orders it);
other methods take the exact decays ``1 - exp(A dt)``, with bias and current couplings matching the
resting value ``-(C + sum_k B_k I_k) / A`` of v. Anything else is refused in one line naming the group.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping

import sympy

from codesign.errors import CodesignError
from codesign.expressions import ExpressionError, evaluate, units_namespace
from codesign.hardware.loihi2.limits import NeuronLimits
from codesign.models.spec import GroupSpec

__all__ = ["LavaNeuron", "lava_neuron", "DEFAULT_VTH"]

#: Lava units the threshold distance ``v_th - v_reset`` maps to (the port network's threshold):
#: fixed point then holds v to 1/768000 of it, and v may pass 10x the threshold before the 24-bit
#: register clips.
DEFAULT_VTH = 12000
#: lava's fixed-point bias: a signed 13-bit mantissa and an exponent 0..7 (``PyLifModelBitAcc``).
BIAS_MANTISSA_MAX = 2**12 - 1
BIAS_EXPONENT_MAX = 7
#: The lava process for a group without and with a refractory period, and those with a fixed_pt model.
PROCESSES = {False: "LIF", True: "LIFRefractory"}
FIXED_PT_PROCESSES = frozenset({"LIF"})

FIX = "give the group a loihi2: variant in the model file (a current-based LIF)"


@dataclasses.dataclass(frozen=True)
class LavaNeuron:
    """A neuron group as a lava process: ``process(shape=..., **floating_pt)`` or ``**fixed_pt``."""

    group: str
    process: str
    floating_pt: dict[str, float]
    #: None unless fixed point was asked for.
    fixed_pt: dict[str, int] | None
    #: Lava units per SI unit of the membrane variable, and the value Lava's 0 stands for:
    #: ``v_brian2 = v_lava / scale + offset``.
    scale: float
    offset: float
    membrane: str
    #: Each variable a spike may jump into -> Lava input (a_in) units per SI unit of its jump: the
    #: currents, or the membrane alone when there is none (then du is 1).
    inputs: dict[str, float]
    discretisation: str
    #: What fixed point realises of du, dv and bias (float Lava units), to report as changes.
    quantised: dict[str, float] = dataclasses.field(default_factory=dict)

    def params(self, fixed_point: bool) -> dict[str, Any]:
        if fixed_point and self.fixed_pt is None:
            raise ValueError(f"group {self.group} was mapped without fixed point")
        return dict(self.fixed_pt if fixed_point else self.floating_pt)

    def process_class(self) -> type:
        import lava.proc.lif.process as lif

        return getattr(lif, self.process)

    def to_brian2(self, v_lava: Any, fixed_point: bool = False, shift: int = 6) -> Any:
        """The membrane value (SI) Lava's v stands for (fixed point: v is shifted by ``shift`` bits)."""
        return (v_lava / 2**shift if fixed_point else v_lava) / self.scale + self.offset


@dataclasses.dataclass(frozen=True)
class _System:
    """The group's linear system, SI floats: dv/dt = A v + sum_k B_k I_k + C, dI_k/dt = a I_k."""

    membrane: str
    #: Each current I_k -> B_k.
    currents: dict[str, float]
    A: float
    C: float
    #: The currents' one decay rate (-inf without currents).
    a: float
    #: Variables that hold still while refractory (Brian2's ``(unless refractory)``).
    held: frozenset[str] = frozenset()


def lava_neuron(name: str, group: GroupSpec, namespace: Mapping[str, Any], dt: Any, *, fixed_point: bool,
                vth: int = DEFAULT_VTH, limits: NeuronLimits | None = None, file: str | None = None) -> LavaNeuron:
    """The lava process and parameters running ``group``, or a one-line :class:`CodesignError`.

    ``namespace`` holds the model's constants (Brian2 quantities or numbers), ``dt`` is the chip's
    time step (a quantity), ``vth`` the Lava threshold that ``v_th - v_reset`` maps to.
    """
    refuse = _refuser(name, file)
    if group.kind != "neurons" or not group.model.strip():
        raise refuse(f"a {group.kind} group has no neuron to run")
    h = float(dt)
    membrane, v_th = _threshold(group.threshold, namespace, refuse)
    system = _linear_system(group.model, membrane, namespace, refuse)
    v_reset = _reset(group.reset, membrane, namespace, refuse)
    steps = _refractory_steps(group, system, namespace, h, refuse)
    process = PROCESSES[steps > 0]
    if fixed_point and process not in FIXED_PT_PROCESSES:
        raise refuse(f"refractory {group.refractory}: lava-nc 0.10.0's {process} has no fixed_pt model",
                     fix="port floating point only, or give the group a loihi2: variant without refractory")
    if v_th <= v_reset:
        raise refuse(f"threshold {v_th:g} is not above the reset {v_reset:g} (Lava resets to 0 below vth)")
    scale = vth / (v_th - v_reset)
    du, dv, couplings, bias, how = _discretise(system, v_reset, h, group.method, refuse)
    inputs = {name: scale * coupling for name, coupling in couplings.items()}
    initial = {key: _value(group.initial[key], namespace, refuse, f"initial {key}")
               for key in (system.membrane, *system.currents) if key in group.initial}
    floating = {"du": du, "dv": dv, "vth": float(vth), "bias_mant": scale * bias, "bias_exp": 0.0,
                "u": sum(inputs[name] * initial.get(name, 0.0) for name in system.currents),
                "v": scale * (initial.get(membrane, 0.0) - v_reset)}
    if steps:
        floating["refractory_period"] = steps
    fixed, quantised = _fixed(floating, limits or NeuronLimits(), refuse) if fixed_point else (None, {})
    return LavaNeuron(group=name, process=process, floating_pt=floating, fixed_pt=fixed, scale=scale,
                      offset=v_reset, membrane=membrane, inputs=inputs, discretisation=how,
                      quantised=quantised)


def _refuser(name: str, file: str | None) -> Callable[..., CodesignError]:
    def refuse(reason: str, fix: str = FIX) -> CodesignError:
        return CodesignError(f"not a neuron lava-nc 0.10.0 runs: {reason}", file=file, key=f"groups.{name}", fix=fix)
    return refuse


def _value(text: Any, namespace: Mapping[str, Any], refuse: Callable[[str], CodesignError], what: str) -> float:
    """A constant expression's value in SI units (a float)."""
    try:
        return float(evaluate(text, namespace))
    except (ExpressionError, TypeError, ValueError) as exc:
        raise refuse(f"{what} {text!r} is not a constant ({exc})") from None


def _symbol(name: str) -> sympy.Symbol:
    """A symbol as Brian2's parser makes them (real), so that substitutions match."""
    return sympy.Symbol(name, real=True)


def _sympy(text: str, refuse: Callable[[str], CodesignError], what: str) -> sympy.Expr:
    # brian2.parsing.sympytools is Brian2's own parser of its expression syntax (not in brian2's __all__).
    from brian2.parsing.sympytools import str_to_sympy

    try:
        return str_to_sympy(text)
    except Exception as exc:  # Brian2 raises SyntaxError, ValueError or TypeError by construct
        raise refuse(f"{what} {text!r} does not parse ({exc})") from None


def _threshold(text: str | None, namespace: Mapping[str, Any],
               refuse: Callable[[str], CodesignError]) -> tuple[str, float]:
    """(membrane variable, threshold value) of ``v > constant`` (or ``constant < v``)."""
    if not text:
        raise refuse("no threshold")
    condition = _sympy(text, refuse, "threshold")
    sides = {sympy.StrictGreaterThan: (0, 1), sympy.StrictLessThan: (1, 0)}.get(type(condition))
    if sides is None:
        raise refuse(f"threshold {text!r} is not 'v > constant' (Lava spikes on v > vth)")
    variable, bound = condition.args[sides[0]], condition.args[sides[1]]
    if not isinstance(variable, sympy.Symbol):
        raise refuse(f"threshold {text!r} is not 'v > constant' (Lava spikes on v > vth)")
    return variable.name, _value(str(bound), namespace, refuse, f"threshold {text!r}: its bound")


def _reset(text: str | None, membrane: str, namespace: Mapping[str, Any],
           refuse: Callable[[str], CodesignError]) -> float:
    """The constant ``v = constant`` resets to (the only statement Lava's reset to 0 can mirror)."""
    from brian2.parsing.statements import parse_statement

    lines = [line for line in (text or "").replace(";", "\n").splitlines() if line.strip()]
    statements = [parse_statement(line)[:3] for line in lines]
    if len(statements) != 1 or statements[0][:2] != (membrane, "="):
        raise refuse(f"reset {text!r} is not '{membrane} = constant' (Lava sets {membrane} to 0 and nothing else)")
    return _value(statements[0][2], namespace, refuse, "reset")


def _linear_system(model: str, membrane: str, namespace: Mapping[str, Any],
                   refuse: Callable[[str], CodesignError]) -> _System:
    """The group's equations as ``dv/dt = A v + sum_k B_k I_k + C`` and ``dI_k/dt = a I_k``, or a refusal
    saying why not."""
    rhs, held = _right_hand_sides(model, namespace, refuse)
    if membrane not in rhs:
        raise refuse(f"the threshold's variable {membrane} has no differential equation")
    v = _symbol(membrane)
    for name, expr in rhs.items():
        if name != membrane and v in expr.free_symbols:
            raise refuse(f"two compartments: d{name}/dt depends on {membrane} (Lava's LIF has u and v, u "
                         f"independent of v)")
    A, inputs, C = _membrane_terms(rhs, v, refuse)
    unused = sorted(set(rhs) - {membrane} - set(inputs))
    if unused:
        raise refuse(f"{', '.join(unused)} do not act on {membrane} (Lava's LIF has only u and v)")
    if A > 0:
        raise refuse(f"{membrane} grows without bound (d{membrane}/dt increases with {membrane}): not a leaky neuron")
    return _System(membrane, inputs, A, C, _shared_decay_rate(inputs, rhs, refuse), held)


def _shared_decay_rate(currents: Mapping[str, float], rhs: Mapping[str, sympy.Expr],
                       refuse: Callable[..., CodesignError]) -> float:
    """The one decay rate of all currents (-inf without currents): only currents that decay alike sum
    into Lava's one current u."""
    rates = {name: _decay_rate(name, rhs[name], refuse) for name in sorted(currents)}
    if not rates:
        return -math.inf
    (first, rate), *others = rates.items()
    if any(not math.isclose(other, rate, rel_tol=1e-9) for _, other in others):
        taus = [f"{name} with {-1e3 / other:g} ms" for name, other in others]
        raise refuse(f"{first} decays with tau {-1e3 / rate:g} ms, {', '.join(taus)}: Lava's LIF has one current u",
                     fix="give them one time constant in the loihi2: variant")
    return rate


def _right_hand_sides(model: str, namespace: Mapping[str, Any],
                      refuse: Callable[[str], CodesignError]) -> tuple[dict[str, sympy.Expr], frozenset[str]]:
    """Each differential equation's right-hand side, subexpressions in place and constants as SI numbers,
    and the variables that hold while refractory."""
    from brian2 import Equations

    try:
        equations = Equations(model)
    except Exception as exc:  # Brian2's EquationError, or a unit it does not know
        raise refuse(f"equations do not parse ({exc})") from None
    if equations.stochastic_variables:
        raise refuse(f"noise ({', '.join(sorted(equations.stochastic_variables))}): Lava's LIF is deterministic")
    if equations.parameter_names:
        raise refuse(f"per-neuron parameters ({', '.join(sorted(equations.parameter_names))}): write them as "
                     f"constants")
    subexpressions = {_symbol(name): _sympy(equations[name].expr.code, refuse, name)
                      for name in equations.subexpr_names}
    states = {_symbol(name) for name in equations.diff_eq_names}
    rhs = {}
    for name in sorted(equations.diff_eq_names):
        expr = _sympy(equations[name].expr.code, refuse, f"d{name}/dt")
        for _ in range(len(subexpressions)):  # subexpressions may use each other, never in a cycle
            expr = expr.subs(subexpressions)
        rhs[name] = expr.subs(_constants(expr.free_symbols - states, namespace, name, refuse))
    held = frozenset(name for name in equations.diff_eq_names if "unless refractory" in equations[name].flags)
    return rhs, held


def _constants(symbols: set[sympy.Symbol], namespace: Mapping[str, Any], equation: str,
               refuse: Callable[[str], CodesignError]) -> dict[sympy.Symbol, float]:
    if _symbol("t") in symbols:
        raise refuse(f"d{equation}/dt depends on time t (Lava's LIF is autonomous)")
    known = {**units_namespace(), **namespace}
    unknown = sorted(s.name for s in symbols if s.name not in known)
    if unknown:
        raise refuse(f"d{equation}/dt uses {', '.join(unknown)}, neither a variable nor a constant of the model")
    return {s: _value(s.name, namespace, refuse, "constant") for s in symbols}


def _membrane_terms(rhs: dict[str, sympy.Expr], v: sympy.Symbol,
                    refuse: Callable[[str], CodesignError]) -> tuple[float, dict[str, float], float]:
    """(A, {I: B}, C) of ``dv/dt = A v + sum B I + C``; products of v and a variable are conductances."""
    others = [_symbol(name) for name in sorted(rhs) if name != v.name]
    try:
        poly = sympy.Poly(sympy.expand(rhs[v.name]), v, *others)
    except sympy.PolynomialError:
        raise refuse(f"d{v.name}/dt = {rhs[v.name]} is not a polynomial of the variables (nonlinear)") from None
    conductances = sorted({s.name for monomial in poly.monoms() if monomial[0] and sum(monomial) > 1
                           for s, power in zip(others, monomial[1:]) if power})
    if conductances:
        raise refuse(f"conductance-based: {v.name} multiplies {', '.join(conductances)} (Lava's LIF adds a "
                     f"current to {v.name})")
    if poly.total_degree() > 1:
        raise refuse(f"d{v.name}/dt is nonlinear (degree {poly.total_degree()})")
    gens = [v, *others]
    coefficient = {s: float(poly.coeff_monomial(s)) for s in gens}
    inputs = {s.name: coefficient[s] for s in others if coefficient[s] != 0.0}
    return coefficient[v], inputs, float(poly.coeff_monomial(1))


def _decay_rate(current: str, rhs: sympy.Expr, refuse: Callable[[str], CodesignError]) -> float:
    """``a`` of ``dI/dt = a I`` (a < 0): Lava's u only decays, and only spikes add to it."""
    symbol = _symbol(current)
    rate = sympy.simplify(rhs / symbol)
    if rate.free_symbols or not rate.is_number:
        raise refuse(f"d{current}/dt = {rhs} is not a decay ({current} times a constant): Lava's u only decays")
    if float(rate) >= 0:
        raise refuse(f"d{current}/dt = {rhs} does not decay: Lava's u needs a decay")
    return float(rate)


def _refractory_steps(group: GroupSpec, system: _System, namespace: Mapping[str, Any], h: float,
                      refuse: Callable[[str], CodesignError]) -> int:
    """Refractory steps: LIFRefractory holds v (only v) for that many steps after a spike, as Brian2's
    ``(unless refractory)`` on v does with a refractory period of whole steps."""
    from brian2 import have_same_dimensions, second

    if group.refractory is None or str(group.refractory).strip() in ("", "0"):
        return 0
    try:
        period = evaluate(group.refractory, namespace)
    except (ExpressionError, TypeError, ValueError):
        period = None
    if period is None or not have_same_dimensions(period, second):
        raise refuse(f"refractory {group.refractory!r} is not a duration (Lava's refractory period is a "
                     f"number of steps)")
    steps = float(period) / h
    if abs(steps - round(steps)) > 1e-9:
        raise refuse(f"refractory {group.refractory} is {steps:g} chip steps, not a whole number")
    if steps and system.held != {system.membrane}:
        raise refuse(f"refractory holds {', '.join(sorted(system.held)) or 'nothing'}; LIFRefractory holds "
                     f"{system.membrane} only (write '(unless refractory)' on d{system.membrane}/dt alone)")
    return int(round(steps))


#: Per-step decay (1 - factor) of a variable with rate ``k`` (dX/dt = k X) for a step ``h``, by Brian2
#: method; any other method takes the exact decay.
DECAYS: dict[str, Callable[[float, float], float]] = {
    "euler": lambda k, h: -k * h,
    "exact": lambda k, h: 1.0 - math.exp(k * h),
}


def _discretise(system: _System, v_reset: float, h: float, method: str | None,
                refuse: Callable[[str], CodesignError]) -> tuple[float, float, dict[str, float], float, str]:
    """(du, dv, couplings, bias): Lava's step with the chip's dt. A coupling is Lava u per unit of a
    current (of the membrane, 1, when there is no current), and bias Lava v per step, both per SI unit
    of the membrane (times ``scale``): they keep the resting value ``-(C + A v_reset + sum_k B_k I_k) / A``
    of the shifted membrane (at A = 0: dt (C + sum_k B_k I_k))."""
    how = method if method in DECAYS else "exact"
    decay = DECAYS[how]
    dv = decay(system.A, h)
    du = decay(system.a, h) if system.currents else 1.0
    for name, value in (("dv", dv), ("du", du)):
        if not 0.0 <= value <= 1.0:
            raise refuse(f"{name} = {value:g} per chip step of {h * 1e3:g} ms is outside [0, 1] ({how} step "
                         f"longer than the time constant)")
    drive = system.C + system.A * v_reset
    per_step = dv / -system.A if system.A else h
    couplings = ({name: per_step * B for name, B in system.currents.items()} if system.currents
                 else {system.membrane: 1.0})
    note = f"{how}, dt {h * 1e3:g} ms" + ("" if how == method else f" (method {method or 'default'})")
    return du, dv, couplings, per_step * drive, note


def _fixed(floating: dict[str, float], limits: NeuronLimits,
           refuse: Callable[[str], CodesignError]) -> tuple[dict[str, int], dict[str, float]]:
    """lava's fixed-point registers for the float parameters, and what they realise (float units)."""
    unity, shift = 2**limits.decay_bits, 2**limits.input_shift
    du = round(floating["du"] * unity) - 1  # lava's fixed-point u decays by du + 1
    dv = min(round(floating["dv"] * unity), unity - 1)
    if du < 0:
        raise refuse(f"du = {floating['du']:.3g} rounds to 0 in {limits.decay_bits} bits; fixed point decays "
                     f"u by at least 1/{unity} per step")
    bias_mant, bias_exp = _bias(round(floating["bias_mant"] * shift), refuse)
    fixed = {"du": du, "dv": dv, "vth": round(floating["vth"]), "bias_mant": bias_mant, "bias_exp": bias_exp,
             "u": round(floating["u"] * shift), "v": round(floating["v"] * shift)}
    fixed.update({k: v for k, v in floating.items() if k not in fixed})
    state_max = 2 ** (limits.state_bits - 1) - 1
    if fixed["vth"] > 2**limits.vth_bits - 1 or max(abs(fixed["u"]), abs(fixed["v"])) > state_max:
        raise refuse(f"vth {fixed['vth']} or the initial state passes lava's registers "
                     f"({limits.vth_bits}-bit threshold, {limits.state_bits}-bit u and v)")
    quantised = {"du": (du + 1) / unity, "dv": dv / unity, "bias": bias_mant * 2.0**bias_exp / shift}
    return fixed, quantised


def _bias(effective: int, refuse: Callable[[str], CodesignError]) -> tuple[int, int]:
    """(mantissa, exponent) with mantissa << exponent nearest ``effective``, the smallest exponent that fits."""
    for exponent in range(BIAS_EXPONENT_MAX + 1):
        mantissa = round(effective / 2**exponent)
        if abs(mantissa) <= BIAS_MANTISSA_MAX:
            return mantissa, exponent
    raise refuse(f"bias {effective} (fixed-point units) passes lava's 13-bit mantissa shifted by at most "
                 f"{BIAS_EXPONENT_MAX}")
