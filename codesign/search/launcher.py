"""A study run to its number of trials by N local worker processes on one storage."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import optuna

from codesign.errors import CodesignError
from codesign.search.samplers import SAMPLERS
from codesign.search.storage import ENV_VAR
from codesign.search.study import best_value, count_trials, open_study, reclaim_dead_trials
from codesign.search.worker import run_worker, write_stats
from codesign.spec import StudySpec

__all__ = ["run_study"]


def run_study(spec: StudySpec, storage_url: str | None = None, n_trials: int | None = None, workers: int = 1,
              on_progress: Callable[[int, int, float | None], None] | None = None,
              stats_dir: Path | None = None) -> optuna.Study:
    """Run the study to ``n_trials`` finished trials with ``workers`` local processes.

    With one worker the batches run in this process; with more, each is a ``codesign worker``
    subprocess on the same storage and this process only watches the storage for progress. The
    storage URL reaches the workers in ``$CODESIGN_STORAGE``, not on their command lines (which
    anyone on the machine can read). A worker that is killed does not stop the study: the others
    retry its trials. ``stats_dir``: each worker writes its :class:`WorkerStats` there as JSON.
    """
    target = n_trials or spec.n_trials
    study = open_study(spec, storage_url)
    reclaim_dead_trials(study, spec)

    def report(s: optuna.Study) -> None:
        if on_progress is not None:
            on_progress(count_trials(s)[0], target, best_value(s))

    report(study)
    if workers <= 1:
        stats = run_worker(spec, storage_url, target, 0, on_batch=report)
        if stats_dir is not None:
            write_stats(stats, Path(stats_dir) / "worker-0.json")
        return study
    procs, logs = _start_workers(spec, storage_url, target, workers, stats_dir)
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
    _check_workers(spec, procs, logs)
    killed = [-p.returncode for p in procs if p.returncode < 0]
    finished = count_trials(study)[0]
    if finished < target:
        raise CodesignError(f"all {workers} workers stopped (killed by signals {killed}) with {finished} of "
                            f"{target} trials finished", file=spec.file, fix="run the same command again to resume")
    if killed:
        print(f"codesign: {len(killed)} worker(s) killed by signal(s) {killed}; the others retried their trials",
              file=sys.stderr)
    return study


def _start_workers(spec: StudySpec, storage_url: str | None, target: int, workers: int,
                   stats_dir: Path | None) -> tuple[list[subprocess.Popen], list[Path]]:
    """Start ``workers`` ``codesign worker`` processes; each one's stderr goes to its log file."""
    # A population (CMA-ES, NSGA-II) is shared out between the workers; without one, each worker
    # evaluates whole batches, which simulate more cheaply per trial than small ones.
    population = SAMPLERS[spec.sampler.name].population
    share = -(-spec.batch_size // workers) if population else spec.batch_size
    command = [sys.executable, "-m", "codesign", "worker", spec.file, "--trials", str(target),
               "--batch-size", str(share), "--quiet"]
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
