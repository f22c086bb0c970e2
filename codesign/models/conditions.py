"""Conditions: model constants a study varies over its input draws (``conditions:``).

One batched network is built for all of a study's conditions, so a condition may only change what
the network reads per draw: a constant of its equations (it becomes a per-draw variable of the network)
or of a stimulus's per-draw expressions (a Poisson rate). Everything else is read once, with the
model's own constants, when the network is built or the loss is made: sizes, connections, initial
values, delays, weight ranges, durations, dt, the loss's and the stimuli's parameters. A condition
that changes one of those would be run with the model's value and reported as if it had not been:
:func:`check_conditions` refuses it.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

from codesign.errors import CodesignError
from codesign.models.spec import ModelSpec, constant_names
from codesign.schema import Where, build

__all__ = ["changed_constants", "check_conditions"]


def changed_constants(model: ModelSpec, condition: Mapping[str, Any], where: Where) -> set[str]:
    """Constants whose value under ``condition`` differs from the model's, those computed from the
    ones it sets included (an unknown name is an error at ``where``)."""
    if not condition:
        return set()
    constants = model.with_constants(dict(condition), where).constants
    # repr: quantities of different units compare without raising, and arrays as one value
    return {name for name, value in constants.items() if repr(value) != repr(model.constants[name])}


def _read_once(model: ModelSpec) -> Iterator[tuple[str, Any]]:
    """(key, value) of every value the network reads once, with the model's constants."""
    for name, group in model.groups.items():
        yield f"groups.{name}.size", group.size
        yield f"groups.{name}.refractory", group.refractory
        yield from ((f"groups.{name}.initial.{var}", v) for var, v in group.initial.items())
    for name, synapse in model.synapses.items():
        for key in ("connect", "p", "delay"):
            yield f"synapses.{name}.{key}", getattr(synapse, key)
        yield from ((f"synapses.{name}.initial.{var}", v) for var, v in synapse.initial.items())
        yield from ((f"synapses.{name}.weights.{var}", v) for var, v in synapse.weights.items())
    yield "dt", model.dt
    yield "draws", model.raw_draws
    for index, phase in enumerate(model.protocol):
        yield f"protocol[{index}].duration", phase.duration


def _names(value: Any) -> set[str]:
    if isinstance(value, (list, tuple)):
        return set().union(*(_names(v) for v in value))
    return constant_names(value) if isinstance(value, str) else set()


def _resolved_parameters(model: ModelSpec) -> dict[str, Any]:
    """The loss's and the stimuli's parameters, evaluated with ``model``'s constants (and the stimuli's
    per-draw expressions with them, for their errors)."""
    from codesign.models.losses import make_loss, resolve_values
    from codesign.models.stimuli import stimulus_kind

    out: dict[str, Any] = {"loss": make_loss(model).params}
    for name, stim in model.stimuli.items():
        where = model.where.child("stimuli").child(name)
        cls = stimulus_kind(stim.kind, file=model.file, key=where.key + ".kind")
        params = build(cls.Params, resolve_values(stim.params, model, where, cls.Params), where)
        cls(name, params, where).expected_spikes([model.constants], model)
        out[f"stimuli.{name}"] = params
    return out


def _under(condition: Mapping[str, Any], model: ModelSpec, where: Where) -> dict[str, Any]:
    """:func:`_resolved_parameters` under ``condition``; an error is the condition's (at ``where``)."""
    try:
        return _resolved_parameters(model.with_constants(dict(condition), where))
    except CodesignError as exc:
        raise where.error(f"{model.file}: {exc.key}: {exc.message}", fix=exc.fix) from None


def check_conditions(model: ModelSpec, train: Sequence[Mapping[str, Any]], held_out: Sequence[Mapping[str, Any]],
                     where: Where) -> None:
    """Every condition (``where``: the ``conditions`` key) names constants of ``model``, the same ones,
    and changes only what the network reads per draw."""
    named = [(where.child(part).child(i), c) for part, items in (("train", train), ("held_out", held_out))
             for i, c in enumerate(items)]
    read_once = [(key, _names(value)) for key, value in _read_once(model)]
    parameters = None
    for here, condition in named:
        changed = changed_constants(model, condition, here)
        if not changed:
            continue
        for key, names in read_once:
            if names & changed:
                raise _read_once_error(here, model, sorted(names & changed), key)
        if parameters is None:
            parameters = _resolved_parameters(model)
        varied = _under(condition, model, here)
        for key, value in parameters.items():
            if varied[key] != value:
                raise _read_once_error(here, model, sorted(changed), key)
    if len({frozenset(c) for _, c in named}) > 1:
        raise where.error("conditions set different constants", fix="give every condition the same constants")


def _read_once_error(where: Where, model: ModelSpec, names: list[str], key: str) -> Exception:
    return where.error(f"changes {', '.join(names)}, which {model.file} reads once for every draw ({key})",
                       fix="vary constants of the equations or of the stimuli's rates; set the others in constants:")
