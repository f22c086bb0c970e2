"""A model evaluated on a target: batches of candidates in one network, input draws from a seed, the loss.

:class:`ModelTask` is what a study, ``codesign eval`` and ``compare`` run. It builds the model's
batched network once per shape (rule terms, batch size, draws) and re-runs it for every batch and
every seed, and reports per candidate the loss, the loss's metrics and the events its network did.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from codesign.backends import Simulation, simulation
from codesign.errors import CodesignError, UnknownNameError
from codesign.hardware import EventCounts, Target
from codesign.models.conditions import changed_constants, check_conditions
from codesign.models.emulation import Emulation
from codesign.models.evaluation import Evaluation
from codesign.models.losses import Recordings, make_loss, resolve_values
from codesign.models.losses.base import SPIKE, CountRecord, SeriesRecord
from codesign.models.network import BatchedNetwork, Layout, brian_error
from codesign.models.spec import ModelSpec
from codesign.models.stimuli import Stimulus, StimulusDraw, make_stimuli
from codesign.rules import FAMILIES, Candidate, Rule, load_candidate, named_rule
from codesign.schema import Where

__all__ = ["ModelTask", "MAX_STEPS", "MAX_INPUT_VALUES", "used_terms", "pad"]

#: What one simulation may ask: past these a batch would run for hours, or its input draws would not
#: fit in memory (the studies in studies/: at most 3,200,000 time steps, studies/bdsp-xor.yaml's, and 1,440,000
#: input values or spikes).
MAX_STEPS = 100_000_000
MAX_INPUT_VALUES = 20_000_000


def used_terms(rules: Sequence[Rule], terms: Sequence[str] | None, all_terms: Sequence[str]) -> tuple[str, ...]:
    """The terms a network must hold: ``terms`` plus any nonzero term of the rules, in family order."""
    wanted = set(terms or ()) | {t for rule in rules for t, v in rule.coefficients.items() if v != 0.0}
    return tuple(t for t in all_terms if t in wanted) or (all_terms[0],)


def pad(items: Sequence[Any], size: int) -> list[Any]:
    """``items`` filled up to ``size`` with copies of the last: a batch network has a fixed size, and
    its spare places run a real candidate again rather than something that might diverge."""
    return list(items) + [items[-1]] * (size - len(items))


_ASSIGNED = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?:=|\+=|-=|\*=|/=)", re.MULTILINE)


class ModelTask:
    """``model`` on ``target``, trained on ``conditions`` (each a dict of constants; one empty by default)."""

    counts_events = True

    def __init__(self, model: ModelSpec, target: Target, *, searched_knobs: Sequence[str] = (),
                 conditions: Sequence[Mapping[str, Any]] = ({},),
                 held_out: Sequence[Mapping[str, Any]] = ()) -> None:
        self.model, self.target = model, target
        self.held_out = [dict(c) for c in held_out]
        self.loss = make_loss(model)
        self.records = self.loss.records()
        self.conditions = [dict(c) for c in conditions] or [{}]
        check_conditions(model, self.conditions, self.held_out, Where(None, "conditions"))
        self.emulation = Emulation(model, target) if Emulation.needed(model, target, searched_knobs) else None
        self.stimuli: dict[str, Stimulus] = make_stimuli(model)
        self._networks: dict[Any, BatchedNetwork] = {}
        self._draws: tuple[Any, dict[str, StimulusDraw]] | None = None
        self._check_size()

    # -- what the model offers -------------------------------------------------------------------------

    @property
    def slots(self) -> dict[str, str]:
        return self.model.slots

    @property
    def knobs(self) -> tuple[str, ...]:
        """Hardware knobs the emulation can apply to this model (see :meth:`Emulation.emulates`)."""
        return Emulation.emulates(self.model)

    def candidates(self, items: Sequence[Rule | Candidate]) -> list[dict[str, Rule]]:
        """Candidates as slot -> rule mappings; a bare rule is accepted for a one-slot model."""
        (first, *_) = self.slots
        return [dict(item) if isinstance(item, Mapping) else {first: item} for item in items]

    def candidate(self, item: str | Path | Rule | Candidate, etas: Mapping[str, float],
                  key: str | None = None) -> dict[str, Rule]:
        """One candidate: a name the model knows (``named:``, with ``etas``), a rule file, a rule (of a
        one-slot model) or a slot -> rule mapping. ``key``: where an unknown name came from (``--rule``)."""
        if not isinstance(item, (str, Path)):
            return self.candidates([item])[0]
        named = self.named_candidates(etas)
        if str(item) in named:
            return named[str(item)]
        if isinstance(item, Path) or "/" in item or item.endswith((".yaml", ".yml")):
            return load_candidate(item, self.model.rules)
        raise UnknownNameError("rule", str(item), list(named), key=key)

    def named_candidates(self, etas: Mapping[str, float]) -> dict[str, dict[str, Rule]]:
        """The model's named candidates (``named:``), each slot's rule with the study's eta."""
        out = {}
        for name, rules in self.model.named.items():
            candidate = {}
            for slot, rule in rules.items():
                where = self.model.where.child("named").child(name).child(slot)
                try:
                    candidate[slot] = self._named_rule(name, slot, rule, etas[slot], where)
                except (TypeError, ValueError, AttributeError) as exc:
                    raise where.error(f"not a rule: {exc}", fix="give coefficients: {TERM: number}, "
                                      "or the name of a classic rule") from None
                except CodesignError as exc:  # an unknown rule name or term: this key, not --rule
                    raise where.error(exc.message, fix=exc.fix) from None
            out[name] = candidate
        return out

    def _named_rule(self, name: str, slot: str, rule: Any, eta: float, where: Any) -> Rule:
        ref = self.model.rules[slot]
        family = FAMILIES[ref.family]
        if isinstance(rule, str):
            return named_rule(rule, eta=eta)
        if family.free_text:  # values in the params' units, or quantities (load_model checked the names)
            return family.rule(ref, {k: self.model.value(v, where.child("params").child(k))
                                     for k, v in rule["params"].items()}, name=name)
        data = resolve_values(rule, self.model, where)
        extras = {k: float(data[k]) for k in family.extras if k in data}
        return family.rule(ref, {k: float(v) for k, v in data.get("coefficients", {}).items()}, eta=eta, name=name,
                           **extras)

    # -- draws -----------------------------------------------------------------------------------------

    def draw_constants(self, conditions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The constants of every draw: ``model.draws`` draws per condition, condition-major."""
        out = []
        for i, condition in enumerate(conditions):
            where = self.model.where.child("conditions").child(i)
            constants = self.model.with_constants(dict(condition), where).constants if condition else self.model.constants
            out += [constants] * self.model.draws
        return out

    def varying(self) -> list[str]:
        """Constants of the network's text that some condition, training or held out, changes: per-draw
        variables of the one network every condition runs in."""
        where = Where(None, "conditions")
        changed = set().union(*(changed_constants(self.model, c, where) for c in self.all_conditions()))
        return sorted(changed & self.model.text_names())

    def inputs(self, seed: int, conditions: Sequence[Mapping[str, Any]] | None = None) -> dict[str, StimulusDraw]:
        """Each stimulus's draws for ``seed`` on ``conditions`` (default: the training ones), as a run gets them."""
        conditions = self.conditions if conditions is None else conditions
        key = (seed, repr(conditions))
        if self._draws is None or self._draws[0] != key:
            constants = self.draw_constants(conditions)
            draws = {}
            for index, (name, stim) in enumerate(self.stimuli.items()):
                # The first stimulus draws from the seed itself, later ones from (seed, index).
                rng = np.random.default_rng(seed if index == 0 else [seed, index])
                shapes = {}
                for target in getattr(stim.params, "initial", {}):
                    owner = target.partition(".")[0]
                    if owner not in self.model.synapses:
                        raise stim.where.child("initial").child(target).error(
                            "names no synapse variable", fix="write SYNAPSE.VARIABLE")
                    s = self.model.synapses[owner]
                    shapes[target] = (self.model.group_size(s.target), self.model.group_size(s.source))
                draws[name] = stim.draw(rng, constants, self.model, shapes)
            self._draws = (key, draws)  # keep one: the study's, or eval's
        return self._draws[1]

    def _spike_capacity(self) -> dict[str, int]:
        """Room for input spikes per group of spike inputs, for every condition a study evaluates."""
        return {stim.params.group: stim.capacity(self._busiest(stim), self.model)
                for stim in self.stimuli.values() if stim.feeds == "spikes"}

    def _busiest(self, stim: Stimulus) -> list[dict[str, Any]]:
        """The draws' constants of a network that runs ``stim``'s busiest condition, training or held
        out, in each of its places: no run of the network draws more on average."""
        worst = max((self.draw_constants([c]) for c in self.all_conditions()),
                    key=lambda d: stim.expected_spikes(d, self.model))
        return worst * len(self.conditions)

    def all_conditions(self) -> list[dict[str, Any]]:
        return self.conditions + self.held_out

    def _check_size(self) -> None:
        steps = self.model.duration_s / self.model.dt_s
        where = self.model.where.child("protocol")
        if steps > MAX_STEPS:
            raise where.error(f"{self.model.duration_s:g} s in steps of {self.model.dt_s * 1e3:g} ms is {steps:,.0f} "
                              f"time steps, more than {MAX_STEPS:,}", fix="shorten the protocol or lengthen dt")
        draws = self.model.draws * len(self.conditions)
        values = 0.0
        for stim in self.stimuli.values():
            values += (steps * stim.columns(self.model) * draws if stim.feeds == "timed"
                       else stim.expected_spikes(self._busiest(stim), self.model))
        if values > MAX_INPUT_VALUES:
            raise self.model.where.child("stimuli").error(
                f"the input draws would hold {values:,.0f} values or spikes, more than {MAX_INPUT_VALUES:,}",
                fix="lower draws, the number of inputs, the rates or the duration")

    # -- the network -----------------------------------------------------------------------------------

    def network(self, terms: Mapping[str, tuple[str, ...]], size: int, n_conditions: int) -> BatchedNetwork:
        key = (tuple(sorted(terms.items())), size, n_conditions)
        if key not in self._networks:
            layout = Layout(size, n_conditions * self.model.draws)
            timed = {name: stim.columns(self.model) for name, stim in self.stimuli.items() if stim.feeds == "timed"}
            self._networks = {key: BatchedNetwork(self.model, terms, layout, self.emulation, self.records,
                                                  self.varying(), self._spike_capacity(), timed)}
        return self._networks[key]

    def simulation(self, network: BatchedNetwork) -> Simulation:
        return simulation(self.target, network.key(), network.construct())

    def held_terms(self, rules: Sequence[Candidate], terms: Sequence[str] | Mapping[str, Sequence[str]] | None
                   ) -> dict[str, tuple[str, ...]]:
        out = {}
        for slot in self.slots:
            given = terms.get(slot) if isinstance(terms, Mapping) else terms
            out[slot] = used_terms([c[slot] for c in rules], given, self.model.slot_terms(slot))
        return out

    # -- evaluation ------------------------------------------------------------------------------------

    def evaluate(self, candidates: Sequence[Rule | Candidate], seed: int,
                 terms: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
                 capacity: int | None = None, knobs: Sequence[Mapping[str, Any]] | None = None,
                 conditions: Sequence[Mapping[str, Any]] | None = None, by_condition: bool = False
                 ) -> list[Evaluation]:
        """Loss, metrics and event counts of each candidate on the draws of ``seed``.

        ``terms``: the family terms the network holds (per slot; a study passes its search space, so
        that every batch reuses one network); ``capacity``: the candidates it holds (a smaller batch
        is padded); ``knobs``: each candidate's hardware knobs. ``conditions`` (default: the training
        ones) are evaluated in a network of as many conditions as training has (padded), so held-out
        conditions reuse its build; ``by_condition`` adds metric ``conditions``, one entry per condition.
        """
        if not candidates:
            return []
        cands = self.candidates(candidates)
        size = max(len(cands), capacity or 0)
        asked = [dict(c) for c in (conditions if conditions is not None else self.conditions)]
        evaluations: list[list[Evaluation]] = []
        per_condition: list[list[Evaluation]] = [[] for _ in cands]
        width = len(self.conditions)
        for start in range(0, len(asked), width):
            chunk = asked[start:start + width]
            run = self._run(cands, seed, terms, size, knobs, pad(chunk, width))
            evaluations.append(run(len(chunk)))
            if by_condition:
                for c in range(len(chunk)):  # one loss per candidate and condition
                    for k, evaluation in enumerate(run(len(chunk), only=c)):
                        per_condition[k].append(evaluation)
        if len(evaluations) == 1:
            out = evaluations[0]
        else:  # more conditions than a network holds: the mean loss, the first chunk's metrics
            out = [dataclasses.replace(e[0], loss=float(np.mean([x.loss for x in e])),
                                       diverged=any(x.diverged for x in e)) for e in zip(*evaluations)]
        if by_condition:
            for k, evaluation in enumerate(out):
                evaluation.metrics["conditions"] = [
                    {"values": {n: str(v) for n, v in asked[c].items()}, "loss": e.loss,
                     **{m: v for m, v in e.metrics.items() if m != "conditions"}}
                    for c, e in enumerate(per_condition[k])]
        return out

    def recordings(self, candidate: Rule | Candidate, seed: int) -> tuple[Recordings, dict[str, StimulusDraw]]:
        """What one candidate's network recorded on the training conditions' draws of ``seed`` (what its
        loss reads), and the inputs it ran on (``codesign record``)."""
        cands = self.candidates([candidate])
        recordings, _ = self._simulate(cands, seed, None, 1, None, self.conditions)
        return recordings[0], self.inputs(seed, self.conditions)

    def _run(self, cands: Sequence[Mapping[str, Rule]], seed: int, terms: Any, size: int,
             knobs: Sequence[Mapping[str, Any]] | None, conditions: Sequence[Mapping[str, Any]]):
        """Run one network of ``conditions``; returns a function giving each candidate's evaluation on
        the first ``n`` conditions, or on condition ``only``."""
        recordings, counts = self._simulate(cands, seed, terms, size, knobs, conditions)

        def evaluations(n: int, only: int | None = None) -> list[Evaluation]:
            chosen = (np.arange(only * self.model.draws, (only + 1) * self.model.draws) if only is not None
                      else np.arange(n * self.model.draws))
            result = []
            for k in range(len(cands)):
                evaluation = self.loss(recordings[k].subset(chosen))
                evaluation.counts = counts[k]
                result.append(evaluation)
            return result

        return evaluations

    def _simulate(self, cands: Sequence[Mapping[str, Rule]], seed: int, terms: Any, size: int,
                  knobs: Sequence[Mapping[str, Any]] | None, conditions: Sequence[Mapping[str, Any]]
                  ) -> tuple[list[Recordings], list[EventCounts]]:
        """Run one network of ``conditions``: each candidate's recordings and event counts."""
        held = self.held_terms(cands, terms)
        network = self.network(held, size, len(conditions))
        layout = network.layout
        padded = pad(list(cands), size)
        draws = self.inputs(seed, conditions)
        constants = self.draw_constants(conditions)
        per_copy: dict[str, np.ndarray] = {}
        for synapse in self.model.synapses.values():
            if synapse.rule is not None:
                slot, family = synapse.rule.slot, FAMILIES[synapse.rule.family]
                values = [family.values(c[slot], synapse.rule, held[slot]) for c in padded]
                for var in values[0]:
                    per_copy[var] = np.repeat([v[var] for v in values], layout.draws)
        if self.emulation is not None:
            for var, values in self.emulation.values(pad(list(knobs or [{}] * len(cands)), size)).items():
                per_copy[var] = np.repeat(values, layout.draws)
        for var in network.per_copy:
            if network.per_copy[var][1] == "draw":
                per_draw = np.array([float(np.asarray(c[var])) for c in constants])  # base units
                per_copy[var] = np.tile(per_draw, layout.candidates)
        initial = {name: matrices for d in draws.values() for name, matrices in d.initial.items()}
        timed = {name: d.series for name, d in draws.items() if d.series is not None}
        spikes = {}
        for name, d in draws.items():
            if d.spikes is not None:
                group = self.stimuli[name].params.group
                room = network.spike_capacity[group]
                if len(d.spikes[0]) > room:
                    raise CodesignError(f"input seed {seed} draws {len(d.spikes[0])} spikes, more than the {room} the "
                                        "network holds (mean + 10 standard deviations)", key="seed",
                                        fix="use another seed")
                spikes[group] = d.spikes
        from brian2.core.base import BrianObjectException

        try:
            out = self.simulation(network).run(network.values(per_copy, initial), timed, spikes=spikes, seed=seed)
        except (BrianObjectException, NotImplementedError) as exc:
            # The model's Brian2 text, checked when the network is prepared: an object's, or the
            # network's as a whole (two summed variables writing one variable).
            raise brian_error(self.model, exc) from None
        return self._recordings(network, out, draws, constants), self._counts(network, out, spikes)

    def _recordings(self, network: BatchedNetwork, out: Mapping[str, np.ndarray], draws: Mapping[str, StimulusDraw],
                    constants: list[dict[str, Any]]) -> list[Recordings]:
        layout = network.layout
        K, R = layout.candidates, layout.draws
        values: dict[str, np.ndarray] = {}
        counts: dict[str, np.ndarray] = {}
        series: dict[str, np.ndarray] = {}
        for name in self.records:
            record, sampled = CountRecord.parse(name), SeriesRecord.parse(name)
            if sampled is not None:
                series[name] = self._series(network, sampled, out[name])
            elif record is not None and record.per_trial:  # (K, R, cycles, n)
                binned = network.trial_counts(record.group, record.phase, out[f"{record.source}@trial_i"],
                                              out[f"{record.source}@trial_t"])
                counts[name] = (np.broadcast_to(binned, (K,) + binned.shape) if network.groups[record.group].shared
                                else binned.reshape(K, R, *binned.shape[1:]))
            elif record is not None:
                counts[name] = out[name].reshape(K, R, network.groups[record.group].n)
            else:
                owner = name.partition(".")[0]
                if owner in network.synapses:
                    values[name] = network.dense(owner, out[name]).reshape(K, R, *network.dense(owner, out[name]).shape[1:])
                else:
                    values[name] = out[name].reshape(K, R, network.groups[owner].n)
        facts = {name: d.facts for name, d in draws.items()}
        phases, seconds = self.model.phase_windows(), self.model.phase_seconds()
        present = {name: network.present(name) for name in network.synapses}
        duration = self.model.duration_s  # once: it evaluates the protocol's expressions
        return [Recordings({n: v[k] for n, v in values.items()}, {n: v[k] for n, v in counts.items()}, facts,
                           constants, duration, phases, present, seconds, {n: v[k] for n, v in series.items()})
                for k in range(K)]

    @staticmethod
    def _series(network: BatchedNetwork, record: SeriesRecord, samples: np.ndarray) -> np.ndarray:
        """A sampled variable as (K, R, samples, n), or (K, R, samples, n_post, n_pre) for a synapse's."""
        K, R = network.layout.candidates, network.layout.draws
        steps = samples.shape[-1]
        if record.owner in network.synapses:
            dense = np.stack([network.dense(record.owner, samples[:, t]) for t in range(steps)])  # (samples, copies, ...)
            return dense.reshape(steps, K, R, *dense.shape[2:]).transpose(1, 2, 0, 3, 4)
        group = network.groups[record.owner]
        per_copy = samples.reshape(-1, group.n, steps).transpose(0, 2, 1)  # (copies or draws, samples, n)
        if group.shared:
            return np.broadcast_to(per_copy, (K,) + per_copy.shape)
        return per_copy.reshape(K, R, steps, group.n)

    def _counts(self, network: BatchedNetwork, out: Mapping[str, np.ndarray],
                spikes: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> list[EventCounts]:
        """Events of each candidate's network, averaged over its draws."""
        K, R = network.layout.candidates, network.layout.draws
        steps = network.steps
        fired, side = _fired(network, out, spikes)
        synaptic = np.zeros((K, R))
        learning = np.zeros((K, R))
        rate_events = 0
        for name, s in network.synapses.items():
            out_degree = np.bincount(s.pre, minlength=s.n_pre)
            in_degree = np.bincount(s.post, minlength=s.n_post)
            pre_fired, post_fired = side(s, "pre", s.spec.source), side(s, "post", s.spec.target)
            pre_events = (pre_fired @ out_degree) if pre_fired is not None else None
            post_events = (post_fired @ in_degree) if post_fired is not None else None
            weights = set(s.spec.weights) | ({s.spec.rule.bind.get("w", "w")} if s.spec.rule else set())
            if s.on_pre and pre_events is not None:
                synaptic += pre_events
            elif not s.on_pre:  # a rate synapse: every synapse acts at every step
                synaptic += len(s.pre) * steps
                rate_events += len(s.pre) * steps
            if s.spec.plastic:
                if re.search(rf"\bd({'|'.join(weights)})/dt\b", s.model or ""):
                    learning += len(s.pre) * steps
                for text, events in ((s.on_pre, pre_events), (s.on_post, post_events)):
                    if text and events is not None and weights & set(_ASSIGNED.findall(text)):
                        learning += events
        neurons = sum(g.n for g in network.groups.values() if not g.shared and g.spec.kind == "neurons")
        n_syn = sum(len(s.pre) for s in network.synapses.values())
        plastic = sum(len(s.pre) for s in network.synapses.values() if s.spec.plastic)
        spiking = [fired[g].sum(axis=2) for g, group in network.groups.items() if g in fired and not group.shared]
        spikes_k = sum(spiking) if spiking else np.zeros((K, R))
        duration = self.model.duration_s
        shape = dict(steps=steps, samples=self.model.cycles, rate_synaptic_events=float(rate_events),
                     spiking_neurons=sum(g.n for g in network.groups.values() if not g.shared and g.threshold),
                     possible_synapses=sum(s.n_pre * s.n_post for s in network.synapses.values()),
                     **_stored_values(network))
        return [EventCounts(duration_s=duration, synaptic_events=float(synaptic[k].mean()),
                            spikes=float(np.mean(spikes_k[k])), learning_updates=float(learning[k].mean()),
                            neurons=neurons, synapses=n_syn, plastic_synapses=plastic, **shape) for k in range(K)]

    # -- plots -----------------------------------------------------------------------------------------

    def plot(self, evaluation: Evaluation, path: Path, title: str = "") -> bool:
        return self.loss.plot(evaluation, path, title)

    def plot_solutions(self, spec: Any, solutions: Sequence[tuple[Any, float, dict]], path: Path) -> bool:
        """Draw a study's good candidates, each (candidate, loss, metrics), where the loss has such a plot."""
        return self.loss.plot_solutions(spec, solutions, path)


def _fired(network: BatchedNetwork, out: Mapping[str, np.ndarray],
           spikes: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> tuple[dict[str, np.ndarray], Callable]:
    """Each group's spikes per neuron as (candidates, draws, neurons), and ``side(synapse, pathway,
    group)``: what a pathway acts on, the group's spikes or the custom event its ``on_event`` names."""
    K, R = network.layout.candidates, network.layout.draws
    fired: dict[str, np.ndarray] = {}
    routed: dict[tuple[str, str], np.ndarray] = {}  # (group, custom event) -> (K, R, n)
    for name, group in network.groups.items():
        if name in spikes:
            per_draw = np.bincount(spikes[name][0], minlength=R * group.n).reshape(R, group.n)
            fired[name] = np.broadcast_to(per_draw, (K, R, group.n))
        elif f"{name}@spikes" in out:
            fired[name] = _per_neuron(out[f"{name}@spikes"], group, K, R)
        for event in group.routed:
            routed[(name, event)] = _per_neuron(out[f"{name}@{event}"], group, K, R)

    def side(s: Any, pathway: str, group: str) -> np.ndarray | None:
        event = s.spec.on_event.get(pathway, SPIKE)
        return fired.get(group) if event == SPIKE else routed.get((group, event))

    return fired, side


def _per_neuron(counts: np.ndarray, group: Any, K: int, R: int) -> np.ndarray:
    """A group's per-neuron counts as (candidates, draws, neurons); a group shared by every candidate
    (per draw) holds one copy per draw."""
    counts = counts.reshape(-1, group.n)
    return np.broadcast_to(counts, (K, R, group.n)) if group.shared else counts.reshape(K, R, group.n)


def _stored_values(network: BatchedNetwork) -> dict[str, int]:
    """The values one candidate's network stores: a weight per synapse (a synapse with a constant
    weight still holds one on hardware), its traces, and the other state variables of its synapses
    and of its neurons (groups shared by every candidate are its inputs, not its state)."""
    weights = traces = state = 0
    for s in network.synapses.values():
        stored = _state_variables(s.model or "")
        weight_names = (set(s.spec.weights) | ({s.spec.rule.bind.get("w", "w")} if s.spec.rule else set())) & stored
        trace_names = set(s.spec.traces) & stored
        weights += len(s.pre) * max(1, len(weight_names))
        traces += len(s.pre) * len(trace_names)
        state += len(s.pre) * len(stored - weight_names - trace_names)
    for g in network.groups.values():
        if not g.shared and g.spec.kind == "neurons":
            state += g.n * len(_state_variables(g.spec.model))
    return {"weight_values": weights, "trace_values": traces, "state_values": state}


@functools.lru_cache(maxsize=256)
def _state_variables(equations: str) -> frozenset[str]:
    """Variables Brian2 stores for each neuron or synapse of ``equations``: differential equations and
    parameters, not subexpressions (computed when read)."""
    if not equations.strip():
        return frozenset()
    from brian2 import Equations

    eqs = Equations(equations)
    return frozenset(eqs.diff_eq_names | eqs.parameter_names)
