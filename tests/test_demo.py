"""The demo's claim: from a random start, the Oja study finds Oja's rule."""

from __future__ import annotations

import shutil

import pytest

from codesign.report import best_summary, evaluate_candidate
from codesign.rules import PolynomialRule, named_rule
from codesign.spec import load_study
from codesign.study import candidate, run_study

from conftest import ROOT


def test_oja_rule_meets_the_study_loss(workdir):
    """The known answer scores well on the demo's task: the study's loss surface is right."""
    spec = load_study(ROOT / "studies/oja.yaml")
    evaluation, _ = evaluate_candidate(spec, {"w": named_rule("oja", eta=spec.rule.learning_rate)})
    assert evaluation.loss < 0.1
    assert evaluation.metrics["abs_cos_pc1"] > 0.99


def assert_oja_form(normalised: dict[str, float]) -> None:
    """Oja's rule up to its positive scale: theta_110 = +1, theta_021 = -1 +- 0.15, others below 0.15."""
    assert normalised["theta_110"] == 1.0
    assert normalised["theta_021"] == pytest.approx(-1.0, abs=0.15)
    for term, value in normalised.items():
        if term not in ("theta_110", "theta_021"):
            assert abs(value) < 0.15, term


@pytest.mark.slow
def test_demo_study_rediscovers_oja(workdir):
    shutil.copy(ROOT / "studies/oja.yaml", workdir / "studies/oja.yaml")
    spec = load_study("studies/oja.yaml")
    study = run_study(spec)
    normalised = best_summary(spec, study)["normalised"]
    assert_oja_form(normalised)
    held_out, _ = evaluate_candidate(spec, candidate(spec, study.best_params))
    assert held_out.metrics["abs_cos_pc1"] > 0.99


@pytest.mark.science
def test_oja_study_on_a_smaller_budget_rediscovers_oja(shortened_study):
    """The demo's claim in make test: studies/oja.yaml (random start, 7 searched terms, 8 input
    draws, C++ standalone) with 720 trials (60 CMA-ES generations) instead of 900, and the criteria
    of test_demo_study_rediscovers_oja on the rule's form.

    The held-out check runs the rule found scaled to theta_110 = 1, i.e. Oja's rule is judged up to
    its positive scale, as the coefficient criteria are. The overall scale is a learning rate, and
    the loss (distance of the final weights from PC1) trades convergence against the weights'
    end-of-run fluctuations on the 8 training draws: late in a search CMA-ES may shrink it to what
    those draws need, and a held-out draw with a small eigenvalue gap then has not converged (study
    seed 1 at 780 trials: theta_110 = 0.55, mean |cos| 0.977 on held-out draws, 0.996 for the same
    rule at theta_110 = 1).

    Measured at 720 trials over study seeds 1-7: |theta_021 + 1| <= 0.082, other terms <= 0.113
    (seed 5: theta_200), held-out mean |cos| of the normalised rule >= 0.995.
    """
    spec = load_study(shortened_study("oja", n_trials=720))
    study = run_study(spec)
    normalised = best_summary(spec, study)["normalised"]
    assert_oja_form(normalised)
    found = candidate(spec, study.best_params)["w"]
    oja_form = PolynomialRule(found.normalised("theta_110"), eta=found.eta)
    held_out, _ = evaluate_candidate(spec, {"w": oja_form})
    assert held_out.metrics["abs_cos_pc1"] > 0.99


@pytest.mark.slow
def test_target_rate_study_holds_the_rate_on_held_out_inputs(workdir):
    shutil.copy(ROOT / "studies/target-rate.yaml", workdir / "studies/target-rate.yaml")
    spec = load_study("studies/target-rate.yaml")
    study = run_study(spec)
    best = candidate(spec, study.best_params)
    for seed in (101, 102, 103):
        held_out, _ = evaluate_candidate(spec, best, seed=seed)
        for rate in held_out.metrics["rates_hz"]:
            assert rate == pytest.approx(spec.task.params.target_rate_hz, rel=0.05)


@pytest.mark.science
def test_target_rate_study_on_a_smaller_budget_holds_the_rate_on_held_out_inputs(shortened_study):
    """The target-rate study's claim in make test: studies/target-rate.yaml (random start, 6 terms
    and 2 time constants, 4 input draws of 10 s learning and 10 s counting, C++ standalone) with 240
    trials (20 CMA-ES generations) instead of 480, its best rule run on 12 input draws it never saw.

    Criteria, as the full test's but split into bias and spread: the mean held-out rate within 3 %
    of the target and every draw within 8 % (Vogels' rule, which the search should beat, is 5 %
    above the target on average over these draws, 9 % on the worst: it fails both). The full
    test's "every draw within 5 %" is a maximum over 12 draws that counting noise alone (about
    1.5 % per draw over 10 s) brings near 5 % for a rule 2 % off. Measured over study seeds 1-6 at
    240 trials: mean held-out rate within 1.9 % of the target, every draw within 6 % (2-6 %; seeds
    3 and 6 would fail the full test's 5 %).
    """
    import dataclasses

    import numpy as np

    from codesign.report import held_out_seed
    from codesign.tasks.target_rate import TargetRateTask

    spec = load_study(shortened_study("target-rate", n_trials=240))
    study = run_study(spec)
    best = candidate(spec, study.best_params)
    # One network of 12 draws: one build for the held-out check, not one per seed of 4 draws.
    held_out = TargetRateTask(dataclasses.replace(spec.task.params, n_repeats=12), spec.target)
    (evaluation,) = held_out.evaluate([best], held_out_seed(spec, None))
    target = spec.task.params.target_rate_hz
    rates = np.array(evaluation.metrics["rates_hz"])
    assert len(rates) == 12
    assert rates.mean() == pytest.approx(target, rel=0.03)
    assert np.all(np.abs(rates / target - 1) < 0.08), rates
