"""Reward-modulated rules from behaviour (issue 18, Mehta et al. 2024): models/two-choice.yaml, recordings
that keep only the choices and the rewards received, and the choice_likelihood loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codesign.cli import main
from codesign.hardware import load_target
from codesign.hardware.target import bundled_target
from codesign.models import ModelTask, load_model
from codesign.models.recorder import Recorded, recording_model
from codesign.models.recordings import load_trajectories
from codesign.schema import Where
from codesign.search.infer import InferSettings, infer

from tests.test_bad_input import one_line_error

MODEL = "models/two-choice.yaml"
ETA = "200"


def record(capsys, path: str, *extra: str, rule: str = "reward_forgetting") -> None:
    code = main(["record", MODEL, "--rule", rule, "--eta", ETA, "-o", path, *extra])
    assert code == 0, capsys.readouterr().err


def test_recordings_keep_the_behaviour_and_force_it_on_any_candidate(workdir: Path, capsys):
    record(capsys, "choices.npz", "--trajectories", "4", "--seed", "3")
    recorded = load_trajectories("choices.npz")
    chosen = recorded.activity[:, :, 0]
    assert recorded.inputs.shape == (4, 400, 12) and recorded.activity.shape == (4, 400, 1)
    assert set(np.unique(chosen)) == {0.0, 1.0} and recorded.info["fit"] == "choice_likelihood"
    # the uniform column now forces each recorded choice; a reward only where the odour was accepted
    np.testing.assert_array_equal(recorded.inputs[:, :, 10], np.where(chosen > 0.5, -1.0, 2.0))
    assert np.all(recorded.inputs[:, :, 11][chosen < 0.5] == 0) and recorded.inputs[:, :, 11].sum() > 100
    model = load_model(MODEL)
    fitted = recording_model(model, Recorded("choice.accepted", "plastic.w", 0.001, "choice_likelihood", "choice.p"),
                             Where(None, "x"), file="choices.npz", count=4)
    task = ModelTask(fitted, load_target(bundled_target("cpu")))
    etas = {"w": float(ETA)}
    teacher, zero, plain = task.evaluate([task.candidate(n, etas) for n in ("reward_forgetting", "zero", "reward")], seed=0)
    # every candidate makes the recorded choices: the teacher's weights are the recorded ones exactly
    assert teacher.metrics["weights_r2"] == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(teacher.arrays["recorded"], chosen[:, :, None])
    assert zero.loss > teacher.loss + 0.05 and plain.loss > teacher.loss
    assert 0.1 < teacher.metrics["deviance_explained"] < 1.0


def test_choices_are_not_given_measurement_noise(workdir: Path, capsys):
    message = one_line_error(capsys, "record", MODEL, "--rule", "reward", "--noise", "0.1", "-o", "x.npz")
    assert "--noise" in message and "choices are recorded as they were made" in message
    assert not Path("x.npz").exists()


@pytest.mark.science
def test_infer_recovers_the_reward_prediction_error_rule_with_forgetting_from_choices(workdir: Path, capsys,
                                                                                     science_seed):
    """dw = eta (x (r - E[r]) - 0.05 w) from 8 animals' choices (400 each), 3 free terms, scored on 4 held-out
    animals. Measured on input seeds 1-6 (README, "Reward-modulated rules from choices"): theta_110 0.88-1.06,
    theta_001 -0.043 to -0.056, |theta_010| / theta_110 at most 0.05, held-out NLL within 0.4 % of the
    teacher's own, weights R^2 0.974-0.999. 800 choices fix the rule to about 10 %, not to 1 %."""
    record(capsys, "choices.npz", "--trajectories", "12", "--seed", str(science_seed(1)))
    result = infer(InferSettings("choices.npz", terms=["theta_110", "theta_001", "theta_010"], n_trials=640,
                                 batch_size=16, fit=8))
    c = result["coefficients"]
    assert c["theta_110"] == pytest.approx(1.0, rel=0.15) and c["theta_001"] == pytest.approx(-0.05, rel=0.25)
    assert abs(c["theta_010"]) < 0.1 * c["theta_110"]
    held, best = result["held_out"], result["teacher_held_out"]
    assert held["nll_per_choice"] < 1.01 * best["nll_per_choice"] and held["weights_r2"] > 0.95
