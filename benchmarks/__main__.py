"""``python -m benchmarks``: every table of the benchmarks, printed or as one JSON object.

A user error (no GPU for ``--gpu``) is one line on stderr and exit code 2, as with ``codesign``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from codesign.errors import CodesignError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="candidate evaluations per second: naive, batched runtime (numpy, cython), batched "
                    "cpp_standalone and a NumPy reference, on the Oja and the spiking target-rate models; where "
                    "a GPU is, cuda_standalone against cpp_standalone on large batches; then the Oja demo study's "
                    "trials per second with 1 and 2 workers against the raw rate of its build; then trials per second "
                    "of the spiking study with 1 and 2 local workers on the journal file and on a throwaway "
                    "PostgreSQL server, and where a trial's time goes; then the bookkeeping per trial on a null task "
                    "(no simulation) for batches of 1 to 4,096, next to raw Optuna; then the share of time 32 workers on one storage "
                    "spend simulating when a batch's simulation is a fixed sleep")
    parser.add_argument("--json", action="store_true", help="print a JSON object (evaluations and trials per second)")
    parser.add_argument("--quick", action="store_true", help="tiny batches: checks the benchmark runs, not for numbers")
    parser.add_argument("--only", choices=["evaluations", "demo", "workers", "bookkeeping", "many-workers"],
                        help="run one of the parts")
    parser.add_argument("--gpu", action="store_true", help="only the GPU table (cuda_standalone against "
                                                           "cpp_standalone on batches that fill a GPU); needs a GPU and nvcc")
    return parser


def _evaluation_tables(args: argparse.Namespace) -> dict[str, Any]:
    """The evaluation tables asked for, by name (``gpu``: the GPU table, by model)."""
    from benchmarks.evaluations import run_benchmarks
    from benchmarks.gpu import gpu_available, run_gpu_benchmarks

    if args.gpu:
        return {"gpu": run_gpu_benchmarks(quick=args.quick)}
    if args.only not in (None, "evaluations"):
        return {}
    results: dict[str, Any] = run_benchmarks(quick=args.quick)
    if gpu_available()[0]:
        results["gpu"] = run_gpu_benchmarks(quick=args.quick)
    return results


def _without_rows(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "rows"}


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from benchmarks.evaluations import print_table
    from benchmarks.gpu import print_gpu_table
    from benchmarks.workers import print_workers_table, run_workers_bench

    console = Console()
    out: dict[str, Any] = {}
    for table, result in _evaluation_tables(args).items():
        out[table] = {t: _without_rows(r) for t, r in result.items()} if table == "gpu" else _without_rows(result)
        if args.json:
            continue
        if table == "gpu":
            print_gpu_table(result, console)
        else:
            print_table(table, result, console)
    if not args.gpu and args.only in (None, "demo"):
        from benchmarks.demo import print_demo_table, run_demo_bench

        out["demo"] = run_demo_bench(quick=args.quick)
        if not args.json:
            print_demo_table(out["demo"], console)
    if not args.gpu and args.only in (None, "workers"):
        out["workers"] = run_workers_bench(quick=args.quick)
        if not args.json:
            print_workers_table(out["workers"], console)
    if not args.gpu and args.only in (None, "bookkeeping"):
        from benchmarks.bookkeeping import print_bookkeeping_table, run_bookkeeping_bench

        bookkeeping = run_bookkeeping_bench(quick=args.quick)
        out.update(bookkeeping)
        if not args.json:
            print_bookkeeping_table(bookkeeping, console)
    if not args.gpu and args.only in (None, "many-workers"):
        from benchmarks.many_workers import print_many_workers_table, run_many_workers_bench

        many = run_many_workers_bench(quick=args.quick)
        out.update(many)
        if not args.json:
            print_many_workers_table(many, console)
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(_parser().parse_args(argv))
    except CodesignError as exc:
        print(f"benchmarks: error: {exc.one_line()}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
