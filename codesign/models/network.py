"""A model's batched network: K candidates x R input draws as isolated copies of the one-candidate text.

The user writes one candidate. This module writes the Brian2 network that holds ``K * R`` copies of
it, copy ``c = k * R + r`` being candidate k on draw r, with no synapse between copies:

- a group of ``per: candidate`` has ``n * K * R`` neurons (neuron ``c * n + i`` is neuron i of copy c);
  one of ``per: draw`` (inputs every candidate shares) has ``n * R``;
- synapses connect the pairs of one candidate's ``connect`` condition (evaluated here, in NumPy, with
  ``i``, ``j``, ``N_pre``, ``N_post`` and the constants of one candidate) within each copy;
- in the text, ``i`` and ``j`` become the index within the copy, ``N`` the size of one copy, and a
  stimulus ``NAME(t, i)`` reads the columns of the copy's draw;
- what varies per candidate (a rule's coefficients, hardware knobs) or per draw (a condition's
  constants) becomes a per-neuron ``(constant)`` variable, set per run, of the group that uses it or,
  for synapses, of their target group (``NAME_post``).

Everything that shapes the generated code is in :meth:`BatchedNetwork.key`, so a standalone build is
found again by any process asking for the same network; values, stimuli, spikes and the seed go in
per run, so one build serves every batch and every seed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import re
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from codesign.backends import NetworkBuild, network_clock, spike_input
from codesign.errors import CodesignError
from codesign.models.emulation import Emulation
from codesign.models.losses.base import SPIKE, TRIALS, CountRecord, SeriesRecord, check_event
from codesign.models.spec import GroupSpec, ModelSpec, PhaseSpec, SynapseSpec, constant_names
from codesign.rules import FAMILIES
from codesign.schema import Where

__all__ = ["BatchedNetwork", "Layout", "synapse_text", "brian_error", "owner_key", "brian_message", "TRIALS"]


@dataclasses.dataclass(frozen=True)
class Layout:
    """K candidates x R draws."""

    candidates: int
    draws: int

    @property
    def copies(self) -> int:
        return self.candidates * self.draws


def _substitute(text: str | None, names: Mapping[str, str]) -> str | None:
    if not text or not names:
        return text
    from brian2.utils.stringtools import word_substitute

    return word_substitute(text, dict(names))


def _join(*parts: str | None) -> str | None:
    kept = [p.strip("\n") for p in parts if p and p.strip()]
    return "\n".join(kept) if kept else None


@dataclasses.dataclass
class _Group:
    name: str
    spec: GroupSpec
    n: int  # one copy
    shared: bool  # per draw
    size: int  # batched
    model: str
    threshold: str | None
    reset: str | None
    refractory: Any
    events: dict[str, str]
    hosted: dict[str, str]  # per-copy variable -> unit, declared here
    counters: list[tuple[str, str]]  # (event, phase) counted in a variable (see counter)
    on_event: dict[str, str]  # custom event -> its counters' code
    routed: list[str]  # custom events a synapse pathway acts on, each counted per neuron (see routed_count)


@dataclasses.dataclass
class _Synapse:
    name: str
    spec: SynapseSpec
    n_pre: int
    n_post: int
    pre: np.ndarray  # pattern of one copy: presynaptic index within the copy
    post: np.ndarray
    copies: int
    model: str | None
    on_pre: str | None
    on_post: str | None


class BatchedNetwork:
    """The batched network of ``model`` for these rule terms, this layout, emulation and recordings.

    ``varying`` names the constants that differ between draws (a study's conditions): where the
    text uses one, it becomes a per-draw variable.
    """

    def __init__(self, model: ModelSpec, terms: Mapping[str, tuple[str, ...]], layout: Layout,
                 emulation: Emulation | None, records: Sequence[str], varying: Sequence[str] = (),
                 spike_capacity: Mapping[str, int] | None = None, timed_columns: Mapping[str, int] | None = None) -> None:
        self.model, self.layout, self.emulation = model, layout, emulation
        self.terms = dict(terms)
        self.records = list(records)
        self.spike_capacity = dict(spike_capacity or {})
        self.timed_columns = dict(timed_columns or {})
        self.steps = int(round(model.duration_s / model.dt_s))
        #: Per-copy variables: name -> (unit, "candidate" or "draw").
        self.per_copy: dict[str, tuple[str, str]] = {}
        for synapse in model.synapses.values():
            if synapse.rule is not None:
                family = FAMILIES[synapse.rule.family]
                for name, unit in family.variables(synapse.rule, self.terms[synapse.rule.slot]).items():
                    self.per_copy[name] = (unit, "candidate")
        if emulation is not None:
            self.per_copy.update({name: (unit, "candidate") for name, unit in emulation.variables().items()})
        for name in varying:
            self.per_copy[name] = (_unit_of(model.constants[name]), "draw")
        self.gates = self._gates()
        self.phase_values = self._phase_values()
        clash = set(self.phase_values) & {n for n, (_, varies) in self.per_copy.items() if varies == "draw"}
        if clash:
            raise model.where.child("protocol").error(f"{', '.join(sorted(clash))} vary both per phase and per condition",
                                                      fix="vary a constant per phase or per condition, not both")
        #: A constant set per phase is read from its TimedArray at the current time.
        self.timed_constants = {name: f"{name}_phase(t)" for name in self.phase_values}
        self.synapses = {name: self._synapse(name, spec) for name, spec in model.synapses.items()}
        self.groups = {name: self._group(name, spec) for name, spec in model.groups.items()}
        self._check_records()

    # -- description -------------------------------------------------------------------------------

    def _group(self, name: str, spec: GroupSpec) -> _Group:
        where = self.model.where.child("groups").child(name)
        n = self.model.group_size(name)
        shared = spec.per == "draw"
        size = n * (self.layout.draws if shared else self.layout.copies)
        counted = [CountRecord.parse(r) for r in self.records]
        counters = sorted({(c.event, c.phase) for c in counted if c and c.group == name and not c.per_trial})
        threshold = spec.threshold
        reset = spec.reset
        spike_phases = [phase for event, phase in counters if event == SPIKE]
        if spike_phases or threshold:
            if not threshold:
                raise where.child("threshold").error("spike counts are recorded but the group has no threshold",
                                                     fix="give the group a threshold, or record another group")
            lines = [f"{counter(SPIKE, phase)} += {self._window(phase)}" for phase in spike_phases]
            reset = _join(reset, *lines, "spike_count += 1")
        # A custom event's counts: code of its own, run on the event as the reset is on a spike.
        on_event: dict[str, str] = {}
        for event, phase in counters:
            if event != SPIKE:
                on_event[event] = _join(on_event.get(event), f"{counter(event, phase)} += {self._window(phase)}") or ""
        routed = self._routed_events(name)
        for event in routed:
            on_event[event] = _join(on_event.get(event), f"{routed_count(event)} += 1") or ""
        hosted = {}
        threshold, reset = _substitute(threshold, self.timed_constants), _substitute(reset, self.timed_constants)
        events_text = {e: _substitute(c, self.timed_constants) for e, c in spec.events.items()}
        texts = [spec.model, threshold, reset, *spec.events.values()]
        used = set().union(*(constant_names(t) for t in texts))
        for var, (unit, varies) in self.per_copy.items():
            if var in used:
                hosted[var] = unit
                if shared and varies == "candidate":
                    raise where.child("per").error(f"group {name} is shared by every candidate (per: draw) but "
                                                   f"its text uses {var}, which differs between candidates",
                                                   fix="make the group per: candidate")
        for synapse in self.synapses.values():
            if synapse.spec.target == name:
                words = constant_names(synapse.on_pre) | constant_names(synapse.on_post) | constant_names(synapse.model)
                # In per_copy's order, not the set's: the declarations are part of the code and of
                # key(), which must not change with the process's hash seed.
                for var, (unit, _) in self.per_copy.items():
                    if f"{var}_post" in words:
                        hosted[var] = unit
        declared = [f"{var} : {unit} (constant)" for var, unit in hosted.items()]
        declared += [f"{counter(event, phase)} : 1" for event, phase in counters]
        declared += [f"{routed_count(event)} : 1" for event in routed]
        if threshold:
            declared.append("spike_count : 1")
        local = {"i": f"(i % {n})", "N": str(n)}
        model_text = _join(_substitute(spec.model, self.timed_constants), *declared) or ""
        if spec.kind != "neurons":
            model_text = ""
        texts_out = [self._stimulus_calls(_substitute(t, local), n, shared) for t in (model_text, threshold, reset)]
        events = {e: self._stimulus_calls(_substitute(c, local), n, shared) for e, c in events_text.items()}
        refractory = None
        if spec.refractory is not None:
            refractory = self._quantity_or_text(spec.refractory, where.child("refractory"))
        return _Group(name, spec, n, shared, size, texts_out[0] or "", texts_out[1], texts_out[2], refractory, events,
                      hosted, counters, on_event, routed)

    def _routed_events(self, group: str) -> list[str]:
        """The custom events of ``group`` that a synapse pathway acts on (``on_event``): its outgoing
        synapses' ``pre`` pathway, its incoming ones' ``post``. The cost model counts such a pathway's
        synaptic events per event of its side, not per spike."""
        found = set()
        for s in self.model.synapses.values():
            for pathway, event in s.on_event.items():
                if event != SPIKE and (s.source if pathway == "pre" else s.target) == group:
                    found.add(event)
        return sorted(found)

    def _blocks(self) -> tuple[int, list[tuple[PhaseSpec, int, int]]]:
        """The protocol on a grid of blocks of ``g`` time steps (g: the largest step count dividing every
        phase), and each phase's first and last block within one cycle: phase-wise values are
        TimedArrays of one value per block, small however long the protocol."""
        lengths = [int(round(self.model.seconds(p.duration, self.model.where.child("protocol").child(i))
                             / self.model.dt_s)) for i, p in enumerate(self.model.protocol)]
        block = functools.reduce(math.gcd, lengths)
        spans, start = [], 0
        for phase, length in zip(self.model.protocol, lengths):
            spans.append((phase, start // block, (start + length) // block))
            start += length
        return block, spans

    def _per_phase(self, value: Callable[..., float]) -> np.ndarray:
        """One value per block over the whole protocol: ``value(phase, cycle)`` in each phase of each pass."""
        _, spans = self._blocks()
        out = np.zeros((self.model.cycles, spans[-1][2]))
        for cycle in range(self.model.cycles):
            for phase, first, last in spans:
                out[cycle, first:last] = value(phase, cycle)
        return out.ravel()

    def _gates(self) -> dict[str, np.ndarray]:
        """Per plastic synapse that some phase leaves out (``plastic: [...]``), 1 in the blocks where it
        learns and 0 elsewhere: a TimedArray ``plastic_SYNAPSE`` multiplies its rule's eta."""
        plastic = [n for n, s in self.model.synapses.items() if s.rule is not None]
        for index, phase in enumerate(self.model.protocol):
            for i, name in enumerate(phase.plastic or ()):
                if name not in plastic:
                    raise self.model.where.child("protocol").child(index).child("plastic").child(i).error(
                        f"{name!r} is not a synapse with a rule", fix=f"plastic synapses: {', '.join(plastic) or 'none'}")
        gated = [n for n in plastic if any(p.plastic is not None and n not in p.plastic for p in self.model.protocol)]
        return {name: self._per_phase(lambda p, c, n=name: float(p.plastic is None or n in p.plastic)) for name in gated}

    def _phase_values(self) -> dict[str, tuple[np.ndarray, str]]:
        """Constants a phase (``values:``) or a trial sets: one value per block, in base units, and the unit.
        A phase's value wins over its trial's."""
        out = {}
        for name in sorted({k for p in self.model.protocol for k in p.values} | {k for t in self.model.trials for k in t}):
            base = self.model.constants[name]
            unit = _unit_of(base)

            def value(phase: PhaseSpec, cycle: int, name: str = name, base: Any = base) -> float:
                where = self.model.where.child("protocol").child(self.model.protocol.index(phase)).child("values")
                trial = self.model.trial_of(cycle)
                if name in phase.values:
                    v = self.model.value(phase.values[name], where.child(name))
                elif name in trial:
                    where = self.model.where.child("trials").child(cycle % len(self.model.trials))
                    v = self.model.value(trial[name], where.child(name))
                else:
                    v = base
                if _unit_of(v) != unit:
                    raise where.child(name).error(f"has units {_unit_of(v)}, the constant {unit}",
                                                  fix=f"give {name} in the units of its constant")
                return float(np.asarray(v))
            out[name] = (self._per_phase(value), unit)
        return out

    def _window(self, phase: str) -> str:
        """1 at the time steps of ``phase`` (every repetition of it), else 0."""
        if self.model.cycles > 1:
            block, spans = self._blocks()
            first, last = next((f * block, l * block) for p, f, l in spans if p.name == phase)
            cycle = spans[-1][2] * block
            return f"int(t_in_timesteps % {cycle} >= {first} and t_in_timesteps % {cycle} < {last})"
        start, end = self.model.phase_window(phase)
        last = abs(end - self.model.duration_s) < 1e-12
        start_text = f"t >= {start!r}*second"
        return f"int({start_text})" if last else f"int({start_text} and t < {end!r}*second)"

    def _stimulus_calls(self, text: str | None, n: int, shared: bool, index: str = "i") -> str | None:
        """``NAME(t, ARG)`` of a stimulus read at the columns of the copy's draw."""
        if not text:
            return text
        # int(i / n), not i // n: Brian2 turns // into a float floor() where a differential equation uses
        # the call, which NumPy refuses as an index
        draw = f"int({index} / {n})" if shared else f"(int({index} / {n}) % {self.layout.draws})"
        # ``NAME(t, i)`` with a column per neuron (the usual case): the copy's column is the neuron's own
        # index, modulo the draws' columns where the group is per candidate. One index in the inner loop
        # instead of two integer divisions and a modulo: the Oja bench's C++ went from 0.24 s of CPU per
        # batch of 256 to 0.15 s, as fast as the hand-written network it replaces.
        own = index if shared else f"({index} % {n * self.layout.draws})"
        for stimulus, columns in self.timed_columns.items():
            def column(match: re.Match, columns: int = columns, stimulus: str = stimulus) -> str:
                if match.group(1) and columns == n:
                    return f"{stimulus}(t, {own})"
                return f"{stimulus}(t, {draw} * {columns} + {match.group(1) or ''}"

            text = re.sub(rf"\b{stimulus}\(\s*t\s*,\s*(\({index} % {n}\)\s*\))?", column, text)
        return text

    def _quantity_or_text(self, value: Any, key: Any) -> Any:
        from codesign.expressions import ExpressionError, evaluate

        try:
            return evaluate(value, self.model.constants)
        except ExpressionError:
            return value  # a Brian2 condition such as "v > v_th"

    def _synapse(self, name: str, spec: SynapseSpec) -> _Synapse:
        where = self.model.where.child("synapses").child(name)
        n_pre, n_post = self.model.group_size(spec.source), self.model.group_size(spec.target)
        source, target = self.model.groups[spec.source], self.model.groups[spec.target]
        if target.per == "draw" and source.per == "candidate":
            raise where.child("target").error(f"{spec.source} (per candidate) cannot project to {spec.target} "
                                              "(shared by every candidate, per: draw)",
                                              fix=f"make {spec.target} per: candidate")
        pre, post = self._pattern(name, spec, n_pre, n_post)
        terms = self.terms[spec.rule.slot] if spec.rule is not None else ()
        if name in self.gates and spec.rule is not None and FAMILIES[spec.rule.family].gate_variable(spec.rule) is None:
            raise where.child("rule").child("learning_rate").error(
                "a phase leaves this synapse out of plastic:, but its text rule names no learning rate",
                fix="add learning_rate: NAME, the param or constant that multiplies every change of the rule")
        # Learning only in the phases that list this synapse: its learning rate times a TimedArray.
        model, on_pre, on_post = synapse_text(spec, terms, gate=f"plastic_{name}" if name in self.gates else None)
        _check_on_event(spec, {"pre": (on_pre, source), "post": (on_post, target)}, where.child("on_event"))
        if self.emulation is not None:
            on_pre = self.emulation.pathway(on_pre, spec, name, where)
            on_post = self.emulation.pathway(on_post, spec, name, where)
        model, on_pre, on_post = (_substitute(t, self.timed_constants) for t in (model, on_pre, on_post))
        rename = {var: f"{var}_post" for var in self.per_copy
                  if var in constant_names(model) | constant_names(on_pre) | constant_names(on_post)}
        if rename and target.per == "draw":
            raise where.error(f"uses {', '.join(rename)}, which differ per copy, but its target {spec.target} is "
                              "shared by every candidate", fix=f"make {spec.target} per: candidate")
        local = {"i": f"(i % {n_pre})", "j": f"(j % {n_post})", "N": str(len(pre))}
        model, on_pre, on_post = (_substitute(_substitute(t, rename), local) for t in (model, on_pre, on_post))
        copies = self.layout.draws if target.per == "draw" else self.layout.copies
        return _Synapse(name, spec, n_pre, n_post, pre, post, copies, model, on_pre, on_post)

    def _pattern(self, name: str, spec: SynapseSpec, n_pre: int, n_post: int) -> tuple[np.ndarray, np.ndarray]:
        """The synapses of one copy: (pre, post) indices, ordered by post then pre."""
        from codesign.expressions import ExpressionError, evaluate

        where = self.model.where.child("synapses").child(name)
        post, pre = np.meshgrid(np.arange(n_post), np.arange(n_pre), indexing="ij")
        scope = {**self.model.constants, "i": pre, "j": post, "N_pre": n_pre, "N_post": n_post}
        try:
            mask = np.broadcast_to(np.asarray(evaluate(spec.connect, scope), dtype=bool), post.shape).copy()
            p = float(evaluate(spec.p, self.model.constants))
        except (ExpressionError, TypeError, ValueError) as exc:
            raise where.child("connect").error(f"cannot evaluate: {exc}",
                                               fix="write a condition of i, j, N_pre, N_post and the constants") from None
        if not 0.0 <= p <= 1.0:
            raise where.child("p").error(f"must be a probability, got {p:g}", fix="use a value in [0, 1]")
        if p < 1.0:
            # Drawn once, from the model's name: every candidate and draw has the same connections.
            rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"{self.model.name}|{name}".encode()).digest()[:8], "little"))
            mask &= rng.uniform(size=mask.shape) < p
        if not mask.any():
            raise where.child("connect").error("connects no pair of neurons", fix="check the condition and p")
        posts, pres = np.nonzero(mask)
        return pres, posts

    def trial_events(self) -> list[tuple[str, str]]:
        """(group, event) counted per trial (records ``group@phase/trial``, ``group:EVENT@phase/trial``)."""
        return sorted({(c.group, c.event) for c in map(CountRecord.parse, self.records) if c and c.per_trial})

    def trial_counts(self, group: str, phase: str, indices: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Events of ``group`` in ``phase`` of each pass: (copies, cycles, n) from a run's monitor of
        that event (its neuron indices and times)."""
        g = self.groups[group]
        block, spans = self._blocks()
        first, last = next((f * block, l * block) for p, f, l in spans if p.name == phase)
        cycle_steps = spans[-1][2] * block
        steps = np.rint(np.asarray(times, dtype=float) / self.model.dt_s).astype(np.int64)
        cycle, within = np.divmod(steps, cycle_steps)
        keep = (within >= first) & (within < last)
        copies = g.size // g.n
        out = np.zeros((copies, self.model.cycles, g.n))
        index = np.asarray(indices, dtype=np.int64)[keep]
        np.add.at(out, (index // g.n, cycle[keep], index % g.n), 1)
        return out

    def _check_records(self) -> None:
        where = self.model.where.child("loss")
        for name in self.records:
            record = CountRecord.parse(name)
            series = SeriesRecord.parse(name)
            if series is not None:
                self._check_series(series, where)
            elif record is None:
                owner = name.partition(".")[0]
                if owner not in self.groups and owner not in self.synapses:
                    raise where.error(f"records {name!r}: no group or synapse {owner!r}",
                                      fix="name one of the model's groups or synapses")
            elif record.group not in self.groups:
                raise where.error(f"records {name!r}: no group {record.group!r}", fix="name one of the model's groups")
            else:
                check_event(self.model, record.group, record.event, where)

    def _check_series(self, series: SeriesRecord, where: Any) -> None:
        if series.owner not in self.groups and series.owner not in self.synapses:
            raise where.error(f"records {series.name!r}: no group or synapse {series.owner!r}",
                              fix="name one of the model's groups or synapses")
        ratio = series.every / self.model.dt_s
        if ratio < 1 or abs(ratio - round(ratio)) > 1e-6:
            raise where.error(f"samples {series.owner}.{series.var} every {series.every:g} s, not a whole number of "
                              f"time steps of {self.model.dt_s:g} s", fix="sample at a multiple of dt")

    # -- identity ------------------------------------------------------------------------------------

    def key(self) -> str:
        """Everything that shapes the generated code: texts, sizes, connections, per-copy variables."""
        digest = hashlib.sha256()
        for group in self.groups.values():
            digest.update(repr((group.name, group.spec.kind, group.size, group.model, group.threshold, group.reset,
                                repr(group.refractory), sorted(group.events.items()), group.spec.method, group.spec.rates,
                                sorted(group.spec.initial.items()), self.spike_capacity.get(group.name))).encode())
        for s in self.synapses.values():
            digest.update(repr((s.name, s.spec.source, s.spec.target, s.copies, s.model, s.on_pre, s.on_post,
                                sorted(s.spec.on_event.items()), s.spec.method, s.spec.delay,
                                sorted(s.spec.initial.items()), sorted(s.spec.summed_order.items()))).encode())
            digest.update(s.pre.astype(np.int64).tobytes() + s.post.astype(np.int64).tobytes())
        digest.update(repr((sorted((k, repr(v)) for k, v in self.model.constants.items()), self.steps,
                            self.model.dt_s, sorted(self.timed_columns.items()), self.layout,
                            sorted(self.per_copy.items()), self.records)).encode())
        for name, gate in sorted(self.gates.items()):
            digest.update(name.encode() + gate.tobytes())
        for name, (values, unit) in sorted(self.phase_values.items()):
            digest.update(name.encode() + unit.encode() + values.tobytes())
        digest.update(repr((self.model.cycles, self._blocks()[0])).encode())
        return f"model|{self.model.name}|{digest.hexdigest()[:24]}"

    # -- construction ----------------------------------------------------------------------------------

    def namespace(self) -> dict[str, Any]:
        return {k: v for k, v in self.model.constants.items() if k not in self.per_copy}

    def construct(self):
        """The function that creates the Brian2 objects (called by a backend with its device active)."""

        def construct() -> NetworkBuild:
            import brian2 as b2

            dt = self.model.dt_s * b2.second
            clock = network_clock(dt)
            timed = {name: b2.TimedArray(np.zeros((self.steps, self.layout.draws * columns)), dt=dt, name=name)
                     for name, columns in self.timed_columns.items()}
            block_dt = self._blocks()[0] * dt
            gates = {f"plastic_{name}": b2.TimedArray(values, dt=block_dt, name=f"plastic_{name}")
                     for name, values in self.gates.items()}
            gates.update({f"{name}_phase": b2.TimedArray(_with_unit(values, unit), dt=block_dt, name=f"{name}_phase")
                          for name, (values, unit) in self.phase_values.items()})
            namespace = {**self.namespace(), **timed, **gates}
            objects: dict[str, Any] = {}
            spike_inputs = {}
            for group in self.groups.values():
                objects[group.name] = self._make_group(b2, group, clock, namespace)
                if group.spec.kind == "spikes":
                    spike_inputs[group.name] = objects[group.name]
            for s in self.synapses.values():
                objects[s.name] = self._make_synapses(b2, s, objects, clock, namespace)
            monitors = {g.name: b2.SpikeMonitor(objects[g.name], record=False, name=f"{g.name}_spikes")
                        for g in self.groups.values() if g.spec.kind == "poisson"}
            # Counts per trial: the events of the groups read per trial, binned after the run.
            timed_events = {CountRecord(g, "", event).source: _event_monitor(b2, objects[g], event)
                            for g, event in self.trial_events()}
            settable: dict[str, tuple[Any, str]] = {}
            for group in self.groups.values():
                for var in group.hosted:
                    settable[f"{group.name}:{var}"] = (objects[group.name], var)
            for s in self.synapses.values():
                for var in set(self.initialised_synapse_vars(s.name)):
                    settable[f"{s.name}.{var}"] = (objects[s.name], var)
            readable, series_monitors = self._recorded(b2, objects)
            for group in self.groups.values():
                if group.spec.threshold:
                    readable[f"{group.name}@spikes"] = (objects[group.name], "spike_count")
                for event in group.routed:
                    readable[f"{group.name}@{event}"] = (objects[group.name], routed_count(event))
            readable.update({f"{name}@spikes": (monitor, "count") for name, monitor in monitors.items()})
            for source, monitor in timed_events.items():
                readable[f"{source}@trial_i"], readable[f"{source}@trial_t"] = (monitor, "i"), (monitor, "t")
            return NetworkBuild(objects=list(objects.values()) + list(monitors.values()) + list(timed_events.values())
                                + series_monitors,
                                duration=self.steps * dt, settable=settable,
                                readable=readable, timed_arrays=timed, spike_inputs=spike_inputs,
                                draws_random=bool(monitors) or self.draws_random())

        return construct

    def _recorded(self, b2: Any, objects: Mapping[str, Any]) -> tuple[dict[str, tuple[Any, str]], list[Any]]:
        """Where each record is read after a run, and the monitors that sample the series records."""
        readable: dict[str, tuple[Any, str]] = {}
        series_monitors = []
        for name in self.records:
            record, series = CountRecord.parse(name), SeriesRecord.parse(name)
            if series is not None:
                series_monitors.append(b2.StateMonitor(objects[series.owner], series.var, record=True,
                                                       dt=series.every * b2.second, when="end",
                                                       name=f"series_{len(series_monitors)}"))
                readable[name] = (series_monitors[-1], series.var)
            elif record is None:
                owner, _, var = name.partition(".")
                readable[name] = (objects[owner], var)
            elif not record.per_trial:  # per trial: binned from the event's monitor
                readable[name] = (objects[record.group], counter(record.event, record.phase))
        return readable, series_monitors

    def draws_random(self) -> bool:
        """Whether a run draws random numbers (so that its seed matters): the emulation's rounding, or
        ``rand()`` / ``randn()`` anywhere in the text (Poisson groups are counted by the caller)."""
        texts = [t for g in self.groups.values() for t in (g.model, g.threshold, g.reset, *g.events.values())]
        texts += [t for s in self.synapses.values() for t in (s.model, s.on_pre, s.on_post)]
        emulated = self.emulation is not None and self.emulation.draws_random
        return emulated or any({"rand", "randn"} & constant_names(t) for t in texts)

    def _make_group(self, b2: Any, group: _Group, clock: Any, namespace: dict[str, Any]) -> Any:
        where = self.model.where.child("groups").child(group.name)
        if group.spec.kind == "spikes":
            capacity = self.spike_capacity.get(group.name)
            if capacity is None:
                raise where.child("kind").error("no stimulus feeds this group of spike inputs",
                                                fix="add a stimulus of kind poisson with group: " + group.name)
            return spike_input(group.size, capacity, clock, group.name)
        if group.spec.kind == "poisson":
            rates = self._quantity_or_text(group.spec.rates, where.child("rates"))
            if isinstance(rates, str):
                rates = self._stimulus_calls(_substitute(rates, {"i": f"(i % {group.n})"}), group.n, group.shared)
            try:
                return b2.PoissonGroup(group.size, rates=rates, clock=clock, namespace=namespace, name=group.name)
            except Exception as exc:
                raise _brian_error(where, exc) from None
        kwargs: dict[str, Any] = {}
        if group.threshold:
            kwargs["threshold"] = group.threshold
        if group.reset:
            kwargs["reset"] = group.reset
        if group.refractory is not None:
            kwargs["refractory"] = group.refractory
        if group.spec.method:
            kwargs["method"] = group.spec.method
        if group.events:
            kwargs["events"] = dict(group.events)  # Brian2 adds "spike" to the dict it is given
        try:
            made = b2.NeuronGroup(group.size, group.model, clock=clock, namespace=namespace, name=group.name, **kwargs)
            for event, code in group.on_event.items():
                made.run_on_event(event, code)
            for var, value in group.spec.initial.items():
                setattr(made, var, self.model.value(value, where.child("initial").child(var)))
        except CodesignError:
            raise
        except Exception as exc:
            raise _brian_error(where, exc) from None
        return made

    def _make_synapses(self, b2: Any, s: _Synapse, objects: Mapping[str, Any], clock: Any,
                       namespace: dict[str, Any]) -> Any:
        where = self.model.where.child("synapses").child(s.name)
        source_shared = self.model.groups[s.spec.source].per == "draw"
        kwargs: dict[str, Any] = {}
        for key in ("on_pre", "on_post", "model"):
            if getattr(s, key):
                kwargs[key] = getattr(s, key)
        if s.spec.on_event:
            kwargs["on_event"] = dict(s.spec.on_event)
        if s.spec.method:
            kwargs["method"] = s.spec.method
        if s.spec.delay:
            kwargs["delay"] = self.model.value(s.spec.delay, where.child("delay"))
        copies = np.arange(s.copies)
        pre_copy = copies % self.layout.draws if source_shared else copies
        if s.copies == self.layout.draws:  # between groups shared per draw
            pre_copy = copies
        try:
            made = b2.Synapses(objects[s.spec.source], objects[s.spec.target], clock=clock, namespace=namespace,
                               name=s.name, **kwargs)
            made.connect(i=(pre_copy[:, None] * s.n_pre + s.pre[None, :]).ravel(),
                         j=(copies[:, None] * s.n_post + s.post[None, :]).ravel())
            for var, value in s.spec.initial.items():
                setattr(made, var, self.model.value(value, where.child("initial").child(var)))
            for var, order in s.spec.summed_order.items():
                made.summed_updaters[var].order = order
        except CodesignError:
            raise
        except KeyError as exc:
            raise where.child("summed_order").error(f"no summed variable {exc}", fix="name a (summed) variable") from None
        except Exception as exc:
            raise _brian_error(where, exc) from None
        return made

    # -- per run ---------------------------------------------------------------------------------------

    def initialised_synapse_vars(self, synapse: str) -> list[str]:
        """Synapse variables a stimulus sets per run."""
        out = []
        for stim in self.model.stimuli.values():
            for name in (stim.params.get("initial") or {}):
                owner, _, var = str(name).partition(".")
                if owner == synapse:
                    out.append(var)
        return out

    def values(self, per_copy: Mapping[str, np.ndarray], initial: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """What a run sets: each per-copy variable (an array over the K x R copies, base units) on every
        group hosting it, and synapse variables drawn per draw (``"synapse.var"`` -> (R, n_post, n_pre))."""
        out: dict[str, Any] = {}
        for group in self.groups.values():
            for var in group.hosted:
                values = np.asarray(per_copy[var], dtype=float)
                out[f"{group.name}:{var}"] = _with_unit(np.repeat(values, group.n) if not group.shared else
                                                        np.repeat(values[: self.layout.draws], group.n),
                                                        self.per_copy[var][0])
        for name, matrices in initial.items():
            owner, _, var = name.partition(".")
            s = self.synapses[owner]
            per_draw = matrices[:, s.post, s.pre]  # (R, n_syn)
            draw_of_copy = np.arange(s.copies) % self.layout.draws
            out[name] = per_draw[draw_of_copy].ravel()
        return out

    def dense(self, synapse: str, flat: np.ndarray) -> np.ndarray:
        """A synapse variable read after a run as matrices: (copies, n_post, n_pre), 0 where no synapse."""
        s = self.synapses[synapse]
        out = np.zeros((s.copies, s.n_post, s.n_pre))
        out[:, s.post, s.pre] = flat.reshape(s.copies, len(s.pre))
        return out

    def present(self, synapse: str) -> np.ndarray:
        s = self.synapses[synapse]
        mask = np.zeros((s.n_post, s.n_pre), dtype=bool)
        mask[s.post, s.pre] = True
        return mask


def counter(event: str, phase: str) -> str:
    """The group variable counting ``event`` in ``phase``: ``count_PHASE`` for spikes (as before there
    were other events: the code, and so the builds in the cache, of spike counts stay the same),
    ``count_PHASE__EVENT`` for a custom event (its code is part of :meth:`BatchedNetwork.key` through
    the records)."""
    return f"count_{phase}" if event == SPIKE else f"count_{phase}__{event}"


def _check_on_event(spec: SynapseSpec, pathways: Mapping[str, tuple[str | None, GroupSpec]], where: Where) -> None:
    """Each ``on_event`` entry names a pathway the synapse has (its own text or its rule's) and an
    event of that pathway's side: Brian2 would ignore an unknown pathway, and blame the group for an
    unknown event."""
    for pathway, event in spec.on_event.items():
        if pathway not in pathways:
            raise where.child(pathway).error(f"unknown pathway {pathway!r}",
                                             fix="on_event maps a pathway (pre, post) to an event of its side's group")
        text, group = pathways[pathway]
        side = spec.source if pathway == "pre" else spec.target
        if not text:
            raise where.child(pathway).error(f"the synapse has no on_{pathway} (nor has its rule), so no code runs "
                                             f"on {side}'s {event!r}", fix=f"write on_{pathway}, or remove this entry")
        events = ([SPIKE] if group.threshold or group.kind != "neurons" else []) + list(group.events)
        if event not in events:
            raise where.child(pathway).error(f"group {side} has no event {event!r}",
                                             fix=f"its events: {', '.join(events) or 'none (add events: to it)'}")


def routed_count(event: str) -> str:
    """The group variable counting custom ``event`` over the whole run, for the pathways acting on it
    (named as the per-phase counters are, see :func:`counter`)."""
    return f"count__{event}"


def _event_monitor(b2: Any, group: Any, event: str) -> Any:
    """The monitor of the times of ``event`` in ``group``: a SpikeMonitor for spikes, as before there
    were other events (the same code), else an EventMonitor."""
    if event == SPIKE:
        return b2.SpikeMonitor(group, name=f"{group.name}_trials")
    return b2.EventMonitor(group, event, name=f"{group.name}_{event}_trials")


def synapse_text(spec: SynapseSpec, terms: tuple[str, ...],
                 gate: str | None = None) -> tuple[str | None, str | None, str | None]:
    """A synapse's Brian2 text (model, on_pre, on_post) for one candidate, as the model file and its rule
    family write it, before any batching: its own text joined with the family's text for ``terms``.

    The port compiles this text (the rule's values are constants of its namespace, see
    ``Family.values``); a batched network rewrites it further (emulation, per-copy names, indices).
    ``gate``: the name of a TimedArray of 0 and 1 that multiplies the rule's learning rate.
    """
    model, on_pre, on_post = spec.model or None, spec.on_pre, spec.on_post
    if spec.rule is None:
        return model, on_pre, on_post
    family = FAMILIES[spec.rule.family]
    text = family.template(spec.rule, terms)
    rate = family.gate_variable(spec.rule)
    if gate is not None and rate is not None:
        text = {k: _substitute(v, {rate: f"({rate} * {gate}(t))"}) for k, v in text.items()}
    return _join(model, text.get("model")), _join(on_pre, text.get("on_pre")), _join(on_post, text.get("on_post"))


def brian_error(model: ModelSpec, exc: Exception) -> CodesignError:
    """Brian2's error about one of a model's objects (a ``BrianObjectException``) as one line naming the
    model file, the group or synapse, and Brian2's own message (what caused it, where Brian2 wraps the cause)."""
    # Private API (BrianObjectException._brian_objname): the only place Brian2 keeps the object's name.
    where = owner_key(model, getattr(exc, "_brian_objname", "") or "")
    return _brian_error(where, exc.__cause__ or exc)


def owner_key(model: ModelSpec, object_name: str) -> Any:
    """``groups.NAME`` or ``synapses.NAME`` of the entry that made the Brian2 object ``object_name``: the
    entry's own name, or the longest entry name that, with ``_``, begins it (``inhibitory_pre``,
    ``neuron_stateupdater``); the model file itself if none does."""
    owners = [(kind, owner) for kind in ("synapses", "groups") for owner in getattr(model, kind)]
    matches = [(kind, owner) for kind, owner in owners if object_name == owner or object_name.startswith(owner + "_")]
    if not matches:
        return model.where
    kind, owner = max(matches, key=lambda m: len(m[1]))
    return model.where.child(kind).child(owner)


def _unit_of(value: Any) -> str:
    dim = getattr(value, "dim", None)
    if dim is None or value.is_dimensionless:
        return "1"
    from brian2 import get_unit

    return repr(get_unit(dim))


def _with_unit(values: np.ndarray, unit: str) -> Any:
    """``values`` (base units) as a quantity of ``unit``, a unit as :func:`_unit_of` writes it."""
    if unit == "1":
        return values
    from brian2 import Quantity

    from codesign.expressions import evaluate

    return Quantity(values, dim=evaluate(unit, _unit_names()).dim)


@functools.lru_cache(maxsize=1)
def _unit_names() -> dict[str, Any]:
    """Brian2's units by the names ``repr`` gives them (``volt``, ``hertz``), as :func:`_unit_of` writes them."""
    from brian2.units.allunits import all_units

    return {repr(unit): unit for unit in all_units}


def _brian_error(where: Any, exc: BaseException) -> CodesignError:
    """One line for an error Brian2 raised about the text of the entry at ``where``."""
    return where.error(f"Brian2: {brian_message(exc)}",
                       fix="correct the Brian2 text of this entry (codesign check MODEL)")


def brian_message(exc: BaseException, limit: int = 300) -> str:
    """Brian2's message on one line, trimmed to ``limit`` characters: each line of it (a unit error's
    first line only names the variable), then the messages of the errors it was raised from that add
    to it (a code generation error's cause says what is wrong with the statement it quotes)."""
    parts: list[str] = []
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, SyntaxError):
            text = cause.msg + (f" in {cause.text.strip()!r}" if cause.text and cause.text.strip() else "")
        elif isinstance(cause, KeyError) and cause.args:
            text = str(cause.args[0])  # str() of a KeyError quotes its message
        else:
            text = str(cause)
        text = " ".join(line.strip() for line in text.splitlines() if line.strip())
        if text and not any(text in part for part in parts):
            parts.append(text)
        cause = cause.__cause__
    message = ": ".join(parts) or type(exc).__name__
    return message if len(message) <= limit else message[: limit - 3] + "..."
