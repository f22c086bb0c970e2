"""Study files (``studies/*.yaml``) as typed, checked objects.

Every error names the file, the key path and the fix; see :mod:`codesign.schema`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from codesign.hardware import Target, load_target
from codesign.hardware.target import bundled_target
from codesign.models.spec import ModelSpec, RuleRef, bundled_model, is_bare_name
from codesign.rules import FAMILIES
from codesign.schema import Where, build, read_yaml
from codesign.search.objectives import OBJECTIVES
from codesign.search.samplers import SAMPLERS

__all__ = ["RuleSpec", "SamplerSpec", "StudySpec", "ConditionsSpec", "SparsitySpec", "RefineSpec", "StabilitySpec",
           "load_study"]


@dataclasses.dataclass(frozen=True)
class RuleSpec:
    """The rule family searched in one slot (``rule:``, or ``rules: {slot: ...}``)."""

    #: A rule family of :data:`codesign.rules.FAMILIES`.
    family: str = "polynomial"
    #: The searched terms of the family (``theta_abc``, ``pre_1``..., a text rule's params); ``all``
    #: for every term.
    terms: str | list[str] = "all"
    #: Every coefficient is multiplied by eta, so a wider range than this only rescales eta (and
    #: the range's width must be a finite number for the samplers). Default [-1, 1]; a text rule's
    #: params have their own, in the model.
    bounds: tuple[float, float] | None = dataclasses.field(default=None, metadata={
        "min": -1e6, "max": 1e6, "help": "coefficients are multiplied by eta: scale eta rather than the bounds"})
    #: Learning rate; default: the family's (10 /s for polynomial, 0.01 for spike_trace).
    eta: float | None = dataclasses.field(default=None, metadata={"min": 0.0})
    #: spike_trace only: search the trace time constants tau_x_ms and tau_y_ms in this range (ms).
    tau_ms: tuple[float, float] | None = dataclasses.field(default=None, metadata={"min": 0.01})

    @property
    def searched(self) -> tuple[str, ...]:
        return FAMILIES[self.family].terms if self.terms == "all" else tuple(self.terms)

    @property
    def coefficient_bounds(self) -> tuple[float, float]:
        return self.bounds or (-1.0, 1.0)

    @property
    def learning_rate(self) -> float | None:
        return FAMILIES[self.family].default_eta if self.eta is None else self.eta

    def validate(self, where: Where) -> None:
        family = FAMILIES.get_named(self.family, file=where.file, key=where.child("family").key)
        known = family.terms
        if isinstance(self.terms, str) and self.terms != "all":
            raise where.child("terms").error(f"expected 'all' or a list of terms, got {self.terms!r}",
                                             fix="write terms: all, or a list such as [" + (
                                                 known[0] if known else "NAME of a param") + "]")
        if len(set(self.searched)) != len(self.searched):
            raise where.child("terms").error("a term is listed twice", fix="list each term once")
        if family.free_text:  # its terms are the model's params (checked by for_text_rule)
            for key in ("bounds", "eta"):
                if getattr(self, key) is not None:
                    raise where.child(key).error(f"a text rule has no {key}: its params have their own bounds, "
                                                 "and its rates are params",
                                                 fix=f"remove {key}; see params: in the model")
        else:
            for i, term in enumerate(self.searched):
                if term not in known:
                    raise where.child("terms").child(i).error(
                        f"unknown term {term!r}", fix=f"terms of the {self.family} family: {', '.join(known)}")
            if not self.searched:
                raise where.child("terms").error("no term to search", fix="list at least one term")
        if self.eta == 0.0:
            raise where.child("eta").error("must be positive, got 0", fix="remove eta to use the family's default "
                                           f"({family.default_eta:g})")
        if self.bounds is not None and self.bounds[0] >= self.bounds[1]:
            raise where.child("bounds").error(f"low must be below high, got {list(self.bounds)}",
                                              fix="write bounds: [low, high]")
        if self.tau_ms is not None:
            if not family.extras:
                raise where.child("tau_ms").error(f"{self.family} rules have no trace time constants",
                                                  fix="remove tau_ms")
            if self.tau_ms[0] >= self.tau_ms[1]:
                raise where.child("tau_ms").error(f"low must be below high, got {list(self.tau_ms)}",
                                                  fix="write tau_ms: [low, high]")

    def for_text_rule(self, ref: RuleRef, where: Where) -> RuleSpec:
        """This search of a text rule's slot: its terms checked against the params of the model's ``rule:``
        (``ref``), ``all`` spelled out, and every param it leaves out given a default in the model."""
        params = tuple(ref.params)
        searched = params if self.terms == "all" else tuple(self.terms)
        for i, term in enumerate(searched):
            if term not in params:
                raise where.child("terms").child(i).error(
                    f"unknown param {term!r}", fix=f"params of rule slot {ref.slot} in the model: {', '.join(params)}")
        if not searched:
            raise where.child("terms").error(
                "no param to search", fix=f"declare params: in rule slot {ref.slot} of the model, and search them")
        for param, spec in ref.params.items():
            if param not in searched and spec.default is None:
                raise where.child("terms").error(f"leaves out param {param!r}, which has no default",
                                                 fix=f"search {param}, or give it a default: in the model")
        return dataclasses.replace(self, terms=list(searched))


@dataclasses.dataclass(frozen=True)
class HardwareSpec:
    """Hardware knobs searched next to the rule (``hardware:``), applied by the model's emulation."""

    #: Weight bits searched in this range (integers).
    weight_bits: tuple[int, int] | None = dataclasses.field(default=None, metadata={"min": 1, "max": 16})
    #: Trace register bits searched in this range (one spike's impulse is 2**(bits - 3) units).
    trace_bits: tuple[int, int] | None = dataclasses.field(default=None, metadata={"min": 3, "max": 16})
    #: Rounding of weight updates onto the grid, searched among these (default: the target's).
    rounding: list[Literal["nearest", "stochastic"]] | None = None

    def validate(self, where: Where) -> None:
        for name in ("weight_bits", "trace_bits"):
            bits = getattr(self, name)
            if bits is not None and bits[0] > bits[1]:
                raise where.child(name).error(f"range is reversed: {list(bits)}", fix="write [low, high]")

    @property
    def knobs(self) -> tuple[str, ...]:
        return tuple(name for name in ("weight_bits", "trace_bits", "rounding") if getattr(self, name) is not None)


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
    """The Optuna sampler (``sampler:``)."""

    #: A sampler of :data:`codesign.search.samplers.SAMPLERS` (cmaes, tpe, nsga2, random).
    name: str = "cmaes"
    #: Candidates per generation of a sampler with a population (CMA-ES, NSGA-II). By default the
    #: study's ``batch_size`` times the local workers it is created with (``run --workers N``), so
    #: that every worker simulates whole batches; set it to search the same way with any number.
    population: int | None = dataclasses.field(default=None, metadata={"min": 1, "max": 1000000})

    def validate(self, where: Where) -> None:
        kind = SAMPLERS.get_named(self.name, file=where.file, key=where.child("name").key)
        if self.population is None:
            return
        if not kind.population:
            with_one = ", ".join(name for name, k in SAMPLERS.items() if k.population)
            raise where.child("population").error(f"{self.name} has no population",
                                                  fix=f"remove population, or use a sampler with one: {with_one}")


@dataclasses.dataclass(frozen=True)
class ConditionsSpec:
    """Model constants varied over a study's input draws (``conditions:``): each condition is a set of
    constants; a candidate is scored on the model's draws under every ``train`` condition, and
    ``codesign eval`` reports each ``held_out`` condition separately."""

    train: list[dict[str, Any]] = dataclasses.field(default_factory=lambda: [{}])
    held_out: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def validate(self, where: Where) -> None:
        if not self.train:
            raise where.child("train").error("no condition", fix="list at least one condition, e.g. [{}]")


@dataclasses.dataclass(frozen=True)
class RefineSpec:
    """Successive refinement (``sparsity: {refine: ...}``): after the search, drop every family term whose
    size relative to its slot's largest, |theta| / max |theta|, is below ``threshold``, and search the
    survivors again, ``rounds`` times; each round is its own Optuna study (``NAME/refine-K``)."""

    rounds: int = dataclasses.field(default=1, metadata={"min": 1, "max": 20})
    threshold: float = dataclasses.field(default=0.05, metadata={"min": 0.0, "max": 1.0})
    #: Trials of each refinement round; default: the study's ``n_trials``.
    n_trials: int | None = dataclasses.field(default=None, metadata={"min": 1})
    #: Refit the surviving terms without the L1 penalty (the relaxed lasso): the penalty chooses the
    #: terms, not their size. For losses that fix a rule's scale (fits to recordings), where the penalty
    #: would only shrink the coefficients.
    relax: bool = False

    def validate(self, where: Where) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise where.child("threshold").error(f"must be between 0 and 1 (exclusive), got {self.threshold:g}",
                                                 fix="write threshold: 0.05 (terms below 5% of the largest are dropped)")


@dataclasses.dataclass(frozen=True)
class SparsitySpec:
    """A sparse search (``sparsity:``): an L1 penalty ``l1 * sum |theta|`` over the searched coefficients
    of the rule families (not a text rule's params, trace time constants or hardware knobs) added to the
    loss objective, and optionally successive refinement (``refine:``)."""

    l1: float = dataclasses.field(default=0.0, metadata={"min": 0.0, "help": "write l1: 0.01, or 0 for no penalty"})
    refine: RefineSpec | None = None

    def validate(self, where: Where) -> None:
        if self.l1 == 0.0 and self.refine is None:
            raise where.error("neither l1 nor refine is set", fix="write sparsity: {l1: 0.01}, add refine:, "
                                                                   "or remove sparsity")


@dataclasses.dataclass(frozen=True)
class StabilitySpec:
    """Before a study reports its best rule (``stability:``): its ``top`` best trials run again on
    ``seeds`` input seeds it never trained on (nor does ``codesign eval`` by default), the study's draws
    each; a rule that diverges on any is rejected, and the next ``top`` are checked while none passed
    (three times at most)."""

    seeds: int = dataclasses.field(default=3, metadata={"min": 1, "max": 100})
    top: int = dataclasses.field(default=5, metadata={"min": 1, "max": 1000})


@dataclasses.dataclass(frozen=True)
class _StudyFile:
    model: str = dataclasses.field(metadata={"help": "name a model file, e.g. model: models/oja.yaml"})
    target: str = dataclasses.field(metadata={"help": "name a file in hw_targets/, e.g. hw_targets/cpu.yaml"})
    name: str | None = None
    #: Constants of the model this study sets, and the number of input draws per condition.
    constants: dict[str, Any] = dataclasses.field(default_factory=dict)
    draws: int | str | None = None
    conditions: ConditionsSpec = ConditionsSpec()
    #: The rule of a one-slot model; a model with several slots takes ``rules: {slot: rule}``.
    rule: RuleSpec | None = None
    rules: dict[str, Any] | None = None
    sampler: SamplerSpec = SamplerSpec()
    n_trials: int = dataclasses.field(default=200, metadata={"min": 1})
    batch_size: int = dataclasses.field(default=12, metadata={"min": 1, "max": 100000})
    #: Below 2**31: held-out draws use seed + 1,000,003, and every seed must fit NumPy's 32 bits.
    seed: int = dataclasses.field(default=0, metadata={"min": 0, "max": 2**31 - 1})
    #: An Optuna storage URL (``journal:PATH``, ``postgresql://user@host/db``); by default a journal
    #: file under ``results/<name>/``. ``--storage`` and ``$CODESIGN_STORAGE`` override it.
    storage: str | None = None
    #: Seconds a batch may simulate before its trials are failed (its trials run side by side, so
    #: this is each trial's limit); no limit by default. Builds and compiling do not count.
    trial_timeout_s: float | None = dataclasses.field(default=None, metadata={"min": 0.001})
    #: Seconds between heartbeats of running trials; a trial without one for twice this long is
    #: failed and retried (sooner when its worker ran on this host and is gone).
    heartbeat_s: int = dataclasses.field(default=10, metadata={"min": 1, "max": 3600})
    #: How many times a trial whose worker died is retried.
    retries: int = dataclasses.field(default=3, metadata={"min": 0, "max": 100})
    hardware: HardwareSpec = HardwareSpec()
    #: What is minimised: the loss, and optionally the energy on the target over the model's
    #: simulated duration, of the one kind its per-event figures give (``energy``, see
    #: ``codesign.hardware.cost.energy_objective_kind``) or searched bits (``weight_bits``,
    #: ``trace_bits``), as a multi-objective study.
    #: Objectives of :data:`codesign.search.objectives.OBJECTIVES`.
    objectives: list[str] = dataclasses.field(default_factory=lambda: ["loss"])
    sparsity: SparsitySpec | None = None
    stability: StabilitySpec | None = None

    def validate(self, where: Where) -> None:
        for i, name in enumerate(self.objectives):
            OBJECTIVES.get_named(name, file=where.file, key=where.child("objectives").child(i).key)
        if not self.objectives or self.objectives[0] != "loss" or len(set(self.objectives)) != len(self.objectives):
            raise where.child("objectives").error(f"must start with loss and name each objective once, got {self.objectives}",
                                                  fix="write objectives: [loss, energy]")
        sampler = SAMPLERS[self.sampler.name]
        if len(self.objectives) > 1 and not sampler.multi_objective:
            several = ", ".join(name for name, kind in SAMPLERS.items() if kind.multi_objective)
            raise where.child("sampler").child("name").error(
                f"{self.sampler.name} optimises one objective", fix=f"use a sampler that takes several: {several}")
        # The population (sampler.population, else batch_size) must be large enough for the sampler.
        if self.sampler.population is not None:
            key, name, population = where.child("sampler").child("population"), "population", self.sampler.population
        else:
            key, name, population = where.child("batch_size"), "batch_size", self.batch_size
        if population < sampler.min_batch:
            raise key.error(f"{sampler.description or self.sampler.name}, which needs at least {sampler.min_batch} "
                            f"rules; got {population}", fix=f"set {name}: {sampler.min_batch} or more, or use another sampler")


@dataclasses.dataclass(frozen=True)
class StudySpec:
    """A whole study: what to search, on which model and target, with which sampler and storage."""

    name: str
    file: str
    model: ModelSpec
    target: Target
    #: The searched rule of each slot of the model.
    rules: dict[str, RuleSpec]
    sampler: SamplerSpec
    n_trials: int
    batch_size: int
    seed: int
    storage: str | None
    hardware: HardwareSpec = HardwareSpec()
    objectives: tuple[str, ...] = ("loss",)
    trial_timeout_s: float | None = None
    heartbeat_s: int = 10
    retries: int = 3
    conditions: ConditionsSpec = ConditionsSpec()
    sparsity: SparsitySpec | None = None
    stability: StabilitySpec | None = None
    #: The refinement round this spec searches (0: the first search; see :mod:`codesign.search.rounds`),
    #: and the parameters it tries first (the previous round's best, on the surviving terms).
    round: int = 0
    start: dict[str, float] | None = None
    #: Each slot's terms in the network the trials run in (None: the searched ones). Every refinement
    #: round keeps round 0's, so that all rounds run in the one network round 0 built (a dropped term's
    #: coefficient is zero): a round compiles nothing, and ``eval`` finds that build too.
    network_terms: dict[str, tuple[str, ...]] | None = None

    @property
    def study_name(self) -> str:
        """The Optuna study of this round: ``NAME``, then ``NAME/refine-K``."""
        return self.name if self.round == 0 else f"{self.name}/refine-{self.round}"

    def population(self, workers: int = 1) -> int | None:
        """Candidates per generation of a sampler with a population (None for the others): the sampler's
        ``population``, else ``batch_size`` times the local ``workers`` the study is created with."""
        if not SAMPLERS[self.sampler.name].population:
            return None
        return self.sampler.population or self.batch_size * workers

    @property
    def l1(self) -> float:
        return self.sparsity.l1 if self.sparsity is not None else 0.0

    @property
    def rule(self) -> RuleSpec:
        """The searched rule of a one-slot model."""
        (only,) = self.rules.values()
        return only

    def param_name(self, slot: str, name: str) -> str:
        """The Optuna parameter of a slot's term: the term itself for a one-slot model, else ``slot.term``."""
        return name if len(self.rules) == 1 else f"{slot}.{name}"

    @property
    def etas(self) -> dict[str, float]:
        return {slot: rule.learning_rate for slot, rule in self.rules.items()}

    @property
    def results_dir(self) -> Path:
        return Path("results") / self.name

    def storage_url(self, override: str | None = None) -> str:
        """The storage to use: ``override`` (``--storage``), ``$CODESIGN_STORAGE``, the file's, or the default journal."""
        return self.storage_source(override)[0]

    def storage_source(self, override: str | None = None) -> tuple[str, str | None, str]:
        """The storage URL, and the file and key it came from (for errors): see :func:`codesign.search.storage.resolve_url`."""
        from codesign.search.storage import resolve_url

        url, key = resolve_url(self.storage, f"journal:{self.results_dir / 'journal.log'}", override)
        return url, (self.file if key == "storage" else None), key


def resolve_target(value: str, study_file: Path, where: Where) -> Path:
    """A target a study (or ``--target``) names: a path (also relative to the study's folder), or the bare
    name of one of codesign's own targets (``loihi2``)."""
    return _resolve_file(value, study_file, where, "target", "hw_targets/", _bundled_target)


def _bundled_target(name: str, where: Where) -> Path:
    """The target file of codesign's own target ``name`` (``cpu`` for ``hw_targets/cpu.yaml``), from anywhere."""
    path = bundled_target(name)
    if path.is_file():
        return path
    known = sorted(p.stem for p in path.parent.glob("*.yaml"))
    raise where.error(f"{name!r} is neither a file nor the name of one of codesign's targets",
                      fix=f"give a path to a target file, or one of codesign's targets: {', '.join(known)}")


def _rule_slots(raw: _StudyFile, model: ModelSpec, where: Where) -> dict[str, RuleSpec]:
    """The searched rule of each slot: ``rule:`` for a one-slot model, ``rules: {slot: ...}`` in general."""
    slots = model.slots
    if raw.rule is not None and raw.rules is not None:
        raise where.child("rules").error("give rule or rules, not both", fix="keep one of them")
    if raw.rules is None:
        if len(slots) > 1:
            raise where.child("rules").error(
                "missing required key: this model has several rule slots",
                fix=f"add rules: with one entry per slot: {', '.join(slots)}")
        (slot,) = slots
        rules = {slot: raw.rule or build(RuleSpec, {"family": slots[slot]}, where.child("rule"))}
    else:
        for slot in raw.rules:
            if slot not in slots:
                raise where.child("rules").child(slot).error(
                    "unknown rule slot", fix=f"this model's slots: {', '.join(slots)}")
        missing = [slot for slot in slots if slot not in raw.rules]
        if missing:
            raise where.child("rules").error(f"missing slot(s) {', '.join(missing)}",
                                             fix=f"give a rule for each slot: {', '.join(slots)}")
        rules = {slot: build(RuleSpec, raw.rules[slot], where.child("rules").child(slot)) for slot in slots}
    for slot, rule in rules.items():
        if rule.family != slots[slot]:
            key = where.child("rule") if raw.rules is None else where.child("rules").child(slot)
            raise key.child("family").error(f"slot {slot!r} of this model takes {slots[slot]} rules, got {rule.family}",
                                            fix=f"write family: {slots[slot]}")
        if FAMILIES[rule.family].free_text:
            key = where.child("rule") if raw.rules is None else where.child("rules").child(slot)
            rules[slot] = rule.for_text_rule(model.rules[slot], key)
    return rules


def _resolve_file(value: str, study_file: Path, where: Where, what: str, example: str,
                  bundled: Callable[[str, Where], Path] | None = None) -> Path:
    """A file a study names: relative to the current directory, the study's folder or its parent; else,
    for a bare name (``model: oja``), the file of that name that comes with codesign (``bundled``)."""
    for path in (Path(value), study_file.parent / value, study_file.parent.parent / value):
        if path.is_file():
            return path
    if bundled is not None and is_bare_name(value):
        return bundled(value, where)
    raise where.error(f"{what} file {value!r} not found", fix=f"give a path to a file in {example} (relative to the current directory)")


def load_study(path: str | Path, target: str | None = None) -> StudySpec:
    """Read and check a study file, its model file (with the study's constants) and its target file.

    ``target`` (``--target``) replaces the file's ``target:``, e.g. ``hw_targets/gpu.yaml`` to run
    the same study on a GPU node.
    """
    from codesign.models import load_model
    from codesign.models.conditions import check_conditions
    from codesign.models.emulation import Emulation

    path = Path(path)
    where = Where(str(path))
    raw = build(_StudyFile, read_yaml(path, "study file"), where)
    own = load_model(_resolve_file(raw.model, path, where.child("model"), "model", "models/", bundled_model))
    model = own.with_constants(raw.constants, where.child("constants"))
    if raw.draws is not None:  # resolved here, so that a bad value names the study rather than the model file
        model = dataclasses.replace(model, raw_draws=raw.draws, draws=model.integer(raw.draws, where.child("draws")))
    check_conditions(model, raw.conditions.train, raw.conditions.held_out, where.child("conditions"))
    rules = _rule_slots(raw, model, where)
    for knob in raw.hardware.knobs:
        if knob not in Emulation.emulates(model):
            raise where.child("hardware").child(knob).error(
                f"model {model.name} has no event-driven weights or traces to emulate {knob} on",
                fix="declare bounded weights: and traces: in the model's event-driven synapses, or remove the knob")
    if target is not None:
        target_path = resolve_target(target, path, Where(None, "--target"))
    else:
        target_path = resolve_target(raw.target, path, where.child("target"))
    target = load_target(target_path)
    name = raw.name or path.stem
    if not name.replace("-", "").replace("_", "").isalnum():
        raise where.child("name").error(f"{name!r} is not usable as a folder name",
                                        fix="use letters, digits, - and _")
    spec = StudySpec(name=name, file=str(path), model=model, target=target,
                     rules=rules, sampler=raw.sampler, n_trials=raw.n_trials, batch_size=raw.batch_size,
                     seed=raw.seed, storage=raw.storage, hardware=raw.hardware, objectives=tuple(raw.objectives),
                     trial_timeout_s=raw.trial_timeout_s, heartbeat_s=raw.heartbeat_s, retries=raw.retries,
                     conditions=raw.conditions, sparsity=raw.sparsity, stability=raw.stability)
    if spec.sparsity is not None and not any(not FAMILIES[r.family].free_text for r in rules.values()):
        raise where.child("sparsity").error("this study searches only text rules' params, which have units and "
                                            "ranges of their own: nothing to make sparse", fix="remove sparsity")
    for name in spec.objectives:
        OBJECTIVES[name].check(spec, where.child("objectives"))
    _refuse_what_the_model_cannot_run(spec, own, raw, where)
    return spec


def _refuse_what_the_model_cannot_run(spec: StudySpec, own: ModelSpec, raw: _StudyFile, where: Where) -> None:
    """Set the study's model up once (no network is built: milliseconds), so that a size or value it cannot
    run is refused before any trial. The model's checks name the model file; when the model runs with its
    own constants, the study's ``constants:``, ``draws:`` or ``conditions:`` (the first that breaks it) are
    to blame, and the error names that key of the study."""
    from codesign.errors import CodesignError
    from codesign.models import ModelTask

    def refusal(model: ModelSpec, conditions: Sequence = ({},), held_out: Sequence = ()) -> CodesignError | None:
        try:
            ModelTask(model, spec.target, searched_knobs=spec.hardware.knobs, conditions=conditions, held_out=held_out)
        except CodesignError as exc:
            return exc
        return None

    error = refusal(spec.model, spec.conditions.train, spec.conditions.held_out)
    if error is None:
        return
    if error.file != own.file or refusal(own) is not None:
        raise error
    key = ("constants" if refusal(own.with_constants(raw.constants, where.child("constants"))) else
           "draws" if refusal(spec.model) else "conditions")
    raise where.child(key).error(f"{own.file} cannot run with this: {error.key}: {error.message}",
                                 fix=f"change {key} (the model file says: {error.fix})")
