"""``codesign check``: a model or study file validated without running, and the batched network it builds.

The file is loaded as ``codesign run`` would load it (a study: its constants, draws, conditions,
batch size and target; a model alone: one candidate on ``hw_targets/cpu.yaml``), its batched network
is written, and its Brian2 objects are constructed on the numpy runtime device and prepared by Brian2
(every identifier resolved, every unit checked, code generated) for a run of zero time steps: nothing
is simulated and nothing is compiled. Bad Brian2 text is one line naming the file, the group or
synapse, and Brian2's own message.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from codesign.models.network import BatchedNetwork, brian_error, owner_key
from codesign.models.task import ModelTask
from codesign.schema import Where, read_yaml

__all__ = ["check_file", "check_model", "check_study", "prepare", "describe", "render"]


def check_file(path: str | Path, target: str | Path | None = None) -> dict[str, Any]:
    """Check a model file (``groups:``) or a study file (``model:``); return what it builds, as JSON-friendly data.

    ``target`` replaces the study's target file (``--target``), or the default one of a model alone.
    """
    data = read_yaml(path, "model or study file")
    if isinstance(data, dict) and "groups" in data:
        from codesign.hardware import load_target
        from codesign.hardware.target import bundled_target
        from codesign.models.spec import load_model

        return check_model(ModelTask(load_model(path), load_target(target or bundled_target("cpu"))))
    if isinstance(data, dict) and "model" in data:
        from codesign.spec import load_study

        return check_study(load_study(path, None if target is None else str(target)))
    raise Where(str(path)).error("is neither a model file (it has no groups:) nor a study file (no model:)",
                                 fix="give a file of models/ or studies/")


def check_model(task: ModelTask) -> dict[str, Any]:
    """The network of one candidate of ``task``'s model holding every term of each slot's family (the
    largest text a study can ask for), checked."""
    from codesign.rules import FAMILIES

    etas = {slot: FAMILIES[family].default_eta for slot, family in task.slots.items()}
    terms = {slot: task.model.slot_terms(slot) for slot in task.slots}
    return _check(task, etas, terms, 1, None)


def check_study(spec: Any) -> dict[str, Any]:
    """The network a worker of the study builds (its searched terms, batch size, draws and conditions), checked."""
    from codesign.search.space import searched_terms
    from codesign.search.study import make_task

    task = make_task(spec)
    return _check(task, spec.etas, task.held_terms([], searched_terms(spec)), spec.batch_size, spec)


def _check(task: ModelTask, etas: dict[str, float], terms: dict[str, tuple[str, ...]], size: int,
           study: Any) -> dict[str, Any]:
    task.named_candidates(etas)  # each a rule its slot's family can make
    network = task.network(terms, size, len(task.conditions))
    build, prepared = prepare(network, task.target)
    return describe(task, network, build, prepared, study)


def prepare(network: BatchedNetwork, target: Any) -> tuple[Any, list[str]]:
    """Construct ``network``'s Brian2 objects on the numpy runtime (with ``target``'s float type) and let
    Brian2 prepare them: the :class:`~codesign.backends.NetworkBuild` and the names of the objects Brian2
    prepared (groups and what runs them), or one line naming the group or synapse at fault."""
    import brian2

    from codesign.backends import configure_runtime

    configure_runtime(dataclasses.replace(target, codegen="numpy"))
    build = network.construct()()
    net = brian2.Network(*build.objects)
    try:
        # A run of zero steps is Brian2's public way to prepare a network (Network.before_run
        # needs state that run() sets first): every object's code is generated, every identifier
        # resolved and every unit checked, and no time step is simulated.
        net.run(0 * brian2.second, namespace=dict(build.timed_arrays))
    except (brian2.core.base.BrianObjectException, NotImplementedError, ValueError) as exc:
        # An object's text, or the network's as a whole: two summed variables writing one variable
        # (NotImplementedError), two objects of one name (ValueError).
        raise brian_error(network.model, exc) from None
    _check_variables(network, build)
    return build, [obj.name for obj in net.sorted_objects]


def _check_variables(network: BatchedNetwork, build: Any) -> None:
    """Every variable a run sets or reads exists (a loss recording ``neuron.vv`` would fail after the run)."""
    for name, (obj, variable) in {**build.settable, **build.readable}.items():
        if variable not in obj.variables:
            where = network.model.where.child("loss") if name in build.readable else owner_key(network.model, obj.name)
            known = sorted(v for v in obj.variables if not v.startswith("_"))
            raise where.error(f"{name!r}: {obj.name} has no variable {variable!r}",
                              fix=f"variables of {obj.name}: {', '.join(known)}")


# -- what it builds ---------------------------------------------------------------------------------------


def describe(task: ModelTask, network: BatchedNetwork, build: Any, prepared: list[str],
             study: Any = None) -> dict[str, Any]:
    """The batched network as data: layout, groups, synapses, per-copy variables, stimuli, loss, cache key,
    and what a run sets versus what is compiled once."""
    model, layout = network.model, network.layout
    out: dict[str, Any] = {"file": model.file, "model": model.name}
    if study is not None:
        out["study"] = {"name": study.name, "file": study.file, "batch_size": study.batch_size,
                        "searched": {slot: list(rule.searched) for slot, rule in study.rules.items()},
                        "knobs": list(study.hardware.knobs)}
    out["target"] = {"name": task.target.name, "backend": task.target.backend, "codegen": task.target.codegen,
                     "float_dtype": task.target.float_dtype, "emulation": network.emulation is not None}
    out["layout"] = {"candidates": layout.candidates, "draws": model.draws, "conditions": len(task.conditions),
                     "copies": layout.copies}
    out["time"] = {"dt_s": model.dt_s, "duration_s": model.duration_s, "steps": network.steps,
                   "protocol": [{"name": p.name, "duration_s": end - start,
                                 "plastic": p.plastic if p.plastic is not None else "all",
                                 "values": {k: str(v) for k, v in p.values.items()}}
                                for p in model.protocol for start, end in [model.phase_window(p.name)]],
                   "repeat": model.repeat, "trials": [{k: str(v) for k, v in t.items()} for t in model.trials]}
    out["groups"] = [_group(network, g) for g in network.groups.values()]
    out["synapses"] = [_synapse(network, s) for s in network.synapses.values()]
    hosts: dict[str, list[str]] = {}
    for group in network.groups.values():
        for var in group.hosted:
            hosts.setdefault(var, []).append(group.name)
    out["per_copy"] = [{"name": name, "unit": unit, "varies": "per " + varies, "on": hosts.get(name, [])}
                       for name, (unit, varies) in network.per_copy.items()]
    out["stimuli"] = [{"name": name, "kind": model.stimuli[name].kind,
                       "feeds": (f"TimedArray {name}(t, i), {stim.columns(model)} columns per draw"
                                 if stim.feeds == "timed" else f"spikes of group {stim.params.group}"),
                       "initial": list(getattr(stim.params, "initial", None) or {})}
                      for name, stim in task.stimuli.items()]
    out["loss"] = {"kind": model.loss.kind, "records": list(network.records)}
    out["key"] = network.key()
    out["compiled_once"] = _compiled_once(network)
    out["per_run"] = {"values": sorted(build.settable), "series": sorted(build.timed_arrays),
                      "spikes": {name: network.spike_capacity.get(name) for name in build.spike_inputs},
                      "seed": "rand() seeded per run" if build.draws_random else "no random numbers in the code"}
    out["brian2"] = {"prepared": prepared, "device": "runtime, numpy code generation, zero time steps"}
    return out


def _compiled_once(network: BatchedNetwork) -> list[str]:
    """What shapes the generated code, in words (the key hashes it)."""
    layout, model = network.layout, network.model
    constants = ", ".join(f"{k} = {v}" for k, v in _used_constants(network).items())
    per_phase = [f"learning of {n}" for n in network.gates] + [f"constant {n}" for n in network.phase_values]
    return ["equations, thresholds, resets and pathways as batched above",
            f"sizes and connections of {layout.candidates} candidate(s) x {layout.draws} draw(s)",
            "rule terms held: " + "; ".join(f"{slot}: {', '.join(terms)}" for slot, terms in network.terms.items()),
            f"dt {model.dt_s * 1e3:g} ms, {network.steps:,} steps",
            f"constants the text uses: {constants or 'none'}",
            "initial values: " + (", ".join(_initial_values(network)) or "none"),
            "per phase (TimedArrays): " + (", ".join(per_phase) or "nothing")]


def _used_constants(network: BatchedNetwork) -> dict[str, Any]:
    from brian2.utils.stringtools import get_identifiers

    texts = [t for g in network.groups.values() for t in (g.model, g.threshold, g.reset, *g.events.values())]
    texts += [t for s in network.synapses.values() for t in (s.model, s.on_pre, s.on_post)]
    used = set().union(*(get_identifiers(t) for t in texts if t))
    return {k: v for k, v in network.namespace().items() if k in used}


def _initial_values(network: BatchedNetwork) -> list[str]:
    model = network.model
    entries = [(n, g.initial) for n, g in model.groups.items()] + [(n, s.initial) for n, s in model.synapses.items()]
    return [f"{owner}.{var} = {value}" for owner, initial in entries for var, value in initial.items()]


def _group(network: BatchedNetwork, group: Any) -> dict[str, Any]:
    return {"name": group.name, "kind": group.spec.kind, "per": "draw (shared)" if group.shared else "candidate",
            "size": group.n, "batched": group.size, "equations": group.model, "threshold": group.threshold,
            "reset": group.reset, "refractory": None if group.refractory is None else str(group.refractory),
            "method": group.spec.method, "rates": group.spec.rates, "events": dict(group.events),
            "per_copy": list(group.hosted),
            "spike_capacity": network.spike_capacity.get(group.name)}


def _synapse(network: BatchedNetwork, s: Any) -> dict[str, Any]:
    rule = s.spec.rule
    pathways = [p for p in ("pre", "post") if getattr(s, f"on_{p}")]
    pathways += [f"{p} on {e}" for p, e in s.spec.on_event.items()]
    return {"name": s.name, "source": s.spec.source, "target": s.spec.target, "size": len(s.pre),
            "batched": len(s.pre) * s.copies, "copies": s.copies, "pathways": pathways, "method": s.spec.method,
            "plastic": None if rule is None else {"slot": rule.slot, "family": rule.family,
                                                   "terms": list(network.terms[rule.slot]),
                                                   "gated": s.name in network.gates},
            "weights": {k: v for k, v in s.spec.weights.items()}, "traces": list(s.spec.traces),
            "model": s.model, "on_pre": s.on_pre, "on_post": s.on_post}


# -- as text ------------------------------------------------------------------------------------------------


def render(report: dict[str, Any]) -> list[str]:
    """``codesign check``'s lines for people (``--json`` prints ``report`` itself)."""
    lines = _heading(report) + ["", "groups:"]
    for g in report["groups"]:
        lines += _group_lines(g)
    lines += ["", "synapses:"]
    for s in report["synapses"]:
        lines += _synapse_lines(s)
    lines += ["", "per-copy variables (set per run):"]
    lines += [f"  {v['name']} : {v['unit']}, {v['varies']}, on {', '.join(v['on']) or '-'}" for v in report["per_copy"]]
    if not report["per_copy"]:
        lines.append("  none")
    lines += ["", "stimuli:"] + [f"  {s['name']}: {s['kind']}, {s['feeds']}"
                                 + (f"; initial {', '.join(s['initial'])}" if s["initial"] else "")
                                 for s in report["stimuli"]]
    if not report["stimuli"]:
        lines.append("  none")
    return lines + _compilation_lines(report)


def _heading(report: dict[str, Any]) -> list[str]:
    """What is checked on which target: the title, the batch and its time steps, the protocol."""
    target, layout, time = report["target"], report["layout"], report["time"]
    title = f"model {report['model']} ({report['file']})"
    if "study" in report:
        study = report["study"]
        title = f"study {study['name']} ({study['file']}): " + title
    return [f"{title} on target {target['name']} ({target['backend']}, {target['codegen']}, {target['float_dtype']})",
            f"batch: {_count(layout['candidates'], 'candidate')} x {_count(layout['draws'], 'draw')} x "
            f"{_count(layout['conditions'], 'condition')} = {_count(layout['copies'], 'copy', 'copies')}; "
            f"dt {time['dt_s'] * 1e3:g} ms, {time['duration_s']:g} s = {time['steps']:,} steps",
            "protocol: " + "; ".join(_phase(p) for p in time["protocol"])
            + (f"; {len(time['trials'])} trials in turn" if time["trials"] else "")
            + (f"; {time['repeat']} times" if time["repeat"] > 1 else "")]


def _group_lines(g: dict[str, Any]) -> list[str]:
    facts = [f"{g['kind']}", f"{g['size']:,} per copy, {g['batched']:,} batched",
             "a copy per draw, shared by every candidate" if g["per"].startswith("draw")
             else "a copy per candidate and draw"]
    facts += [f"{key} {g[key]}" for key in ("rates", "threshold", "refractory", "method") if g[key]]
    facts += [f"event {name}: {condition}" for name, condition in g["events"].items()]
    if g["spike_capacity"]:
        facts.append(f"room for {g['spike_capacity']:,} input spikes per run")
    return [f"  {g['name']}: " + "; ".join(facts)] + _block("equations", g["equations"]) + _block("reset", g["reset"])


def _synapse_lines(s: dict[str, Any]) -> list[str]:
    facts = [f"{s['source']} -> {s['target']}", f"{s['size']:,} per copy, {s['batched']:,} batched",
             "pathways " + (", ".join(s["pathways"]) or "none (clock-driven)")]
    if s["method"]:
        facts.append(f"method {s['method']}")
    if s["plastic"]:
        rule = s["plastic"]
        facts.append(f"plastic: slot {rule['slot']}, family {rule['family']}, terms {', '.join(rule['terms'])}"
                     + (", learning gated by phase" if rule["gated"] else ""))
    if s["weights"]:
        facts.append("weights " + ", ".join(f"{w} in [{', '.join(map(str, bounds))}]" if bounds is not None
                                            else f"{w} unbounded"
                                            for w, bounds in s["weights"].items()))
    if s["traces"]:
        facts.append("traces " + ", ".join(s["traces"]))
    lines = [f"  {s['name']}: " + "; ".join(facts)]
    for key in ("model", "on_pre", "on_post"):
        lines += _block(key, s[key])
    return lines


def _compilation_lines(report: dict[str, Any]) -> list[str]:
    """The loss, the cache key, what is compiled once and what each run sets, and Brian2's verdict."""
    lines = ["", f"loss: {report['loss']['kind']}, recording {', '.join(report['loss']['records']) or 'nothing'}",
             f"cache key: {report['key']}", "compiled once:"]
    lines += [f"  {item}" for item in report["compiled_once"]]
    run = report["per_run"]
    lines += ["set per run:", f"  values: {', '.join(run['values']) or 'none'}",
              f"  input series: {', '.join(run['series']) or 'none'}",
              "  input spikes: " + (", ".join(f"{g} (up to {n:,})" for g, n in run["spikes"].items()) or "none"),
              f"  seed: {run['seed']}", "",
              f"Brian2 prepared {len(report['brian2']['prepared'])} objects ({report['brian2']['device']}): "
              "identifiers and units check"]
    return lines


def _phase(phase: dict[str, Any]) -> str:
    text = f"{phase['name']} {phase['duration_s']:g} s"
    if phase["plastic"] != "all":
        text += f", plastic: {', '.join(phase['plastic']) or 'none'}"
    return text + "".join(f", {k} = {v}" for k, v in phase["values"].items())


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def _block(label: str, text: str | None) -> list[str]:
    if not text:
        return []
    body = text.splitlines()
    return [f"    {label}: {body[0]}"] + [f"    {' ' * len(label)}  {line}" for line in body[1:]]
