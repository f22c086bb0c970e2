"""Conformance per plugin kind, parametrised over the registries: a new loss, sampler or objective
without a case here fails, as does a case for a plugin no longer registered.

- every loss of :data:`codesign.models.LOSSES` turns hand-built recordings into the loss computed
  by hand in its case;
- every sampler of :data:`codesign.search.samplers.SAMPLERS` runs a tiny real study to exactly
  ``n_trials`` finished trials, none proposed twice, and a two-objective study where it declares
  ``multi_objective``;
- every objective of :data:`codesign.search.objectives.OBJECTIVES` gives its hand-computed value for
  an evaluation, and the study that cannot give it is refused in one line.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import yaml
from optuna.trial import TrialState

from codesign.errors import CodesignError
from codesign.hardware import EventCounts
from codesign.models import LOSSES, Evaluation, Recordings, load_model
from codesign.models.losses import make_loss
from codesign.models.network import TRIALS
from codesign.search.launcher import run_study
from codesign.search.objectives import OBJECTIVES
from codesign.search.samplers import SAMPLERS
from codesign.search.worker import objective_values
from codesign.spec import load_study

ROOT = Path(__file__).resolve().parent.parent


def _case_of(cases: dict[str, Any], kind: str, name: str) -> Any:
    if name not in cases:
        pytest.fail(f"{kind} {name!r} is registered but has no conformance case: add one to tests/test_conformance.py")
    return cases[name]


@pytest.mark.parametrize("registry, cases", [("LOSSES", "LOSS_CASES"), ("SAMPLERS", "SAMPLER_CASES"),
                                             ("OBJECTIVES", "OBJECTIVE_CASES")])
def test_every_case_names_a_registered_plugin(registry, cases):
    stale = set(globals()[cases]) - set(globals()[registry])
    assert not stale, f"cases for plugins not in {registry}: {sorted(stale)}"


# -- losses ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class LossCase:
    """A model (shipped, or a tiny one written by the test), the recordings of one candidate, and
    the loss and metrics computed by hand."""

    model: Callable[[Path], Path]
    recordings: Callable[[], Recordings]
    loss: float
    metrics: dict[str, Any]
    diverged: bool = False


def shipped(name: str) -> Callable[[Path], Path]:
    return lambda tmp_path: ROOT / "models" / f"{name}.yaml"


def trial_model(loss: dict) -> Callable[[Path], Path]:
    """Two cells read in phase ``test`` (0.1 s) of two trials: trial 0 asks for 0 Hz and class 0,
    trial 1 for 20 Hz and class 1."""
    def write(tmp_path: Path) -> Path:
        model = {
            "name": "trials", "constants": {"tau": "10*ms", "goal": "0*Hz", "label": 0}, "dt": "0.1*ms", "draws": 1,
            "groups": {"cell": {"size": 2, "model": "dv/dt = -v / tau : 1", "threshold": "v > 1", "reset": "v = 0"}},
            "protocol": [{"name": "rest", "duration": "100*ms"}, {"name": "test", "duration": "100*ms"}],
            "trials": [{"goal": "0*Hz", "label": 0}, {"goal": "20*Hz", "label": 1}],
            "loss": loss,
        }
        path = tmp_path / "trials.yaml"
        path.write_text(yaml.safe_dump(model, sort_keys=False))
        return path

    return write


def recordings(values=None, counts=None, facts=None, duration_s=1.0, phases=None, present=None,
               phase_seconds=None) -> Recordings:
    draws = len(next(iter({**(values or {}), **(counts or {})}.values())))
    return Recordings(values or {}, counts or {}, facts or {}, [{}] * draws, duration_s, phases or {},
                      present or {}, phase_seconds or {})


def pc1_recordings() -> Recordings:
    """PC1 is the first input; draw 0 ends at -PC1 (distance 0, sign ignored), draw 1 at 2 PC1 (distance 1)."""
    eye = np.eye(5)
    weights = np.stack([-eye[0], 2 * eye[0]])[:, None, :]  # (draws, 1 output, 5 inputs)
    return recordings({"plastic.w": weights}, facts={"stimulus": {"eigenvectors": np.stack([eye, eye])}})


def pca_recordings() -> Recordings:
    """Eigenvectors are the inputs (covariance diagonal); with M = 0 the outputs are W x.
    Draw 0: W spans the top 3 exactly (sin 0, uncorrelated). Draw 1: its third row is tilted 30
    degrees out of the subspace (sin 30 = 0.5, still uncorrelated). Draw 2 diverged, its first output
    blew up halfway through the 20 s run: 2 + 8 * 0.5 = 6."""
    eye = np.eye(8)
    tilted = np.stack([eye[0], eye[1], math.cos(math.pi / 6) * eye[2] + math.sin(math.pi / 6) * eye[3]])
    w = np.stack([eye[:3], tilted, np.full((3, 8), np.nan)])
    cov = np.diag(np.arange(8.0, 0.0, -1.0))
    stimulus = {"cov": np.stack([cov] * 3), "eigenvectors": np.stack([eye] * 3),
                "eigenvalues": np.stack([np.diag(cov)] * 3)}
    stable = np.array([[20.0] * 3, [20.0] * 3, [10.0, 15.0, 20.0]])
    return recordings({"feedforward.w": w, "lateral.m": np.zeros((3, 3, 3)), "outputs.stable": stable},
                      facts={"stimulus": stimulus}, duration_s=20.0)


def rate_recordings() -> Recordings:
    """80 and 120 spikes in the 10 s measure phase: 8 and 12 Hz against 10 Hz, relative errors -0.2
    and 0.2; inhibitory weights 0.3 where a synapse is (inputs 800..999), junk elsewhere."""
    present = np.zeros((1, 1000), dtype=bool)
    present[0, 800:] = True
    weights = np.where(present, 0.3, 99.0)
    return recordings({"inhibitory.w": np.stack([weights, weights])}, {"neuron@measure": np.array([[80], [120]])},
                      present={"inhibitory": present}, phase_seconds={"measure": 10.0})


def class_recordings() -> Recordings:
    """One draw, two passes of the 0.1 s test phase: pass 0 cell 0 at 10 Hz, cell 1 silent; pass 1 both silent."""
    counts = np.array([[[1, 0], [0, 0]]])  # (draws, passes, cells)
    return recordings(counts={f"cell@test{TRIALS}": counts}, phases={"rest": (0.0, 0.1), "test": (0.1, 0.2)})


def trial_rate_recordings() -> Recordings:
    """Pass 0 silent (target 0 Hz), pass 1 cells at 20 and 0 Hz: mean 10 Hz against 20 Hz."""
    counts = np.array([[[0, 0], [2, 0]]])
    return recordings(counts={f"cell@test{TRIALS}": counts}, phases={"rest": (0.0, 0.1), "test": (0.1, 0.2)})


def trajectory_model(tmp_path: Path) -> Path:
    """models/oja.yaml fitted to recordings: its stimulus of kind recorded, its loss trajectory_fit."""
    model = yaml.safe_load((ROOT / "models" / "oja.yaml").read_text())
    model["stimuli"] = {"stimulus": {"kind": "recorded", "file": "recordings.npz", "initial": ["plastic.w"]}}
    model["loss"] = {"kind": "trajectory_fit", "activity": "output.y", "stimulus": "stimulus", "every": 0.02}
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump(model, sort_keys=False))
    return path


def trajectory_recordings() -> Recordings:
    """Two outputs, only the first recorded (the second's simulated values must not count). Draw 0 fits
    exactly; draw 1 is off by 1 at its last sample: squared errors 0 and 1/3, over the recordings'
    variance 5.5 / 6: loss 2/11. R^2 1 and 1 - 1/2 (median 0.75)."""
    observed = np.array([[[0.0, np.nan], [1.0, np.nan], [2.0, np.nan]], [[1.0, np.nan], [2.0, np.nan], [3.0, np.nan]]])
    simulated = np.array([[[0.0, 100.0], [1.0, -5.0], [2.0, 7.0]], [[1.0, 3.0], [2.0, 3.0], [4.0, 3.0]]])
    facts = {"stimulus": {"activity": observed, "recorded": np.array([[True, False]] * 2)}}
    rec = recordings({"plastic.w": np.zeros((2, 2, 5))}, facts=facts)
    rec.series = {"output.y/every:0.02": simulated}
    return rec


def choice_model(tmp_path: Path) -> Path:
    """models/two-choice.yaml fitted to recorded choices: its stimulus of kind recorded, its loss choice_likelihood."""
    model = yaml.safe_load((ROOT / "models" / "two-choice.yaml").read_text())
    model["stimuli"] = {"task": {"kind": "recorded", "file": "recordings.npz", "initial": ["plastic.w"]}}
    model["loss"] = {"kind": "choice_likelihood", "activity": "choice.accepted", "probability": "choice.p",
                     "stimulus": "task", "every": 0.001}
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump(model, sort_keys=False))
    return path


def choice_recordings() -> Recordings:
    """Two animals, two choices each (accepted, then not): probabilities (1/2, 1/4) and (3/4, 3/4)."""
    chosen = np.array([[[1.0], [0.0]], [[1.0], [0.0]]])
    rec = recordings({"plastic.w": np.zeros((2, 1, 10))},
                     facts={"task": {"activity": chosen, "recorded": np.array([[True]] * 2)}})
    rec.series = {"choice.p/every:0.001": np.array([[[0.5], [0.25]], [[0.75], [0.75]]])}
    return rec


#: Per animal, -mean log P(choice): (log 2 + log 4/3) / 2 and (log 4/3 + log 4) / 2; the coin's is log 2.
_NLL = ((math.log(2) + math.log(4 / 3)) / 2, (math.log(4 / 3) + math.log(4)) / 2)

LOSS_CASES = {
    "choice_likelihood": LossCase(choice_model, choice_recordings, loss=sum(_NLL) / 2 / math.log(2),
                                  metrics={"nll_per_choice": sum(_NLL) / 2, "n_diverged": 0,
                                           "deviance_explained": 1 - sum(_NLL) / 2 / math.log(2)}),
    "trajectory_fit": LossCase(trajectory_model, trajectory_recordings, loss=2 / 11,
                               metrics={"activity_r2": 0.75, "n_diverged": 0}),
    "pc1_alignment": LossCase(shipped("oja"), pc1_recordings, loss=0.5,
                              metrics={"abs_cos_pc1": 1.0, "min_abs_cos_pc1": 1.0, "weight_norm": 1.5, "n_diverged": 0}),
    "pca_subspace": LossCase(shipped("pca-network"), pca_recordings, loss=(0 + 0.5 + 6) / 3, diverged=True,
                             metrics={"subspace_error": (0 + 0.5 + 1) / 3, "n_diverged": 1, "stable_fraction": 0.5,
                                      "max_output_correlation": 1.0, "mean_max_output_correlation": 1 / 3}),
    "rate_to_target": LossCase(shipped("target-rate"), rate_recordings, loss=0.04,
                               metrics={"rates_hz": [8.0, 12.0], "max_rate_error": 0.2, "mean_weight": 0.3}),
    # Scale: the largest target, 20 Hz; errors 0 and (10 - 20) / 20 = -0.5; threshold 5 Hz: both right.
    "trial_rates": LossCase(trial_model({"kind": "trial_rates", "group": "cell", "phase": "test", "target": "goal",
                                         "threshold": 5}), trial_rate_recordings, loss=0.5**2 / 2,
                            metrics={"trial_rates_hz": [0.0, 10.0], "accuracy": 1.0}),
    # Rates / 10 Hz as logits. Pass 0 (class 0): logits (1, 0), cross-entropy log(1 + e^-1), chosen 0.
    # Pass 1 (class 1): logits (0, 0), log 2, chosen 0 (the first of a tie): accuracy 1/2.
    "classification": LossCase(trial_model({"kind": "classification", "group": "cell", "phase": "test",
                                            "label": "label"}), class_recordings,
                               loss=(math.log(1 + math.exp(-1)) + math.log(2)) / 2,
                               metrics={"accuracy": 0.5, "confusion": [[1, 0], [1, 0]]}),
    # p = rate / 20 Hz: pass 0 (label 0) 0 -> clipped to 0.01, -log(0.99); pass 1 (label 1) 10 Hz -> 0.5, -log(0.5);
    # summed over the pass's two trials. Threshold 5 Hz: both right.
    "trial_bce": LossCase(trial_model({"kind": "trial_bce", "group": "cell", "phase": "test", "label": "label",
                                       "low": 0, "high": 20, "threshold": 5, "name": "xor"}), trial_rate_recordings,
                          loss=-math.log(0.99) - math.log(0.5), metrics={"cell_rates_hz": [0.0, 10.0], "xor_correct": 2}),
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_gives_its_hand_computed_value(name, tmp_path):
    case = _case_of(LOSS_CASES, "loss", name)
    model = load_model(case.model(tmp_path))
    assert model.loss.kind == name, "the case's model must use the loss under test"
    loss = make_loss(model)
    loss.records()  # the names it reads exist in the model
    evaluation = loss(case.recordings())
    assert evaluation.loss == pytest.approx(case.loss, rel=1e-9, abs=1e-12)
    assert evaluation.diverged == case.diverged
    for key, expected in case.metrics.items():
        np.testing.assert_allclose(evaluation.metrics[key], expected, rtol=1e-9, atol=1e-12, err_msg=key)


# -- samplers ----------------------------------------------------------------------------------------

#: A tiny Oja study per sampler: (n_trials, batch_size); CMA-ES needs a population of 4 at least.
SAMPLER_CASES = {"cmaes": (8, 4), "tpe": (6, 3), "nsga2": (6, 3), "random": (6, 3)}
#: Loss against weight bits: a model with bounded event-driven weights (Oja's has none), made small.
MULTI_OBJECTIVE = {
    "model": "models/target-rate.yaml", "rule": {"family": "spike_trace", "terms": ["pre_1", "pre_y", "post_x"]},
    "constants": {"n_excitatory": 80, "n_inhibitory": 20, "rate_excitatory": "50*Hz", "rate_inhibitory": "100*Hz",
                  "learn": "0.2*second", "measure": "0.2*second"},
    "draws": 1, "objectives": ["loss", "weight_bits"], "hardware": {"weight_bits": [1, 8]},
}


def multi_objective_study(workdir: Path, name: str, **overrides) -> Path:
    path = workdir / "studies" / f"multi-{name}.yaml"
    study = {"name": f"multi-{name}", "target": "hw_targets/cpu.yaml", "seed": 3, **MULTI_OBJECTIVE, **overrides}
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _finished_once_each(study, n_trials: int) -> list:
    states = {t.state for t in study.trials}
    assert states <= {TrialState.COMPLETE, TrialState.PRUNED}, states
    assert len(study.trials) == n_trials
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(params)) == n_trials, "a trial was proposed twice"
    return study.trials


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_runs_a_tiny_study_to_its_trials(name, write_study):
    n_trials, batch_size = _case_of(SAMPLER_CASES, "sampler", name)
    spec = load_study(write_study(f"tiny-{name}", sampler={"name": name}, n_trials=n_trials, batch_size=batch_size))
    _finished_once_each(run_study(spec), n_trials)


@pytest.mark.parametrize("name", [n for n, kind in SAMPLERS.items() if kind.multi_objective])
def test_every_multi_objective_sampler_runs_a_two_objective_study(name, workdir):
    n_trials, batch_size = _case_of(SAMPLER_CASES, "sampler", name)
    spec = load_study(multi_objective_study(workdir, name, sampler={"name": name}, n_trials=n_trials,
                                            batch_size=batch_size))
    trials = _finished_once_each(run_study(spec), n_trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete and all(t.values[1] == t.params["hw.weight_bits"] for t in complete)


@pytest.mark.parametrize("name", [n for n, kind in SAMPLERS.items() if not kind.multi_objective])
def test_a_single_objective_sampler_refuses_two_objectives(name, workdir):
    with pytest.raises(CodesignError) as error:
        load_study(multi_objective_study(workdir, name, sampler={"name": name}, batch_size=4))
    assert error.value.key.startswith("sampler") and "\n" not in error.value.one_line()


# -- objectives --------------------------------------------------------------------------------------


@dataclasses.dataclass
class ObjectiveCase:
    """A study minimising ``[loss, NAME]`` (``study`` lines added), an evaluation and the trial's
    knobs; the objective's value computed by hand; a study that cannot give it (None: every study can)."""

    study: str
    evaluation: Evaluation
    knobs: dict[str, Any]
    value: float
    refused: str | None


STUDY = "model: models/target-rate.yaml\nrule: {family: spike_trace}\nsampler: {name: nsga2}\n"
COUNTS = EventCounts(duration_s=2.0, synaptic_events=1000, spikes=50, learning_updates=200, neurons=1, synapses=1000,
                     plastic_synapses=200)
KNOBS = {"weight_bits": 5, "trace_bits": 3, "rounding": "nearest"}
SEARCHED = "hardware: {weight_bits: [1, 8], trace_bits: [3, 7]}\ntarget: hw_targets/loihi2.yaml\n"

OBJECTIVE_CASES = {
    "loss": ObjectiveCase("target: hw_targets/cpu.yaml\n", Evaluation(0.25), {}, 0.25, None),
    # Davies et al. 2018's per-operation figures (hw_targets/loihi.yaml), 2000 neuron updates of 1 ms.
    "energy": ObjectiveCase("target: hw_targets/loihi.yaml\n", Evaluation(0.25, counts=COUNTS), {},
                            1000 * 23.6e-12 + 50 * 1.7e-12 + 200 * 120e-12 + 2000 * 81e-12,
                            "target: hw_targets/spinnaker2.yaml\n"),
    "weight_bits": ObjectiveCase(SEARCHED, Evaluation(0.25), KNOBS, 5, "target: hw_targets/loihi2.yaml\n"),
    "trace_bits": ObjectiveCase(SEARCHED, Evaluation(0.25), KNOBS, 3, "target: hw_targets/loihi2.yaml\n"),
}


def _objective_study(workdir: Path, name: str, lines: str) -> Path:
    path = workdir / "studies" / f"objective-{name}.yaml"
    objectives = "[loss]" if name == "loss" else f"[loss, {name}]"
    path.write_text(STUDY + f"objectives: {objectives}\n" + lines)
    return path


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_every_objective_gives_its_hand_computed_value(name, workdir):
    case = _case_of(OBJECTIVE_CASES, "objective", name)
    spec = load_study(_objective_study(workdir, name, case.study))
    values, fits = objective_values(spec, case.evaluation, case.knobs)
    assert values[0] == case.evaluation.loss and fits
    assert values[-1] == pytest.approx(case.value, rel=1e-12)


@pytest.mark.parametrize("name", [n for n in OBJECTIVES if n in OBJECTIVE_CASES and OBJECTIVE_CASES[n].refused])
def test_every_objective_refuses_a_study_that_cannot_give_it(name, workdir):
    with pytest.raises(CodesignError) as error:
        load_study(_objective_study(workdir, name, OBJECTIVE_CASES[name].refused))
    assert error.value.key.startswith("objectives") and "\n" not in error.value.one_line()
