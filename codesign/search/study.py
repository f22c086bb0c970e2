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

__all__ = ["open_study", "open_study_storage", "study_population", "POPULATION_ATTR", "make_task", "count_trials",
           "reclaim_dead_trials", "retry_callback",
           "feasible", "finished_trials", "TRAIN_SEED_OFFSET", "EVAL_SEED_OFFSET",
           "STABILITY_SEED_OFFSET"]

#: Input seeds: the study trains every candidate on the same draws (common random numbers, so the
#: loss is a deterministic function of the rule) and ``codesign eval`` uses draws never trained on.
TRAIN_SEED_OFFSET = 0
EVAL_SEED_OFFSET = 1_000_003
#: The stability check's held-out seeds (:mod:`codesign.report.stability`): seed + this, + 1, ...
STABILITY_SEED_OFFSET = 2 * EVAL_SEED_OFFSET

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: The study system attribute that records the population (CMA-ES, NSGA-II) a study was created with.
POPULATION_ATTR = "codesign_population"


def open_study(spec: StudySpec, storage_url: str | None = None, worker_index: int = 0,
               storage: optuna.storages.BaseStorage | None = None, workers: int = 1) -> optuna.Study:
    """Create the study (of ``spec``'s refinement round) in its storage, or load it if it exists (a study
    run again resumes). ``storage``: one already open (a journal is read once per storage object).

    A study keeps the population it was created with (:meth:`codesign.spec.StudySpec.population` for
    ``workers`` local workers), whoever opens it later and with however many workers; a refinement
    round takes its first round's. A study created before populations were recorded has the study's
    ``batch_size`` (or ``sampler.population``).
    """
    storage = open_study_storage(spec, storage_url) if storage is None else storage
    population = _population(storage, spec, workers)
    study = optuna.create_study(study_name=spec.study_name, storage=storage,
                                sampler=sampler(spec, worker_index, population),
                                directions=["minimize"] * len(spec.objectives), load_if_exists=True)
    if population is not None and study_population(study) is None:
        storage.set_study_system_attr(study._study_id, POPULATION_ATTR, population)
    return study


def _population(storage: optuna.storages.BaseStorage, spec: StudySpec, workers: int) -> int | None:
    """The population of ``spec``'s study: recorded in it, or in its first round, or a new one's."""
    existed = False
    for name in dict.fromkeys((spec.study_name, spec.name)):  # this round's study, then the first round's
        try:
            study_id = storage.get_study_id_from_name(name)
        except KeyError:
            continue
        recorded = storage.get_study_system_attrs(study_id).get(POPULATION_ATTR)
        if recorded is not None:
            return recorded
        existed = True
    return spec.population(1 if existed else workers)  # a study older than the record: its batch_size


def study_population(study: optuna.Study) -> int | None:
    """The population a study was created with (see :func:`open_study`); None for samplers without one."""
    return study._storage.get_study_system_attrs(study._study_id).get(POPULATION_ATTR)


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
    from codesign.search.batches import states

    counts = states(study)
    return counts[TrialState.COMPLETE] + counts[TrialState.PRUNED], counts[TrialState.RUNNING]


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
