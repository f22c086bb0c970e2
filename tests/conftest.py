"""Shared fixtures: small study files in a temporary folder, run from there."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary working directory with hw_targets/ and models/ copied in, so results/ lands there."""
    for folder in ("hw_targets", "models"):
        (tmp_path / folder).mkdir()
        for file in (ROOT / folder).glob("*.yaml"):
            (tmp_path / folder / file.name).write_text(file.read_text())
    (tmp_path / "studies").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def small_study(**overrides) -> dict:
    """A quick Oja study: short simulations, few trials."""
    study = {
        "name": "tiny",
        "model": "models/oja.yaml",
        "constants": {"n_inputs": 4, "duration": "0.3*second"},
        "draws": 2,
        "rule": {"terms": ["theta_110", "theta_021", "theta_001"], "eta": 5.0},
        "target": "hw_targets/cpu.yaml",
        "sampler": {"name": "cmaes"},
        "n_trials": 12,
        "batch_size": 6,
        "seed": 3,
    }
    return merged(study, overrides)


def merged(study: dict, overrides: dict) -> dict:
    """``study`` with top-level keys replaced by ``overrides`` (dictionaries merged one level down)."""
    study = dict(study)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(study.get(key), dict):
            study[key] = {**study[key], **value}
        else:
            study[key] = value
    return study


@pytest.fixture
def write_study(workdir: Path):
    """Write a study file under studies/ and return its path (relative to the working directory)."""

    def write(name: str = "tiny", **overrides) -> str:
        path = Path("studies") / f"{name}.yaml"
        data = small_study(name=name, **overrides)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return str(path)

    return write


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--science-seed", type=int, default=None,
                     help="seed for the science tests' studies and inputs instead of their own (to check "
                          "that their claims do not hang on one seed)")


@pytest.fixture
def science_seed(request: pytest.FixtureRequest):
    """``--science-seed``, or the given default."""
    seed = request.config.getoption("--science-seed")
    return lambda default: default if seed is None else seed


@pytest.fixture
def shortened_study(workdir: Path, science_seed):
    """Copy ``studies/NAME.yaml`` under the working directory with overrides; return its path.

    The science tests run the project's own studies with smaller budgets (see their docstrings);
    ``--science-seed`` replaces the study's seed.
    """

    def write(name: str, **overrides) -> str:
        path = Path("studies") / f"{name}.yaml"
        data = merged(yaml.safe_load((ROOT / path).read_text()), overrides)
        data["seed"] = science_seed(data.get("seed", 0))
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return str(path)

    return write


@pytest.fixture(scope="session", autouse=True)
def standalone_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Compiled standalone projects of the tests go to a folder of this test session."""
    import os

    path = tmp_path_factory.mktemp("codesign-cache")
    os.environ["CODESIGN_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server for the session (initdb and pg_ctl in a temporary folder)."""
    from tests.postgres import PostgresUnavailable, ThrowawayPostgres

    try:
        server = ThrowawayPostgres().start()
    except PostgresUnavailable as exc:
        pytest.skip(f"no PostgreSQL server: {exc}")
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server, request) -> str:
    """The storage URL of a new, empty database on the session's server (with its password in it)."""
    import zlib

    name = "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:40]
    return postgres_server.create_database(f"t_{name}_{zlib.crc32(request.node.nodeid.encode()):08x}")
