"""Every registered backend runs the same tiny model (tests/data/conformance.yaml) to the answer
computed by hand here.

A backend this machine cannot run (``cuda_standalone`` without a GPU) is still built where its
compiler is (as tests/test_cuda.py does), then skipped with the reason.
"""

from __future__ import annotations

import math

import pytest

from codesign.backends import BACKENDS, check_runnable
from codesign.errors import CodesignError
from codesign.hardware import Gpu, Target
from codesign.models import ModelTask, load_model
from codesign.rules.spike_trace import SpikeTraceRule

from tests.conftest import ROOT

MODEL = ROOT / "tests/data/conformance.yaml"
DRIVE, A, STEPS, DT_S, W_INIT, W_MAX, TARGET_HZ = 2.0, 0.1, 100, 1e-3, 0.2, 1.0, 100.0  # as in the model file
RULES = [SpikeTraceRule({"pre_1": 1.0, "pre_w": -0.5}, eta=0.01),
         SpikeTraceRule({"pre_1": 3.0}, eta=0.05),  # climbs to w_max and is clipped there
         SpikeTraceRule({}, eta=0.01)]
#: What building a backend needs besides a C++ compiler, where a test can check it.
BUILD_NEEDS = {"cuda_standalone": "codesign.backends.cuda:find_cuda"}


def hand_spike_count() -> int:
    """Euler steps of dv/dt = (drive - v) / tau, v > 1 fires and resets to 0, counted step by step."""
    v, spikes = 0.0, 0
    for _ in range(STEPS):
        v += A * (DRIVE - v)
        if v > 1:
            spikes, v = spikes + 1, 0.0
    return spikes


def hand_weight(rule: SpikeTraceRule, spikes: int) -> float:
    """The weight after ``spikes`` presynaptic spikes: w += eta * (pre_1 + pre_w * w), clipped to [0, w_max]."""
    w = W_INIT
    for _ in range(spikes):
        w = min(max(w + rule.eta * (rule.coefficient("pre_1") + rule.coefficient("pre_w") * w), 0.0), W_MAX)
    return w


def test_the_hand_computed_answer_is_what_the_model_file_says():
    """14 spikes (every 7 steps) and, for the first rule, the closed form of the weight's recursion."""
    assert hand_spike_count() == 14 == STEPS // 7
    rule = RULES[0]
    ratio, fixed_point = 1 + rule.eta * rule.coefficient("pre_w"), -rule.coefficient("pre_1") / rule.coefficient("pre_w")
    assert math.isclose(hand_weight(rule, 14), fixed_point + (W_INIT - fixed_point) * ratio**14, rel_tol=1e-12)
    assert hand_weight(RULES[1], 14) == W_MAX and hand_weight(RULES[2], 14) == W_INIT


def _build_or_skip(task: ModelTask, backend: str, cannot_run: CodesignError) -> None:
    """Build (compile) the network where this machine can, then skip: it cannot run here."""
    import importlib

    need = BUILD_NEEDS.get(backend)
    if need is not None:
        module, _, function = need.partition(":")
        try:
            getattr(importlib.import_module(module), function)()
        except CodesignError as exc:
            pytest.skip(f"cannot build {backend} here ({exc.message}) nor run it ({cannot_run.message})")
    task.simulation(task.network(task.held_terms(task.candidates(RULES), None), len(RULES), 1))
    pytest.skip(f"{backend} built; it cannot run here: {cannot_run.message}")


@pytest.mark.parametrize("backend", [pytest.param(name, marks=[pytest.mark.cuda] if name in BUILD_NEEDS else [])
                                     for name in BACKENDS])
def test_every_backend_gives_the_hand_computed_spikes_and_weights(backend):
    # A GPU architecture given (ignored by CPU backends): CUDA code is then built without a GPU, and
    # code for 8.0 runs on newer GPUs too.
    target = Target(name=f"conformance-{backend}", backend=backend, gpu=Gpu(compute_capability=8.0))
    task = ModelTask(load_model(MODEL), target)
    try:
        check_runnable(target)
    except CodesignError as cannot_run:
        _build_or_skip(task, backend, cannot_run)
    spikes = hand_spike_count()
    evaluations = task.evaluate(RULES, seed=0)
    for rule, evaluation in zip(RULES, evaluations, strict=True):
        assert [round(rate * STEPS * DT_S, 9) for rate in evaluation.metrics["rates_hz"]] == [spikes] * 2  # draws
        assert evaluation.counts.spikes == spikes and evaluation.counts.learning_updates == spikes
        assert abs(evaluation.metrics["mean_weight"] - hand_weight(rule, spikes)) < 1e-9
        assert abs(evaluation.loss - (spikes / (STEPS * DT_S) / TARGET_HZ - 1) ** 2) < 1e-9
