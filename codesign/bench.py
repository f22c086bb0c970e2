"""``codesign bench``: candidate evaluations per second, each way of running a task, in one run.

Throughput is measured in steady state (the best of a few timed batches after one untimed batch
that builds the network); build times are reported beside it. Ratios compare ways measured in the
same run on the same machine, which is what makes them meaningful on a shared, noisy machine.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from codesign.backends import clear_simulations
from codesign.hardware import Target

__all__ = ["run_benchmarks", "Row"]

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
    from codesign.rules import PolynomialRule
    from codesign.spec import load_study
    from codesign.tasks.oja import OjaTask, reference_weights

    spec = load_study(ROOT / "studies/oja.yaml")
    params = spec.task.params
    rng = np.random.default_rng(0)
    terms = spec.rule.searched
    rules = [PolynomialRule(dict(zip(terms, rng.uniform(-0.5, 0.5, len(terms)))), eta=spec.rule.learning_rate)
             for _ in range(batch)]
    make_task = lambda target: OjaTask(params, target)  # noqa: E731
    rows = [_naive_row(make_task, rules[:naive], seed=0)]
    rows += _batched_rows(make_task, rules, seed=0, repeats=repeats)
    inputs = OjaTask(params, _targets()["numpy"]).inputs(0)
    steady = _best_time(lambda: reference_weights(rules, inputs, params.dt_ms), repeats)
    rows.append(Row("NumPy reference (hand-written)", batch / steady))
    return rows


def bench_spiking(batch: int = 32, naive: int = 2, repeats: int = 2) -> list[Row]:
    from codesign.rules.spike_trace import SpikeTraceRule, vogels
    from codesign.tasks.target_rate import TargetRateParams, TargetRateTask, draw_spikes

    params = TargetRateParams(n_repeats=1, learn_s=1.0, measure_s=0.5)
    rng = np.random.default_rng(0)
    rules = [vogels()] + [SpikeTraceRule({"pre_1": -rng.uniform(0, 0.8), "pre_y": rng.uniform(0, 1),
                                          "post_x": rng.uniform(0, 1)}, tau_x_ms=rng.uniform(5, 40),
                                         tau_y_ms=rng.uniform(5, 40)) for _ in range(batch - 1)]
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


def run_benchmarks(quick: bool = False) -> dict[str, dict[str, Any]]:
    """Run both benchmarks; ``quick`` uses small batches (for tests of this code, not for numbers)."""
    if quick:
        oja = bench_oja(batch=8, naive=1, repeats=1)
        spiking = bench_spiking(batch=2, naive=1, repeats=1)
    else:
        oja, spiking = bench_oja(), bench_spiking()
    return {"oja": {"rows": oja, **summary(oja)}, "spiking": {"rows": spiking, **summary(spiking)}}


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
