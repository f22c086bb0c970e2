"""Bad input: one line naming the file, the key and the fix; exit code 2; no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from codesign.cli import main
from codesign.errors import SpecError, UnknownNameError
from codesign.hardware import load_target
from codesign.spec import load_study

from tests.conftest import small_study


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    err = capsys.readouterr().err
    return code, err


def write(path: Path, data) -> str:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


def test_a_good_study_loads_with_its_types(workdir):
    spec = load_study(write(workdir / "studies/s.yaml", small_study()))
    assert spec.name == "tiny"
    assert spec.model.name == "oja" and spec.model.constants["n_inputs"] == 4 and spec.model.draws == 2
    assert spec.model.duration_s == pytest.approx(0.3)
    assert spec.rule.searched == ("theta_110", "theta_021", "theta_001")
    assert spec.target.codegen == "numpy"
    assert spec.storage_url() == "journal:results/tiny/journal.log"
    assert spec.storage_url("sqlite:///x.db") == "sqlite:///x.db"


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"n_trails": 5}, "n_trails: unknown key (fix: spelling error? known keys here: model, target, name"),
        ({"model": "models/ojja.yaml"}, "model: model file 'models/ojja.yaml' not found (fix: give a path to a file "
                                        "in models/"),
        ({"constants": {"n_input": 4}}, "constants.n_input: not a constant of the model models/oja.yaml (fix: "
                                        "constants of this model: n_inputs, n_outputs, duration)"),
        ({"constants": {"n_inputs": "five"}}, "constants.n_inputs: unknown name 'five' (fix: use numbers, Brian2 "
                                              "units and constants defined above this one)"),
        ({"constants": {"n_inputs": 2.5}}, "constants: models/oja.yaml cannot run with this: stimuli.stimulus.size: "
                                           "expected an integer, got 2.5"),
        ({"draws": 0}, "draws: must be a whole number of at least 1, got 0"),
        ({"draws": "n_inputs / 3"}, "draws: must be a whole number of at least 1, got 1.33333"),
        ({"conditions": {"train": [{"n_inputs": 4}], "held_out": [{"n_input": 5}]}},
         "conditions.held_out[0].n_input: not a constant of the model models/oja.yaml"),
        ({"conditions": {"train": [{"n_input": 4}]}}, "conditions.train[0].n_input: not a constant of the model "
                                                      "models/oja.yaml"),
        ({"conditions": {"train": [{"n_inputs": 4}], "held_out": [{"n_inputs": "five"}]}},
         "conditions.held_out[0].n_inputs: unknown name 'five'"),
        ({"hardware": {"weight_bits": [1, 8]}}, "hardware.weight_bits: model oja has no event-driven weights or "
                                                "traces to emulate weight_bits on"),
        ({"rule": {"terms": ["theta_110", "theta_310"]}}, "rule.terms[1]: unknown term 'theta_310'"),
        ({"rule": {"family": "spike_trace", "terms": "all"}}, "rule.family: slot 'w' of this model takes polynomial rules"),
        ({"rule": {"tau_ms": [5, 50]}}, "rule.tau_ms: polynomial rules have no trace time constants"),
        ({"rule": None, "rules": {"lateral": {}}}, "rules.lateral: unknown rule slot (fix: this model's slots: w)"),
        ({"rule": {"bounds": [1, -1]}}, "rule.bounds: low must be below high"),
        ({"sampler": {"name": "gridd"}}, "sampler.name: unknown sampler 'gridd' (fix: use one of: cmaes, nsga2, random, tpe)"),
        ({"batch_size": 0}, "batch_size: must be between 1 and 100000, got 0"),
        ({"batch_size": 3}, "batch_size: CMA-ES ranks a population of rules per generation (batch_size, or sampler.population), which needs at least 4"),
        ({"sampler": {"name": "random", "population": 8}},
         "sampler.population: random has no population (fix: remove population, or use a sampler with one: cmaes, nsga2)"),
        ({"sampler": {"population": 3}}, "sampler.population: CMA-ES ranks a population of rules per generation "
                                         "(batch_size, or sampler.population), which needs at least 4 rules; got 3"),
        ({"target": "hw_targets/tpu.yaml"}, "target: target file 'hw_targets/tpu.yaml' not found"),
    ],
)
def test_bad_study_values_name_file_key_and_fix(workdir, capsys, change, expected):
    path = write(workdir / "studies/bad.yaml", small_study(**change))
    code, err = run_cli(capsys, "run", path)
    assert code == 2
    assert err.startswith(f"codesign: error: {path}: ")
    assert expected in err
    assert "(fix: " in err
    assert err.count("\n") == 1


def test_missing_required_key(workdir, capsys):
    data = small_study()
    del data["target"]
    code, err = run_cli(capsys, "run", write(workdir / "studies/s.yaml", data))
    assert code == 2
    assert "target: missing required key (fix: name a file in hw_targets/" in err


def test_missing_file(workdir, capsys):
    code, err = run_cli(capsys, "best", "studies/nope.yaml")
    assert code == 2
    assert err == "codesign: error: studies/nope.yaml: study file not found (fix: check the path; " \
                  "it is read relative to the current directory)\n"


def test_malformed_yaml_gives_line_and_column(workdir, capsys):
    path = write(workdir / "studies/s.yaml", "model: models/oja.yaml\n n_trials: [1, 2\n")
    code, err = run_cli(capsys, "run", path)
    assert code == 2
    assert f"{path}: malformed YAML at line" in err
    assert err.count("\n") == 1


def test_not_a_mapping(workdir, capsys):
    code, err = run_cli(capsys, "run", write(workdir / "studies/s.yaml", "- just\n- a list\n"))
    assert code == 2
    assert "expected a mapping of keys to values" in err


def test_bad_target_file_is_named(workdir, capsys):
    write(workdir / "hw_targets/odd.yaml", {"name": "odd", "codegen": "fortran"})
    path = write(workdir / "studies/s.yaml", small_study(target="hw_targets/odd.yaml"))
    code, err = run_cli(capsys, "run", path)
    assert code == 2
    assert "hw_targets/odd.yaml: codegen: expected 'numpy' or 'cython', got 'fortran'" in err
    with pytest.raises(SpecError, match="name: missing required key"):
        load_target(write(workdir / "hw_targets/nameless.yaml", {"codegen": "numpy"}))


def test_target_backend_and_engine_sections_come_from_their_registries(workdir, capsys):
    """An unknown backend lists the registered ones; a section is a known key only where an engine registered it."""
    fpga = write(workdir / "hw_targets/fpga.yaml", {"name": "fpga", "backend": "verilog"})
    with pytest.raises(UnknownNameError, match=r"fpga.yaml: backend: unknown backend 'verilog'"):
        load_target(fpga)  # on reading the file, not first when a run builds its network
    path = write(workdir / "studies/s.yaml", small_study(target="hw_targets/fpga.yaml"))
    code, err = run_cli(capsys, "run", path)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert ("hw_targets/fpga.yaml: backend: unknown backend 'verilog' "
            "(fix: use one of: cpp_standalone, cuda_standalone, runtime)") in err
    with pytest.raises(SpecError, match=r"loihi3: unknown key \(fix: spelling error\? known keys here: name, .*, "
                                        r"gpu, loihi2\)"):
        load_target(write(workdir / "hw_targets/l3.yaml", {"name": "l3", "loihi3": {}}))
    with pytest.raises(SpecError, match="engines: unknown key"):  # the field holds sections; it is no key
        load_target(write(workdir / "hw_targets/e.yaml", {"name": "e", "engines": {}}))
    plain = load_target(workdir / "hw_targets/cpu.yaml")
    assert plain.engines == {} and plain.engine("loihi2") is None
    loihi2 = load_target(workdir / "hw_targets/loihi2.yaml")
    assert list(loihi2.engines) == ["loihi2"] and loihi2.engine("loihi2").chip.cores == 128
    with pytest.raises(SpecError, match=r"l2.yaml: loihi2.learning_engine.scale_mantissa: empty range"):
        load_target(write(workdir / "hw_targets/l2.yaml",
                          {"name": "l2", "loihi2": {"learning_engine": {"scale_mantissa": [3, -3]}}}))


def test_unknown_rule_on_the_command_line(workdir, capsys):
    path = write(workdir / "studies/s.yaml", small_study())
    code, err = run_cli(capsys, "eval", path, "--rule", "ojas")
    assert code == 2
    assert "--rule: unknown rule 'ojas' (fix: use one of: anti_hebbian, anti_oja, hebb, oja, zero)" in err


def test_best_before_any_run_says_what_to_do(workdir, capsys):
    path = write(workdir / "studies/s.yaml", small_study())
    code, err = run_cli(capsys, "best", path)
    assert code == 2
    assert "no results yet for study 'tiny'" in err and "fix: run: codesign run" in err


def test_the_installed_command_prints_no_traceback(workdir):
    path = write(workdir / "studies/s.yaml", small_study(draws=-3))
    proc = subprocess.run([sys.executable, "-m", "codesign", "run", path], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"codesign: error: {path}: draws: must be a whole number of at least 1, got -3 "
        "(fix: use a whole number of at least 1)"]
