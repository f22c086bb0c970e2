"""Sparse search for any rule family: the L1 penalty, successive refinement, the stability check on
held-out seeds, and their one-line errors (``sparsity:`` and ``stability:`` in a study file)."""

from __future__ import annotations

import json

import optuna
import pytest
import yaml

from codesign.backends import builds, clear_simulations
from codesign.cli import main
from codesign.report import (best_summary, best_trial, check_stability, evaluate_candidate, evaluate_candidates,
                             held_out_seed)
from codesign.rules import FAMILIES
from codesign.search.launcher import run_study
from codesign.search.rounds import existing_rounds, final_round
from codesign.search.space import candidate, distributions
from codesign.search.study import count_trials, finished_trials, open_study
from codesign.spec import load_study

from tests.conftest import ROOT
from tests.test_bad_input import one_line_error
from tests.test_demo import assert_oja_form

TERMS = ["theta_110", "theta_021", "theta_001", "theta_000", "theta_020"]


def test_the_l1_penalty_is_added_to_the_loss_and_both_are_reported(write_study, capsys):
    path = write_study(rule={"terms": TERMS, "eta": 5.0}, sparsity={"l1": 0.5})
    spec = load_study(path)
    study = run_study(spec)
    trials = [t for t in finished_trials(study)]
    assert len(trials) >= 6
    for trial in trials:
        metrics = trial.user_attrs["metrics"]
        size = sum(abs(trial.params[term]) for term in TERMS)
        assert metrics["l1_penalty"] == pytest.approx(0.5 * size)
        assert trial.values[0] == pytest.approx(metrics["unpenalised_loss"] + 0.5 * size)
        assert metrics["l1_penalty"] > 0.01
    assert main(["best", path, "--json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert best["loss"] == pytest.approx(best["metrics"]["unpenalised_loss"] + best["metrics"]["l1_penalty"])
    assert main(["eval", path, "--json"]) == 0
    held_out = json.loads(capsys.readouterr().out)
    assert held_out["l1_penalty"] == pytest.approx(best["metrics"]["l1_penalty"])


def test_refinement_drops_terms_below_the_threshold_and_searches_only_the_survivors(write_study, capsys):
    path = write_study(rule={"terms": TERMS, "eta": 5.0}, n_trials=12,
                       sparsity={"l1": 0.01, "refine": {"rounds": 2, "threshold": 0.5, "n_trials": 8}})
    spec = load_study(path)
    clear_simulations()  # an earlier test may have built round 0's network in this process
    built = builds()
    run_study(spec)
    # Every round runs in round 0's network (the dropped terms at zero): built once, and under one key,
    # which also names the compiled project on disk that other workers and later runs find.
    assert builds().networks - built.networks == 1
    rounds = existing_rounds(spec)
    assert [r.spec.study_name for r in rounds] == ["tiny", "tiny/refine-1", "tiny/refine-2"]
    for before, after in zip(rounds, rounds[1:]):
        best = min(finished_trials(before.study), key=lambda t: t.values[0])
        largest = max(abs(best.params[t]) for t in before.spec.rule.searched)
        survivors = [t for t in before.spec.rule.searched if abs(best.params[t]) >= 0.5 * largest]
        assert set(after.spec.rule.searched) == set(survivors)
        assert after.dropped == {t: pytest.approx(abs(best.params[t]) / largest)
                                 for t in before.spec.rule.searched if t not in survivors}
        for trial in finished_trials(after.study):
            assert set(trial.params) == set(survivors)
        first = min(after.study.trials, key=lambda t: t.number)  # the last round's best, on the survivors
        assert first.params == {t: best.params[t] for t in survivors}
        assert count_trials(after.study) == (8, 0)
    assert len(rounds[1].spec.rule.searched) < len(TERMS)
    final_spec, final_study = final_round(spec)
    assert final_spec.round == 2
    assert main(["best", path, "--json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert set(best["coefficients"]) == set(rounds[2].spec.rule.searched)
    assert best["trial"] == best_trial(final_spec, final_study).number
    assert [r["round"] for r in best["rounds"]] == [0, 1, 2]
    assert best["rounds"][1]["dropped"] == pytest.approx(rounds[1].dropped)
    # The last round's spec (what run's stability check and result files evaluate with) finds that network
    # too, for a batch of the study's size (fewer candidates are evaluated in a network of their own).
    best_rule = candidate(final_spec, best_trial(final_spec, final_study).params)
    evaluate_candidates(final_spec, [best_rule] * final_spec.batch_size)
    assert builds().networks - built.networks == 1


def test_relaxed_refinement_refits_the_survivors_without_the_penalty(write_study):
    path = write_study(rule={"terms": TERMS, "eta": 5.0}, n_trials=12,
                       sparsity={"l1": 0.01, "refine": {"rounds": 1, "threshold": 0.5, "n_trials": 8, "relax": True}})
    spec = load_study(path)
    run_study(spec)
    first, second = existing_rounds(spec)
    penalties = [[t.user_attrs["metrics"]["l1_penalty"] for t in finished_trials(r.study)] for r in (first, second)]
    assert all(p > 0 for p in penalties[0]) and penalties[1] == [0.0] * 8
    for trial in finished_trials(second.study):
        assert trial.values[0] == trial.user_attrs["metrics"]["unpenalised_loss"]


def test_refinement_rounds_with_two_workers(write_study):
    path = write_study(rule={"terms": TERMS, "eta": 5.0}, n_trials=12,
                       sparsity={"refine": {"rounds": 1, "threshold": 0.5, "n_trials": 12}})
    spec = load_study(path)
    study = run_study(spec, workers=2)
    assert study.study_name == "tiny/refine-1"
    rounds = existing_rounds(spec)
    assert [count_trials(r.study) for r in rounds] == [(12, 0), (12, 0)]
    assert set(finished_trials(study)[0].params) == set(rounds[1].spec.rule.searched)


def test_a_study_given_refinement_later_resumes_into_its_rounds(write_study):
    """Round 0 is the study's own Optuna study: a study run without refinement, then with it, keeps its
    trials and goes on to round 1; run once more, it has nothing left to do."""
    path = write_study(rule={"terms": TERMS, "eta": 5.0}, n_trials=12)
    clear_simulations()  # only round 0's network is built below (an earlier test may have built round 1's)
    first = run_study(load_study(path))
    before = [(t.number, t.values) for t in finished_trials(first)]
    path = write_study(rule={"terms": TERMS, "eta": 5.0}, n_trials=12,
                       sparsity={"refine": {"rounds": 1, "threshold": 0.5, "n_trials": 6}})
    spec = load_study(path)
    built = builds()
    run_study(spec)
    assert builds().networks == built.networks  # round 1 asks for the network round 0 built
    assert len(existing_rounds(spec)[1].spec.rule.searched) < len(TERMS)
    rounds = existing_rounds(spec)
    assert [(t.number, t.values) for t in finished_trials(rounds[0].study)] == before
    assert count_trials(rounds[1].study) == (6, 0)
    run_study(spec)
    assert [count_trials(r.study) for r in existing_rounds(spec)] == [(12, 0), (6, 0)]


def stability_study(write_study) -> tuple:
    """A study holding two finished trials: anti-Oja's rule (dw = eta (-x y + y^2 w), whose y^2 w term blows
    the weights up in finite time; the model's named rule anti_oja) with the better loss, then Oja's. (Hebb's
    rule grows only exponentially: e^60 in 4 s at this eta, finite, so it is not flagged as diverged.)"""
    path = write_study(constants={"n_inputs": 4, "duration": "4*second"}, stability={"seeds": 2, "top": 2})
    spec = load_study(path)
    study = open_study(spec)
    space = distributions(spec)
    for value, params in ((0.01, {"theta_110": -1.0, "theta_021": 1.0, "theta_001": 0.0}),
                          (0.02, {"theta_110": 1.0, "theta_021": -1.0, "theta_001": 0.0})):
        study.add_trial(optuna.trial.create_trial(params=params, distributions=space, value=value))
    return path, spec, study


def test_the_stability_check_rejects_a_rule_that_diverges_on_held_out_seeds(write_study, capsys):
    path, spec, study = stability_study(write_study)
    anti_oja, oja = finished_trials(study)
    assert best_trial(spec, study).number == anti_oja.number
    record = check_stability(spec, study)
    assert record["checked"] == [anti_oja.number, oja.number]
    assert list(record["rejected"]) == [str(anti_oja.number)]
    assert "NaN or infinite weights" in record["rejected"][str(anti_oja.number)]
    assert record["passed"] == oja.number
    assert best_trial(spec, open_study(spec)).number == oja.number  # read back from the storage
    assert main(["best", path, "--json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert best["trial"] == oja.number and best["stability"]["passed"] == oja.number


@pytest.mark.parametrize("change, expected", [
    ({"sparsity": {"l1": -1}}, "sparsity.l1: must be at least 0.0"),
    ({"sparsity": {}}, "sparsity: neither l1 nor refine is set"),
    ({"sparsity": {"l1": 0.1, "refine": {"threshold": 1.5}}}, "sparsity.refine.threshold: must be between"),
    ({"sparsity": {"l1": 0.1, "refine": {"threshold": 0}}}, "sparsity.refine.threshold: must be between"),
    ({"sparsity": {"l1": 0.1, "refine": {"rounds": 0}}}, "sparsity.refine.rounds: must be between 1 and 20"),
    ({"sparsity": {"l2": 0.1}}, "sparsity.l2: unknown key"),
    ({"sparsity": {"l1": "a lot"}}, "sparsity.l1: expected a number, got 'a lot'"),
    ({"stability": {"seeds": 0}}, "stability.seeds: must be between 1 and 100"),
])
def test_bad_sparsity_and_stability_keys_are_one_line_errors(write_study, capsys, change, expected):
    path = write_study(**change)
    err = one_line_error(capsys, "run", path)
    assert f"{path}: {expected}" in err, err


def test_sparsity_on_a_study_of_text_rules_only_is_refused(workdir, capsys):
    """A text rule's params (a rate, a time constant) are not penalised: a study of nothing else has no
    coefficient to make sparse."""
    study = yaml.safe_load((ROOT / "studies/synaptic-scaling.yaml").read_text())
    path = workdir / "studies/scaling.yaml"
    path.write_text(yaml.safe_dump({**study, "sparsity": {"l1": 0.1}}))
    err = one_line_error(capsys, "run", "studies/scaling.yaml")
    assert "studies/scaling.yaml: sparsity: this study searches only text rules' params" in err, err


def rediscovered_form(spec) -> tuple[dict[str, float], dict]:
    """The last round's best rule normalised by theta_110, over every term of the family (dropped ones 0),
    after the study's stability check; and that check's record."""
    final_spec, final_study = final_round(spec)
    record = check_stability(final_spec, final_study)
    summary = best_summary(final_spec, final_study)
    assert record["passed"] == summary["trial"]
    return {term: summary["normalised"].get(term, 0.0) for term in FAMILIES["polynomial"].terms}, summary


def held_out_divergences(spec, summary, seeds: int = 3) -> int:
    """Draws on which the rule of ``summary`` diverges, over ``seeds`` held-out seeds (eval's default and the
    next ones; not the stability check's)."""
    final_spec, _ = final_round(spec)
    cand = candidate(final_spec, summary["coefficients"])
    seed = held_out_seed(spec, None)
    return sum(evaluate_candidate(spec, cand, seed=seed + i)[0].metrics["n_diverged"] for i in range(seeds))


@pytest.mark.science
def test_oja_all_study_rediscovers_oja(shortened_study):
    """studies/oja-all.yaml as shipped (all 27 terms, L1 penalty 0.03, 600 trials and 4 refinement rounds
    of 300, stability check): the demo's criteria on the rule's form (tests/test_demo.py::assert_oja_form),
    and the rule diverges on no draw of 3 held-out seeds.

    Not shortened: the budgets tried below 1,800 trials fail on some seeds. 600 + 2 rounds of 300 (1,200)
    leaves theta_021 / theta_110 at -1.19 on study seed 3 and theta_010 at 0.25 on seed 2; 600 + 3 rounds
    of 200 drops theta_110 on seed 3 (a round too short to settle drops a term the next one needs);
    300 + 3 rounds of 150 ends with theta_101 at 0.19 on seed 1 and without theta_021 on seed 2. The full
    budget passes on seeds 1-5 (and 11, the seed its settings were chosen on); this test took 225-232 s
    on seeds 1 and 5, run side by side on the 2-core machine while other jobs kept it busy. With two
    workers (CI's two cores) it took 66-75 s on the quiet machine and passed on seeds 1 (its own), 2 and 3.
    Two workers' asynchronous order also made it fail once on seed 1 (theta_011 at 0.28, a clean-clone CI
    run); it runs in one worker now, deterministic: 12 s and passed on seed 1.
    """
    spec = load_study(shortened_study("oja-all"))
    run_study(spec, workers=1)  # one worker: an asynchronous pair makes the result depend on timing
    normalised, summary = rediscovered_form(spec)
    assert_oja_form(normalised)
    assert held_out_divergences(spec, summary) == 0
