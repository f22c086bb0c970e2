"""A model as Loihi 2 runs it: one candidate's network on one input draw, each part mapped for Lava.

The study's own model file, read at the chip's time step:

* every group of ``kind: spikes`` becomes spike trains on the chip's steps (the draw the study's
  network gets for the seed, each spike moved to the step it falls in);
* every neuron group becomes a Lava LIF (:mod:`~codesign.hardware.loihi2.neurons`): its own equations,
  or its ``loihi2:`` variant where the chip cannot run them;
* every synapse becomes a Dense (fixed) or a LearningDense (plastic) whose transmission
  ``X_post += expr`` adds to the target's input ``X``; a plastic synapse's rule is its own Brian2 text,
  joined with its family's text as the study searched it (:func:`~codesign.models.network.synapse_text`),
  compiled by :mod:`~codesign.hardware.loihi2.compiler`;
* the protocol becomes phases of whole chip steps, each with the synapses that learn in it.

Each target group's threshold in Lava units is chosen so that the plastic weights onto it fill the
weight register (w's upper bound at 255) and never pass it; the fixed weights take a weight exponent
where they do not fit 8 bits. Everything that differs from the study's network is in ``changes``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Mapping

import numpy as np

from codesign.errors import CodesignError, RuleError
from codesign.hardware.loihi2.compiler import CompiledRule, ExpandedRule, expand_rule, lower, optimise_impulses
from codesign.hardware.loihi2.limits import Loihi2Limits
from codesign.hardware.loihi2.neurons import DEFAULT_VTH, LavaNeuron, lava_neuron
from codesign.models.spec import GroupSpec, ModelSpec, SynapseSpec
from codesign.rules import FAMILIES

__all__ = ["ChipGroup", "ChipSynapse", "ChipPhase", "ChipNetwork", "chip_network"]


@dataclasses.dataclass(frozen=True)
class ChipGroup:
    name: str
    n: int
    #: The group as the chip runs it: the model's own, or its ``loihi2:`` variant.
    spec: GroupSpec
    neuron: LavaNeuron
    #: Fixed point's parameters (None where the group has no fixed-point model, e.g. refractory).
    fixed: LavaNeuron | None
    variant: bool


@dataclasses.dataclass(frozen=True)
class ChipSynapse:
    name: str
    spec: SynapseSpec
    n_pre: int
    n_post: int
    pre: np.ndarray
    post: np.ndarray
    #: The Brian2 text compiled (model, on_pre, on_post): the model file's and its family's, as searched.
    text: tuple[str | None, str | None, str | None]
    #: Constants of the text: the model's and the candidate's values (these in SI floats, see ``units``).
    namespace: dict[str, Any]
    #: The target's input the transmission adds to, and Lava a_in units per unit of what it adds.
    variable: str
    efficacy: float
    #: (n_post, n_pre): the value each synapse transmits (fixed) or its initial weight (plastic), in the
    #: text's units; 0 where no synapse.
    values: np.ndarray
    rule: CompiledRule | None = None
    #: The rule's weight variable, and the text with its learning rate times the gate ``plastic_NAME(t)``.
    weight: str | None = None
    gated_text: tuple[str | None, str | None, str | None] | None = None
    #: The unit of each candidate value in ``namespace`` (Brian2 text, e.g. ``second``).
    units: dict[str, str] = dataclasses.field(default_factory=dict)

    def brian2_namespace(self) -> dict[str, Any]:
        """``namespace`` with the candidate's values in their units, as Brian2 checks them."""
        from codesign.expressions import evaluate

        return {**self.namespace, **{k: self.namespace[k] * evaluate(u, {}) for k, u in self.units.items()}}

    @property
    def plastic(self) -> bool:
        return self.rule is not None

    @property
    def mask(self) -> np.ndarray:
        present = np.zeros((self.n_post, self.n_pre), dtype=bool)
        present[self.post, self.pre] = True
        return present

    def lava_weights(self) -> np.ndarray:
        """(n_post, n_pre) weights in Lava a_in units (floats)."""
        return self.efficacy * self.values


@dataclasses.dataclass(frozen=True)
class ChipPhase:
    name: str
    cycle: int
    steps: int
    #: Plastic synapses that learn in this phase.
    plastic: frozenset[str]


@dataclasses.dataclass
class ChipNetwork:
    model: ModelSpec
    dt_ms: float
    #: Spike inputs: group -> (n, steps) array of 0 and 1.
    inputs: dict[str, np.ndarray]
    groups: dict[str, ChipGroup]
    synapses: dict[str, ChipSynapse]
    phases: list[ChipPhase]
    #: What the draw tells the loss (stimulus name -> facts).
    facts: dict[str, dict[str, np.ndarray]]
    changes: list[str] = dataclasses.field(default_factory=list)

    @property
    def steps(self) -> int:
        return sum(p.steps for p in self.phases)

    def gated(self) -> bool:
        """Whether some phase turns some plastic synapse's learning off."""
        plastic = {n for n, s in self.synapses.items() if s.plastic}
        return any(p.plastic != plastic for p in self.phases)


def chip_network(model: ModelSpec, candidate: Mapping[str, Any], terms: Mapping[str, tuple[str, ...]],
                 draw: Mapping[str, Any], limits: Loihi2Limits, dt_ms: float, *, allow_drop: bool = False) -> ChipNetwork:
    """``model`` with ``candidate`` (slot -> rule) on one input ``draw`` (stimulus -> StimulusDraw), mapped
    for Loihi 2 at ``dt_ms``. Raises a one-line :class:`CodesignError` for what the chip cannot run."""
    from codesign.models.network import BatchedNetwork, Layout

    refused = _per_phase_values(model)
    pattern = BatchedNetwork(model, terms, Layout(1, 1), None, []).synapses
    changes: list[str] = []
    inputs, facts = _inputs(model, draw, dt_ms, changes)
    synapses: dict[str, ChipSynapse] = {}
    groups: dict[str, ChipGroup] = {}
    for name, group in model.groups.items():
        if group.kind == "neurons":
            incoming = {s: spec for s, spec in model.synapses.items() if spec.target == name}
            try:
                groups[name], mapped = _group(model, name, group, incoming, candidate, terms, pattern, draw, limits,
                                              dt_ms, allow_drop, changes)
            except CodesignError as exc:  # every group is looked at: the refusal lists all that the chip cannot run
                refused += getattr(exc, "refusals", [exc])
                continue
            synapses.update(mapped)
        elif group.kind != "spikes":
            refused.append(CodesignError(f"a {group.kind} group: the port gives the chip spike trains drawn by a "
                                         "stimulus", file=model.file, key=f"groups.{name}.kind",
                                         fix="write kind: spikes, fed by a poisson stimulus"))
    _refuse(refused)
    phases = _phases(model, dt_ms, {n for n, s in synapses.items() if s.plastic})
    return ChipNetwork(model, dt_ms, inputs, groups, {n: synapses[n] for n in model.synapses}, phases, facts,
                       changes)


def _per_phase_values(model: ModelSpec) -> list[CodesignError]:
    refused = [CodesignError(f"phase {phase.name} sets {', '.join(phase.values)}: the port does not yet change "
                             "constants between phases", file=model.file, key=f"protocol.{i}.values",
                             fix="port a model whose phases change only which synapses learn")
               for i, phase in enumerate(model.protocol) if phase.values]
    if model.trials:
        refused.append(CodesignError("trials set constants per pass: the port does not yet change constants between "
                                     "passes", file=model.file, key="trials", fix="port a model without trials:"))
    return refused


def _beyond_lif(model: ModelSpec, name: str, group: GroupSpec) -> list[CodesignError]:
    """What a group does that no Lava LIF does, whatever its equations' form: compartments (voltages whose
    dynamics follow the threshold's, e.g. a dendrite) and random numbers (e.g. stochastic bursts)."""
    from brian2 import Equations, volt
    from brian2.equations.equations import DIFFERENTIAL_EQUATION

    out = []
    voltages = {eq.varname: eq.identifiers for eq in Equations(group.model).ordered
                if eq.type == DIFFERENTIAL_EQUATION and eq.dim == volt.dim}
    reached = {v for v in voltages if re.search(rf"\b{v}\b", group.threshold or "")}
    membrane, grew = set(reached), True
    while grew:  # voltages driven by the threshold's, directly or through one another
        more = {v for v, uses in voltages.items() if v not in reached and uses & reached}
        reached, grew = reached | more, bool(more)
    compartments = sorted(reached - membrane)
    if compartments:
        out.append(CodesignError(f"compartments driven by the membrane ({', '.join(compartments)}): Lava's LIF has "
                                 "one", file=model.file, key=f"groups.{name}.model",
                                 fix="give the group a loihi2: variant with one compartment"))
    texts = {"model": group.model, "threshold": group.threshold, "reset": group.reset, **group.events}
    random = [key for key, text in texts.items() if re.search(r"\brandn?\(", text or "")]
    if random:
        out.append(CodesignError(f"random numbers in its {', '.join(random)} (e.g. stochastic bursts): Lava's LIF "
                                 "draws none", file=model.file, key=f"groups.{name}.{random[0]}",
                                 fix="give the group a loihi2: variant without rand()"))
    return out


def _refuse(refused: list[CodesignError]) -> None:
    """One line for everything the chip cannot run: the first refusal, and the others' keys and reasons."""
    if not refused:
        return
    first, others = refused[0], refused[1:]
    if not others:
        raise first
    also = "; ".join(f"{e.key}: {e.message}" for e in others)
    fixes = list(dict.fromkeys(e.fix for e in refused if e.fix))
    raise Refusals(refused, f"{first.message}; and {len(others)} more: {also}", file=first.file, key=first.key,
                   fix="; ".join(fixes) or None)


class Refusals(CodesignError):
    """Several refusals in one line; ``refusals`` keeps them apart (a caller may add its own and say all)."""

    def __init__(self, refusals: list[CodesignError], message: str, **where: Any) -> None:
        super().__init__(message, **where)
        self.refusals = refusals


def _inputs(model: ModelSpec, draw: Mapping[str, Any], dt_ms: float,
            changes: list[str]) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """Each spikes group's trains on the chip's steps (at most one spike per input and step)."""
    steps = int(round(model.duration_s * 1e3 / dt_ms))
    inputs = {name: np.zeros((model.group_size(name), steps), dtype=np.int8)
              for name, group in model.groups.items() if group.kind == "spikes"}
    merged = 0
    for stimulus, spec in model.stimuli.items():
        d = draw[stimulus]
        if d.spikes is None:
            continue
        group = spec.params["group"]
        index, times = d.spikes
        keep = index < inputs[group].shape[0]  # draw 0: inputs 0..n-1
        step = np.minimum(np.floor(times[keep] * 1e3 / dt_ms + 1e-9).astype(int), steps - 1)
        before = int(inputs[group].sum())
        inputs[group][index[keep], step] = 1
        merged += int(keep.sum()) - (int(inputs[group].sum()) - before)
    if model.dt_s * 1e3 != dt_ms:
        changes.append(f"time step {model.dt_s * 1e3:g} ms -> {dt_ms:g} ms (the chip's): input spikes move to the "
                       f"step they fall in" + (f", {merged} of them merging with another" if merged else ""))
    return inputs, {name: d.facts for name, d in draw.items()}


def _group(model: ModelSpec, name: str, group: GroupSpec, incoming: Mapping[str, SynapseSpec],
           candidate: Mapping[str, Any], terms: Mapping[str, tuple[str, ...]], pattern: Mapping[str, Any],
           draw: Mapping[str, Any], limits: Loihi2Limits, dt_ms: float, allow_drop: bool,
           changes: list[str]) -> tuple[ChipGroup, dict[str, ChipSynapse]]:
    """The group as a Lava neuron, with a threshold that fits its plastic weights to the register, and the
    synapses onto it."""
    from brian2 import ms

    variant = group.loihi2 is not None
    spec = group.loihi2.apply(group) if variant else group
    refused = []
    if spec.events:  # a group's custom events: those of its variant count (a variant may drop them)
        refused.append(CodesignError(f"custom events ({', '.join(spec.events)}): Lava's LIF sends its spikes only",
                                     file=model.file, key=f"groups.{name}.events",
                                     fix="give the group a loihi2: variant without events, or port a model without them"))
    namespace = {**model.constants, **_candidate_values(model, candidate, terms)}
    dt = dt_ms * ms

    def neuron(vth: int, fixed_point: bool) -> LavaNeuron:
        return lava_neuron(name, spec, namespace, dt, fixed_point=fixed_point, vth=vth, limits=limits.neuron,
                           file=model.file)

    refused += _beyond_lif(model, name, spec)
    try:
        probe = neuron(DEFAULT_VTH, False)
    except CodesignError as exc:
        refused.append(exc)
    _refuse(refused)
    texts = {s: _synapse_text(model, s, incoming[s], candidate, terms) for s in incoming}
    learning = {s: _learning(model, s, incoming[s], probe, *texts[s][:2]) for s in incoming if incoming[s].plastic}
    need = [_register_need(model, s, rule, probe, limits) for s, rule in learning.items()]
    vth = DEFAULT_VTH if not need or min(need) >= 1.0 else max(1, math.floor(DEFAULT_VTH * min(need) + 1e-9))
    floating = neuron(vth, False)
    try:
        fixed = neuron(vth, True)
    except CodesignError as exc:
        fixed = None
        changes.append(f"groups.{name}: no fixed point ({exc.message})")
    if variant:
        changes.append(f"groups.{name}: runs its loihi2: variant" + (f" ({group.loihi2.note})" if group.loihi2.note
                                                                     else ""))
    changes.append(f"groups.{name}: {floating.process}, vth {vth} Lava units for v_th - v_reset "
                   f"({floating.discretisation})" + (f", fixed point du {fixed.fixed_pt['du']}, dv "
                                                     f"{fixed.fixed_pt['dv']}" if fixed else ""))
    chip = ChipGroup(name, model.group_size(name), spec, floating, fixed, variant)
    synapses = {s: _synapse(model, s, incoming[s], floating, pattern[s], *texts[s], learning.get(s), draw, limits,
                            dt_ms, allow_drop, changes) for s in incoming}
    return chip, synapses


def _candidate_values(model: ModelSpec, candidate: Mapping[str, Any],
                      terms: Mapping[str, tuple[str, ...]]) -> dict[str, float]:
    """Every slot's values of ``candidate`` (a text rule's params may appear in a group's equations)."""
    values = {}
    for ref in model.rules.values():
        values.update(FAMILIES[ref.family].values(candidate[ref.slot], ref, terms[ref.slot]))
    return values


def _synapse_text(model: ModelSpec, name: str, spec: SynapseSpec, candidate: Mapping[str, Any],
                  terms: Mapping[str, tuple[str, ...]]) -> tuple[tuple, dict, tuple | None, dict[str, str]]:
    """The synapse's text as the study searched it, its namespace (constants and the candidate's values,
    in SI floats), its text gated per phase, and the units of the candidate's values."""
    from codesign.models.network import synapse_text

    if spec.rule is None:
        return synapse_text(spec, ()), dict(model.constants), None, {}
    slot = spec.rule.slot
    family = FAMILIES[spec.rule.family]
    values = family.values(candidate[slot], spec.rule, terms[slot])
    namespace = {**model.constants, **values}
    gated = synapse_text(spec, terms[slot], gate=f"plastic_{name}") if family.gate_variable(spec.rule) else None
    return synapse_text(spec, terms[slot]), namespace, gated, family.variables(spec.rule, terms[slot])


def _expanded(model: ModelSpec, name: str, spec: SynapseSpec, text: tuple, namespace: dict) -> ExpandedRule:
    weight = spec.rule.bind.get("w", "w") if spec.rule is not None else "w"
    try:
        return expand_rule(text[0] or "", text[1] or "", text[2] or "", namespace, weight=weight)
    except RuleError as exc:
        raise CodesignError(exc.message, file=model.file, key=f"synapses.{name}" + (f".{exc.key}" if exc.key else ""),
                            fix=exc.fix) from None


@dataclasses.dataclass(frozen=True)
class _Learning:
    """A plastic synapse's rule as expanded from its text, and what its transmission adds to: the target's
    input ``variable``, ``factor`` times the weight."""

    expanded: ExpandedRule
    variable: str
    factor: float


def _learning(model: ModelSpec, name: str, spec: SynapseSpec, neuron: LavaNeuron, text: tuple,
              namespace: dict) -> _Learning:
    expanded = _expanded(model, name, spec, text, namespace)
    return _Learning(expanded, *_transmission(model, name, spec, text, namespace, neuron, expanded.weight))


def _register_need(model: ModelSpec, name: str, learning: _Learning, probe: LavaNeuron,
                   limits: Loihi2Limits) -> float:
    """How much the threshold must shrink (< 1) for the synapse's upper weight bound to fit the register."""
    expanded, variable, factor = learning.expanded, learning.variable, learning.factor
    high = expanded.bounds[1]
    if high is None or high <= 0:
        raise CodesignError("the rule keeps w in no upper bound, so Loihi's weight register has no scale",
                            file=model.file, key=f"synapses.{name}.on_pre", fix="clip w to [0, w_max] in the rule")
    return limits.learning_engine.weight_max / (abs(probe.inputs[variable] * factor) * high)


def _transmission(model: ModelSpec, name: str, spec: SynapseSpec, text: tuple, namespace: Mapping[str, Any],
                  neuron: LavaNeuron, weight: str | None) -> tuple[str, float]:
    """(target input, factor) of the synapse's one statement ``X_post += factor * w`` (plastic) or
    ``X_post += constant`` (fixed: factor is then the constant)."""
    import sympy
    from brian2.parsing.statements import parse_statement
    from brian2.parsing.sympytools import str_to_sympy

    from codesign.expressions import evaluate

    key = f"synapses.{name}.on_pre"
    fix = f"write one statement X_post += EXPR, X one of {', '.join(neuron.inputs)}"
    lines = [line for line in (text[1] or "").splitlines() if line.strip()]
    found = []
    for line in lines:
        var, op, expr, _ = parse_statement(line)
        if var.endswith("_post"):
            found.append((var[: -len("_post")], op, expr))
    if len(found) != 1 or found[0][1] not in ("+=", "-="):
        raise CodesignError(f"{len(found)} statements change the target; Lava adds one weighted spike to its input",
                            file=model.file, key=key, fix=fix)
    variable, op, expr = found[0]
    if variable not in neuron.inputs:
        raise CodesignError(f"adds to {variable}, which is not an input of the Lava neuron of {spec.target}",
                            file=model.file, key=key, fix=fix)
    sign = 1.0 if op == "+=" else -1.0
    if weight is None:
        return variable, sign * float(evaluate(expr, dict(namespace)))
    # Brian2's own parser of its expression syntax (not in brian2's __all__).
    factor = sympy.simplify(str_to_sympy(expr) / sympy.Symbol(weight, real=True))
    constants = {s: float(evaluate(s.name, dict(namespace))) for s in factor.free_symbols if s.name in namespace}
    factor = factor.subs(constants)
    if factor.free_symbols or not factor.is_number:
        raise CodesignError(f"transmits {expr}, not a constant times {weight}", file=model.file, key=key,
                            fix=f"write X_post += {weight} (times a constant)")
    return variable, sign * float(factor)


def _synapse(model: ModelSpec, name: str, spec: SynapseSpec, neuron: LavaNeuron, pattern: Any, text: tuple,
             namespace: dict, gated: tuple | None, units: dict[str, str], learning: _Learning | None,
             draw: Mapping[str, Any], limits: Loihi2Limits, dt_ms: float, allow_drop: bool,
             changes: list[str]) -> ChipSynapse:
    key = f"synapses.{name}"
    n_pre, n_post, pre, post = pattern.n_pre, pattern.n_post, pattern.pre, pattern.post
    if not spec.plastic:
        if (text[2] or "").strip() or (text[0] or "").strip():
            raise CodesignError("a fixed synapse with equations or on_post: Lava's Dense only transmits",
                                file=model.file, key=key, fix="keep a fixed synapse to on_pre: X_post += EXPR")
        variable, value = _transmission(model, name, spec, text, namespace, neuron, None)
        values = np.zeros((n_post, n_pre))
        values[post, pre] = value
        fixed = ChipSynapse(name, spec, n_pre, n_post, pre, post, text, namespace, variable, neuron.inputs[variable],
                            values)
        changes.append(_fixed_weight_change(fixed))
        return fixed
    from_inputs = model.groups[spec.source].kind == "spikes"  # the Lava source then holds only the inputs it reads
    if len(pre) != (len(np.unique(pre)) if from_inputs else n_pre) * n_post:
        raise CodesignError("a plastic synapse that connects only some pairs: LearningDense learns every pair",
                            file=model.file, key=f"{key}.connect", fix="connect every pair (connect: 'True', p: 1)")
    expanded, variable = learning.expanded, learning.variable
    efficacy = neuron.inputs[variable] * learning.factor
    rate = FAMILIES[spec.rule.family].gate_variable(spec.rule)
    rule, factor = _compile(model, name, expanded, abs(efficacy), 1 if efficacy > 0 else -1, limits, dt_ms,
                            allow_drop, retunable=rate in namespace)
    if factor != 1.0:
        changes.append(f"{key}: {rate} {namespace[rate]:.6g} -> {namespace[rate] * factor:.6g} ({factor:.4g} times), "
                       "where the fewest terms round to zero and the worst quantises best; every change scales "
                       "with it, so the rule's balance holds and only its speed changes")
        namespace = {**namespace, rate: namespace[rate] * factor}  # the chip-order run learns at the same rate
    values = _initial_weights(model, name, spec, expanded.weight, draw, n_post, n_pre)
    changes.append(f"{key}: Loihi weight = {rule.weight_sign * rule.weight_scale:.6g} {expanded.weight} "
                   f"({rule.weight_scale * expanded.bounds[1]:.6g} of the {limits.learning_engine.weight_bits}-bit "
                   f"register's {limits.learning_engine.weight_max} at w's upper bound {expanded.bounds[1]:g})")
    changes += [f"{key}: {c['text']}" for c in rule.changes() if c["kind"] != "weight_scale"]
    return ChipSynapse(name, spec, n_pre, n_post, pre, post, text, namespace, variable, efficacy, values, rule,
                       expanded.weight, gated, units)


def _fixed_weight_change(s: ChipSynapse) -> str:
    """What a fixed synapse's jumps are in Lava units, and in fixed point."""
    weights = s.lava_weights()[s.mask]
    mantissas, exponent = fixed_dense(weights)
    realised = mantissas * 2.0**exponent
    nonzero = weights != 0
    error = float(np.max(np.abs(realised - weights)[nonzero] / np.abs(weights[nonzero]), initial=0.0))
    return (f"synapses.{s.name}: {s.variable}_post jumps of {_span(weights)} Lava units, {_span(realised)} in fixed "
            f"point (8-bit mantissas << {exponent}; relative error up to {error:.2%})")


def _span(values: np.ndarray) -> str:
    low, high = float(np.min(values)), float(np.max(values))
    return f"{low:.6g}" if low == high else f"{low:.6g} to {high:.6g}"


#: Learning rates the port tries, as multiples of the rule's, when a term's scale rounds to zero: every
#: change of the rule scales with its learning rate, so its balance (what it converges to) is kept and
#: only its speed changes. (The old port's search went up to 4 times too.)
ETA_FACTORS = tuple(2.0 ** (k / 4) for k in range(9))


def _compile(model: ModelSpec, name: str, expanded: ExpandedRule, scale: float, sign: int, limits: Loihi2Limits,
             dt_ms: float, allow_drop: bool, retunable: bool) -> tuple[CompiledRule, float]:
    """The rule compiled at the weight scale ``scale``, and the factor its learning rate was raised by: of
    :data:`ETA_FACTORS` (only 1 where the rule names no learning rate), the one that loses the fewest terms
    to rounding, then quantises the worst term best (to 1 %), then the smallest. A lost term is refused
    unless ``allow_drop``."""
    engine = limits.learning_engine
    best: tuple[tuple[int, float, float], CompiledRule, float] | None = None
    error: RuleError | None = None
    for factor in ETA_FACTORS if retunable else (1.0,):
        rule = expanded.scaled(factor)
        try:
            impulses = optimise_impulses(rule, weight_scale=scale, weight_sign=sign, limits=engine, dt_ms=dt_ms)
            compiled = lower(rule, weight_scale=scale, weight_sign=sign, impulses=impulses, dt_ms=dt_ms,
                             limits=engine, underflow="drop")
        except RuleError as exc:  # a scale beyond the register at this learning rate
            error = error or exc
            continue
        worst = max((t.relative_error for t in compiled.terms), default=0.0)
        score = (len(compiled.dropped), round(worst, 2), factor)
        if best is None or score < best[0]:
            best = (score, compiled, factor)
    if best is None:
        raise CodesignError(error.message, file=model.file, key=f"synapses.{name}" + (f".{error.key}" if error.key
                                                                                     else ""), fix=error.fix)
    _, compiled, factor = best
    if compiled.dropped and not allow_drop:
        term = compiled.dropped[0]
        tried = f", even with its learning rate raised {ETA_FACTORS[-1]:g} times" if retunable else ""
        raise CodesignError(f"term {term.source} -> {term.product()}: scale {term.scale / factor:.3g} rounds to 0, below "
                            f"Loihi 2's smallest 2^{engine.scale_exponent[0]}{tried}", file=model.file,
                            key=f"synapses.{name}.rule",
                            fix="port with --allow-drop to drop it (listed among the changes), or raise the rule's eta")
    return compiled, factor


def _initial_weights(model: ModelSpec, name: str, spec: SynapseSpec, weight: str, draw: Mapping[str, Any],
                     n_post: int, n_pre: int) -> np.ndarray:
    """The plastic weights the run starts from: drawn by a stimulus, else the synapse's ``initial:``."""
    for d in draw.values():
        if f"{name}.{weight}" in d.initial:
            return np.array(d.initial[f"{name}.{weight}"][0], dtype=float)
    if weight not in spec.initial:
        raise CodesignError(f"no initial value of {weight}", file=model.file, key=f"synapses.{name}.initial",
                            fix=f"add initial: {{{weight}: VALUE}}")
    value = model.value(spec.initial[weight], model.where.child("synapses").child(name).child("initial").child(weight))
    return np.full((n_post, n_pre), float(value))


def _phases(model: ModelSpec, dt_ms: float, plastic: set[str]) -> list[ChipPhase]:
    phases = []
    for cycle in range(model.cycles):
        for i, phase in enumerate(model.protocol):
            seconds = model.seconds(phase.duration, model.where.child("protocol").child(i).child("duration"))
            steps = seconds * 1e3 / dt_ms
            if abs(steps - round(steps)) > 1e-6:
                raise CodesignError(f"phase {phase.name} lasts {seconds * 1e3:g} ms, not a whole number of the "
                                    f"chip's {dt_ms:g} ms steps", file=model.file, key=f"protocol.{i}.duration",
                                    fix=f"make it a multiple of {dt_ms:g} ms")
            learning = plastic if phase.plastic is None else plastic & set(phase.plastic)
            phases.append(ChipPhase(phase.name, cycle, int(round(steps)), frozenset(learning)))
    return phases


def fixed_dense(weights: np.ndarray, weight_bits: int = 8) -> tuple[np.ndarray, int]:
    """Lava fixed point's Dense weights for float ``weights`` (Lava units, one sign): integer mantissas of
    ``weight_bits`` bits and the smallest weight exponent that fits the largest."""
    largest = float(np.max(np.abs(weights))) if weights.size else 0.0
    top = 2**weight_bits - 1
    exponent = max(0, math.ceil(math.log2(largest / top))) if largest > top else 0
    return np.rint(weights / 2.0**exponent), exponent


@dataclasses.dataclass
class ChipRun:
    """What one run of a chip network produced."""

    #: group -> (neuron index, step) of every spike.
    spikes: dict[str, tuple[np.ndarray, np.ndarray]]
    #: plastic synapse -> final (n_post, n_pre) weights, in the rule's units.
    weights: dict[str, np.ndarray]
    #: group -> final membrane values (SI).
    membrane: dict[str, np.ndarray]
    seconds: float

    def recordings(self, net: ChipNetwork, records: list[str]) -> Any:
        """The loss library's recordings of this run (one draw), for the loss's ``records``."""
        from codesign.models.losses import Recordings
        from codesign.models.losses.base import CountRecord

        model = net.model
        ends = np.cumsum([p.steps for p in net.phases])
        values: dict[str, np.ndarray] = {}
        counts: dict[str, np.ndarray] = {}
        for name in records:
            record = CountRecord.parse(name)
            if record is None:
                values[name] = self._value(net, name)[None]
                continue
            per_pass = self._counts(net, record.group, record.phase, ends)
            counts[name] = (per_pass if record.per_trial else per_pass.sum(axis=0))[None]
        present = {name: s.mask for name, s in net.synapses.items()}
        return Recordings(values, counts, net.facts, [model.constants], model.duration_s, model.phase_windows(),
                          present, model.phase_seconds())

    def _counts(self, net: ChipNetwork, group: str, phase: str, ends: np.ndarray) -> np.ndarray:
        """(cycles, n) spikes of ``group`` in ``phase`` in each pass through the protocol."""
        index, step = self.spikes[group]
        n = net.groups[group].n
        out = np.zeros((net.model.cycles, n))
        for p, end in zip(net.phases, ends):
            if p.name == phase:
                inside = (step >= end - p.steps) & (step < end)
                out[p.cycle] += np.bincount(index[inside], minlength=n)
        return out

    def _value(self, net: ChipNetwork, name: str) -> np.ndarray:
        owner, _, var = name.partition(".")
        if owner in net.synapses and var == net.synapses[owner].weight:
            return self.weights[owner]
        if owner in net.groups and var == net.groups[owner].neuron.membrane:
            return self.membrane[owner]
        raise CodesignError(f"the loss reads {name}; the port reads only plastic weights and membranes back from "
                            "the chip", file=net.model.file, key="loss", fix="port a model whose loss reads those")
