"""The benchmarks' evaluation tables (``python -m benchmarks``): each times its model and its NumPy reference on
the same work."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.evaluations import BENCHES, ModelBench
from codesign.backends import clear_simulations
from codesign.hardware import Target
from tests.conftest import ROOT

NUMPY = Target(name="test-numpy", backend="runtime", codegen="numpy")

#: Each table on a short run (the spiking network with 10x fewer inputs at 10x the rate, as it still fires).
SMALL = {
    "oja": {"constants": {"duration": "0.3*second"}, "draws": 2},
    "spiking": {"constants": {"learn": "0.3*second", "measure": "0.2*second", "n_excitatory": "80",
                              "n_inhibitory": "20", "rate_excitatory": "50*Hz", "rate_inhibitory": "100*Hz"},
                "draws": 2},
}


def small(name: str) -> ModelBench:
    bench = BENCHES[name]
    return dataclasses.replace(bench, constants={**bench.constants, **SMALL[name]["constants"]},
                               draws=SMALL[name]["draws"])


def test_candidates_open_with_the_named_ones_and_draw_the_rest_in_their_ranges():
    bench = BENCHES["spiking"]
    spec = bench.spec()
    task = bench.task(NUMPY, spec)
    candidates = bench.candidates(spec, task, 6)
    assert candidates[0] == task.named_candidates(spec.etas)["vogels"]
    rules = [c["inhibitory"] for c in candidates[1:]]
    assert len({r.tau_x_ms for r in rules}) == 5
    for rule in rules:
        assert -0.8 <= rule.coefficient("pre_1") <= 0 and 0 <= rule.coefficient("post_x") <= 1
        assert 5 <= rule.tau_y_ms <= 40 and rule.eta == spec.rule.learning_rate
    assert bench.candidates(spec, task, 6) == candidates  # the same batch in every run


@pytest.mark.parametrize("name", list(BENCHES))
def test_the_reference_simulates_the_candidates_the_model_evaluates(name):
    """The reference row times the same networks on the same input draws: its results are the model's."""
    bench = small(name)
    spec = bench.spec()
    clear_simulations()
    task = bench.task(NUMPY, spec)
    candidates = bench.candidates(spec, task, 3)
    evaluations = task.evaluate(candidates, seed=5)
    clear_simulations()
    result = bench.reference(task, candidates, 5)()
    counts, weights = result if isinstance(result, tuple) else (None, result)  # target rate: (counts, weights)
    assert weights.shape[:2] == (3, bench.draws)
    for k, evaluation in enumerate(evaluations):
        np.testing.assert_allclose(evaluation.arrays["weights"], weights[k], rtol=1e-9, atol=1e-12)
        if counts is not None:
            assert counts[k].sum() > 0
            np.testing.assert_array_equal(evaluation.metrics["rates_hz"], counts[k] / 0.2)


def test_make_bench_runs_the_benchmarks_package_from_the_repository_root():
    dry = subprocess.run(["make", "-s", "-n", "-C", str(ROOT), "bench"], capture_output=True, text=True).stdout
    assert ".venv/bin/python -m benchmarks" in dry.splitlines()[-1]
    gpu = subprocess.run(["make", "-s", "-n", "-C", str(ROOT), "bench-gpu"], capture_output=True, text=True).stdout
    assert gpu.splitlines()[-1].endswith("-m benchmarks --gpu")
    usage = subprocess.run([sys.executable, "-m", "benchmarks", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert usage.returncode == 0 and "--only {evaluations,demo,workers,bookkeeping,many-workers}" in usage.stdout


@pytest.mark.slow
def test_bench_quick_prints_every_way_for_every_table():
    """``python -m benchmarks --only evaluations --quick --json`` from the repository root: tiny batches, not
    for the numbers (minutes: it builds every table's network with Cython and C++)."""
    run = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "evaluations", "--quick", "--json"],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert set(result) >= set(BENCHES)
    for name in BENCHES:
        row = result[name]
        for key in ("naive", "batched", "standalone", "reference"):
            assert row[key] > 0, (name, key)
        assert row["standalone_over_reference"] == pytest.approx(row["standalone"] / row["reference"])


@pytest.mark.parametrize("stagger_s", [0.0, 0.7])
def test_busy_fraction_is_the_sleep_over_each_workers_cycle_in_step_or_not(stagger_s):
    """Four workers, six batches of 16 each: ask 0.15 s, sleep 2 s, tell 0.1 s (a cycle of 2.25 s), their
    trials finishing a few ms apart. In step (all batches ending together) or staggered, the figure is
    2 / 2.25 (the earlier count, of trials in one window common to all workers, gave 1.05 in step: it
    took in most of the clumps at both of its edges)."""
    from datetime import datetime, timedelta
    from types import SimpleNamespace

    from benchmarks.many_workers import busy_fraction
    from codesign.search.liveness import WORKER_ATTR

    t0, trials = datetime(2026, 1, 1), []
    for worker in range(4):
        for batch in range(6):
            created = t0 + timedelta(seconds=worker * stagger_s + batch * 2.25 + 0.15)
            trials += [SimpleNamespace(state=SimpleNamespace(name="COMPLETE"), datetime_start=created,
                                       datetime_complete=created + timedelta(seconds=2.1 + 0.001 * k),
                                       system_attrs={WORKER_ATTR: f"w{worker}"}) for k in range(16)]
    trials.append(SimpleNamespace(state=SimpleNamespace(name="FAIL"), datetime_start=t0, datetime_complete=t0,
                                  system_attrs={WORKER_ATTR: "w0"}))  # a surplus trial: not a batch of work
    assert busy_fraction(trials, 2.0) == pytest.approx(2.0 / 2.25, rel=1e-9)


def test_throughput_counts_only_while_every_worker_works():
    """Steady state: from the time every worker has finished its first batch to the time the first one
    finishes its last. Two workers that finish 10 trials per second each, one of which starts late and
    the other of which ends with a batch of its own, are at 20 per second."""
    from datetime import datetime, timedelta
    from types import SimpleNamespace

    from benchmarks.workers import throughput
    from codesign.search.liveness import WORKER_ATTR

    t0, state = datetime(2026, 1, 1), SimpleNamespace(name="COMPLETE")
    trial = lambda worker, s: SimpleNamespace(datetime_complete=t0 + timedelta(seconds=s), state=state,  # noqa: E731
                                              system_attrs={WORKER_ATTR: worker})
    early = [trial("a", 0.1 * i) for i in range(1, 31)]  # 0.1 s ... 3.0 s: alone before 1 s and after 2 s
    late = [trial("b", 1.0 + 0.1 * i) for i in range(11)]  # 1.0 s ... 2.0 s
    assert throughput(early + late) == pytest.approx(20.0)
    assert throughput(early) == pytest.approx(10.0)
