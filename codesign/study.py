"""Optuna glue: storages, samplers, the batched ask/evaluate/tell loop and local workers.

One worker evaluates ``batch_size`` trials at a time in one network (``Task.evaluate``). Several
workers share one storage; each process builds its own network once and reuses it for every batch.
"""

from __future__ import annotations

import bisect
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from codesign.rules import PolynomialRule
from codesign.spec import StudySpec
from codesign.tasks import Evaluation, Task, task_class

__all__ = [
    "open_study",
    "make_task",
    "candidate_rule",
    "run_worker",
    "run_study",
    "count_trials",
    "reclaim_dead_trials",
    "TRAIN_SEED_OFFSET",
    "EVAL_SEED_OFFSET",
]

#: Input seeds: the study trains every candidate on the same draws (common random numbers, so the
#: loss is a deterministic function of the rule) and ``codesign eval`` uses draws never trained on.
TRAIN_SEED_OFFSET = 0
EVAL_SEED_OFFSET = 1_000_003

_WORKER_ATTR = "codesign_worker"

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _storage(url: str) -> optuna.storages.BaseStorage | str:
    if url.startswith("journal:"):
        path = Path(url[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(path))
        return optuna.storages.JournalStorage(backend)
    return url


def distributions(spec: StudySpec) -> dict[str, FloatDistribution]:
    low, high = spec.rule.bounds
    return {term: FloatDistribution(low, high) for term in spec.rule.searched}


def _sampler(spec: StudySpec, worker_index: int) -> optuna.samplers.BaseSampler:
    # Each worker needs its own seed, or two workers sampling the same state would propose the
    # same candidates.
    seed = spec.seed + 7919 * worker_index
    if spec.sampler.name == "cmaes":
        return optuna.samplers.CmaEsSampler(popsize=spec.batch_size, seed=seed, warn_independent_sampling=False)
    if spec.sampler.name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    return optuna.samplers.RandomSampler(seed=seed)


def open_study(spec: StudySpec, storage_url: str | None = None, worker_index: int = 0) -> optuna.Study:
    """Create the study in its storage, or load it if it exists (a study run again resumes)."""
    return optuna.create_study(study_name=spec.name, storage=_storage(spec.storage_url(storage_url)),
                               sampler=_sampler(spec, worker_index), direction="minimize", load_if_exists=True)


def make_task(spec: StudySpec) -> Task:
    return task_class(spec.task.kind)(spec.task.params, spec.target)


def candidate_rule(spec: StudySpec, params: dict[str, float], name: str | None = None) -> PolynomialRule:
    return PolynomialRule({t: params[t] for t in spec.rule.searched if t in params}, eta=spec.rule.eta, name=name)


def count_trials(study: optuna.Study) -> tuple[int, int]:
    """(finished, running): finished trials count towards ``n_trials``; failed ones do not."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return len(trials) - running, running


def _this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reclaim_dead_trials(study: optuna.Study) -> int:
    """Fail the RUNNING trials of dead worker processes on this host and queue their parameters again.

    A worker killed mid-batch cannot say so; its trials would stay RUNNING for ever and block the
    study from reaching ``n_trials``. Returns how many trials were reclaimed.
    """
    host = socket.gethostname()
    reclaimed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.system_attrs.get(_WORKER_ATTR, "")
        owner_host, _, pid = owner.rpartition(":")
        if owner_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        reclaimed += 1
    return reclaimed


def _within_target(study: optuna.Study, trials: list[optuna.Trial], target: int) -> list[optuna.Trial]:
    """Keep the asked trials that fit within ``target``; fail the rest as surplus.

    Workers count and then ask, so two of them can ask for the same last places. Trial numbers are
    handed out atomically by the storage, so the earlier trials that are not failed decide: a trial
    with ``target`` of them before it is surplus. This keeps the finished count exact.
    """
    numbers = sorted(t.number for t in study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)))
    kept = []
    for trial in trials:
        if bisect.bisect_left(numbers, trial.number) < target:
            kept.append(trial)
        else:
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=TrialState.FAIL)
    return kept


def _tell(study: optuna.Study, trial: optuna.Trial, evaluation: Evaluation) -> None:
    trial.set_user_attr("metrics", evaluation.metrics)
    if evaluation.diverged:
        trial.set_user_attr("diverged", True)
    study.tell(trial, evaluation.loss)


def run_worker(spec: StudySpec, storage_url: str | None = None, n_trials: int | None = None,
               worker_index: int = 0, on_batch: Callable[[optuna.Study], None] | None = None) -> int:
    """Ask, evaluate and tell batches until the study has ``n_trials`` finished trials.

    Returns the number of trials this worker finished. Trials of a batch that raises are marked
    failed before the error propagates, so no trial is left RUNNING by a live worker.
    """
    target = n_trials or spec.n_trials
    study = open_study(spec, storage_url, worker_index)
    task = make_task(spec)
    space = distributions(spec)
    seed = spec.seed + TRAIN_SEED_OFFSET
    done_here = 0
    while True:
        finished, running = count_trials(study)
        size = min(spec.batch_size, target - finished - running)
        if size <= 0:
            return done_here
        trials = _within_target(study, [study.ask(space) for _ in range(size)], target)
        if not trials:
            continue
        try:
            for trial in trials:
                study._storage.set_trial_system_attr(trial._trial_id, _WORKER_ATTR, _this_worker())
            rules = [candidate_rule(spec, t.params, name=f"trial {t.number}") for t in trials]
            evaluations = task.evaluate(rules, seed, terms=spec.rule.searched)
        except BaseException:
            for trial in trials:
                study.tell(trial, state=TrialState.FAIL)
            raise
        for trial, evaluation in zip(trials, evaluations):
            _tell(study, trial, evaluation)
        done_here += size
        if on_batch is not None:
            on_batch(study)


def best_value(study: optuna.Study) -> float | None:
    try:
        return study.best_value
    except ValueError:
        return None


def run_study(spec: StudySpec, storage_url: str | None = None, n_trials: int | None = None, workers: int = 1,
              on_progress: Callable[[int, int, float | None], None] | None = None) -> optuna.Study:
    """Run the study to ``n_trials`` finished trials with ``workers`` local processes.

    With one worker the batches run in this process; with more, each is a ``codesign worker``
    subprocess on the same storage and this process only watches the storage for progress.
    """
    target = n_trials or spec.n_trials
    study = open_study(spec, storage_url)
    reclaim_dead_trials(study)

    def report(s: optuna.Study) -> None:
        if on_progress is not None:
            on_progress(count_trials(s)[0], target, best_value(s))

    report(study)
    if workers <= 1:
        run_worker(spec, storage_url, target, 0, on_batch=report)
        return study
    command = [sys.executable, "-m", "codesign", "worker", spec.file, "--trials", str(target),
               "--storage", spec.storage_url(storage_url)]
    procs = [subprocess.Popen(command + ["--worker-index", str(i)]) for i in range(workers)]
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(0.5)
            report(study)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait()
    report(study)
    failed = [p.returncode for p in procs if p.returncode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} of {workers} workers exited with errors (codes {failed})")
    return study


def finished_trials(study: optuna.Study) -> Sequence[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
