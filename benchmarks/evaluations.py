"""Candidate evaluations per second, each way of running a model, in one run (``python -m benchmarks``).

Each table (:data:`BENCHES`) is a study's model file at a bench size, evaluated by the generic path
(:class:`codesign.models.ModelTask`) one network per candidate, batched on Brian2's runtime, and
batched on one C++ standalone build, beside a hand-written NumPy simulation of the same network
(``tests/references/``), the yardstick for what a CPU can do.

Throughput is measured in steady state (the best of a few timed batches after one untimed batch
that builds the network); build times are reported beside it. Ratios compare ways measured in the
same run on the same machine, which is what makes them meaningful on a shared, noisy machine.

The GPU table (:mod:`benchmarks.gpu`) runs the same tables' models on batches that fill a GPU.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from codesign.backends import clear_simulations
from codesign.hardware import Target

if TYPE_CHECKING:
    from codesign.models import ModelTask
    from codesign.spec import StudySpec

__all__ = ["run_benchmarks", "print_table", "Row", "ModelBench", "BENCHES", "best_time", "timed", "cpu_targets"]

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class Row:
    """One way of evaluating candidates: throughput in steady state, and its one-off build time."""

    way: str
    evals_per_s: float
    build_s: float | None = None


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cpu_targets() -> dict[str, Target]:
    return {
        "numpy": Target(name="bench-numpy", backend="runtime", codegen="numpy"),
        "cython": Target(name="bench-cython", backend="runtime", codegen="cython"),
        "cpp_standalone": Target(name="bench-standalone", backend="cpp_standalone"),
    }


def _batched_rows(make_task: Callable[[Target], Any], rules: list, seed: int, repeats: int) -> list[Row]:
    rows = []
    for way, target in cpu_targets().items():
        clear_simulations()
        task = make_task(target)
        build = timed(lambda: task.evaluate(rules, seed))
        steady = best_time(lambda: task.evaluate(rules, seed), repeats)
        label = "batched cpp_standalone, one build reused" if way == "cpp_standalone" else f"batched runtime {way}"
        rows.append(Row(label, len(rules) / steady, max(0.0, build - steady)))
    clear_simulations()
    return rows


def _naive_row(make_task: Callable[[Target], Any], rules: list, seed: int) -> Row:
    """One network per candidate, built (and its code generated) anew each time: the usual loop."""
    target = cpu_targets()["numpy"]

    def one_by_one() -> None:
        for rule in rules:
            task = make_task(target)
            task.evaluate([rule], seed)
            clear_simulations()

    return Row("naive: one network per candidate (numpy)", len(rules) / timed(one_by_one))


@dataclasses.dataclass(frozen=True)
class ModelBench:
    """One table: a study's model at a bench size, a batch of its candidates and its NumPy reference.

    The batch opens with the model's ``named`` candidates; the rest draw each of ``ranges`` (the
    rule's coefficients and extras such as ``tau_x_ms``) uniformly between its two values, from seed 0.
    """

    study: str
    #: The model's constants for the bench (over the study's), and its input draws per candidate.
    constants: Mapping[str, str]
    draws: int
    named: tuple[str, ...]
    ranges: Mapping[str, tuple[float, float]]
    #: The time to beat: a function of (task, candidates, seed) that returns the timed NumPy run.
    reference: Callable[[Any, list, int], Callable[[], Any]]
    batch: int
    naive: int
    repeats: int
    #: Candidates per batch in the GPU table: enough to fill a GPU.
    gpu_batch: int

    def spec(self) -> StudySpec:
        from codesign.spec import load_study

        return load_study(ROOT / self.study)

    def task(self, target: Target, spec: StudySpec | None = None) -> ModelTask:
        from codesign.models import ModelTask
        from codesign.schema import Where

        spec = spec or self.spec()
        model = spec.model.with_constants(dict(self.constants), Where(f"benchmarks ({self.study})"), self.draws)
        return ModelTask(model, target)

    def candidates(self, spec: StudySpec, task: ModelTask, batch: int) -> list:
        from codesign.rules import FAMILIES

        ((slot, rule),) = spec.rules.items()
        family = FAMILIES[rule.family]
        named = task.named_candidates(spec.etas)
        out = [named[name] for name in self.named][:batch]
        rng = np.random.default_rng(0)
        while len(out) < batch:
            # low + (high - low) u, as Generator.uniform draws it, and for a range given high to low too.
            values = {k: low + (high - low) * rng.random() for k, (low, high) in self.ranges.items()}
            extras = {k: values.pop(k) for k in family.extras if k in values}
            out.append({slot: family.make(values, eta=rule.learning_rate, **extras)})
        return out


def _oja_reference(task: ModelTask, candidates: list, seed: int) -> Callable[[], Any]:
    from tests.references.oja import reference_weights

    draw = task.inputs(seed)["stimulus"]
    steps, draws = draw.series.shape[0], task.model.draws
    x = draw.series.reshape(steps, draws, -1).transpose(1, 0, 2)
    rules = [c["w"] for c in candidates]
    return lambda: reference_weights(rules, x, draw.initial["plastic.w"][:, 0, :], task.model.dt_s * 1e3)


def _target_rate_reference(task: ModelTask, candidates: list, seed: int) -> Callable[[], Any]:
    from tests.references.target_rate import TargetRateNetwork, reference_run

    network = TargetRateNetwork.from_model(task.model)
    spikes = task.inputs(seed)["poisson"].spikes
    rules = [c["inhibitory"] for c in candidates]
    return lambda: reference_run(rules, network, spikes)


#: The tables of the benchmarks, by the name in its output. Oja: the demo study's network (5 inputs,
#: 8 draws of 4 s); spiking: the target-rate network (800 excitatory and 200 inhibitory Poisson inputs,
#: one draw of 1.5 s). GPU: 16,384 Oja candidates x 8 draws x 5 inputs = 655,360 synapses; 8,192 spiking
#: candidates x 1,000 synapses = 8.2 million synapses.
BENCHES: dict[str, ModelBench] = {
    "oja": ModelBench(
        study="studies/oja.yaml", constants={}, draws=8, named=(),
        ranges={t: (-0.5, 0.5) for t in ("theta_000", "theta_001", "theta_020", "theta_021", "theta_110",
                                         "theta_111", "theta_200")},
        reference=_oja_reference, batch=256, naive=3, repeats=3, gpu_batch=16384),
    "spiking": ModelBench(
        study="studies/target-rate.yaml", constants={"learn": "1*second", "measure": "0.5*second"}, draws=1,
        named=("vogels",), ranges={"pre_1": (0.0, -0.8), "pre_y": (0.0, 1.0), "post_x": (0.0, 1.0),
                                   "tau_x_ms": (5.0, 40.0), "tau_y_ms": (5.0, 40.0)},
        reference=_target_rate_reference, batch=32, naive=2, repeats=2, gpu_batch=8192),
}

#: Sizes of ``--quick``: checks that every way runs, not for numbers.
QUICK = {"batch": 4, "naive": 1, "repeats": 1}


def bench_model(bench: ModelBench) -> list[Row]:
    """Every way of evaluating one batch of ``bench``'s candidates, and its NumPy reference."""
    spec = bench.spec()
    make_task = functools.partial(bench.task, spec=spec)
    candidates = bench.candidates(spec, make_task(cpu_targets()["numpy"]), bench.batch)
    rows = [_naive_row(make_task, candidates[:bench.naive], seed=0)]
    rows += _batched_rows(make_task, candidates, seed=0, repeats=bench.repeats)
    reference = bench.reference(make_task(cpu_targets()["numpy"]), candidates, 0)
    rows.append(Row("NumPy reference (hand-written)", bench.batch / best_time(reference, bench.repeats)))
    return rows


def summary(rows: list[Row]) -> dict[str, float]:
    """The JSON keys: naive, batched (fastest runtime), standalone, reference (evaluations per second),
    and standalone_over_reference, the generic path's speed in units of the reference's."""
    by_way = {row.way: row.evals_per_s for row in rows}
    runtime = [v for k, v in by_way.items() if k.startswith("batched runtime")]
    standalone, reference = by_way["batched cpp_standalone, one build reused"], by_way["NumPy reference (hand-written)"]
    return {
        "naive": by_way["naive: one network per candidate (numpy)"],
        "batched": max(runtime),
        "standalone": standalone,
        "reference": reference,
        "standalone_over_reference": standalone / reference,
    }


def run_benchmarks(quick: bool = False) -> dict[str, dict[str, Any]]:
    """Run every table of :data:`BENCHES`; ``quick`` uses small batches (for tests, not for numbers)."""
    results: dict[str, dict[str, Any]] = {}
    for name, bench in BENCHES.items():
        rows = bench_model(dataclasses.replace(bench, **QUICK) if quick else bench)
        results[name] = {"rows": rows, **summary(rows)}
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
