"""Model files: ``codesign check`` on the shipped ones, and one-line errors for wrong ones.

Each wrong file is a shipped model with one mistake. ``codesign check`` (and ``codesign run``, where
Brian2 meets the mistake preparing the network) must print one line on stderr naming the file and
the key (the group or synapse for Brian2's text), with Brian2's own message, and exit with 2.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from codesign.cli import main
from codesign.models import LOSSES, STIMULI

ROOT = Path(__file__).resolve().parent.parent


def shipped(name: str) -> dict:
    return yaml.safe_load((ROOT / "models" / f"{name}.yaml").read_text())


def small_target_rate() -> dict:
    """The target-rate model with 10 inputs: its mistakes are found as fast as Oja's."""
    model = shipped("target-rate")
    model["constants"].update(n_excitatory=8, n_inhibitory=2)
    return model


def _neuron_model(model: dict, old: str, new: str) -> None:
    text = model["groups"]["neuron"]["model"]
    assert old in text
    model["groups"]["neuron"]["model"] = text.replace(old, new)


# (id, base model, the mistake, the key named (None: the file as a whole), a piece of the message)
MISTAKES = [
    ("unknown_top_level_key", "oja", lambda m: m.update(bogus=1), "bogus", "unknown key"),
    ("unknown_group_in_synapse", "oja", lambda m: m["synapses"]["plastic"].update(target="outptu"),
     "synapses.plastic.target", "unknown group 'outptu'"),
    ("equation_unit_mismatch", "target-rate", lambda m: _neuron_model(m, "/ tau_m : volt", ": volt"),
     "groups.neuron", "Inconsistent units in differential equation defining variable 'v'"),
    ("equation_unknown_identifier", "target-rate", lambda m: _neuron_model(m, "-ge / tau_e", "-ge / tau_q"),
     "groups.neuron", 'The identifier "tau_q" could not be resolved'),
    ("equation_syntax", "target-rate", lambda m: _neuron_model(m, "-ge / tau_e", "-ge +* tau_e"),
     "groups.neuron", "invalid syntax in '-ge +* tau_e'"),
    ("threshold_units", "target-rate", lambda m: m["groups"]["neuron"].update(threshold="v > 3"),
     "groups.neuron", "Comparison of expressions with different units"),
    ("synapse_unit_mismatch", "target-rate", lambda m: m["synapses"]["excitatory"].update(on_pre="ge_post += 3*mV"),
     "synapses.excitatory", "uses inconsistent units"),
    ("synapse_unknown_identifier", "target-rate", lambda m: m["synapses"]["excitatory"].update(on_pre="ge_post += w_ee"),
     "synapses.excitatory", 'The identifier "w_ee" could not be resolved'),
    ("synapse_statement_syntax", "target-rate", lambda m: m["synapses"]["excitatory"].update(on_pre="ge_post += (w_e"),
     "synapses.excitatory", "'(' was never closed"),
    ("two_summed_variables_into_one", "oja", lambda m: m["synapses"].update(
        second={"source": "inputs", "target": "output", "model": "y_post = 2 * x_pre : 1 (summed)"}),
     None, "Brian2: Multiple 'summed variables' target the variable 'y' in group 'output'"),
    ("connect_does_not_evaluate", "target-rate", lambda m: m["synapses"]["excitatory"].update(connect="i < n_exc"),
     "synapses.excitatory.connect", "cannot evaluate: unknown name 'n_exc'"),
    ("constant_does_not_evaluate", "target-rate", lambda m: m["constants"].update(w_e="0.05 * nonsense"),
     "constants.w_e", "unknown name 'nonsense'"),
    ("reserved_constant_name", "oja", lambda m: m["constants"].update(dt="1*ms"),
     "constants.dt", "is a name Brian2 reserves"),
    ("unknown_loss_kind", "oja", lambda m: m["loss"].update(kind="pc2_alignment"),
     "loss.kind", "unknown loss 'pc2_alignment' (fix: use one of: "
     + ", ".join(sorted([*LOSSES, "module:function"])) + ")"),
    ("unknown_stimulus_kind", "oja", lambda m: m["stimuli"]["stimulus"].update(kind="gausian"),
     "stimuli.stimulus.kind", f"unknown stimulus kind 'gausian' (fix: use one of: {', '.join(sorted(STIMULI))})"),
    ("user_loss_not_importable", "oja", lambda m: m.update(loss={"kind": "nosuchmodule:loss", "record": ["plastic.w"]}),
     "loss.kind", "cannot import 'nosuchmodule:loss'"),
    ("phase_lists_unknown_synapse", "target-rate", lambda m: m["protocol"][0].update(plastic=["inhibitry"]),
     "protocol[0].plastic[0]", "'inhibitry' is not a synapse with a rule"),
    ("spike_group_without_stimulus", "target-rate", lambda m: m.update(stimuli={}),
     "groups.inputs.kind", "no stimulus feeds this group of spike inputs"),
    ("unknown_rule_family", "oja", lambda m: m["synapses"]["plastic"]["rule"].update(family="polynomal"),
     "synapses.plastic.rule.family", "unknown rule family 'polynomal'"),
    ("unknown_named_rule", "oja", lambda m: m["named"].update(bogus={"w": "ojaa"}),
     "named.bogus.w", "unknown rule 'ojaa'"),
    ("recorded_variable_missing", "oja", lambda m: m["loss"].update(weights="plastic.q"),
     "loss", "'plastic.q': plastic has no variable 'q'"),
]


def _check(path: str, capsys: pytest.CaptureFixture, *extra: str) -> tuple[int, str, list[str]]:
    code = main(["check", path, *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.splitlines()


@pytest.mark.parametrize("base, mistake, key, message", [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_a_wrong_model_file_is_one_line_naming_file_and_key(workdir, capsys, base, mistake, key, message):
    model = small_target_rate() if base == "target-rate" else shipped(base)
    mistake(model)
    Path("models/wrong.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    code, out, err = _check("models/wrong.yaml", capsys)
    assert code == 2 and out == ""
    assert len(err) == 1, err
    assert err[0].startswith("codesign: error: models/wrong.yaml: " + (f"{key}: " if key else "Brian2: ")), err[0]
    assert message in err[0]
    assert err[0].endswith(")")  # the fix


def test_the_codesign_process_prints_one_line_and_nothing_at_exit(workdir):
    """Brian2 warns, when the process ends, about each object made before the mistake stopped the
    construction (and notes which integration method it chose): none of that reaches stderr."""
    model = small_target_rate()
    model["groups"]["neuron"].pop("method")
    model["synapses"]["inhibitory"]["on_post"] = "w += 1*mV"  # after the groups and the other synapses
    Path("models/wrong.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    done = subprocess.run([sys.executable, "-m", "codesign", "check", "models/wrong.yaml"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("codesign: error: models/wrong.yaml: synapses.inhibitory: Brian2: ")
    assert len(done.stderr.splitlines()) == 1, done.stderr


def test_malformed_yaml_is_one_line(workdir, capsys):
    Path("models/wrong.yaml").write_text("name: x\ngroups: {a: [\n")
    code, out, err = _check("models/wrong.yaml", capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith("codesign: error: models/wrong.yaml: malformed YAML at line 3")


def test_a_file_that_is_neither_model_nor_study_is_one_line(workdir, capsys):
    code, _, err = _check("hw_targets/cpu.yaml", capsys)
    assert code == 2 and len(err) == 1
    assert "hw_targets/cpu.yaml: is neither a model file" in err[0]


@pytest.mark.parametrize("mistake", ["equation_unknown_identifier", "synapse_unit_mismatch",
                                     "two_summed_variables_into_one"])
def test_run_reports_brian2_errors_of_the_model_in_one_line(workdir, capsys, mistake):
    """Brian2 finds these when it prepares the network for the first batch: ``codesign run`` says what
    ``codesign check`` says, not a traceback."""
    _, base, change, key, message = next(m for m in MISTAKES if m[0] == mistake)
    model = small_target_rate() if base == "target-rate" else shipped(base)
    change(model)
    Path("models/wrong.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    Path("studies/wrong.yaml").write_text(yaml.safe_dump({
        "model": "models/wrong.yaml", "draws": 1, "target": "hw_targets/cpu.yaml", "sampler": {"name": "random"},
        "n_trials": 4, "batch_size": 4}))
    code = main(["run", "studies/wrong.yaml", "--quiet"])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("codesign: error: models/wrong.yaml: " + (f"{key}: " if key else "")) and message in err[0]


# -- the shipped models and studies -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["oja", "pca-network", "target-rate"])
def test_check_prints_the_batched_network_of_each_shipped_model(capsys, name):
    code, out, err = _check(str(ROOT / "models" / f"{name}.yaml"), capsys)
    assert code == 0 and err == []
    model = shipped(name)
    for section in ("groups:", "synapses:", "per-copy variables (set per run):", "compiled once:", "set per run:"):
        assert f"\n{section}\n" in out
    for group in model["groups"]:
        assert f"\n  {group}: " in out
    for synapse in model["synapses"]:
        assert f"\n  {synapse}: " in out
    assert f"cache key: model|{model['name']}|" in out


@pytest.mark.parametrize("study", sorted(p.name for p in (ROOT / "studies").glob("*.yaml")))
def test_check_of_each_shipped_study_builds_its_batch(capsys, study):
    """The network a worker of the study builds: its batch of candidates, its draws, its searched terms."""
    code, out, err = _check(str(ROOT / "studies" / study), capsys, "--json")
    assert code == 0 and err == []
    report = json.loads(out)
    data = yaml.safe_load((ROOT / "studies" / study).read_text())
    draws = data.get("draws") or shipped(Path(data["model"]).stem)["draws"]
    conditions = len((data.get("conditions") or {}).get("train") or [{}])
    assert report["layout"] == {"candidates": data["batch_size"], "draws": draws, "conditions": conditions,
                                "copies": data["batch_size"] * draws * conditions}
    for group in report["groups"]:
        copies = draws * conditions if group["per"].startswith("draw") else report["layout"]["copies"]
        assert group["batched"] == group["size"] * copies
    rules = data.get("rules") or {s["plastic"]["slot"]: data["rule"] for s in report["synapses"] if s["plastic"]}
    for synapse in report["synapses"]:
        if synapse["plastic"] and isinstance(rules[synapse["plastic"]["slot"]].get("terms"), list):
            assert set(synapse["plastic"]["terms"]) >= set(rules[synapse["plastic"]["slot"]]["terms"])


def test_check_json_of_the_target_rate_model(capsys):
    code, out, err = _check(str(ROOT / "models" / "target-rate.yaml"), capsys, "--json")
    assert code == 0, err
    report = json.loads(out)
    groups = {g["name"]: g for g in report["groups"]}
    synapses = {s["name"]: s for s in report["synapses"]}
    # One candidate, 4 draws; 800 excitatory and 200 inhibitory inputs (connect: i < / >= n_excitatory).
    assert report["layout"]["copies"] == 4
    assert (groups["inputs"]["batched"], groups["inputs"]["per"]) == (4000, "draw (shared)")
    assert (synapses["excitatory"]["size"], synapses["excitatory"]["batched"]) == (800, 3200)
    assert (synapses["inhibitory"]["size"], synapses["inhibitory"]["batched"]) == (200, 800)
    assert synapses["inhibitory"]["pathways"] == ["pre", "post"]
    assert synapses["inhibitory"]["plastic"]["family"] == "spike_trace"
    per_copy = {v["name"]: v for v in report["per_copy"]}
    assert per_copy["eta_inhibitory"] == {"name": "eta_inhibitory", "unit": "1", "varies": "per candidate",
                                          "on": ["neuron"]}
    assert per_copy["tau_x_inhibitory"]["unit"] == "second"
    # Room for the expected input spikes (4 draws x 20 s x (800 x 5 Hz + 200 x 10 Hz)) and their spread.
    assert 480_000 < report["per_run"]["spikes"]["inputs"] < 490_000
    assert "neuron:eta_inhibitory" in report["per_run"]["values"]
    assert {"inhibitory_pre", "inhibitory_post", "neuron_spike_thresholder"} <= set(report["brian2"]["prepared"])


def test_check_prints_the_key_a_run_builds(workdir, write_study, capsys, monkeypatch):
    """The cache key shown is the key of the network the study's worker builds and compiles (the written
    results then run the best rule alone, in a network of one candidate)."""
    from codesign.models import ModelTask
    from codesign.models.check import check_file

    built = []
    original = ModelTask.simulation

    def simulation(self, network):
        built.append(network.key())
        return original(self, network)

    monkeypatch.setattr(ModelTask, "simulation", simulation)
    study = write_study(n_trials=6)
    assert main(["run", study, "--quiet"]) == 0
    key = check_file(study)["key"]
    assert built[0] == key and built[-1] != key and set(built) == {key, built[-1]}


def test_the_key_does_not_depend_on_the_process(tmp_path):
    """Two processes (different hash seeds) print the same key: a build compiled by one is found by the
    others (workers, later runs)."""
    keys = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-m", "codesign", "check", str(ROOT / "models" / "oja.yaml"), "--json"],
                             capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=True).stdout
        keys.add(json.loads(out)["key"])
    assert len(keys) == 1


def test_check_compiles_nothing(workdir, capsys, monkeypatch, tmp_path):
    """A study on the C++ standalone target is checked on the numpy runtime: no project is compiled."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CODESIGN_CACHE", str(cache))
    code, _, _ = _check(str(ROOT / "studies" / "target-rate.yaml"), capsys)
    assert code == 0
    assert not cache.exists() or not any(cache.iterdir())


def test_check_shows_a_targets_emulation(capsys):
    """With a target of few bits the weight updates are rewritten onto its grid: check shows that text."""
    model = str(ROOT / "models" / "target-rate.yaml")
    _, out, _ = _check(model, capsys, "--json")
    _, out_loihi, _ = _check(model, capsys, "--json", "--target", str(ROOT / "hw_targets" / "loihi2.yaml"))
    plain, loihi = json.loads(out), json.loads(out_loihi)
    assert not plain["target"]["emulation"] and loihi["target"]["emulation"]
    assert "inhibitory_w_step" in {v["name"] for v in loihi["per_copy"]} - {v["name"] for v in plain["per_copy"]}
    on_pre = next(s["on_pre"] for s in loihi["synapses"] if s["name"] == "inhibitory")
    assert "floor(" in on_pre and "rand()" in on_pre
    assert plain["key"] != loihi["key"]


def test_a_model_with_constants_of_its_own_is_checked_as_given(tmp_path, capsys):
    model = copy.deepcopy(shipped("oja"))
    model["constants"]["n_inputs"] = 3
    path = tmp_path / "oja3.yaml"
    path.write_text(yaml.safe_dump(model))
    _, out, _ = _check(str(path), capsys, "--json")
    inputs = next(g for g in json.loads(out)["groups"] if g["name"] == "inputs")
    assert (inputs["size"], inputs["batched"]) == (3, 3 * model["draws"])


def test_check_of_a_protocol_with_phases_trials_and_poisson_inputs(tmp_path, capsys):
    model = {
        "constants": {"tau": "10*ms", "I_ext": 0, "drive": 1, "w_max": 1},
        "draws": 2,
        "repeat": 3,
        "trials": [{"drive": 1}, {"drive": 2}],
        "groups": {"src": {"kind": "poisson", "size": 5, "rates": "50*Hz", "per": "draw"},
                   "cell": {"size": 2, "model": "dv/dt = (I_ext * drive - v) / tau : 1", "threshold": "v > 1",
                            "reset": "v = 0"}},
        "synapses": {"syn": {"source": "src", "target": "cell", "model": "w : 1", "on_pre": "v_post += w",
                             "rule": {"slot": "s", "family": "spike_trace"}}},
        "protocol": [{"name": "rest", "duration": "100*ms"},
                     {"name": "test", "duration": "50*ms", "values": {"I_ext": 1}, "plastic": []}],
        "loss": {"kind": "rate_to_target", "group": "cell", "phase": "test", "target": 5, "weights": "syn.w"},
    }
    path = tmp_path / "protocol.yaml"
    path.write_text(yaml.safe_dump(model))
    code, out, err = _check(str(path), capsys, "--json")
    assert code == 0, err
    report = json.loads(out)
    # 3 passes through 2 trials of 150 ms; the test phase sets I_ext, and learning stops in it.
    assert report["time"]["duration_s"] == pytest.approx(0.9) and report["time"]["steps"] == 9000
    assert report["time"]["protocol"][1]["values"] == {"I_ext": "1"} and report["time"]["protocol"][1]["plastic"] == []
    assert "per phase (TimedArrays): learning of syn, constant I_ext, constant drive" in report["compiled_once"]
    cell = next(g for g in report["groups"] if g["name"] == "cell")
    assert "I_ext_phase(t) * drive_phase(t)" in cell["equations"]
    src = next(g for g in report["groups"] if g["name"] == "src")
    assert (src["kind"], src["rates"], src["batched"]) == ("poisson", "50*Hz", 10)
    assert report["per_run"]["seed"] == "rand() seeded per run"  # the Poisson group draws in the network
    assert "src_spikes" in report["brian2"]["prepared"]
