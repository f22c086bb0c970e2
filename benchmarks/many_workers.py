"""Many workers on one storage, with a fixed sleep for a simulation (``python -m benchmarks --only many-workers``).

32 worker processes (forked from one that has imported codesign, so that none pays for starting
Python) run the Oja demo study's search space with the random sampler on a task whose evaluation
of a batch is a fixed sleep: what a worker waiting on a GPU looks like to the storage. Each worker
asks whole batches and does all of codesign's bookkeeping (owners, heartbeats, sweeps for dead
workers, results in one write, counting trials). The figure is the share of the time the workers
spend "simulating", in steady state, from the trials' own time stamps in the storage: for each
worker, the time from the end of its first batch to the end of its last is whole cycles of telling,
asking and sleeping, and the figure is the sleeping in them over their length, for all workers
together. 1.0: the storage costs the workers nothing. (Counting the trials finished in one window
common to all workers, as an earlier version did, miscounts workers in step: their batches end in
clumps, and whether a clump at either edge of the window counts depends on a few milliseconds.)

Two runs per storage: workers started **together**, which stay in step (every batch sleeps the same),
so all 32 do their bookkeeping at the same moments, on this machine's few cores; and workers whose
starts are **staggered** evenly over one batch's sleep, as jobs started on a cluster are: the same
load on the storage, spread over time.
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


def _worker(spec, url: str, index: int, sleep_s: float, stats_path: str, delay_s: float) -> None:
    import codesign.search.worker as worker

    time.sleep(delay_s)
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


def busy_fraction(trials: list, sleep_s: float) -> float:
    """Each worker's batches after its first, times the sleep, over the time from its first batch's
    end to its last's; summed over the workers. A batch is the trials one worker created in one write
    (one start time); it ends when its last trial finished."""
    from codesign.search.liveness import WORKER_ATTR

    ends: dict[str, dict] = {}
    for t in trials:
        if t.state.name == "COMPLETE" and t.datetime_complete is not None:
            batches = ends.setdefault(t.system_attrs.get(WORKER_ATTR, "?"), {})
            batches[t.datetime_start] = max(batches.get(t.datetime_start, t.datetime_complete), t.datetime_complete)
    cycles = sum(len(b) - 1 for b in ends.values())
    seconds = sum((max(b.values()) - min(b.values())).total_seconds() for b in ends.values())
    return cycles * sleep_s / seconds if seconds > 0 else float("nan")


def _measure(spec, url: str, workers: int, sleep_s: float, folder: Path, staggered: bool) -> dict[str, float]:
    from codesign.search.study import open_study

    stats_dir = folder / f"stats-{time.monotonic_ns()}"
    stats_dir.mkdir()
    fork = multiprocessing.get_context("fork")
    # Created once before the workers race for it, in a process of its own: a forked worker must
    # not inherit an open database connection.
    creator = fork.Process(target=_create, args=(spec, url))
    creator.start()
    creator.join()
    procs = [fork.Process(target=_worker, args=(spec, url, i, sleep_s, str(stats_dir / f"{i}.json"),
                                                i * sleep_s / workers if staggered else 0.0))
             for i in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    stats = [json.loads(p.read_text()) for p in stats_dir.glob("*.json")]
    errors = sorted({p.read_text() for p in stats_dir.glob("*.error")})
    trials = open_study(spec, url).get_trials(deepcopy=False)
    n = max(sum(s["trials"] for s in stats), 1)
    return {"busy_fraction": busy_fraction(trials, sleep_s),
            "finished": sum(t.state.name == "COMPLETE" for t in trials), "workers_done": len(stats),
            "ask_ms": 1e3 * sum(s["ask_s"] for s in stats) / n, "tell_ms": 1e3 * sum(s["tell_s"] for s in stats) / n,
            "wait_s": sum(s["wait_s"] for s in stats) / max(len(stats), 1), "errors": errors}


def run_many_workers_bench(quick: bool = False, workers: int = WORKERS) -> dict[str, Any]:
    """``{"many_workers": {storage: busy_fraction}, "many_workers_detail": {storage: {...}}, ...}`` with staggered
    starts, and ``"many_workers_together"``, ``"many_workers_together_detail"`` the same with workers started together."""
    import warnings

    from benchmarks.bookkeeping import _spec, _storages
    from tests.postgres import server_or_none

    warnings.filterwarnings("ignore", category=UserWarning, module="optuna")
    workers, sleep_s = (4, 0.2) if quick else (workers, SLEEP_S)
    result: dict[str, Any] = {"many_workers": {}, "many_workers_detail": {}, "many_workers_together": {},
                              "many_workers_together_detail": {},
                              "many_workers_setup": {"workers": workers, "batch": BATCH, "sleep_s": sleep_s,
                                                     "sampler": "random"}}
    with tempfile.TemporaryDirectory(prefix="codesign-many-") as tmp:
        folder = Path(tmp)
        connections = 4 * workers + 20  # about 3 per worker
        with server_or_none(result, "many_workers_postgres_skipped", max_connections=connections) as server:
            for storage, fresh in _storages(folder, server).items():
                for key, staggered in (("many_workers_together", False), ("many_workers", True)):
                    name = f"{key}_{storage}"
                    spec = _spec(folder, name, "random", workers * BATCH * ROUNDS, BATCH)
                    run = _measure(spec, fresh(name), workers, sleep_s, folder, staggered)
                    result[key][storage] = run["busy_fraction"]
                    result[f"{key}_detail"][storage] = run
    return result


def print_many_workers_table(result: dict[str, Any], console) -> None:
    from rich.table import Table

    setup = result["many_workers_setup"]
    table = Table(title=f"{setup['workers']} workers, batches of {setup['batch']} that 'simulate' by sleeping "
                        f"{setup['sleep_s']:g} s: share of the time spent simulating in steady state")
    for column in ("storage", "started", "busy", "finished trials", "ask ms/trial", "tell ms/trial", "wait s/worker"):
        table.add_column(column, justify="left" if column in ("storage", "started") else "right")
    runs = (("many_workers", "staggered"), ("many_workers_together", "together"))
    for storage in result["many_workers"]:
        for key, started in runs:
            d = result[f"{key}_detail"][storage]
            table.add_row(storage, started, f"{result[key][storage]:.3f}", str(d["finished"]), f"{d['ask_ms']:.2f}",
                          f"{d['tell_ms']:.2f}", f"{d['wait_s']:.2f}")
    console.print(table)
    for key, started in runs:
        for storage, d in result[f"{key}_detail"].items():
            if d["errors"]:
                console.print(f"{storage} ({started}): {setup['workers'] - d['workers_done']} workers failed: "
                              f"{'; '.join(d['errors'])}")
    if "many_workers_postgres_skipped" in result:
        console.print(f"postgres skipped: {result['many_workers_postgres_skipped']}")
