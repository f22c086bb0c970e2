"""One worker's loop: ask a batch of trials, evaluate them in one network, tell the results.

One worker evaluates ``batch_size`` trials at a time in one network (``ModelTask.evaluate``). Several
workers share one storage (:mod:`codesign.search.storage`), on one machine or many; each process
builds its own network once and reuses it for every batch. Workers that die or hang lose nothing:
see :mod:`codesign.search.liveness`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from codesign.backends import build_seconds
from codesign.hardware import cost
from codesign.models import Evaluation, ModelTask
from codesign.search import liveness
from codesign.search.batches import Result, constraint_key, finish, version
from codesign.search.generations import ask_batch, population
from codesign.search.liveness import BatchGuard, TrialTimeout
from codesign.search.objectives import OBJECTIVES
from codesign.search.rounds import rounds_to_run
from codesign.search.samplers import SAMPLERS
from codesign.search.space import candidate, distributions, knob_values, network_terms
from codesign.search.sparsity import l1_penalty
from codesign.search.study import TRAIN_SEED_OFFSET, count_trials, make_task, open_study, retry_callback
from codesign.spec import StudySpec

__all__ = ["run_worker", "WorkerStats", "write_stats"]


@dataclasses.dataclass
class WorkerStats:
    """Where a worker's time went: ``storage_s`` is asking and telling (Optuna's sampler and storage)."""

    trials: int = 0
    timed_out: int = 0
    wall_s: float = 0.0
    startup_s: float = 0.0
    build_s: float = 0.0
    evaluate_s: float = 0.0
    wait_s: float = 0.0
    #: Parts of ``storage_s``: asking a batch (sampling, creating and claiming its trials) and telling its results.
    ask_s: float = 0.0
    tell_s: float = 0.0
    #: After the first batch (which builds the network): trials, and CPU seconds of this process and
    #: of the processes it ran (C++ standalone simulations), so CPU per trial is comparable between runs.
    steady_trials: int = 0
    steady_cpu_s: float = 0.0

    def add(self, other: WorkerStats) -> None:
        """Add another run's time (the next refinement round's) to this one's."""
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

    @property
    def storage_s(self) -> float:
        return max(0.0, self.wall_s - self.startup_s - self.build_s - self.evaluate_s - self.wait_s)

    def summary(self) -> str:
        n = max(self.trials, 1)
        return (f"{self.trials} trials in {self.wall_s:.1f} s; per trial {1e3 * self.evaluate_s / n:.1f} ms simulating, "
                f"{1e3 * self.storage_s / n:.1f} ms asking and telling; {self.wait_s:.1f} s waiting, "
                f"{self.startup_s + self.build_s:.1f} s starting and building"
                + (f"; {self.timed_out} timed out" if self.timed_out else ""))


def write_stats(stats: WorkerStats, path: Path) -> None:
    """Write a worker's stats as JSON (``storage_s`` included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**dataclasses.asdict(stats), "storage_s": stats.storage_s}))


def run_worker(spec: StudySpec, storage_url: str | None = None, n_trials: int | None = None,
               worker_index: int = 0, batch_size: int | None = None,
               on_batch: Callable[[optuna.Study], None] | None = None, poll_s: float = 0.05) -> WorkerStats:
    """Ask, evaluate and tell batches until the study has ``n_trials`` finished trials.

    ``batch_size`` (default: the study's) is how many trials this worker evaluates at once; a sampler
    with a population (CMA-ES) hands out its generations in such batches, to whichever workers ask.
    Returns where the time went. Trials of a batch that raises are marked failed before the error propagates, so no trial is left RUNNING by a live worker; a batch
    that runs past ``trial_timeout_s`` is failed and the worker goes on
    (:class:`codesign.search.liveness.BatchGuard`). Every second on the journal, every heartbeat
    interval on PostgreSQL (:func:`codesign.search.liveness.sweep_interval`; while it evaluates too), the worker
    reclaims the trials of dead workers. A study with refinement rounds is run round after round
    (:mod:`codesign.search.rounds`), ``n_trials`` (when given) for each.
    """
    stats = WorkerStats()
    task = None  # one task for every round: they share round 0's network (StudySpec.network_terms)
    for round_spec in rounds_to_run(spec, storage_url, n_trials):
        worker = _Worker(round_spec, storage_url, None, worker_index, batch_size, poll_s, task)
        stats.add(worker.run(on_batch))
        task = worker.task
    return stats


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class _Worker:
    """The state of one worker's loop (see :func:`run_worker`)."""

    def __init__(self, spec: StudySpec, storage_url: str | None, n_trials: int | None, worker_index: int,
                 batch_size: int | None, poll_s: float, task: ModelTask | None = None) -> None:
        started = time.perf_counter()
        self.spec, self.poll_s, self.started = spec, poll_s, started
        self.stats = WorkerStats()
        self.target = n_trials or spec.n_trials
        self.share = batch_size or spec.batch_size
        self.study = open_study(spec, storage_url, worker_index)
        if spec.start is not None:  # a refinement round tries the last round's best (on its survivors) first
            self.study.enqueue_trial(spec.start, skip_if_exists=True)
        if SAMPLERS[spec.sampler.name].generations:
            import cmaes  # noqa: F401  (Optuna imports it, and SciPy with it, on the first ask: part of starting up)
        self.key, self.popsize = population(self.study, spec.sampler.name)
        self.task = task or make_task(spec)
        self.space = distributions(spec)
        self.retry = retry_callback(spec)
        self.sweep_every = liveness.sweep_interval(self.study._storage, spec.heartbeat_s)
        self.last_sweep = -float("inf")
        self.stats.startup_s = time.perf_counter() - started

    def sweep(self) -> None:
        """Reclaim the trials of dead workers."""
        liveness.reclaim_dead_trials(self.study, 2 * self.spec.heartbeat_s, self.retry)
        self.last_sweep = time.monotonic()

    def wait(self, looked: tuple[Any, float] | None) -> None:
        """Until the study changes (others finish their trials of the generation), at most ``poll_s``.

        ``looked`` is the study's :func:`~codesign.search.batches.version` read before the worker
        looked at the study and found nothing to ask (with generations): read after, it may already
        hold the change waited for (the other worker's last result, written meanwhile), and the worker
        would sleep until the next change, a whole batch later. Without generations a worker only
        waits for the study's last trials, and reads it now.
        """
        began = time.perf_counter()
        seen, wake_s = looked or version(self.study)
        if seen is None:
            time.sleep(self.poll_s)
        while seen is not None and time.perf_counter() - began < self.poll_s:
            time.sleep(wake_s)
            if version(self.study)[0] != seen:
                break
            # Often at first (the other half of a generation is usually a millisecond or two away),
            # then less: many waiting workers would otherwise take a core reading the storage.
            wake_s *= 2
        self.stats.wait_s += time.perf_counter() - began

    def run(self, on_batch: Callable[[optuna.Study], None] | None) -> WorkerStats:
        steady_from: tuple[int, float] | None = None
        while True:
            if time.monotonic() - self.last_sweep >= self.sweep_every:
                self.sweep()
            looked = version(self.study) if self.key is not None else None
            finished, running = count_trials(self.study)
            size = min(self.share, self.target - finished - running)
            if size <= 0 and finished >= self.target:
                break
            # No room: the last trials run elsewhere (if their worker dies, the sweep takes them
            # over), or this generation is being evaluated by other workers.
            asking = time.perf_counter()
            trials = ask_batch(self.study, self.space, size, self.target, self.key, self.popsize) if size > 0 else []
            self.stats.ask_s += time.perf_counter() - asking
            if not trials:
                self.wait(looked)
                continue
            if self.evaluate_and_tell(trials) and steady_from is None:
                steady_from = (self.stats.trials, _cpu_seconds())
            if on_batch is not None:
                on_batch(self.study)
        self.stats.wall_s = time.perf_counter() - self.started
        if steady_from is not None:
            self.stats.steady_trials = self.stats.trials - steady_from[0]
            self.stats.steady_cpu_s = _cpu_seconds() - steady_from[1]
        return self.stats

    def evaluate_and_tell(self, trials: list[FrozenTrial]) -> bool:
        """Evaluate one batch and tell its results; False if it ran past its time limit (its trials failed)."""
        spec = self.spec
        knobs = [knob_values(spec, t.params) for t in trials]
        guard = BatchGuard(self.study, trials, spec.heartbeat_s, spec.trial_timeout_s, build_seconds,
                           sweep=self.sweep, sweep_s=self.sweep_every)
        built, began = build_seconds(), time.perf_counter()
        try:
            try:
                with guard:
                    candidates = [candidate(spec, t.params, name=f"trial {t.number}") for t in trials]
                    evaluations = self.task.evaluate(candidates, spec.seed + TRAIN_SEED_OFFSET,
                                                     terms=network_terms(spec), capacity=self.share,
                                                     knobs=knobs if spec.hardware.knobs else None)
            except TrialTimeout:
                pass  # raised on the way out of the guard: its trials are failed already
        except BaseException:
            for trial in trials:
                liveness.fail_trial(self.study, trial._trial_id, None)
            raise
        finally:
            self.stats.build_s += build_seconds() - built
            self.stats.evaluate_s += time.perf_counter() - began - (build_seconds() - built)
        if guard.timed_out:
            self.stats.timed_out += len(trials)
            numbers = ", ".join(str(t.number) for t in trials)
            print(f"codesign: trials {numbers} ran past trial_timeout_s = {spec.trial_timeout_s:g} s of simulation; "
                  "failed (not retried)", file=sys.stderr)
            return False
        telling = time.perf_counter()
        tell_batch(spec, self.study, trials, evaluations, knobs)
        self.stats.tell_s += time.perf_counter() - telling
        self.stats.trials += len(trials)
        return True


def objective_values(spec: StudySpec, evaluation: Evaluation, knobs: Mapping[str, float]) -> tuple[list[float], bool]:
    """The objective values of an evaluation, and whether the candidate fits its target."""
    result = cost(spec.target, evaluation.counts) if evaluation.counts is not None else None
    values = [OBJECTIVES[name].value(spec, evaluation, result, knobs) for name in spec.objectives]
    return values, result is None or result.fits


def result(spec: StudySpec, study: optuna.Study, trial: FrozenTrial, evaluation: Evaluation,
           knobs: Mapping[str, float]) -> Result:
    """What telling a result records. A diverged candidate (NaN weights, runaway rate) is pruned with its
    reason. With ``sparsity:``, the L1 penalty is added to the first objective (not to a diverged
    candidate's ceiling), and metrics ``unpenalised_loss`` and ``l1_penalty`` say what it was made of.

    With one objective a diverged candidate's loss (the ceiling) is recorded as an intermediate value
    and its value, so that samplers that take pruned trials into account (CMA-ES here) still rank it
    and a generation stays complete (as Optuna's ``study.tell`` does for a pruned trial). A candidate
    that does not fit its target is told as infeasible (Optuna's constraint ``fits_target``). A value
    that is NaN fails the trial, as ``study.tell`` does.
    """
    values, fits = objective_values(spec, evaluation, knobs)
    penalty = l1_penalty(spec, trial.params)
    metrics = evaluation.metrics
    if spec.sparsity is not None:  # the loss objective is penalised; the metrics keep the loss itself
        values[0] += 0.0 if evaluation.diverged else penalty
        metrics = {**evaluation.metrics, "unpenalised_loss": evaluation.loss, "l1_penalty": penalty}
    told = Result(trial._trial_id, TrialState.COMPLETE, [float(v) for v in values], {"metrics": metrics},
                  {constraint_key("fits_target"): 0.0 if fits else 1.0})  # samplers avoid infeasible candidates
    if evaluation.diverged:
        told.user_attrs["diverged_reason"] = evaluation.metrics.get("diverged_reason", "diverged")
        told.state, told.values = TrialState.PRUNED, None
        if len(values) == 1:
            told.intermediate_values[0] = float(evaluation.loss)
            told.values = None if math.isnan(evaluation.loss) else [float(evaluation.loss)]
    elif any(math.isnan(v) for v in told.values):
        told.state, told.values = TrialState.FAIL, None
    return told


def tell_batch(spec: StudySpec, study: optuna.Study, trials: Sequence[FrozenTrial],
               evaluations: Sequence[Evaluation], knobs: Sequence[Mapping[str, float]]) -> None:
    """Tell a batch's results in one write (:func:`codesign.search.batches.finish`), after the sampler's
    ``after_trial`` for each. A trial failed meanwhile (its worker was taken for dead) keeps its
    state: the result is dropped, and the trial's retry counts instead.
    """
    results = [result(spec, study, t, e, k) for t, e, k in zip(trials, evaluations, knobs)]
    for trial, told in zip(trials, results):
        frozen = copy.copy(trial)
        frozen.system_attrs = {**trial.system_attrs, **told.system_attrs}
        frozen.user_attrs = {**trial.user_attrs, **told.user_attrs}
        frozen.intermediate_values = {**trial.intermediate_values, **told.intermediate_values}
        study.sampler.after_trial(study, frozen, told.state, told.values)
    finish(study._storage, results)
