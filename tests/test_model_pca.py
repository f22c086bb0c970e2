"""models/pca-network.yaml: Oja + anti-Hebbian rules find the top-k principal subspace, decorrelated;
its Brian2 network against the NumPy reference (tests/references/pca.py)."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from codesign.backends import builds, clear_simulations
from codesign.errors import SpecError
from codesign.hardware import load_target
from codesign.models import ModelTask, load_model
from codesign.models.pca import network_map, principal_angles
from codesign.models.spec import LibrarySpec
from tests.references.pca import FF, LAT, PcaRun, reference_run
from codesign.rules import PolynomialRule
from codesign.schema import Where
from codesign.search.study import EVAL_SEED_OFFSET

from tests.conftest import ROOT

ETAS = {FF: 1.0, LAT: 1.0}
#: Short runs for the comparisons with the reference; the science tests use the model's own constants.
SHORT = {"n_inputs": 6, "n_outputs": 3, "duration": "1*second"}
FF_TERMS = ("theta_001", "theta_021", "theta_110", "theta_200")
LAT_TERMS = ("theta_001", "theta_020", "theta_110")
TERMS = {FF: FF_TERMS, LAT: LAT_TERMS}


def pca_task(constants: dict, draws: int, target: str = "cpu.yaml") -> ModelTask:
    model = load_model(ROOT / "models/pca-network.yaml").with_constants(constants, Where("test"), draws)
    return ModelTask(model, load_target(ROOT / "hw_targets" / target))


def random_candidates(seed: int, size: int = 4) -> list[dict[str, PolynomialRule]]:
    """Oja + anti-Hebbian with random perturbations of every term: varied, and bounded over a second."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(size):
        ff = {"theta_110": 1.0, "theta_021": -1.0}
        ff = {t: ff.get(t, 0.0) + rng.uniform(-0.5, 0.5) for t in FF_TERMS}
        lat = {t: (-1.0 if t == "theta_110" else 0.0) + rng.uniform(-0.5, 0.5) for t in LAT_TERMS}
        out.append({FF: PolynomialRule(ff, eta=2.0), LAT: PolynomialRule(lat, eta=2.0)})
    return out


def final_weights(task: ModelTask, candidates, seed: int) -> PcaRun:
    evaluations = task.evaluate(candidates, seed, terms=TERMS)
    return PcaRun(*(np.array([e.arrays[name] for e in evaluations]) for name in ("w", "m", "stable_s")))


def reference(task: ModelTask, candidates, seed: int) -> PcaRun:
    """The NumPy reference on the task's draws of ``seed``."""
    draw = task.inputs(seed)["stimulus"]
    steps, draws = draw.series.shape[0], task.model.draws
    x = draw.series.reshape(steps, draws, -1).transpose(1, 0, 2)
    loss = task.loss.params
    return reference_run(candidates, x, draw.initial["feedforward.w"], draw.initial["lateral.m"],
                         task.model.dt_s * 1e3, loss.passes, loss.relaxation)


@pytest.fixture(scope="module")
def runtime_task() -> ModelTask:
    return pca_task(SHORT, draws=2)


@pytest.fixture(scope="module")
def full_task() -> ModelTask:
    """The model's own constants (8 inputs, 3 outputs, 20 s, 6 draws) on the numpy runtime."""
    return pca_task({}, draws=6)


def test_two_slots_and_named_candidates(runtime_task):
    assert runtime_task.slots == {"feedforward": "polynomial", "lateral": "polynomial"}
    named = runtime_task.named_candidates({FF: 3.0, LAT: 0.5})
    assert {"oja+anti_hebbian", "oja+zero", "hebb+anti_hebbian", "zero+anti_hebbian"} == set(named)
    oja_ah = named["oja+anti_hebbian"]
    assert oja_ah[FF].coefficients == {"theta_021": -1.0, "theta_110": 1.0} and oja_ah[FF].eta == 3.0
    assert oja_ah[LAT].coefficients == {"theta_110": -1.0} and oja_ah[LAT].eta == 0.5
    assert named["oja+zero"][LAT].coefficients == {}


def test_inputs_have_a_gap_below_the_top_k_eigenvalues():
    task = pca_task({"duration": "0.01*second"}, draws=5)
    draw = task.inputs(3)["stimulus"]
    k = 3
    assert draw.series.shape == (10, 5 * 8)
    assert draw.initial["feedforward.w"].shape == (5, 3, 8) and draw.initial["lateral.m"].shape == (5, 3, 3)
    for r in range(5):
        values = draw.facts["eigenvalues"][r]
        assert np.all(np.diff(values) < 0)
        assert values[k] / values[k - 1] == pytest.approx(0.25)  # spectrum.gap
        vectors = draw.facts["eigenvectors"][r]
        np.testing.assert_allclose(draw.facts["cov"][r] @ vectors, vectors * values, atol=1e-12)
    np.testing.assert_array_equal(task.inputs(3)["stimulus"].series, draw.series)


def test_a_subspace_the_inputs_cannot_define_is_refused():
    with pytest.raises(SpecError, match="gap_after"):
        pca_task({"n_inputs": 3, "n_outputs": 3}, draws=2)
    with pytest.raises(SpecError, match="unique"):
        pca_task({"n_inputs": 3, "n_outputs": 4}, draws=2)
    model = load_model(ROOT / "models/pca-network.yaml").with_constants({"n_inputs": 3, "n_outputs": 2}, Where("test"))
    stimulus = model.stimuli["stimulus"]
    same = LibrarySpec("gaussian", {**stimulus.params, "covariance": [[2, 0, 0], [0, 1, 0], [0, 0, 1]]})
    with pytest.raises(SpecError, match="not unique") as caught:
        ModelTask(dataclasses.replace(model, stimuli={"stimulus": same}), load_target(ROOT / "hw_targets/cpu.yaml"))
    assert caught.value.key == "stimuli.stimulus.covariance"


def test_angles_count_a_collapsed_direction_as_missing():
    basis = np.eye(4)[:, :2]
    np.testing.assert_allclose(principal_angles(np.array([[1.0, 0, 0, 0], [0, 2.0, 0, 0]]), basis, 0.05), 0.0,
                               atol=1e-12)
    # Both rows along the first axis but for a tiny residual: the second direction is absent.
    collapsed = np.array([[1.0, 0, 0, 0], [1.0, 1e-3, 0, 0]])
    np.testing.assert_allclose(principal_angles(collapsed, basis, 0.05), [0.0, np.pi / 2], atol=1e-12)
    np.testing.assert_allclose(principal_angles(np.array([[0, 0, 1.0, 0], [0, 0, 0, 1.0]]), basis, 0.05),
                               [np.pi / 2] * 2)


def test_network_map_approaches_the_linear_solve():
    rng = np.random.default_rng(0)
    m = rng.normal(0, 0.3, (3, 3)) * (1 - np.eye(3))
    m = (m + m.T) / 2
    w = rng.normal(0, 1, (3, 5))
    np.testing.assert_allclose(network_map(w, m, 60, 0.6), np.linalg.solve(np.eye(3) - m, w), rtol=1e-9)


def test_brian2_matches_the_numpy_reference(runtime_task):
    named = runtime_task.named_candidates({FF: 2.0, LAT: 2.0})
    candidates = [named["oja+anti_hebbian"], named["oja+zero"]] + random_candidates(0)
    w, m, stable = final_weights(runtime_task, candidates, seed=4)
    w_ref, m_ref, stable_ref = reference(runtime_task, candidates, 4)
    assert np.all(np.isfinite(w_ref)) and np.all(np.isfinite(m_ref))
    # The same float operations but for the order of some sums: rounding apart (measured: 3e-16).
    np.testing.assert_allclose(w, w_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m, m_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(stable, stable_ref)
    np.testing.assert_allclose(stable, 1.0, rtol=1e-9)  # nothing blew up
    # No self-connections: the diagonal of M stays zero, though the drawn initial M has one.
    np.testing.assert_array_equal(m[..., np.arange(3), np.arange(3)], 0.0)
    assert np.all(runtime_task.inputs(4)["stimulus"].initial["lateral.m"][:, np.arange(3), np.arange(3)] != 0.0)


def test_brian2_and_the_reference_agree_on_when_a_rule_blows_up(runtime_task):
    blowup = [{FF: PolynomialRule({"theta_110": 1.0, "theta_021": -1.0}, eta=2.0),
               LAT: PolynomialRule({"theta_110": 1.0, "theta_020": 1.0}, eta=c)} for c in (2.0, 5.0)]
    w, m, stable = final_weights(runtime_task, blowup, seed=4)
    w_ref, m_ref, stable_ref = reference(runtime_task, blowup, 4)
    assert not np.all(np.isfinite(w_ref))
    np.testing.assert_array_equal(np.isfinite(w), np.isfinite(w_ref))
    np.testing.assert_allclose(stable, stable_ref, rtol=1e-12)
    assert np.all(stable_ref < 1.0)
    # The faster lateral drift blows up earlier, and the loss says so.
    assert stable_ref[1].min() < stable_ref[0].min()
    losses = [e.loss for e in runtime_task.evaluate(blowup, seed=4, terms=TERMS)]
    assert 2.0 < losses[0] < losses[1] <= 10.0


def test_batched_and_one_by_one_give_the_same_losses(runtime_task):
    candidates = random_candidates(1, size=3)
    batched = [e.loss for e in runtime_task.evaluate(candidates, 2, terms=TERMS, capacity=4)]
    single = [runtime_task.evaluate([c], 2, terms=TERMS, capacity=4)[0].loss for c in candidates]
    assert len(set(batched)) == 3
    np.testing.assert_array_equal(batched, single)


def test_oja_and_anti_hebbian_find_the_decorrelated_top_subspace(full_task):
    named = full_task.named_candidates(ETAS)
    names = ["oja+anti_hebbian", "oja+zero", "hebb+anti_hebbian", "zero+anti_hebbian"]
    for seed in (EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + 1):  # never used for training by a study
        right, no_lateral, hebb, no_feedforward = full_task.evaluate([named[n] for n in names], seed)
        assert not right.diverged
        assert max(right.metrics["principal_angles_deg"]) < 10.0
        assert right.metrics["max_output_correlation"] < 0.1
        assert right.loss < 0.15
        assert right.metrics["ff_weight_norm"] == pytest.approx(1.0, abs=0.05)
        # Without lateral plasticity every output goes to PC1: fully correlated, two directions missing.
        assert no_lateral.metrics["max_output_correlation"] > 0.95
        assert no_lateral.metrics["principal_angles_deg"][-1] == 90.0
        assert no_lateral.metrics["mean_principal_angles_deg"][-1] > 45.0
        assert no_lateral.loss > 1.0
        # Plain Hebb: the feed-forward weights run away.
        assert hebb.diverged and hebb.loss > 2.0
        # Lateral plasticity alone decorrelates a random subspace.
        assert max(no_feedforward.metrics["principal_angles_deg"]) > 30.0
        assert no_feedforward.loss > 0.3


def test_diverging_rule_is_reported_not_raised(runtime_task):
    blowup = {FF: PolynomialRule({"theta_021": 1.0, "theta_000": 1.0}, eta=5.0),
              LAT: PolynomialRule({"theta_110": -1.0}, eta=5.0)}
    (evaluation,) = runtime_task.evaluate([blowup], seed=0)
    assert evaluation.diverged
    assert evaluation.metrics["stable_fraction"] < 0.2  # blew up early in the run ...
    assert 8.0 < evaluation.loss <= 10.0  # ... so its loss is near the cap
    assert evaluation.metrics["diverged_reason"] == "NaN or infinite weights"
    assert evaluation.metrics["n_diverged"] > 0
    assert len(evaluation.metrics["principal_angles_deg"]) == 3


def test_plot_draws_each_draw(runtime_task, tmp_path):
    (evaluation,) = runtime_task.evaluate([runtime_task.named_candidates(ETAS)["oja+anti_hebbian"]], seed=1)
    assert runtime_task.plot(evaluation, tmp_path / "pca.png", title="oja + anti-Hebbian")
    assert (tmp_path / "pca.png").stat().st_size > 1000


def test_standalone_compiles_once_and_matches_the_numpy_runtime(monkeypatch):
    from brian2.devices.cpp_standalone.device import CPPStandaloneDevice

    clear_simulations()
    try:
        standalone = pca_task(SHORT, draws=2, target="cpu-standalone.yaml")
        runtime = pca_task(SHORT, draws=2)
        before = builds()
        first = final_weights(standalone, random_candidates(2), seed=5)  # builds and compiles
        assert builds().networks - before.networks == 1

        def forbidden(*args, **kwargs):
            raise AssertionError("a later batch tried to generate or compile code")

        for method in ("build", "code_object", "compile_source", "network_run"):
            monkeypatch.setattr(CPPStandaloneDevice, method, forbidden)
        second = final_weights(standalone, random_candidates(3), seed=6)  # new rules and inputs as run_args
        monkeypatch.undo()
        for got, candidates, seed in ((first, random_candidates(2), 5), (second, random_candidates(3), 6)):
            want = final_weights(runtime, candidates, seed)
            for g, r in zip(got, want):
                assert np.all(np.isfinite(r))
                np.testing.assert_allclose(g, r, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(got.w, reference(standalone, candidates, seed).w, rtol=1e-9, atol=1e-12)
    finally:
        clear_simulations()


@pytest.mark.slow
def test_study_finds_oja_and_anti_hebbian(workdir):
    """The study's claim: from random rules, CMA-ES finds an Oja-like and an anti-Hebbian rule."""
    from codesign.report import best_summary, evaluate_candidate
    from codesign.spec import load_study
    from codesign.search.launcher import run_study
    from codesign.search.space import candidate

    shutil.copy(ROOT / "studies/pca-network.yaml", workdir / "studies/pca-network.yaml")
    spec = load_study("studies/pca-network.yaml")
    study = run_study(spec)
    summary = best_summary(spec, study)
    normalised = summary["normalised"]
    ff = {t.split(".", 1)[1]: v for t, v in normalised.items() if t.startswith("feedforward.")}
    lat = {t.split(".", 1)[1]: v for t, v in normalised.items() if t.startswith("lateral.")}
    # Oja-like feed-forward rule: +x y - y^2 w dominate after dividing by |theta_110|.
    assert ff["theta_110"] == 1.0
    assert ff["theta_021"] < -0.5
    assert all(abs(v) < abs(ff["theta_021"]) for t, v in ff.items() if t not in ("theta_110", "theta_021")), ff
    # Anti-Hebbian lateral rule: -y_i y_j dominates (the largest term; a growth term bounded by -y^2 w
    # is left to the loss, which constrains directions: theta_001 = +0.55 and theta_021 = -0.48 here).
    assert lat["theta_110"] == -1.0
    assert all(abs(v) < 1.0 for t, v in lat.items() if t != "theta_110"), lat
    held_out, _ = evaluate_candidate(spec, candidate(spec, study.best_params))
    assert not held_out.diverged
    assert max(held_out.metrics["principal_angles_deg"]) < 10.0
    assert held_out.metrics["max_output_correlation"] < 0.1
@pytest.mark.science
def test_study_on_a_smaller_budget_finds_a_hebbian_and_an_anti_hebbian_rule(shortened_study):
    """The PCA study's claim in make test: studies/pca-network.yaml (random rules for both slots,
    9 searched terms, 6 input draws of 20 s, C++ standalone) with 1,200 trials (100 CMA-ES
    generations) instead of 1,500.

    The loss sees only directions and correlations, so it pins down what changes them: the Hebbian
    feed-forward term and a normalising -y^2 W (without which W diverges), the two feed-forward
    distractors that bias directions (020 and 200: here below 0.15), and an anti-Hebbian lateral
    term that dominates the lateral rule. It hardly sees what only rescales W's rows: theta_001
    (growth or decay) and the size of theta_021. The full test also bounds those (theta_021 < -0.5,
    every other term below |theta_021|), which 1,200 trials do not settle: theta_021 was -0.48,
    -0.34 and -0.42 on study seeds 2, 3 and 7, and on seed 1 theta_001 was 0.76 against theta_021
    -1.16 (0.93 against -0.75 at 840 trials). The lateral rule's other terms are below 1
    (anti-Hebbian dominates), not 0.5: on seed 4 a lateral decay (-0.60) was still shrinking. Held
    out: angles below 10 degrees as in the full test; the output correlation, which the weights'
    end-of-run fluctuations keep above zero (without lateral plasticity it is above 0.95), below 0.1
    on average over the 6 draws, and below 0.15 on the worst draw rather than 0.1 (a maximum over 6
    draws of those fluctuations: 0.116 on seed 7).

    Measured over study seeds 1-8 at 1,200 trials: feed-forward theta_021 -0.34 to -1.16,
    |theta_020|, |theta_200| <= 0.034, lateral others <= 0.60, held-out angles <= 4.2 degrees,
    output correlation 0.024-0.074 on average over the draws, 0.039-0.116 on the worst.
    """
    from codesign.report import best_summary, evaluate_candidate
    from codesign.spec import load_study
    from codesign.search.launcher import run_study
    from codesign.search.space import candidate

    spec = load_study(shortened_study("pca-network", n_trials=1200))
    study = run_study(spec)
    normalised = best_summary(spec, study)["normalised"]
    ff = {t.split(".", 1)[1]: v for t, v in normalised.items() if t.startswith("feedforward.")}
    lat = {t.split(".", 1)[1]: v for t, v in normalised.items() if t.startswith("lateral.")}
    assert ff["theta_110"] == 1.0 and ff["theta_021"] < 0.0, ff
    assert abs(ff["theta_020"]) < 0.15 and abs(ff["theta_200"]) < 0.15, ff
    assert lat["theta_110"] == -1.0, lat
    assert all(abs(v) < 1.0 for t, v in lat.items() if t != "theta_110"), lat
    held_out, _ = evaluate_candidate(spec, candidate(spec, study.best_params))
    assert not held_out.diverged
    assert max(held_out.metrics["principal_angles_deg"]) < 10.0
    assert held_out.metrics["mean_max_output_correlation"] < 0.1
    assert held_out.metrics["max_output_correlation"] < 0.15
