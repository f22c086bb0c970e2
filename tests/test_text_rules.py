"""A model shipped as a file only: models/synaptic-scaling.yaml, whose rule is free Brian2 text with
searched params (``family: text``). Its study runs on numpy, Cython and C++ standalone, built once; its
params' units, ranges and gate do what the file says; bad params are one line; its rule files round-trip;
and the study finds a rule that holds the rate."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from codesign.backends import clear_simulations
from codesign.cli import main
from codesign.hardware import load_target
from codesign.models import LOSS_CAP, ModelTask, load_model
from codesign.report import evaluate_candidate, held_out_seed
from codesign.rules import TextRule, load_candidate, save_candidate
from codesign.spec import load_study
from codesign.search.launcher import run_study
from codesign.search.space import candidate, distributions, searched_terms
from codesign.search.study import make_task
from codesign.search.worker import run_worker

from tests.conftest import ROOT

MODEL = yaml.safe_load((ROOT / "models/synaptic-scaling.yaml").read_text())
STUDY = yaml.safe_load((ROOT / "studies/synaptic-scaling.yaml").read_text())

#: Seconds of simulation, not minutes: 20 inputs, 0.3 s of learning, 0.2 s of counting, one draw per
#: condition (three conditions), batches of 4.
SMALL = {"constants": {"n_inputs": 20, "learn": "0.3*second", "measure": "0.2*second"}, "draws": 1,
         "n_trials": 12, "batch_size": 4, "target": "hw_targets/cpu.yaml"}

TARGETS = {"numpy": "hw_targets/cpu.yaml", "cython": "hw_targets/cpu-cython.yaml",
           "cpp_standalone": "hw_targets/cpu-standalone.yaml"}
CYTHON_TARGET = {"name": "cpu-cython", "description": "Brian2 runtime, Cython code generation",
                 "backend": "runtime", "codegen": "cython", "float_dtype": "float64"}


def write_model(workdir: Path, name: str, change=None) -> str:
    """models/NAME.yaml: the synaptic-scaling model, changed in place by ``change(model)``."""
    model = copy.deepcopy(MODEL)
    if change is not None:
        change(model)
    path = workdir / "models" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(model, sort_keys=False))
    return f"models/{name}.yaml"


def write_study(workdir: Path, model: str = "models/synaptic-scaling.yaml", **overrides) -> str:
    study = {**copy.deepcopy(STUDY), **copy.deepcopy(SMALL), "model": model, **overrides}
    (workdir / "hw_targets/cpu-cython.yaml").write_text(yaml.safe_dump(CYTHON_TARGET))
    path = workdir / "studies" / f"{study['name']}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return f"studies/{study['name']}.yaml"


def rule(model: dict) -> dict:
    return model["synapses"]["excitatory"]["rule"]


def one_line_error(capsys, *args: str) -> str:
    code = main(list(args))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("codesign: error: "), err
    return err.strip()


def _refuse(*args, **kwargs):
    raise AssertionError("a later batch built, generated or compiled something")


def _builders(codegen: str) -> list[tuple[object, str]]:
    """What building a network calls on ``codegen``: Brian2 objects made, code compiled."""
    import brian2

    builders: list[tuple[object, str]] = [(brian2.NeuronGroup, "__init__"), (brian2.Synapses, "__init__")]
    if codegen == "cython":
        from brian2.codegen.runtime.cython_rt.extension_manager import CythonExtensionManager

        # Private API: Brian2 calls it for each code object not in its in-memory cache (compiling it
        # where no file holds it); a network re-run reuses its modules.
        builders.append((CythonExtensionManager, "_load_module"))
    if codegen == "cpp_standalone":
        from brian2.devices.cpp_standalone.device import CPPStandaloneDevice

        builders += [(CPPStandaloneDevice, name) for name in ("build", "code_object", "compile_source")]
    return builders


@pytest.mark.parametrize("codegen", TARGETS)
def test_the_study_runs_on_every_codegen_built_once(workdir, monkeypatch, codegen):
    """Three batches of the study; from the second on, making a Brian2 object or compiling raises."""
    spec = load_study(write_study(workdir, target=TARGETS[codegen]))
    assert spec.target.codegen == codegen or spec.target.backend == codegen
    clear_simulations()
    batches: list[optuna.Study] = []

    def forbid_building(study: optuna.Study) -> None:
        batches.append(study)
        if len(batches) == 1:
            for owner, method in _builders(codegen):
                monkeypatch.setattr(owner, method, _refuse)

    stats = run_worker(spec, on_batch=forbid_building)
    monkeypatch.undo()
    assert len(batches) == 3 and stats.trials == 12
    scored = [t for t in batches[-1].trials if t.value is not None]
    assert len(scored) >= 6 and all(0.0 <= t.value <= LOSS_CAP for t in scored)
    weights = {t.user_attrs["metrics"]["mean_weight"] for t in scored}
    assert len(weights) == len(scored), "rules learnt the same weights: their params do not reach the network"
    if codegen != "numpy":  # the same rules and inputs on NumPy: the same spikes and weights
        named = list(make_task(spec).named_candidates(spec.etas).values())
        here = make_task(spec).evaluate(named, seed=5, terms=searched_terms(spec), capacity=spec.batch_size)
        numpy_task = ModelTask(spec.model, load_target("hw_targets/cpu.yaml"), conditions=spec.conditions.train)
        there = numpy_task.evaluate(named, seed=5)
        for a, b in zip(here, there):
            assert a.metrics["rates_hz"] == b.metrics["rates_hz"]
            assert a.metrics["mean_weight"] == pytest.approx(b.metrics["mean_weight"], rel=1e-9)
    clear_simulations()


def test_the_search_space_is_the_models_params(workdir):
    """Each param is searched in its own range and scale, as a float or an integer; a study may leave
    out a param that has a default."""
    def add_integer(model):
        rule(model)["params"]["n_steps"] = {"bounds": [1, 8], "integer": True, "default": 2}
        rule(model)["model"] = "dw/dt = eta * w * (1 - a_post / rho) * n_steps / n_steps : 1 (clock-driven)"

    spec = load_study(write_study(workdir, model=write_model(workdir, "integer", add_integer)))
    space = distributions(spec)
    assert space == {"eta": optuna.distributions.FloatDistribution(0.01, 10, log=True),
                     "tau_a": optuna.distributions.FloatDistribution(0.02, 5, log=True),
                     "rho": optuna.distributions.FloatDistribution(2, 30),
                     "n_steps": optuna.distributions.IntDistribution(1, 8)}
    some = load_study(write_study(workdir, model="models/integer.yaml", rule={"family": "text",
                                                                              "terms": ["eta", "tau_a", "rho"]}))
    assert list(distributions(some)) == ["eta", "tau_a", "rho"]
    (made,) = candidate(some, {"eta": 0.5, "tau_a": 1.0, "rho": 10.0}).values()
    assert made.values == {"eta": 0.5, "tau_a": 1.0, "rho": 10.0, "n_steps": 2.0}


def test_a_params_unit_reaches_the_network_in_base_units(workdir):
    """tau_a in ms (bounds, values, quantities) runs exactly as tau_a in seconds."""
    def in_ms(model):
        rule(model)["params"]["tau_a"] = {"bounds": [20, 5000], "unit": "ms", "log": True}
        model["named"]["scaling"]["scaling"]["params"]["tau_a"] = 300  # a number: in the param's unit

    seconds = load_study(write_study(workdir))
    ms = load_study(write_study(workdir, model=write_model(workdir, "in-ms", in_ms)))
    tasks = [make_task(seconds), make_task(ms)]
    named = [t.named_candidates({"scaling": None})["scaling"] for t in tasks]
    assert named[0]["scaling"].values == {"eta": 0.1, "tau_a": 0.3, "rho": 9.5}  # 0.1*Hz, 300*ms, 9.5*Hz
    assert named[1]["scaling"].values == {"eta": 0.1, "tau_a": 300.0, "rho": 9.5}
    first, second = (t.evaluate([c], seed=3)[0] for t, c in zip(tasks, named))
    assert first.metrics["rates_hz"] == second.metrics["rates_hz"]
    assert first.metrics["mean_weight"] == second.metrics["mean_weight"]
    assert first.metrics["mean_weight"] != pytest.approx(MODEL["constants"]["w_init"], rel=0.01)  # it learnt


def test_a_phase_without_the_synapse_freezes_a_text_rule_through_its_learning_rate(workdir):
    """``plastic: []`` in a phase multiplies the rule's learning_rate by 0 there: with 1 ms of learning
    and 0.5 s of counting, a fast rule leaves the weights where they started; without the gate it
    moves them."""
    def ungated(model):
        model["protocol"][1].pop("plastic")

    fast = {"eta": 10.0, "tau_a": 0.05, "rho": 30.0}
    results = {}
    for name, change in (("gated", None), ("ungated", ungated)):
        spec = load_study(write_study(workdir, model=write_model(workdir, name, change), conditions={},
                                      constants={"n_inputs": 20, "learn": "1*ms", "measure": "0.5*second"}))
        (results[name],) = make_task(spec).evaluate([candidate(spec, fast)], seed=1)
    w_init = MODEL["constants"]["w_init"]
    assert results["gated"].metrics["mean_weight"] == pytest.approx(w_init, rel=0.02)  # 2 steps of learning
    assert abs(results["ungated"].metrics["mean_weight"] / w_init - 1) > 0.1


def test_a_phase_cannot_freeze_a_text_rule_without_a_learning_rate(workdir, capsys):
    path = write_model(workdir, "no-rate", lambda model: rule(model).pop("learning_rate"))
    err = one_line_error(capsys, "eval", write_study(workdir, model=path), "--rule", "scaling")
    assert err.startswith(f"codesign: error: {path}: synapses.excitatory.rule.learning_rate: a phase leaves this "
                          "synapse out of plastic:, but its text rule names no learning rate"), err


def _set(path: str, value):
    """A change to the model's rule: ``path`` of keys below ``rule:`` set to ``value`` (None: removed)."""
    def change(model):
        here = rule(model)
        *parents, last = path.split(".")
        for key in parents:
            here = here[key]
        if value is None:
            here.pop(last)
        else:
            here[last] = value
    return change


#: Changes to the model's rule, and the error after "synapses.excitatory.rule".
BAD_PARAMS = {
    "reversed bounds": (_set("params.rho.bounds", [30, 2]), ".params.rho.bounds: low must be below high"),
    "log scale from 0": (_set("params.eta.bounds", [0, 10]), ".params.eta.bounds: a log-scale range must be above 0"),
    "integer, fractional bounds": (_set("params.tau_a.integer", True),
                                   ".params.tau_a.bounds: an integer param needs whole bounds"),
    "not a unit": (_set("params.rho.unit", "herz"), ".params.rho.unit: 'herz' is not a Brian2 unit"),
    "no base unit": (_set("params.rho.unit", "mV/ms"), ".params.rho.unit: 'mV/ms' has no Brian2 base unit"),
    "unknown key": (_set("params.rho.low", 2), ".params.rho.low: unknown key"),
    "no bounds": (_set("params.rho", {"unit": "Hz"}), ".params.rho.bounds: missing required key"),
    "unused": (_set("params.gain", {"bounds": [0, 1]}), ".params.gain: is not used in the model's text"),
    "a constant's name": (_set("params.tau_m", {"bounds": [0, 1]}), ".params.tau_m: is also a constant of the model"),
    "reserved": (_set("params.dt", {"bounds": [0, 1]}), ".params.dt: is a name Brian2 reserves"),
    "no text": (_set("model", None), ": a text rule has no text"),
    "bind": (_set("bind", {"w": "w"}), ".bind: a text rule binds no symbols"),
    "learning rate not in the text": (_set("learning_rate", "target_rate"),
                                      ".learning_rate: 'target_rate' is not a param or constant that the rule"),
    "unknown family": (_set("family", "texts"), ".family: unknown rule family 'texts'"),
    "text on another family": (_set("family", "polynomial"), ".model: belongs to text rules"),
}


@pytest.mark.parametrize("change, expected", BAD_PARAMS.values(), ids=BAD_PARAMS.keys())
def test_bad_params_are_one_line_naming_the_model_and_key(workdir, capsys, change, expected):
    path = write_model(workdir, "bad", change)
    err = one_line_error(capsys, "eval", write_study(workdir, model=path), "--rule", "scaling")
    assert err.startswith(f"codesign: error: {path}: synapses.excitatory.rule{expected}"), err


BAD_SEARCHES = {
    "bounds": ({"family": "text", "bounds": [0, 1]}, "rule.bounds: a text rule has no bounds"),
    "eta": ({"family": "text", "eta": 1.0}, "rule.eta: a text rule has no eta"),
    "unknown param": ({"family": "text", "terms": ["eta", "tau"]}, "rule.terms[1]: unknown param 'tau'"),
    "a param left out without a default": ({"family": "text", "terms": ["eta", "rho"]},
                                           "rule.terms: leaves out param 'tau_a', which has no default"),
    "another family": ({"family": "polynomial"}, "rule.family: slot 'scaling' of this model takes text rules"),
}


@pytest.mark.parametrize("search, expected", BAD_SEARCHES.values(), ids=BAD_SEARCHES.keys())
def test_bad_searches_of_a_text_rule_are_one_line(workdir, capsys, search, expected):
    path = write_study(workdir, rule=search)
    err = one_line_error(capsys, "run", path)
    assert err.startswith(f"codesign: error: {path}: {expected}"), err


def test_a_named_candidate_gives_known_params(workdir, capsys):
    def unknown(model):
        model["named"]["scaling"]["scaling"]["params"]["tau"] = 1

    path = write_model(workdir, "named", unknown)
    err = one_line_error(capsys, "eval", write_study(workdir, model=path), "--rule", "scaling")
    assert err.startswith(f"codesign: error: {path}: named.scaling.scaling.params.tau: unknown param"), err


def test_a_text_rule_file_round_trips(workdir, capsys):
    model = load_model("models/synaptic-scaling.yaml")
    rules = model.rules
    found = TextRule({"eta": 0.0755, "tau_a": 0.106, "rho": 9.55}, name="trial 138",
                     units={"eta": "Hz", "tau_a": "second", "rho": "Hz"},
                     text="model: dw/dt = eta * w * (1 - a_post / rho) : 1 (clock-driven)")
    save_candidate({"scaling": found}, workdir / "rules/best.yaml", loss=0.0116)
    written = yaml.safe_load((workdir / "rules/best.yaml").read_text())
    assert written["family"] == "text" and written["params"] == {"eta": 0.0755, "tau_a": 0.106, "rho": 9.55}
    assert written["equation"] == ("model: dw/dt = eta * w * (1 - a_post / rho) : 1 (clock-driven); "
                                   "with eta = 0.0755*Hz, tau_a = 0.106*second, rho = 9.55*Hz")
    assert load_candidate(workdir / "rules/best.yaml", rules) == {"scaling": found}
    written["params"]["tau"] = 1.0
    (workdir / "rules/bad.yaml").write_text(yaml.safe_dump(written))
    err = one_line_error(capsys, "eval", write_study(workdir), "--rule", "rules/bad.yaml")
    assert err.startswith("codesign: error: rules/bad.yaml: unknown param 'tau'"), err
    written["params"].pop("tau")
    written["coefficients"] = {"theta_110": 1.0}
    (workdir / "rules/bad.yaml").write_text(yaml.safe_dump(written))
    err = one_line_error(capsys, "eval", write_study(workdir), "--rule", "rules/bad.yaml")
    assert err.startswith("codesign: error: rules/bad.yaml: coefficients: a text rule has no coefficients"), err


def _condition_means(evaluations: list, draws: int) -> dict[str, float]:
    """Mean rate of each condition's draws over ``evaluations`` (one per input seed): the training
    conditions (condition-major), then the held-out ones."""
    rates: dict[str, list[float]] = {}
    for evaluation in evaluations:
        for i, row in enumerate(np.array(evaluation.metrics["rates_hz"]).reshape(-1, draws)):
            rates.setdefault(f"train {i}", []).extend(row)
        for condition in evaluation.metrics["conditions"]:
            rates.setdefault(f"held out {condition['values']}", []).extend(condition["rates_hz"])
    return {condition: float(np.mean(values)) for condition, values in rates.items()}


@pytest.mark.science
def test_synaptic_scaling_study_on_a_smaller_budget_holds_the_rate(shortened_study):
    """studies/synaptic-scaling.yaml (random start; eta, tau_a and rho searched; input rates 5, 10 and
    20 Hz, 3 draws each; 10 s of learning, then 10 s of counting with the weights frozen; C++
    standalone) with 120 trials (10 CMA-ES generations) instead of 240, its best rule run on two
    seeds of input draws it never saw, at the three trained input rates and at the held-out 7 and
    14 Hz (6 draws per condition).

    Criteria: the mean rate over those 30 draws within 12 % of 10 Hz, and each condition's mean
    within 15 %; the model's ``too_slow`` rule (eta 0.01 Hz) fails both (36 Hz overall, 14 to 59 Hz).
    Counting 10 s at 10 Hz and the weights' last fluctuations spread single draws by about 10 %, and
    the best of 120 noisy losses flatters its rule (a rule 5-10 % off can win on the training
    draws), hence criteria on means with that margin. Measured over study seeds 1-5 at 120 trials:
    eta 0.05-0.11 Hz, tau_a 0.3-0.6 s, rho 9.4-10.2 Hz; overall mean 9.4-10.9 Hz, condition means
    8.9-11.1 Hz.
    """
    spec = load_study(shortened_study("synaptic-scaling", n_trials=120))
    study = run_study(spec)
    found = candidate(spec, study.best_params)
    seed = held_out_seed(spec, None)
    means = _condition_means([evaluate_candidate(spec, found, seed=s)[0] for s in (seed, seed + 1)],
                             spec.model.draws)
    assert len(means) == 5
    assert np.mean(list(means.values())) == pytest.approx(10.0, rel=0.12), means
    for condition, mean in means.items():
        assert mean == pytest.approx(10.0, rel=0.15), (condition, means)
    too_slow = make_task(spec).named_candidates(spec.etas)["too_slow"]
    baseline = _condition_means([evaluate_candidate(spec, too_slow, seed=seed)[0]], spec.model.draws)
    assert np.mean(list(baseline.values())) != pytest.approx(10.0, rel=0.12), baseline
    assert not all(mean == pytest.approx(10.0, rel=0.15) for mean in baseline.values()), baseline
