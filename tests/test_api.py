"""The Python API (codesign.load_study, codesign.load_model) and examples/api.py.

The API is a thin layer over what the commands run: its answers must be the commands' answers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import codesign
from codesign.cli import main
from codesign.errors import CodesignError
from codesign.rules import save_candidate
from codesign.search.study import EVAL_SEED_OFFSET

ROOT = Path(__file__).resolve().parent.parent


def _json(argv: list[str], capsys: pytest.CaptureFixture) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_a_study_from_python_gives_what_the_commands_give(workdir, write_study, capsys):
    path = write_study()
    study = codesign.load_study(path)
    oja, zero, given = study.evaluate(["oja", "zero", {"theta_110": 1.0, "theta_021": -1.0}])
    assert oja.loss == _json(["eval", path, "--rule", "oja", "--json"], capsys)["loss"]
    assert given.loss == oja.loss  # Oja's rule given as the study's parameters
    # By default on the draws `codesign eval` uses, which the study never trains on.
    assert oja.loss == study.evaluate(["oja"], seed=study.spec.seed + EVAL_SEED_OFFSET)[0].loss
    assert oja.loss != study.evaluate(["oja"], seed=study.spec.seed)[0].loss
    assert oja.loss < zero.loss

    assert study.run() is study
    trials = study.trials()
    assert len(trials) == study.spec.n_trials
    best = study.best()
    assert best == _json(["best", path, "--json"], capsys)
    finished = [t for t in trials if t["state"] == "COMPLETE"]
    assert best["loss"] == min(t["loss"] for t in finished)
    assert best["coefficients"] == next(t["params"] for t in finished if t["number"] == best["trial"])

    # The best candidate, as rules and as the rule file the study would write: the same evaluation.
    save_candidate(study.best_candidate(), "best.yaml")
    as_rules, as_file = study.evaluate([study.best_candidate(), "best.yaml"])
    assert as_rules.loss == as_file.loss == _json(["eval", path, "--json"], capsys)["loss"]


def test_eval_on_several_seeds_reports_each_and_their_mean(workdir, write_study, capsys):
    path = write_study()
    one, two = (_json(["eval", path, "--rule", "oja", "--seed", seed, "--json"], capsys) for seed in ("5", "6"))
    both = _json(["eval", path, "--rule", "oja", "--seed", "5", "6", "--json"], capsys)
    assert both["seed"] == [5, 6] and [r["seed"] for r in both["per_seed"]] == [5, 6]
    assert [r["loss"] for r in both["per_seed"]] == [one["loss"], two["loss"]] and one["loss"] != two["loss"]
    assert both["loss"] == pytest.approx((one["loss"] + two["loss"]) / 2)
    for key, value in one.items():  # every numeric metric averaged
        if isinstance(value, float) and key != "loss":
            assert both[key] == pytest.approx((value + two[key]) / 2), key


def test_eval_runs_seeds_in_worker_processes_with_the_same_results(workdir, write_study, capsys):
    """--workers 2: the seeds in two processes, each seed's result as one process gives it; their simulation
    results folders are gone once the command returns, and this process's (which they were forked with) is not."""
    from codesign.backends.standalone import cache_dir

    path = write_study(target="hw_targets/cpu-standalone.yaml")
    alone = _json(["eval", path, "--rule", "oja", "--seed", "5", "6", "7", "--json"], capsys)
    together = _json(["eval", path, "--rule", "oja", "--seed", "5", "6", "7", "--workers", "2", "--json"], capsys)
    assert [r["loss"] for r in together["per_seed"]] == [r["loss"] for r in alone["per_seed"]]
    assert together["loss"] == alone["loss"] and len({r["loss"] for r in alone["per_seed"]}) == 3
    own = f"_{os.getpid()}"
    left = [f for f in cache_dir().glob("*/results_*") if not f.name.endswith(own)]
    assert not left, left
    assert [f for f in cache_dir().glob("*/results_*") if f.name.endswith(own)]  # this process's, not removed by them


def test_eval_and_compare_set_constants_over_the_studys(workdir, write_study, capsys):
    """--constants runs the study's rule on another protocol (the XOR study searches 100 epochs; its model's
    are 200): the same as a study file with those constants. A name the model lacks is one line, exit 2."""
    from tests.test_bad_input import one_line_error

    path, longer = write_study(), write_study("longer", constants={"duration": "0.6*second"})
    given = _json(["eval", path, "--rule", "oja", "--constants", "duration=0.6*second", "--json"], capsys)
    assert given["loss"] == _json(["eval", longer, "--rule", "oja", "--json"], capsys)["loss"]
    assert given["loss"] != _json(["eval", path, "--rule", "oja", "--json"], capsys)["loss"]
    rows = _json(["compare", path, "--rule", "oja", "--targets", "hw_targets/cpu.yaml", "--constants",
                  "duration=0.6*second", "--json"], capsys)
    assert rows[0]["loss"] == given["loss"]
    err = one_line_error(capsys, "eval", path, "--rule", "oja", "--constants", "durations=1*second")
    assert err.startswith("codesign: error: --constants.durations: not a constant of the model ") and "duration" in err


def test_an_evaluation_simulates_only_the_candidates_asked_not_the_studys_batch(workdir, write_study, monkeypatch):
    """One candidate is one candidate's network, not the study's batch of copies (6 here); five are one
    network of five. Padding would reuse the study's build but simulate every copy, each time."""
    from codesign.models.task import ModelTask

    sizes = []
    network = ModelTask.network
    monkeypatch.setattr(ModelTask, "network", lambda self, terms, size, n: sizes.append(size) or network(self, terms, size, n))
    study = codesign.load_study(write_study())
    one = study.evaluate(["oja"], seed=4)[0]
    assert sizes == [1]
    five = study.evaluate(["oja", "zero", "hebb", "oja", "anti_oja"], seed=4)
    assert sizes == [1, 5]
    seven = study.evaluate(["oja"] * 7, seed=4)  # batches of the study's 6, the second padded
    assert sizes == [1, 5, 6, 6]
    assert five[0].loss == five[3].loss == seven[6].loss == one.loss  # the same draws, whatever the network holds


def test_a_study_refuses_what_it_cannot_evaluate(workdir, write_study):
    study = codesign.load_study(write_study())
    with pytest.raises(CodesignError, match=r"theta_200: not parameters of study tiny .*theta_110, theta_021"):
        study.evaluate([{"theta_200": 1.0}])
    with pytest.raises(CodesignError, match=r"unknown rule 'ojaa' \(fix: use one of: anti_hebbian, anti_oja, hebb"):
        study.evaluate(["ojaa"])
    with pytest.raises(CodesignError, match="studies/none.yaml: study file not found"):
        codesign.load_study("studies/none.yaml")


def test_a_model_from_python_with_its_constants(workdir):
    model = codesign.load_model("models/oja.yaml", draws=3, n_inputs=4, duration="1*second")
    oja, zero = model.evaluate(["oja", "zero"], seed=1)
    assert oja.arrays["weights"].shape == (3, 4)  # the draws and the inputs asked for
    assert oja.loss < 0.2 < zero.loss
    report = model.check()
    assert report["layout"]["draws"] == 3
    assert next(g for g in report["groups"] if g["name"] == "inputs")["size"] == 4
    with pytest.raises(CodesignError, match="load_model.n_input: not a constant of the model"):
        codesign.load_model("models/oja.yaml", n_input=4)


def test_a_model_of_codesign_by_its_bare_name_from_python(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no models/ here
    assert codesign.load_model("pca-network").spec.name == "pca-network"
    with pytest.raises(CodesignError, match="'ojja' is neither a file nor the name of one of codesign's models"):
        codesign.load_model("ojja")


def test_the_example_script_runs_and_finds_a_rule(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "api.py")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    model = {name: float(value) for name, value in re.findall(r"model oja, rule (\w+): loss ([0-9.]+)", out)}
    loss = {name: float(value) for name, value in re.findall(r"study tiny, rule (.+?): held-out loss ([0-9.]+)", out)}
    # Oja's rule aligns w with PC1, doing nothing does not; Hebb's rule runs away (the loss's ceiling).
    assert set(model) == {"oja", "hebb", "anti_hebbian", "anti_oja", "zero"}
    assert model["oja"] < 0.2 < 0.9 < model["zero"] < model["hebb"] == 10.0
    assert loss["oja"] < 0.2 < 0.9 < loss["zero"]
    assert loss["x y - y^2 w"] == loss["oja"]  # Oja's rule given by its coefficients
    trials, best = re.search(r"(\d+) trials, \d+ complete; best: trial \d+, loss ([0-9.]+)", out).groups()
    assert int(trials) == 60
    assert re.search(r"best rule: dw/dt = eta \(.*x y", out)
    held_out = float(re.search(r"best rule on held-out draws: loss ([0-9.]+)", out).group(1))
    assert held_out < loss["zero"] and float(best) < loss["zero"]
    assert not any(tmp_path.iterdir())  # the study ran in a temporary folder
