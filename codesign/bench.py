"""``codesign bench``: candidate evaluations per second, each way of running a task, in one run.

Throughput is measured in steady state (the best of a few timed batches after one untimed batch
that builds the network); build times are reported beside it. Ratios compare ways measured in the
same run on the same machine, which is what makes them meaningful on a shared, noisy machine.

Where a GPU (and nvcc) is present, a GPU table follows: brian2cuda's ``cuda_standalone`` against
``cpp_standalone`` on the same batches, large enough to fill a GPU (thousands of candidates, millions
of synapses), as evaluations per second and as the ratio between the two (``codesign bench --gpu``,
``make bench-gpu``, runs that table only).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from codesign.backends import clear_simulations
from codesign.errors import CodesignError
from codesign.hardware import Gpu, Target

__all__ = ["run_benchmarks", "run_gpu_benchmarks", "gpu_available", "Row"]

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class Row:
    """One way of evaluating candidates: throughput in steady state, and its one-off build time."""

    way: str
    evals_per_s: float
    build_s: float | None = None
    note: str = ""


def _best_time(fn: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _targets() -> dict[str, Target]:
    return {
        "numpy": Target(name="bench-numpy", backend="runtime", codegen="numpy"),
        "cython": Target(name="bench-cython", backend="runtime", codegen="cython"),
        "cpp_standalone": Target(name="bench-standalone", backend="cpp_standalone"),
    }


def _batched_rows(make_task: Callable[[Target], Any], rules: list, seed: int, repeats: int) -> list[Row]:
    rows = []
    for way, target in _targets().items():
        clear_simulations()
        task = make_task(target)
        build = _timed(lambda: task.evaluate(rules, seed))
        steady = _best_time(lambda: task.evaluate(rules, seed), repeats)
        label = "batched cpp_standalone, one build reused" if way == "cpp_standalone" else f"batched runtime {way}"
        rows.append(Row(label, len(rules) / steady, max(0.0, build - steady)))
    clear_simulations()
    return rows


def _naive_row(make_task: Callable[[Target], Any], rules: list, seed: int) -> Row:
    """One network per candidate, built (and its code generated) anew each time: the usual loop."""
    target = _targets()["numpy"]

    def one_by_one() -> None:
        for rule in rules:
            task = make_task(target)
            task.evaluate([rule], seed)
            clear_simulations()

    return Row("naive: one network per candidate (numpy)", len(rules) / _timed(one_by_one))


def bench_oja(batch: int = 256, naive: int = 3, repeats: int = 3) -> list[Row]:
    from codesign.tasks.oja import OjaTask, reference_weights

    params, rules = _oja_rules(batch)
    make_task = lambda target: OjaTask(params, target)  # noqa: E731
    rows = [_naive_row(make_task, rules[:naive], seed=0)]
    rows += _batched_rows(make_task, rules, seed=0, repeats=repeats)
    inputs = OjaTask(params, _targets()["numpy"]).inputs(0)
    steady = _best_time(lambda: reference_weights(rules, inputs, params.dt_ms), repeats)
    rows.append(Row("NumPy reference (hand-written)", batch / steady))
    return rows


def bench_spiking(batch: int = 32, naive: int = 2, repeats: int = 2) -> list[Row]:
    from codesign.tasks.target_rate import TargetRateParams, TargetRateTask, draw_spikes

    params = TargetRateParams(n_repeats=1, learn_s=1.0, measure_s=0.5)
    rules = _spiking_rules(batch)
    make_task = lambda target: TargetRateTask(params, target)  # noqa: E731
    rows = [_naive_row(make_task, rules[:naive], seed=0)]
    rows += _batched_rows(make_task, rules, seed=0, repeats=repeats)
    try:
        from codesign.tasks.target_rate_reference import reference_run
    except ImportError:
        rows.append(Row("NumPy reference (hand-written)", float("nan"), note="not available"))
        return rows
    spikes = draw_spikes(params, 0)
    steady = _best_time(lambda: reference_run(rules, params, spikes), repeats)
    rows.append(Row("NumPy reference (hand-written)", batch / steady))
    return rows


#: Candidates per batch in the GPU table: enough to fill a GPU. Spiking: 8,192 candidates x 1,000
#: synapses = 8.2 million synapses; Oja: 16,384 candidates x 8 draws x 5 inputs = 655,360 synapses.
GPU_BATCH = {"spiking": 8192, "oja": 16384}


def gpu_available() -> tuple[bool, str]:
    """Whether the GPU table can run here (a GPU and nvcc), and if not, why."""
    from codesign.backends.cuda import find_cuda, gpu_status

    present, what = gpu_status()
    if not present:
        return False, what
    try:
        find_cuda()
    except CodesignError as exc:
        return False, exc.message
    return True, what


def _gpu_rows(make_task: Callable[[Target], Any], rules: list, seed: int, repeats: int) -> list[Row]:
    """cpp_standalone and cuda_standalone on the same batch; the GPU's architecture read from the GPU."""
    targets = {"cpp_standalone": Target(name="bench-standalone", backend="cpp_standalone"),
               "cuda_standalone": Target(name="bench-gpu", backend="cuda_standalone", gpu=Gpu(compute_capability=None))}
    rows = []
    for way, target in targets.items():
        clear_simulations()
        task = make_task(target)
        build = _timed(lambda: task.evaluate(rules, seed))
        steady = _best_time(lambda: task.evaluate(rules, seed), repeats)
        label = f"batched {way}, {len(rules)} per batch" + (" (GPU)" if way == "cuda_standalone" else "")
        rows.append(Row(label, len(rules) / steady, max(0.0, build - steady)))
    clear_simulations()
    return rows


def _spiking_rules(batch: int) -> list:
    from codesign.rules.spike_trace import SpikeTraceRule, vogels

    rng = np.random.default_rng(0)
    return [vogels()] + [SpikeTraceRule({"pre_1": -rng.uniform(0, 0.8), "pre_y": rng.uniform(0, 1),
                                         "post_x": rng.uniform(0, 1)}, tau_x_ms=rng.uniform(5, 40),
                                        tau_y_ms=rng.uniform(5, 40)) for _ in range(batch - 1)]


def _oja_rules(batch: int) -> tuple[Any, list]:
    from codesign.rules import PolynomialRule
    from codesign.spec import load_study

    spec = load_study(ROOT / "studies/oja.yaml")
    rng = np.random.default_rng(0)
    terms = spec.rule.searched
    return spec.task.params, [PolynomialRule(dict(zip(terms, rng.uniform(-0.5, 0.5, len(terms)))),
                                             eta=spec.rule.learning_rate) for _ in range(batch)]


def run_gpu_benchmarks(quick: bool = False, batch: dict[str, int] | None = None) -> dict[str, dict[str, Any]]:
    """The GPU table: cuda_standalone against cpp_standalone, per task, on batches that fill a GPU.

    Raises a CodesignError where there is no GPU or no nvcc. ``quick``: small batches (checks the
    code runs, not for numbers).
    """
    from codesign.tasks.oja import OjaTask
    from codesign.tasks.target_rate import TargetRateParams, TargetRateTask

    ready, why = gpu_available()
    if not ready:
        raise CodesignError(f"the GPU benchmark needs an NVIDIA GPU and nvcc: {why}", key="bench --gpu",
                            fix="run it on a GPU node (make bench-gpu), or use make bench for the CPU tables")
    sizes = {"spiking": 16, "oja": 16} if quick else {**GPU_BATCH, **(batch or {})}
    repeats = 1 if quick else 2
    spiking_params = TargetRateParams(n_repeats=1, learn_s=1.0, measure_s=0.5)
    oja_params, oja_rules = _oja_rules(sizes["oja"])
    results = {
        "spiking": _gpu_rows(lambda t: TargetRateTask(spiking_params, t), _spiking_rules(sizes["spiking"]), 0, repeats),
        "oja": _gpu_rows(lambda t: OjaTask(oja_params, t), oja_rules, 0, repeats),
    }
    out = {}
    for task, rows in results.items():
        standalone, gpu = rows[0].evals_per_s, rows[1].evals_per_s
        out[task] = {"rows": rows, "batch": sizes[task], "standalone": standalone, "gpu": gpu,
                     "gpu_over_standalone": gpu / standalone}
    return out


def print_gpu_table(results: dict[str, dict[str, Any]], console) -> None:
    from rich.table import Table

    table = Table(title="GPU: candidate evaluations per second, same batches on cpp_standalone and cuda_standalone")
    for column in ("task", "way", "evals/s", "x cpp_standalone", "build s"):
        table.add_column(column, justify="left" if column in ("task", "way") else "right")
    for task, result in results.items():
        for row in result["rows"]:
            table.add_row(task, row.way, f"{row.evals_per_s:.3g}", f"{row.evals_per_s / result['standalone']:.3g}",
                          "-" if row.build_s is None else f"{row.build_s:.2f}")
    console.print(table)


def summary(rows: list[Row]) -> dict[str, float]:
    """The JSON keys: naive, batched (fastest runtime), standalone, reference (evaluations per second)."""
    by_way = {row.way: row.evals_per_s for row in rows}
    runtime = [v for k, v in by_way.items() if k.startswith("batched runtime")]
    return {
        "naive": by_way["naive: one network per candidate (numpy)"],
        "batched": max(runtime),
        "standalone": by_way["batched cpp_standalone, one build reused"],
        "reference": by_way["NumPy reference (hand-written)"],
    }


def run_benchmarks(quick: bool = False, gpu: bool | None = None) -> dict[str, dict[str, Any]]:
    """Run both benchmarks, and the GPU table (key ``gpu``) where ``gpu`` is true, or by default
    where a GPU and nvcc are present; ``quick`` uses small batches (for tests, not for numbers)."""
    if quick:
        oja = bench_oja(batch=8, naive=1, repeats=1)
        spiking = bench_spiking(batch=2, naive=1, repeats=1)
    else:
        oja, spiking = bench_oja(), bench_spiking()
    results: dict[str, dict[str, Any]] = {"oja": {"rows": oja, **summary(oja)},
                                          "spiking": {"rows": spiking, **summary(spiking)}}
    if gpu if gpu is not None else gpu_available()[0]:
        results["gpu"] = run_gpu_benchmarks(quick=quick)
    return results


def print_table(name: str, result: dict[str, Any], console) -> None:
    from rich.table import Table

    rows: list[Row] = result["rows"]
    naive, reference = result["naive"], result["reference"]
    table = Table(title=f"{name}: candidate evaluations per second")
    for column in ("way", "evals/s", "x naive", "cost / reference", "build s"):
        table.add_column(column, justify="left" if column == "way" else "right")
    for row in rows:
        table.add_row(row.way, f"{row.evals_per_s:.3g}", f"{row.evals_per_s / naive:.3g}",
                      f"{reference / row.evals_per_s:.3g}" if np.isfinite(reference) else "-",
                      "-" if row.build_s is None else f"{row.build_s:.2f}")
    console.print(table)
