"""A study run to its number of trials by N local worker processes on one storage."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import optuna

from codesign.errors import CodesignError
from codesign.search.storage import ENV_VAR
from codesign.search.rounds import final_round, round_count
from codesign.search.study import (count_trials, feasible, finished_trials, open_study, open_study_storage,
                                   reclaim_dead_trials, study_population)
from codesign.search.worker import run_worker, write_stats
from codesign.spec import StudySpec

__all__ = ["run_study"]


def run_study(spec: StudySpec, storage_url: str | None = None, n_trials: int | None = None, workers: int = 1,
              on_progress: Callable[[int, int, float | None], None] | None = None,
              stats_dir: Path | None = None) -> optuna.Study:
    """Run the study to ``n_trials`` finished trials with ``workers`` local processes; return its study (with
    refinement rounds, the last round's: see :func:`codesign.search.rounds.final_round` for its spec).

    With one worker the batches run in this process; with more, each is a ``codesign worker``
    subprocess on the same storage and this process only watches the storage for progress (with
    ``on_progress``; else it reads the storage once the workers are done). The
    storage URL reaches the workers in ``$CODESIGN_STORAGE``, not on their command lines (which
    anyone on the machine can read). A worker that is killed does not stop the study: the others
    retry its trials. ``stats_dir``: each worker writes its :class:`WorkerStats` there as JSON.
    ``n_trials`` replaces every refinement round's; ``on_progress`` gets the trials finished and wanted
    over all rounds, and the current round's best.

    A new study with a population (CMA-ES) gets ``batch_size`` times ``workers`` candidates per
    generation unless ``sampler.population`` says otherwise (:meth:`codesign.spec.StudySpec.population`),
    so that each worker simulates whole batches; a study keeps its population when resumed.
    """
    study = open_study(spec, storage_url, workers=workers)
    reclaim_dead_trials(study, spec)
    progress = _Progress(spec, n_trials, on_progress)
    progress(study)
    if workers <= 1:
        stats = run_worker(spec, storage_url, n_trials, 0, on_batch=progress)
        if stats_dir is not None:
            write_stats(stats, Path(stats_dir) / "worker-0.json")
    else:
        _run_workers(spec, storage_url, n_trials, workers, stats_dir, progress, study_population(study))
    return study if round_count(spec) == 1 else final_round(spec, storage_url)[1]


class _Progress:
    """Trials finished over every round so far, for ``on_progress``; called with the current round's study."""

    def __init__(self, spec: StudySpec, n_trials: int | None,
                 on_progress: Callable[[int, int, float | None], None] | None) -> None:
        refine = spec.sparsity.refine if spec.sparsity is not None else None
        later = n_trials or (refine.n_trials if refine is not None else None) or spec.n_trials
        self.total = (n_trials or spec.n_trials) + later * (round_count(spec) - 1)
        self.on_progress = on_progress
        self.studies: dict[str, optuna.Study] = {}
        self._best: dict[str, tuple[set[int], float | None]] = {}  # per study: trials looked at, best loss

    def __call__(self, study: optuna.Study) -> None:
        self.studies[study.study_name] = study
        if self.on_progress is not None:
            done = sum(count_trials(s)[0] for s in self.studies.values())
            self.on_progress(done, self.total, self.best_value(study))

    def best_value(self, study: optuna.Study) -> float | None:
        """The best loss so far (the first objective, over feasible trials in a multi-objective study).
        Each finished trial is looked at once, not at every batch: a long study's progress would
        otherwise cost more with every trial."""
        seen, best = self._best.get(study.study_name, (set(), None))
        for trial in finished_trials(study):
            if trial.number not in seen:
                seen.add(trial.number)
                if feasible(trial) and (best is None or trial.values[0] < best):
                    best = trial.values[0]
        self._best[study.study_name] = (seen, best)
        return best

    def watch(self, spec: StudySpec, storage: optuna.storages.BaseStorage) -> None:
        """Report the latest round that the workers have started in ``storage``."""
        names = set(optuna.study.get_all_study_names(storage))
        for k in range(round_count(spec)):
            name = dataclasses.replace(spec, round=k).study_name
            if name in names and name not in self.studies:
                self.studies[name] = optuna.load_study(study_name=name, storage=storage)
        latest = [s for s in self.studies.values() if s.study_name in names][-1]
        self(latest)


def _run_workers(spec: StudySpec, storage_url: str | None, n_trials: int | None, workers: int,
                 stats_dir: Path | None, progress: _Progress, population: int | None) -> None:
    """Run the study in ``workers`` ``codesign worker`` processes, watching the storage for progress."""
    storage = open_study_storage(spec, storage_url)
    procs, logs = _start_workers(spec, storage_url, n_trials, workers, stats_dir, population)
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(0.5)
            if progress.on_progress is not None:  # following the storage replays it, on the workers' cores
                progress.watch(spec, storage)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait()
    progress.watch(spec, storage)
    _check_workers(spec, procs, logs)
    killed = [-p.returncode for p in procs if p.returncode < 0]
    last = list(progress.studies.values())[-1]
    finished, total = sum(count_trials(s)[0] for s in progress.studies.values()), progress.total
    if finished < total or len(progress.studies) < round_count(spec):
        raise CodesignError(f"all {workers} workers stopped (killed by signals {killed}) with {finished} of "
                            f"{total} trials finished (in {last.study_name})", file=spec.file,
                            fix="run the same command again to resume")
    if killed:
        print(f"codesign: {len(killed)} worker(s) killed by signal(s) {killed}; the others retried their trials",
              file=sys.stderr)


def _start_workers(spec: StudySpec, storage_url: str | None, n_trials: int | None, workers: int,
                   stats_dir: Path | None, population: int | None) -> tuple[list[subprocess.Popen], list[Path]]:
    """Start ``workers`` ``codesign worker`` processes; each one's stderr goes to its log file."""
    # Whole batches simulate more cheaply per trial than small ones; but a population smaller than
    # the workers' batches together (a study created with fewer workers, or sampler.population) is
    # shared out, or one worker would take each generation while the others wait.
    share = min(spec.batch_size, -(-population // workers)) if population else spec.batch_size
    command = [sys.executable, "-m", "codesign", "worker", spec.file, "--batch-size", str(share), "--quiet"]
    if n_trials is not None:
        command += ["--trials", str(n_trials)]
    if spec.target.file:
        command += ["--target", spec.target.file]  # the study's, or the one --target gave
    env = {**os.environ, ENV_VAR: spec.storage_url(storage_url)}
    # A worker that fails must not print a traceback over the parent's one line, and its whole
    # output stays in its log to read.
    logs = [spec.results_dir / "workers" / f"worker-{i}.log" for i in range(workers)]
    logs[0].parent.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, log in enumerate(logs):
        extra = ["--stats", str(Path(stats_dir) / f"worker-{i}.json")] if stats_dir is not None else []
        with log.open("w") as stderr:
            procs.append(subprocess.Popen(command + ["--worker-index", str(i)] + extra, env=env, stderr=stderr))
    return procs, logs


def _check_workers(spec: StudySpec, procs: list[subprocess.Popen], logs: list[Path]) -> None:
    """Pass on what the workers said (trials past their time limit); one line for the first that failed."""
    outputs = [log.read_text(errors="replace") for log in logs]
    for proc, output in zip(procs, outputs):
        if proc.returncode <= 0 and output.strip():
            sys.stderr.write(output)
    failed = [i for i, proc in enumerate(procs) if proc.returncode > 0]
    if not failed:
        return
    i = failed[0]
    lines = outputs[i].strip().splitlines()
    last = lines[-1] if lines else "(no output)"
    what = f"{len(failed)} of {len(procs)} workers failed; worker {i} (exit code {procs[i].returncode})"
    if last.startswith("codesign: error: "):  # the worker's own one-line error, with its fix
        raise CodesignError(f"{what}: {last[len('codesign: error: '):]}")
    raise CodesignError(f"{what}: {last}", file=spec.file,
                        fix=f"its whole output is in {logs[i]}; finished trials are saved, run the same command "
                            "to resume")
