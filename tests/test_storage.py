"""Storages: a journal lock left by a killed run, and passwords kept out of every output."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from codesign.cli import main
from codesign.spec import load_study
from codesign.search.storage import ENV_VAR, JournalLock, mask, redact
from codesign.search.study import open_study


def _finished(path: str) -> dict[int, tuple]:
    study = open_study(load_study(path))
    return {t.number: (t.params, t.values) for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}


@pytest.mark.parametrize("storage", ["default", "absolute"])
def test_a_lock_left_by_a_killed_run_does_not_hang_the_next_run(write_study, monkeypatch, storage):
    """A run killed while appending leaves ``journal.log.lock``; the next run takes it over and loses nothing.

    The stale lock is made as Optuna makes it, a symbolic link to the journal path it was given:
    relative with the default storage (``results/tiny/journal.log``, as codesign gave it before it
    opened journals by absolute path: Optuna's own lock never releases that one, and spins), absolute
    with ``--storage journal:/...`` (Optuna's lock releases that one after 30 s).
    """
    monkeypatch.delenv(ENV_VAR, raising=False)
    path = write_study(n_trials=12, heartbeat_s=2)  # a stale lock is taken over after 1 s
    journal = Path("results/tiny/journal.log")
    option = ["--storage", f"journal:{journal.resolve()}"] if storage == "absolute" else []
    assert main(["run", path, "--trials", "6", "--quiet", *option]) == 0
    before = _finished(path)
    assert len(before) == 6
    os.symlink(journal.resolve() if storage == "absolute" else journal, f"{journal}.lock")

    start = time.monotonic()
    rerun = subprocess.run([sys.executable, "-m", "codesign", "run", path, "--quiet", *option],
                           capture_output=True, text=True, timeout=90)
    elapsed = time.monotonic() - start
    print(f"\n{storage} journal path: the run after a stale lock took {elapsed:.1f} s")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "took over the journal lock" in rerun.stderr
    assert elapsed < 30, f"{elapsed:.0f} s: the stale lock was not taken over before Optuna's own 30 s"
    assert not os.path.lexists(f"{journal}.lock")
    after = _finished(path)
    assert len(after) == 12 and {n: after[n] for n in before} == before, "every earlier finished trial kept"


def test_a_held_lock_is_waited_for_and_a_stale_one_taken_over(tmp_path):
    """A lock given back is taken at once; one held past the grace period is taken over; a process
    whose lock was taken over does not remove its successor's when it gives its own back."""
    journal = tmp_path / "journal.log"
    first, second = JournalLock(journal, grace_s=1.0), JournalLock(journal, grace_s=1.0)
    took: list[float] = []

    def take() -> None:
        start = time.monotonic()
        second.acquire()
        took.append(time.monotonic() - start)

    first.acquire()
    assert os.readlink(f"{journal}.lock") == str(journal), "Optuna's lock: a link to the journal"
    waiter = threading.Thread(target=take)
    waiter.start()
    time.sleep(0.3)
    first.release()
    waiter.join(timeout=5)
    assert took and took[0] < 0.6, "a lock given back is taken at once"
    second.release()

    first.acquire()  # and hangs: never gives it back in time
    took.clear()
    waiter = threading.Thread(target=take)
    waiter.start()
    waiter.join(timeout=10)
    assert took and 1.0 <= took[0] < 2.0, took
    successor = os.lstat(f"{journal}.lock")
    first.release()  # late: the lock is the successor's now
    assert os.lstat(f"{journal}.lock").st_ino == successor.st_ino, "the successor's lock stays"
    second.release()
    assert not os.path.lexists(f"{journal}.lock")
    assert not list(tmp_path.iterdir()), "nothing left aside"


def test_a_journal_append_is_on_disk_when_it_returns_and_fsyncs_without_holding_the_lock(tmp_path, monkeypatch):
    """Each append is fsync'd before it returns (Optuna's guarantee), but with the lock given back: another
    worker's append does not queue behind this one's disk flush."""
    import optuna

    from codesign.search.storage import open_storage

    journal = tmp_path / "journal.log"
    storage = open_storage(f"journal:{journal}", heartbeat_s=5, retries=0)
    flushes: list[tuple[int, bool]] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        flushes.append((os.fstat(fd).st_size, os.path.lexists(f"{journal}.lock")))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    study = optuna.create_study(storage=storage, study_name="s")
    study.enqueue_trial({"x": 1.0})
    assert flushes, "appends are fsync'd"
    assert not any(locked for _, locked in flushes), "the lock was held while flushing"
    assert flushes[-1][0] == journal.stat().st_size, "the last append is flushed whole, and before it returns"
    reread = optuna.load_study(study_name="s", storage=open_storage(f"journal:{journal}", heartbeat_s=5, retries=0))
    assert [t.state for t in reread.get_trials()] == [TrialState.WAITING]


# Passwords of every form; each must be hidden wherever the URL is shown. The URL names a port
# where no server listens, so every command fails to open it and prints its one-line error.
PASSWORDS = {
    "plain": "Kx7Wq9Zr",
    "at": "Kx7@Wq9Zr",
    "colon": "Kx7:Wq9Zr",
    "slash": "Kx7/Wq9Zr",
    "question": "Kx7?Wq9Zr",
    "hash": "Kx7#Wq9Zr",
    "percent-encoded": "Kx7%40Wq9%2FZr",
}
URLS = {
    **{form: f"postgresql://alice:{pw}@127.0.0.1:{{port}}/codesign" for form, pw in PASSWORDS.items()},
    "query": "postgresql://alice@127.0.0.1:{port}/codesign?password=Kx7Wq9Zr&sslmode=disable",
    "query-percent-encoded": "postgresql://alice@127.0.0.1:{port}/codesign?password=Kx7%40Wq9%26Zr",
    "postgres-scheme": "postgres://alice:Kx7@Wq9:Zr@127.0.0.1:{port}/codesign",
    "psycopg2-scheme": "postgresql+psycopg2://alice:Kx7/Wq9?Zr@127.0.0.1:{port}/codesign",
}


def _secrets(url: str) -> set[str]:
    """Every piece of the password in ``url`` long enough to recognise, as written and percent-decoded."""
    from urllib.parse import unquote

    return {piece for text in (url, unquote(url)) for piece in re.findall(r"[A-Za-z0-9]{3,}", text)
            if "Kx7" in piece or "Wq9" in piece or piece.endswith("Zr")}


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:  # a port with no server behind it
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("form", URLS)
def test_no_form_of_a_password_is_printed(form, write_study, monkeypatch, capfd, closed_port):
    url = URLS[form].format(port=closed_port)
    secrets = _secrets(url)
    assert secrets
    masked = mask(url)
    assert not [s for s in secrets if s in masked], masked
    assert "127.0.0.1" in masked and "codesign" in masked
    plain = write_study()
    in_file = write_study(name="in_file", storage=url)
    for source in ("--storage", ENV_VAR, "file"):
        monkeypatch.delenv(ENV_VAR, raising=False)
        if source == ENV_VAR:
            monkeypatch.setenv(ENV_VAR, url)
        for command in ("run", "best", "worker"):
            argv = [command, in_file if source == "file" else plain]
            argv += ["--storage", url] if source == "--storage" else []
            assert main(argv) == 2, (source, command)
            out, err = capfd.readouterr()
            errors = [line for line in err.splitlines() if line.startswith("codesign: error:")]
            assert len(errors) == 1 and "Traceback" not in err, err
            assert f": {source}: " in errors[0] if source != "file" else "studies/in_file.yaml: storage: " in errors[0]
            assert "@" not in PASSWORDS.get(form, "") or "has an '@' in its password" in errors[0]
            leaked = [s for s in secrets if s in out + err]
            assert not leaked, (source, command, out + err)


def test_redact_blanks_the_password_of_every_storage_opened(closed_port):
    """An error raised far from the URL (a database lost mid-run) is blanked all the same."""
    from codesign.errors import CodesignError
    from codesign.search.storage import open_storage

    url = f"postgresql://alice:Kx7%2FWq9@127.0.0.1:{closed_port}/codesign"
    with pytest.raises(CodesignError):
        open_storage(url, 10, 3)
    assert redact("FATAL: password Kx7/Wq9 or Kx7%2FWq9 rejected") == "FATAL: password *** or *** rejected"


def test_passwords_are_masked():
    url = "postgresql+psycopg2://alice:s3cret@db.example:5432/codesign"
    assert mask(url) == "postgresql+psycopg2://alice:***@db.example:5432/codesign"
    assert mask("postgresql://alice:p@ss@db/codesign") == "postgresql://alice:***@db/codesign"
    assert mask("postgresql://alice@srv:pw@db/x") == "postgresql://alice@srv:***@db/x", "a user name with '@'"
    assert mask("postgresql://alice@db/x") == "postgresql://alice@db/x"
    assert mask("postgresql://alice@db:5432/x") == "postgresql://alice@db:5432/x"
    assert mask("postgresql://db/x?user=a&password=s3cret&x=1") == "postgresql://db/x?user=a&password=***&x=1"
    assert mask("postgresql://db:5432/x?password=p@ss") == "postgresql://db:5432/x?password=***"
    assert mask("journal:results/a:b@c/journal.log") == "journal:results/a:b@c/journal.log"
    assert redact(f"could not connect to {url} as alice with s3cret", url) == \
        "could not connect to postgresql+psycopg2://alice:***@db.example:5432/codesign as alice with ***"


def test_a_run_with_workers_prints_no_warnings(write_study):
    """Optuna's warnings (CMA-ES ignoring constraints, at every tell of every worker) are not shown."""
    path = write_study(n_trials=12)
    run = subprocess.run([sys.executable, "-m", "codesign", "run", path, "--workers", "2", "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert not [line for line in (run.stdout + run.stderr).splitlines() if "warn" in line.lower()], run.stderr
