"""Port the target-rate task to Loihi 2: the same network in Brian2 (floats) and in Lava (float, fixed point).

Lava's LIF is current-based and discrete (``lava/proc/lif/process.py``)::

    u[t] = u[t-1] * (1 - du) + a_in[t]      a_in[t]: weighted input spikes of step t-1
    v[t] = v[t-1] * (1 - dv) + u[t] + bias
    spike if v[t] > vth, then v[t] = 0       (no refractory period, u is not reset)

while the task's Brian2 neuron is conductance-based. The port therefore runs its own small network,
written twice with the same dynamics: in Brian2 (floats, run_regularly on a 1 ms clock, the
plasticity as the rule's Brian2 text) and in Lava (RingBuffer spike sources, a Dense for the fixed
excitatory synapses, a LearningDense for the plastic inhibitory ones with the compiled rule, LIF).
Both see the same input spikes, drawn as the model library's ``poisson`` stimulus draws them.

Sizes (defaults of :class:`PortParams`): 200 excitatory inputs at 20 Hz and 400 inhibitory inputs
at the study's inhibitory rate (10 Hz: a weight-dependent rule's set point depends on it), one
neuron, dt = 1 ms (a Loihi time step), 6 s (2 s learning, then the rate over 4 s). Lava's cost is
per time step and per process, hardly per input: the inputs are many so that each inhibitory
synapse is weak (with 20 strong ones, pre/post correlations push Vogels' rule to 13-14 Hz in Brian2
itself). Excitatory weights are 64 Loihi units; the rule's inhibitory weight w is ``-S w`` Loihi
units (8-bit magnitude, inhibitory sign mode, weight_exp 0) with S = 255 / w_max or a little less
(never more: w_max must fit the weight register; see :func:`compile_spike_trace`). du = 818 (current
decay 819/4096 per step, tau_u about 5 ms: lava's fixed-point LIF adds 1 to du), dv = 205 (205/4096,
tau_v about 20 ms), vth = 12000 Loihi units (lava shifts threshold and input left by 6 bits alike).
Without plasticity (w = 0.05) the neuron fires at about 45-55 Hz; Vogels' rule (eta 0.01) holds it
at 10 Hz with w about 0.14.

With every scale exactly representable, Brian2 run with Loihi's order of events within a step
(``lava_order``) and Lava floating point agree spike for spike (tests/test_loihi2.py). Brian2 with
its own order differs for coincident pre/post spikes (see :mod:`codesign.hardware.loihi2.compiler`);
Lava floating point adds the quantised scales and trace decays rounded to whole steps; Lava fixed
point adds integer traces and weights with stochastic rounding and integer neuron state.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from codesign.errors import CodesignError, RuleError
from codesign.hardware.loihi2.compiler import CompiledRule, ExpandedRule, expand_rule, lower, optimise_impulses
from codesign.hardware.target import Target, bundled_target, load_target
from codesign.rules.spike_trace import SpikeTraceRule

__all__ = ["PortParams", "port_params", "compile_spike_trace", "set_point", "input_spikes", "run_brian2", "run_lava",
           "port", "port_changes", "DEFAULT_TARGET", "load_loihi2_target"]

DEFAULT_TARGET = bundled_target("loihi2")


def load_loihi2_target(path: str | Path) -> Target:
    """A target file with the ``loihi2:`` section a port needs, and a 1 ms-like time step."""
    target = load_target(path)
    if target.engine("loihi2") is None:
        raise CodesignError("has no loihi2: section, so rules cannot be compiled for Loihi 2", file=str(path),
                            key="loihi2", fix="port to hw_targets/loihi2.yaml, or copy its loihi2: section")
    if target.time_step_ms is None:
        raise CodesignError("a Loihi 2 target needs a time step", file=str(path), key="time_step_ms",
                            fix="add time_step_ms: 1.0")
    return target


@dataclasses.dataclass(frozen=True)
class PortParams:
    """The port network (see the module docstring); Loihi units unless said otherwise."""

    target_rate_hz: float = 10.0
    n_excitatory: int = 200
    n_inhibitory: int = 400
    rate_excitatory_hz: float = 20.0
    rate_inhibitory_hz: float = 10.0
    learn_s: float = 2.0
    measure_s: float = 4.0
    #: Excitatory weight (Loihi units, 8 bits).
    w_excitatory: int = 64
    #: Initial inhibitory weight and its bound, in the rule's units (w_max maps to 255).
    w_inhibitory_init: float = 0.05
    w_max: float = 1.0
    #: Lava LIF decays (12-bit integers; float runs use (du + 1) / 4096 and dv / 4096) and threshold.
    du: int = 818
    dv: int = 205
    vth: int = 12000
    #: Learning rate: a number, or None to start from the rule's eta and search up to eta_search times it
    #: (4: the weight scale can only go down, so eta does more of the rebalancing).
    eta: float | None = None
    eta_search: float = 4.0
    #: Loihi units per unit of w: searched from 255 / w_max (the weight register) down to that / weight_scale_search.
    weight_scale_search: float = 2.0
    #: Trace impulses: None chooses them (whole numbers in [8, 32]) with the set-point objective.
    trace_impulse: float | None = None
    #: Weights are sampled every this many steps for the trajectories.
    sample_every: int = 100

    @property
    def n_inputs(self) -> int:
        return self.n_excitatory + self.n_inhibitory


#: The port network's parameters taken from a model's constants (port parameter -> constant, and the
#: unit the constant is read in). Until the port runs a model's own network (its next release), it
#: ports models that define these: the target-rate model and its variants.
MODEL_CONSTANTS = {"target_rate_hz": ("target_rate", "Hz"), "rate_inhibitory_hz": ("rate_inhibitory", "Hz"),
                   "w_inhibitory_init": ("w_inhibitory_init", "1"), "w_max": ("w_max", "1")}


def port_params(model: Any = None, **overrides: Any) -> PortParams:
    """Port parameters from a model's constants (:data:`MODEL_CONSTANTS`): its target rate, inhibitory
    input rate, initial weight and bound (sizes and durations stay the port's)."""
    from codesign.expressions import evaluate

    values: dict[str, Any] = {}
    if model is not None:
        if len(model.slots) != 1 or next(iter(model.slots.values())) != "spike_trace":
            raise CodesignError(f"port runs one spike_trace rule; model {model.name} has slots {model.slots}",
                                file=model.file, key="synapses", fix="port a study of models/target-rate.yaml")
        for name, (constant, unit) in MODEL_CONSTANTS.items():
            if constant not in model.constants:
                raise CodesignError(f"the port network needs constant {constant}", file=model.file, key="constants",
                                    fix=f"port a model that defines {', '.join(c for c, _ in MODEL_CONSTANTS.values())}")
            values[name] = float(model.constants[constant] / evaluate(unit, {}))
    values.update(overrides)
    return PortParams(**values)


def rule_text(rule: SpikeTraceRule, eta: float, w_max: float) -> tuple[dict[str, str], dict[str, float]]:
    """The rule's Brian2 synapse text and the values of its constants."""
    return rule.equations(), {"eta": eta, "w_max": w_max}


_TERMS = {("pre", ()): "pre_1", ("pre", (("y", 1),)): "pre_y", ("pre", (("w", 1),)): "pre_w",
          ("post", ()): "post_1", ("post", (("x", 1),)): "post_x", ("post", (("w", 1),)): "post_w"}


def set_point(coefficients: Mapping[str, float], rule: SpikeTraceRule, params: PortParams, w: float) -> float:
    """The rate (Hz) at which a spike-trace rule's mean drift vanishes, neglecting correlations.

    With inhibitory inputs at ``r`` and the neuron at ``rho``, traces average ``x = r tau_x`` and
    ``y = rho tau_y``, so the drift ``r (pre_1 + pre_y y + pre_w w) + rho (post_1 + post_x x + post_w w)``
    vanishes at ``rho = -r (pre_1 + pre_w w) / (r pre_y tau_y + post_1 + post_x r tau_x + post_w w)``
    (Vogels: ``alpha / (tau_x + tau_y)``). A common factor (eta) cancels. NaN if undefined.
    """
    c = lambda name: coefficients.get(name, 0.0)  # noqa: E731
    r, tau_x, tau_y = params.rate_inhibitory_hz, rule.tau_x_ms * 1e-3, rule.tau_y_ms * 1e-3
    denominator = r * c("pre_y") * tau_y + c("post_1") + c("post_x") * r * tau_x + c("post_w") * w
    rho = -r * (c("pre_1") + c("pre_w") * w) / denominator if denominator else math.nan
    return rho if math.isfinite(rho) and rho > 0 else math.nan


def _coefficients(compiled: CompiledRule) -> dict[str, float]:
    """The spike-trace coefficients a compiled rule realises (quantised; dropped terms are 0)."""
    return {_TERMS[(t.origin.event, t.origin.powers)]: t.coefficient for t in compiled.terms
            if t.origin is not None and (t.origin.event, t.origin.powers) in _TERMS}


def compile_spike_trace(rule: SpikeTraceRule, params: PortParams, target: Target, w_typical: float | None = None,
                        *, allow_drop: bool = False) -> tuple[CompiledRule, float]:
    """Compile a spike-trace rule for the port network (inhibitory: negative Loihi weights).

    Returns the compiled rule and the eta it uses. Quantisation changes the balance of the terms and
    so the rate the rule holds (:func:`set_point`, at the typical weight ``w_typical``, given for
    the weight scale 255 / w_max). Three knobs move the scales without changing the rule: the
    weight scale S (constants scale with S, weight terms do not), the trace impulses (each scales its
    own terms) and, last, eta (all terms; it only sets the learning speed). S never passes the weight
    register: S * w_max <= 2**weight_bits - 1, so Loihi holds every weight the rule allows. The search
    runs over S in [1 / weight_scale_search, 1] x 255 / w_max (9 steps), eta in [1, eta_search] x the
    rule's eta (9 steps, unless ``params.eta`` is given) and, for each, whole impulses in [8, 32]; the
    smallest predicted set-point shift wins (rounded to 0.1 %; ties: fewer dropped terms, the rule's
    eta, then the larger S). A term whose scale rounds to zero at every setting is refused in one
    line, unless ``allow_drop``: it is then dropped (listed in ``dropped``). A rule that would lose
    every term is refused either way.
    """
    base_scale = target.engine("loihi2").learning_engine.weight_max / params.w_max
    text, namespace = rule_text(rule, 1.0, params.w_max)
    unit = expand_rule(text["model"], text["on_pre"], text["on_post"], namespace)  # dw is linear in eta
    w_base = params.w_inhibitory_init if w_typical is None else w_typical
    etas, scales = _port_settings(rule, params, base_scale)
    best: tuple[tuple[float, int, int, int], CompiledRule, float] | None = None
    error: RuleError | None = None
    for i, eta in enumerate(etas):
        for j, weight_scale in enumerate(scales):
            # The network holds the same Loihi weight whatever the scale: w grows as S shrinks.
            w = w_base * base_scale / weight_scale
            try:
                compiled, shift = _compile_at(unit.scaled(eta), eta, weight_scale, w, rule, params, target, allow_drop)
            except RuleError as exc:
                error = error or exc
                continue
            score = (0.0 if shift is None else shift, len(compiled.dropped), i, j)
            if best is None or score < best[0]:
                best = (score, compiled, float(eta))
            if shift is None or score[:2] == (0.0, 0):
                break  # nothing (left) to improve
        if best is not None and (best[0][:2] == (0.0, 0) or len(scales) == 1):
            break
    if best is None:
        raise _refused_everywhere(error, etas, scales, target)
    return best[1], best[2]


def _port_settings(rule: SpikeTraceRule, params: PortParams, base_scale: float) -> tuple[list[float], list[float]]:
    """The etas and weight scales :func:`compile_spike_trace` tries, in order of preference."""
    if params.eta is not None:
        etas = [params.eta]
    else:
        etas = list(rule.eta * np.geomspace(1.0, max(params.eta_search, 1.0), 9))
    scales = list(base_scale * np.geomspace(1.0, 1.0 / max(params.weight_scale_search, 1.0), 9))
    return etas, scales


def _compile_at(expanded: ExpandedRule, eta: float, weight_scale: float, w: float, rule: SpikeTraceRule,
                params: PortParams, target: Target, allow_drop: bool) -> tuple[CompiledRule, float | None]:
    """The rule compiled at one eta and weight scale, with the impulses that best keep its set point at
    weight ``w``, and the predicted set-point shift (rounded to 0.1 %; None where the exact set point
    is undefined). A term that rounds to zero is refused unless ``allow_drop``."""
    limits = target.engine("loihi2").learning_engine
    exact = set_point(rule.coefficients, rule, params, w)

    def shift(compiled: CompiledRule) -> float:
        if compiled.dropped and not allow_drop:
            return math.inf
        rho = set_point(_coefficients(compiled), rule, params, w)
        return abs(rho / exact - 1.0) if math.isfinite(rho) else math.inf

    objective = shift if math.isfinite(exact) else None
    impulses: Any = params.trace_impulse
    if impulses is None:
        impulses = optimise_impulses(expanded, weight_scale=weight_scale, weight_sign=-1, limits=limits,
                                     dt_ms=target.time_step_ms, objective=objective)
    compiled = lower(expanded, weight_scale=weight_scale, weight_sign=-1, impulses=impulses,
                     dt_ms=target.time_step_ms, limits=limits, underflow="drop")
    if compiled.dropped and not allow_drop:
        raise _underflow_refusal(compiled, eta)
    return compiled, (round(objective(compiled), 3) if objective else None)


def _refused_everywhere(error: RuleError | None, etas: list[float], scales: list[float], target: Target) -> RuleError:
    """The first refusal (the rule as asked: its eta, the register-filling scale), saying what else was tried."""
    if error is None:
        raise RuntimeError("no port settings were tried")
    limits = target.engine("loihi2").learning_engine
    tried = (f"eta {min(etas):.3g}-{max(etas):.3g}" if len(etas) > 1 else f"eta {etas[0]:.3g}") + (
        f", weight scales {min(scales):.4g}-{max(scales):.4g} (at most {limits.weight_max} / w_max: the "
        f"{limits.weight_bits}-bit weight register)")
    return RuleError(f"{error.message}; refused at every setting tried ({tried})", key=error.key, fix=error.fix)


def _underflow_refusal(compiled: CompiledRule, eta: float) -> RuleError:
    """The port's refusal of a term whose scale rounds to zero (unless it may drop terms)."""
    term, e_low = compiled.dropped[0], compiled.limits.scale_exponent[0]
    return RuleError(f"term {term.source} -> {term.product()}: scale {term.scale:.3g} (eta {eta:.3g}, weight scale "
                     f"{compiled.weight_scale:.4g}) rounds to 0, below Loihi 2's smallest 2^{e_low} = {2.0 ** e_low:g}",
                     fix="port with --allow-drop (allow_drop=True) to drop it and list it, or raise the rule's eta")


def input_spikes(params: PortParams, seed: int, dt_ms: float = 1.0) -> np.ndarray:
    """Input spikes as a (n_inputs, steps) 0/1 array: Poisson, at most one per input and step, drawn as
    the model library's ``poisson`` stimulus draws them."""
    steps = int(round((params.learn_s + params.measure_s) * 1000.0 / dt_ms))
    rng = np.random.default_rng(seed)
    rates = np.r_[np.full(params.n_excitatory, params.rate_excitatory_hz),
                  np.full(params.n_inhibitory, params.rate_inhibitory_hz)]
    spikes = np.zeros((params.n_inputs, steps), dtype=np.int8)
    counts = rng.poisson(rates * (params.learn_s + params.measure_s))
    for i in np.flatnonzero(counts):
        spikes[i, np.unique(rng.integers(0, steps, counts[i]))] = 1
    return spikes


@dataclasses.dataclass
class Run:
    """What one backend produced: spike steps of the neuron, sampled weights (rule units)."""

    spike_steps: np.ndarray
    weights: np.ndarray  # (n_samples, n_inhibitory), after steps sample_every, 2 sample_every, ...
    seconds: float

    def rate(self, params: PortParams, dt_ms: float) -> float:
        first = int(round(params.learn_s * 1000.0 / dt_ms))
        return float(np.sum(self.spike_steps >= first) / params.measure_s)


def _split_jumps(code: str, traces: set[str]) -> tuple[str, str]:
    """(trace jumps, other statements) of an event's code (Brian2's statement parser)."""
    from brian2.parsing.statements import parse_statement

    jumps, rest = [], []
    for line in code.splitlines():
        if line.strip():
            (jumps if parse_statement(line)[0] in traces else rest).append(line)
    return "\n".join(jumps), "\n".join(rest)


def run_brian2(rule: SpikeTraceRule, params: PortParams, spikes: np.ndarray, weight_scale: float,
               dt_ms: float = 1.0, lava_order: bool = False, eta: float | None = None) -> Run:
    """The port network in Brian2, floats, with the rule's own Brian2 text and time constants.

    ``lava_order=True`` runs both sides' trace jumps before any weight update of the step, as
    Loihi does (Brian2 runs ``on_pre`` entirely before ``on_post``); with scales that quantise
    exactly, Lava's floating point should then match Brian2 spike for spike (a check of the port).
    """
    import brian2 as b2

    from codesign.backends.runtime import configure_runtime
    from codesign.hardware import Target

    start = time.perf_counter()
    configure_runtime(Target(name="loihi2-reference", codegen="numpy"))
    eta = eta if eta is not None else rule.eta if params.eta is None else params.eta
    text, namespace = rule_text(rule, eta, params.w_max)
    clock = b2.Clock(dt_ms * b2.ms)
    steps = spikes.shape[1]
    index, step = np.nonzero(spikes)
    order = np.lexsort((index, step))
    inputs = b2.SpikeGeneratorGroup(params.n_inputs, index[order], step[order] * dt_ms * b2.ms, clock=clock)
    cell = {"du": (params.du + 1) / 4096.0, "dv": params.dv / 4096.0, "vth": float(params.vth)}
    neuron = b2.NeuronGroup(1, "u : 1\nv : 1\na_in : 1", threshold="v > vth", reset="v = 0", clock=clock,
                            namespace=cell)
    # Lava's LIF step, before the threshold: the input of step t-1 enters u at step t.
    neuron.run_regularly("u = u*(1 - du) + a_in\nv = v*(1 - dv) + u\na_in = 0", when="start")
    excitatory = b2.Synapses(inputs, neuron, on_pre="a_in_post += w_e", clock=clock,
                             namespace={"w_e": float(params.w_excitatory)})
    excitatory.connect(i=np.arange(params.n_excitatory), j=0)
    on_pre: Any = "a_in_post -= w_unit*w\n" + text["on_pre"]
    on_post: Any = text["on_post"]
    if lava_order:
        jumps_pre, rest_pre = _split_jumps(text["on_pre"], {"x", "y"})
        jumps_post, rest_post = _split_jumps(text["on_post"], {"x", "y"})
        on_pre = {"pre_jumps": jumps_pre, "pre": "a_in_post -= w_unit*w\n" + rest_pre}
        on_post = {"post_jumps": jumps_post, "post": rest_post}
    inhibitory = b2.Synapses(inputs, neuron, model=text["model"], on_pre=on_pre, on_post=on_post, clock=clock,
                             namespace={**namespace, "w_unit": weight_scale})
    if lava_order:
        inhibitory.pre_jumps.order, inhibitory.post_jumps.order = -3, -2
    inhibitory.connect(i=np.arange(params.n_excitatory, params.n_inputs), j=0)
    inhibitory.w = params.w_inhibitory_init
    spikes_out = b2.SpikeMonitor(neuron)
    weights = b2.StateMonitor(inhibitory, "w", record=True, when="end", clock=clock)
    network = b2.Network(inputs, neuron, excitatory, inhibitory, spikes_out, weights)
    with np.errstate(all="ignore"):
        network.run(steps * dt_ms * b2.ms, namespace={})
    sampled = np.asarray(weights.w).T[params.sample_every - 1::params.sample_every]
    spike_steps = np.rint(np.asarray(spikes_out.t / b2.ms) / dt_ms).astype(int)
    return Run(spike_steps, sampled, time.perf_counter() - start)


def run_lava(compiled: CompiledRule, params: PortParams, spikes: np.ndarray, fixed_pt: bool,
             rng_seed: int = 0) -> Run:
    """The port network in Lava: ``Loihi2SimCfg(select_tag="fixed_pt")`` or ``"floating_pt"``."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense, LearningDense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF
    from lava.utils.weightutils import SignMode

    start = time.perf_counter()
    steps = spikes.shape[1]
    n_e = params.n_excitatory
    w0 = compiled.to_loihi_weight(np.full((1, params.n_inhibitory), params.w_inhibitory_init))
    if fixed_pt:
        w0 = np.rint(w0)
        du, dv, vth = params.du, params.dv, params.vth
    else:
        du, dv, vth = (params.du + 1) / 4096.0, params.dv / 4096.0, float(params.vth)
    source_e = Source(data=spikes[:n_e].astype(float))
    source_i = Source(data=spikes[n_e:].astype(float))
    excitatory = Dense(weights=np.full((1, n_e), float(params.w_excitatory)), num_weight_bits=8,
                       sign_mode=SignMode.EXCITATORY)
    inhibitory = LearningDense(weights=w0, learning_rule=compiled.learning_rule(fixed_pt=fixed_pt, rng_seed=rng_seed),
                               num_weight_bits=8, sign_mode=SignMode.INHIBITORY if compiled.weight_sign < 0
                               else SignMode.EXCITATORY)
    neuron = LIF(shape=(1,), du=du, dv=dv, vth=vth, bias_mant=0)
    sink = Sink(shape=(1,), buffer=steps)
    source_e.s_out.connect(excitatory.s_in)
    source_i.s_out.connect(inhibitory.s_in)
    excitatory.a_out.connect(neuron.a_in)
    inhibitory.a_out.connect(neuron.a_in)
    neuron.s_out.connect(inhibitory.s_in_bap)
    neuron.s_out.connect(sink.a_in)
    config = Loihi2SimCfg(select_tag="fixed_pt" if fixed_pt else "floating_pt")
    samples = []
    try:
        done = 0
        while done < steps:
            chunk = min(params.sample_every, steps - done)
            neuron.run(condition=RunSteps(num_steps=chunk), run_cfg=config)
            done += chunk
            if chunk == params.sample_every:
                samples.append(np.array(inhibitory.weights.get(), dtype=float).ravel())
        out = np.array(sink.data.get()).ravel()
    finally:
        neuron.stop()
    weights = compiled.from_loihi_weight(np.array(samples))
    return Run(np.flatnonzero(out > 0), weights, time.perf_counter() - start)


def _compare(run: Run, reference: Run) -> dict[str, float]:
    """Weight trajectories against Brian2: correlation of the mean weight, relative error of all weights."""
    n = min(len(run.weights), len(reference.weights))
    a, b = run.weights[:n], reference.weights[:n]
    mean_a, mean_b = a.mean(axis=1), b.mean(axis=1)
    if np.std(mean_a) > 0 and np.std(mean_b) > 0:
        correlation = float(np.corrcoef(mean_a, mean_b)[0, 1])
    else:
        correlation = float("nan")
    return {"weight_correlation": correlation,
            "weight_relative_error": float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)),
            "final_mean_weight_relative_error": float(abs(mean_a[-1] - mean_b[-1]) / max(abs(mean_b[-1]), 1e-300))}


def port(rule: SpikeTraceRule, params: PortParams | Any = None, seed: int = 0,
         target: Target | str | Path | None = None, *, allow_drop: bool = False) -> dict[str, Any]:
    """Run ``rule`` on the port network in Brian2, Lava floating point and Lava fixed point.

    ``params`` is a :class:`PortParams`, a study's model (a ``ModelSpec``, see :func:`port_params`) or
    None. Returns, per backend key (``brian2``, ``lava_float``, ``lava_fixed``): ``loss`` (squared
    relative rate error against the target), ``rates_hz``, ``mean_weight`` (final, rule units),
    ``seconds``; the Lava ones add ``weight_correlation`` (Pearson, mean inhibitory weight sampled
    every ``sample_every`` steps), ``weight_relative_error`` (||W_lava - W_brian2|| / ||W_brian2||
    over all sampled weights) and ``final_mean_weight_relative_error``, all against Brian2.
    ``brian2_lava_order`` is Brian2 again with Loihi's order of events within a step (both sides'
    traces jump before any weight update), and ``lava_float.vs_brian2_lava_order`` compares with it:
    what remains there is quantisation alone. ``rule`` holds the compiled rule (products, quantisation
    errors, traces, dropped terms, predicted set points) and ``network`` the port's settings (the
    ``eta`` used, the rule's own ``rule_eta``). ``changes`` lists every way the ported rule differs
    from the rule asked for (:func:`port_changes`). A term whose scale rounds to zero is refused
    (:class:`~codesign.errors.RuleError`) before anything runs, unless ``allow_drop``.
    """
    if not isinstance(target, Target):
        target = load_loihi2_target(DEFAULT_TARGET if target is None else target)
    if params is None:
        params = PortParams()
    elif not isinstance(params, PortParams):
        params = port_params(params)
    dt_ms = target.time_step_ms
    weight_scale = target.engine("loihi2").learning_engine.weight_max / params.w_max
    spikes = input_spikes(params, seed, dt_ms)
    w_typical, first = _typical_weight(rule, params, target, spikes, allow_drop)
    compiled, eta = compile_spike_trace(rule, params, target, w_typical, allow_drop=allow_drop)
    same = first is not None and eta == rule.eta and compiled.weight_scale == weight_scale
    reference = first if same else run_brian2(rule, params, spikes, compiled.weight_scale, dt_ms, eta=eta)
    runs = {"brian2": reference,
            "brian2_lava_order": run_brian2(rule, params, spikes, compiled.weight_scale, dt_ms, lava_order=True,
                                            eta=eta),
            "lava_float": run_lava(compiled, params, spikes, fixed_pt=False, rng_seed=seed),
            "lava_fixed": run_lava(compiled, params, spikes, fixed_pt=True, rng_seed=seed)}
    result: dict[str, Any] = _run_summaries(runs, params, dt_ms)
    result["rule"] = compiled.report()
    w_typical *= weight_scale / compiled.weight_scale
    result["rule"]["set_point_hz"] = {"exact": set_point(rule.coefficients, rule, params, w_typical),
                                      "quantised": set_point(_coefficients(compiled), rule, params, w_typical),
                                      "typical_weight": w_typical,
                                      "note": "mean-drift balance without correlations, at the typical weight"}
    result["changes"] = port_changes(rule, params, compiled, eta)
    result["network"] = {**dataclasses.asdict(params), "eta": eta, "rule_eta": rule.eta, "dt_ms": dt_ms,
                         "seed": seed, "target": target.file, "allow_drop": allow_drop}
    return result


def _typical_weight(rule: SpikeTraceRule, params: PortParams, target: Target, spikes: np.ndarray,
                    allow_drop: bool) -> tuple[float, Run | None]:
    """The weight at which the port keeps the rule's set point, and the Brian2 run that found it (if
    one did): with the eta left to the port, the mean weight the rule settles at in Brian2 with its own
    eta at the register-filling scale; else the initial weight."""
    if params.eta is not None:
        return params.w_inhibitory_init, None
    # Refuse before the slow run: whether a rule compiles does not depend on its typical weight.
    compile_spike_trace(rule, params, target, allow_drop=allow_drop)
    weight_scale = target.engine("loihi2").learning_engine.weight_max / params.w_max
    first = run_brian2(rule, params, spikes, weight_scale, target.time_step_ms, eta=rule.eta)
    return float(first.weights[-1].mean()), first


def _run_summaries(runs: dict[str, Run], params: PortParams, dt_ms: float) -> dict[str, dict[str, Any]]:
    """Each run's loss, rate, final mean weight and time; the Lava runs' weights compared with Brian2's."""
    result = {}
    for key, run in runs.items():
        rate = run.rate(params, dt_ms)
        entry: dict[str, Any] = {"loss": ((rate - params.target_rate_hz) / params.target_rate_hz) ** 2,
                                 "rates_hz": [rate], "mean_weight": float(run.weights[-1].mean()),
                                 "seconds": run.seconds}
        if key.startswith("lava"):
            entry.update(_compare(run, runs["brian2"]))
        if key == "lava_float":
            entry["vs_brian2_lava_order"] = _compare(run, runs["brian2_lava_order"])
        result[key] = entry
    return result


def port_changes(rule: SpikeTraceRule, params: PortParams, compiled: CompiledRule, eta: float) -> list[dict[str, Any]]:
    """Every way the ported rule differs from ``rule``: its eta, then the compiler's changes
    (:meth:`CompiledRule.changes`: weight scale and bounds, dropped and quantised terms, traces)."""
    changes = []
    if eta != rule.eta:
        why = ("retuned so that the quantised rule keeps its predicted set point" if params.eta is None
               else "set by the port parameters")
        changes.append({"kind": "eta", "from": rule.eta, "to": eta, "text": f"eta {rule.eta:g} -> {eta:.4g}: {why}"})
    return changes + compiled.changes()
