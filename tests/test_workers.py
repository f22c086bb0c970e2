"""Workers on a shared storage (journal file, PostgreSQL): killed workers, heartbeats, time limits, URLs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from codesign.cli import main
from codesign.search.liveness import HEARTBEAT_ATTR, TIMEOUT_ATTR, WORKER_ATTR
from codesign.spec import load_study
from codesign.search.storage import ENV_VAR
from codesign.search.space import distributions
from codesign.search.study import count_trials, open_study, reclaim_dead_trials
from codesign.search.worker import run_worker

from tests.conftest import ROOT

STORAGES = ["journal", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=STORAGES)
def storage(request, monkeypatch) -> str | None:
    """A storage for the test: None (the default journal under results/) or a new PostgreSQL database.

    Its URL reaches the test's study and any worker it starts through ``$CODESIGN_STORAGE``.
    """
    if request.param == "journal":
        monkeypatch.delenv(ENV_VAR, raising=False)
        return None
    url = request.getfixturevalue("postgres_url")
    monkeypatch.setenv(ENV_VAR, url)
    return url


def _worker(path: str, index: int, batch: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "codesign", "worker", path, "--worker-index", str(index),
                             "--batch-size", str(batch)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


@pytest.mark.parametrize("launch", ["worker", "run"])
def test_a_worker_killed_mid_batch_loses_nothing(write_study, workdir, storage, launch):
    """Three workers; one is killed with SIGKILL while it evaluates; the others retry its trials.

    ``worker``: three ``codesign worker`` processes, as on a cluster; ``run``: ``codesign run
    --workers 3``, whose own worker processes are the ones killed and carrying on.
    """
    n_trials = 18
    path = write_study(n_trials=n_trials, batch_size=6, heartbeat_s=1, constants={"duration": "4*second"})
    spec = load_study(path)
    if launch == "worker":
        procs = [_worker(path, i, batch=2) for i in range(3)]
    else:
        procs = [subprocess.Popen([sys.executable, "-m", "codesign", "run", path, "--workers", "3", "--quiet"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    study = open_study(spec)
    deadline = time.monotonic() + 90
    while True:  # wait until a worker holds a whole batch of RUNNING trials, i.e. is simulating it
        owners: dict[str, list] = {}
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owners.setdefault(t.system_attrs.get(WORKER_ATTR), []).append(t)
        full = [(o, ts) for o, ts in owners.items() if o and len(ts) == 2]
        if full:
            owner, mine = full[0]
            break
        assert all(p.poll() is None for p in procs) and time.monotonic() < deadline, "no worker started a batch"
        time.sleep(0.05)
    time.sleep(0.1)  # into the evaluation
    victim = int(owner.rpartition(":")[2])
    os.kill(victim, signal.SIGKILL)
    t_kill, killed_at = time.monotonic(), datetime.now()
    # On a slow machine the victim may have told its batch between our reading and the kill: its
    # killed trials are those it had not finished (a killed process writes nothing more).
    time.sleep(0.05)
    states = {t.number: t.state for t in open_study(spec).get_trials(deepcopy=False)}
    killed = {t.number: t.params for t in mine if states[t.number] != TrialState.COMPLETE}
    assert killed, "the worker finished its batch before it was killed: make the batch longer"
    outputs = [p.communicate(timeout=150) for p in procs]
    t_done = time.monotonic()
    if launch == "worker":
        assert {p.pid: p.returncode for p in procs} == {p.pid: -signal.SIGKILL if p.pid == victim else 0
                                                        for p in procs}, [err[-2000:] for _, err in outputs]
    else:
        assert procs[0].returncode == 0, outputs[0][1][-2000:]
        assert "1 worker(s) killed by signal(s) [9]; the others retried their trials" in outputs[0][1]

    study = open_study(spec)
    trials = study.get_trials(deepcopy=False)
    finished = _finished(study)
    assert len(finished) == n_trials, "exactly the requested number of finished trials"
    assert count_trials(study) == (n_trials, 0)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    params = [tuple(sorted(t.params.items())) for t in finished]
    assert len(set(params)) == len(params), "no trial evaluated (and counted) twice"
    for number, p in killed.items():
        assert trials[number].state == TrialState.FAIL
        retries = [t for t in trials if t.system_attrs.get("failed_trial") == number]
        assert len(retries) == 1, f"trial {number} of the killed worker should be retried once"
        assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
        # The same candidate; a trial killed while its parameters were being stored (PostgreSQL writes them
        # one by one) has only some of them, and its retry asks the sampler for the rest.
        assert p.items() <= retries[0].params.items() and p
        assert retries[0].system_attrs[WORKER_ATTR] != owner
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert all(t.number in killed or t.user_attrs.get("surplus") for t in failed)
    # Reclaimed within a bounded time: at once on the journal (the victim's pid is gone), after the
    # grace period of 2 heartbeats (2 s here) on PostgreSQL, plus up to a second between sweeps.
    reclaimed = max((trials[n].datetime_complete - killed_at).total_seconds() for n in killed)
    retried = max((t.datetime_complete - killed_at).total_seconds() for t in trials
                  if t.system_attrs.get("failed_trial") in killed)
    print(f"\n{'postgres' if storage else 'journal'}: killed trials failed {reclaimed:.1f} s after the kill, "
          f"their retries finished after {retried:.1f} s, the study after {t_done - t_kill:.1f} s")
    assert reclaimed < (4 if storage is None else 10)
    if storage is not None:
        # The last heartbeat was at most 1 s before the kill, so not sooner than 1 s after it.
        assert reclaimed > 0.8, "on PostgreSQL Optuna's heartbeat decides, not the process id"
    if storage is not None:  # no password in any output (start lines show the URL masked)
        printed = "".join(out + err for out, err in outputs)
        assert "***@" in printed and postgres_password(storage) not in printed


def postgres_password(url: str) -> str:
    return url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]


def test_a_stale_heartbeat_fails_and_retries_a_trial_of_another_host(write_study, storage):
    """A worker on another machine stops beating: after the grace period (2 heartbeats) its trial is retried."""
    spec = load_study(write_study(heartbeat_s=1))
    study = open_study(spec)
    space = distributions(spec)
    gone, beating = study.ask(space), study.ask(space)
    storage_ = study._storage
    for trial in (gone, beating):
        storage_.set_trial_system_attr(trial._trial_id, WORKER_ATTR, "another-host:4242")
        if storage is not None:
            storage_.record_heartbeat(trial._trial_id)  # Optuna's heartbeat table
    assert reclaim_dead_trials(study, spec) == 0
    time.sleep(1.6)
    if storage is not None:
        storage_.record_heartbeat(beating._trial_id)
    else:
        storage_.set_trial_system_attr(beating._trial_id, HEARTBEAT_ATTR, time.time())
    time.sleep(0.6)
    assert reclaim_dead_trials(study, spec) == 1
    trials = study.get_trials(deepcopy=False)
    assert trials[gone.number].state == TrialState.FAIL
    assert trials[beating.number].state == TrialState.RUNNING
    (retry,) = [t for t in trials if t.state == TrialState.WAITING]
    assert retry.params == gone.params and retry.system_attrs["failed_trial"] == gone.number
    assert WORKER_ATTR not in retry.system_attrs, "a retry carries no owner until a worker asks it"
    assert reclaim_dead_trials(study, spec) == 0, "a trial is failed and retried once"


def test_a_retried_trial_is_given_up_after_its_retries(write_study):
    spec = load_study(write_study(retries=1))
    study = open_study(spec)
    trial = study.ask(distributions(spec))
    dead = f"{socket.gethostname()}:{os.getpid() + 10_000_000}"
    study._storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, dead)
    assert reclaim_dead_trials(study, spec) == 1
    retry = study.ask(distributions(spec))  # takes the waiting retry
    assert retry.params == trial.params
    study._storage.set_trial_system_attr(retry._trial_id, WORKER_ATTR, dead)
    assert reclaim_dead_trials(study, spec) == 1
    assert not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)), "no third try with retries: 1"


class _Stuck:
    """A task whose first batch hangs: in a Python loop, or waiting for a child process."""

    def __init__(self, task, how: str) -> None:
        self.task, self.how, self.calls = task, how, 0

    def evaluate(self, *args, **kwargs):
        self.calls += 1
        if self.calls == 1:
            if self.how == "python":
                while True:
                    pass
            subprocess.call(["sleep", "60"])
        return self.task.evaluate(*args, **kwargs)


@pytest.mark.parametrize("how", ["python", "child"])
def test_a_batch_past_the_time_limit_is_failed_and_the_worker_goes_on(write_study, monkeypatch, capsys, how):
    import codesign.search.worker as study_module

    spec = load_study(write_study(n_trials=12, batch_size=4, trial_timeout_s=3))
    real = study_module.make_task
    stuck: list[_Stuck] = []
    monkeypatch.setattr(study_module, "make_task", lambda s: stuck.append(_Stuck(real(s), how)) or stuck[-1])
    start = time.monotonic()
    stats = run_worker(spec)
    assert time.monotonic() - start < 30, "the stuck batch was not stopped"
    study = open_study(spec)
    assert count_trials(study) == (12, 0)
    timed_out = [t for t in study.trials if TIMEOUT_ATTR in t.user_attrs]
    assert [t.number for t in timed_out] == [0, 1, 2, 3]
    assert all(t.state == TrialState.FAIL and t.user_attrs[TIMEOUT_ATTR] == 3 for t in timed_out)
    assert stats.timed_out == 4 and stats.trials == 12
    assert "ran past trial_timeout_s = 3 s" in capsys.readouterr().err
    if how == "child":
        sleeping = subprocess.run(["pgrep", "-P", str(os.getpid()), "-x", "sleep"], capture_output=True, text=True)
        assert not sleeping.stdout.strip(), "the stuck child process should be killed"


def test_one_watcher_thread_serves_every_batch_and_wakes_early_for_a_short_time_limit(tmp_path):
    """Batches share one heartbeat thread. A batch armed while the thread sleeps towards a later need
    (here the previous batch's heartbeat, 5 s away) still has its heartbeats and its 0.3 s time limit
    kept on time; and a batch that ends leaves no heartbeat to come."""
    from codesign.search.liveness import BatchGuard
    from codesign.search.storage import open_storage

    study = optuna.create_study(storage=open_storage(f"journal:{tmp_path / 'j.log'}", heartbeat_s=5, retries=0))
    first, second, third = ([study.ask()] for _ in range(3))
    with BatchGuard(study, first, heartbeat_s=5.0):
        time.sleep(0.05)  # the thread now sleeps until the first batch's heartbeat, 5 s away
    threads = {t for t in __import__("threading").enumerate() if t.name == "codesign-heartbeat"}
    with BatchGuard(study, second, heartbeat_s=0.2):  # needs a heartbeat every 0.2 s: wakes the thread
        time.sleep(0.5)
    beats = study._storage.get_trial(second[0]._trial_id).system_attrs.get(HEARTBEAT_ATTR)
    assert beats is not None and time.time() - beats < 0.45, "the second batch's heartbeats were kept"
    start = time.monotonic()
    with BatchGuard(study, third, heartbeat_s=5.0, timeout_s=0.3) as guard:  # it stops the block itself
        time.sleep(5)
    assert guard.timed_out and time.monotonic() - start < 0.5, "the time limit was kept, not the thread's sleep"
    assert study._storage.get_trial(third[0]._trial_id).state == TrialState.FAIL
    assert {t for t in __import__("threading").enumerate() if t.name == "codesign-heartbeat"} == threads
    assert len(threads) == 1
    stamp = study._storage.get_trial(second[0]._trial_id).system_attrs.get(HEARTBEAT_ATTR)
    time.sleep(0.3)
    assert study._storage.get_trial(second[0]._trial_id).system_attrs.get(HEARTBEAT_ATTR) == stamp, \
        "no heartbeat after its batch ended"


def test_a_batch_that_ends_past_its_time_limit_is_disarmed_at_once(tmp_path):
    """A batch that ends just as its limit passes, before it is disarmed, is not expired (it ended) and
    does not keep the heartbeat thread busy: disarming it returns at once."""
    import threading

    from codesign.search.liveness import BatchGuard
    from codesign.search.storage import open_storage

    study = optuna.create_study(storage=open_storage(f"journal:{tmp_path / 'j.log'}", heartbeat_s=5, retries=0))
    trials = [study.ask()]
    left: list[float] = []
    guards: list[BatchGuard] = []

    def batch() -> None:  # outside the main thread: no signal, the guard only fails trials
        guard = BatchGuard(study, trials, heartbeat_s=5.0, timeout_s=0.2)
        guards.append(guard)
        guard.__enter__()
        with guard._lock:
            guard._active = False  # what __exit__ does first
        time.sleep(0.4)  # past its limit, not yet disarmed
        start = time.monotonic()
        guard.__exit__(None, None, None)
        left.append(time.monotonic() - start)

    worker = threading.Thread(target=batch, daemon=True)
    worker.start()
    worker.join(timeout=3)
    assert left and left[0] < 0.1, "disarming waited on the heartbeat thread"
    assert not guards[0].timed_out


def test_storage_url_comes_from_option_then_environment_then_study_file(write_study, monkeypatch):
    spec = load_study(write_study(storage="journal:from_file.log"))
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert spec.storage_source() == ("journal:from_file.log", spec.file, "storage")
    monkeypatch.setenv(ENV_VAR, "journal:from_env.log")
    assert spec.storage_source() == ("journal:from_env.log", None, ENV_VAR)
    assert spec.storage_source("journal:from_option.log") == ("journal:from_option.log", None, "--storage")
    monkeypatch.delenv(ENV_VAR)
    assert load_study(write_study()).storage_url() == "journal:results/tiny/journal.log"


def test_an_unreachable_storage_is_a_one_line_error_without_the_password(write_study, capsys, monkeypatch):
    with socket.socket() as s:  # a port with no server behind it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://alice:s3cret@127.0.0.1:{port}/codesign"
    path = write_study()
    assert main(["run", path, "--storage", url, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "s3cret" not in err
    assert f"--storage: cannot open storage postgresql://alice:***@127.0.0.1:{port}/codesign" in err
    monkeypatch.setenv(ENV_VAR, url)
    assert main(["best", path]) == 2
    err = capsys.readouterr().err
    assert f"{ENV_VAR}: cannot open storage" in err and "s3cret" not in err
    monkeypatch.delenv(ENV_VAR)
    bad = write_study(name="bad", storage="nowhere")
    assert main(["run", bad]) == 2
    assert "studies/bad.yaml: storage: 'nowhere' is not a storage URL (fix:" in capsys.readouterr().err


@pytest.mark.postgres
def test_run_with_two_workers_on_postgres_keeps_the_password_out_of_results(write_study, workdir, postgres_url,
                                                                            capfd):
    path = write_study(n_trials=24, batch_size=4)
    assert main(["run", path, "--workers", "2", "--storage", postgres_url]) == 0
    out, err = capfd.readouterr()
    password = postgres_password(postgres_url)
    assert "***@127.0.0.1" in out and password not in out + err
    study = open_study(load_study(path), postgres_url)
    assert count_trials(study) == (24, 0)
    assert len({t.system_attrs[WORKER_ATTR] for t in _finished(study)}) == 2
    files = [p for p in Path("results").rglob("*") if p.is_file()]
    assert files and not [p for p in files if password.encode() in p.read_bytes()]
    assert main(["best", path, "--storage", postgres_url, "--json"]) == 0
    assert password not in capfd.readouterr().out


@pytest.mark.postgres
def test_a_worker_that_loses_its_database_stops_with_one_line(write_study, postgres_server, monkeypatch):
    from tests.postgres import ThrowawayPostgres

    path = write_study(n_trials=100_000)
    with ThrowawayPostgres() as server:  # a server of its own, to stop under the worker
        url = server.create_database("lost")
        monkeypatch.setenv(ENV_VAR, url)
        worker = subprocess.Popen([sys.executable, "-m", "codesign", "worker", path], stderr=subprocess.PIPE, text=True)
        study = open_study(load_study(path))
        deadline = time.monotonic() + 60
        while count_trials(study)[0] < 6:
            assert worker.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        server.stop()
        err = worker.communicate(timeout=60)[1]
    assert worker.returncode == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("codesign: error: lost the storage: ") and "run the same command to resume" in last
    assert postgres_password(url) not in err


def test_make_workers_help_is_true():
    help_text = subprocess.run(["make", "-s", "-C", str(ROOT), "help"], capture_output=True, text=True).stdout
    assert "make workers N=4 STUDY=studies/oja.yaml" in help_text
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), "workers", "N=4", "STUDY=studies/oja.yaml"],
                         capture_output=True, text=True).stdout
    assert "codesign run studies/oja.yaml --workers 4" in dry


@pytest.mark.slow
def test_workers_bench_runs(capsys):
    """``python -m benchmarks --only workers --quick``: every number is there (tiny runs: not for the numbers)."""
    import json

    from benchmarks.__main__ import main as bench_main

    assert bench_main(["--only", "workers", "--quick", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["workers"]
    for rows in result["cases"].values():
        for storage, row in rows.items():
            assert storage in ("journal", "postgres")
            for k in ("1", "2"):
                assert row[k]["trials_per_s"] > 0 and row[k]["simulate_ms"] > 0 and row[k]["storage_ms"] > 0
    assert result["fsync_ms"] > 0


@pytest.mark.slow
def test_demo_bench_runs(capsys):
    """``python -m benchmarks --only demo --quick``: the demo study against its raw rate, with 1 and 2
    workers and two studies side by side (tiny runs: not for the numbers)."""
    import json

    from benchmarks.__main__ import main as bench_main

    assert bench_main(["--only", "demo", "--quick", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["demo"]
    rates = [result[k] for k in ("raw_per_s", "one_worker_per_s", "two_workers_per_s", "side_by_side_per_s")]
    assert all(rate > 0 for rate in rates) and result["n_trials"] == 48
    assert result["one_worker_over_raw"] == pytest.approx(rates[1] / rates[0])
    assert result["two_workers_over_one"] == pytest.approx(rates[2] / rates[1])
