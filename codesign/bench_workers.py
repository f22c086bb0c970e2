"""``codesign bench``, workers part: trial throughput with 1 and 2 local workers, per storage.

The study is the spiking target-rate study of ``studies/target-rate.yaml`` (its network, input
draws and rule; C++ standalone), so that a trial is a real one. It runs with the random sampler:
without a population to share out, each worker evaluates whole batches of ``batch_size`` and the
comparison measures the workers and the storage, not how the simulation's cost depends on batch
size. One more run shows what CMA-ES costs: its population of 12 shared by 2 workers (batches of 6).

Throughput is counted in steady state, from the trials' own time stamps in the storage: from the
moment every worker has finished its first batch (which includes loading the compiled network) to
the last trial. Where the time goes comes from each worker's own accounting
(:class:`codesign.study.WorkerStats`): simulating, and asking and telling (Optuna's sampler and the
storage). Beside them, the same machine's speed-up for two plain CPU-bound processes over one says
what 2 workers could reach at best here (on a shared machine, less than 2).
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
    """Finished trials per second once every worker has finished its first batch (time stamps in the storage)."""
    from codesign.liveness import WORKER_ATTR

    done = sorted((t for t in trials if t.datetime_complete is not None and t.state.name in ("COMPLETE", "PRUNED")),
                  key=lambda t: t.datetime_complete)
    first: dict[str, Any] = {}
    for t in done:
        first.setdefault(t.system_attrs.get(WORKER_ATTR, "?"), t.datetime_complete)
    start = max(first.values())
    after = [t for t in done if t.datetime_complete > start]
    if len(after) < 2:
        return float("nan")
    return len(after) / (after[-1].datetime_complete - start).total_seconds()


def _study_file(folder: Path, name: str, sampler: str, n_trials: int, batch: int, quick: bool) -> Path:
    data = yaml.safe_load((ROOT / "studies/target-rate.yaml").read_text())
    data.update(name=name, sampler={"name": sampler}, n_trials=n_trials, batch_size=batch,
                target=str(ROOT / "hw_targets/cpu-standalone.yaml"))
    if quick:
        data["task"].update(n_repeats=1, learn_s=0.2, measure_s=0.2)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _prebuild(spec, batch: int) -> None:
    """Compile the network of this batch size before timing (it is cached for every process)."""
    from codesign.study import candidate, make_task, searched_terms

    rule = {p: 0.0 for p in spec.rule.searched}
    rule.update(tau_x_ms=20.0, tau_y_ms=20.0)
    make_task(spec).evaluate([candidate(spec, rule)], spec.seed, terms=searched_terms(spec), capacity=batch)


def _measure(spec, url: str, workers: int, folder: Path) -> dict[str, float]:
    from codesign.study import open_study, run_study

    stats_dir = folder / f"stats-{time.monotonic_ns()}"
    start = time.perf_counter()
    run_study(spec, url, workers=workers, stats_dir=stats_dir)
    wall = time.perf_counter() - start
    stats = [json.loads(p.read_text()) for p in stats_dir.glob("*.json")]
    trials = sum(s["trials"] for s in stats)
    return {
        "trials_per_s": throughput(open_study(spec, url).get_trials(deepcopy=False)),
        "simulate_ms": 1e3 * sum(s["evaluate_s"] for s in stats) / trials,
        "storage_ms": 1e3 * sum(s["storage_s"] for s in stats) / trials,
        "wall_s": wall,
    }


def run_workers_bench(quick: bool = False) -> dict[str, Any]:
    """Throughput with 1 and 2 workers on the journal and on a throwaway PostgreSQL server (if installed).

    ``quick``: a tiny network and few trials, to check that the benchmark runs (not for numbers).
    """
    from codesign.postgres import PostgresUnavailable, ThrowawayPostgres
    from codesign.spec import load_study

    n_trials, batch = (16, 4) if quick else (120, 12)
    result: dict[str, Any] = {"cpu_reference": cpu_reference(1_000_000 if quick else 6_000_000),
                              "study": f"target-rate network, random sampler, batches of {batch}", "storages": {}}
    with tempfile.TemporaryDirectory(prefix="codesign-bench-") as tmp:
        folder = Path(tmp)
        specs = {k: load_study(_study_file(folder, f"bench-{k}", "random", n_trials, batch, quick)) for k in (1, 2)}
        _prebuild(specs[1], batch)
        urls: dict[str, list[str]] = {"journal": [f"journal:{folder}/journal-{k}.log" for k in (1, 2)]}
        server = None
        try:
            try:
                server = ThrowawayPostgres().start()
                urls["postgres"] = [server.create_database(f"bench_{k}") for k in (1, 2)]
            except PostgresUnavailable as exc:
                result["storages"]["postgres"] = {"skipped": str(exc)}
            for storage, (url1, url2) in urls.items():
                one = _measure(specs[1], url1, 1, folder)
                two = _measure(specs[2], url2, 2, folder)
                result["storages"][storage] = {"1": one, "2": two, "ratio": two["trials_per_s"] / one["trials_per_s"]}
        finally:
            if server is not None:
                server.stop()
        cma = load_study(_study_file(folder, "bench-cmaes", "cmaes", n_trials, batch, quick))
        _prebuild(cma, -(-batch // 2))
        result["cmaes_2_workers"] = _measure(cma, f"journal:{folder}/journal-cmaes.log", 2, folder)
    return result


def print_workers_table(result: dict[str, Any], console) -> None:
    from rich.table import Table

    table = Table(title=f"workers: trials per second, {result['study']}")
    for column in ("storage", "1 worker", "2 workers", "ratio", "simulating ms/trial", "ask+tell ms/trial (1 / 2)"):
        table.add_column(column, justify="left" if column == "storage" else "right")
    for storage, r in result["storages"].items():
        if "skipped" in r:
            table.add_row(storage, "-", "-", "-", "-", f"skipped: {r['skipped']}")
            continue
        one, two = r["1"], r["2"]
        table.add_row(storage, f"{one['trials_per_s']:.2f}", f"{two['trials_per_s']:.2f}", f"{r['ratio']:.2f}",
                      f"{one['simulate_ms']:.0f}", f"{one['storage_ms']:.0f} / {two['storage_ms']:.0f}")
    console.print(table)
    cma = result["cmaes_2_workers"]
    one = result["storages"]["journal"]["1"]
    console.print(f"CMA-ES, its population shared by 2 workers (journal, batches of half the size): "
                  f"{cma['trials_per_s']:.2f} trials/s, {cma['trials_per_s'] / one['trials_per_s']:.2f} x one worker "
                  f"with whole batches; {cma['simulate_ms']:.0f} ms simulating per trial")
    console.print(f"this machine now: two CPU-bound processes do {result['cpu_reference']:.2f} x the work of one")
