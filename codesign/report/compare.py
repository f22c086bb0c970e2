"""One candidate on several targets, side by side: loss, energy of each kind, cores, fit, what changed,
NeuroBench-style figures."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

from codesign.backends import local_backend
from codesign.errors import CodesignError
from codesign.hardware import ENERGY_KINDS, Target, cost, load_target, neurobench_figures
from codesign.hardware.adapt import adapt_to_target
from codesign.models import ModelTask
from codesign.report.evaluate import held_out_seed
from codesign.rules import Candidate
from codesign.spec import StudySpec

__all__ = ["compare_targets", "energy_groups"]


def compare_targets(spec: StudySpec, cand: Candidate, targets: Sequence[Target | str | Path],
                    seed: int | None = None) -> list[dict[str, Any]]:
    """The same candidate and model on each target (a target object or file): one row per target.

    Each target is simulated on this machine (see :func:`codesign.backends.local_backend`); a target that cannot be
    loaded or evaluated gets a row with its ``error`` and the others are still compared. Rows hold
    the loss, the energy of each kind over the model's simulated duration (``energy``, never a
    total across kinds), cores, fit, what changed, what was not emulated, why it cannot run and the
    NeuroBench-style figures at the target's precision (:mod:`codesign.hardware.neurobench`).
    """
    seed = held_out_seed(spec, seed)
    return [_compare_one(spec, cand, target, seed) for target in targets]


def _compare_one(spec: StudySpec, cand: Candidate, target: Target | str | Path, seed: int) -> dict[str, Any]:
    file = str(target) if isinstance(target, (str, Path)) else target.file
    row: dict[str, Any] = {"target": Path(file).stem if file else None, "file": file, "error": None,
                           "emulated_on": None, "loss": None, "duration_s": None, "energy": {}, "cores": None,
                           "fits": False, "changes": [], "not_emulated": [], "reasons": [], "unknown": [],
                           "metrics": {}, "neurobench": None}
    try:
        if not isinstance(target, Target):
            target = load_target(target)
        row["target"] = target.name
        _evaluate_on(spec, cand, target, seed, row)
    except CodesignError as exc:
        row["error"] = exc.one_line()
    return row


def _evaluate_on(spec: StudySpec, cand: Candidate, target: Target, seed: int, row: dict[str, Any]) -> None:
    adapted, changes, ignored, blockers = adapt_to_target(cand, target, ModelTask(spec.model, target).knobs)
    # Precision emulation is the model's, on any backend: the local one computes the same network.
    local = dataclasses.replace(target, backend=local_backend(target))
    object.__setattr__(local, "file", target.file)
    row["emulated_on"] = f"{local.backend} ({local.float_dtype})"
    if local.backend != target.backend:
        ignored.append(f"{target.backend}: simulated on {row['emulated_on']} instead")
    task = ModelTask(spec.model, local, conditions=spec.conditions.train, held_out=spec.conditions.held_out)
    evaluation = task.evaluate([adapted], seed, capacity=spec.batch_size)[0]
    row.update(loss=evaluation.loss, fits=not blockers, changes=changes, not_emulated=ignored,
               reasons=list(blockers), metrics=evaluation.metrics)
    c = cost(target, evaluation.counts)
    row.update(duration_s=c.duration_s, energy=c.energy_j, cores=c.cores, fits=c.fits and not blockers,
               unknown=list(c.unknown))
    row["reasons"] += list(c.reasons)
    row["neurobench"] = neurobench_figures(target, evaluation.counts)
    if not c.energy_j:
        row["unknown"].append("no energy model for this target")


def energy_groups(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The rows that have an energy of each kind, by kind: only energies of one kind may be ranked."""
    groups: dict[str, list[dict[str, Any]]] = {kind: [] for kind in ENERGY_KINDS}
    for row in rows:
        for kind in row["energy"]:
            groups[kind].append(row)
    return {kind: members for kind, members in groups.items() if members}
