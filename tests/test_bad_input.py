"""Inputs that used to end in a traceback, a hang or a silent surprise: each is one line on stderr
naming the file (or option), the key and the fix, with exit code 2."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
import yaml

from codesign.cli import main
from codesign.errors import CodesignError
from codesign.report import best_trial
from codesign.rules import load_candidate
from codesign.spec import load_study
from codesign.search.launcher import run_study

from tests.conftest import small_study


def one_line_error(capsys, *args: str) -> str:
    """Run the command; check exit code 2 and a single ``codesign: error: ... (fix: ...)`` line; return it."""
    code = main(list(args))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("codesign: error: ") and "(fix: " in err, err
    return err.strip()


def write(path: Path, data) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize("change, expected", [
    ({"rule": {"bounds": [float("nan"), 1.0]}}, "rule.bounds[0]: expected a finite number, got nan"),
    ({"rule": {"bounds": [float("-inf"), float("inf")]}}, "rule.bounds[0]: expected a finite number, got -inf"),
    ({"rule": {"bounds": [-1e308, 1e308]}}, "rule.bounds[0]: must be between -1000000.0 and 1000000.0"),
    ({"rule": {"eta": float("nan")}}, "rule.eta: expected a finite number, got nan"),
    ({"rule": {"eta": 0}}, "rule.eta: must be positive, got 0"),
    ({"trial_timeout_s": float("inf")}, "trial_timeout_s: expected a finite number, got inf"),
    # YAML reads a number written with 400 digits as an int, past the largest float.
    ({"trial_timeout_s": 10**400}, "trial_timeout_s: expected a finite number, got 1000"),
    ({"rule": {"eta": -10**400}}, "rule.eta: expected a finite number, got -1000"),
    ({"constants": {"n_inputs": float("nan")}}, "constants: models/oja.yaml cannot run with this: "
                                                 "stimuli.stimulus.size: expected an integer, got nan"),
    ({"seed": 2**32}, "seed: must be between 0 and 2147483647"),
    ({"constants": {"duration": "1e9*second"}}, "constants: models/oja.yaml cannot run with this: protocol: 1e+09 s "
                                                "in steps of 1 ms is 1,000,000,000,000 time steps, more than 100,000,000"),
    # 1,000 inputs fit 8 draws (the model's); 1,000 draws of them do not.
    ({"constants": {"n_inputs": 1000}, "draws": 1000}, "draws: models/oja.yaml cannot run with this: stimuli: the "
                                                       "input draws would hold 300,000,000 values or spikes, more "
                                                       "than 20,000,000"),
    ({"model": "models/pca-network.yaml", "constants": {"duration": "1e9*second"},
      "rule": None, "rules": {"feedforward": {}, "lateral": {}}},
     "constants: models/pca-network.yaml cannot run with this: protocol: 1e+09 s in steps of 1 ms"),
    ({"model": "models/target-rate.yaml", "constants": {"learn": "1e9*second"},
      "rule": {"family": "spike_trace", "terms": "all"}},
     "constants: models/target-rate.yaml cannot run with this: protocol: 1e+09 s in steps of 0.1 ms"),
    ({"model": "models/target-rate.yaml", "constants": {"rate_excitatory": "-5*Hz"},
      "rule": {"family": "spike_trace", "terms": "all"}},
     "constants: models/target-rate.yaml cannot run with this: stimuli.poisson.rate: rates must be finite and at "
     "least 0 Hz"),
    ({"model": "models/target-rate.yaml", "constants": {"n_excitatory": 100000, "learn": "100*second"},
      "rule": {"family": "spike_trace", "terms": "all"}},
     "constants: models/target-rate.yaml cannot run with this: stimuli: the input draws would hold 55,220,000 "
     "values or spikes"),
])
def test_values_that_cannot_run_are_refused_with_the_key(workdir, capsys, change, expected):
    data = small_study(**change)
    if "model" in change:  # another model: its own constants and draws only
        data["constants"], data["draws"] = change["constants"], 1
    path = write(workdir / "studies/bad.yaml", data)
    started = time.perf_counter()
    err = one_line_error(capsys, "run", path)
    assert time.perf_counter() - started < 30
    assert err.startswith(f"codesign: error: {path}: {expected}"), err



def test_a_model_that_cannot_run_by_itself_is_named_not_the_study(workdir, capsys):
    model = (workdir / "models/oja.yaml").read_text()
    assert "  n_inputs: 5\n" in model
    write(workdir / "models/odd.yaml", model.replace("  n_inputs: 5\n", "  n_inputs: 2.5\n"))
    data = small_study(model="models/odd.yaml")
    data["constants"] = {"duration": "0.3*second"}
    err = one_line_error(capsys, "run", write(workdir / "studies/s.yaml", data))
    assert err == ("codesign: error: models/odd.yaml: stimuli.stimulus.size: expected an integer, got 2.5 "
                   "(fix: write an integer here)")

#: Twelve lines that expand to 10**11 values: one name repeated ten times in each line.
ALIAS_BOMB = "name: [&a0 [x, x, x, x, x, x, x, x, x, x], " + ", ".join(
    f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 12)) + "]\n"
#: What each kind of file needs before its ``name``, so that the name is what gets read.
BEFORE_NAME = {"study file": "model: models/oja.yaml\ntarget: hw_targets/cpu.yaml\n", "target file": "",
               "rule file": "coefficients: {theta_110: 1.0}\n"}

BAD_FILES = {
    "not UTF-8": (b"name: caf\xe9\nmodel: models/oja.yaml\n", "not UTF-8 text: byte 0xe9 at line 1"),
    "a NUL byte": (b"name: a\x00b\n", "character U+0000 at line 1 is not allowed in YAML"),
    "5,000 levels deep": ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 100 levels at line "),
    "an alias bomb": (ALIAS_BOMB, "its aliases (*name) expand to more than 1,000,000 values"),
    "a recursive alias": ("a: &a [1, *a]\n", "an alias (*name) refers to a node that contains it"),
    "50 MB": ("# " + "x" * 50_000_000 + "\n", "is larger than 1,000,000 bytes"),
}


@pytest.mark.parametrize("content, expected", BAD_FILES.values(), ids=BAD_FILES.keys())
@pytest.mark.parametrize("kind", ["study file", "target file", "rule file"])
def test_files_that_are_not_sane_yaml_are_refused_quickly(workdir, capsys, kind, content, expected):
    if isinstance(content, str):
        content = BEFORE_NAME[kind] + content
    if kind == "study file":
        bad = write(Path("studies/bad.yaml"), content)
        args = ["run", bad]
    elif kind == "target file":
        bad = write(Path("hw_targets/bad.yaml"), content)
        args = ["run", write(workdir / "studies/s.yaml", small_study(target="hw_targets/bad.yaml"))]
    else:
        bad = write(Path("rules/bad.yaml"), content)
        args = ["eval", write(workdir / "studies/s.yaml", small_study()), "--rule", bad]
    started = time.perf_counter()
    err = one_line_error(capsys, *args)
    assert time.perf_counter() - started < 15, "refused before parsing all of it"
    assert err.startswith(f"codesign: error: {bad}: ") and expected in err
    if "bytes" in expected:
        assert f"A {kind} is a few kB" in err


@pytest.mark.parametrize("command", ["eval", "compare", "port"])
@pytest.mark.parametrize("seed", ["-1", str(2**32), "seven"])
def test_seeds_outside_numpys_range_are_refused(workdir, capsys, command, seed):
    path = write(workdir / "studies/s.yaml", small_study())
    extra = ["--targets", "hw_targets/cpu.yaml"] if command == "compare" else []
    err = one_line_error(capsys, command, path, "--seed", seed, *extra)
    assert err == (f"codesign: error: --seed: expected an integer from 0 to 4294967295, got {seed!r} "
                   f"(fix: see codesign {command} --help)")


def test_an_unwritable_stats_file_is_refused_before_any_work(workdir, capsys):
    path = write(workdir / "studies/s.yaml", small_study())
    Path("afile").write_text("")
    err = one_line_error(capsys, "worker", path, "--stats", "afile/stats.json")
    assert err.startswith("codesign: error: --stats: cannot write afile/stats.json: ")
    assert not Path("results/tiny/journal.log").exists(), "no trial should have run"


def test_a_results_folder_that_cannot_be_written_is_refused_before_any_work(workdir, capsys):
    path = write(workdir / "studies/s.yaml", small_study())
    Path("results").write_text("")  # a file where the folder would go
    err = one_line_error(capsys, "run", path, "--storage", "journal:elsewhere.log")
    assert err == ("codesign: error: cannot write results/tiny/best_rule.yaml: Not a directory "
                   "(fix: run codesign from a folder you can write to)")
    assert not Path("elsewhere.log").exists(), "no trial should have run"


def test_a_stats_file_is_written_where_it_can_be(workdir, capsys):
    path = write(workdir / "studies/s.yaml", small_study(n_trials=6))
    assert main(["worker", path, "--stats", "out/stats.json", "--quiet"]) == 0
    assert yaml.safe_load(Path("out/stats.json").read_text())["trials"] == 6


def test_a_worker_that_crashes_is_one_line_naming_its_error_and_log(workdir, capsys, monkeypatch):
    path = write(workdir / "studies/s.yaml", small_study())
    broken = workdir / "broken"
    write(broken / "optuna.py", 'raise ImportError("optuna is broken here")\n')
    monkeypatch.setenv("PYTHONPATH", str(broken))  # the worker processes' imports, not this one's
    err = one_line_error(capsys, "run", path, "--workers", "2", "--quiet")
    log = "results/tiny/workers/worker-0.log"
    assert err == (f"codesign: error: {path}: 2 of 2 workers failed; worker 0 (exit code 1): ImportError: optuna is "
                   f"broken here (fix: its whole output is in {log}; finished trials are saved, run the same command "
                   "to resume)")
    assert "Traceback" in Path(log).read_text()


def test_a_worker_that_stops_on_bad_input_passes_its_line_on(workdir):
    path = write(workdir / "studies/s.yaml", small_study())
    spec = load_study(path)
    write(workdir / "studies/s.yaml", "model: [\n")  # the workers read the file after this process did
    with pytest.raises(CodesignError) as caught:
        run_study(spec, workers=2)
    assert caught.value.one_line() == (
        f"2 of 2 workers failed; worker 0 (exit code 2): {path}: malformed YAML at line 2, column 1: expected the "
        "node content, but found '<stream end>' (fix: correct the YAML syntax (indentation, colons, quotes))")


def test_rule_files_refuse_nan_and_default_eta_to_the_family(workdir, capsys):
    study = write(workdir / "studies/s.yaml", small_study())
    rule = write(workdir / "rules/nan.yaml", {"coefficients": {"theta_110": 1.0}, "eta": float("nan")})
    err = one_line_error(capsys, "eval", study, "--rule", rule)
    assert err == f"codesign: error: {rule}: eta: expected a finite number, got nan (fix: write a finite number)"
    vogels = write(workdir / "rules/v.yaml", {"family": "spike_trace",
                                               "coefficients": {"pre_1": -0.4, "pre_y": 1.0, "post_x": 1.0}})
    assert load_candidate(vogels, {"inhibitory": "spike_trace"})["inhibitory"].eta == 0.01
    oja = write(workdir / "rules/o.yaml", {"coefficients": {"theta_110": 1.0, "theta_021": -1.0}})
    assert load_candidate(oja, {"w": "polynomial"})["w"].eta == 10.0
    zero = write(workdir / "rules/z.yaml", {"family": "spike_trace", "coefficients": {"pre_1": 1.0}, "tau_x_ms": 0})
    with pytest.raises(CodesignError, match=r"z.yaml: tau_x_ms must be a positive number, got 0.0 \(fix: "):
        load_candidate(zero, {"inhibitory": "spike_trace"})


def test_a_study_whose_trials_all_diverged_says_why(workdir, capsys):
    path = write(workdir / "studies/s.yaml", small_study(
        rule={"terms": ["theta_110", "theta_001"], "eta": 1000.0, "bounds": [50, 100]},
        sampler={"name": "random"}, n_trials=6))
    expected = (f"codesign: error: {path}: all 6 finished trials diverged: NaN or infinite weights on 2 of 2 draws "
                "(6 trials) (fix: narrow rule.bounds or lower rule.eta, and rename the study: these trials count "
                "towards its n_trials)")
    assert one_line_error(capsys, "run", path, "--quiet") == expected
    assert one_line_error(capsys, "best", path) == expected
    assert one_line_error(capsys, "eval", path) == expected


def test_divergence_reasons_are_counted_by_kind(workdir):
    spec = load_study(write(workdir / "studies/s.yaml", small_study()))
    study = optuna.create_study()
    reasons = ["runaway rate 180.2 Hz > runaway_rate_hz 150"] * 2 + ["runaway rate 151.0 Hz > runaway_rate_hz 150",
                                                                     "NaN or infinite weights"]
    for reason in reasons:
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED,
                                                  user_attrs={"diverged_reason": reason}))
    with pytest.raises(CodesignError) as caught:
        best_trial(spec, study)
    assert caught.value.message == ("all 4 finished trials diverged: runaway rate 180.2 Hz > runaway_rate_hz 150 or "
                                    "similar (3 trials); NaN or infinite weights (1 trial)")
    with pytest.raises(CodesignError, match="the study has no finished trial yet"):
        best_trial(spec, optuna.create_study())
