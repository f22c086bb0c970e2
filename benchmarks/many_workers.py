"""Many workers on one storage, with a fixed sleep for a simulation (``python -m benchmarks --only many-workers``).

32 worker processes (forked from one that has imported codesign, so that none pays for starting
Python) run the Oja demo study's search space with the random sampler on a task whose evaluation
of a batch is a fixed sleep: what a worker waiting on a GPU looks like to the storage. Each worker
asks whole batches and does all of codesign's bookkeeping (owners, heartbeats, sweeps for dead
workers, results in one write, counting trials). The figure is the share of the time the workers
spend "simulating", in steady state, from the trials' own time stamps in the storage: trials
finished between the moment every worker has finished its first batch and the moment the first
worker stops (it found no more trials to ask), over what the workers would finish if they did
nothing but sleep. 1.0: the storage costs the workers nothing.
"""

from __future__ import annotations

import json
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

__all__ = ["run_many_workers_bench", "print_many_workers_table", "busy_fraction", "SleepTask"]

WORKERS = 32
BATCH = 16
SLEEP_S = 2.0
#: Batches each worker runs (the first, and the last round, are outside the steady state).
ROUNDS = 6


class SleepTask:
    """A task whose batch "simulates" for a fixed time, then gives each candidate a random loss."""

    def __init__(self, seed: int, sleep_s: float) -> None:
        from benchmarks.bookkeeping import NullTask

        self.null, self.sleep_s = NullTask(seed), sleep_s

    def evaluate(self, candidates, seed, terms=None, capacity=None, knobs=None):
        time.sleep(self.sleep_s)
        return self.null.evaluate(candidates, seed)


def _worker(spec, url: str, index: int, sleep_s: float, stats_path: str) -> None:
    import codesign.search.worker as worker

    try:
        with mock.patch.object(worker, "make_task", lambda spec: SleepTask(spec.seed + index, sleep_s)):
            stats = worker.run_worker(spec, url, worker_index=index)
    except Exception as exc:  # counted and shown by the table: the figure is only as good as the workers that ran
        Path(stats_path).with_suffix(".error").write_text(f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
        raise
    worker.write_stats(stats, Path(stats_path))


def _create(spec, url: str) -> None:
    from codesign.search.study import open_study

    open_study(spec, url)


def busy_fraction(trials: list, workers: int, batch: int, sleep_s: float) -> float:
    """Trials finished in steady state over what ``workers`` that only slept would finish (see the module)."""
    from codesign.search.liveness import WORKER_ATTR

    done = [t for t in trials if t.state.name == "COMPLETE" and t.datetime_complete is not None]
    by_worker: dict[str, list] = {}
    for t in done:
        by_worker.setdefault(t.system_attrs.get(WORKER_ATTR, "?"), []).append(t.datetime_complete)
    start = max(min(times) for times in by_worker.values())  # every worker has finished a batch
    end = min(max(times) for times in by_worker.values())  # the first worker has stopped
    finished = sum(start < t.datetime_complete <= end for t in done)
    seconds = (end - start).total_seconds()
    return finished / (seconds * workers * batch / sleep_s) if seconds > 0 else float("nan")


def _measure(spec, url: str, workers: int, sleep_s: float, folder: Path) -> dict[str, float]:
    from codesign.search.study import open_study

    stats_dir = folder / f"stats-{time.monotonic_ns()}"
    stats_dir.mkdir()
    fork = multiprocessing.get_context("fork")
    # Created once before the workers race for it, in a process of its own: a forked worker must
    # not inherit an open database connection.
    creator = fork.Process(target=_create, args=(spec, url))
    creator.start()
    creator.join()
    procs = [fork.Process(target=_worker, args=(spec, url, i, sleep_s, str(stats_dir / f"{i}.json")))
             for i in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    stats = [json.loads(p.read_text()) for p in stats_dir.glob("*.json")]
    errors = sorted({p.read_text() for p in stats_dir.glob("*.error")})
    trials = open_study(spec, url).get_trials(deepcopy=False)
    n = max(sum(s["trials"] for s in stats), 1)
    return {"busy_fraction": busy_fraction(trials, workers, spec.batch_size, sleep_s),
            "finished": sum(t.state.name == "COMPLETE" for t in trials), "workers_done": len(stats),
            "ask_ms": 1e3 * sum(s["ask_s"] for s in stats) / n, "tell_ms": 1e3 * sum(s["tell_s"] for s in stats) / n,
            "wait_s": sum(s["wait_s"] for s in stats) / max(len(stats), 1), "errors": errors}


def run_many_workers_bench(quick: bool = False, workers: int = WORKERS) -> dict[str, Any]:
    """``{"many_workers": {storage: busy_fraction}, "many_workers_detail": {storage: {...}}, ...}``."""
    import warnings

    from benchmarks.bookkeeping import _spec, _storages
    from tests.postgres import server_or_none

    warnings.filterwarnings("ignore", category=UserWarning, module="optuna")
    workers, sleep_s = (4, 0.2) if quick else (workers, SLEEP_S)
    result: dict[str, Any] = {"many_workers": {}, "many_workers_detail": {},
                              "many_workers_setup": {"workers": workers, "batch": BATCH, "sleep_s": sleep_s,
                                                     "sampler": "random"}}
    with tempfile.TemporaryDirectory(prefix="codesign-many-") as tmp:
        folder = Path(tmp)
        connections = 4 * workers + 20  # about 3 per worker
        with server_or_none(result, "many_workers_postgres_skipped", max_connections=connections) as server:
            for storage, fresh in _storages(folder, server).items():
                spec = _spec(folder, f"many_{storage}", "random", workers * BATCH * ROUNDS, BATCH)
                run = _measure(spec, fresh(f"many_{storage}"), workers, sleep_s, folder)
                result["many_workers"][storage] = run["busy_fraction"]
                result["many_workers_detail"][storage] = run
    return result


def print_many_workers_table(result: dict[str, Any], console) -> None:
    from rich.table import Table

    setup = result["many_workers_setup"]
    table = Table(title=f"{setup['workers']} workers, batches of {setup['batch']} that 'simulate' by sleeping "
                        f"{setup['sleep_s']:g} s: share of the time spent simulating in steady state")
    for column in ("storage", "busy", "finished trials", "ask ms/trial", "tell ms/trial", "wait s/worker"):
        table.add_column(column, justify="left" if column == "storage" else "right")
    for storage, busy in result["many_workers"].items():
        d = result["many_workers_detail"][storage]
        table.add_row(storage, f"{busy:.3f}", str(d["finished"]), f"{d['ask_ms']:.2f}", f"{d['tell_ms']:.2f}",
                      f"{d['wait_s']:.2f}")
    console.print(table)
    for storage, d in result["many_workers_detail"].items():
        if d["errors"]:
            console.print(f"{storage}: {setup['workers'] - d['workers_done']} workers failed: {'; '.join(d['errors'])}")
    if "many_workers_postgres_skipped" in result:
        console.print(f"postgres skipped: {result['many_workers_postgres_skipped']}")
