"""What a plugin says about itself, and the code that asks it instead of comparing plugin names: a rule
family (:class:`codesign.rules.Family`) for the hardware emulation and the adaptation of a candidate to a
target, an objective (:class:`codesign.search.objectives.Objective`) for the Pareto plot."""

from __future__ import annotations

from pathlib import Path

import pytest

from codesign.errors import CodesignError
from codesign.hardware import load_target
from codesign.hardware.adapt import adapt_to_target
from codesign.models.emulation import Emulation
from codesign.models.spec import load_model
from codesign.rules import named_rule, vogels

ROOT = Path(__file__).resolve().parent.parent


def model_with(tmp_path: Path, name: str, old: str, new: str):
    """A shipped model with one line of its text replaced."""
    text = (ROOT / "models" / f"{name}.yaml").read_text()
    assert old in text
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace(old, new))
    return load_model(path)


def test_a_spike_trace_rule_makes_its_synapse_event_driven_for_the_emulation(tmp_path):
    # The inhibitory synapse without its transmission statement: only its rule changes w at spikes.
    model = model_with(tmp_path, "target-rate", "    on_pre: gi_post += w\n", "")
    assert not model.synapses["inhibitory"].on_pre and not model.synapses["inhibitory"].on_post
    assert Emulation.emulates(model) == ("weight_bits", "trace_bits", "rounding")


def test_the_emulation_refuses_a_weight_that_a_polynomial_rule_changes_continuously(tmp_path):
    model = model_with(tmp_path, "oja", "    weights: {w: null}", "    weights: {w: [-1, 1]}\n    on_pre: w = w")
    synapse = model.synapses["plastic"]
    emulation = Emulation(model, load_target(ROOT / "hw_targets/loihi.yaml"))
    with pytest.raises(CodesignError) as info:
        emulation.pathway(synapse.on_pre, synapse, "plastic", model.where.child("synapses").child("plastic"))
    assert "w changes by a differential equation; the hardware emulation rounds event-driven updates only" in \
        str(info.value)


def test_a_fixed_learning_engine_runs_the_families_that_name_it():
    loihi = load_target(ROOT / "hw_targets/loihi.yaml")
    assert loihi.learning.engine == "sum_of_products"
    assert adapt_to_target({"w": vogels()}, loihi)[3] == []
    assert adapt_to_target({"w": named_rule("oja")}, loihi)[3] == [
        "w: a polynomial rule is not a program of the sum_of_products learning engine"]
    # A software target runs any rule.
    assert adapt_to_target({"w": named_rule("oja")}, load_target(ROOT / "hw_targets/cpu.yaml"))[3] == []


@pytest.mark.parametrize("objective, xlabel, sweep_drawn", [
    ("weight_bits", "weight_bits", True),
    # A study that searches weight widths but trades the loss against energy: its width sweep is not on this axis.
    ("energy", "energy (per_operation J over the run)", False),
])
def test_the_pareto_plot_labels_its_axis_and_draws_the_width_sweep_from_the_data(workdir, monkeypatch, objective,
                                                                                 xlabel, sweep_drawn):
    import matplotlib.axes
    import optuna

    from codesign.report.plots import plot_pareto
    from codesign.spec import load_study

    study_file = workdir / "studies/joint.yaml"
    study_file.write_text(f"model: models/target-rate.yaml\nrule: {{family: spike_trace}}\n"
                          f"objectives: [loss, {objective}]\nhardware: {{weight_bits: [1, 8]}}\n"
                          "target: hw_targets/loihi.yaml\nsampler: {name: nsga2}\n")
    study = optuna.create_study(directions=["minimize", "minimize"])
    for values in ([1.0, 2.0], [0.5, 3.0]):
        study.add_trial(optuna.trial.create_trial(values=values, system_attrs={"constraints": [0.0]}))
    sweep = [{"rounding": "stochastic", "weight_bits": bits, "trial": 0, "n_trials": 1, "study_loss": 1.0,
              "held_out_loss": 1.0, "diverged": False} for bits in (2, 3)]
    labels, lines = [], []
    monkeypatch.setattr(matplotlib.axes.Axes, "set_xlabel", lambda ax, label, *args, **kw: labels.append(label))
    plot = matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot",
                        lambda ax, *args, **kw: lines.append(kw.get("label")) or plot(ax, *args, **kw))
    plot_pareto(load_study(study_file), study, workdir / "pareto.png", sweep)
    assert labels == [xlabel]
    assert lines[-1] == "Pareto front"
    assert lines[:-1] == (["best at each width, stochastic rounding, held-out (n: trials there)"] if sweep_drawn
                          else [])
