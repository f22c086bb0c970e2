"""What an installed codesign carries: the built wheel works in a fresh environment from any directory, and
its model files (``codesign check oja``, ``model: oja`` in a study) come with it.

The wheel test needs no network, as CI machines have none past ``make setup``: uv builds the wheel
with the hatchling that ``make setup`` put in uv's cache (it built the editable install with it), and
fills the fresh environment from the same cache with the locked dependencies (``uv sync`` into another
environment, without the project), then installs the wheel alone into it. That environment holds
copies (hard links) of the packages, not the checkout's ``.venv`` and its editable codesign: what is
run is what a user installing the wheel gets.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from codesign.cli import main
from codesign.models.spec import bundled_model_names
from codesign.spec import load_study
from tests.conftest import ROOT, small_study


def _uv() -> list[str]:
    """uv as the Makefile runs it (``python3 -m uv``), or a uv on PATH."""
    for command in (["python3", "-m", "uv"], ["uv"]):
        if shutil.which(command[0]) and subprocess.run([*command, "--version"], capture_output=True).returncode == 0:
            return command
    pytest.fail("uv is missing: make setup installs it")


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    run = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert run.returncode == 0, f"{' '.join(map(str, args))}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    return run


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment with the wheel built from this checkout installed: its bin folder. The wheel
    holds the codesign package alone (not tests/ nor benchmarks/, which read the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    uv = _uv()
    _run([*uv, "build", "--wheel", "--offline", "--out-dir", str(tmp / "dist")], cwd=ROOT)
    (wheel,) = (tmp / "dist").glob("codesign-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert {name.split("/")[0] for name in archive.namelist()} == {"codesign", "codesign-0.1.0.dist-info"}
    venv = tmp / "venv"
    # The interpreter itself, not the checkout's .venv/bin/python link to it.
    python = os.path.realpath(sys.executable)
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)}
    _run([*uv, "sync", "--frozen", "--offline", "--no-install-project", "--no-dev", "--python", python],
         cwd=ROOT, env=env)
    _run([*uv, "pip", "install", "--offline", "--no-deps", "--python", str(venv / "bin/python"), str(wheel)])
    _run([*uv, "pip", "check", "--offline", "--python", str(venv / "bin/python")])  # the wheel's dependencies
    return venv / "bin"


def test_the_installed_wheel_runs_from_another_directory(installed_wheel, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def codesign(*args: str) -> str:
        return _run([str(installed_wheel / "codesign"), *args], cwd=elsewhere, env=env).stdout

    usage = codesign("--help")
    assert "port" in usage and "check" in usage
    assert "--allow-drop" in codesign("port", "--help")
    report = codesign("check", "oja")
    venv = installed_wheel.parent
    assert f"model oja ({venv}" in report.splitlines()[0]  # the wheel's own file, not the checkout's
    assert "Brian2 prepared" in report
    where = _run([str(installed_wheel / "python"), "-c", "import codesign\n"
                  "from codesign.hardware.loihi2.port import DEFAULT_TARGET\n"
                  "print(codesign.__file__); print(DEFAULT_TARGET.resolve(), DEFAULT_TARGET.is_file())"],
                 cwd=elsewhere, env=env).stdout.split()
    assert where[0].startswith(str(venv)) and where[1].startswith(str(venv)) and where[2] == "True", where
    assert not list(elsewhere.iterdir()), "a command wrote into the directory it ran from"


def test_a_study_names_a_model_of_codesign_by_its_bare_name(workdir):
    shutil.rmtree(workdir / "models")  # nothing named oja here: the name means codesign's own model
    path = workdir / "studies/bare.yaml"
    path.write_text(yaml.safe_dump(small_study(model="oja")))
    spec = load_study(path)
    assert spec.model.name == "oja" and Path(spec.model.file).resolve() == (ROOT / "models/oja.yaml").resolve()


def test_a_study_names_a_target_of_codesign_by_its_bare_name(workdir, capsys):
    shutil.rmtree(workdir / "hw_targets")  # nothing named loihi here: the name means codesign's own target
    path = workdir / "studies/bare.yaml"
    path.write_text(yaml.safe_dump(small_study(target="loihi")))
    spec = load_study(path)
    assert Path(spec.target.file).resolve() == (ROOT / "hw_targets/loihi.yaml").resolve()
    path.write_text(yaml.safe_dump(small_study(target="tpu")))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "target: 'tpu' is neither a file nor the name of one of codesign's targets" in err
    assert "cpu, cpu-standalone, gpu, loihi, loihi2" in err


def test_a_file_of_that_name_comes_before_the_model_of_codesign(workdir):
    (workdir / "oja").write_text((workdir / "models/oja.yaml").read_text())
    path = workdir / "studies/local.yaml"
    path.write_text(yaml.safe_dump(small_study(model="oja")))
    assert Path(load_study(path).model.file) == Path("oja")


def test_an_unknown_bare_model_name_lists_codesigns_models(workdir, capsys):
    path = workdir / "studies/unknown.yaml"
    path.write_text(yaml.safe_dump(small_study(model="ojja")))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "model: 'ojja' is neither a file nor" in err
    assert err.endswith("one of codesign's models: bdsp-xor, ei-plasticity, oja, pca-network, synaptic-scaling, "
                      "target-rate, two-choice)")
    assert main(["check", "ojja"]) == 2
    assert "'ojja' is neither a file nor" in capsys.readouterr().err


def test_codesign_check_takes_a_models_bare_name(workdir, capsys):
    shutil.rmtree(workdir / "models")
    assert main(["check", "target-rate", "--json"]) == 0
    report = yaml.safe_load(capsys.readouterr().out)
    assert report["model"] == "target-rate" and Path(report["file"]).resolve() == (ROOT / "models/target-rate.yaml").resolve()


def test_codesigns_models_are_the_repositorys_model_files():
    assert bundled_model_names() == sorted(p.stem for p in (ROOT / "models").glob("*.yaml"))
