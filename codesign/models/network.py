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
import re
from typing import Any, Mapping, Sequence

import numpy as np

from codesign.backends import NetworkBuild, network_clock, spike_input
from codesign.errors import CodesignError
from codesign.models.emulation import Emulation
from codesign.models.spec import GroupSpec, ModelSpec, SynapseSpec
from codesign.rules import FAMILIES

__all__ = ["BatchedNetwork", "Layout"]


@dataclasses.dataclass(frozen=True)
class Layout:
    """K candidates x R draws."""

    candidates: int
    draws: int

    @property
    def copies(self) -> int:
        return self.candidates * self.draws


def _words(text: str | None) -> set[str]:
    if not text:
        return set()
    from brian2.utils.stringtools import get_identifiers

    return set(get_identifiers(text))


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
    counters: list[str]  # count_PHASE variables


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
                for name, unit in family.variables(synapse.rule.slot, self.terms[synapse.rule.slot]).items():
                    self.per_copy[name] = (unit, "candidate")
        if emulation is not None:
            self.per_copy.update({name: (unit, "candidate") for name, unit in emulation.variables().items()})
        for name in varying:
            self.per_copy[name] = (_unit_of(model.constants[name]), "draw")
        self.gates = self._gates()
        self.synapses = {name: self._synapse(name, spec) for name, spec in model.synapses.items()}
        self.groups = {name: self._group(name, spec) for name, spec in model.groups.items()}
        self._check_records()

    # -- description -------------------------------------------------------------------------------

    def _size(self, group: str) -> int:
        return self.model.integer(self.model.groups[group].size, self.model.where.child("groups").child(group).child("size"))

    def _group(self, name: str, spec: GroupSpec) -> _Group:
        where = self.model.where.child("groups").child(name)
        n = self._size(name)
        shared = spec.per == "draw"
        size = n * (self.layout.draws if shared else self.layout.copies)
        counters = sorted({r.partition("@")[2] for r in self.records if r.partition("@")[0] == name and "@" in r})
        threshold = spec.threshold
        reset = spec.reset
        if counters or threshold:
            if not threshold:
                raise where.child("threshold").error("spike counts are recorded but the group has no threshold",
                                                     fix="give the group a threshold, or record another group")
            lines = [f"count_{phase} += {self._window(phase)}" for phase in counters]
            reset = _join(reset, *lines, "spike_count += 1")
        hosted = {}
        texts = [spec.model, threshold, reset, *spec.events.values()]
        used = set().union(*(_words(t) for t in texts))
        for var, (unit, varies) in self.per_copy.items():
            if var in used:
                hosted[var] = unit
                if shared and varies == "candidate":
                    raise where.child("per").error(f"group {name} is shared by every candidate (per: draw) but "
                                                   f"its text uses {var}, which differs between candidates",
                                                   fix="make the group per: candidate")
        for synapse in self.synapses.values():
            if synapse.spec.target == name:
                for var in _words(synapse.on_pre) | _words(synapse.on_post) | _words(synapse.model):
                    if var.endswith("_post") and var[:-5] in self.per_copy:
                        hosted[var[:-5]] = self.per_copy[var[:-5]][0]
        declared = [f"{var} : {unit} (constant)" for var, unit in hosted.items()]
        declared += [f"count_{phase} : 1" for phase in counters]
        if threshold:
            declared.append("spike_count : 1")
        local = {"i": f"(i % {n})", "N": str(n)}
        model_text = _join(spec.model, *declared) or ""
        if spec.kind == "spikes":
            model_text = ""
        texts_out = [self._stimulus_calls(_substitute(t, local), n, shared) for t in (model_text, threshold, reset)]
        events = {e: self._stimulus_calls(_substitute(c, local), n, shared) for e, c in spec.events.items()}
        refractory = None
        if spec.refractory is not None:
            refractory = self._quantity_or_text(spec.refractory, where.child("refractory"))
        return _Group(name, spec, n, shared, size, texts_out[0] or "", texts_out[1], texts_out[2], refractory, events,
                      hosted, counters)

    def _gates(self) -> dict[str, np.ndarray]:
        """Per plastic synapse that some phase leaves out (``plastic: [...]``), 1 at the time steps where
        it learns and 0 elsewhere: a TimedArray ``plastic_SYNAPSE`` multiplies its rule's eta."""
        plastic = [n for n, s in self.model.synapses.items() if s.rule is not None]
        gates: dict[str, np.ndarray] = {}
        start = 0
        for index, phase in enumerate(self.model.protocol):
            length = self.model.seconds(phase.duration, self.model.where.child("protocol").child(index))
            steps = slice(int(round(start / self.model.dt_s)), int(round((start + length) / self.model.dt_s)))
            start += length
            if phase.plastic is None:
                continue
            for i, name in enumerate(phase.plastic):
                if name not in plastic:
                    raise self.model.where.child("protocol").child(index).child("plastic").child(i).error(
                        f"{name!r} is not a synapse with a rule", fix=f"plastic synapses: {', '.join(plastic) or 'none'}")
            for name in plastic:
                if name not in phase.plastic:
                    gates.setdefault(name, np.ones(self.steps))[steps] = 0.0
        return gates

    def _window(self, phase: str) -> str:
        start, end = self.model.phase_window(phase)
        last = abs(end - self.model.duration_s) < 1e-12
        start_text = f"t >= {start!r}*second"
        return f"int({start_text})" if last else f"int({start_text} and t < {end!r}*second)"

    def _stimulus_calls(self, text: str | None, n: int, shared: bool, index: str = "i") -> str | None:
        """``NAME(t, ARG)`` of a stimulus read at the columns of the copy's draw."""
        if not text:
            return text
        draw = f"({index} // {n})" if shared else f"(({index} // {n}) % {self.layout.draws})"
        for stimulus, columns in self.timed_columns.items():
            text = re.sub(rf"\b{stimulus}\(\s*t\s*,", f"{stimulus}(t, {draw} * {columns} +", text)
        return text

    def _quantity_or_text(self, value: Any, key: Any) -> Any:
        from codesign.models.expressions import ExpressionError, evaluate

        try:
            return evaluate(value, self.model.constants)
        except ExpressionError:
            return value  # a Brian2 condition such as "v > v_th"

    def _synapse(self, name: str, spec: SynapseSpec) -> _Synapse:
        where = self.model.where.child("synapses").child(name)
        n_pre, n_post = self._size(spec.source), self._size(spec.target)
        source, target = self.model.groups[spec.source], self.model.groups[spec.target]
        if target.per == "draw" and source.per == "candidate":
            raise where.child("target").error(f"{spec.source} (per candidate) cannot project to {spec.target} "
                                              "(shared by every candidate, per: draw)",
                                              fix=f"make {spec.target} per: candidate")
        pre, post = self._pattern(name, spec, n_pre, n_post)
        model, on_pre, on_post = spec.model or None, spec.on_pre, spec.on_post
        if spec.rule is not None:
            text = FAMILIES[spec.rule.family].template(spec.rule.slot, spec.rule.bind, self.terms[spec.rule.slot])
            if name in self.gates:  # learning only in the phases that list this synapse
                gated = {f"eta_{spec.rule.slot}": f"(eta_{spec.rule.slot} * plastic_{name}(t))"}
                text = {k: _substitute(v, gated) for k, v in text.items()}
            model = _join(model, text.get("model"))
            on_pre, on_post = _join(on_pre, text.get("on_pre")), _join(on_post, text.get("on_post"))
        if self.emulation is not None:
            on_pre = self.emulation.pathway(on_pre, spec, name, where)
            on_post = self.emulation.pathway(on_post, spec, name, where)
        rename = {var: f"{var}_post" for var in self.per_copy
                  if var in _words(model) | _words(on_pre) | _words(on_post)}
        if rename and target.per == "draw":
            raise where.error(f"uses {', '.join(rename)}, which differ per copy, but its target {spec.target} is "
                              "shared by every candidate", fix=f"make {spec.target} per: candidate")
        local = {"i": f"(i % {n_pre})", "j": f"(j % {n_post})", "N": str(len(pre))}
        model, on_pre, on_post = (_substitute(_substitute(t, rename), local) for t in (model, on_pre, on_post))
        copies = self.layout.draws if target.per == "draw" else self.layout.copies
        return _Synapse(name, spec, n_pre, n_post, pre, post, copies, model, on_pre, on_post)

    def _pattern(self, name: str, spec: SynapseSpec, n_pre: int, n_post: int) -> tuple[np.ndarray, np.ndarray]:
        """The synapses of one copy: (pre, post) indices, ordered by post then pre."""
        from codesign.models.expressions import ExpressionError, evaluate

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

    def _check_records(self) -> None:
        for name in self.records:
            owner, sep, var = name.partition("@") if "@" in name else name.partition(".")
            if owner not in self.groups and owner not in self.synapses:
                raise self.model.where.child("loss").error(f"records {name!r}: no group or synapse {owner!r}",
                                                           fix="name one of the model's groups or synapses")

    # -- identity ------------------------------------------------------------------------------------

    def key(self) -> str:
        """Everything that shapes the generated code: texts, sizes, connections, per-copy variables."""
        digest = hashlib.sha256()
        for group in self.groups.values():
            digest.update(repr((group.name, group.spec.kind, group.size, group.model, group.threshold, group.reset,
                                repr(group.refractory), sorted(group.events.items()), group.spec.method,
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
            gates = {f"plastic_{name}": b2.TimedArray(values, dt=dt, name=f"plastic_{name}")
                     for name, values in self.gates.items()}
            namespace = {**self.namespace(), **timed, **gates}
            objects: dict[str, Any] = {}
            spike_inputs = {}
            for group in self.groups.values():
                objects[group.name] = self._make_group(b2, group, clock, namespace)
                if group.spec.kind == "spikes":
                    spike_inputs[group.name] = objects[group.name]
            for s in self.synapses.values():
                objects[s.name] = self._make_synapses(b2, s, objects, clock, namespace)
            settable: dict[str, tuple[Any, str]] = {}
            for group in self.groups.values():
                for var in group.hosted:
                    settable[f"{group.name}:{var}"] = (objects[group.name], var)
            for s in self.synapses.values():
                for var in set(self.initialised_synapse_vars(s.name)):
                    settable[f"{s.name}.{var}"] = (objects[s.name], var)
            readable = {}
            for name in self.records:
                owner, _, var = name.partition("@") if "@" in name else name.partition(".")
                readable[name] = (objects[owner], f"count_{var}" if "@" in name else var)
            for group in self.groups.values():
                if group.spec.threshold:
                    readable[f"{group.name}@spikes"] = (objects[group.name], "spike_count")
            draws_random = self.emulation is not None and self.emulation.draws_random or any(
                "rand" in _words(t) or "randn" in _words(t)
                for t in [g.model for g in self.groups.values()] + [g.reset for g in self.groups.values()]
                + [s.on_pre for s in self.synapses.values()] + [s.on_post for s in self.synapses.values()]
                + [s.model for s in self.synapses.values()])
            return NetworkBuild(objects=list(objects.values()), duration=self.steps * dt, settable=settable,
                                readable=readable, timed_arrays=timed, spike_inputs=spike_inputs,
                                draws_random=draws_random)

        return construct

    def _make_group(self, b2: Any, group: _Group, clock: Any, namespace: dict[str, Any]) -> Any:
        where = self.model.where.child("groups").child(group.name)
        if group.spec.kind == "spikes":
            capacity = self.spike_capacity.get(group.name)
            if capacity is None:
                raise where.child("kind").error("no stimulus feeds this group of spike inputs",
                                                fix="add a stimulus of kind poisson with group: " + group.name)
            return spike_input(group.size, capacity, clock, group.name)
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
            kwargs["events"] = group.events
        try:
            made = b2.NeuronGroup(group.size, group.model, clock=clock, namespace=namespace, name=group.name, **kwargs)
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

    from codesign.models.expressions import evaluate

    return Quantity(values, dim=evaluate(unit, _unit_names()).dim)


@functools.lru_cache(maxsize=1)
def _unit_names() -> dict[str, Any]:
    """Brian2's units by the names ``repr`` gives them (``volt``, ``hertz``), as :func:`_unit_of` writes them."""
    from brian2.units.allunits import all_units

    return {repr(unit): unit for unit in all_units}


def _brian_error(where: Any, exc: Exception) -> CodesignError:
    message = " ".join(str(exc).split())
    return where.error(f"Brian2: {message[:400]}", fix="correct the Brian2 text of this entry")
