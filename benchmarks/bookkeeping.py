"""Bookkeeping per trial, with no simulation (``python -m benchmarks --only bookkeeping``).

A worker runs the Oja demo study's search space (7 rule terms) on a null task, whose evaluation
returns a random loss and a few metrics at once, so that everything it spends is asking and
telling: the sampler, creating trials, owners and heartbeats, metrics and feasibility, results,
and reading the study to count trials and reclaim dead workers' ones. The figure is the worker's
own accounting (:class:`codesign.search.worker.WorkerStats`): its wall time less the (null)
evaluation, per finished trial, for batch sizes 1, 16, 256 and 4,096, on the journal file and on a
throwaway PostgreSQL server (if installed). Beside it, raw Optuna on the same storage: ``study.ask``
for a batch, then ``study.tell`` for each, with the same sampler and space and nothing else.

Trial counts are scaled so that the part takes a minute or two: two batches (the first one pays for
starting up, as in a real study), and raw Optuna only where its estimated time is short.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

import yaml

__all__ = ["run_bookkeeping_bench", "print_bookkeeping_table", "BATCH_SIZES", "NullTask"]

ROOT = Path(__file__).resolve().parent.parent
BATCH_SIZES = (1, 16, 256, 4096)
#: Raw Optuna is skipped at a batch size whose estimated time (from its time per trial at batch 1) is longer.
RAW_BUDGET_S = 20.0


class NullTask:
    """A task that simulates nothing: each candidate gets a random loss and metrics like the Oja model's."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)

    def evaluate(self, candidates, seed, terms=None, capacity=None, knobs=None):
        from codesign.models import Evaluation

        out = []
        for _ in candidates:
            loss = self.rng.random()
            out.append(Evaluation(loss=loss, metrics={"loss": loss, "alignment": 1 - loss, "weight_norm": 1.0,
                                                      "final_rate_hz": 0.0, "draws": 8}))
        return out


def _n_trials(batch: int, quick: bool) -> int:
    return max(2 * batch, 32) if not quick else max(2, min(batch, 32))


def _spec(folder: Path, name: str, sampler: str, n_trials: int, batch: int):
    from codesign.spec import load_study

    data = yaml.safe_load((ROOT / "studies/oja.yaml").read_text())
    data.update(name=name, sampler={"name": sampler}, n_trials=n_trials, batch_size=batch,
                model=str(ROOT / data["model"]), target=str(ROOT / "hw_targets/cpu.yaml"))
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_study(str(path))


def codesign_ms(spec, url: str) -> dict[str, float]:
    """One worker's bookkeeping on a null task: ms per finished trial, in all and by phase."""
    import codesign.search.worker as worker

    with mock.patch.object(worker, "make_task", lambda spec: NullTask(spec.seed)):
        stats = worker.run_worker(spec, url)
    n = max(stats.trials, 1)
    per = lambda seconds: 1e3 * seconds / n  # noqa: E731
    return {"ms_per_trial": per(stats.storage_s), "ask_ms": per(stats.ask_s),
            "tell_ms": per(stats.tell_s), "other_ms": per(stats.storage_s - stats.ask_s - stats.tell_s),
            "startup_s": stats.startup_s, "trials": stats.trials,
            # CPU of this process per trial after the first batch: what a busy machine changes least.
            "cpu_ms": 1e3 * stats.steady_cpu_s / stats.steady_trials if stats.steady_trials else float("nan")}


def raw_optuna_ms(spec, url: str, n_trials: int, batch: int) -> float:
    """Raw Optuna on the same storage: ask a batch, tell each of it; ms per trial."""
    import optuna

    from codesign.search.samplers import sampler
    from codesign.search.space import distributions
    from codesign.search.study import open_study_storage

    storage = open_study_storage(spec, url)
    study = optuna.create_study(study_name=spec.study_name + "-raw", storage=storage, sampler=sampler(spec))
    space = distributions(spec)
    rng = random.Random(0)
    start = time.perf_counter()
    done = 0
    while done < n_trials:
        trials = [study.ask(space) for _ in range(min(batch, n_trials - done))]
        for trial in trials:
            study.tell(trial, rng.random())
        done += len(trials)
    return 1e3 * (time.perf_counter() - start) / done


def _storages(folder: Path, server) -> dict[str, Any]:
    """A function per storage that gives a fresh URL for a name."""
    urls = {"journal": lambda name: f"journal:{folder}/{name}.log"}
    if server is not None:
        urls["postgres"] = lambda name: server.create_database(name)
    return urls


def run_bookkeeping_bench(quick: bool = False, batch_sizes=BATCH_SIZES, sampler: str = "random") -> dict[str, Any]:
    """``{"bookkeeping": {storage: {batch: ms}}, "bookkeeping_raw_optuna": ..., "bookkeeping_phases": ...}``."""
    import warnings

    from tests.postgres import server_or_none

    warnings.filterwarnings("ignore", category=UserWarning, module="optuna")
    result: dict[str, Any] = {"bookkeeping": {}, "bookkeeping_raw_optuna": {}, "bookkeeping_phases": {},
                              "bookkeeping_sampler": sampler}
    with tempfile.TemporaryDirectory(prefix="codesign-bookkeeping-") as tmp:
        folder = Path(tmp)
        with server_or_none(result, "bookkeeping_postgres_skipped") as server:
            for storage, fresh in _storages(folder, server).items():
                ours, raw, phases = {}, {}, {}
                for batch in batch_sizes:
                    n = _n_trials(batch, quick)
                    spec = _spec(folder, f"bk_{storage}_{batch}", sampler, n, batch)
                    run = codesign_ms(spec, fresh(f"bk_{storage}_{batch}"))
                    ours[str(batch)] = run["ms_per_trial"]
                    phases[str(batch)] = run
                    one = raw.get("1")
                    if one is None or one * n / 1e3 < RAW_BUDGET_S:
                        raw[str(batch)] = raw_optuna_ms(spec, fresh(f"raw_{storage}_{batch}"), n, batch)
                    else:
                        raw[str(batch)] = None
                result["bookkeeping"][storage] = ours
                result["bookkeeping_raw_optuna"][storage] = raw
                result["bookkeeping_phases"][storage] = phases
    return result


def print_bookkeeping_table(result: dict[str, Any], console) -> None:
    from rich.table import Table

    table = Table(title=f"bookkeeping per trial on a null task, ms (sampler {result['bookkeeping_sampler']}): "
                        "codesign (ask / tell / the rest) and raw Optuna's ask and tell")
    table.add_column("storage")
    table.add_column("batch", justify="right")
    for column in ("codesign", "ask", "tell", "rest", "raw Optuna"):
        table.add_column(column, justify="right")
    for storage, rows in result["bookkeeping"].items():
        for batch, ms in rows.items():
            phase = result["bookkeeping_phases"][storage][batch]
            raw = result["bookkeeping_raw_optuna"][storage].get(batch)
            table.add_row(storage, batch, f"{ms:.2f}", f"{phase['ask_ms']:.2f}", f"{phase['tell_ms']:.2f}",
                          f"{phase['other_ms']:.2f}", "-" if raw is None else f"{raw:.2f}")
    console.print(table)
    if "bookkeeping_postgres_skipped" in result:
        console.print(f"postgres skipped: {result['bookkeeping_postgres_skipped']}")
