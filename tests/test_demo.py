"""The demo's claim: from a random start, the Oja study finds Oja's rule."""

from __future__ import annotations

import shutil

import pytest

from codesign.report import best_summary, evaluate_candidate
from codesign.rules import named_rule
from codesign.spec import load_study
from codesign.study import candidate, run_study

from conftest import ROOT


def test_oja_rule_meets_the_study_loss(workdir):
    """The known answer scores well on the demo's task: the study's loss surface is right."""
    spec = load_study(ROOT / "studies/oja.yaml")
    evaluation, _ = evaluate_candidate(spec, {"w": named_rule("oja", eta=spec.rule.learning_rate)})
    assert evaluation.loss < 0.1
    assert evaluation.metrics["abs_cos_pc1"] > 0.99


@pytest.mark.slow
def test_demo_study_rediscovers_oja(workdir):
    shutil.copy(ROOT / "studies/oja.yaml", workdir / "studies/oja.yaml")
    spec = load_study("studies/oja.yaml")
    study = run_study(spec)
    normalised = best_summary(spec, study)["normalised"]
    assert normalised["theta_110"] == 1.0
    assert normalised["theta_021"] == pytest.approx(-1.0, abs=0.15)
    for term, value in normalised.items():
        if term not in ("theta_110", "theta_021"):
            assert abs(value) < 0.15, term
    held_out, _ = evaluate_candidate(spec, candidate(spec, study.best_params))
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
