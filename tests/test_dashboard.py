"""The live dashboard: optuna-dashboard served on a study's storage, its metrics as sortable attributes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from optuna.trial import TrialState

from codesign.cli import main
from codesign.report.dashboard import MetricsView, flat_metrics
from codesign.search.launcher import run_study
from codesign.search.storage import ENV_VAR
from codesign.search.study import open_study_storage
from codesign.spec import load_study

STORAGES = ["journal", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=STORAGES)
def storage(request, monkeypatch) -> str | None:
    """None (the study's default journal) or a new PostgreSQL database, passed as ``--storage``."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    return None if request.param == "journal" else request.getfixturevalue("postgres_url")


def _get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.headers.get_content_type(), response.read().decode()


def _storage_option(storage: str | None) -> list[str]:
    return [] if storage is None else ["--storage", storage]


@pytest.mark.timeout(300)
def test_the_dashboard_serves_a_finished_study_with_its_metrics(write_study, storage, capsys):
    path = write_study(n_trials=12, batch_size=6)
    study = run_study(load_study(path), storage)
    # Stopped below by Ctrl-C (SIGINT), as a user would. A job a shell starts in the background
    # ignores SIGINT, and so would the server it starts: give it the default, as a terminal does.
    server = subprocess.Popen([sys.executable, "-m", "codesign", "dashboard", path, "--port", "0",
                               *_storage_option(storage)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        heading, listing = server.stdout.readline(), server.stdout.readline()
        assert listing.startswith("  study tiny: http://127.0.0.1:"), heading + listing + server.stderr.read()
        page = listing.split(": ", 1)[1].strip()
        root, study_id = page.split("/dashboard/studies/")

        status, kind, html = _get(page)
        assert (status, kind) == (200, "text/html") and "<html" in html.lower()
        names = [s["study_name"] for s in json.loads(_get(f"{root}/api/studies")[2])["study_summaries"]]
        assert names == ["tiny"]

        detail = json.loads(_get(f"{root}/api/studies/{study_id}")[2])
        assert len(detail["trials"]) == len(study.trials) == 12
        columns = {a["key"]: a["sortable"] for a in detail["union_user_attrs"]}
        assert columns["metric:abs_cos_pc1"] is True and columns["metrics"] is False
        complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
        assert complete
        shown = {t["number"]: {a["key"]: a["value"] for a in t["user_attrs"]} for t in detail["trials"]}
        for trial in complete:
            assert shown[trial.number]["metric:abs_cos_pc1"] == str(trial.user_attrs["metrics"]["abs_cos_pc1"])

        # The port is taken now: a second dashboard says so in one line.
        port = root.rsplit(":", 1)[1]
        assert main(["dashboard", path, "--port", port, *_storage_option(storage)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("codesign: error: --port: cannot listen on 127.0.0.1:") and err.count("\n") == 1
        for option, value in (("--port", "70000"), ("--host", "nowhere.invalid")):
            assert main(["dashboard", path, option, value, *_storage_option(storage)]) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"codesign: error: {option}: ") and err.count("\n") == 1, err
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0 and "Traceback" not in err, err
    if storage is not None:
        password = storage.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
        assert "***@127.0.0.1" in heading and password not in heading + listing + out + err


def test_a_study_not_run_yet_is_one_line(write_study, storage, capsys):
    path = write_study()
    assert main(["dashboard", path, *_storage_option(storage)]) == 2
    err = capsys.readouterr().err
    where = "studies/tiny.yaml: storage" if storage is None else "--storage"
    assert err.startswith(f"codesign: error: {where}: no ") and err.count("\n") == 1, err
    assert "(fix: run: codesign run studies/tiny.yaml" in err
    assert not Path("results").exists(), "looking must not create the journal"
    if storage is not None:
        assert "in storage postgresql+psycopg2://codesign:***@127.0.0.1:" in err


def test_only_numeric_metrics_become_attributes_and_the_stored_trial_is_untouched(write_study):
    assert flat_metrics({"metrics": {"loss_x": 0.5, "n_diverged": 2, "diverged_reason": "NaN",
                                     "conditions": [{"loss": 1.0}]}}) == {"metric:loss_x": 0.5, "metric:n_diverged": 2}
    assert flat_metrics({"surplus": True}) == {}
    spec = load_study(write_study(n_trials=6))
    run_study(spec)
    storage = open_study_storage(spec)
    view = MetricsView(storage)
    study_id = view.get_study_id_from_name("tiny")
    trial = view.get_all_trials(study_id, deepcopy=False)[0]
    assert trial.user_attrs["metric:weight_norm"] == trial.user_attrs["metrics"]["weight_norm"]
    assert "metric:weight_norm" not in storage.get_all_trials(study_id, deepcopy=False)[0].user_attrs
    assert view.get_trial(trial._trial_id).user_attrs == trial.user_attrs
