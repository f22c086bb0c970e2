"""Hardware number formats emulated in any model's Brian2 text.

A synapse declares its weight variables (with their range on the chip) and its traces. Where a
target stores weights or traces in few bits (or a study searches the widths), each event-driven
statement that writes them is rewritten:

- a weight assignment ``w = E`` (or ``w += E``...) becomes ``w = clip(GRID(E), low, high)``: on a grid
  of ``(high - low) / (2**weight_bits - 1)``, rounded to nearest or stochastically (up with
  probability equal to the remainder, as Loihi's learning engine does); a ``clip(E, low, high)`` the
  text already has is folded into it;
- a trace statement ``x += 1`` becomes ``x = clip(GRID(x + 1), 0, trace_max)``, on the grid of
  :func:`codesign.hardware.target.trace_grid` (an impulse is one spike), saturating; traces a
  pathway reads without writing are rounded after the ones it writes (between events the decay is
  exact: the emulation rounds a register whenever a spike reads or writes it, not at every time
  step as the chip does).

Grid steps, trace bounds and the rounding mode are per-candidate variables, so a study that
searches the widths runs every candidate's format in one network; a step of 0 means floats.
Weights that change by differential equations (rate rules) are not emulated: a target or study
that asks for their precision is refused.
"""

from __future__ import annotations

import ast
import re
from typing import Any, Mapping, Sequence

import numpy as np

from codesign.hardware.target import Target, trace_grid
from codesign.rules import FAMILIES

__all__ = ["Emulation", "KNOBS"]

#: The hardware knobs a study may search (``hardware:``), applied by the emulation.
KNOBS = ("weight_bits", "trace_bits", "rounding")

#: A float trace never saturates (a finite bound: generated C++ reads it as a number).
_FLOAT_TRACE_MAX = 1e30

_STATEMENT = re.compile(r"^\s*([A-Za-z_]\w*)\s*(=|\+=|-=|\*=|/=)\s*(.+?)\s*$")


def _on_grid(value: str, step: str) -> str:
    """``value`` on a grid of ``step`` (to nearest, or stochastically), or exactly ``value`` where ``step`` is 0."""
    grid = (f"{step} * floor(({value}) / ({step} + int({step} == 0)) "
            f"+ stochastic * rand() + (1 - stochastic) * 0.5)")
    return f"int({step} > 0) * {grid} + int({step} == 0) * ({value})"


def _unclipped(expression: str) -> str:
    """``E`` where ``expression`` is ``clip(E, low, high)``, else ``expression``."""
    try:
        tree = ast.parse(expression, mode="eval").body
    except SyntaxError:
        return expression
    if isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id == "clip" and len(tree.args) == 3:
        return ast.unparse(tree.args[0])
    return expression


def _rule_updates(synapse: Any) -> str | None:
    """How the family of ``synapse``'s rule changes its weight (:attr:`~codesign.rules.Family.weight_updates`)."""
    return None if synapse.rule is None else FAMILIES[synapse.rule.family].weight_updates


class Emulation:
    """The number formats of ``target`` (or of the searched knobs) applied to a model's synapses."""

    draws_random = True

    def __init__(self, model: Any, target: Target) -> None:
        self.model, self.target = model, target

    @staticmethod
    def emulates(model: Any) -> tuple[str, ...]:
        """The knobs the emulation can apply to ``model``: weight bits where a synapse has a bounded weight
        and event-driven pathways, trace bits where one has traces; rounding with either."""
        event_driven = [s for s in model.synapses.values()
                        if s.on_pre or s.on_post or _rule_updates(s) == "spikes"]
        knobs = []
        if any(b is not None for s in event_driven for b in s.weights.values()):
            knobs.append("weight_bits")
        if any(s.traces for s in event_driven):
            knobs.append("trace_bits")
        return tuple(knobs) + (("rounding",) if knobs else ())

    @staticmethod
    def needed(model: Any, target: Target, searched: Sequence[str]) -> bool:
        """Whether ``model`` on ``target``, searching these knobs, runs any number format other than floats."""
        p = target.precision
        asks = bool(searched) or p.weight_bits is not None or p.trace_bits is not None
        return asks and bool(Emulation.emulates(model))

    def weight_variables(self) -> dict[str, tuple[str, str, Any, Any]]:
        """Per-candidate step variable -> (synapse, weight, low, high) for every bounded weight."""
        out = {}
        for name, synapse in self.model.synapses.items():
            where = self.model.where.child("synapses").child(name).child("weights")
            for weight, bounds in synapse.weights.items():
                if bounds is None:
                    continue
                if not (isinstance(bounds, list) and len(bounds) == 2):
                    raise where.child(weight).error(f"expected [low, high] or null, got {bounds!r}",
                                                    fix="write the weight's range on the chip, e.g. [0, w_max]")
                low, high = (float(self.model.value(b, where.child(weight).child(k))) for k, b in enumerate(bounds))
                if not low < high:
                    raise where.child(weight).error(f"range is empty: [{low:g}, {high:g}]", fix="write [low, high]")
                out[f"{name}_{weight}_step"] = (name, weight, low, high)
        return out

    def variables(self) -> dict[str, str]:
        names = {var: "1" for var in self.weight_variables()}
        names.update(trace_step="1", trace_max="1", stochastic="1")
        return names

    def pathway(self, text: str | None, synapse: Any, name: str, where: Any) -> str | None:
        """The event-driven statements ``text`` of ``synapse`` with its weights and traces on their grids."""
        if not text or not (synapse.weights or synapse.traces):
            return text
        self._refuse_clock_driven(synapse, where)
        bounded = {w: key for key, (syn, w, _, _) in self.weight_variables().items() if syn == name}
        ranges = {w: (low, high) for key, (syn, w, low, high) in self.weight_variables().items() if syn == name}
        lines, written, last_trace, first_weight = [], set(), None, None
        for line in text.split("\n"):
            match = _STATEMENT.match(line)
            if not match or match.group(1) not in set(bounded) | set(synapse.traces):
                lines.append(line)
                continue
            target, op, rhs = match.groups()
            value = rhs if op == "=" else f"{target} {op[0]} ({rhs})"
            if target in synapse.traces:
                lines.append(f"{target} = clip({_on_grid(value, 'trace_step')}, 0, trace_max)")
                written.add(target)
                last_trace = len(lines)
            else:
                low, high = ranges[target]
                lines.append(f"{target} = clip({_on_grid(_unclipped(value), bounded[target])}, {low!r}, {high!r})")
                first_weight = len(lines) - 1 if first_weight is None else first_weight
        read = [f"{t} = clip({_on_grid(t, 'trace_step')}, 0, trace_max)" for t in synapse.traces if t not in written]
        at = last_trace if last_trace is not None else (first_weight if first_weight is not None else len(lines))
        return "\n".join(lines[:at] + read + lines[at:])

    def _refuse_clock_driven(self, synapse: Any, where: Any) -> None:
        for weight in synapse.weights:
            if re.search(rf"\bd{weight}\s*/\s*dt\b", synapse.model or "") or _rule_updates(synapse) == "continuously":
                raise where.child("weights").error(
                    f"{weight} changes by a differential equation; the hardware emulation rounds event-driven "
                    "updates only", fix="run this model on a floating-point target (hw_targets/cpu.yaml) and search no bits")

    def values(self, knobs: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """Each candidate's values of :meth:`variables`, from its knobs or else the target's precision."""
        p = self.target.precision

        def knob(name: str) -> list[Any]:
            return [k.get(name, getattr(p, name)) for k in knobs]

        out: dict[str, np.ndarray] = {}
        for var, (_, _, low, high) in self.weight_variables().items():
            out[var] = np.array([0.0 if b is None else (high - low) / (2 ** int(b) - 1) for b in knob("weight_bits")])
        grids = [trace_grid(None if b is None else int(b)) for b in knob("trace_bits")]
        out["trace_step"] = np.array([step for step, _ in grids])
        out["trace_max"] = np.array([min(top, _FLOAT_TRACE_MAX) for _, top in grids])
        out["stochastic"] = np.array([float(r == "stochastic") for r in knob("rounding")])
        return out
