"""A study on its storage: opening it, the task its trials run, and reading its trials back.

Workers that die or hang lose nothing: see :mod:`codesign.search.liveness`.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from codesign.models import ModelTask
from codesign.search import liveness
from codesign.search.samplers import sampler
from codesign.search.storage import RetryCallback, open_storage
from codesign.spec import StudySpec

__all__ = ["open_study", "open_study_storage", "make_task", "count_trials", "reclaim_dead_trials", "retry_callback",
           "best_value", "feasible", "finished_trials", "TRAIN_SEED_OFFSET", "EVAL_SEED_OFFSET",
           "STABILITY_SEED_OFFSET"]

#: Input seeds: the study trains every candidate on the same draws (common random numbers, so the
#: loss is a deterministic function of the rule) and ``codesign eval`` uses draws never trained on.
TRAIN_SEED_OFFSET = 0
EVAL_SEED_OFFSET = 1_000_003
#: The stability check's held-out seeds (:mod:`codesign.report.stability`): seed + this, + 1, ...
STABILITY_SEED_OFFSET = 2 * EVAL_SEED_OFFSET

optuna.logging.set_verbosity(optuna.logging.WARNING)


def open_study(spec: StudySpec, storage_url: str | None = None, worker_index: int = 0,
               storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """Create the study (of ``spec``'s refinement round) in its storage, or load it if it exists (a study
    run again resumes). ``storage``: one already open (a journal is read once per storage object)."""
    storage = open_study_storage(spec, storage_url) if storage is None else storage
    return optuna.create_study(study_name=spec.study_name, storage=storage, sampler=sampler(spec, worker_index),
                               directions=["minimize"] * len(spec.objectives), load_if_exists=True)


def open_study_storage(spec: StudySpec, storage_url: str | None = None) -> optuna.storages.BaseStorage:
    """The study's storage (see :meth:`codesign.spec.StudySpec.storage_source`), opened."""
    url, file, key = spec.storage_source(storage_url)
    return open_storage(url, spec.heartbeat_s, spec.retries, file=file, key=key)


def make_task(spec: StudySpec) -> ModelTask:
    """The study's model on its target, with its searched knobs and conditions."""
    return ModelTask(spec.model, spec.target, searched_knobs=spec.hardware.knobs, conditions=spec.conditions.train,
                     held_out=spec.conditions.held_out)


def count_trials(study: optuna.Study) -> tuple[int, int]:
    """(finished, running): finished trials count towards ``n_trials``; failed ones do not."""
    from codesign.search.batches import live

    trials = live(study, (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return len(trials) - running, running


def retry_callback(spec: StudySpec) -> RetryCallback:
    """How a dead worker's trials are retried: at most ``spec.retries`` times each."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryCallback(max_retry=spec.retries)


def reclaim_dead_trials(study: optuna.Study, spec: StudySpec) -> int:
    """Fail the RUNNING trials of workers that died and queue them again (see :mod:`codesign.search.liveness`).

    A worker killed mid-batch cannot say so; its trials would stay RUNNING for ever and block the
    study from reaching ``n_trials``. Returns how many trials were reclaimed.
    """
    return liveness.reclaim_dead_trials(study, 2 * spec.heartbeat_s, retry_callback(spec))


def feasible(trial: FrozenTrial) -> bool:
    """Whether a trial's candidate fits its target (every Optuna constraint at or below zero)."""
    return all(value <= 0.0 for value in trial.constraints.values())


def finished_trials(study: optuna.Study) -> Sequence[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def best_value(study: optuna.Study) -> float | None:
    """The best loss so far (the first objective, over feasible trials in a multi-objective study)."""
    losses = [t.values[0] for t in finished_trials(study) if feasible(t)]
    return min(losses) if losses else None
