"""Rules from recordings (issue 18, Mehta et al. 2024): recordings files, codesign record, the
trajectory_fit loss and codesign infer, checked against a known teacher (Oja's rule)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from codesign.backends import builds, clear_simulations
from codesign.cli import main
from codesign.hardware import load_target
from codesign.hardware.target import bundled_target
from codesign.models import ModelTask, load_model
from codesign.models.recorder import Recorded, recording_model
from codesign.models.recordings import load_trajectories, save_trajectories
from codesign.schema import Where
from codesign.search.infer import InferSettings, infer

from tests.test_bad_input import one_line_error

SHORT = ["--constants", "duration=2*second", "n_inputs=4"]


def record(capsys, path: str, *extra: str) -> None:
    code = main(["record", "models/oja.yaml", "--rule", "oja", *SHORT, "-o", path, *extra])
    assert code == 0, capsys.readouterr().err


def test_record_writes_noise_once_and_masks_the_units_not_recorded(workdir: Path, capsys):
    record(capsys, "clean.npz", "--trajectories", "4", "--seed", "3", "--constants", "duration=2*second",
           "n_inputs=4", "n_outputs=10")
    record(capsys, "noisy.npz", "--trajectories", "4", "--seed", "3", "--noise", "0.3", "--recorded-fraction", "0.3",
           "--constants", "duration=2*second", "n_inputs=4", "n_outputs=10")
    clean, noisy = load_trajectories("clean.npz"), load_trajectories("noisy.npz")
    assert clean.inputs.shape == (4, 2000, 4) and clean.activity.shape == (4, 100, 10)
    assert clean.weights.shape == (4, 100, 10, 4) and clean.initial["plastic.w"].shape == (4, 10, 4)
    assert clean.recorded.all() and noisy.recorded.sum() == 3
    assert np.all(np.isnan(noisy.activity[:, :, ~noisy.recorded]))
    np.testing.assert_array_equal(clean.inputs, noisy.inputs)  # the same seed: the same draws
    # y = w.x, from the stored inputs and weights: the three arrays line up in time (a sample holds y as
    # its step computed it, from that step's inputs, and w after that step's learning)
    def mismatch(offset: int) -> float:
        x = clean.inputs[:, np.arange(1, 100) * 20 + offset]
        predicted = np.einsum("rtoi,rti->rto", clean.weights[:, 1:], x)
        return float(np.median(np.abs(predicted - clean.activity[:, 1:])) / clean.activity.std())
    assert mismatch(0) < 0.01 and mismatch(-1) > 0.3
    units = noisy.recorded
    residual = noisy.activity[:, :, units] - clean.activity[:, :, units]
    ratio = residual.std(axis=(0, 1)) / clean.activity[:, :, units].std(axis=(0, 1))
    assert np.all(np.abs(ratio - 0.3) < 0.05), ratio
    assert noisy.info["teacher"]["w"]["coefficients"] == {"theta_110": 1.0, "theta_021": -1.0}


def test_the_teacher_fits_its_own_recordings_exactly_and_other_rules_do_not(workdir: Path, capsys):
    record(capsys, "oja.npz", "--trajectories", "4", "--seed", "5")
    model = load_model("models/oja.yaml").with_constants({"duration": "2*second", "n_inputs": 4}, Where(None, "x"))
    fitted = recording_model(model, Recorded("output.y", "plastic.w", 0.02), Where(None, "x"), file="oja.npz", count=4)
    task = ModelTask(fitted, load_target(bundled_target("cpu")))
    names = ["oja", "zero", "hebb"]
    oja, zero, hebb = task.evaluate([task.candidate(n, {"w": 10.0}) for n in names], seed=0)
    assert oja.loss < 1e-20 and oja.metrics["activity_r2"] == pytest.approx(1.0) and oja.metrics["weights_r2"] == pytest.approx(1.0)
    assert zero.loss > 0.05 and zero.metrics["weights_r2"] < 0.5
    assert hebb.loss > zero.loss
    # another seed's inputs would not fit: the recordings are the data, whatever the seed
    assert task.evaluate([task.candidate("oja", {"w": 10.0})], seed=99)[0].loss < 1e-20


@pytest.mark.science
def test_infer_recovers_oja_from_noise_free_recordings_and_drops_the_terms_it_lacks(workdir: Path, capsys,
                                                                                   science_seed):
    """Shortened form of the README's claim (13 terms, 6000 trials: the slow test below): 4 terms, an L1
    penalty and one refinement round, which must drop the two terms the teacher lacks. Passed on input
    seeds 1-4."""
    record(capsys, "oja.npz", "--trajectories", "6", "--seed", str(science_seed(1)))
    clear_simulations()  # the count below starts from nothing this process built before
    before = builds()
    result = infer(InferSettings("oja.npz", terms=["theta_110", "theta_021", "theta_001", "theta_000"],
                                 n_trials=640, batch_size=16, fit=4, l1=0.001, refine_rounds=1, refine_threshold=0.05))
    assert builds().networks - before.networks == 2  # the fit's, for both rounds, and the held-out trajectories'
    assert [r["terms"] for r in result["rounds"]] == [["theta_110", "theta_021", "theta_001", "theta_000"],
                                                      ["theta_110", "theta_021"]]
    c = result["coefficients"]
    assert c["theta_001"] == c["theta_000"] == 0.0 and result["trials"] == 1280
    assert c["theta_110"] == pytest.approx(1.0, rel=0.05) and c["theta_021"] == pytest.approx(-1.0, rel=0.05)
    assert result["held_out"]["weights_r2"] > 0.99 and result["held_out_trajectories"] == 2


@pytest.mark.slow
def test_infer_recovers_oja_with_13_free_terms(workdir: Path, capsys):
    record(capsys, "oja.npz", "--trajectories", "12", "--seed", "7")
    terms = ["theta_000", "theta_001", "theta_002", "theta_010", "theta_011", "theta_020", "theta_021", "theta_100",
             "theta_101", "theta_110", "theta_111", "theta_200", "theta_201"]
    result = infer(InferSettings("oja.npz", terms=terms, n_trials=6000, batch_size=16, fit=8))
    c = result["coefficients"]
    assert c["theta_110"] == pytest.approx(1.0, rel=0.05) and c["theta_021"] == pytest.approx(-1.0, rel=0.05)
    assert all(abs(v) < 0.05 * abs(c["theta_110"]) for t, v in c.items() if t not in ("theta_110", "theta_021"))
    assert result["held_out"]["weights_r2"] >= 0.99


def test_infer_prints_the_table_next_to_the_teacher(workdir: Path, capsys):
    record(capsys, "oja.npz", "--trajectories", "3", "--seed", "2")
    capsys.readouterr()
    assert main(["infer", "oja.npz", "--terms", "all", "--trials", "32", "--fit", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["coefficients"]) == 27
    assert result["teacher"]["coefficients"] == {"theta_110": 1.0, "theta_021": -1.0}
    assert result["trials"] == 32 and result["fitted_trajectories"] == 2
    assert main(["infer", "oja.npz", "--terms", "all", "--trials", "32", "--fit", "2"]) == 0  # resumes: no new trial
    out = capsys.readouterr().out
    assert "inferred rule (32 trials" in out and "held out (1 trajectories)" in out
    assert any(line.split()[1:2] == ["theta_110"] and line.split()[-2] == "+1.0000" for line in out.splitlines()), out


@pytest.mark.slow  # 20-30 s: make test was at its 20-minute limit
def test_robustness_sweep_finds_the_rule_without_noise_and_loses_it_with_noise(workdir: Path, capsys):
    from codesign.search.robustness import SweepSettings, coefficient_error, summary, sweep

    assert coefficient_error({"theta_110": 1.0, "theta_021": -1.0}, {"theta_110": 1.0, "theta_021": -1.0}) == 0
    assert coefficient_error({"theta_110": 0.0, "theta_021": 0.0}, {"theta_110": 1.0, "theta_021": -1.0}) == 1
    model = load_model("models/oja.yaml").with_constants({"duration": "2*second", "n_inputs": 4}, Where(None, "x"))
    target = load_target(bundled_target("cpu-standalone"))
    candidate = ModelTask(model, target).candidate("oja", {"w": 10.0})
    teacher = {"w": {"family": "polynomial", "eta": 10.0, "coefficients": {"theta_110": 1.0, "theta_021": -1.0}}}
    settings = SweepSettings(model, target, candidate, teacher, Recorded("output.y", "plastic.w", 0.02), Path("sweep"),
                             noise=(0.0, 3.0), fractions=(), seeds=(1,), trajectories=5, fit=3,
                             terms=("theta_110", "theta_021"), n_trials=320)
    rows = sweep(settings)
    clean, noisy = rows
    assert clean["weights_r2"] > 0.99 and clean["coefficient_error"] < 0.05
    assert noisy["coefficient_error"] > 2 * clean["coefficient_error"] and noisy["activity_r2"] < 0.5
    assert [p["value"] for p in summary(rows)] == [0.0, 3.0]
    assert json.loads(Path("sweep/robustness.json").read_text()) == json.loads(json.dumps(rows))


def _arrays(path: str) -> dict:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("change, expected", [
    (lambda a: a.pop("activity"), "activity: missing array"),
    (lambda a: a.update(inputs=a["inputs"][0]), "inputs: shape (2000, 4), expected (trajectories, steps, columns)"),
    (lambda a: a.update(recorded=np.zeros_like(a["recorded"])), "recorded: shape (1,) with 0 recorded units"),
    (lambda a: a["activity"].__setitem__((0, 3, 0), np.nan), "activity: NaN or infinite values in a recorded unit"),
    (lambda a: a.update(info=np.array("{not json")), "info: not JSON"),
    (lambda a: a.update(info=np.array(json.dumps({"dt": 0.001}))), "info.every: missing"),
    (lambda a: a.update(weights=a["weights"][:, :5]), "weights: shape (3, 5, 1, 4), expected (3, 100, n_post, n_pre)"),
])
def test_malformed_recordings_are_one_line_errors(workdir: Path, capsys, change, expected):
    record(capsys, "good.npz", "--trajectories", "3")
    arrays = _arrays("good.npz")
    change(arrays)
    np.savez("bad.npz", **arrays)
    err = one_line_error(capsys, "infer", "bad.npz", "--trials", "4")
    assert f"bad.npz: {expected}" in err, err


def test_bad_record_and_infer_options_are_one_line_errors(workdir: Path, capsys):
    Path("text.npz").write_text("not numpy")
    assert "text.npz: not a NumPy .npz file" in one_line_error(capsys, "infer", "text.npz")
    assert "--constants: 'n_outputs' is not NAME=VALUE" in one_line_error(
        capsys, "record", "oja", "--rule", "oja", "--constants", "n_outputs", "-o", "x.npz")
    assert "--rule: unknown rule 'nope'" in one_line_error(capsys, "record", "oja", "--rule", "nope", "-o", "x.npz")
    assert "--recorded-fraction: 1.5 is not a fraction" in one_line_error(
        capsys, "record", "oja", "--rule", "oja", "--recorded-fraction", "1.5", "-o", "x.npz")
    assert "--noise: noise nan" in one_line_error(capsys, "record", "oja", "--rule", "oja", "--noise", "nan", "-o", "x.npz")
    record(capsys, "three.npz", "--trajectories", "3")
    assert "--fit: fits 3 of 3 trajectories and holds none out" in one_line_error(capsys, "infer", "three.npz", "--fit", "3")
    assert "--terms: unknown term 'theta_999'" in one_line_error(capsys, "infer", "three.npz", "--terms", "theta_999")
    assert "--refine: 1.5 rounds" in one_line_error(capsys, "infer", "three.npz", "--refine", "1.5", "0.1")
    assert "--refine: threshold 2" in one_line_error(capsys, "infer", "three.npz", "--refine", "1", "2")
    assert "--l1: l1 -1" in one_line_error(capsys, "infer", "three.npz", "--l1", "-1")


def test_recordings_of_another_duration_are_refused(workdir: Path, capsys):
    record(capsys, "two_seconds.npz", "--trajectories", "3")
    model = load_model("models/oja.yaml").with_constants({"n_inputs": 4}, Where(None, "x"))  # 4 s
    fitted = recording_model(model, Recorded("output.y", "plastic.w", 0.02), Where(None, "x"), file="two_seconds.npz", count=2)
    with pytest.raises(Exception, match="2000 steps of 0.001 s recorded, the model runs 4000"):
        ModelTask(fitted, load_target(bundled_target("cpu"))).inputs(0)


def test_a_round_trip_keeps_every_array(workdir: Path, capsys):
    record(capsys, "a.npz", "--trajectories", "2", "--noise", "0.1")
    first = load_trajectories("a.npz")
    save_trajectories("b.npz", first)
    second = load_trajectories("b.npz")
    np.testing.assert_array_equal(first.activity, second.activity)
    np.testing.assert_array_equal(first.weights, second.weights)
    assert first.info == second.info and list(second.initial) == ["plastic.w"]
