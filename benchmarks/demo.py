"""The demo study against the raw rate of its own build, with 1 and 2 workers (``python -m benchmarks --only demo``).

The study is ``studies/oja.yaml`` as shipped (CMA-ES, batches of 12, C++ standalone, a journal file).
Four figures from one run, each the best of four alternating repeats (a shared machine only ever
makes a run slower, and on the 2-core development machine one worker's figure moved by a fifth between
runs a minute apart):

- **raw**: the same build evaluating batches of 12 of the study's candidates in a loop, as a worker
  does (``ModelTask.evaluate``), with no sampler and no storage: what the study would reach if its
  bookkeeping cost nothing;
- **1 worker**: ``codesign run`` trials per second in steady state (from the trials' time stamps,
  after every worker's first batch);
- **2 workers**: ``codesign run --workers 2``, whose CMA-ES population is then 24, 12 per worker;
- **2 studies side by side**: two one-worker studies, each on its own journal, at the same time:
  what this machine gives two workers that share nothing, the ceiling of the 2-worker figure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.workers import cpu_reference, throughput

__all__ = ["run_demo_bench", "print_demo_table"]

ROOT = Path(__file__).resolve().parent.parent

#: ``--quick``: a short network and few trials, to check that the part runs (not for numbers).
QUICK = {"constants": {"duration": "0.3*second"}, "draws": 2, "n_trials": 48}


def _study_file(folder: Path, name: str, quick: bool) -> Path:
    data = yaml.safe_load((ROOT / "studies/oja.yaml").read_text())
    data.update(name=name, model=str(ROOT / data["model"]), target=str(ROOT / data["target"]))
    if quick:
        data.update(QUICK)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def raw_rate(spec, batches: int) -> float:
    """Evaluations per second of the study's build on batches of its size, without sampler or storage."""
    from codesign.search.space import candidate, distributions, network_terms
    from codesign.search.study import TRAIN_SEED_OFFSET, make_task

    task, space = make_task(spec), distributions(spec)
    rng = np.random.default_rng(0)
    draw = lambda: [candidate(spec, {name: rng.uniform(d.low, d.high) for name, d in space.items()})  # noqa: E731
                    for _ in range(spec.batch_size)]
    evaluate = lambda batch: task.evaluate(batch, spec.seed + TRAIN_SEED_OFFSET, terms=network_terms(spec),  # noqa: E731
                                           capacity=spec.batch_size)
    evaluate(draw())  # builds (or loads) the network
    work = [draw() for _ in range(batches)]
    start = time.perf_counter()
    for batch in work:
        evaluate(batch)
    return batches * spec.batch_size / (time.perf_counter() - start)


def _run(path: Path, url: str, workers: int) -> float:
    from codesign.search.launcher import run_study
    from codesign.spec import load_study

    return throughput(run_study(load_study(path), url, workers=workers).get_trials(deepcopy=False))


def _side_by_side(paths: list[Path], urls: list[str]) -> float:
    """Trials per second of one-worker studies run at the same time, each in a ``codesign worker`` process."""
    from codesign.search.study import open_study
    from codesign.search.storage import ENV_VAR
    from codesign.spec import load_study

    procs = [subprocess.Popen([sys.executable, "-m", "codesign", "worker", str(p), "--worker-index", "0", "--quiet"],
                              env={**os.environ, ENV_VAR: u}, cwd=p.parent) for p, u in zip(paths, urls)]
    for proc in procs:
        proc.wait()
    return sum(throughput(open_study(load_study(p), u).get_trials(deepcopy=False)) for p, u in zip(paths, urls))


def run_demo_bench(quick: bool = False, repeats: int = 4) -> dict[str, Any]:
    """``{"raw_per_s", "one_worker_per_s", "two_workers_per_s", "side_by_side_per_s", ratios, ...}``."""
    from codesign.spec import load_study

    best = {"raw_per_s": 0.0, "one_worker_per_s": 0.0, "two_workers_per_s": 0.0, "side_by_side_per_s": 0.0}
    references, n_trials = [], 0
    with tempfile.TemporaryDirectory(prefix="codesign-demo-") as tmp:
        folder = Path(tmp)
        for rep in range(1 if quick else repeats):
            references.append(cpu_reference(1_000_000 if quick else 6_000_000))
            paths = {k: _study_file(folder, f"demo-{k}-{rep}", quick) for k in ("one", "two", "left", "right")}
            url = lambda k: f"journal:{folder}/{k}-{rep}.log"  # noqa: E731
            n_trials = load_study(paths["one"]).n_trials
            runs = {"raw_per_s": lambda: raw_rate(load_study(paths["one"]), 8 if quick else 40),
                    "one_worker_per_s": lambda: _run(paths["one"], url("one"), 1),
                    "two_workers_per_s": lambda: _run(paths["two"], url("two"), 2),
                    "side_by_side_per_s": lambda: _side_by_side([paths["left"], paths["right"]],
                                                                [url("left"), url("right")])}
            for key, run in runs.items():
                best[key] = max(best[key], run())
    one = best["one_worker_per_s"]
    return {**best, "one_worker_over_raw": one / best["raw_per_s"], "two_workers_over_one": best["two_workers_per_s"] / one,
            "side_by_side_over_one": best["side_by_side_per_s"] / one, "cpu_reference": references, "n_trials": n_trials}


def print_demo_table(result: dict[str, Any], console) -> None:
    from rich.table import Table

    one = result["one_worker_per_s"]
    table = Table(title=f"Oja demo study ({result['n_trials']} trials, CMA-ES, batches of 12, C++ standalone, journal)")
    for column in ("run", "per second", "ratio"):
        table.add_column(column, justify="left" if column == "run" else "right")
    table.add_row("raw: the build on batches of 12, no sampler or storage", f"{result['raw_per_s']:.0f}", "1.00")
    table.add_row("1 worker (trials)", f"{one:.0f}", f"{result['one_worker_over_raw']:.2f} x raw")
    table.add_row("2 workers, population 24 (trials)", f"{result['two_workers_per_s']:.0f}",
                  f"{result['two_workers_over_one']:.2f} x 1 worker")
    table.add_row("2 one-worker studies side by side (trials)", f"{result['side_by_side_per_s']:.0f}",
                  f"{result['side_by_side_over_one']:.2f} x 1 worker")
    console.print(table)
    refs = result["cpu_reference"]
    console.print(f"this machine during the runs: two CPU-bound processes did {min(refs):.2f} to {max(refs):.2f} x "
                  "the work of one (2.0: two free cores)")
