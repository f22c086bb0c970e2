"""Recordings in NWB (issue 18): codesign record -o FILE.nwb writes what the .npz holds, codesign infer reads
it to the same fit, a file written with plain pynwb in the documented layout is read, and a malformed one
is a one-line error naming the NWB object."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from pynwb import NWBHDF5IO, NWBFile, TimeSeries
from pynwb.core import DynamicTable, VectorData

from codesign.cli import main
from codesign.hardware import load_target
from codesign.hardware.target import bundled_target
from codesign.models import ModelTask, load_model
from codesign.models.recorder import Recorded, recording_model
from codesign.models.recordings import load_trajectories, save_trajectories
from codesign.schema import Where

from tests.test_bad_input import one_line_error

SHORT = ["--constants", "duration=2*second", "n_inputs=4"]


@pytest.fixture(scope="module")
def three_units(tmp_path_factory) -> Path:
    """3 trajectories of 3 outputs, 2 of them recorded, with noise: NaN columns and every optional array."""
    path = tmp_path_factory.mktemp("recordings") / "three.npz"
    assert main(["record", "oja", "--rule", "oja", *SHORT, "n_outputs=3", "--recorded-fraction", "0.67",
                 "--noise", "0.1", "--trajectories", "3", "--seed", "4", "-o", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def one_unit(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recordings") / "one.npz"
    assert main(["record", "oja", "--rule", "oja", *SHORT, "--trajectories", "3", "--seed", "6", "-o", str(path)]) == 0
    return path


def same_recordings(a, b) -> None:
    for name in ("inputs", "activity", "recorded", "weights"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)  # NaN where NaN
    assert a.initial.keys() == b.initial.keys()
    for name in a.initial:
        np.testing.assert_array_equal(a.initial[name], b.initial[name])


def test_nwb_holds_what_the_npz_holds(workdir: Path, three_units: Path):
    npz = load_trajectories(three_units)
    assert np.isnan(npz.activity).any() and npz.recorded.sum() == 2  # the test covers the mask and NaN
    save_trajectories("three.nwb", npz)
    nwb = load_trajectories("three.nwb")
    same_recordings(npz, nwb)
    assert nwb.info == npz.info and nwb.info["teacher"]["w"]["coefficients"] == {"theta_110": 1.0, "theta_021": -1.0}
    with NWBHDF5IO("three.nwb", "r") as io:  # the layout the docstring and the README promise
        f = io.read()
        assert sorted(f.stimulus) == ["inputs_0", "inputs_1", "inputs_2"]
        assert sorted(f.acquisition) == [f"{s}_{k}" for s in ("activity", "weights") for k in range(3)]
        assert f.acquisition["activity_1"].rate == pytest.approx(50.0) and f.stimulus["inputs_2"].rate == 1000.0
        assert list(f.processing["codesign"]["recorded_units"]["recorded"].data[:]) == list(npz.recorded)
        assert json.loads(f.get_scratch("codesign_info").item()) == npz.info


def test_infer_from_nwb_finds_what_it_finds_from_the_npz(workdir: Path, capsys):
    results = {}
    for suffix in ("npz", "nwb"):
        assert main(["record", "oja", "--rule", "oja", *SHORT, "--trajectories", "3", "--seed", "2",
                     "-o", f"oja.{suffix}"]) == 0
        capsys.readouterr()
        assert main(["infer", f"oja.{suffix}", "--terms", "theta_110", "theta_021", "theta_000", "--trials", "32",
                     "--fit", "2", "--json"]) == 0
        results[suffix] = json.loads(capsys.readouterr().out)
    same_recordings(load_trajectories("oja.npz"), load_trajectories("oja.nwb"))
    npz, nwb = results["npz"], results["nwb"]
    assert npz["new_trials"] == nwb["new_trials"] == 32  # two studies: the second did not resume the first
    assert Path("results/infer-oja-nwb").is_dir() and Path("results/infer-oja-npz").is_dir()
    assert nwb["coefficients"] == pytest.approx(npz["coefficients"], rel=1e-12, abs=1e-15)
    assert nwb["held_out"] == pytest.approx(npz["held_out"], rel=1e-12, abs=1e-15)
    assert nwb["fit_loss"] == pytest.approx(npz["fit_loss"], rel=1e-12) and nwb["teacher"] == npz["teacher"]


def contents(path: Path) -> dict:
    """A recordings file as plain per-trajectory lists, for writing by hand; info without dt and every
    (the series' sampling says them)."""
    t = load_trajectories(path)
    info = {key: value for key, value in t.info.items() if key not in ("dt", "every")}
    return {"inputs": list(t.inputs), "activity": list(t.activity), "recorded": t.recorded.tolist(),
            "initial": list(t.initial["plastic.w"]), "info": info, "start": 0.0, "every": 0.02}


def write_by_hand(path: str, data: dict) -> None:
    """The documented layout written with pynwb alone, as a lab would for its own data: the activity on
    timestamps (the inputs on a rate), a single unit as a 1-D series; None skips an object."""
    nwb = NWBFile(session_description="plasticity recordings", identifier="lab-0001",
                  session_start_time=datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc))
    for k, x in enumerate(data["inputs"]):
        if x is not None:
            nwb.add_stimulus(TimeSeries(name=f"inputs_{k}", data=x, rate=1000.0, starting_time=data["start"], unit="a.u."))
    for k, y in enumerate(data["activity"]):
        if y is not None:
            nwb.add_acquisition(TimeSeries(name=f"activity_{k}", data=y[:, 0] if y.shape[1] == 1 else y,
                                           timestamps=data["every"] * np.arange(len(y)), unit="a.u."))
    module = nwb.create_processing_module("codesign", "codesign's inputs besides the series")
    if data["recorded"] is not None:
        module.add(DynamicTable(name="recorded_units", description="one row per output", columns=[
            VectorData(name="recorded", description="recorded or not", data=data["recorded"])]))
    for k, w in enumerate(data["initial"]):
        module.add(TimeSeries(name=f"initial__plastic__w_{k}", data=w[None], timestamps=[0.0], unit="a.u."))
    if data["info"] is not None:
        nwb.add_scratch(json.dumps(data["info"]), name="codesign_info", description="codesign recordings info")
    with NWBHDF5IO(path, "w") as io:
        io.write(nwb)


def test_a_file_written_by_hand_with_pynwb_is_read_and_fits_its_teacher(workdir: Path, one_unit: Path):
    write_by_hand("lab.nwb", contents(one_unit))
    npz, lab = load_trajectories(one_unit), load_trajectories("lab.nwb")
    np.testing.assert_array_equal(lab.inputs, npz.inputs)
    np.testing.assert_array_equal(lab.activity, npz.activity)
    np.testing.assert_array_equal(lab.initial["plastic.w"], npz.initial["plastic.w"])
    assert lab.weights is None and lab.dt == pytest.approx(0.001, rel=1e-12) and lab.every == pytest.approx(0.02, rel=1e-9)
    model = load_model("models/oja.yaml").with_constants({"duration": "2*second", "n_inputs": 4}, Where(None, "x"))
    fitted = recording_model(model, Recorded("output.y", None, lab.every), Where(None, "x"), file="lab.nwb", count=3)
    task = ModelTask(fitted, load_target(bundled_target("cpu")))
    oja, zero = task.evaluate([task.candidate(n, {"w": 10.0}) for n in ("oja", "zero")], seed=0)
    assert oja.loss < 1e-20 and oja.metrics["activity_r2"] == pytest.approx(1.0) and zero.loss > 0.05


def _nan(data: dict) -> None:
    data["activity"][2] = data["activity"][2].copy()
    data["activity"][2][5, 0] = np.nan


@pytest.mark.parametrize("change, expected", [
    (lambda d: d["activity"].__setitem__(1, None), "acquisition/activity_1: missing TimeSeries (3 trajectories)"),
    (lambda d: d["inputs"].__setitem__(0, None), "stimulus/inputs_0: missing TimeSeries"),
    (lambda d: d["activity"].__setitem__(1, d["activity"][1][:50]),
     "acquisition/activity_1: shape (50, 1), activity_0's is (100, 1)"),
    (lambda d: d.update(recorded=[False]), "processing/codesign/recorded_units: shape (1,) with 0 recorded units"),
    (lambda d: d.update(recorded=[True, False]), "processing/codesign/recorded_units: shape (2,) with 1 recorded units"),
    (lambda d: d.update(recorded=None), "processing/codesign/recorded_units: missing"),
    (_nan, "acquisition/activity_2: NaN or infinite values in a recorded unit (trajectory 2)"),
    (lambda d: d.update(info=None), "scratch/codesign_info: missing"),
    (lambda d: d["info"].pop("activity_var"), "scratch/codesign_info.activity_var: missing"),
    (lambda d: d.update(initial=[]), "processing/codesign/initial__SYNAPSE__VAR_0: no initial values"),
    (lambda d: d.update(start=1.0), "stimulus/inputs_0: starts at 1 s"),
    (lambda d: d["info"].update(dt=0.002), "scratch/codesign_info.dt: 0.002 s, but the series are sampled every 0.001 s"),
    (lambda d: d.update(every=0.0005), "acquisition/activity_0: samples every 0.0005 s with dt 0.001 s"),
])
def test_malformed_nwb_files_are_one_line_errors(workdir: Path, capsys, one_unit: Path, change, expected):
    data = contents(one_unit)
    change(data)
    write_by_hand("bad.nwb", data)
    err = one_line_error(capsys, "infer", "bad.nwb", "--trials", "4")
    assert f"bad.nwb: {expected}" in err, err


def test_files_that_are_not_nwb_and_unknown_suffixes_are_one_line_errors(workdir: Path, capsys, one_unit: Path):
    Path("text.nwb").write_text("not HDF5")
    assert "text.nwb: not an NWB file: Unable to synchronously open file" in one_line_error(capsys, "infer", "text.nwb")
    with h5py.File("plain.nwb", "w") as f:
        f["x"] = [1.0, 2.0]
    assert "plain.nwb: not an NWB file: Missing NWB version" in one_line_error(capsys, "infer", "plain.nwb")
    shutil.copy(one_unit, "npz_inside.nwb")
    assert "npz_inside.nwb: not an NWB file" in one_line_error(capsys, "infer", "npz_inside.nwb")
    shutil.copy(one_unit, "oja.h5")
    assert "oja.h5: .h5: not a recordings format (fix: name it FILE.npz (NumPy .npz) or FILE.nwb (NWB))" in \
        one_line_error(capsys, "infer", "oja.h5")
    assert "-o: .h5: not a recordings format" in one_line_error(capsys, "record", "oja", "--rule", "oja", "-o", "x.h5")
