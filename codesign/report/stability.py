"""The stability check before a study reports its best rule (``stability:`` in the study file).

A study trains every candidate on the same draws, so a rule can fit them and still diverge on draws
it never saw (a large eigenvalue, an unlucky start). Its best few trials are run again on input seeds
of their own (neither trained on nor ``codesign eval``'s default), the study's draws each; a trial that
diverges on any (the loss's own flag, or a loss that is not finite) is rejected, and
:func:`codesign.report.best_trial` passes it over (:func:`codesign.report.summary.rejected_trials`). The outcome is kept in the study's storage (study
attribute ``stability``), so ``codesign best`` and ``eval`` see it without simulating again.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import optuna
from optuna.trial import FrozenTrial

from codesign.report.evaluate import evaluate_trials
from codesign.search.study import STABILITY_SEED_OFFSET, feasible, finished_trials
from codesign.spec import StudySpec

__all__ = ["check_stability", "MAX_CHUNKS"]

#: Chunks of ``top`` trials checked at most while none passes.
MAX_CHUNKS = 3


def check_stability(spec: StudySpec, study: optuna.Study) -> dict[str, Any] | None:
    """Check the study's best trials as ``spec.stability`` says and store the outcome; None without ``stability:``.

    Returns ``seeds``, ``checked`` (trial numbers, best first), ``rejected`` (trial number -> reason) and
    ``passed`` (the best trial that diverged on no seed, or None if every one checked did).
    """
    if spec.stability is None:
        return None
    top = spec.stability.top
    seeds = [spec.seed + STABILITY_SEED_OFFSET + i for i in range(spec.stability.seeds)]
    ranked = sorted((t for t in finished_trials(study) if feasible(t)), key=lambda t: (t.values[0], t.number))
    record: dict[str, Any] = {"seeds": seeds, "checked": [], "rejected": {}, "passed": None}
    for start in range(0, min(len(ranked), MAX_CHUNKS * top), top):
        chunk = ranked[start:start + top]
        reasons = _divergences(spec, chunk, seeds)
        record["checked"] += [t.number for t in chunk]
        record["rejected"].update({str(number): reason for number, reason in reasons.items()})
        record["passed"] = next((t.number for t in chunk if t.number not in reasons), None)
        if record["passed"] is not None:
            break
    study.set_user_attr("stability", record)
    return record


def _divergences(spec: StudySpec, trials: Sequence[FrozenTrial], seeds: Sequence[int]) -> dict[int, str]:
    """Trial number -> why it diverged (the first seed it did on), for the trials that did."""
    reasons: dict[int, str] = {}
    for seed in seeds:
        for trial, evaluation in zip(trials, evaluate_trials(spec, trials, seed)):
            if trial.number not in reasons and (evaluation.diverged or not math.isfinite(evaluation.loss)):
                why = evaluation.metrics.get("diverged_reason", "loss is not finite")
                reasons[trial.number] = f"diverged on seed {seed}: {why}"
    return reasons
