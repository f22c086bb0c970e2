"""models/oja.yaml: its inputs, what known rules learn, and its Brian2 network against the NumPy reference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from codesign.hardware import load_target
from codesign.models import ModelTask, load_model
from codesign.models.spec import LibrarySpec
from tests.references.oja import reference_weights
from codesign.rules import PolynomialRule, named_rule
from codesign.schema import Where

from tests.conftest import ROOT

#: Short runs on the numpy runtime (the old task tests' sizes).
SMALL = {"n_inputs": 5, "duration": "3*second"}


def oja_task(constants: dict, draws: int, target: str = "cpu.yaml", covariance=None) -> ModelTask:
    model = load_model(ROOT / "models/oja.yaml").with_constants(constants, Where("test"), draws)
    if covariance is not None:
        stimulus = model.stimuli["stimulus"]
        params = {**stimulus.params, "covariance": covariance}
        model = dataclasses.replace(model, stimuli={"stimulus": LibrarySpec(stimulus.kind, params)})
    return ModelTask(model, load_target(ROOT / "hw_targets" / target))


def reference(task: ModelTask, rules, seed: int) -> np.ndarray:
    """The NumPy reference's final weights on the task's draws of ``seed``: (rules, draws, inputs)."""
    draw = task.inputs(seed)["stimulus"]
    steps, draws = draw.series.shape[0], task.model.draws
    x = draw.series.reshape(steps, draws, -1).transpose(1, 0, 2)
    return reference_weights(rules, x, draw.initial["plastic.w"][:, 0, :], task.model.dt_s * 1e3)


@pytest.fixture(scope="module")
def task() -> ModelTask:
    return oja_task(SMALL, draws=4)


def test_inputs_have_the_given_covariance_and_pc1():
    task = oja_task({"n_inputs": 3, "duration": "20*second"}, draws=2, covariance=[[2, 0, 0], [0, 1, 0], [0, 0, 0.5]])
    draw = task.inputs(0)["stimulus"]
    assert draw.series.shape == (20000, 2 * 3)
    x = draw.series.reshape(20000, 2, 3)
    for r in range(2):
        np.testing.assert_allclose(np.cov(x[:, r].T), np.diag([2, 1, 0.5]), atol=0.06)
    # The two draws are not the same series.
    assert np.corrcoef(x[:, 0, 0], x[:, 1, 0])[0, 1] < 0.05
    assert abs(draw.facts["eigenvectors"][0, :, 0] @ [1, 0, 0]) == pytest.approx(1.0)
    np.testing.assert_array_equal(draw.facts["eigenvalues"][1], [2, 1, 0.5])
    assert draw.initial["plastic.w"].shape == (2, 1, 3)
    np.testing.assert_array_equal(oja_task({"n_inputs": 3, "duration": "20*second"}, draws=2,
                                           covariance=[[2, 0, 0], [0, 1, 0], [0, 0, 0.5]]).inputs(0)["stimulus"].series,
                                  draw.series)


def test_random_covariances_span_the_top_eigenvalue_range():
    """models/oja.yaml: top eigenvalue in [0.5, 3] on a log scale, one stratum per draw; unit components."""
    task = oja_task({"n_inputs": 4, "duration": "0.01*second"}, draws=6)
    facts = task.inputs(1)["stimulus"].facts
    assert facts["eigenvectors"].shape == (6, 4, 4)
    np.testing.assert_allclose(np.linalg.norm(facts["eigenvectors"][:, :, 0], axis=1), 1.0)
    edges = 0.5 * 6.0 ** (np.arange(7) / 6)
    top = facts["eigenvalues"][:, 0]
    assert np.all((edges[:-1] <= top) & (top <= edges[1:])), top
    np.testing.assert_allclose(facts["eigenvalues"][:, 1] / top, 0.5)  # decay: 0.5
    for r in range(6):
        np.testing.assert_allclose(facts["cov"][r] @ facts["eigenvectors"][r],
                                   facts["eigenvectors"][r] * facts["eigenvalues"][r], atol=1e-12)


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


def test_named_candidates_take_the_studys_eta(task):
    named = task.named_candidates({"w": 2.5})
    assert set(named) == {"oja", "hebb", "anti_hebbian", "anti_oja", "zero"}
    assert named["oja"]["w"].coefficients == {"theta_021": -1.0, "theta_110": 1.0} and named["oja"]["w"].eta == 2.5


def test_diverging_rule_is_reported_not_raised(task):
    (blowup,) = task.evaluate([PolynomialRule({"theta_021": 1.0, "theta_000": 1.0}, eta=5.0)], seed=0)
    assert blowup.diverged
    assert blowup.loss == 10.0
    assert blowup.metrics["n_diverged"] > 0
    assert "NaN or infinite weights" in blowup.metrics["diverged_reason"]


def test_brian2_matches_the_numpy_reference(task):
    """Oja's rule perturbed in every term (bounded over the run): the numpy runtime and the reference
    do the same float operations but for the order of the sum over terms, so they agree to rounding."""
    rng = np.random.default_rng(3)
    terms = ["theta_000", "theta_001", "theta_021", "theta_110", "theta_111", "theta_200"]
    oja = {"theta_110": 1.0, "theta_021": -1.0}
    rules = [named_rule("oja", eta=5.0)] + [
        PolynomialRule({t: oja.get(t, 0.0) + rng.uniform(-0.3, 0.3) for t in terms}, eta=5.0) for _ in range(3)]
    evaluations = task.evaluate(rules, seed=4, terms=terms)
    expected = reference(task, rules, 4)
    assert np.all(np.isfinite(expected))
    assert not np.allclose(expected[1], expected[2])
    for evaluation, weights in zip(evaluations, expected):
        np.testing.assert_allclose(evaluation.arrays["weights"], weights, rtol=1e-12, atol=1e-14)


def test_batched_and_one_by_one_give_the_same_losses(task):
    rng = np.random.default_rng(0)
    terms = ["theta_001", "theta_021", "theta_110"]
    oja = {"theta_110": 1.0, "theta_021": -1.0}
    rules = [PolynomialRule({t: oja.get(t, 0.0) + rng.uniform(-0.5, 0.5) for t in terms}, eta=5.0) for _ in range(5)]
    batched = [e.loss for e in task.evaluate(rules, seed=2, terms=terms)]
    single = [task.evaluate([rule], seed=2, terms=terms)[0].loss for rule in rules]
    assert len(set(batched)) == 5 and max(batched) < 10.0
    # Each candidate's copies are computed alone: its neighbours in the batch change nothing.
    np.testing.assert_array_equal(batched, single)


def test_same_seed_same_result_and_other_seed_other_inputs(task):
    rule = [named_rule("oja", eta=5.0)]
    first = task.evaluate(rule, seed=5)[0].arrays["weights"]
    again = task.evaluate(rule, seed=5)[0].arrays["weights"]
    other = task.evaluate(rule, seed=6)[0].arrays["weights"]
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_plot_draws_each_draw(task, tmp_path):
    (evaluation,) = task.evaluate([named_rule("oja", eta=5.0)], seed=1)
    assert task.plot(evaluation, tmp_path / "oja.png", title="oja")
    assert (tmp_path / "oja.png").stat().st_size > 1000
