from __future__ import annotations

import numpy as np
import pytest

from codesign.hardware import load_target
from codesign.rules import PolynomialRule, named_rule
from codesign.tasks.oja import OjaParams, OjaTask, draw_inputs, reference_weights

from conftest import ROOT


@pytest.fixture(scope="module")
def task() -> OjaTask:
    return OjaTask(OjaParams(n_inputs=5, n_repeats=4, duration_s=3.0), load_target(ROOT / "hw_targets/cpu.yaml"))


def test_inputs_have_the_drawn_covariance_and_pc1():
    params = OjaParams(n_inputs=3, n_repeats=2, duration_s=20.0, covariance=[[2, 0, 0], [0, 1, 0], [0, 0, 0.5]])
    inputs = draw_inputs(params, seed=0)
    assert inputs.x.shape == (2, 20000, 3)
    empirical = np.cov(inputs.x[0].T)
    np.testing.assert_allclose(empirical, np.diag([2, 1, 0.5]), atol=0.06)
    assert abs(inputs.pc1[0] @ [1, 0, 0]) == pytest.approx(1.0)
    np.testing.assert_array_equal(draw_inputs(params, 0).x, inputs.x)


def test_random_covariances_span_the_top_eigenvalue_range():
    params = OjaParams(n_inputs=4, n_repeats=6, duration_s=0.01, top_eigenvalue=(0.5, 3.0))
    inputs = draw_inputs(params, seed=1)
    assert inputs.pc1.shape == (6, 4)
    np.testing.assert_allclose(np.linalg.norm(inputs.pc1, axis=1), 1.0)


def test_oja_learns_pc1_and_its_opposites_do_not(task):
    rules = [named_rule(n, eta=5.0) for n in ("oja", "anti_oja", "zero", "hebb")]
    oja, anti, zero, hebb = task.evaluate(rules, seed=11)
    assert oja.loss < 0.15
    assert oja.metrics["abs_cos_pc1"] > 0.99
    assert oja.metrics["weight_norm"] == pytest.approx(1.0, abs=0.05)
    assert anti.loss > 0.9
    assert zero.loss > 0.9
    # Plain Hebb finds the direction but its norm runs away.
    assert hebb.metrics["abs_cos_pc1"] > 0.99
    assert hebb.loss > 5


def test_diverging_rule_is_reported_not_raised(task):
    (blowup,) = task.evaluate([PolynomialRule({"theta_021": 1.0, "theta_000": 1.0}, eta=5.0)], seed=0)
    assert blowup.diverged
    assert blowup.loss == 10.0
    assert blowup.metrics["n_diverged"] > 0


def test_brian2_matches_the_numpy_reference(task):
    rules = [named_rule("oja", eta=5.0), PolynomialRule({"theta_110": 0.7, "theta_021": -0.9, "theta_001": 0.1,
                                                          "theta_200": 0.05}, eta=5.0)]
    evaluations = task.evaluate(rules, seed=4, terms=["theta_001", "theta_021", "theta_110", "theta_200"])
    expected = reference_weights(rules, task.inputs(4), task.params.dt_ms)
    for evaluation, weights in zip(evaluations, expected):
        np.testing.assert_allclose(evaluation.arrays["weights"], weights, rtol=1e-9, atol=1e-12)


def test_batched_and_one_by_one_give_the_same_losses(task):
    rng = np.random.default_rng(0)
    terms = ["theta_001", "theta_021", "theta_110"]
    rules = [PolynomialRule(dict(zip(terms, rng.uniform(-1, 1, 3))), eta=5.0) for _ in range(5)]
    batched = [e.loss for e in task.evaluate(rules, seed=2, terms=terms)]
    single = [task.evaluate([rule], seed=2, terms=terms)[0].loss for rule in rules]
    np.testing.assert_allclose(batched, single, rtol=1e-12)


def test_same_seed_same_result_and_other_seed_other_inputs(task):
    rule = [named_rule("oja", eta=5.0)]
    first = task.evaluate(rule, seed=5)[0].arrays["weights"]
    again = task.evaluate(rule, seed=5)[0].arrays["weights"]
    other = task.evaluate(rule, seed=6)[0].arrays["weights"]
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
