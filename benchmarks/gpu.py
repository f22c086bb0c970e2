"""The GPU table of the benchmarks (``python -m benchmarks --gpu``, ``make bench-gpu``).

brian2cuda's ``cuda_standalone`` against ``cpp_standalone`` on the same batches of each table of
:data:`benchmarks.evaluations.BENCHES`, large enough to fill a GPU (thousands of candidates, millions
of synapses), as evaluations per second and as the ratio between the two. ``python -m benchmarks``
adds it after the CPU tables where a GPU and nvcc are present.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from benchmarks.evaluations import BENCHES, Row, best_time, cpu_targets, timed
from codesign.backends import clear_simulations
from codesign.errors import CodesignError
from codesign.hardware import Gpu, Target

__all__ = ["gpu_available", "run_gpu_benchmarks", "print_gpu_table"]


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


def _gpu_rows(make_task: Callable[[Target], Any], candidates: list, seed: int, repeats: int) -> list[Row]:
    """cpp_standalone and cuda_standalone on the same batch; the GPU's architecture read from the GPU."""
    targets = {"cpp_standalone": Target(name="bench-standalone", backend="cpp_standalone"),
               "cuda_standalone": Target(name="bench-gpu", backend="cuda_standalone", gpu=Gpu(compute_capability=None))}
    rows = []
    for way, target in targets.items():
        clear_simulations()
        task = make_task(target)
        build = timed(lambda: task.evaluate(candidates, seed))
        steady = best_time(lambda: task.evaluate(candidates, seed), repeats)
        label = f"batched {way}, {len(candidates)} per batch" + (" (GPU)" if way == "cuda_standalone" else "")
        rows.append(Row(label, len(candidates) / steady, max(0.0, build - steady)))
    clear_simulations()
    return rows


def run_gpu_benchmarks(quick: bool = False, batch: dict[str, int] | None = None) -> dict[str, dict[str, Any]]:
    """The GPU table: cuda_standalone against cpp_standalone, per model, on batches that fill a GPU
    (``batch``: other sizes, by table name).

    Raises a CodesignError where there is no GPU or no nvcc. ``quick``: small batches (checks the
    code runs, not for numbers).
    """
    ready, why = gpu_available()
    if not ready:
        raise CodesignError(f"the GPU benchmark needs an NVIDIA GPU and nvcc: {why}", key="--gpu",
                            fix="run it on a GPU node (make bench-gpu), or use make bench for the CPU tables")
    out = {}
    for name, bench in BENCHES.items():
        size = 16 if quick else (batch or {}).get(name, bench.gpu_batch)
        spec = bench.spec()
        candidates = bench.candidates(spec, bench.task(cpu_targets()["numpy"], spec), size)
        rows = _gpu_rows(functools.partial(bench.task, spec=spec), candidates, 0, 1 if quick else 2)
        standalone, gpu = rows[0].evals_per_s, rows[1].evals_per_s
        out[name] = {"rows": rows, "batch": size, "standalone": standalone, "gpu": gpu,
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

