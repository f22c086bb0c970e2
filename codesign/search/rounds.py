"""Successive refinement: a study searched in rounds, each on the terms that survived the last.

Round 0 is the study as written. With ``sparsity: {refine: {rounds: R, threshold: T}}``, round K + 1
searches only the family terms of round K's best trial whose size |theta| / max |theta| is at least T
(the others are fixed at zero, in the network round 0 built: no round compiles again), and tries that trial first (its survivors; so a round's best is never
worse than the last round's best with the dropped terms set to zero). Each round is
its own Optuna study in the study's storage (``NAME``, ``NAME/refine-1``, ...), so workers, resuming
and dead workers work as in any study: every worker runs the rounds in turn, and since a round ends
only when all its trials are finished, every worker derives the same next round from the storage.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import optuna
from optuna.trial import FrozenTrial

from codesign.errors import CodesignError
from codesign.search.space import distributions, network_terms
from codesign.search.sparsity import survivors
from codesign.search.study import feasible, finished_trials, open_study, open_study_storage
from codesign.spec import StudySpec

__all__ = ["Round", "round_count", "rounds_to_run", "existing_rounds", "final_round", "best_finished"]


@dataclasses.dataclass
class Round:
    """One round that has started: its spec and study, and what it dropped from the round before."""

    spec: StudySpec
    study: optuna.Study
    #: Parameters dropped after the round before, with their size |theta| / max |theta| there.
    dropped: dict[str, float] = dataclasses.field(default_factory=dict)
    #: The trial of the round before that this round starts from.
    from_trial: int | None = None


def round_count(spec: StudySpec) -> int:
    """1, plus the refinement rounds."""
    refine = spec.sparsity.refine if spec.sparsity is not None else None
    return 1 + (refine.rounds if refine is not None else 0)


def best_finished(spec: StudySpec, study: optuna.Study) -> FrozenTrial | None:
    """The finished, feasible trial with the lowest first objective (the penalised loss); None if there is none."""
    trials = [t for t in finished_trials(study) if feasible(t)]
    return min(trials, key=lambda t: (t.values[0], t.number)) if trials else None


def refined(spec: StudySpec, trial: FrozenTrial) -> tuple[StudySpec, dict[str, float]]:
    """The round after ``spec``'s, on the terms of ``trial`` that survive, and the parameters dropped."""
    refine = spec.sparsity.refine
    kept, dropped = survivors(spec, trial.params, refine.threshold)
    rules = {slot: dataclasses.replace(rule, terms=list(kept[slot])) if slot in kept else rule
             for slot, rule in spec.rules.items()}
    sparsity = dataclasses.replace(spec.sparsity, l1=0.0) if refine.relax else spec.sparsity
    following = dataclasses.replace(spec, rules=rules, round=spec.round + 1, start=None, sparsity=sparsity,
                                    n_trials=refine.n_trials or spec.n_trials, network_terms=network_terms(spec))
    start = {name: trial.params[name] for name in distributions(following) if name in trial.params}
    return dataclasses.replace(following, start=start), dropped


def _with_target(spec: StudySpec, n_trials: int | None) -> StudySpec:
    return spec if n_trials is None else dataclasses.replace(spec, n_trials=n_trials)


def rounds_to_run(spec: StudySpec, storage_url: str | None = None, n_trials: int | None = None) -> Iterator[StudySpec]:
    """Each round's spec in turn; the next one is read from the storage once the caller has run the last
    to its ``n_trials`` (``n_trials``, when given, replaces every round's)."""
    storage = open_study_storage(spec, storage_url)
    current = _with_target(spec, n_trials)
    for k in range(round_count(spec)):
        yield current
        if k + 1 == round_count(spec):
            return
        trial = best_finished(current, open_study(current, storage=storage))
        if trial is None:
            raise CodesignError(f"round {k} ({current.study_name}) has no finished trial to refine: every trial "
                                "diverged", file=spec.file, key="sparsity.refine",
                                fix="narrow rule.bounds or lower rule.eta, and rename the study")
        current = _with_target(refined(current, trial)[0], n_trials)


def existing_rounds(spec: StudySpec, storage_url: str | None = None) -> list[Round]:
    """The rounds that have started in the storage: round 0, and each next one whose study exists."""
    storage = open_study_storage(spec, storage_url)
    names = set(optuna.study.get_all_study_names(storage))
    rounds = [Round(spec, open_study(spec, storage=storage))]
    while len(rounds) < round_count(spec):
        last = rounds[-1]
        trial = best_finished(last.spec, last.study)
        if trial is None:
            break
        following, dropped = refined(last.spec, trial)
        if following.study_name not in names:
            break
        rounds.append(Round(following, open_study(following, storage=storage), dropped, trial.number))
    return rounds


def final_round(spec: StudySpec, storage_url: str | None = None,
                rounds: list[Round] | None = None) -> tuple[StudySpec, optuna.Study]:
    """The spec and study of the last round with a finished trial (round 0 if none has one): what ``codesign
    best``, ``eval`` and the report show. ``rounds``: :func:`existing_rounds`, if read already."""
    rounds = rounds or existing_rounds(spec, storage_url)
    last = next((r for r in reversed(rounds) if finished_trials(r.study)), rounds[0])
    return last.spec, last.study
