"""``codesign port``: does the rule a study found, in the network it found it in, still work on Loihi 2?

The study's own model runs four ways on the same input draw, and the model's own loss scores each:

* ``brian2``: the model as the study ran it (its own neurons and time step, floats);
* ``brian2_variant``: the same with the groups' ``loihi2:`` variants (only where a group has one);
* ``brian2_chip_order``: the network as the chip runs it (``loihi2:`` variants, the chip's time step,
  Loihi's order of events within a step), still in Brian2 and floats, with the rule unquantised;
* ``lava_float``: the same in Lava's floating point, with the compiled rule (quantised scales, trace
  decays in whole steps);
* ``lava_fixed``: Lava's fixed point (integer weights, traces and neuron state, stochastic rounding).

Each run undoes fewer of the port's changes than the one before, so the losses say what each costs.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Mapping

from codesign.errors import CodesignError
from codesign.hardware.target import Target, bundled_target, load_target

__all__ = ["port", "prepare", "Prepared", "load_loihi2_target", "DEFAULT_TARGET", "RUNS"]

DEFAULT_TARGET = bundled_target("loihi2")

#: The runs of a port, in the order they undo its changes (``brian2_variant`` only where a group has a variant).
RUNS = ("brian2", "brian2_variant", "brian2_chip_order", "lava_float", "lava_fixed")


def load_loihi2_target(path: str | Path) -> Target:
    """A target file with the ``loihi2:`` section a port needs, and a time step."""
    target = load_target(path)
    if target.engine("loihi2") is None:
        raise CodesignError("has no loihi2: section, so rules cannot be compiled for Loihi 2", file=str(path),
                            key="loihi2", fix="port to hw_targets/loihi2.yaml, or copy its loihi2: section")
    if target.time_step_ms is None:
        raise CodesignError("a Loihi 2 target needs a time step", file=str(path), key="time_step_ms",
                            fix="add time_step_ms: 1.0")
    return target


@dataclasses.dataclass
class Prepared:
    """What a port runs: the study's model with one draw, its task (the loss), the terms its network holds,
    the chip's network, and the target."""

    task: Any
    terms: dict[str, tuple[str, ...]]
    net: Any
    target: Target


def prepare(spec: Any, candidate: Mapping[str, Any], seed: int = 0, target: Target | str | Path | None = None, *,
            allow_drop: bool = False) -> Prepared:
    """Map the study's model with ``candidate`` for Loihi 2, running nothing: a one-line
    :class:`CodesignError` for what the chip cannot run (a group, a term, a register)."""
    from codesign.hardware.loihi2.chip import chip_network
    from codesign.models.task import ModelTask
    from codesign.search.space import searched_terms

    if not isinstance(target, Target):
        target = load_loihi2_target(DEFAULT_TARGET if target is None else target)
    model = spec.model.with_constants({}, spec.model.where, draws=1)  # one draw: Lava runs one network
    task = ModelTask(model, _float_target(spec.target))
    terms = task.held_terms([candidate], searched_terms(spec))
    net = chip_network(model, candidate, terms, task.inputs(seed), target.engine("loihi2"), target.time_step_ms,
                       allow_drop=allow_drop)
    return Prepared(task, terms, net, target)


def port(spec: Any, candidate: Mapping[str, Any], seed: int = 0, target: Target | str | Path | None = None, *,
         allow_drop: bool = False) -> dict[str, Any]:
    """Port ``candidate`` (slot -> rule) of the study ``spec`` to Loihi 2 and run it four ways (:data:`RUNS`).

    Returns, per run, ``loss``, the loss's metrics and ``seconds`` (or ``refused``, why it could not
    run, or ``failed``, the fault that stopped it); ``text``: per plastic synapse, the Brian2 text
    compiled (the model file's with its family's, as the study searched it); ``rule``: per plastic
    synapse, the Loihi products, traces and quantisation; ``changes``: every way the chip's network
    differs from the study's, one line each; ``network``: the port's settings.
    """
    from codesign.hardware.loihi2.chip_order import run_chip_order
    from codesign.models.task import ModelTask

    prepared = prepare(spec, candidate, seed, target, allow_drop=allow_drop)
    task, net = prepared.task, prepared.net
    lava = _start_lava(net, seed)  # the slowest runs first; Brian2 runs meanwhile
    try:
        results = {"brian2": _evaluate(task, candidate, seed, prepared.terms)}
        variants = {name: g.loihi2.apply(g) for name, g in task.model.groups.items() if g.loihi2 is not None}
        if variants:
            model = dataclasses.replace(task.model, groups={**task.model.groups, **variants})
            results["brian2_variant"] = _evaluate(ModelTask(model, task.target), candidate, seed, prepared.terms)
        runs = {"brian2_chip_order": run_chip_order(net)}
    except BaseException:
        for process, _ in lava.values():  # no Lava run outlives the port
            process.terminate()
        raise
    runs.update(_finish_lava(lava))
    for key, run in runs.items():
        if isinstance(run, CodesignError):  # e.g. a group without a fixed-point model: reported, the others stand
            results[key] = {"refused": run.message}
        elif isinstance(run, Exception):  # a fault (a Lava run that died): reported, the others stand
            results[key] = {"failed": str(run)}
        else:
            results[key] = _summary(task.loss(run.recordings(net, task.records)), run.seconds)
    plastic = {name: s for name, s in net.synapses.items() if s.plastic}
    return {**results,
            "text": {name: dict(zip(("model", "on_pre", "on_post"), s.text)) for name, s in plastic.items()},
            "rule": {name: s.rule.report() for name, s in plastic.items()},
            "changes": net.changes,
            "network": {"model": task.model.file, "seed": seed, "dt_ms": net.dt_ms, "steps": net.steps,
                        "target": prepared.target.file, "allow_drop": allow_drop,
                        "vth": {name: g.neuron.floating_pt["vth"] for name, g in net.groups.items()}}}


def _start_lava(net: Any, seed: int) -> dict[str, tuple[Any, Any]]:
    """Lava's floating and fixed point, each started in a process of its own: a Lava run is mostly
    messages between its processes at every step, which keeps about 1.4 of 2 cores busy, so two runs at
    once finish sooner than one after the other. Lava itself forks its processes, so these fork too."""
    import multiprocessing

    # lava sets the start method when first imported, which fails in a child that did not import it.
    import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401

    context = multiprocessing.get_context("fork")
    started = {}
    for key, fixed_pt in (("lava_float", False), ("lava_fixed", True)):
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_lava_child, args=(send, net, fixed_pt, seed), name=f"codesign-{key}")
        process.start()
        send.close()
        started[key] = (process, receive)
    return started


def _lava_child(send: Any, net: Any, fixed_pt: bool, seed: int) -> None:
    from codesign.hardware.loihi2.lava_run import run_lava

    try:
        send.send(run_lava(net, fixed_pt=fixed_pt, rng_seed=seed))
    except CodesignError as exc:
        send.send(exc)
    except Exception as exc:  # a fault, not a refusal: the parent reports it
        send.send(RuntimeError(f"{type(exc).__name__}: {exc}"))


def _finish_lava(started: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    out = {}
    for key, (process, receive) in started.items():
        try:
            out[key] = receive.recv()
        except EOFError:
            out[key] = RuntimeError(f"the {key} run died (exit code {process.exitcode})")
        process.join()
    return out


def _float_target(target: Target) -> Target:
    """The study's backend (or its local stand-in) running floats: the study's network, nothing emulated."""
    from codesign.backends import BACKENDS

    backend = BACKENDS[target.backend].local or target.backend
    return Target(name=f"{target.name}-float", backend=backend, codegen=target.codegen)


def _evaluate(task: Any, candidate: Mapping[str, Any], seed: int, terms: Any) -> dict[str, Any]:
    """The study's own simulation of ``candidate`` on ``task``, scored by its loss."""
    start = time.perf_counter()
    evaluation = task.evaluate([candidate], seed, terms=terms)[0]
    return _summary(evaluation, time.perf_counter() - start)


def _summary(evaluation: Any, seconds: float) -> dict[str, Any]:
    return {"loss": evaluation.loss, "diverged": evaluation.diverged, **evaluation.metrics, "seconds": seconds}

