"""A candidate as a target can run it: terms its learning engine lacks dropped, its number formats listed."""

from __future__ import annotations

import dataclasses
from typing import Any, Collection, Mapping

from codesign.hardware.target import Target
from codesign.rules import FAMILIES

__all__ = ["adapt_to_target"]


def adapt_to_target(cand: Mapping[str, Any], target: Target,
                    emulated: Collection[str] = ()) -> tuple[dict, list[str], list[str], list[str]]:
    """The candidate as ``target`` can run it: (candidate, what changed, what was not emulated, why it cannot run).

    Terms the learning engine cannot run are dropped (set to zero). Of the target's number formats,
    only the knobs in ``emulated`` (the model's ``knobs``) are applied by its emulation; the
    others are listed as not emulated, so that a report never claims what the simulation ignored.
    """
    learning = target.learning
    changes, blockers = [], []
    adapted = {}
    for slot, rule in cand.items():
        family = FAMILIES[rule.to_dict()["family"]]
        if family.free_text:  # its params are values of its text, not terms an engine could drop
            if learning.engine != "any":
                blockers.append(f"{slot}: a free-text rule is not a program of a fixed learning engine")
            adapted[slot] = rule
            continue
        allowed = family.terms if learning.terms == "all" else tuple(learning.terms)
        if learning.engine == "none":
            allowed = ()
        elif learning.engine != "any" and learning.engine not in family.engines:
            blockers.append(f"{slot}: a {family.name} rule is not a program of the {learning.engine} learning engine")
        dropped = [t for t, v in rule.coefficients.items() if v != 0.0 and t not in allowed]
        if dropped:
            changes.append(f"{slot}: dropped {', '.join(dropped)}" +
                           (" (no on-chip learning)" if learning.engine == "none" else " (not supported)"))
            kept = {t: v for t, v in rule.coefficients.items() if t in allowed}
            rule = dataclasses.replace(rule, coefficients=kept)
        adapted[slot] = rule
    applied, ignored = _precision_emulation(target, emulated)
    if target.time_step_ms is not None:
        ignored.append(f"the {target.time_step_ms:g} ms time step (simulated at the model's own)")
    return adapted, changes + applied, ignored, blockers


def _precision_emulation(target: Target, emulated: Collection[str]) -> tuple[list[str], list[str]]:
    """What the simulation does of the target's number formats, and what it leaves out."""
    precision = target.precision
    rounding = f", {precision.rounding} rounding" if precision.rounding != "none" else ""
    applied, ignored = [], []
    for knob, what in (("weight_bits", "weights quantised to {} bits"), ("trace_bits", "traces in {}-bit registers")):
        bits = getattr(precision, knob)
        if bits is not None:
            (applied if knob in emulated else ignored).append(what.format(bits) + rounding)
    if ignored:
        ignored[-1] += " (the model's emulation applies " + (", ".join(emulated) or "no number format") + ")"
    return applied, ignored
