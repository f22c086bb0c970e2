"""Protocols of model files: constants set per phase, repeated trials, spikes per trial, Poisson groups.

Small models on the numpy runtime, written in the test; each check compares with what the protocol
must do (a neuron driven only in one phase fires only then; a trial's constants reach its pass)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from codesign.errors import CodesignError
from codesign.hardware import load_target
from codesign.models import ModelTask, load_model
from codesign.rules import SpikeTraceRule

ROOT = Path(__file__).resolve().parent.parent

BASE = {
    "name": "protocol",
    "constants": {"tau": "10*ms", "I_ext": 0, "drive": 0, "w_max": 1, "goal": "0*Hz"},
    "dt": "0.1*ms",
    "draws": 2,
    "groups": {
        "src": {"kind": "poisson", "size": 5, "rates": "50*Hz", "per": "draw"},
        "cell": {"size": 2, "model": "dv/dt = (I_ext * drive - v) / tau : 1", "threshold": "v > 1", "reset": "v = 0"},
    },
    "synapses": {"syn": {"source": "src", "target": "cell", "model": "w : 1", "on_pre": "v_post += w",
                         "initial": {"w": 0.1}, "weights": {"w": [0, "w_max"]},
                         "rule": {"slot": "s", "family": "spike_trace"}}},
    "protocol": [{"name": "rest", "duration": "100*ms"},
                 {"name": "test", "duration": "50*ms", "values": {"I_ext": 1}, "plastic": []}],
    "loss": {"kind": "rate_to_target", "group": "cell", "phase": "test", "target": 5, "weights": "syn.w"},
}


def model_file(tmp_path: Path, **changes) -> Path:
    data = {**BASE, **changes}
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def evaluate(path: Path, rules, seed: int = 3, target: str = "cpu.yaml"):
    task = ModelTask(load_model(path), load_target(ROOT / "hw_targets" / target))
    return task.evaluate(rules, seed)


RULES = [SpikeTraceRule({"pre_1": 0.1}), SpikeTraceRule({})]


def test_a_constant_set_in_one_phase_drives_the_neuron_only_then(tmp_path):
    path = model_file(tmp_path, constants={**BASE["constants"], "drive": 2})
    test_phase = evaluate(path, RULES)
    rest_phase = evaluate(model_file(tmp_path, constants={**BASE["constants"], "drive": 2},
                                     loss={**BASE["loss"], "phase": "rest"}), RULES)
    # Driven at I = 2 (threshold 1, tau 10 ms): a spike every ~7 ms in the test phase; the inputs
    # alone (5 x 50 Hz x 0.1 jumps of a 10 ms leak) never reach threshold.
    assert all(rate > 100 for e in test_phase for rate in e.metrics["rates_hz"])
    assert all(rate == 0 for e in rest_phase for rate in e.metrics["rates_hz"])


def test_phases_repeat_and_counts_add_up(tmp_path):
    constants = {**BASE["constants"], "drive": 2}
    once = evaluate(model_file(tmp_path, constants=constants), RULES)
    thrice = evaluate(model_file(tmp_path, constants=constants, repeat=3), RULES)
    # Rates are per second of the phase over all its repetitions: the same regime, 3x the spikes.
    for a, b in zip(once, thrice):
        assert b.counts.spikes == pytest.approx(3 * a.counts.spikes, rel=0.1)
        assert np.mean(b.metrics["rates_hz"]) == pytest.approx(np.mean(a.metrics["rates_hz"]), rel=0.1)


def test_learning_only_in_plastic_phases(tmp_path):
    rest_only = evaluate(model_file(tmp_path), RULES)
    everywhere = evaluate(model_file(tmp_path, protocol=[BASE["protocol"][0],
                                                         {**BASE["protocol"][1], "plastic": None}]), RULES)
    assert rest_only[1].metrics["mean_weight"] == pytest.approx(0.1)  # the zero rule
    # pre_1 = 0.1, eta 0.01: each input spike adds 0.001; ~50 Hz per input over 0.1 s vs 0.15 s.
    grew_rest, grew_all = rest_only[0].metrics["mean_weight"] - 0.1, everywhere[0].metrics["mean_weight"] - 0.1
    assert 0.002 < grew_rest < 0.009
    assert grew_all == pytest.approx(grew_rest * 1.5, rel=0.35)


def test_trials_take_turns_and_are_read_per_trial(tmp_path):
    path = model_file(tmp_path, repeat=3, trials=[{"drive": 0, "goal": "0*Hz"}, {"drive": 2, "goal": "150*Hz"}],
                      loss={"kind": "trial_rates", "group": "cell", "phase": "test", "target": "goal", "threshold": 50})
    (first, second) = evaluate(path, RULES)
    rates = first.arrays["rates"]  # (draws, passes)
    assert rates.shape == (2, 6)
    assert np.all(rates[:, 0::2] == 0) and np.all(rates[:, 1::2] > 100)
    assert first.metrics["accuracy"] == 1.0
    assert first.metrics["trial_rates_hz"][0] == 0 and first.metrics["trial_rates_hz"][1] > 100
    # The loss is the squared error in units of the largest target: small, not zero (160 vs 150 Hz).
    assert 0 < first.loss < 0.02


def test_trial_rates_loss_sees_a_wrong_answer(tmp_path):
    swapped = [{"drive": 0, "goal": "150*Hz"}, {"drive": 2, "goal": "0*Hz"}]
    path = model_file(tmp_path, repeat=2, trials=swapped,
                      loss={"kind": "trial_rates", "group": "cell", "phase": "test", "target": "goal", "threshold": 50})
    evaluation = evaluate(path, RULES[:1])[0]
    assert evaluation.metrics["accuracy"] == 0.0
    assert evaluation.loss > 1.0


BCE = {"kind": "trial_bce", "group": "cell", "phase": "test", "label": "hot", "low": 2, "high": 10, "name": "xor"}


def test_trial_bce_reads_rates_as_probabilities_against_each_trials_label(tmp_path):
    """Trial 1 silent (label 0), trial 2 driven far above `high` (label 1): p clips to 0.01 and 0.99, so
    the cross-entropy summed over the two trials is 2 ln(1/0.99); swapping the labels makes it 2 ln(100)."""
    trials = [{"drive": 0, "hot": 0}, {"drive": 2, "hot": 1}]
    constants = {**BASE["constants"], "hot": 0}
    right = evaluate(model_file(tmp_path, repeat=3, trials=trials, constants=constants,
                                loss={**BCE, "last": 2}), RULES[:1])[0]
    assert right.loss == pytest.approx(-2 * np.log(0.99))
    assert right.metrics["xor_correct"] == 2.0
    assert right.metrics["cell_rates_hz"][0] == 0 and right.metrics["cell_rates_hz"][1] > 100
    assert [len(d["cell_rates_hz"]) for d in right.metrics["per_draw"]] == [2, 2]  # two draws
    swapped = [{"drive": 0, "hot": 1}, {"drive": 2, "hot": 0}]
    wrong = evaluate(model_file(tmp_path, repeat=3, trials=swapped, constants=constants, loss=BCE), RULES[:1])[0]
    assert wrong.loss == pytest.approx(2 * np.log(100))
    assert wrong.metrics["xor_correct"] == 0.0


def test_trial_bce_follows_burst_probabilities_per_part(tmp_path):
    """A custom event `burst` on every second spike of neuron 1 only: part b's burst probability is the
    ratio of its counts (about 0.5), part a's is 0."""
    groups = {**BASE["groups"], "cell": {**BASE["groups"]["cell"], "model": "dv/dt = (I_ext * drive - v) / tau : 1\nn : 1",
                                         "reset": "v = 0\nn += 1", "events": {"burst": "v > 1 and i == 1 and n % 2 == 1"}}}
    path = model_file(tmp_path, groups=groups, trials=[{"drive": 2, "hot": 1}], constants={**BASE["constants"], "hot": 0},
                      loss={**BCE, "burst_probability": {"cell": ["a", "b"]}})
    evaluation = evaluate(path, RULES[:1])[0]
    probability = evaluation.metrics["burst_probability"]
    assert probability["a"] == 0 and probability["b"] == pytest.approx(0.5, abs=0.05)
    plot = tmp_path / "learning.png"
    assert ModelTask(load_model(path), load_target(ROOT / "hw_targets/cpu.yaml")).plot(evaluation, plot)
    assert plot.stat().st_size > 10_000


def test_repeat_may_be_an_expression_of_the_constants(tmp_path):
    constants = {**BASE["constants"], "drive": 2, "passes": 3}
    model = load_model(model_file(tmp_path, constants=constants, repeat="passes - 1"))
    assert model.repeat == 2 and model.cycles == 2
    study_like = model.with_constants({"passes": 5}, model.where)
    assert study_like.repeat == 4
    with pytest.raises(CodesignError, match=r"repeat: must be a whole number of at least 1, got 0"):
        model.with_constants({"passes": 1}, model.where)


def test_poisson_inputs_are_shared_by_candidates_and_reproducible(tmp_path):
    path = model_file(tmp_path)
    a, b = evaluate(path, RULES), evaluate(path, RULES)
    other_seed = evaluate(path, RULES, seed=4)
    assert a[0].counts.synaptic_events == a[1].counts.synaptic_events  # same input spikes per candidate
    assert [e.metrics for e in a] == [e.metrics for e in b]
    assert a[0].counts.synaptic_events != other_seed[0].counts.synaptic_events
    # 5 inputs at 50 Hz for 0.15 s, each with a synapse onto both cells.
    assert a[0].counts.synaptic_events == pytest.approx(5 * 50 * 0.15 * 2, rel=0.3)


def test_poisson_inputs_agree_between_numpy_and_cpp_standalone(tmp_path):
    path = model_file(tmp_path, repeat=2, trials=[{"drive": 0}, {"drive": 2}])
    numpy_run = evaluate(path, RULES)
    cpp_run = evaluate(path, RULES, target="cpu-standalone.yaml")
    for a, b in zip(numpy_run, cpp_run):
        assert a.metrics["rates_hz"] == b.metrics["rates_hz"]
        assert a.metrics["mean_weight"] == pytest.approx(b.metrics["mean_weight"], abs=1e-12)


@pytest.mark.parametrize("changes, key", [
    ({"trials": [{"nope": 1}]}, "trials[0].nope"),
    ({"protocol": [{"name": "rest", "duration": "100*ms", "values": {"nope": 1}}]}, "protocol[0].values.nope"),
    ({"protocol": [BASE["protocol"][0], {**BASE["protocol"][1], "values": {"I_ext": "5*mV"}}]},
     "protocol[1].values.I_ext"),
    ({"protocol": [BASE["protocol"][0], {**BASE["protocol"][1], "plastic": ["nope"]}]}, "protocol[1].plastic[0]"),
    ({"groups": {**BASE["groups"], "src": {"kind": "poisson", "size": 5}}}, "groups.src.rates"),
    ({"loss": {"kind": "trial_rates", "group": "cell", "phase": "test", "target": "goal"}}, "loss"),
])
def test_bad_protocols_are_one_line_errors(tmp_path, changes, key):
    with pytest.raises(CodesignError) as error:
        evaluate(model_file(tmp_path, **changes), RULES)
    assert error.value.key == key
    assert "\n" not in error.value.one_line()


def test_classification_by_output_rates(tmp_path):
    """Two outputs, class c is neuron c; trials drive neuron 0 or neuron 1 (drive is 2 for the class's
    neuron, through 1 - |i - label|)."""
    groups = {**BASE["groups"], "cell": {**BASE["groups"]["cell"],
                                         "model": "dv/dt = (I_ext * drive * (1 - abs(i - label)) - v) / tau : 1"}}
    constants = {**BASE["constants"], "drive": 2, "label": 0}
    loss = {"kind": "classification", "group": "cell", "phase": "test", "label": "label"}
    right = evaluate(model_file(tmp_path, groups=groups, constants=constants, repeat=2,
                                trials=[{"label": 0}, {"label": 1}], loss=loss), RULES[:1])[0]
    assert right.metrics["accuracy"] == 1.0
    assert right.metrics["confusion"] == [[4, 0], [0, 4]]  # 2 draws x 2 passes per class
    # The loss is the cross-entropy: near 0 when the right neuron fires at ~150 Hz and the other not.
    assert right.loss < 1e-3
    wrong_groups = {**groups, "cell": {**groups["cell"],
                                       "model": "dv/dt = (I_ext * drive * abs(i - label) - v) / tau : 1"}}
    wrong = evaluate(model_file(tmp_path, groups=wrong_groups, constants=constants, repeat=2,
                                trials=[{"label": 0}, {"label": 1}], loss=loss), RULES[:1])[0]
    assert wrong.metrics["accuracy"] == 0.0
    assert wrong.loss > 5
