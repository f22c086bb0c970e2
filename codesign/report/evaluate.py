"""Candidates of a study run again on draws it never trained on, and on its held-out conditions."""

from __future__ import annotations

from typing import Any, Sequence

import optuna

from codesign.backends.standalone import remove_own_results
from codesign.models import Evaluation
from codesign.processes import in_processes
from codesign.rules import Candidate
from codesign.search.space import candidate, knob_values, network_terms
from codesign.search.study import EVAL_SEED_OFFSET, feasible, finished_trials, make_task
from codesign.spec import StudySpec
from codesign.report.summary import pareto_front

__all__ = ["held_out_seed", "evaluate_candidates", "evaluate_trials", "evaluate_candidate", "evaluate_seeds", "evaluate_front",
           "precision_sweep"]


def held_out_seed(spec: StudySpec, seed: int | None) -> int:
    """``seed``, or by default the input seed of draws the study never trained on."""
    return spec.seed + EVAL_SEED_OFFSET if seed is None else seed


def _evaluate(spec: StudySpec, cands: list[Candidate], seed: int, knobs: list[dict] | None,
              conditions: list[dict] | None = None, workers: int = 1) -> list[Evaluation]:
    if not cands:
        return []
    task = make_task(spec)
    held = network_terms(spec)
    terms = {slot: held[slot] + tuple(t for c in cands for t in c[slot].coefficients if t not in held[slot])
             for slot in cands[0]}
    # A network of as many candidates as asked, up to the study's batch: padding one candidate to the
    # study's batch would reuse its build (seconds, cached once built) but simulate the copies every time
    # (for the XOR model, 3 of 4 of each evaluation's minutes).
    size = min(spec.batch_size, len(cands))

    def batch(chunk: slice) -> list[Evaluation]:
        return task.evaluate(cands[chunk], seed, terms=terms, capacity=size, knobs=knobs[chunk] if knobs else None,
                             conditions=conditions, by_condition=conditions is not None)

    chunks = [slice(start, start + size) for start in range(0, len(cands), size)]
    return [e for evaluations in in_processes(batch, chunks, workers, at_exit=remove_own_results) for e in evaluations]


def evaluate_candidates(spec: StudySpec, cands: Sequence[Candidate], seed: int | None = None,
                        knobs: Sequence[dict[str, Any] | None] | None = None) -> tuple[list[Evaluation], int]:
    """Candidates on the study's model, a batch at a time, each with its hardware knobs (None: the
    target's precision), with held-out input seeds by default.

    Their losses and metrics are on the training conditions; where the study holds conditions out,
    metric ``conditions`` lists each held-out condition's values, loss and metrics (same seed)."""
    seed = held_out_seed(spec, seed)
    knobs = [k or {} for k in knobs] if knobs and any(knobs) else None
    evaluations = _evaluate(spec, list(cands), seed, knobs)
    if spec.conditions.held_out:
        held = _evaluate(spec, list(cands), seed, knobs, conditions=spec.conditions.held_out)
        for evaluation, on_held_out in zip(evaluations, held):
            evaluation.metrics["conditions"] = on_held_out.metrics["conditions"]
    return evaluations, seed


def evaluate_candidate(spec: StudySpec, cand: Candidate, seed: int | None = None,
                       knobs: dict[str, Any] | None = None) -> tuple[Evaluation, int]:
    """One candidate: see :func:`evaluate_candidates`."""
    evaluations, seed = evaluate_candidates(spec, [cand], seed, [knobs])
    return evaluations[0], seed


def evaluate_seeds(spec: StudySpec, cand: Candidate, seeds: Sequence[int | None], knobs: dict[str, Any] | None = None,
                   workers: int = 1) -> list[tuple[Evaluation, int]]:
    """One candidate on each input seed (see :func:`evaluate_candidate`), up to ``workers`` seeds at once,
    each in a process of its own."""
    return in_processes(lambda seed: evaluate_candidate(spec, cand, seed, knobs), list(seeds), workers,
                        at_exit=remove_own_results)


def evaluate_trials(spec: StudySpec, trials: Sequence[optuna.trial.FrozenTrial], seed: int) -> list[Evaluation]:
    """Trials' candidates, with their hardware knobs, on input seed ``seed`` (the training conditions)."""
    knobs = [knob_values(spec, t.params) for t in trials]
    return _evaluate(spec, [candidate(spec, t.params) for t in trials], seed, knobs if spec.hardware.knobs else None)


def evaluate_front(spec: StudySpec, study: optuna.Study, seed: int | None = None) -> list[dict[str, Any]]:
    """Every Pareto-optimal trial again, with its knobs, on held-out inputs: is the trade-off real?"""
    seed = held_out_seed(spec, seed)
    front = pareto_front(spec, study)
    knobs = [knob_values(spec, t.params) for t in front]
    evaluations = _evaluate(spec, [candidate(spec, t.params) for t in front], seed,
                            knobs if spec.hardware.knobs else None)
    return [{"trial": t.number, **dict(zip(spec.objectives, t.values)), "knobs": k,
             "held_out_loss": e.loss, "held_out_diverged": e.diverged}
            for t, k, e in zip(front, knobs, evaluations)]


def precision_sweep(spec: StudySpec, study: optuna.Study, seed: int | None = None, workers: int = 1) -> list[dict[str, Any]]:
    """At every weight width (and rounding mode) the study tried: its best trial there, run again on
    held-out inputs, and how many trials the sampler spent there.

    What each bit costs, with the rule re-tuned for each width (a rule found for 3-bit weights is
    not the best rule for 8 bits, so one rule swept over widths would not say it), and without the
    selection bias of the study's own losses (the best of many noisy losses is optimistic).
    """
    if spec.hardware.weight_bits is None:
        return []
    seed = held_out_seed(spec, seed)
    default_rounding = spec.target.precision.rounding
    groups: dict[tuple[str, int], list[optuna.trial.FrozenTrial]] = {}
    for t in finished_trials(study):
        if feasible(t):
            key = (t.params.get("hw.rounding", default_rounding), int(t.params["hw.weight_bits"]))
            groups.setdefault(key, []).append(t)
    best = {key: min(trials, key=lambda t: t.values[0]) for key, trials in sorted(groups.items())}
    trials = list(best.values())
    knobs = [knob_values(spec, t.params) for t in trials]
    evaluations = _evaluate(spec, [candidate(spec, t.params) for t in trials], seed, knobs, workers=workers)
    return [{"rounding": rounding, "weight_bits": bits, "trial": t.number, "n_trials": len(groups[rounding, bits]),
             "study_loss": t.values[0], "held_out_loss": e.loss, "diverged": e.diverged}
            for ((rounding, bits), t), e in zip(best.items(), evaluations)]
