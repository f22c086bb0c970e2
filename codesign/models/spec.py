"""Model files (``models/*.yaml``): one candidate network in Brian2's own syntax, as typed, checked objects.

A model names its neuron groups, synapses, stimuli (input draws), protocol (phases), the rule slots
its synapses take from a rule family, and its loss. Values may be numbers, Brian2 quantities
(``-60*mV``) or expressions of the model's ``constants`` (``n_excitatory + n_inhibitory``); a study
overrides constants (``constants:``) and may vary some over its input draws (``conditions:``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from codesign.expressions import ExpressionError, evaluate
from codesign.schema import Where, build, read_yaml

__all__ = ["GroupSpec", "GroupVariant", "SynapseSpec", "RuleRef", "ParamSpec", "LibrarySpec", "PhaseSpec", "ModelSpec",
           "load_model", "constant_names", "model_file", "bundled_model", "bundled_model_names", "is_bare_name"]

#: Names Brian2 gives its own meaning in equations: a constant may not take them.
RESERVED = frozenset({"t", "dt", "i", "j", "N", "N_pre", "N_post", "N_incoming", "N_outgoing", "xi", "lastspike",
                      "not_refractory", "t_in_timesteps", "lastupdate", "delay"})


@dataclasses.dataclass(frozen=True)
class GroupVariant:
    """A neuron group as Loihi 2 runs it (a group's ``loihi2:``): where the chip cannot run the group's
    own equations (a conductance-based neuron, two compartments), ``codesign port`` runs this instead and
    reports it as a change. The keys given replace the group's own; the synapses' text stays as written,
    so the variant keeps the variables the synapses jump into."""

    model: str | None = None
    threshold: str | None = None
    reset: str | None = None
    #: ``0*ms`` for none (lava-nc 0.10.0's LIFRefractory has no fixed-point model).
    refractory: str | None = None
    method: str | None = None
    initial: dict[str, Any] | None = None
    #: Its custom events (``{}`` for none: Lava's LIF sends spikes only).
    events: dict[str, str] | None = None
    #: Why the variant stands in fairly for the group (shown in the port's report).
    note: str = ""

    def apply(self, group: GroupSpec) -> GroupSpec:
        """``group`` with this variant's keys in place of its own."""
        given = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                 if field.name != "note" and getattr(self, field.name) is not None}
        return dataclasses.replace(group, loihi2=None, **given)


@dataclasses.dataclass(frozen=True)
class GroupSpec:
    """A neuron group of one candidate (``groups: {NAME: ...}``)."""

    size: int | str
    #: Brian2 equations; empty for a group of spike inputs (``kind: spikes``).
    model: str = ""
    #: ``candidate``: one copy per candidate and draw; ``draw``: one per draw, shared by every candidate
    #: (inputs). A shared group may not depend on what a candidate searches.
    per: Literal["candidate", "draw"] = "candidate"
    #: ``neurons`` (a NeuronGroup), ``spikes`` (spike trains a stimulus draws, given per run) or
    #: ``poisson`` (Brian2's PoissonGroup at ``rates``, drawn in the network from the run's seed).
    kind: Literal["neurons", "spikes", "poisson"] = "neurons"
    #: The rates of a ``poisson`` group: a quantity, or Brian2 text of ``t``, ``i`` and the constants.
    rates: str | None = None
    threshold: str | None = None
    reset: str | None = None
    refractory: str | None = None
    method: str | None = None
    #: Custom events, Brian2's ``events``: name -> condition (e.g. a burst).
    events: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Initial values: variable -> value or expression of the constants.
    initial: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: The group as Loihi 2 runs it, where it cannot run the group itself (``codesign port``).
    loihi2: GroupVariant | None = None


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """A searched constant of a text rule (``params: {NAME: ...}``): its range, in ``unit``."""

    bounds: tuple[float, float] = dataclasses.field(metadata={"help": "add bounds: [low, high], in the param's unit"})
    #: A Brian2 unit (``Hz``, ``ms``, ``mV``), or 1: bounds, values and rule files are numbers in it.
    unit: str = "1"
    #: Searched on a log scale (bounds above 0).
    log: bool = False
    #: Whole numbers only.
    integer: bool = False
    #: The value where a study does not search it (its ``terms`` leave it out).
    default: float | None = None

    def validate(self, where: Where) -> None:
        from codesign.errors import RuleError
        from codesign.rules.text import unit_scale

        low, high = self.bounds
        if low >= high:
            raise where.child("bounds").error(f"low must be below high, got {list(self.bounds)}",
                                              fix="write bounds: [low, high]")
        if self.log and low <= 0:
            raise where.child("bounds").error(f"a log-scale range must be above 0, got {list(self.bounds)}",
                                              fix="raise the low bound above 0, or remove log: true")
        if self.integer and (low != int(low) or high != int(high)):
            raise where.child("bounds").error(f"an integer param needs whole bounds, got {list(self.bounds)}",
                                              fix="write whole numbers")
        if self.integer and self.default is not None and self.default != int(self.default):
            raise where.child("default").error(f"an integer param needs a whole default, got {self.default:g}",
                                               fix="write a whole number")
        try:
            unit_scale(self.unit)
        except RuleError as exc:
            raise where.child("unit").error(exc.message, fix=exc.fix) from None


@dataclasses.dataclass(frozen=True)
class RuleRef:
    """Where a rule slot's family writes its text (``rule:`` of a synapse).

    A family with terms (polynomial, spike_trace) writes its own text, placed by ``bind``. A text rule
    (``family: text``) is the Brian2 text given here, added to the synapse's, with searched ``params``.
    """

    slot: str
    family: str
    #: The family's symbols bound to this synapse's variables (polynomial: x, y, w; spike_trace: w,
    #: x and y the names of the pre and post traces it adds, w_max the upper weight bound).
    bind: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Text rules: Brian2 synapse text, as the synapse's own keys (equations, pre and post statements).
    model: str = ""
    on_pre: str | None = None
    on_post: str | None = None
    #: Text rules: constants of the text searched per candidate (their names, as the text uses them).
    params: dict[str, ParamSpec] = dataclasses.field(default_factory=dict)
    #: Text rules: a param or constant that scales every change the rule makes, so that a phase whose
    #: ``plastic:`` leaves the synapse out can stop it (it is multiplied by 0 there).
    learning_rate: str | None = None


@dataclasses.dataclass(frozen=True)
class SynapseSpec:
    """Synapses of one candidate (``synapses: {NAME: ...}``): Brian2's arguments, plus what the hardware
    emulation and the event counts need."""

    source: str
    target: str
    model: str = ""
    on_pre: str | None = None
    on_post: str | None = None
    #: Brian2's ``on_event``: pathway -> event (e.g. ``{post: burst}``).
    on_event: dict[str, str] = dataclasses.field(default_factory=dict)
    method: str | None = None
    delay: str | None = None
    #: Which pairs connect, as Brian2's ``connect(condition, p)``: i, j, N_pre, N_post and the constants
    #: mean what they mean for one candidate.
    connect: str = "True"
    p: float | str = 1.0
    #: Weight variables and their range on the hardware (``[low, high]``, or null for unbounded).
    weights: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Trace variables (one spike adds one): on the hardware, registers of the target's trace bits.
    traces: list[str] = dataclasses.field(default_factory=list)
    rule: RuleRef | None = None
    initial: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Order of summed variables within Brian2's ``groups`` slot (``summed_updaters[NAME].order``).
    summed_order: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def plastic(self) -> bool:
        return self.rule is not None


@dataclasses.dataclass(frozen=True)
class LibrarySpec:
    """An entry of a library by its kind, with that kind's own keys: a stimulus
    (``stimuli: {NAME: {kind: gaussian, ...}}``) or the loss (``loss: {kind: rate_to_target, ...}``,
    or ``kind: module:function``)."""

    kind: str
    params: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class PhaseSpec:
    """One phase of the protocol: how long, which plastic synapses learn in it (default: all), and the
    constants that take other values during it (a stimulus per phase: ``values: {I_ext: 150*pA}``)."""

    name: str
    duration: str
    plastic: list[str] | None = None
    values: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class _ModelFile:
    groups: dict[str, Any]
    loss: dict[str, Any]
    protocol: list[PhaseSpec] = dataclasses.field(metadata={"help": "add protocol: [{name: run, duration: 1*second}]"})
    name: str | None = None
    constants: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Input draws each candidate is scored on (per condition).
    draws: int | str = 1
    #: The time step (a quantity).
    dt: str = "0.1*ms"
    #: The phases run this many times in a row (repeated trials): ``repeat`` passes over ``trials``; a
    #: whole number or an expression of the constants (a study may then change it through them).
    repeat: int | str = 1
    #: Trials in turn: the constants each sets for one pass through the phases (e.g. the XOR patterns).
    trials: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    synapses: dict[str, Any] = dataclasses.field(default_factory=dict)
    stimuli: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Candidates the model knows by name: name -> {slot: a rule name of the slot's family, or a rule
    #: (coefficients, and extras such as tau_x_ms) whose values may be expressions of the constants}.
    named: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model file with the constants resolved (a study's overrides applied)."""

    name: str
    file: str
    constants: dict[str, Any]
    draws: int
    dt: Any
    groups: dict[str, GroupSpec]
    synapses: dict[str, SynapseSpec]
    stimuli: dict[str, LibrarySpec]
    protocol: tuple[PhaseSpec, ...]
    loss: LibrarySpec
    named: dict[str, dict[str, Any]]
    repeat: int = 1
    trials: tuple[dict[str, Any], ...] = ()
    #: Constants and ``draws`` as written (numbers or expressions), for a study's overrides.
    raw_constants: dict[str, Any] = dataclasses.field(default_factory=dict)
    raw_draws: Any = 1
    raw_repeat: Any = 1

    @property
    def where(self) -> Where:
        return Where(self.file)

    @property
    def slots(self) -> dict[str, str]:
        """Rule slot -> family, in the order of the synapses that take them."""
        return {s.rule.slot: s.rule.family for s in self.synapses.values() if s.rule is not None}

    @property
    def rules(self) -> dict[str, RuleRef]:
        """Rule slot -> its ``rule:`` (family, bindings, a text rule's text and params)."""
        return {s.rule.slot: s.rule for s in self.synapses.values() if s.rule is not None}

    def text_names(self) -> set[str]:
        """Every name the model's Brian2 text uses: its groups', its synapses' and their rules' (a text
        rule's text, and the constants a family's text is bound to)."""
        texts = []
        for group in self.groups.values():
            texts += [group.model, group.threshold, group.reset, *group.events.values()]
        for synapse in self.synapses.values():
            texts += [synapse.model, synapse.on_pre, synapse.on_post]
            if synapse.rule is not None:
                texts += [synapse.rule.model, synapse.rule.on_pre, synapse.rule.on_post, *synapse.rule.bind.values()]
        return set().union(*(constant_names(t) for t in texts))

    def group_size(self, group: str) -> int:
        """Neurons of one copy of ``group``."""
        return self.integer(self.groups[group].size, self.where.child("groups").child(group).child("size"))

    def slot_terms(self, slot: str) -> tuple[str, ...]:
        """The terms of a slot: its family's, or a text rule's params."""
        from codesign.rules import FAMILIES

        ref = self.rules[slot]
        return FAMILIES[ref.family].terms_of(ref)

    def value(self, text: Any, key: Where, extra: dict[str, Any] | None = None) -> Any:
        """A value of this model (a number, quantity or expression of its constants)."""
        try:
            return evaluate(text, {**self.constants, **(extra or {})})
        except ExpressionError as exc:
            raise key.error(str(exc), fix="use numbers, Brian2 units and the model's constants: "
                            + (", ".join(self.constants) or "none")) from None

    def integer(self, text: Any, key: Where, low: int = 1) -> int:
        value = self.value(text, key)
        if getattr(value, "dim", None) is not None and not value.is_dimensionless:
            raise key.error(f"must be a number, got {value}", fix="give a count without units")
        number = float(value)
        if number != int(number) or number < low:
            raise key.error(f"must be a whole number of at least {low}, got {number:g}",
                            fix=f"use a whole number of at least {low}")
        return int(number)

    def seconds(self, text: Any, key: Where) -> float:
        from brian2 import second

        from brian2.units.fundamentalunits import have_same_dimensions

        value = self.value(text, key)
        if not have_same_dimensions(value, second):
            raise key.error(f"must be a time, got {value}", fix="write a duration such as 10*second or 0.1*ms")
        seconds = float(value / second)
        if not seconds > 0:
            raise key.error(f"must be positive, got {value}", fix="give a positive duration")
        return seconds

    @property
    def cycle_s(self) -> float:
        """One pass through the phases."""
        return sum(self.seconds(p.duration, self.where.child("protocol").child(i))
                   for i, p in enumerate(self.protocol))

    @property
    def cycles(self) -> int:
        """Passes through the phases: ``repeat`` times each trial (or ``repeat`` without trials)."""
        return self.repeat * max(1, len(self.trials))

    def trial_of(self, cycle: int) -> dict[str, Any]:
        """The constants the trial of pass ``cycle`` sets (as written)."""
        return dict(self.trials[cycle % len(self.trials)]) if self.trials else {}

    @property
    def duration_s(self) -> float:
        return self.cycles * self.cycle_s

    @property
    def dt_s(self) -> float:
        return self.seconds(self.dt, self.where.child("dt"))

    def phase_window(self, name: str) -> tuple[float, float]:
        """(start, end) in seconds of the phase ``name``."""
        start = 0.0
        for i, phase in enumerate(self.protocol):
            length = self.seconds(phase.duration, self.where.child("protocol").child(i))
            if phase.name == name:
                return start, start + length
            start += length
        raise KeyError(name)

    def phase_windows(self) -> dict[str, tuple[float, float]]:
        """Each phase's (start, end) in seconds within one pass."""
        return {p.name: self.phase_window(p.name) for p in self.protocol}

    def phase_seconds(self) -> dict[str, float]:
        """Seconds spent in each phase over the whole protocol (every pass)."""
        return {name: self.cycles * (end - start) for name, (start, end) in self.phase_windows().items()}

    def with_constants(self, overrides: dict[str, Any], where: Where, draws: Any = None) -> ModelSpec:
        """This model with ``overrides`` (a study's ``constants:``) in place of its own, and ``draws``."""
        for key in overrides:
            if key not in self.raw_constants:
                raise where.child(key).error("not a constant of the model " + self.file,
                                             fix=f"constants of this model: {', '.join(self.raw_constants) or 'none'}")
        model = self if draws is None else dataclasses.replace(self, raw_draws=draws)
        return _resolve(model, {**self.raw_constants, **overrides}, where)


def _resolve(model: ModelSpec, raw: dict[str, Any], where: Where) -> ModelSpec:
    """Evaluate the constants in order (each may use the ones before it)."""
    constants: dict[str, Any] = {}
    for name, text in raw.items():
        here = where.child(name) if where.file != model.file else model.where.child("constants").child(name)
        try:
            constants[name] = evaluate(text, constants)
        except ExpressionError as exc:
            raise here.error(str(exc), fix="use numbers, Brian2 units and constants defined above this one") from None
    resolved = dataclasses.replace(model, constants=constants, raw_constants=dict(raw))
    return dataclasses.replace(resolved, draws=resolved.integer(model.raw_draws, model.where.child("draws")),
                               repeat=resolved.integer(model.raw_repeat, model.where.child("repeat")))


def _identifier(name: str, key: Where) -> None:
    if not name.isidentifier() or name.startswith("_"):
        raise key.error(f"{name!r} is not a usable name", fix="use letters, digits and _, starting with a letter")


def _named(where: Where, name: Any) -> Where:
    """The key of an entry named by the user, checked as a usable name."""
    here = where.child(str(name))
    _identifier(str(name), here)
    return here


def _group(data: Any, here: Where) -> GroupSpec:
    group = build(GroupSpec, data, here)
    if (group.kind == "poisson") != (group.rates is not None):
        raise here.child("rates").error("a poisson group needs rates, and only a poisson group has them",
                                        fix="write kind: poisson with rates: 10*Hz (or Brian2 text of t and i)")
    return group


def _synapse(data: Any, groups: dict[str, GroupSpec], here: Where) -> SynapseSpec:
    synapse = build(SynapseSpec, data, here)
    for end in ("source", "target"):
        if getattr(synapse, end) not in groups:
            raise here.child(end).error(f"unknown group {getattr(synapse, end)!r}",
                                        fix=f"groups of this model: {', '.join(groups)}")
    if synapse.rule is not None:
        from codesign.rules import FAMILIES

        FAMILIES.get_named(synapse.rule.family, file=here.file, key=here.child("rule").child("family").key)
    if groups[synapse.target].kind != "neurons":
        raise here.child("target").error(f"a group of {groups[synapse.target].kind} inputs receives no synapses",
                                         fix="connect it to a neuron group")
    return synapse


def _entry(data: Any, here: Where, example: str) -> LibrarySpec:
    """A library entry: its ``kind`` and the kind's own keys (checked by the kind)."""
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        raise here.child("kind").error("missing required key", fix=f"add kind: {example}")
    return LibrarySpec(data["kind"], {k: v for k, v in data.items() if k != "kind"})


def load_model(path: str | Path) -> ModelSpec:
    """Read and check a model file (its Brian2 text is checked when the network is built: ``codesign check``)."""
    path = Path(path)
    where = Where(str(path))
    raw = build(_ModelFile, read_yaml(path, "model file"), where)
    if not raw.groups:
        raise where.child("groups").error("a model needs at least one neuron group", fix="add groups: {NAME: {...}}")
    groups = {name: _group(data, _named(where.child("groups"), name)) for name, data in raw.groups.items()}
    synapses = {name: _synapse(data, groups, _named(where.child("synapses"), name)) for name, data in raw.synapses.items()}
    stimuli = {name: _entry(data, _named(where.child("stimuli"), name), "gaussian (or poisson)")
               for name, data in raw.stimuli.items()}
    loss = _entry(raw.loss, where.child("loss"), "NAME of the loss library, or module:function")
    if not raw.protocol:
        raise where.child("protocol").error("no phase", fix="add protocol: [{name: run, duration: 1*second}]")
    names = [p.name for p in raw.protocol]
    if len(set(names)) != len(names):
        raise where.child("protocol").error(f"phase names repeat: {names}", fix="give each phase its own name")
    slots = [s.rule.slot for s in synapses.values() if s.rule is not None]
    if len(set(slots)) != len(slots):
        raise where.child("synapses").error(f"rule slots repeat: {slots}", fix="give each plastic synapse its own slot")
    model = ModelSpec(name=raw.name or path.stem, file=str(path), constants={}, draws=1, dt=raw.dt, groups=groups,
                      synapses=synapses, stimuli=stimuli, protocol=tuple(raw.protocol), loss=loss, named=raw.named,
                      trials=tuple(raw.trials), raw_draws=raw.draws, raw_repeat=raw.repeat)
    for name in raw.constants:
        _identifier(str(name), where.child("constants").child(str(name)))
        if name in RESERVED:
            raise where.child("constants").child(str(name)).error(
                "is a name Brian2 reserves", fix=f"rename it; reserved: {', '.join(sorted(RESERVED))}")
    model = _resolve(model, dict(raw.constants), where)
    _check_rules(model, where)
    _check_named(model, where.child("named"))
    for i, trial in enumerate(model.trials):
        for name in trial:
            if name not in model.constants:
                raise where.child("trials").child(i).child(str(name)).error(
                    "not a constant of the model", fix=f"constants: {', '.join(model.constants) or 'none'}")
    for i, phase in enumerate(model.protocol):
        for name in phase.values:
            if name not in model.constants:
                raise where.child("protocol").child(i).child("values").child(name).error(
                    "not a constant of the model", fix=f"constants: {', '.join(model.constants) or 'none'}")
    return model


def _bundled_models() -> Path:
    """The folder of the model files that come with codesign: inside the package in an installed wheel
    (``codesign/model_files/``, pyproject's ``force-include``), the repository's ``models/`` in a source
    checkout (editable install)."""
    from importlib.resources import files

    packaged = files("codesign") / "model_files"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "models"


def bundled_model_names() -> list[str]:
    return sorted(path.stem for path in _bundled_models().glob("*.yaml"))


def is_bare_name(value: str) -> bool:
    """``oja``, not ``oja.yaml`` or ``models/oja``: a name that can only mean a model of codesign's own."""
    path = Path(value)
    return bool(value) and len(path.parts) == 1 and not path.suffix


def model_file(value: str | Path, where: Where) -> Path:
    """``value``, or where it is the bare name of one of codesign's own models and no such file exists
    (``oja``), that model's file."""
    if Path(value).exists() or not is_bare_name(str(value)):
        return Path(value)
    return bundled_model(str(value), where)


def bundled_model(name: str, where: Where) -> Path:
    """The model file of codesign's own model ``name`` (``oja`` for ``models/oja.yaml``), wherever codesign
    is run from; an unknown name is an error at ``where`` that lists the known ones."""
    path = _bundled_models() / f"{name}.yaml"
    if path.is_file():
        return path
    raise where.error(f"{name!r} is neither a file nor the name of one of codesign's models",
                      fix=f"give a path to a model file, or one of codesign's models: {', '.join(bundled_model_names())}")


def _check_rules(model: ModelSpec, where: Where) -> None:
    """Each rule slot against its family: a text rule has its text, and params that the model's text uses."""
    from codesign.rules import FAMILIES
    from codesign.rules.text import TEXT_KEYS

    used = model.text_names()
    owner: dict[str, str] = {}  # param -> slot
    for name, synapse in model.synapses.items():
        ref = synapse.rule
        if ref is None:
            continue
        here = where.child("synapses").child(name).child("rule")
        fam = FAMILIES[ref.family]  # a known family: load_model checked
        own = [key for key in (*TEXT_KEYS, "params", "learning_rate") if getattr(ref, key)]
        if not fam.free_text:
            if own:
                raise here.child(own[0]).error(f"belongs to text rules: the {ref.family} family writes its own text",
                                               fix=f"remove {own[0]}, or write family: text")
            continue
        if ref.bind:
            raise here.child("bind").error("a text rule binds no symbols: its text names the synapse's variables",
                                           fix="remove bind")
        if not any(getattr(ref, key) for key in TEXT_KEYS):
            raise here.error("a text rule has no text", fix="add the rule's Brian2 text: model:, on_pre: or on_post:")
        for param in ref.params:
            key = here.child("params").child(param)
            _identifier(param, key)
            clashes = {"a name Brian2 reserves": param in RESERVED,
                       "also a constant of the model": param in model.constants,
                       f"also a param of rule slot {owner.get(param)}": param in owner}
            for clash in (clash for clash, found in clashes.items() if found):
                raise key.error(f"is {clash}", fix="give the param a name of its own")
            if param not in used:
                raise key.error("is not used in the model's text", fix="use it in the rule's text, or remove it")
            owner[param] = ref.slot
        rate = ref.learning_rate
        if rate is not None and (rate not in ref.params and rate not in model.constants
                                 or rate not in constant_names("\n".join(getattr(ref, k) or "" for k in TEXT_KEYS))):
            raise here.child("learning_rate").error(
                f"{rate!r} is not a param or constant that the rule's text uses",
                fix="name the param (or constant) that multiplies every change the rule makes")


def _check_named(model: ModelSpec, where: Where) -> None:
    from codesign.rules import FAMILIES

    slots = model.slots
    for name, rules in model.named.items():
        if set(rules) != set(slots):
            raise where.child(name).error(f"names slots {sorted(rules)}, the model's are {sorted(slots)}",
                                          fix="name one rule per slot")
        for slot, rule in rules.items():
            ref = model.rules[slot]
            if not FAMILIES[ref.family].free_text:
                continue
            here = where.child(name).child(slot)
            if not isinstance(rule, dict) or set(rule) != {"params"} or not isinstance(rule["params"], dict):
                raise here.error("a text rule is named by the values of its params",
                                 fix=f"write {slot}: {{params: {{NAME: value}}}}, NAME one of: {', '.join(ref.params)}")
            for param in rule["params"]:
                if param not in ref.params:
                    raise here.child("params").child(str(param)).error(
                        "unknown param", fix=f"params of rule slot {slot}: {', '.join(ref.params)}")


def constant_names(text: str | None) -> set[str]:
    """Names used by a Brian2 text (equations or statements), for dependency checks."""
    if not text:
        return set()
    from brian2.utils.stringtools import get_identifiers

    return set(get_identifiers(text))

