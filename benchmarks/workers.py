"""Trial throughput with 1 and 2 local workers, per storage (``python -m benchmarks --only workers``).

The study is the spiking target-rate study of ``studies/target-rate.yaml`` (its network, input
draws and rule; C++ standalone), so that a trial is a real one, and the same study with 16 input
draws per candidate instead of 4 (four times the simulation per trial, the same bookkeeping). It
runs with the random sampler: without a population to share out, each worker evaluates whole
batches of ``batch_size`` and the comparison measures the workers and the storage, not how the
simulation's cost depends on batch size. CMA-ES with 2 workers is measured on the demo study
(:mod:`benchmarks.demo`).

Throughput is counted in steady state, from the trials' own time stamps in the storage: from the
moment every worker has finished its first batch (which includes loading the compiled network) to
the last trial. Where the time goes comes from each worker's own accounting
(:class:`codesign.search.worker.WorkerStats`): simulating, and asking and telling (Optuna's sampler and the
storage). Beside them, the same machine's speed-up for two plain CPU-bound processes over one
(measured before each pair of runs) says what 2 workers could reach at best here, and the time of
one fsync'd append what each of the journal's writes costs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

__all__ = ["run_workers_bench", "print_workers_table", "throughput"]

ROOT = Path(__file__).resolve().parent.parent

_SPIN = "import time\nt = time.perf_counter()\nx = 0\nfor i in range({n}): x += i\nprint(time.perf_counter() - t)"


def cpu_reference(n: int = 6_000_000) -> float:
    """How much more CPU-bound work two processes do than one, on this machine now (2.0: two free cores)."""
    def spin(copies: int) -> float:
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", _SPIN.format(n=n)], stdout=subprocess.PIPE)
                 for _ in range(copies)]
        for p in procs:
            p.communicate()
        return time.perf_counter() - start

    one = min(spin(1) for _ in range(2))
    two = min(spin(2) for _ in range(2))
    return 2 * one / two


def throughput(trials: list) -> float:
    """Finished trials per second in steady state: from the time every worker has finished its first
    batch to the time the first worker finishes its last (time stamps in the storage).

    Before, some workers are still starting; after, the last trials of the study run on fewer
    workers than were started (the demo's 900 trials are 37 generations of 24 and one of 12).
    """
    from codesign.search.liveness import WORKER_ATTR

    done = sorted((t for t in trials if t.datetime_complete is not None and t.state.name in ("COMPLETE", "PRUNED")),
                  key=lambda t: t.datetime_complete)
    first: dict[str, Any] = {}
    last: dict[str, Any] = {}
    for t in done:
        worker = t.system_attrs.get(WORKER_ATTR, "?")
        first.setdefault(worker, t.datetime_complete)
        last[worker] = t.datetime_complete
    start, end = max(first.values()), min(last.values())
    after = [t for t in done if start < t.datetime_complete <= end]
    if len(after) < 2 or end <= start:
        return float("nan")
    return len(after) / (end - start).total_seconds()


def _study_file(folder: Path, name: str, sampler: str, n_trials: int, batch: int, quick: bool, draws: int) -> Path:
    data = yaml.safe_load((ROOT / "studies/target-rate.yaml").read_text())
    data.update(name=name, sampler={"name": sampler}, n_trials=n_trials, batch_size=batch, draws=draws,
                model=str(ROOT / data["model"]), target=str(ROOT / "hw_targets/cpu-standalone.yaml"))
    if quick:
        data["constants"].update(learn="0.2*second", measure="0.2*second")
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _prebuild(spec, batch: int) -> None:
    """Compile the network of this batch size before timing (it is cached for every process)."""
    from codesign.search.space import candidate, searched_terms
    from codesign.search.study import make_task

    rule = {p: 0.0 for p in spec.rule.searched}
    rule.update(tau_x_ms=20.0, tau_y_ms=20.0)
    make_task(spec).evaluate([candidate(spec, rule)], spec.seed, terms=searched_terms(spec), capacity=batch)


def _measure(spec, url: str, workers: int, folder: Path) -> dict[str, float]:
    from codesign.search.launcher import run_study
    from codesign.search.study import open_study

    stats_dir = folder / f"stats-{time.monotonic_ns()}"
    start = time.perf_counter()
    run_study(spec, url, workers=workers, stats_dir=stats_dir)
    wall = time.perf_counter() - start
    stats = [json.loads(p.read_text()) for p in stats_dir.glob("*.json")]
    trials = sum(s["trials"] for s in stats)
    steady = sum(s["steady_trials"] for s in stats)
    return {
        "trials_per_s": throughput(open_study(spec, url).get_trials(deepcopy=False)),
        "simulate_ms": 1e3 * sum(s["evaluate_s"] for s in stats) / trials,
        "storage_ms": 1e3 * sum(s["storage_s"] for s in stats) / trials,
        "cpu_ms": 1e3 * sum(s["steady_cpu_s"] for s in stats) / steady if steady else float("nan"),
        "wall_s": wall,
    }


def fsync_ms(folder: Path, n: int = 50) -> float:
    """How long one appended line takes to reach the disk here (the journal fsyncs each of its writes)."""
    import os

    with open(folder / "fsync-probe", "ab") as f:
        start = time.perf_counter()
        for _ in range(n):
            f.write(b"x" * 100 + b"\n")
            f.flush()
            os.fsync(f.fileno())
        return 1e3 * (time.perf_counter() - start) / n


#: The studies measured: the spiking study as it is, and with 4 times the work per trial (input draws per candidate).
CASES = {"4 draws": 4, "16 draws": 16}


def run_workers_bench(quick: bool = False, repeats: int = 2) -> dict[str, Any]:
    """Throughput with 1 and 2 workers on the journal and on a throwaway PostgreSQL server (if installed).

    Each configuration runs ``repeats`` times, 1 and 2 workers alternately, and keeps its best run
    (a shared machine only ever makes a run slower). ``quick``: a tiny network and few trials, to
    check that the benchmark runs (not for numbers).
    """
    from tests.postgres import server_or_none
    from codesign.spec import load_study

    batch = 4 if quick else 12
    result: dict[str, Any] = {"sampler": f"random, batches of {batch} per worker", "cases": {}, "cpu_reference": []}
    spin = 1_000_000 if quick else 6_000_000
    with tempfile.TemporaryDirectory(prefix="codesign-bench-") as tmp:
        folder = Path(tmp)
        result["fsync_ms"] = fsync_ms(folder)
        with server_or_none(result, "postgres_skipped") as server:
            for case, (label, draws) in enumerate(CASES.items()):
                # quick: 2 workers x 8 batches, so that batches finish after both workers' first ones
                # (a batch's trials finish at one time stamp: throughput needs two such times; with
                # 4 each, a worker that built its network late could find the study all but done)
                n_trials = 64 if quick else (96 if draws <= 4 else 48)
                draws = 1 if quick else draws
                specs = {k: load_study(_study_file(folder, f"bench-{case}-{k}", "random", n_trials, batch, quick,
                                                   draws)) for k in (1, 2)}
                _prebuild(specs[1], batch)
                rows: dict[str, Any] = {}
                for storage in ("journal", "postgres"):
                    if storage == "postgres" and server is None:
                        continue
                    best: dict[int, dict[str, float]] = {}
                    for rep in range(1 if quick else repeats):  # alternate 1 and 2 workers; keep the best of each
                        result["cpu_reference"].append(cpu_reference(spin))
                        for k in (1, 2):
                            if storage == "journal":
                                url = f"journal:{folder}/journal-{case}-{k}-{rep}.log"
                            else:
                                url = server.create_database(f"bench_{case}_{k}_{rep}")
                            run = _measure(specs[k], url, k, folder)
                            if k not in best or run["trials_per_s"] > best[k]["trials_per_s"]:
                                best[k] = run
                    rows[storage] = {"1": best[1], "2": best[2], "ratio": best[2]["trials_per_s"] / best[1]["trials_per_s"]}
                result["cases"][label] = rows
        result["cpu_reference"].append(cpu_reference(spin))
    return result


def print_workers_table(result: dict[str, Any], console) -> None:
    from rich.table import Table

    table = Table(title=f"target-rate study: trials per second (sampler {result['sampler']}); "
                        "per trial: ms simulating, ms asking and telling, CPU ms (1 / 2 workers)")
    for column in ("draws", "storage", "1 worker", "2 workers", "ratio", "sim", "ask+tell", "CPU"):
        table.add_column(column, justify="left" if column in ("draws", "storage") else "right")
    for label, rows in result["cases"].items():
        for storage, r in rows.items():
            one, two = r["1"], r["2"]
            table.add_row(label, storage, f"{one['trials_per_s']:.2f}", f"{two['trials_per_s']:.2f}",
                          f"{r['ratio']:.2f}", f"{one['simulate_ms']:.0f} / {two['simulate_ms']:.0f}",
                          f"{one['storage_ms']:.0f} / {two['storage_ms']:.0f}",
                          f"{one['cpu_ms']:.0f} / {two['cpu_ms']:.0f}")
    console.print(table)
    if "postgres_skipped" in result:
        console.print(f"postgres skipped: {result['postgres_skipped']}")
    refs = result["cpu_reference"]
    console.print(f"this machine during the runs: two CPU-bound processes did {min(refs):.2f} to {max(refs):.2f} x "
                  f"the work of one (2.0: two free cores); an fsync'd append took {result['fsync_ms']:.1f} ms. "
                  "CPU per trial counts the workers and their simulations, not the PostgreSQL server.")
