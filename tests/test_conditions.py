"""Conditions: a study varies model constants over its input draws, and eval reports held-out ones apart."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from codesign.backends import builds
from codesign.cli import main
from codesign.models import LOSS_CAP

#: The target-rate model made small (a second of one neuron with 50 inputs, on Brian2's numpy runtime):
#: 40 excitatory inputs at 100 Hz drive it as the model's 800 at 5 Hz do.
SMALL = {
    "model": "models/target-rate.yaml",
    "constants": {"n_excitatory": 40, "n_inhibitory": 10, "rate_excitatory": "100*Hz",
                  "learn": "0.1*second", "measure": "0.5*second"},
    "draws": 2,
    "conditions": {"train": [{"rate_inhibitory": "100*Hz"}],
                   "held_out": [{"rate_inhibitory": "10*Hz"}, {"rate_inhibitory": "400*Hz"}]},
    "rule": {"family": "spike_trace", "terms": ["pre_1", "pre_y", "post_x"]},
    "target": "hw_targets/cpu.yaml",
    "n_trials": 1,
    "batch_size": 1,
    "sampler": {"name": "random"},
}


def write(workdir: Path, **overrides) -> str:
    path = workdir / "studies/conditions.yaml"
    path.write_text(yaml.safe_dump({**SMALL, **overrides}, sort_keys=False))
    return str(path)


def test_eval_reports_each_held_out_condition_from_one_build(workdir, capsys):
    """The zero rule keeps the inhibitory weights, so the neuron's rate falls as the inhibitory input
    rate rises: the held-out draws ran at their own rates, in the network built for training."""
    path = write(workdir)
    before = builds().networks
    assert main(["eval", path, "--rule", "zero", "--json"]) == 0
    assert builds().networks == before + 1
    result = json.loads(capsys.readouterr().out)
    trained = np.array(result["rates_hz"])
    assert len(trained) == 2
    low, high = result["conditions"]
    assert low["values"] == {"rate_inhibitory": "10*Hz"} and high["values"] == {"rate_inhibitory": "400*Hz"}
    for condition in (low, high):
        rates = np.array(condition["rates_hz"])
        assert len(rates) == 2
        assert condition["loss"] == pytest.approx(min(np.mean((rates / 10.0 - 1) ** 2), LOSS_CAP))
    assert min(low["rates_hz"]) > trained.max() and trained.min() > max(high["rates_hz"])


def test_constants_of_the_equations_vary_per_draw_in_the_same_build(workdir, capsys):
    """E_i (in the neuron's equations) and w_e (in the excitatory synapses' on_pre) become per-draw
    variables of the network: at 400 Hz of inhibitory input the neuron is nearly silent, and fires
    again when the inhibitory reversal potential is the resting one or the excitatory weight doubles."""
    path = write(workdir, constants={**SMALL["constants"], "rate_inhibitory": "400*Hz"},
                 conditions={"train": [{"E_i": "-80*mV", "w_e": 0.05}],
                             "held_out": [{"E_i": "-60*mV", "w_e": 0.05}, {"E_i": "-80*mV", "w_e": 0.1}]})
    before = builds().networks
    assert main(["eval", path, "--rule", "zero", "--json"]) == 0
    assert builds().networks == before + 1
    result = json.loads(capsys.readouterr().out)
    silenced = max(result["rates_hz"])
    for condition in result["conditions"]:
        assert min(condition["rates_hz"]) > 10 * silenced, condition


def test_a_constant_computed_from_a_varied_one_varies_per_draw_too(workdir):
    """tau_i = 2 tau_e (the study's constants): a condition that sets tau_e changes tau_i as well, and
    both are per-draw variables of the network (else tau_i would keep the model's value)."""
    from codesign.spec import load_study
    from codesign.search.study import make_task

    path = write(workdir, constants={**SMALL["constants"], "tau_i": "2 * tau_e"},
                 conditions={"train": [{"tau_e": "5*ms"}], "held_out": [{"tau_e": "3*ms"}]})
    assert make_task(load_study(path)).varying() == ["tau_e", "tau_i"]


@pytest.mark.parametrize("train, held_out, message", [
    ({"rate_inhibitory": "10*Hz"}, {"rate_inhibitry": "7*Hz"},
     "conditions.held_out[0].rate_inhibitry: not a constant of the model models/target-rate.yaml "
     "(fix: constants of this model: target_rate, "),
    ({"learn": "0.1*second"}, {"learn": "1*second"},
     "conditions.held_out[0]: changes learn, which models/target-rate.yaml reads once for every draw "
     "(protocol[0].duration)"),
    ({"target_rate": "10*Hz"}, {"target_rate": "5*Hz"},
     "conditions.held_out[0]: changes target_rate, which models/target-rate.yaml reads once for every draw (loss)"),
])
def test_a_condition_the_network_cannot_vary_per_draw_is_a_one_line_error(workdir, capsys, train, held_out, message):
    path = write(workdir, conditions={"train": [train], "held_out": [held_out]})
    assert main(["eval", path, "--rule", "zero", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert line.startswith(f"codesign: error: {path}: {message}")
