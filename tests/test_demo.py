"""The demos' claims: from a random start, the Oja study finds Oja's rule, and the target-rate study a rule
that holds the target rate at inhibitory input rates it was not trained at."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from codesign.report import best_summary, evaluate_candidate, held_out_seed
from codesign.rules import PolynomialRule, named_rule
from codesign.spec import load_study
from codesign.search.launcher import run_study
from codesign.search.space import candidate

from tests.conftest import ROOT


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


def rates_by_condition(spec, cand, seeds) -> dict[str, np.ndarray]:
    """The candidate's measured rates on the draws of ``seeds``, pooled per condition (training and
    held out), keyed by the inhibitory input rate."""
    pooled: dict[str, list[float]] = {}
    for seed in seeds:
        evaluation, _ = evaluate_candidate(spec, cand, seed=seed)
        trained = np.reshape(evaluation.metrics["rates_hz"], (len(spec.conditions.train), -1))
        for condition, rates in zip(spec.conditions.train, trained):
            pooled.setdefault(condition["rate_inhibitory"], []).extend(rates)
        for condition in evaluation.metrics["conditions"]:
            pooled.setdefault(condition["values"]["rate_inhibitory"], []).extend(condition["rates_hz"])
    return {rate: np.array(rates) for rate, rates in pooled.items()}


@pytest.mark.slow
def test_target_rate_study_holds_the_rate_on_held_out_inputs_and_input_rates(workdir):
    """studies/target-rate.yaml trains at inhibitory input rates of 5, 10 and 20 Hz; its best rule
    holds the target within 5 % on 12 held-out draws of each of them and of the held-out 7 and 14 Hz.

    Measured over study seeds 1-5: within 3.5 % (7 Hz), 1 % (14 Hz) and 3.9 % (the training rates);
    the 4 draws of one held-out seed are noisier (up to 6.2 % off at 7 Hz, 7 % at 5 Hz).
    """
    shutil.copy(ROOT / "studies/target-rate.yaml", workdir / "studies/target-rate.yaml")
    spec = load_study("studies/target-rate.yaml")
    study = run_study(spec)
    best = candidate(spec, study.best_params)
    target = float(spec.model.constants["target_rate"])
    rates = rates_by_condition(spec, best, (None, 101, 102))
    assert set(rates) == {"5*Hz", "10*Hz", "20*Hz", "7*Hz", "14*Hz"}
    for rate, measured in rates.items():
        assert len(measured) == 12
        assert measured.mean() == pytest.approx(target, rel=0.05), rate


@pytest.mark.science
def test_target_rate_study_on_a_smaller_budget_holds_the_rate_at_held_out_input_rates(shortened_study):
    """The target-rate study's claim in make test: studies/target-rate.yaml (random start, 6 terms and
    2 time constants, inhibitory input rates 5, 10 and 20 Hz, draws of 10 s learning and 10 s
    counting, C++ standalone) with 2 draws per rate instead of 4 and 480 trials instead of 720, its
    best rule run on 4 held-out draws at each training rate and at the held-out 7 and 14 Hz.

    Criterion: the mean rate at each within 12 % of the target. Rules trained at 10 Hz alone (the
    study before it had conditions; study seeds 1-3) are 27-28 % below it at 7 Hz and 35-38 % above
    at 14 Hz. The full test's 5 % is not reached on every seed by this budget: measured over study
    seeds 1-8, the worst condition of each is 3.2-9.3 % off (9.3 % at 7 Hz on seed 1, whose search
    stalls at a loss of 0.005 where the others reach 0.0001-0.0009).
    """
    spec = load_study(shortened_study("target-rate", draws=2, n_trials=480))
    study = run_study(spec)
    best = candidate(spec, study.best_params)
    target = float(spec.model.constants["target_rate"])
    seed = held_out_seed(spec, None)
    for rate, measured in rates_by_condition(spec, best, (seed, seed + 1)).items():
        assert len(measured) == 4
        assert measured.mean() == pytest.approx(target, rel=0.12), (rate, measured)
